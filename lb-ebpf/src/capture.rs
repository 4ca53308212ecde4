//! `lbadm dump`: a copy of each finished packet, with what the program did to it, in a ring
//! buffer, while lbd has a capture armed (`lb_common::capture`).
//!
//! Called from `stats`, where every program (the balancer and the forwarding programs it
//! tail-calls) finishes its packets, so a capture sees every verdict, and each frame as it
//! leaves (rewritten, encapsulated). Without a capture a packet pays [`armed`]: a load of
//! the program's `CAPTURE` global and a branch. All the rest is [`record`], a function of
//! its own called once a capture is armed. A record is written straight into ring-buffer
//! memory (the stack has no room for it), the frame's first bytes copied there by
//! `bpf_xdp_load_bytes`, which reads across the buffers of a multi-buffer frame.

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    },
    programs::XdpContext,
};
use lb_common::{
    FlowKey, Reason,
    capture::{CAPTURE_HAS_ORIGINAL, CAPTURE_SNAP_LEN, Capture, CaptureRecord},
};

use crate::maps::{CAPTURE, CAPTURE_RING, FORWARD_SCRATCH};

/// What `stats` decided for a packet.
pub struct Finished {
    pub action: u32,
    pub reason: Reason,
    /// The service and real it was counted under; 0 for none (passed, dropped).
    pub service_id: u32,
    pub real_id: u32,
    /// The interface an `XDP_REDIRECT` sends it to.
    pub redirect_ifindex: u32,
}

/// Whether a capture is armed: the one test (a load and a branch) a packet pays for when
/// nobody dumps.
#[inline(always)]
pub fn armed() -> bool {
    // SAFETY: the program's global, valid for its lifetime; any value lbd wrote is valid.
    unsafe { core::ptr::read_volatile(&raw const CAPTURE.session) != 0 }
}

/// Records the packet if the armed capture has not expired and its filter takes it.
/// `handed_over`: the packet was rewritten by a forwarding program, and the 5-tuple the
/// balancer handed it is the packet as it arrived.
///
/// A function of its own (a BPF-to-BPF call), called only once [`armed`] says so: the packet
/// path without a capture carries none of its code, registers or stack.
///
/// `#[cold]`, so the caller lays the call out of the way, but kept in `.text`: cold code goes
/// to `.text.unlikely.` otherwise, and aya-obj 0.3 keys the functions it links by their
/// offset alone, so the call went to the function at the same offset of `.text` (the
/// verifier found `least_conn_member` called).
#[cold]
#[inline(never)]
#[unsafe(link_section = ".text")]
pub fn record(ctx: *mut xdp_md, finished: &Finished, handed_over: bool) {
    let ctx = XdpContext::new(ctx);
    // SAFETY: the program's global; lbd rewrites it whole, and each field read is either
    // value (a run that reads it half-way records under the old filter: lbd filters again).
    let Capture {
        session,
        service_id: want_service,
        real_id: want_real,
        expires_ns,
        ..
    } = unsafe { core::ptr::read_volatile(&raw const CAPTURE) };
    // A capture whose lbd stopped pushing its expiry on (killed, and no lbd since to turn it
    // off) is off.
    if session == 0 || unsafe { bpf_ktime_get_ns() } >= expires_ns {
        return;
    }
    if (want_service != 0 && want_service != finished.service_id)
        || (want_real != 0 && want_real != finished.real_id)
    {
        return;
    }
    write(&ctx, session, finished, handed_over);
}

/// Reserves a record, fills it and submits it (a full ring loses the packet: the capture
/// must never slow forwarding down).
#[inline(always)]
fn write(ctx: &XdpContext, session: u32, finished: &Finished, handed_over: bool) {
    let Some(mut entry) = CAPTURE_RING.reserve::<CaptureRecord>(0) else {
        return;
    };
    let record = entry.as_mut_ptr();
    let ingress_ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    let mut captured_len = frame_len;
    if captured_len > CAPTURE_SNAP_LEN as u32 {
        captured_len = CAPTURE_SNAP_LEN as u32;
    }
    // SAFETY: `record` is the reserved entry, as large as a `CaptureRecord` and 8-aligned;
    // fields are written through the pointer, never read before.
    unsafe {
        (*record).session = session;
        (*record).action = finished.action;
        (*record).reason = finished.reason.index();
        (*record).service_id = finished.service_id;
        (*record).real_id = finished.real_id;
        (*record).ingress_ifindex = ingress_ifindex;
        (*record).egress_ifindex = match finished.action {
            xdp_action::XDP_TX => ingress_ifindex,
            xdp_action::XDP_REDIRECT => finished.redirect_ifindex,
            _ => 0,
        };
        (*record).frame_len = frame_len;
        (*record).time_ns = bpf_ktime_get_ns();
        (*record).flags = 0;
        // Only for what a forwarding program sent on: what it passed or dropped is as it came.
        let sent = matches!(
            finished.action,
            xdp_action::XDP_TX | xdp_action::XDP_REDIRECT
        );
        if handed_over
            && sent
            && let Some(handoff) = FORWARD_SCRATCH.get_ptr(0)
        {
            copy_flow(&raw mut (*record).original, &raw const (*handoff).flow);
            (*record).flags = CAPTURE_HAS_ORIGINAL;
        }
        (*record).captured_len = captured_len;
        if captured_len != 0 {
            // Read back, so the compiler cannot fold the mask away: with it the verifier
            // sees a length of 1 to CAPTURE_SNAP_LEN (the clamp above it does not follow).
            let len = core::ptr::read_volatile(&raw const (*record).captured_len);
            let len = (len.wrapping_sub(1) & (CAPTURE_SNAP_LEN as u32 - 1)) + 1;
            if bpf_xdp_load_bytes(ctx.ctx, 0, (&raw mut (*record).data).cast(), len) != 0 {
                (*record).captured_len = 0;
            }
        }
    }
    entry.submit(0);
}

/// Copies a flow key a word at a time: a plain assignment between two pointers becomes a
/// `memcpy` call (a BPF-to-BPF call).
///
/// # Safety
/// Both point at 8-aligned `FlowKey`s.
#[inline(always)]
unsafe fn copy_flow(to: *mut FlowKey, from: *const FlowKey) {
    let (to, from) = (to.cast::<u64>(), from.cast::<u64>());
    let mut word = 0;
    while word < core::mem::size_of::<FlowKey>() / 8 {
        unsafe {
            core::ptr::write_volatile(to.add(word), core::ptr::read_volatile(from.add(word)))
        };
        word += 1;
    }
}
const _: () = assert!(CAPTURE_SNAP_LEN.is_power_of_two());
