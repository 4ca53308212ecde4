//! `lbd`: the load balancer daemon. See README.md and SPEC.md.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use lb_userspace::{
    config::{self, Config},
    daemon::{self, Daemon},
    loader::{self, Attachment, Loaded},
    neighbour::Neighbours,
    state::{Existing, State},
};

/// How long start-up waits for the reals' MACs before attaching anyway.
const INITIAL_RESOLUTION: Duration = Duration::from_secs(3);

#[derive(Debug, Parser)]
#[command(
    name = "lbd",
    version,
    about = "XDP load balancer daemon (LVS-DR style)"
)]
struct Args {
    /// The YAML configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long, conflicts_with = "teardown")]
    check: bool,
    /// Detach the XDP program and remove every map pinned for the config's instance (this
    /// drops all flows), then exit. A plain stop leaves forwarding running.
    #[arg(long)]
    teardown: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lbd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    if args.check {
        let reals: usize = config
            .services
            .iter()
            .map(|service| service.reals.len())
            .sum();
        println!(
            "{}: ok (instance {}, {} services, {reals} reals)",
            args.config.display(),
            config.instance,
            config.services.len()
        );
        return Ok(());
    }
    if args.teardown {
        loader::unpin_all(&config.pin_dir)
            .with_context(|| format!("removing {}", config.pin_dir.display()))?;
        println!(
            "instance {}: detached and unpinned ({})",
            config.instance,
            config.pin_dir.display()
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let neighbours = Neighbours::new()?;
    let mut interfaces = Vec::with_capacity(config.interfaces.len());
    for interface in &config.interfaces {
        interfaces.push(neighbours.interface(&interface.name).await?);
    }
    let state = State::new(&config, interfaces.clone())?;
    let listener = daemon::bind_admin_socket(&config.admin_socket)?;

    // A first start owns the pin directory; if it fails, it leaves nothing behind. A restart
    // adopts what is pinned and must not remove it.
    let first_start = !config.pin_dir.exists();
    let started = start(&config, &interfaces, state, neighbours).await;
    let (ebpf, daemon) = match started {
        Ok(started) => started,
        Err(error) => {
            if first_start {
                let _ = loader::unpin_all(&config.pin_dir);
            }
            let _ = std::fs::remove_file(&config.admin_socket);
            return Err(error);
        }
    };
    log::info!(
        "instance {} serving {} services; admin socket {}",
        config.instance,
        config.services.len(),
        config.admin_socket.display()
    );
    let result = daemon::run(daemon, listener, shutdown_signal()).await;
    let _ = std::fs::remove_file(&config.admin_socket);
    drop(ebpf);
    log::info!(
        "stopped; the XDP program keeps forwarding from {} (`lbd --teardown --config FILE` detaches it)",
        config.pin_dir.display()
    );
    Ok(result?)
}

async fn start(
    config: &Config,
    interfaces: &[lb_userspace::neighbour::InterfaceInfo],
    mut state: State,
    neighbours: Neighbours,
) -> anyhow::Result<(aya::Ebpf, Daemon)> {
    let Loaded {
        mut ebpf,
        dataplane,
    } = loader::load(&config.limits, Some(&config.pin_dir))?;
    // Flows in pinned maps name reals by id: keep the ids a previous daemon gave.
    let existing = Existing::read(&dataplane)?;
    if !existing.services.is_empty() {
        log::info!(
            "adopting pinned maps from {}: {} services, {} reals",
            config.pin_dir.display(),
            existing.services.len(),
            existing.reals.len()
        );
    }
    state.adopt(&existing);
    let daemon = Daemon::new(config.clone(), state, Box::new(dataplane), Some(neighbours));
    // Everything is written once, then each real as it resolves.
    daemon.apply()?;
    daemon.resolve_reals(INITIAL_RESOLUTION).await?;
    for (interface, info) in config.interfaces.iter().zip(interfaces) {
        let how = loader::attach(
            &mut ebpf,
            &interface.name,
            info.index,
            interface.xdp_mode,
            Some(&config.pin_dir),
        )?;
        let verb = match how {
            Attachment::Attached => "attached to",
            Attachment::Replaced => "replaced the program on",
        };
        log::info!(
            "{verb} {} (xdp mode {})",
            interface.name,
            interface.xdp_mode.name()
        );
    }
    Ok((ebpf, daemon))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stop lbd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => log::info!("SIGTERM"),
        _ = interrupt.recv() => log::info!("SIGINT"),
    }
}
