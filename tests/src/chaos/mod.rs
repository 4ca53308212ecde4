//! What the chaos scenarios share: traffic that runs while a scenario breaks something, the
//! figures it yields, and one report line per scenario.
//!
//! - [`traffic`]: a request loop (a new connection every 20 ms) and long-lived connections
//!   checked in rounds; stopped, they yield [`Figures`]: what failed, how (reset, timeout,
//!   closed, answered by another real), and whether the failure is excused (its real was the
//!   one the scenario killed, or it fell in the window the scenario says may fail).
//! - [`process`]: a daemon's resident memory, open descriptors and threads, from /proc.
//!
//! [`report`] prints `chaos | <scenario> | requests N | failed F (excused E) | …` to stderr
//! and appends the same line to `<target dir>/chaos/report.md`, where the README's table is
//! copied from.

pub mod process;
pub mod traffic;

use std::{io::Write as _, path::PathBuf};

pub use traffic::{Excused, Figures, Traffic};

/// The target directory this executable was built in: `<target>/<profile>/deps/<test>` or
/// `<target>/<profile>/<binary>`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("the executable's directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    dir.pop();
    dir
}

/// The scenario's line, in the one format the README's table and `grep '^chaos |'` expect.
pub fn report_line(scenario: &str, figures: &Figures, note: &str) -> String {
    format!(
        "chaos | {scenario} | requests {} | failed {} (excused {}) | long-lived {} | broken {} \
         (excused {}) | resets {} | timeouts {} | {note}",
        figures.requests,
        figures.failed,
        figures.failed_excused,
        figures.long_lived,
        figures.broken,
        figures.broken_excused,
        figures.resets,
        figures.timeouts,
    )
}

/// Prints the scenario's line to stderr (shown even when the test passes) and appends it to
/// `<target dir>/chaos/report.md`.
pub fn report(scenario: &str, figures: &Figures, note: &str) {
    let line = report_line(scenario, figures, note);
    let _ = writeln!(std::io::stderr(), "{line}");
    if !figures.errors.is_empty() {
        let _ = writeln!(std::io::stderr(), "  first errors: {:?}", figures.errors);
    }
    let dir = target_dir().join("chaos");
    let appended = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("report.md"))?;
        writeln!(file, "{line}")
    });
    if let Err(error) = appended {
        let _ = writeln!(std::io::stderr(), "writing {}: {error}", dir.display());
    }
}
