//! The reals map, mmapped: lbd's side of the publication protocol described at
//! [`lb_common::RealSlots`].
//!
//! Writing through the mapping, not with `bpf_map_update_elem`, is what makes the switch a
//! single aligned store: the kernel's update copies the value with `memcpy`, which gives no
//! such guarantee for the generation word.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::maps::MapData;
use lb_common::{MAP_REALS, Real, RealSlots};

use super::readers::Readers;
use crate::dataplane::DataplaneError;

/// `BPF_F_MMAPABLE` in `bpf_map_info.map_flags`.
const BPF_F_MMAPABLE: u32 = 1 << 10;

pub struct RealTable {
    base: NonNull<RealSlots>,
    len: u32,
    mapped_bytes: usize,
    /// Keeps the map alive as long as the mapping.
    _map: MapData,
}

// SAFETY: the mapping is owned by this value and only accessed through `&self`/`&mut self`;
// the kernel side synchronises through the protocol in the module docs.
unsafe impl Send for RealTable {}

impl RealTable {
    pub fn new(map: MapData) -> Result<Self, DataplaneError> {
        let info = map.info().map_err(super::super::map_err(MAP_REALS))?;
        let syscall = |call, source| DataplaneError::Syscall {
            map: MAP_REALS,
            call,
            source,
        };
        if info.map_flags() & BPF_F_MMAPABLE == 0
            || info.value_size() as usize != size_of::<RealSlots>()
        {
            return Err(syscall(
                "checking the map layout",
                std::io::Error::other(format!(
                    "expected mmapable {}-byte entries, found flags {:#x} and {}-byte entries",
                    size_of::<RealSlots>(),
                    info.map_flags(),
                    info.value_size()
                )),
            ));
        }
        let len = info.max_entries();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let mapped_bytes = (len as usize * size_of::<RealSlots>()).div_ceil(page) * page;
        // SAFETY: a shared mapping of the map's fd over exactly its (page-rounded) data; the
        // kernel checks the length and the flags.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(syscall("mmap", std::io::Error::last_os_error()));
        }
        Ok(Self {
            base: NonNull::new(address.cast()).expect("mmap never returns null on success"),
            len,
            mapped_bytes,
            _map: map,
        })
    }

    fn slots(&self, id: u32) -> Result<*mut RealSlots, DataplaneError> {
        if id >= self.len {
            return Err(DataplaneError::RealOutOfRange {
                map: MAP_REALS,
                id,
                len: self.len,
            });
        }
        // SAFETY: in bounds, checked above.
        Ok(unsafe { self.base.as_ptr().add(id as usize) })
    }

    /// The generation word of `id`'s entry, valid as long as the mapping (`self`).
    fn generation(&self, slots: *mut RealSlots) -> &AtomicU32 {
        // SAFETY: `slots` comes from `Self::slots`, so `generation` is an aligned u32 inside
        // the live mapping; all concurrent access to it is atomic (the program's is a single
        // aligned load).
        unsafe { AtomicU32::from_ptr(&raw mut (*slots).generation) }
    }

    /// The entry the program uses now.
    pub fn get(&self, id: u32) -> Result<Real, DataplaneError> {
        let slots = self.slots(id)?;
        let generation = self.generation(slots).load(Ordering::Acquire);
        // SAFETY: in bounds; only this process writes, and not concurrently with `&self`.
        Ok(unsafe {
            std::ptr::read_volatile(&raw const (*slots).slots[RealSlots::current_slot(generation)])
        })
    }

    /// Writes `real` into the unused copy and switches the program to it.
    pub fn publish(
        &mut self,
        id: u32,
        real: Real,
        readers: &mut Readers,
    ) -> Result<(), DataplaneError> {
        if self.get(id)? == real {
            return Ok(());
        }
        readers.before_rewriting_real(id);
        let slots = self.slots(id)?;
        let generation = self.generation(slots);
        let next = generation.load(Ordering::Relaxed).wrapping_add(1);
        // SAFETY: in bounds; no program run reads this copy (the grace period above).
        unsafe {
            std::ptr::write_volatile(&raw mut (*slots).slots[RealSlots::current_slot(next)], real);
        }
        // Release: the copy is complete before any reader can see the generation naming it.
        generation.store(next, Ordering::Release);
        readers.switched_real(id);
        Ok(())
    }

    /// Every id whose current entry is not `Real::default()`.
    pub fn in_use(&self) -> Result<Vec<(u32, Real)>, DataplaneError> {
        let mut reals = Vec::new();
        for id in 0..self.len {
            let real = self.get(id)?;
            if real != Real::default() {
                reals.push((id, real));
            }
        }
        Ok(reals)
    }
}

impl Drop for RealTable {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped_bytes) };
    }
}
