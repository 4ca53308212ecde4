//! Per-CPU counters, and the one function that turns a verdict into an XDP action.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_redirect, programs::XdpContext};
use lb_common::{Counters, Reason};

use crate::{
    Verdict,
    maps::{REAL_STATS, REASON_STATS, SERVICE_STATS},
};

#[inline(always)]
pub fn finish(ctx: &XdpContext, verdict: Verdict) -> u32 {
    let (reason, action) = match verdict {
        Verdict::Pass(reason) => (reason, xdp_action::XDP_PASS),
        Verdict::Drop(reason) => (reason, xdp_action::XDP_DROP),
        Verdict::Tx => (Reason::ForwardedTx, xdp_action::XDP_TX),
        Verdict::Redirect { ifindex } => (Reason::ForwardedRedirect, unsafe {
            bpf_redirect(ifindex, 0) as u32
        }),
    };
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(counters) = REASON_STATS.get_ptr_mut(reason.index()) {
        bump(counters, frame_len, false);
    }
    action
}

#[inline(always)]
pub fn forwarded(service_id: u32, real_id: u32, frame_len: u64, new_flow: bool) {
    if let Some(counters) = SERVICE_STATS.get_ptr_mut(service_id) {
        bump(counters, frame_len, new_flow);
    }
    if let Some(counters) = REAL_STATS.get_ptr_mut(real_id) {
        bump(counters, frame_len, new_flow);
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
