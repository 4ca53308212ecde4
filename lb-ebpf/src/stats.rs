//! Per-CPU counters, and the one function that turns a verdict into an XDP action.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{Counters, OutCounters, Reason};

use crate::{
    Forwarded, Verdict, capture,
    maps::{REAL_OUT_STATS, REAL_STATS, REASON_STATS, SERVICE_OUT_STATS, SERVICE_STATS, TX_PORTS},
};

/// The XDP action for `verdict`, counted under its reason (and, when forwarded, under its
/// service and real), and recorded if a capture (`lbadm dump`) wants it. `frame_len` is the
/// frame as received, all buffers. For the balancer program, whose frames keep the headers
/// they arrived with (direct routing only rewrites the Ethernet header).
#[inline(always)]
pub fn finish(ctx: &XdpContext, verdict: Verdict, frame_len: u64) -> u32 {
    finish_with(ctx, verdict, frame_len, false)
}

/// [`finish`] for the forwarding programs (tunnel, NAT, replies): a capture also records the
/// 5-tuple the balancer handed over, as the packet arrived, since these rewrite it.
#[inline(always)]
pub fn finish_handed_over(ctx: &XdpContext, verdict: Verdict, frame_len: u64) -> u32 {
    finish_with(ctx, verdict, frame_len, true)
}

#[inline(always)]
fn finish_with(ctx: &XdpContext, verdict: Verdict, frame_len: u64, handed_over: bool) -> u32 {
    let decided = decide(verdict);
    // Before counting: what only the capture needs is used up here, not carried across the
    // counters' lookups (which would keep it on the stack for every packet).
    if capture::armed() {
        // Built here, so that a packet with no capture armed stores none of it.
        let finished = capture::Finished {
            action: decided.action,
            reason: decided.reason,
            service_id: decided.service_id,
            real_id: decided.real_id,
            redirect_ifindex: decided.redirect_ifindex,
        };
        capture::record(ctx.ctx, &finished, handed_over);
    }
    count(decided.reason, decided.forwarded.as_ref(), frame_len);
    decided.action
}

/// The XDP action for `verdict`, counted without a capture: for the decapsulation program,
/// which runs on the reals, where no lbd arms one.
#[inline(always)]
pub fn count_only(verdict: Verdict, frame_len: u64) -> u32 {
    let decided = decide(verdict);
    count(decided.reason, decided.forwarded.as_ref(), frame_len);
    decided.action
}

/// What a verdict comes to.
struct Decided {
    reason: Reason,
    action: u32,
    /// What a forwarded packet counts under.
    forwarded: Option<Forwarded>,
    /// The forwarded packet's ids again, 0 when it is not forwarded, for the capture: set on
    /// every path, where `forwarded`'s are unset when it is `None` (read from there, they
    /// became a select of an unset register, which the verifier refuses).
    service_id: u32,
    real_id: u32,
    /// Where a redirect goes.
    redirect_ifindex: u32,
}

impl Decided {
    #[inline(always)]
    fn unforwarded(reason: Reason, action: u32) -> Self {
        Self {
            reason,
            action,
            forwarded: None,
            service_id: 0,
            real_id: 0,
            redirect_ifindex: 0,
        }
    }

    #[inline(always)]
    fn forwarded(reason: Reason, action: u32, forwarded: Forwarded, redirect_ifindex: u32) -> Self {
        Self {
            reason,
            action,
            service_id: forwarded.service_id,
            real_id: forwarded.real_id,
            forwarded: Some(forwarded),
            redirect_ifindex,
        }
    }
}

#[inline(always)]
fn decide(verdict: Verdict) -> Decided {
    match verdict {
        Verdict::Pass(reason) => Decided::unforwarded(reason, xdp_action::XDP_PASS),
        Verdict::Drop(reason) => Decided::unforwarded(reason, xdp_action::XDP_DROP),
        Verdict::Tx(forwarded) => {
            Decided::forwarded(forwarded.reason, xdp_action::XDP_TX, forwarded, 0)
        }
        // The lower bits of the flags are the action when the port is not in the map.
        Verdict::Redirect { ifindex, forwarded } => {
            match TX_PORTS.redirect(ifindex, u64::from(xdp_action::XDP_DROP)) {
                Ok(action) => {
                    Decided::forwarded(redirected(forwarded.reason), action, forwarded, ifindex)
                }
                Err(_) => Decided::unforwarded(Reason::DropRedirectFailed, xdp_action::XDP_DROP),
            }
        }
    }
}

#[inline(always)]
fn count(reason: Reason, forwarded: Option<&Forwarded>, frame_len: u64) {
    count_reason(reason, frame_len);
    if let Some(forwarded) = forwarded {
        count_forwarded(forwarded, frame_len);
    }
}

#[inline(always)]
fn count_reason(reason: Reason, frame_len: u64) {
    if let Some(counters) = REASON_STATS.get_ptr_mut(reason.index()) {
        bump(counters, frame_len, false);
    }
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

/// A client's packet counts as its service's and real's incoming traffic; a NAT reply, on
/// its way back to the client, as their outgoing traffic (ipvsadm's In and Out columns).
#[inline(always)]
fn count_forwarded(forwarded: &Forwarded, frame_len: u64) {
    if forwarded.reason == Reason::ForwardedReply {
        if let Some(counters) = SERVICE_OUT_STATS.get_ptr_mut(forwarded.service_id) {
            bump_out(counters, frame_len);
        }
        if let Some(counters) = REAL_OUT_STATS.get_ptr_mut(forwarded.real_id) {
            bump_out(counters, frame_len);
        }
        return;
    }
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

#[inline(always)]
fn bump_out(counters: *mut OutCounters, frame_len: u64) {
    // Per-CPU memory, as in `bump`.
    unsafe {
        (*counters).packets += 1;
        (*counters).bytes += frame_len;
    }
}
