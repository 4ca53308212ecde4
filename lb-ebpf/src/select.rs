//! Which real gets the packet: the flow table first, the scheduler for new flows.
//!
//! Schedulers stay trivial here: userspace writes each service's weighted schedule into its
//! slice of the ring (see `schedule.rs` in lb-userspace), and the kernel walks it with a
//! per-CPU cursor, so no two CPUs ever write the same memory per packet. Userspace starts each
//! CPU's cursor at a random slot, so short bursts on a fresh service spread like long runs.

use core::sync::atomic::{Ordering, compiler_fence};

use aya_ebpf::{bindings::BPF_EXIST, helpers::bpf_ktime_get_ns};
use lb_common::{
    Flow, FlowKey, REAL_AVAILABLE, RING_SLOTS, Real, RealSlots, Reason, Schedule, Service,
    ring_index,
};

use crate::{
    Verdict,
    maps::{FLOWS, REALS, RING, RR_CURSOR, SCHEDULES},
};

/// A flow's `last_seen_ns` is rewritten at most this often, to keep shared cache lines quiet.
const LAST_SEEN_GRANULARITY_NS: u64 = 1_000_000_000;

pub struct Target {
    pub real_id: u32,
    pub real: Real,
    pub new_flow: bool,
}

/// The flow's real if it has one still available; otherwise a new flow, recorded, on
/// `preferred` (a real id of this service; 0 for none) if it is available, else on the real
/// the scheduler gives next.
#[inline(always)]
pub fn real(flow: &FlowKey, service: &Service, preferred: u32) -> Result<Target, Verdict> {
    let now = unsafe { bpf_ktime_get_ns() };
    // Copied out at once: an LRU element can be evicted and recycled for another flow while
    // we hold a pointer to it, so nothing is ever written through that pointer.
    if let Some(known) = unsafe { FLOWS.get(flow) }.copied() {
        if let Some(real) = available_real(known.real_id, service.id) {
            if now.wrapping_sub(known.last_seen_ns) > LAST_SEEN_GRANULARITY_NS {
                let refreshed = Flow {
                    last_seen_ns: now,
                    ..known
                };
                // By key, and only if the flow is still there: an evicted flow stays evicted.
                let _ = FLOWS.insert(flow, &refreshed, BPF_EXIST as u64);
            }
            return Ok(Target {
                real_id: known.real_id,
                real,
                new_flow: false,
            });
        }
        // Its real was removed or failed: the flow is scheduled anew, like LVS with
        // expire_nodest_conn.
    }

    let (real_id, real) = match available_real(preferred, service.id) {
        Some(real) => (preferred, real),
        None => {
            let real_id = next_in_ring(service).ok_or(Verdict::Drop(Reason::DropNoReal))?;
            let real =
                available_real(real_id, service.id).ok_or(Verdict::Drop(Reason::DropNoReal))?;
            (real_id, real)
        }
    };
    let entry = Flow {
        real_id,
        service_id: service.id,
        last_seen_ns: now,
    };
    // A full LRU evicts its oldest flow; insertion cannot fail for lack of room.
    let _ = FLOWS.insert(flow, &entry, 0);
    Ok(Target {
        real_id,
        real,
        new_flow: true,
    })
}

/// Whether the flow table holds this flow with a real of `service` that may take it.
#[inline(always)]
pub fn is_known(flow: &FlowKey, service: &Service) -> bool {
    match unsafe { FLOWS.get(flow) }.copied() {
        Some(known) => available_real(known.real_id, service.id).is_some(),
        None => false,
    }
}

/// The next real of the service's weighted round-robin schedule, on this CPU.
#[inline(always)]
fn next_in_ring(service: &Service) -> Option<u32> {
    let (half, ring_len) = current_ring(service)?;
    let cursor = RR_CURSOR.get_ptr_mut(service.id)?;
    let position = unsafe { *cursor };
    unsafe { *cursor = position.wrapping_add(1) };
    ring_slot(service, half, position.checked_rem(ring_len)?)
}

/// The real of the service's schedule that `hash` picks: the same real for the same hash
/// while the schedule stays, and reals in proportion to their weights over many hashes.
#[inline(always)]
pub fn hashed(service: &Service, hash: u32) -> Option<u32> {
    let (half, ring_len) = current_ring(service)?;
    ring_slot(service, half, hash.checked_rem(ring_len)?)
}

/// The half of the service's ring in use and its length, if it has any slot.
#[inline(always)]
fn current_ring(service: &Service) -> Option<(u8, u32)> {
    let schedule = SCHEDULES.get_ptr(service.id)?;
    // The generation once, then the half it names (see `Schedule`).
    let generation = unsafe { core::ptr::read_volatile(&(*schedule).generation) };
    compiler_fence(Ordering::Acquire);
    let half = Schedule::current_half(generation);
    let ring_len = unsafe { core::ptr::read_volatile(&(*schedule).lengths[half]) };
    if ring_len == 0 || ring_len > RING_SLOTS {
        return None;
    }
    Some((half as u8, ring_len))
}

#[inline(always)]
fn ring_slot(service: &Service, half: u8, slot: u32) -> Option<u32> {
    let real_id = *RING.get(ring_index(service.id, half, slot))?;
    (real_id != 0).then_some(real_id)
}

/// The real, if it may take packets of this service. The service check matters for flows:
/// a real id retired by one service may be given to another, and an old flow must then be
/// rescheduled, not follow the id.
#[inline(always)]
pub fn available_real(real_id: u32, service_id: u32) -> Option<Real> {
    if real_id == 0 {
        return None;
    }
    let slots = REALS.get_ptr(real_id)?;
    // One read of the generation (volatile, so the compiler reads it exactly once), then only
    // the copy it names (see `RealSlots`). The fence keeps the compiler from reading the copy
    // first (it costs no instruction); the CPU cannot, as its address depends on the
    // generation. A plain read lets the compiler load just the fields used.
    let generation = unsafe { core::ptr::read_volatile(&(*slots).generation) };
    compiler_fence(Ordering::Acquire);
    let real = unsafe { (*slots).slots[RealSlots::current_slot(generation)] };
    (real.flags & REAL_AVAILABLE != 0 && real.service_id == service_id).then_some(real)
}
