//! Sending the packet to its real, by the real's forwarding method (LVS's `-g`, `-i`, `-m`,
//! and full NAT):
//!
//! - `dr`: direct routing; only the Ethernet header changes ([`dr`]);
//! - `tun`: the packet, untouched, inside an IPIP or GUE header to the real ([`tunnel`]), or an
//!   ICMP "packet too big" to the client when it would no longer fit ([`too_big`]);
//! - `nat`, `fullnat`: addresses and ports rewritten ([`nat`]), then sent like `dr`; their
//!   replies are translated back by [`nat::reply`].
//!
//! Every method sends to `Real::mac` (the real, or the router before it) through
//! `Real::ifindex`, with that interface's VLAN tag.
//!
//! Direct routing runs in the balancer program itself. The other methods run in programs of
//! their own, reached by a tail call ([`hand_off`]) with the packet's facts in a per-CPU
//! scratch entry (`lb_common::Handoff`): their headers and checksums would not fit the
//! balancer's 512-byte stack beside the schedulers, and a tail call starts a fresh stack.
//! Direct routing pays nothing for them. The program array and the scratch map are both
//! pinned and adopted by a restarted lbd: while the old balancer still runs, it tail-calls
//! the new forwarding programs, which read the scratch it wrote.

mod checksum;
mod dr;
pub mod nat;
mod nat_icmp;
mod too_big;
mod tunnel;

use aya_ebpf::programs::XdpContext;
use lb_common::{FORWARD_FULLNAT, FORWARD_NAT, FORWARD_TUN, FlowKey, Handoff, Interface, Reason};

use crate::{
    Forwarded, Verdict,
    maps::{FORWARD_PROGRAMS, FORWARD_SCRATCH, INTERFACES},
    parse::{Kind, Packet},
    select::Target,
};

pub use dr::direct_route;

/// Indexes of the forwarding programs in `FORWARD_PROGRAMS` (lbd's loader fills it).
pub const STAGE_TUNNEL: u32 = 0;
pub const STAGE_NAT: u32 = 1;
pub const STAGE_REPLY: u32 = 2;

#[inline(always)]
pub fn to_real(
    ctx: &XdpContext,
    packet: &Packet,
    target: &Target,
    forwarded: Forwarded,
) -> Verdict {
    match target.real.forward {
        FORWARD_TUN => hand_off(ctx, packet, target, forwarded, STAGE_TUNNEL),
        FORWARD_NAT | FORWARD_FULLNAT => hand_off(ctx, packet, target, forwarded, STAGE_NAT),
        _ => direct_route(ctx, packet.vlan, &target.real, forwarded),
    }
}

/// Tail-calls the forwarding program `stage` with the packet's facts; returns only if that
/// failed (the program array is filled by the loader before the program is attached, so
/// only a broken install gets here).
#[inline(always)]
fn hand_off(
    ctx: &XdpContext,
    packet: &Packet,
    target: &Target,
    forwarded: Forwarded,
    stage: u32,
) -> Verdict {
    let Some(scratch) = FORWARD_SCRATCH.get_ptr_mut(0) else {
        return Verdict::Drop(Reason::DropEncapFailed);
    };
    unsafe {
        (*scratch).flow = packet.flow;
        (*scratch).frame_len = packet.frame_len;
        (*scratch).real = target.real;
        (*scratch).vlan = packet.vlan;
        (*scratch).real_id = target.real_id;
        (*scratch).service_id = forwarded.service_id;
        (*scratch).reason = forwarded.reason as u32;
        (*scratch).l4 = packet.l4;
        (*scratch).local_port_be = target.local_port_be;
        (*scratch).local_source = target.local_source;
        (*scratch).kind = packet.kind as u8;
        (*scratch).new_flow = u8::from(forwarded.new_flow);
        let _ = FORWARD_PROGRAMS.tail_call(ctx, stage);
    }
    Verdict::Drop(Reason::DropEncapFailed)
}

/// A whole packet not for any service: a NAT reply if the reply program finds it so, else
/// it passes.
#[inline(always)]
pub fn not_for_a_service(ctx: &XdpContext, packet: &Packet) -> Verdict {
    if packet.kind != Kind::Whole || !nat::translates_replies() {
        return Verdict::Pass(Reason::PassNoService);
    }
    hand_off_reply(ctx, packet, ports_of(&packet.flow))
}

/// Tail-calls the reply program for `packet`, whose reply entry is under the packet's
/// addresses and protocol with `ports` (source port in the low half, as received: the
/// packet's own, or for a later fragment its datagram's). Returns only if that failed: the
/// packet passes.
///
/// The ports come as a word, not as a key pointer: with two call sites passing two pointers,
/// the compiler merged them into pointer arithmetic the verifier refuses.
#[inline(always)]
pub fn hand_off_reply(ctx: &XdpContext, packet: &Packet, ports: u32) -> Verdict {
    let pass = Verdict::Pass(Reason::PassNoService);
    let Some(scratch) = FORWARD_SCRATCH.get_ptr_mut(0) else {
        return pass;
    };
    unsafe {
        (*scratch).flow = packet.flow;
        (*scratch).flow.src_port_be = ports as u16;
        (*scratch).flow.dst_port_be = (ports >> 16) as u16;
        (*scratch).frame_len = packet.frame_len;
        (*scratch).vlan = packet.vlan;
        (*scratch).l4 = packet.l4;
        (*scratch).kind = packet.kind as u8;
        let _ = FORWARD_PROGRAMS.tail_call(ctx, STAGE_REPLY);
    }
    pass
}

