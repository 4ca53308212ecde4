//! Connection tracking: a known flow's state moved by the packet, expiry, and each real's
//! active and inactive connection counts.
//!
//! The state machine and timeouts are `lb_common::conntrack`'s (IPVS's input-only table). The
//! counts in `CONNS` are exact because a flow leaves the table only through a delete, and
//! whoever's delete succeeds (this program, or lbd's sweep of expired flows) takes the flow out
//! of its real's count; a state change is counted only by the packet whose update of the entry
//! succeeded. Counts are shared memory changed with atomic adds, only when a flow starts,
//! changes state or ends, never for a packet that changes nothing.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{bindings::BPF_EXIST, helpers::generated::bpf_ktime_get_coarse_ns};
use lb_common::{
    ConnCounts, Flow, FlowKey, PROTO_TCP, REAL_TAKES_NEW_FLOWS, Real, Settings,
    conntrack::{
        DEFAULT_TIMEOUTS_S, STATE_ESTABLISHED, STATE_SLOTS, STATE_SYN_RECV, next_tcp_state,
        opens_connection,
    },
};

use crate::maps::{CONNS, FLOWS, SETTINGS};

pub use lb_common::conntrack::LAST_SEEN_GRANULARITY_NS;

/// The flow table's clock (CLOCK_MONOTONIC, as `Flow::last_seen_ns` and lbd's sweep count
/// it), as of the last timer tick.
///
/// Coarse because a flow's times are kept to the second (`LAST_SEEN_GRANULARITY_NS`) and
/// timeouts are whole seconds, while reading the clock source for the exact time
/// (`bpf_ktime_get_ns`) cost a tenth of a known flow's packet. The coarse time lags by at
/// most a tick (1 to 10 ms): lbd, reading flows against the exact time, sees them that much
/// idler, which only moves an expiry within the second it may already fall anywhere in.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments, available to every program type since Linux 5.11.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// What becomes of a known flow when one of its packets arrives.
pub enum Known {
    /// It lives on: the packet goes to its real.
    Lives,
    /// It had expired, or its real can no longer take it: it is no longer in the table.
    Gone,
}

/// Moves the flow `known` (found under `key`) on by a packet with `tcp_flags` at `now`, if it
/// is still alive and its real may still take it (`real` is its entry, `None` if it is gone
/// or failed); otherwise removes it from the table and its real's count.
///
/// A bare SYN on a flow that was closing or closed opens a new connection on the same
/// 5-tuple (IPVS's input-only table sends it to SYN_RECV): it stays on the flow's real only if
/// that real still takes new flows, so a drained real gets no new connection this way.
#[inline(always)]
pub fn follow(key: &FlowKey, known: &Flow, tcp_flags: u8, now: u64, real: Option<&Real>) -> Known {
    // Saturating: another CPU may have written a `last_seen_ns` later than this packet's
    // `now`, read before the lookup.
    let idle = now.saturating_sub(known.last_seen_ns);
    let old_state = known.state as u8;
    let state = if key.protocol == PROTO_TCP {
        next_tcp_state(old_state, tcp_flags)
    } else {
        old_state
    };
    let reopened = key.protocol == PROTO_TCP
        && opens_connection(tcp_flags)
        && old_state != STATE_SYN_RECV
        && old_state != STATE_ESTABLISHED;
    let real_ok = match real {
        Some(real) => !reopened || real.flags & REAL_TAKES_NEW_FLOWS != 0,
        None => false,
    };
    if real_ok {
        if state == old_state && idle <= LAST_SEEN_GRANULARITY_NS {
            return Known::Lives;
        }
        if idle <= expires_after_ns(old_state) {
            let refreshed = Flow {
                last_seen_ns: now,
                state: u32::from(state),
                ..*known
            };
            // By key, and only if the flow is still there: if lbd's sweep took it meanwhile,
            // the sweep counted it out, and this packet must not count it again.
            let updated = FLOWS.insert(key, &refreshed, BPF_EXIST as u64).is_ok();
            if updated && state != old_state {
                count(known.real_id, old_state, -1);
                count(known.real_id, state, 1);
            }
            return Known::Lives;
        }
    }
    forget(key, known);
    Known::Gone
}

/// Whether the flow `known` is alive at `now` (not expired); used where a packet may look at a
/// flow but not move it (ICMP errors, fragments).
#[inline(always)]
pub fn is_alive(known: &Flow, now: u64) -> bool {
    let idle = now.saturating_sub(known.last_seen_ns);
    idle <= LAST_SEEN_GRANULARITY_NS || idle <= expires_after_ns(known.state as u8)
}

/// A NAT flow's reply passed: the flow (`known`, found under `key`) has been seen, as IPVS's
/// NAT counts both directions. Its state is the client's to move; only its last-seen time is
/// refreshed, at most once a second like the client's packets do.
#[inline(always)]
pub fn reply_seen(key: &FlowKey, known: &Flow, now: u64) {
    if now.saturating_sub(known.last_seen_ns) <= LAST_SEEN_GRANULARITY_NS {
        return;
    }
    let refreshed = Flow {
        last_seen_ns: now,
        ..*known
    };
    // Only if the flow is still there (see `follow`).
    let _ = FLOWS.insert(key, &refreshed, BPF_EXIST as u64);
}

/// Removes a flow from the table and, if this delete is the one that took it, from its real's
/// count.
#[inline(always)]
pub fn forget(key: &FlowKey, known: &Flow) {
    if FLOWS.remove(key).is_ok() {
        count(known.real_id, known.state as u8, -1);
    }
}

/// Adds `delta` to the count of `real_id`'s connections of `state`'s kind.
#[inline(always)]
pub fn count(real_id: u32, state: u8, delta: i64) {
    let Some(counts) = CONNS.get_ptr_mut(real_id) else {
        return;
    };
    // SAFETY: a map value, valid for the map's lifetime.
    let counter = unsafe { ConnCounts::counter(counts, state) };
    // An atomic add (BPF `lock xadd`): the BPF target has no compare-and-swap, so core's
    // `AtomicU64` offers no `fetch_add` there, but the instruction itself exists.
    // SAFETY: a valid, aligned map value for the map's lifetime; lbd changes it only with
    // atomic operations too.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, delta as u64) };
}

/// How long after its last-seen time a flow in `state` is gone, from lbd's settings (IPVS's
/// defaults where unset).
#[inline(always)]
fn expires_after_ns(state: u8) -> u64 {
    match SETTINGS.get(0) {
        Some(settings) => settings.expires_after_ns(state),
        None => Settings {
            timeouts_s: DEFAULT_TIMEOUTS_S,
            flags: 0,
            _pad: 0,
        }
        .expires_after_ns(state % STATE_SLOTS as u8),
    }
}
