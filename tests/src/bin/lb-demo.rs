//! `lb-demo` (run by `cargo xtask demo`): the LVS-DR topology of the end-to-end test, run for a
//! person to watch.
//!
//! A client, the balancer and three reals, each in a network namespace of its own (prefix
//! `lbdemo-`) on one bridge; `lbd` runs `examples/demo.yaml`; the client opens HTTP
//! connections to the VIP; the demo prints which real served how many, then `lbadm`'s view.
//! Everything is removed at the end, on failure, and on Ctrl-C.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};
use lb_tests::{
    DrTopology,
    http::{self, HttpServer},
    lbd::Lbd,
    netns,
    privilege::require_root,
};

const PREFIX: &str = "lbdemo-";
const CONNECTIONS: usize = 300;
const BATCH: usize = 30;
const TIMEOUT: Duration = Duration::from_secs(5);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaned up");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    if !require_root("the demo") {
        bail!("the demo builds network namespaces and loads XDP: run it as root");
    }
    // Ctrl-C only raises a flag, checked between steps, so every guard below gets dropped
    // and removes what it made. SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    let config_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/demo.yaml")
        .canonicalize()
        .context("finding examples/demo.yaml")?;
    let config = lb_userspace::config::load(&config_path)?;
    let service = config
        .services
        .first()
        .context("examples/demo.yaml has no service")?;
    let vip = SocketAddr::new(service.vip, service.port);
    let reals: Vec<(String, IpAddr, u32)> = service
        .reals
        .iter()
        .enumerate()
        .map(|(i, real)| (format!("real{}", i + 1), real.address, real.weight))
        .collect();

    netns::remove_leftovers(PREFIX);
    println!(
        "demo: building the network: client, balancer, {} reals (namespaces {PREFIX}*)",
        reals.len()
    );
    let names: Vec<&str> = reals.iter().map(|(name, ..)| name.as_str()).collect();
    let topology = DrTopology::build(PREFIX, &names);
    for ((name, address, _), (_, _, topology_address)) in reals.iter().zip(&topology.reals) {
        if *address != IpAddr::V4(*topology_address) {
            bail!(
                "examples/demo.yaml: {name} is {address}, but the demo network gives it {topology_address}"
            );
        }
    }
    topology.attach_pass_program();
    let _servers: Vec<HttpServer> = topology
        .reals
        .iter()
        .map(|(name, netns, _)| {
            HttpServer::start(
                netns,
                SocketAddr::new([0, 0, 0, 0].into(), vip.port()),
                name,
            )
        })
        .collect();
    check_interrupt()?;

    println!("demo: starting lbd --config {}", config_path.display());
    let log_dir = std::env::temp_dir().join("lbdemo");
    let lbd = Lbd::start_with_config(&topology.lb, &config_path, log_dir);
    check_interrupt()?;

    println!("demo: {CONNECTIONS} HTTP connections from the client to {vip}, one GET each");
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..CONNECTIONS / BATCH {
        for result in http::connections(&topology.client, vip, BATCH, 1, TIMEOUT) {
            let bodies = result.context("an HTTP request through the VIP failed")?;
            *served.entry(bodies[0].trim_end().to_owned()).or_default() += 1;
        }
        check_interrupt()?;
    }

    let total_weight: u32 = reals.iter().map(|(.., weight)| weight).sum();
    println!();
    println!(
        "{:<8} {:<16} {:>6} {:>12} {:>8} {:>9}",
        "real", "address", "weight", "connections", "share", "expected"
    );
    for (name, address, weight) in &reals {
        let count = served.get(name).copied().unwrap_or(0);
        println!(
            "{name:<8} {address:<16} {weight:>6} {count:>12} {:>7.1}% {:>8.1}%",
            100.0 * count as f64 / CONNECTIONS as f64,
            100.0 * f64::from(*weight) / f64::from(total_weight),
        );
    }
    println!(
        "\n$ lbadm -L -n --stats\n{}",
        lbd.lbadm(&["-L", "-n", "--stats"])
    );
    println!("$ lbadm -L -n\n{}", lbd.lbadm(&["-L", "-n"]));
    println!("demo: done; removing the namespaces and everything lbd pinned");
    Ok(())
}
