//! Deciding whether a privileged test can run. (bpffs is the loader's business: lbd and
//! `lb_userspace::dataplane::loader` mount it where missing.)

use std::io::Write as _;

/// Whether a test that needs root (namespaces, BPF) can run.
///
/// Returns true as root: a privileged test never skips there. Otherwise the test is skipped
/// with a reason on stderr (returns false) when only the unprivileged part was asked for
/// (`cargo xtask test --unprivileged`) or under a plain `cargo test`; under CI, where a
/// skipped privileged test would be a silent gap, it fails.
pub fn require_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("LB_TESTS_UNPRIVILEGED").is_none() && std::env::var_os("CI").is_some() {
        panic!("{what} needs root and BPF; CI runs as root");
    }
    // Straight to the stderr handle: the test harness captures `eprintln!` of passing tests,
    // and a skip nobody sees is a silent gap.
    let _ = writeln!(
        std::io::stderr(),
        "skipping {what}: it needs root and BPF (run the tests as root, e.g. with sudo -E)"
    );
    false
}

/// Checks that every thread of process `pid` holds exactly `kept` (see
/// `lb_userspace::daemon::privileges`), naming those that hold more; `context` (the process's
/// log) is printed with a failure. Returns how many threads it checked.
pub fn assert_threads_hold_only(
    pid: u32,
    kept: lb_userspace::daemon::privileges::CapabilitySet,
    context: &dyn Fn() -> String,
) -> usize {
    use lb_userspace::daemon::privileges::ThreadCapabilities;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("listing the threads of {pid}: {e}"));
    let mut count = 0;
    let mut beyond = Vec::new();
    for task in tasks {
        let task = task.expect("a task entry").path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue; // exited meanwhile
        };
        count += 1;
        let capabilities = ThreadCapabilities::parse(&status).expect("Cap* lines");
        if !capabilities.holds_only(kept, true) {
            let name = status.lines().next().unwrap_or_default().to_owned();
            beyond.push(format!("{} ({name}): {capabilities:x?}", task.display()));
        }
    }
    assert!(
        beyond.is_empty(),
        "threads holding more than {kept}:\n{}\n{}",
        beyond.join("\n"),
        context()
    );
    count
}
