//! The XDP data plane, read as a pipeline:
//!
//! `parse` (bounds-checked headers → what the datagram is, and its flow key) → `lookup`
//! (VIP:port/proto → service) → `select` (the flow table, whose connection states and counts
//! `conntrack` keeps; else the service's scheduler in `schedulers`) → `forward` (by the real's
//! method: direct routing, IPIP/GUE tunnel, NAT or full NAT; and NAT replies translated back)
//! → `stats` (the one place that turns a [`Verdict`] into an XDP action and counts it, and
//! where `capture` copies the packet for `lbadm dump` while a capture is armed).
//!
//! Whole TCP/UDP packets take that path as it reads; fragments are placed by `frag` (one
//! real per datagram) and ICMP errors by `icmp` (the real of the flow they quote), both with
//! the same `lookup` and `select`, and all leave through the same `forward`. IPv4 and IPv6
//! share every stage: keys hold either family.
//!
//! Anything that is not for a configured service leaves with `XDP_PASS`, byte for byte as it
//! came in: the program writes to a frame only once it has chosen a real for it.
//!
//! A second program, `lb_decap`, runs on the reals of tunnel-mode services instead: `decap`
//! takes the IPIP or GUE header off packets for a local VIP (the kernel's own tunnel modules
//! may be missing) and counts them through the same `stats`.
//!
//! Every program is built for multi-buffer frames (`xdp.frags`), so they attach natively to
//! interfaces with a jumbo MTU.
#![no_std]
#![no_main]
// `atomic_xadd`, for the connection counts (see `conntrack::count`).
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics, for atomic_xadd")]

mod capture;
mod conntrack;
mod decap;
mod forward;
mod frag;
mod icmp;
mod lookup;
mod maps;
mod parse;
mod schedulers;
mod select;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::Reason;
use parse::Kind;
use select::Target;

/// How a packet leaves the program. Every stage exits early with one of these.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// To the kernel stack, untouched.
    Pass(Reason),
    Drop(Reason),
    /// Back out of the interface it came in on.
    Tx(Forwarded),
    /// Out of another interface the program runs on.
    Redirect {
        ifindex: u32,
        forwarded: Forwarded,
    },
}

/// What a forwarded packet is counted under.
#[derive(Clone, Copy)]
pub struct Forwarded {
    pub service_id: u32,
    pub real_id: u32,
    pub new_flow: bool,
    /// [`Reason::ForwardedTx`] for a whole packet (counted as `ForwardedRedirect` when
    /// redirected), or the fragment or ICMP reason it is counted under whichever way it left.
    pub reason: Reason,
}

/// The load balancer. Attached to every interface listed in the config.
#[xdp(frags)]
// Inlined into the entry point the macro wraps around it: with the schedulers a function of
// their own, the compiler would otherwise make the whole program a second call.
#[inline(always)]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let (verdict, frame_len) = balance(&ctx);
    stats::finish(&ctx, verdict, frame_len)
}

/// The verdict, and the frame's length as received.
#[inline(always)]
fn balance(ctx: &XdpContext) -> (Verdict, u64) {
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(reason) => return (Verdict::Pass(reason), parse::linear_len(ctx)),
    };
    // Each kind forwards in its own arm: joining the arms' (real, counters) first would make
    // the compiler copy the real's entry through the stack on every packet.
    let verdict = match packet.kind {
        Kind::Whole => forwarded(ctx, &packet, whole_packet(ctx, &packet)),
        Kind::FirstFragment | Kind::LaterFragment => forwarded(
            ctx,
            &packet,
            frag::place(ctx, &packet, parse::tcp_flags(ctx, &packet)),
        ),
        Kind::IcmpError => forwarded(ctx, &packet, icmp::place(&packet.flow)),
    };
    (verdict, packet.frame_len)
}

/// The packet sent to the real a stage placed it on, or that stage's early exit.
#[inline(always)]
fn forwarded(
    ctx: &XdpContext,
    packet: &parse::Packet,
    placed: Result<(Target, Forwarded), Verdict>,
) -> Verdict {
    match placed {
        Ok((target, forwarded)) => forward::to_real(ctx, packet, &target, forwarded),
        Err(verdict) => verdict,
    }
}

/// A whole TCP/UDP packet: its service, then its flow's real or a scheduled one.
#[inline(always)]
fn whole_packet(ctx: &XdpContext, packet: &parse::Packet) -> Result<(Target, Forwarded), Verdict> {
    let flow = &packet.flow;
    // Not for a service: perhaps a NAT real's reply, to translate back.
    let service = lookup::service(flow).ok_or_else(|| forward::not_for_a_service(ctx, packet))?;
    let target = select::real(
        ctx,
        packet.vlan,
        flow,
        &service,
        0,
        parse::tcp_flags(ctx, packet),
    )?;
    let forwarded = Forwarded {
        service_id: service.id,
        real_id: target.real_id,
        new_flow: target.new_flow,
        reason: if target.mid_stream {
            Reason::ForwardedMidStream
        } else {
            Reason::ForwardedTx
        },
    };
    Ok((target, forwarded))
}

/// Tunnel forwarding (`forward::tunnel`), tail-called by `lb_xdp`.
#[xdp(frags)]
pub fn lb_tunnel(ctx: XdpContext) -> u32 {
    let (verdict, frame_len) = forward::tunnel_stage(&ctx);
    stats::finish_handed_over(&ctx, verdict, frame_len)
}

/// NAT and full-NAT forwarding (`forward::nat`), tail-called by `lb_xdp`.
#[xdp(frags)]
pub fn lb_nat(ctx: XdpContext) -> u32 {
    let (verdict, frame_len) = forward::nat_stage(&ctx);
    stats::finish_handed_over(&ctx, verdict, frame_len)
}

/// NAT replies translated back (`forward::nat::reply`), tail-called by `lb_xdp`.
#[xdp(frags)]
pub fn lb_reply(ctx: XdpContext) -> u32 {
    let (verdict, frame_len) = forward::reply_stage(&ctx);
    stats::finish_handed_over(&ctx, verdict, frame_len)
}

/// The decapsulator, attached by `lbd decap` on a real of tunnel-mode services: IPIP and GUE
/// packets for a local VIP lose their outer headers and pass to the stack; everything else
/// passes untouched.
#[xdp(frags)]
#[inline(always)]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    match decap::decapsulate(&ctx) {
        Some((reason, frame_len)) => stats::count_only(Verdict::Pass(reason), frame_len),
        None => xdp_action::XDP_PASS,
    }
}

/// Does nothing but pass. Attached to the far end of a veth pair that receives frames sent
/// with `XDP_TX`/`XDP_REDIRECT`: veth drops such frames unless its peer runs an XDP program.
#[xdp(frags)]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The verifier rejects any path that could panic, so this never runs; a loop (as
/// aya-template has) is defined behaviour, unlike `unreachable_unchecked`.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
