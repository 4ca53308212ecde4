//! `cargo xtask soak [--minutes N]`: lbd under steady load with connection churn for N
//! minutes (default 10), sampled as it goes; fails if the flow table, lbd's memory,
//! descriptors or threads grow, or lbd's counters disagree with the client's. The work is
//! `lb-soak`'s, in the tests crate next to the harness it uses.

use anyhow::bail;

use crate::{build_release_daemon, cargo, setup, status};

pub fn run(minutes: f64, prefix: Option<&str>) -> anyhow::Result<()> {
    if minutes <= 0.0 {
        bail!("--minutes must be positive, not {minutes}");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak needs root (network namespaces, XDP): run `sudo -E cargo xtask soak`");
    }
    setup::run()?;
    // Release, as lbd is deployed: a debug build's footprint and pace say little.
    build_release_daemon()?;
    let mut soak = cargo();
    soak.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "lb-tests",
        "--bin",
        "lb-soak",
        "--",
        "--minutes",
        &minutes.to_string(),
    ]);
    if let Some(prefix) = prefix {
        soak.args(["--prefix", prefix]);
    }
    status(&mut soak)
}
