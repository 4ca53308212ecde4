//! A process's footprint from /proc: what the admin flood and the soak watch stay flat.

use std::fmt;

/// Resident memory, open file descriptors and threads of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// `VmRSS` of /proc/PID/status.
    pub rss_kib: u64,
    /// Entries of /proc/PID/fd.
    pub fds: u64,
    /// `Threads` of /proc/PID/status (tokio's workers and blocking pool, the sweep, VRRP…).
    pub threads: u64,
}

impl Footprint {
    /// Reads the footprint of `pid`; panics (with the error) if the process is gone.
    pub fn of(pid: u32) -> Footprint {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|error| panic!("reading /proc/{pid}/status: {error}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|error| panic!("reading /proc/{pid}/fd: {error}"))
            .count() as u64;
        Footprint {
            rss_kib: field("VmRSS:"),
            fds,
            threads: field("Threads:"),
        }
    }
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS {} KiB, {} fds, {} threads",
            self.rss_kib, self.fds, self.threads
        )
    }
}