/// A packet's ports as [`hand_off_reply`] takes them.
#[inline(always)]
pub fn ports_of(flow: &FlowKey) -> u32 {
    ports_word(flow.src_port_be, flow.dst_port_be)
}

/// Two ports as the word they make in a TCP or UDP header (as loaded: source first).
#[inline(always)]
fn ports_word(src_be: u16, dst_be: u16) -> u32 {
    u32::from(src_be) | (u32::from(dst_be) << 16)
}

/// An IPv4 address (as keys hold it) as the word an IPv4 header holds.
#[inline(always)]
fn ipv4_word(addr: &[u8; 16]) -> u32 {
    checksum::word_at(addr, 0)
}

/// What a handed-over packet is counted under once forwarded.
#[inline(always)]
pub(crate) fn forwarded(handoff: &Handoff) -> Forwarded {
    Forwarded {
        service_id: handoff.service_id,
        real_id: handoff.real_id,
        new_flow: handoff.new_flow != 0,
        reason: Reason::from_index(handoff.reason).unwrap_or(Reason::ForwardedTx),
    }
}

/// The forwarding program's half: the entry the balancer handed over. Read in place, not
/// copied: a forwarding program's stack is as small as the balancer's.
#[inline(always)]
fn handed_over() -> Option<&'static Handoff> {
    FORWARD_SCRATCH
        .get_ptr(0)
        .map(|scratch| unsafe { &*scratch })
}

/// The tunnel program's verdict, and the frame's length as received.
#[inline(always)]
pub fn tunnel_stage(ctx: &XdpContext) -> (Verdict, u64) {
    match handed_over() {
        Some(handoff) => (tunnel::encapsulate(ctx, handoff), handoff.frame_len),
        None => (Verdict::Drop(Reason::DropEncapFailed), 0),
    }
}

/// The NAT program's verdict: rewritten, then sent like direct routing.
#[inline(always)]
pub fn nat_stage(ctx: &XdpContext) -> (Verdict, u64) {
    let Some(handoff) = handed_over() else {
        return (Verdict::Drop(Reason::DropEncapFailed), 0);
    };
    let verdict = match nat::to_real(ctx, handoff) {
        Ok(()) => direct_route(ctx, handoff.vlan, &handoff.real, forwarded(handoff)),
        Err(verdict) => verdict,
    };
    (verdict, handoff.frame_len)
}

/// The reply program's verdict.
#[inline(always)]
pub fn reply_stage(ctx: &XdpContext) -> (Verdict, u64) {
    match handed_over() {
        Some(handoff) => (nat::reply(ctx, handoff), handoff.frame_len),
        None => (Verdict::Pass(Reason::PassNoService), 0),
    }
}

/// Writes an IPv6 address into a header, four words at a time: a plain assignment between
/// two pointers becomes a `memmove` call (a BPF-to-BPF call the program cannot make).
#[inline(always)]
fn store_address(to: *mut [u8; 16], from: &[u8; 16]) {
    let to = to.cast::<u32>();
    let mut word = 0;
    while word < 4 {
        unsafe { core::ptr::write_volatile(to.add(word), checksum::word_at(from, word)) };
        word += 1;
    }
}

/// The interface a real is reached through, as lbd described it.
#[inline(always)]
fn interface(ifindex: u32) -> Result<Interface, Verdict> {
    unsafe { INTERFACES.get(&ifindex) }
        .copied()
        .ok_or(Verdict::Drop(Reason::DropNoInterface))
}

/// Out of the interface the frame came in on, or redirected to the one `interface` leaves
/// through.
#[inline(always)]
fn leave(ctx: &XdpContext, egress_ifindex: u32, forwarded: Forwarded) -> Verdict {
    let ingress_ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    if egress_ifindex == ingress_ifindex {
        Verdict::Tx(forwarded)
    } else {
        Verdict::Redirect {
            ifindex: egress_ifindex,
            forwarded,
        }
    }
}

/// An Ethernet header's two MACs as the words they are written with, each at its natural
/// alignment from the header's start (see `parse`'s header structs): a MAC array of bytes is
/// stored byte by byte, as six stores with their shifts.
#[repr(C)]
pub struct MacWords {
    dst_head: u32,
    dst_tail: u16,
    src_head: u16,
    src_tail: u32,
}

/// Writes `dst` and `src` into the Ethernet header at `eth` (tagged or not: the MACs come
/// first either way) in four stores. Volatile, so they
/// are never merged into a `memcpy` call (a BPF-to-BPF call per packet).
#[inline(always)]
pub fn write_macs(eth: *mut MacWords, dst: &[u8; 6], src: &[u8; 6]) {
    unsafe {
        core::ptr::write_volatile(
            &raw mut (*eth).dst_head,
            u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]),
        );
        core::ptr::write_volatile(
            &raw mut (*eth).dst_tail,
            u16::from_ne_bytes([dst[4], dst[5]]),
        );
        core::ptr::write_volatile(
            &raw mut (*eth).src_head,
            u16::from_ne_bytes([src[0], src[1]]),
        );
        core::ptr::write_volatile(
            &raw mut (*eth).src_tail,
            u32::from_ne_bytes([src[2], src[3], src[4], src[5]]),
        );
    }
}
const _: () = assert!(core::mem::size_of::<MacWords>() == 12);
