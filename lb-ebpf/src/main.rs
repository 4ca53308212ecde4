//! The XDP data plane, read as a pipeline:
//!
//! `parse` (bounds-checked headers → flow key) → `lookup` (VIP:port/proto → service) →
//! `select` (flow table, else the service's scheduler) → `forward` (LVS-DR MAC rewrite) →
//! `stats` (the one place that turns a [`Verdict`] into an XDP action and counts it).
//!
//! Anything that is not for a configured service leaves with `XDP_PASS`, byte for byte as it
//! came in: the program writes to a frame only once it has chosen a real for it.
#![no_std]
#![no_main]

mod forward;
mod lookup;
mod maps;
mod parse;
mod select;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::Reason;

/// How a packet leaves the program. Every stage exits early with one of these.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// To the kernel stack, untouched.
    Pass(Reason),
    Drop(Reason),
    /// Back out of the interface it came in on.
    Tx,
    /// Out of another interface.
    Redirect {
        ifindex: u32,
    },
}

/// The load balancer. Attached to every interface listed in the config.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let verdict = balance(&ctx);
    stats::finish(&ctx, verdict)
}

fn balance(ctx: &XdpContext) -> Verdict {
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(reason) => return Verdict::Pass(reason),
    };
    let Some(service) = lookup::service(&packet.flow) else {
        return Verdict::Pass(Reason::PassNoService);
    };
    let target = match select::real(&packet.flow, &service) {
        Ok(target) => target,
        Err(verdict) => return verdict,
    };
    let verdict = forward::direct_route(ctx, &target.real);
    if matches!(verdict, Verdict::Tx | Verdict::Redirect { .. }) {
        stats::forwarded(
            service.id,
            target.real_id,
            packet.frame_len,
            target.new_flow,
        );
    }
    verdict
}

/// Does nothing but pass. Attached to the far end of a veth pair that receives frames sent
/// with `XDP_TX`/`XDP_REDIRECT`: veth drops such frames unless its peer runs an XDP program.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; there is no panic at run time.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
