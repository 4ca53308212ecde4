//! Least privilege: once started, lbd keeps only the capabilities its running tasks use.
//!
//! Start-up needs root's wider set: loading the program (CAP_BPF with CAP_PERFMON or
//! CAP_SYS_ADMIN), mounting bpffs, raising the VRRP thread's priority (CAP_SYS_NICE),
//! binding a privileged metrics port. After it, lbd writes maps and reads them (CAP_BPF),
//! attaches the program to interfaces a reload adds and adds or removes virtual addresses
//! (CAP_NET_ADMIN), and, with VRRP, sends adverts and gratuitous ARP on raw and packet
//! sockets (CAP_NET_RAW). Everything else is dropped from the permitted, effective,
//! inheritable and ambient sets and from the bounding set, so neither lbd nor a hook it runs
//! (which inherits at most the bounding set, even as root) can take it back.
//!
//! Capabilities belong to each thread, not to the process: `capset` changes only the
//! caller's. By the end of start-up the runtime's threads exist, so every thread is asked to
//! drop its own, by a signal whose handler makes the two system calls (what glibc does for
//! `setuid`). The caller then reads every thread's sets back from `/proc` and retries until
//! all agree, so a thread spawned meanwhile by one that had not yet dropped is caught too.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

pub const CAP_SETPCAP: u32 = 8;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_BPF: u32 = 39;

/// How long the threads get to drop theirs before lbd gives up.
const DROP_LIMIT: Duration = Duration::from_secs(2);

/// A set of capabilities as the kernel's bit mask (bit N = capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilitySet(pub u64);

impl CapabilitySet {
    /// What lbd keeps once started: with VRRP routers, CAP_NET_RAW too.
    pub fn after_start(vrrp: bool) -> Self {
        let mut mask = 1 << CAP_BPF | 1 << CAP_NET_ADMIN;
        if vrrp {
            mask |= 1 << CAP_NET_RAW;
        }
        Self(mask)
    }

    /// The names `capabilities(7)` gives, lowest first.
    pub fn names(self) -> Vec<&'static str> {
        (0..64)
            .filter(|bit| self.0 & 1 << bit != 0)
            .map(capability_name)
            .collect()
    }
}

impl std::fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(", "))
    }
}

fn capability_name(bit: u32) -> &'static str {
    match bit {
        0 => "CAP_CHOWN",
        1 => "CAP_DAC_OVERRIDE",
        2 => "CAP_DAC_READ_SEARCH",
        3 => "CAP_FOWNER",
        4 => "CAP_FSETID",
        5 => "CAP_KILL",
        6 => "CAP_SETGID",
        7 => "CAP_SETUID",
        8 => "CAP_SETPCAP",
        10 => "CAP_NET_BIND_SERVICE",
        12 => "CAP_NET_ADMIN",
        13 => "CAP_NET_RAW",
        14 => "CAP_IPC_LOCK",
        21 => "CAP_SYS_ADMIN",
        23 => "CAP_SYS_NICE",
        24 => "CAP_SYS_RESOURCE",
        38 => "CAP_PERFMON",
        39 => "CAP_BPF",
        _ => "another capability",
    }
}

/// One thread's sets, as `/proc/self/task/TID/status` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadCapabilities {
    pub permitted: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub bounding: u64,
    pub ambient: u64,
}

impl ThreadCapabilities {
    /// Reads the `Cap*` lines of a `status` file.
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(name)?.strip_prefix(':')?.trim();
                u64::from_str_radix(value, 16).ok()
            })
        };
        Some(Self {
            permitted: field("CapPrm")?,
            effective: field("CapEff")?,
            inheritable: field("CapInh")?,
            bounding: field("CapBnd")?,
            ambient: field("CapAmb")?,
        })
    }

    /// Whether this thread holds `kept` and nothing more, in every set (the bounding set
    /// too when `bounding` says it can be lowered).
    pub fn holds_only(&self, kept: CapabilitySet, bounding: bool) -> bool {
        self.permitted == kept.0
            && self.effective == kept.0
            && (!bounding || self.bounding & !kept.0 == 0)
            && self.inheritable == 0
            && self.ambient == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("installing the handler that drops capabilities: {0}")]
    Handler(std::io::Error),
    #[error("reading the threads' capabilities in /proc/self/task: {0}")]
    Proc(std::io::Error),
    #[error(
        "thread {tid} still holds more than {kept} after {limit:?} (permitted {permitted:#x}, \
         bounding {bounding:#x})"
    )]
    Stuck {
        tid: u32,
        kept: CapabilitySet,
        limit: Duration,
        permitted: u64,
        bounding: u64,
    },
}

