//! The schedulers: which real a new flow of a service gets, read from the service's table in
//! `TABLES` (see `Schedule`). Userspace computes every table (rings, Maglev tables, member
//! lists); the program only indexes them, walks them, or, for least-connection, compares the
//! live counts of a bounded list.
//!
//! - `rr`/`wrr` walk the ring with a per-CPU cursor: no two CPUs write the same memory, and
//!   userspace starts each CPU at a random slot so short bursts spread like long runs;
//! - `sh` indexes the weighted ring by a hash of the client's address, `mh` the Maglev table
//!   by a hash of the 5-tuple: the same packet gets the same answer on every balancer with the
//!   same config, which is what a segment that finds no flow can be placed by;
//! - `lc`/`wlc` compare `active × 256 + inactive` (per weight for `wlc`) over the service's
//!   reals, IPVS's rule, from the counts of this very moment, so a burst spreads by the rule;
//! - persistence, on any of them, sends a client (its address under the service's prefix)
//!   back to the real its last flow had, while that was recent enough.

use core::{
    ffi::c_void,
    sync::atomic::{Ordering, compiler_fence},
};

use aya_ebpf::helpers::generated::bpf_loop;

use lb_common::{
    FlowKey, MAX_LEAST_CONN_REALS, Persistence, PersistenceKey, REAL_AVAILABLE,
    REAL_TAKES_NEW_FLOWS, SCHED_LEAST_CONN, SCHED_MAGLEV, SCHED_SOURCE_HASH,
    SCHED_WEIGHTED_LEAST_CONN, Schedule, Service, hash,
};

use crate::{
    conntrack::LAST_SEEN_GRANULARITY_NS,
    maps::{CONNS, PERSISTENCE, RR_CURSOR, SCHEDULES, TABLES},
    select::available_real,
};

/// The real for a new flow of `service`, by its scheduler and persistence.
#[inline(always)]
pub fn new_flow(flow: &FlowKey, service: &Service, now: u64) -> Option<u32> {
    if service.persistence_s == 0 {
        return scheduled(flow, service);
    }
    let key = persistence_key(flow, service);
    if let Some(real_id) = persistent_real(&key, service, now, REAL_TAKES_NEW_FLOWS) {
        return Some(real_id);
    }
    let real_id = scheduled(flow, service)?;
    let entry = Persistence {
        real_id,
        _pad: 0,
        last_seen_ns: now,
    };
    // An LRU: a full map forgets its oldest client.
    let _ = PERSISTENCE.insert(&key, &entry, 0);
    Some(real_id)
}

/// Where a packet of `flow` goes whatever came before it: the client's persistence entry, or
/// the hash of a hashing scheduler; `None` for the others: a TCP segment with no flow is never
/// handed to a real chosen at random.
#[inline(always)]
pub fn stable(flow: &FlowKey, service: &Service, now: u64) -> Option<u32> {
    if service.persistence_s != 0 {
        let key = persistence_key(flow, service);
        // A draining real still has the client's connections.
        if let Some(real_id) = persistent_real(&key, service, now, REAL_AVAILABLE) {
            return Some(real_id);
        }
    }
    match service.scheduler {
        SCHED_SOURCE_HASH => hashed(service, hash::source(flow)),
        SCHED_MAGLEV => hashed(service, hash::connection(flow)),
        _ => None,
    }
}

/// Keeps a persistent client's entry fresh while one of its flows is alive, at most once a
/// second (like a flow's `last_seen`). Only an entry naming this flow's real is refreshed (or
/// one written, if the client has none): a flow left on a drained real must not pull the
/// client's new connections back to it (IPVS's templates behave alike).
#[inline(always)]
pub fn flow_seen(flow: &FlowKey, service: &Service, real_id: u32, now: u64) {
    if service.persistence_s == 0 {
        return;
    }
    let key = persistence_key(flow, service);
    let refresh = match unsafe { PERSISTENCE.get(&key) }.copied() {
        Some(entry) => {
            entry.real_id == real_id
                && now.saturating_sub(entry.last_seen_ns) > LAST_SEEN_GRANULARITY_NS
        }
        None => true,
    };
    if refresh {
        let entry = Persistence {
            real_id,
            _pad: 0,
            last_seen_ns: now,
        };
        let _ = PERSISTENCE.insert(&key, &entry, 0);
    }
}

#[inline(always)]
fn scheduled(flow: &FlowKey, service: &Service) -> Option<u32> {
    match service.scheduler {
        SCHED_SOURCE_HASH => hashed(service, hash::source(flow)),
        SCHED_MAGLEV => hashed(service, hash::connection(flow)),
        SCHED_LEAST_CONN => least_connections(service, false),
        SCHED_WEIGHTED_LEAST_CONN => least_connections(service, true),
        _ => next_in_ring(service),
    }
}

/// The real of the client's persistence entry, if the entry is recent enough and its real has
/// `required` (a `REAL_*` flag) for this service.
#[inline(always)]
fn persistent_real(
    key: &PersistenceKey,
    service: &Service,
    now: u64,
    required: u32,
) -> Option<u32> {
    let entry = unsafe { PERSISTENCE.get(key) }.copied()?;
    let timeout = u64::from(service.persistence_s) * 1_000_000_000;
    // Saturating: another CPU may have refreshed the entry after this packet read `now`.
    if now.saturating_sub(entry.last_seen_ns) > timeout {
        return None;
    }
    let real = available_real(entry.real_id, service.id)?;
    (real.flags & required != 0).then_some(entry.real_id)
}

