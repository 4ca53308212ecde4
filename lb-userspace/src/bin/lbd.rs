//! `lbd`: the load balancer daemon. See README.md and SPEC.md.

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lb_common::decap::DEFAULT_GUE_PORT;
use lb_userspace::{config, daemon, dataplane::loader, decap};

#[derive(Debug, Parser)]
#[command(
    name = "lbd",
    version,
    about = "XDP load balancer daemon (LVS-DR style)",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The YAML configuration file.
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long, conflicts_with = "teardown")]
    check: bool,
    /// Detach the XDP program and remove every map pinned for the config's instance (this
    /// drops all flows), then exit. A plain stop leaves forwarding running.
    #[arg(long)]
    teardown: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// On a real server of a tunnel-mode service: take the IPIP or GUE header off packets
    /// for a local VIP (the addresses on lo, and --vip), so that kernels without the ipip or
    /// fou modules deliver them. Runs in the foreground until SIGINT or SIGTERM, then
    /// detaches; SIGUSR1 logs the counters.
    Decap(DecapArgs),
}

#[derive(Debug, clap::Args)]
struct DecapArgs {
    /// The interface tunnel packets arrive on.
    #[arg(long, value_name = "IFACE")]
    interface: String,
    /// UDP destination port of GUE packets (the services' `gue_port`); 0 for IPIP only.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_GUE_PORT)]
    gue_port: u16,
    /// How the program is attached.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["native", "generic", "auto"])]
    xdp_mode: String,
    /// A VIP served here besides the addresses on lo (repeat for several).
    #[arg(long = "vip", value_name = "ADDR")]
    vips: Vec<IpAddr>,
}

/// Worker threads of the runtime: the admin server and the neighbour watch are I/O-bound;
/// map writes and flow-table walks run on threads of their own.
const RUNTIME_THREADS: usize = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    // `log` records (all of lbd's today) reach this subscriber through its tracing-log bridge.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lbd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::Decap(decap)) = args.command {
        return run_decap(decap);
    }
    let config_path = args.config.context("--config FILE is required")?;
    if args.check {
        let config = config::load(&config_path)?;
        println!("{}", daemon::check_summary(&config_path, &config));
        return Ok(());
    }
    if args.teardown {
        let config = config::load(&config_path)?;
        // Routers must stop sending the VIPs here before the program stops forwarding them.
        if let Some(bgp) = &config.bgp {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            match runtime.block_on(lb_userspace::bgp::withdraw_all(bgp, &config.instance)) {
                Ok(true) => println!("instance {}: every VIP withdrawn from BGP", config.instance),
                Ok(false) => println!(
                    "instance {}: BIRD is not running; {} lists no VIP for when it starts",
                    config.instance,
                    bgp.bird_config.display()
                ),
                Err(error) => anyhow::bail!(
                    "instance {}: cannot withdraw the VIPs from BGP, so the program stays \
                     attached (stop BIRD, or fix it and run --teardown again): {error}",
                    config.instance
                ),
            }
        }
        loader::unpin_all(&config.pin_dir)
            .with_context(|| format!("removing {}", config.pin_dir.display()))?;
        println!(
            "instance {}: detached and unpinned ({})",
            config.instance,
            config.pin_dir.display()
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    Ok(runtime.block_on(daemon::serve(config_path))?)
}

fn run_decap(args: DecapArgs) -> anyhow::Result<()> {
    let options = decap::Options {
        interface: args.interface,
        gue_port: args.gue_port,
        xdp_mode: decap::xdp_mode_named(&args.xdp_mode).context("--xdp-mode")?,
        vips: args.vips,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(decap::run(options))?;
    Ok(())
}
