//! Deciding whether a privileged test can run, and making sure a bpffs is where it should be.

use std::{ffi::CString, io::Write as _, os::unix::ffi::OsStrExt as _, path::Path, sync::Mutex};

/// `statfs` magic of a bpf filesystem (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The usual mount point of bpffs; pins made by tests go in fresh directories below it.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Whether a test that needs root (namespaces, BPF) can run.
///
/// Returns true as root. Otherwise a developer's `cargo test` skips the test with a reason on
/// stderr (returns false), while CI — where a skipped privileged test would be a silent gap —
/// fails it: CI runs as root.
pub fn require_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
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

/// Whether `path` is the root of (or lies on) a bpf filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    // f_type's width differs between targets.
    rc == 0 && stat.f_type as i64 == BPF_FS_MAGIC
}

/// Makes sure a bpffs is mounted at [`BPFFS`], mounting one if missing (some machines boot
/// without it). Panics saying so if that is impossible.
pub fn ensure_bpffs() {
    // Two tests of one process must not both mount: the second mount would hide the first.
    static MOUNTING: Mutex<()> = Mutex::new(());
    let _guard = MOUNTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = Path::new(BPFFS);
    if is_bpffs(path) {
        return;
    }
    let output = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf", BPFFS])
        .output()
        .unwrap_or_else(|error| {
            panic!("bpffs is not mounted at {BPFFS} and running mount failed: {error}")
        });
    // Another process may have mounted it meanwhile: what matters is that it is there now.
    if !is_bpffs(path) {
        panic!(
            "bpffs is not mounted at {BPFFS} and `mount -t bpf bpf {BPFFS}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_not_bpffs() {
        assert!(!is_bpffs(Path::new("/proc")));
        assert!(!is_bpffs(Path::new("/no/such/path")));
    }
}
