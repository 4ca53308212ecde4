//! Where the CPUs went during a sample: the machine's counters in /proc/stat, the servers'
//! in /proc/PID/stat, wrk's from the rusage of waited-for children.

use std::time::Instant;

use crate::bench::host;

/// CPU used during one sample, in CPUs (1.0 is one CPU busy for the whole sample).
#[derive(Clone, Debug, Default)]
pub(super) struct CpuUse {
    /// The whole machine, softirq included.
    pub(super) busy: f64,
    pub(super) softirq: f64,
    pub(super) wrk: f64,
    /// Every nginx process together.
    pub(super) servers: f64,
    pub(super) busiest_server: f64,
    pub(super) haproxy: f64,
    /// lbd's daemon (the XDP program's work is softirq).
    pub(super) lbd: f64,
}

impl CpuUse {
    /// What the bench's own processes and the kernel's packet work (softirq) used.
    pub(super) fn bench(&self) -> f64 {
        self.softirq + self.wrk + self.servers + self.haproxy + self.lbd
    }
}

/// CPU counters at one instant, to subtract.
pub(super) struct CpuClock {
    pub(super) at: Instant,
    /// (busy, softirq) ticks of the whole machine, from /proc/stat.
    pub(super) machine: (u64, u64),
    /// CPU seconds of this process's children that were waited for: wrk's, once it exits.
    pub(super) children: f64,
    pub(super) servers: Vec<u64>,
    pub(super) haproxy: u64,
    pub(super) lbd: u64,
}

impl CpuClock {
    pub(super) fn since(&self, before: &CpuClock) -> CpuUse {
        let seconds = self.at.duration_since(before.at).as_secs_f64();
        let ticks = |after: u64, before: u64| {
            after.saturating_sub(before) as f64 / host::clock_ticks_per_second() / seconds
        };
        let servers = self
            .servers
            .iter()
            .zip(&before.servers)
            .map(|(after, before)| ticks(*after, *before))
            .collect::<Vec<_>>();
        CpuUse {
            busy: ticks(self.machine.0, before.machine.0),
            softirq: ticks(self.machine.1, before.machine.1),
            wrk: (self.children - before.children) / seconds,
            servers: servers.iter().sum(),
            busiest_server: servers.iter().copied().fold(0.0, f64::max),
            haproxy: ticks(self.haproxy, before.haproxy),
            lbd: ticks(self.lbd, before.lbd),
        }
    }
}

/// User and system ticks process `pid` has used (0 once it is gone).
pub(super) fn process_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name, in parentheses, may hold spaces: count fields after it. utime and
    // stime are fields 14 and 15, the 12th and 13th after the name.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|ticks| ticks.parse::<u64>().ok())
        .sum()
}

/// (busy, softirq) ticks of all CPUs together since boot: every column of /proc/stat's `cpu`
/// line but idle and iowait count as busy.
pub(super) fn machine_ticks() -> (u64, u64) {
    // Guest time is already in user: the first eight columns are the whole.
    let ticks = host::cpu_ticks();
    let busy = ticks[..8].iter().sum::<u64>() - ticks[3] - ticks[4];
    (busy, ticks[6])
}

/// User and system seconds of the children this process has waited for.
pub(super) fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
