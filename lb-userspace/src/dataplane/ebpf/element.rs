//! Single-element map commands aya does not offer with the semantics the flow table needs:
//! a delete that returns what it deleted, an insert that never replaces, and a replace that
//! never inserts.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;

/// The element members of the kernel's `union bpf_attr`.
#[repr(C)]
struct ElementAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf(command: libc::c_long, attr: &mut ElementAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid `bpf_attr` prefix for this command; `key` and `value` point
    // at live buffers of the map's key and value sizes (the callers' `K` and `V`).
    unsafe { super::syscall::bpf(command, attr) }.map(|_| ())
}

/// The value at `key`, if any.
pub fn lookup<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    read_value(BPF_MAP_LOOKUP_ELEM, map, key)
}

/// Deletes `key` and returns the value it held, in one step no other writer can split (the
/// hash map's bucket lock); `None` if it was not there.
pub fn lookup_and_delete<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    read_value(BPF_MAP_LOOKUP_AND_DELETE_ELEM, map, key)
}

/// A command that answers with the value at `key`; `None` when the map has no such key.
fn read_value<K: Pod, V: Pod>(
    command: libc::c_long,
    map: BorrowedFd<'_>,
    key: &K,
) -> io::Result<Option<V>> {
    // SAFETY: V is Pod: any bit pattern the kernel writes is a valid V.
    let mut value: V = unsafe { std::mem::zeroed() };
    let mut attr = ElementAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value: &mut value as *mut V as u64,
        flags: 0,
    };
    match bpf(command, &mut attr) {
        Ok(()) => Ok(Some(value)),
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Inserts `key` only if the map does not hold it: `Ok(false)` when it does.
pub fn insert_new<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K, value: &V) -> io::Result<bool> {
    let mut attr = ElementAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value: value as *const V as u64,
        flags: BPF_NOEXIST,
    };
    match bpf(BPF_MAP_UPDATE_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Replaces the value at `key` only if the map holds it: `Ok(false)` when it does not.
pub fn replace_existing<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    key: &K,
    value: &V,
) -> io::Result<bool> {
    let mut attr = ElementAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value: value as *const V as u64,
        flags: BPF_EXIST,
    };
    match bpf(BPF_MAP_UPDATE_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(error) => Err(error),
    }
}
