//! Which real gets the packet: the flow table first, the scheduler for new flows.
//!
//! Schedulers stay trivial here: userspace writes each service's weighted schedule into its
//! slice of the ring (see `schedule.rs` in lb-userspace), and the kernel walks it with a
//! per-CPU cursor, so no two CPUs ever write the same memory per packet. Userspace starts each
//! CPU's cursor at a random slot, so short bursts on a fresh service spread like long runs.

use core::sync::atomic::{Ordering, compiler_fence};

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns};
use lb_common::{
    Flow, FlowKey, PROTO_TCP, REAL_AVAILABLE, RING_SLOTS, Real, RealSlots, Reason, Schedule,
    Service,
    conntrack::{STATE_ESTABLISHED, STATE_SYN_RECV, STATE_UDP, next_tcp_state, opens_connection},
    ring_index,
};

use crate::{
    Verdict,
    conntrack::{self, Known},
    maps::{FLOWS, REALS, RING, RR_CURSOR, SCHEDULES},
};

/// `-EEXIST`: another CPU recorded the same new flow first.
const EEXIST: i32 = -17;

pub struct Target {
    pub real_id: u32,
    pub real: Real,
    pub new_flow: bool,
    /// A TCP segment without SYN that had no flow, placed by a stable answer
    /// (`Reason::ForwardedMidStream`).
    pub mid_stream: bool,
}

/// The flow's real if it is alive and its real may still take it (its state moved on by the
/// packet's `tcp_flags`); otherwise a new flow, recorded, on `preferred` (a real id of this
/// service; 0 for none) if it is available, else on the real the scheduler gives next.
///
/// New TCP flows start only with a SYN. A TCP segment without SYN and without a live flow is
/// placed only where an answer that does not change between packets points; without one it
/// passes (`PassTcpNoFlow`).
#[inline(always)]
pub fn real(
    flow: &FlowKey,
    service: &Service,
    preferred: u32,
    tcp_flags: u8,
) -> Result<Target, Verdict> {
    let now = unsafe { bpf_ktime_get_ns() };
    // Copied out at once: an element can be deleted and reused for another flow while we
    // hold a pointer to it, so nothing is ever written through that pointer.
    if let Some(known) = unsafe { FLOWS.get(flow) }.copied() {
        let real = available_real(known.real_id, service.id);
        // A flow whose real was removed or failed is forgotten, like LVS with
        // expire_nodest_conn; its packet is then handled as one without a flow.
        if let (Known::Lives, Some(real)) = (
            conntrack::follow(flow, &known, tcp_flags, now, real.is_some()),
            real,
        ) {
            return Ok(Target {
                real_id: known.real_id,
                real,
                new_flow: false,
                mid_stream: false,
            });
        }
    }

    let tcp = flow.protocol == PROTO_TCP;
    let mid_stream = tcp && !opens_connection(tcp_flags);
    let (real_id, real) = if mid_stream {
        stable_real(flow, service).ok_or(Verdict::Pass(Reason::PassTcpNoFlow))?
    } else {
        match available_real(preferred, service.id) {
            Some(real) => (preferred, real),
            None => {
                let real_id = next_in_ring(service).ok_or(Verdict::Drop(Reason::DropNoReal))?;
                let real =
                    available_real(real_id, service.id).ok_or(Verdict::Drop(Reason::DropNoReal))?;
                (real_id, real)
            }
        }
    };
    let state = if !tcp {
        STATE_UDP
    } else if mid_stream {
        next_tcp_state(STATE_ESTABLISHED, tcp_flags)
    } else {
        STATE_SYN_RECV
    };
    let entry = Flow {
        real_id,
        service_id: service.id,
        last_seen_ns: now,
        state: u32::from(state),
        reserved_word: 0,
        reserved: 0,
    };
    match FLOWS.insert(flow, &entry, BPF_NOEXIST as u64) {
        Ok(()) => conntrack::count(real_id, state, 1),
        // Another CPU recorded this flow a moment ago (and counted it): same packet stream,
        // this one goes where it was about to.
        Err(error) if error == EEXIST => {}
        // The table is full of live flows: refuse the flow rather than forward it untracked.
        Err(_) => return Err(Verdict::Drop(Reason::DropFlowTableFull)),
    }
    Ok(Target {
        real_id,
        real,
        new_flow: true,
        mid_stream,
    })
}

/// Where a packet of `flow` goes every time, whatever came before it, if the service's
/// scheduler gives such an answer; `None` for the walking schedulers (rr, wrr).
#[inline(always)]
fn stable_real(_flow: &FlowKey, _service: &Service) -> Option<(u32, Real)> {
    None
}

/// Whether the flow table holds this flow, alive, with a real of `service` that may take it.
#[inline(always)]
pub fn is_known(flow: &FlowKey, service: &Service) -> bool {
    match unsafe { FLOWS.get(flow) }.copied() {
        Some(known) => {
            conntrack::is_alive(&known, unsafe { bpf_ktime_get_ns() })
                && available_real(known.real_id, service.id).is_some()
        }
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