/// The client's address under the service's persistence prefix (ipvsadm `-M`).
#[inline(always)]
fn persistence_key(flow: &FlowKey, service: &Service) -> PersistenceKey {
    let prefix = u32::from(service.persistence_prefix);
    // The address as two words as they lie in memory (network order); the masks are built in
    // the host's order and turned to network order to match. `FlowKey` is 8-aligned, and
    // the address its first field.
    let words: [u64; 2] = unsafe { core::mem::transmute(flow.src) };
    let high_mask = match prefix {
        0 => 0,
        1..=63 => u64::MAX << (64 - prefix),
        _ => u64::MAX,
    };
    let low_mask = match prefix {
        0..=64 => 0,
        65..=127 => u64::MAX << (128 - prefix),
        _ => u64::MAX,
    };
    let masked = [words[0] & high_mask.to_be(), words[1] & low_mask.to_be()];
    PersistenceKey {
        client: unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(masked) },
        service_id: service.id,
        family: u32::from(flow.family),
    }
}

/// The next real of the service's round-robin ring, on this CPU.
#[inline(always)]
fn next_in_ring(service: &Service) -> Option<u32> {
    let (base, len) = current_table(service)?;
    let cursor = RR_CURSOR.get_ptr_mut(service.id)?;
    let position = unsafe { *cursor };
    unsafe { *cursor = position.wrapping_add(1) };
    table_slot(base, position.checked_rem(len)?)
}

/// The real of the service's table that `hash` picks: the same real for the same hash while
/// the table stays, and reals in proportion to their share of the table over many hashes.
#[inline(always)]
pub fn hashed(service: &Service, hash: u32) -> Option<u32> {
    let (base, len) = current_table(service)?;
    table_slot(base, hash.checked_rem(len)?)
}

/// IPVS's least-connection rule over the service's (real id, weight) pairs: the least
/// `active × 256 + inactive`, divided by the weight for `wlc`; ties go to the earlier real.
///
/// The walk is a `bpf_loop` over a callback, not a loop in this function: the verifier checks
/// a callback once, while it would follow every path through every iteration of a loop, and
/// the comparisons in its body make those paths multiply with each real.
#[inline(always)]
fn least_connections(service: &Service, weighted: bool) -> Option<u32> {
    let (base, len) = current_table(service)?;
    let mut walk = LeastConnWalk {
        base,
        members: len / 2,
        weighted: u32::from(weighted),
        best: 0,
        best_overhead: 0,
        best_weight: 1,
    };
    let callback = least_conn_member as *const ();
    unsafe {
        bpf_loop(
            MAX_LEAST_CONN_REALS,
            callback as *mut c_void,
            (&raw mut walk).cast(),
            0,
        )
    };
    (walk.best != 0).then_some(walk.best)
}

/// The state of a least-connection walk, shared with each call of [`least_conn_member`].
///
/// The fields that start at zero are kept apart by ones that do not: the compiler turns a run
/// of zeroed fields of a struct whose address escapes into a `memset` call.
#[repr(C)]
struct LeastConnWalk {
    best: u32,
    base: u32,
    best_overhead: u64,
    best_weight: u64,
    members: u32,
    weighted: u32,
}

/// One real of a least-connection walk: takes it if it beats the best so far. Returns 1 to
/// end the walk (past the last real), 0 to go on.
extern "C" fn least_conn_member(index: u64, context: *mut c_void) -> i64 {
    let walk = unsafe { &mut *context.cast::<LeastConnWalk>() };
    let member = index as u32;
    if member >= walk.members {
        return 1;
    }
    let at = walk.base.wrapping_add(2 * member);
    let (Some(&real_id), Some(&weight)) = (TABLES.get(at), TABLES.get(at.wrapping_add(1))) else {
        return 1;
    };
    if real_id == 0 || weight == 0 {
        return 0;
    }
    let weight = if walk.weighted != 0 {
        u64::from(weight)
    } else {
        1
    };
    let overhead = overhead(real_id);
    // overhead / weight < best_overhead / best_weight, without dividing.
    if walk.best == 0 || overhead * walk.best_weight < walk.best_overhead * weight {
        walk.best = real_id;
        walk.best_overhead = overhead;
        walk.best_weight = weight;
    }
    0
}

/// IPVS's connection overhead of a real: established connections weigh 256 times the others.
#[inline(always)]
fn overhead(real_id: u32) -> u64 {
    let Some(counts) = CONNS.get(real_id) else {
        return 0;
    };
    // Counts are two's complement and may be -1 for a moment (see `ConnCounts`).
    let count = |raw: u64| {
        if (raw as i64) < 0 {
            0
        } else {
            raw.min(u64::from(u32::MAX))
        }
    };
    (count(counts.active) << 8) + count(counts.inactive)
}

/// Where the half of the service's table in use lies, if it has any slot.
#[inline(always)]
fn current_table(service: &Service) -> Option<(u32, u32)> {
    let schedule = SCHEDULES.get_ptr(service.id)?;
    // The generation once, then the half it names (see `Schedule`).
    let generation = unsafe { core::ptr::read_volatile(&(*schedule).generation) };
    compiler_fence(Ordering::Acquire);
    let half = Schedule::current_half(generation);
    let range = unsafe { core::ptr::read_volatile(&(*schedule).halves[half]) };
    if range.len == 0 {
        return None;
    }
    Some((range.base, range.len))
}

#[inline(always)]
fn table_slot(base: u32, slot: u32) -> Option<u32> {
    let real_id = *TABLES.get(base.wrapping_add(slot))?;
    (real_id != 0).then_some(real_id)
}
