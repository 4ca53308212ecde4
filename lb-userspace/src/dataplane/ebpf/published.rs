//! The maps the program reads through a generation word (reals, schedules), mmapped: lbd's
//! side of the protocol described at [`lb_common::RealSlots`] and [`lb_common::Schedule`].
//!
//! Writing through the mapping, not with `bpf_map_update_elem`, is what makes the switch a
//! single aligned store: the kernel's update copies the value with `memcpy`, which gives no
//! such guarantee for the generation word.

use std::{
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use aya::maps::MapData;
use lb_common::{
    ConnCounts, MAP_CONNS, MAP_REALS, MAP_SCHEDULES, Real, RealSlots, Schedule, TableRange,
};

use super::readers::Readers;
use crate::dataplane::DataplaneError;

/// `BPF_F_MMAPABLE` in `bpf_map_info.map_flags`.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// An mmapable array map, mapped into lbd.
struct MappedArray<T> {
    base: NonNull<T>,
    len: u32,
    mapped_bytes: usize,
    name: &'static str,
    /// Keeps the map alive as long as the mapping.
    _map: MapData,
    _entries: PhantomData<T>,
}

// SAFETY: the mapping is owned by this value and only accessed through `&self`/`&mut self`;
// the kernel side synchronises through the protocol in the module docs.
unsafe impl<T> Send for MappedArray<T> {}

impl<T> MappedArray<T> {
    fn new(map: MapData, name: &'static str) -> Result<Self, DataplaneError> {
        let info = map.info().map_err(super::super::map_err(name))?;
        let syscall = |call, source| DataplaneError::Syscall {
            map: name,
            call,
            source,
        };
        if info.map_flags() & BPF_F_MMAPABLE == 0 || info.value_size() as usize != size_of::<T>() {
            return Err(syscall(
                "checking the map layout",
                std::io::Error::other(format!(
                    "expected mmapable {}-byte entries, found flags {:#x} and {}-byte entries",
                    size_of::<T>(),
                    info.map_flags(),
                    info.value_size()
                )),
            ));
        }
        let len = info.max_entries();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // Entries of an array map are laid out `value_size` rounded up to 8 apart; ours are
        // multiples of 8 already.
        let mapped_bytes = (len as usize * size_of::<T>()).div_ceil(page) * page;
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
            name,
            _map: map,
            _entries: PhantomData,
        })
    }

    fn entry(&self, index: u32) -> Result<*mut T, DataplaneError> {
        if index >= self.len {
            return Err(DataplaneError::OutOfRange {
                map: self.name,
                index,
                len: self.len,
            });
        }
        // SAFETY: in bounds, checked above.
        Ok(unsafe { self.base.as_ptr().add(index as usize) })
    }

    /// The generation word at `word` inside an entry, valid as long as the mapping.
    fn generation(&self, word: *mut u32) -> &AtomicU32 {
        // SAFETY: `word` points at an aligned u32 inside the live mapping (callers derive it
        // from `entry`); all concurrent access to it is atomic (the program's is a single
        // aligned load).
        unsafe { AtomicU32::from_ptr(word) }
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped_bytes) };
    }
}

/// `LB_REALS_V2`.
pub struct Reals(MappedArray<RealSlots>);

impl Reals {
    pub fn new(map: MapData) -> Result<Self, DataplaneError> {
        MappedArray::new(map, MAP_REALS).map(Self)
    }

    /// The entry the program uses now.
    ///
    /// Read like a seqlock: the grace period that protects the program's reads does not cover
    /// another thread of lbd (the flow sweep), so a copy read while the generation moved is
    /// read again.
    pub fn get(&self, id: u32) -> Result<Real, DataplaneError> {
        let slots = self.0.entry(id)?;
        // SAFETY (here and below): `slots` is in bounds; only this process writes.
        let generation = self.0.generation(unsafe { &raw mut (*slots).generation });
        loop {
            let before = generation.load(Ordering::Acquire);
            let real = unsafe {
                std::ptr::read_volatile(&raw const (*slots).slots[RealSlots::current_slot(before)])
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if generation.load(Ordering::Relaxed) == before {
                return Ok(real);
            }
        }
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
        let slots = self.0.entry(id)?;
        let generation = self.0.generation(unsafe { &raw mut (*slots).generation });
        let next = generation.load(Ordering::Relaxed).wrapping_add(1);
        // SAFETY: no program run reads this copy (the grace period above).
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
        for id in 0..self.0.len {
            let real = self.get(id)?;
            if real != Real::default() {
                reals.push((id, real));
            }
        }
        Ok(reals)
    }
}

/// `LB_SCHEDULES_V2`: which half of its table each service uses, and where each half lies.
pub struct Schedules(MappedArray<Schedule>);

impl Schedules {
    pub fn new(map: MapData) -> Result<Self, DataplaneError> {
        MappedArray::new(map, MAP_SCHEDULES).map(Self)
    }

