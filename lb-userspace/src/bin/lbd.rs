//! `lbd`: the load balancer daemon. See README.md and SPEC.md.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use lb_userspace::{config, daemon, dataplane::loader};

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

/// Worker threads of the runtime: the admin server and the neighbour watch are I/O-bound;
/// map writes and flow-table walks run on threads of their own.
const RUNTIME_THREADS: usize = 2;

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
    if args.check {
        let config = config::load(&args.config)?;
        println!("{}", daemon::check_summary(&args.config, &config));
        return Ok(());
    }
    if args.teardown {
        let config = config::load(&args.config)?;
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
    Ok(runtime.block_on(daemon::serve(args.config))?)
}
