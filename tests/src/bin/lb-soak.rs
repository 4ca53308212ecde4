//! `lb-soak [--minutes N] [--prefix P]` (run by `cargo xtask soak`): lbd under steady load with
//! connection churn for N minutes (default 10), sampled every 5 s; prints the samples as a
//! table and the verdict (see `lb_tests::soak`), and exits non-zero if the flow table, lbd's
//! memory, descriptors or threads grew, or lbd's counters disagree with the client's. The
//! namespaces (prefix `lbsoak-`) are removed at the end, on failure, and on Ctrl-C.

use std::{
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use lb_tests::{
    privilege::require_root,
    soak::{self, SoakOptions},
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let mut minutes = 10.0_f64;
    let mut prefix = format!("lbsoak-{}-", std::process::id());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--minutes", Some(value)) if value.parse::<f64>().is_ok_and(|m| m > 0.0) => {
                minutes = value.parse().expect("checked");
            }
            ("--prefix", Some(value)) => prefix = value,
            _ => {
                eprintln!("usage: lb-soak [--minutes N (default 10)] [--prefix NETNS_PREFIX]");
                return ExitCode::from(2);
            }
        }
    }
    if !require_root("lb-soak") {
        eprintln!("lb-soak needs root (network namespaces, XDP): run `sudo -E cargo xtask soak`");
        return ExitCode::FAILURE;
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        )
    };
    let options = SoakOptions::for_duration(Duration::from_secs_f64(minutes * 60.0), &prefix);
    println!(
        "soak: {:?} at {} new connections/s and {} long-lived, a sample every {:?}",
        options.duration, options.churn_per_second, options.long_lived, options.sample_every
    );
    let report = soak::run(&options, &INTERRUPTED);
    println!("\n{}", report.summary());
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("interrupted; cleaned up");
        return ExitCode::FAILURE;
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