    /// The half the program uses now, and where it lies.
    pub fn current(&self, service_id: u32) -> Result<TableRange, DataplaneError> {
        let schedule = self.0.entry(service_id)?;
        let generation = self
            .0
            .generation(unsafe { &raw mut (*schedule).generation })
            .load(Ordering::Acquire);
        let half = Schedule::current_half(generation);
        // SAFETY: in bounds; only this process writes.
        Ok(unsafe { std::ptr::read_volatile(&raw const (*schedule).halves[half]) })
    }

    /// Both halves of every service id, e.g. to find the table space a previous daemon
    /// placed.
    pub fn all(&self) -> Result<Vec<(u32, [TableRange; 2])>, DataplaneError> {
        (0..self.0.len)
            .map(|id| {
                let schedule = self.0.entry(id)?;
                // SAFETY: in bounds; only this process writes.
                Ok((id, unsafe {
                    std::ptr::read_volatile(&raw const (*schedule).halves)
                }))
            })
            .collect()
    }

    /// Has `place` fill the half not in use (given where that half lies now; it returns where
    /// it lies after), then switches the program to it.
    pub fn publish(
        &mut self,
        service_id: u32,
        readers: &mut Readers,
        place: impl FnOnce(TableRange) -> Result<TableRange, DataplaneError>,
    ) -> Result<(), DataplaneError> {
        readers.before_rewriting_ring(service_id);
        let schedule = self.0.entry(service_id)?;
        let generation = self
            .0
            .generation(unsafe { &raw mut (*schedule).generation });
        let next = generation.load(Ordering::Relaxed).wrapping_add(1);
        let half = Schedule::current_half(next);
        // SAFETY: in bounds; no program run reads this half (the grace period above).
        let unused = unsafe { std::ptr::read_volatile(&raw const (*schedule).halves[half]) };
        let placed = place(unused)?;
        unsafe { std::ptr::write_volatile(&raw mut (*schedule).halves[half], placed) };
        // Release: the table slots (written by the kernel on this thread's behalf, before this
        // store in program order) and the range are in place before the switch is seen.
        generation.store(next, Ordering::Release);
        readers.switched_ring(service_id);
        Ok(())
    }

    /// Forgets where a removed service's halves lie. Its entry is gone, so no new program run
    /// reads them; runs already under way may, which is why the caller keeps the space out of
    /// use until a grace period has passed.
    pub fn clear(&mut self, service_id: u32) -> Result<[TableRange; 2], DataplaneError> {
        let schedule = self.0.entry(service_id)?;
        // SAFETY: in bounds; only this process writes.
        unsafe {
            let halves = std::ptr::read_volatile(&raw const (*schedule).halves);
            std::ptr::write_volatile(&raw mut (*schedule).halves, [TableRange::default(); 2]);
            Ok(halves)
        }
    }
}

/// `LB_CONNS_V1`: each real's active and inactive connections. The program adds to them
/// atomically as flows start, change state and end; lbd's sweep subtracts the flows it
/// removes, atomically too, on the same memory.
pub struct Conns(MappedArray<ConnCounts>);

// SAFETY: every access to the mapped counters is atomic (see `counter`), so sharing the
// mapping between threads is sound.
unsafe impl Sync for Conns {}

impl Conns {
    pub fn new(map: MapData) -> Result<Self, DataplaneError> {
        MappedArray::new(map, MAP_CONNS).map(Self)
    }

    /// The real's counts now, negative values (a decrement seen before its increment) as 0.
    pub fn get(&self, real_id: u32) -> Result<ConnCounts, DataplaneError> {
        let counts = self.0.entry(real_id)?;
        let read = |counter: *mut u64| {
            let value = self.counter(counter).load(Ordering::Relaxed);
            if (value as i64) < 0 { 0 } else { value }
        };
        // SAFETY: `counts` is in bounds.
        Ok(unsafe {
            ConnCounts {
                active: read(&raw mut (*counts).active),
                inactive: read(&raw mut (*counts).inactive),
            }
        })
    }

    /// Adds `delta` to the count of `real_id`'s flows in `state`'s kind.
    pub fn add(&self, real_id: u32, state: u8, delta: i64) -> Result<(), DataplaneError> {
        let counts = self.0.entry(real_id)?;
        // SAFETY: `counts` is in bounds.
        let counter = unsafe { ConnCounts::counter(counts, state) };
        self.counter(counter)
            .fetch_add(delta as u64, Ordering::Relaxed);
        Ok(())
    }

    fn counter(&self, counter: *mut u64) -> &AtomicU64 {
        // SAFETY: an aligned u64 inside the live mapping; the program changes it only with
        // atomic adds, and lbd only through this.
        unsafe { AtomicU64::from_ptr(counter) }
    }
}