/// The capabilities each thread keeps, read by the signal handler.
static KEPT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Drops every capability outside `kept` in every thread of the process, and checks that it
/// happened. Capabilities lbd does not hold stay absent: this never adds any. Returns what
/// is kept.
pub fn keep_only(kept: CapabilitySet) -> Result<CapabilitySet, PrivilegeError> {
    // Never more than the process holds now (lbd run with file capabilities holds fewer).
    let held = current_thread().map_err(PrivilegeError::Proc)?.effective;
    let kept = CapabilitySet(kept.0 & held);
    // Lowering the bounding set takes CAP_SETPCAP; without it (lbd given a few capabilities
    // by its service manager, which bounds them itself) the bounding set stays as given.
    let bounding = held & 1 << CAP_SETPCAP != 0;
    if !bounding {
        log::warn!(
            "without CAP_SETPCAP lbd cannot lower its bounding set: hooks it runs as root may \
             regain capabilities it dropped"
        );
    }
    KEPT.store(kept.0, Ordering::SeqCst);
    install_handler().map_err(PrivilegeError::Handler)?;
    drop_own();
    let deadline = Instant::now() + DROP_LIMIT;
    loop {
        let mut unfinished = None;
        for (tid, capabilities) in threads().map_err(PrivilegeError::Proc)? {
            if capabilities.holds_only(kept, bounding) {
                continue;
            }
            unfinished = Some((tid, capabilities));
            // SAFETY: tgkill only sends a signal; a thread that has exited meanwhile makes it
            // fail with ESRCH, which the next read of /proc settles.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    tid as libc::pid_t,
                    drop_signal(),
                );
            }
        }
        let Some((tid, capabilities)) = unfinished else {
            return Ok(kept);
        };
        if Instant::now() >= deadline {
            return Err(PrivilegeError::Stuck {
                tid,
                kept,
                limit: DROP_LIMIT,
                permitted: capabilities.permitted,
                bounding: capabilities.bounding,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The calling thread's sets.
pub fn current_thread() -> std::io::Result<ThreadCapabilities> {
    read_status("/proc/thread-self/status")
}

/// Every thread of the process with its sets.
pub fn threads() -> std::io::Result<Vec<(u32, ThreadCapabilities)>> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        match read_status(entry.path().join("status")) {
            Ok(capabilities) => threads.push((tid, capabilities)),
            // Exited between the listing and the read (gone before the open, or between the
            // open and the read).
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound
                    || error.raw_os_error() == Some(libc::ESRCH) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(threads)
}

fn read_status(path: impl AsRef<std::path::Path>) -> std::io::Result<ThreadCapabilities> {
    let text = std::fs::read_to_string(path.as_ref())?;
    ThreadCapabilities::parse(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no Cap* lines in {}", path.as_ref().display()),
        )
    })
}

/// A real-time signal glibc leaves to applications.
fn drop_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

fn install_handler() -> std::io::Result<()> {
    // SAFETY: the action is zeroed and then filled in; the handler only makes system calls
    // and reads an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_drop_signal as *const () as libc::sighandler_t;
        // Interrupted reads and writes start again instead of failing with EINTR.
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(drop_signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn on_drop_signal(_signal: libc::c_int) {
    drop_own();
}

/// Drops the calling thread's capabilities outside [`KEPT`]: first from its bounding set
/// (which needs CAP_SETPCAP, still held), then from the others. Only system calls: this runs
/// in a signal handler.
fn drop_own() {
    let errno = std::io::Error::last_os_error().raw_os_error();
    let kept = KEPT.load(Ordering::SeqCst);
    for capability in 0..64 {
        if kept & 1 << capability == 0 {
            // SAFETY: prctl with these arguments reads no memory; capabilities the kernel
            // does not know fail with EINVAL, and without CAP_SETPCAP with EPERM: both leave
            // the set as it was, which the caller's check reports.
            unsafe {
                libc::prctl(libc::PR_CAPBSET_DROP, capability as libc::c_ulong, 0, 0, 0);
            }
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let low = CapData {
        effective: kept as u32,
        permitted: kept as u32,
        inheritable: 0,
    };
    let high = CapData {
        effective: (kept >> 32) as u32,
        permitted: (kept >> 32) as u32,
        inheritable: 0,
    };
    let data = [low, high];
    // SAFETY: header and data are the layouts capset(2) reads, version 3 with two words.
    // Clearing the inheritable set clears the ambient set with it.
    unsafe {
        libc::syscall(libc::SYS_capset, &mut header, data.as_ptr());
    }
    // A handler must leave errno as it found it: the interrupted code may be about to read it.
    if let Some(errno) = errno {
        // SAFETY: __errno_location returns this thread's errno.
        unsafe { *libc::__errno_location() = errno };
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lbd_keeps_bpf_and_net_admin_and_net_raw_only_with_vrrp() {
        assert_eq!(
            CapabilitySet::after_start(false).names(),
            ["CAP_NET_ADMIN", "CAP_BPF"]
        );
        assert_eq!(
            CapabilitySet::after_start(true).to_string(),
            "CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF"
        );
        assert_eq!(CapabilitySet::after_start(true).0, 0x80_0000_3000);
    }

    #[test]
    fn status_lines_parse_and_compare() {
        let status = "Name:\tlbd\nCapInh:\t0000000000000000\nCapPrm:\t0000008000003000\n\
                      CapEff:\t0000008000003000\nCapBnd:\t0000008000003000\n\
                      CapAmb:\t0000000000000000\nNoNewPrivs:\t0\n";
        let parsed = ThreadCapabilities::parse(status).expect("parses");
        assert!(parsed.holds_only(CapabilitySet::after_start(true), true));
        assert!(!parsed.holds_only(CapabilitySet::after_start(false), true));
        let root = status.replace("CapBnd:\t0000008000003000", "CapBnd:\t000001ffffffffff");
        let root = ThreadCapabilities::parse(&root).expect("parses");
        assert!(!root.holds_only(CapabilitySet::after_start(true), true));
        // Without CAP_SETPCAP the bounding set is left as the service manager gave it.
        assert!(root.holds_only(CapabilitySet::after_start(true), false));
        assert_eq!(ThreadCapabilities::parse("Name:\tlbd\n"), None);
    }
}
