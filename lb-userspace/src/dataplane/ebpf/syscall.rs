//! The `bpf(2)` system call, for the commands aya does not wrap (batches, single elements
//! with flags, creating and pinning the id maps, detaching a pinned link).

use std::io;

/// Calls `bpf(command, attr, size_of::<T>())`; returns what the kernel returned (a file
/// descriptor for the commands that make one, else 0).
///
/// # Safety
///
/// `attr` must be an initialised prefix of the kernel's `union bpf_attr` for `command`, and
/// every pointer in it must point at live memory of the size the command reads or writes.
pub unsafe fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller's contract; the size passed is exactly `attr`'s.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut T,
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}
