//! Per-CPU counters, and the one function that turns a verdict into an XDP action.

use aya_ebpf::bindings::xdp_action;
use lb_common::{Counters, Reason};

use crate::{
    Forwarded, Verdict,
    maps::{REAL_STATS, REASON_STATS, SERVICE_STATS, TX_PORTS},
};

/// The XDP action for `verdict`, counted under its reason (and, when forwarded, under its
/// service and real). `frame_len` is the frame as received, all buffers.
#[inline(always)]
pub fn finish(verdict: Verdict, frame_len: u64) -> u32 {
    let (reason, action, forwarded) = match verdict {
        Verdict::Pass(reason) => (reason, xdp_action::XDP_PASS, None),
        Verdict::Drop(reason) => (reason, xdp_action::XDP_DROP, None),
        Verdict::Tx(forwarded) => (forwarded.reason, xdp_action::XDP_TX, Some(forwarded)),
        // The lower bits of the flags are the action when the port is not in the map.
        Verdict::Redirect { ifindex, forwarded } => {
            match TX_PORTS.redirect(ifindex, u64::from(xdp_action::XDP_DROP)) {
                Ok(action) => (redirected(forwarded.reason), action, Some(forwarded)),
                Err(_) => (Reason::DropRedirectFailed, xdp_action::XDP_DROP, None),
            }
        }
    };
    if let Some(counters) = REASON_STATS.get_ptr_mut(reason.index()) {
        bump(counters, frame_len, false);
    }
    if let Some(forwarded) = forwarded {
        count_forwarded(&forwarded, frame_len);
    }
    action
}

/// What a redirected packet is counted under: whole packets apart from those sent back out
/// of their interface; fragments and ICMP errors under their own reason either way.
#[inline(always)]
fn redirected(reason: Reason) -> Reason {
    match reason {
        Reason::ForwardedTx => Reason::ForwardedRedirect,
        other => other,
    }
}

#[inline(always)]
fn count_forwarded(forwarded: &Forwarded, frame_len: u64) {
    if let Some(counters) = SERVICE_STATS.get_ptr_mut(forwarded.service_id) {
        bump(counters, frame_len, forwarded.new_flow);
    }
    if let Some(counters) = REAL_STATS.get_ptr_mut(forwarded.real_id) {
        bump(counters, frame_len, forwarded.new_flow);
    }
}

#[inline(always)]
fn bump(counters: *mut Counters, frame_len: u64, new_flow: bool) {
    // Per-CPU memory: plain read-modify-write is safe; XDP does not preempt itself on a CPU.
    unsafe {
        (*counters).packets += 1;
        (*counters).bytes += frame_len;
        if new_flow {
            (*counters).new_flows += 1;
        }
    }
}
