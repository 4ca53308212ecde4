//! `BPF_MAP_LOOKUP_BATCH`, `_UPDATE_BATCH` and `_DELETE_BATCH`, which aya does not wrap:
//! thousands of entries per syscall instead of one (or two, for a `get_next_key` walk) per
//! entry.
//!
//! A walk of a million-entry flow table takes a few hundred syscalls this way; it still runs
//! off the runtime's threads (see `admin`), but no longer for seconds.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Entries asked for per lookup call. A hash map answers with whole buckets, so a chunk
/// smaller than the fullest bucket fails with ENOSPC; the walk then doubles it.
const LOOKUP_CHUNK: usize = 4096;

/// The `batch` member of the kernel's `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(command: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix for this command; the kernel
    // reads and writes only within it and within the buffers it points to, which the callers
    // size for `count` entries.
    unsafe { super::syscall::bpf(command, attr) }.map(|_| ())
}

/// Visits every entry of a hash or array map (not per-CPU), a chunk of entries per syscall.
/// Entries changed during the walk may be seen old or new, or, when deleted, not at all.
pub fn for_each<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    mut visit: impl FnMut(&K, &V),
) -> io::Result<()> {
    let mut chunk = LOOKUP_CHUNK;
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    // The kernel's cursor: a bucket number (hash maps) or an index (arrays), both u32.
    let mut token: u32 = 0;
    let mut next_token: u32 = 0;
    let mut first = true;
    loop {
        // SAFETY: Pod types are valid for any bit pattern, zeroes included.
        keys.resize(chunk, unsafe { std::mem::zeroed() });
        values.resize(chunk, unsafe { std::mem::zeroed() });
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token as *const u32 as u64
            },
            out_batch: &mut next_token as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let filled = attr.count as usize;
        match result {
            Ok(()) => {}
            // The end of the map: the last entries (possibly none) are in this chunk.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                visit_all(&keys[..filled], &values[..filled], &mut visit);
                return Ok(());
            }
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) && filled == 0 => {
                chunk *= 2;
                continue;
            }
            Err(error) => return Err(error),
        }
        visit_all(&keys[..filled], &values[..filled], &mut visit);
        token = next_token;
        first = false;
    }
}

fn visit_all<K, V>(keys: &[K], values: &[V], visit: &mut impl FnMut(&K, &V)) {
    for (key, value) in keys.iter().zip(values) {
        visit(key, value);
    }
}

/// Writes many entries in one syscall (an LRU map evicts as a single update would).
pub fn update<K: Pod, V: Pod>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut written = 0;
    while written < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[written..].as_ptr() as u64,
            values: values[written..].as_ptr() as u64,
            count: (keys.len() - written).min(u32::MAX as usize) as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_UPDATE_BATCH, &mut attr);
        // On error `count` says how many went in before it.
        written += attr.count as usize;
        result?;
    }
    Ok(())
}

/// Removes many entries in one syscall; keys that are not there are skipped, not an error
/// (the bench takes back the flows it added, and the program may have deleted some).
pub fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    let mut done = 0;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            count: (keys.len() - done).min(u32::MAX as usize) as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        // On error `count` says how many went before it; a missing key stops the batch there.
        done += attr.count as usize;
        match result {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => done += 1,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
