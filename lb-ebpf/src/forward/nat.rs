//! NAT (LVS-NAT, `-m`) and full NAT.
//!
//! NAT rewrites the destination to the real's address and port; the real routes its replies
//! back through the balancer, whose program rewrites their source back to VIP:port before the
//! kernel sees them. Full NAT also rewrites the source to a local address of the balancer and
//! a local port given to the flow, so the real answers the balancer whatever its routes; the
//! reply's destination is rewritten back to the client.
//!
//! Replies are found in `REPLIES` by their 5-tuple as the real sends it. A new flow claims its
//! reply entry before it is recorded ([`claim`]): for NAT the real's address and port and the
//! client's; for full NAT the same with a local address (one per client address, by hash, so
//! a datagram's fragments agree) and the first free local port from a hashed start. An entry
//! held by another flow is never taken over (see [`claim_key`]), so two flows never share a
//! reply 4-tuple: a flow that finds none free is refused (`DropNatNoPort`). Replies go back to the MAC the client's
//! packets came from, out of the interface they came in on, with their VLAN tag.
//!
//! Checksums are updated incrementally (RFC 1624): the IPv4 header's for the addresses, the
//! TCP or UDP one for addresses (its pseudo-header) and ports. A UDP checksum of 0 over IPv4
//! (none) stays 0; a computed 0 is sent as 0xffff. A later fragment has no transport header:
//! its addresses change, and its datagram's checksum, in the first fragment, already accounts
//! for them.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::generated::bpf_loop,
    programs::XdpContext,
};
use lb_common::{
    FAMILY_IPV4, FORWARD_FULLNAT, FlowKey, Interface, LOCAL_PORT_COUNT, LOCAL_PORT_FIRST,
    MAX_LOCAL_SOURCES, Real, Reason, Reply, ReplyClaim, SETTINGS_TRANSLATES_REPLIES, hash,
};

use lb_common::Handoff;

use super::{checksum, dr, interface, ipv4_word, ports_word, store_address, tunnel::Ipv4Header};
use crate::{
    Forwarded, Verdict, conntrack,
    maps::{EGRESS, FLOWS, REPLIES, REPLY_SCRATCH, SETTINGS},
    parse::{ETH_HEADER_LEN, L4_OFFSET_BOUND, TAGGED, VLAN_HEADER_LEN, VlanEthHeader, header},
    select::EEXIST,
};

/// Local ports a new full-NAT flow tries before it is refused.
const LOCAL_PORT_PROBES: u32 = 32;

/// Rewrites a client's packet for its NAT or full-NAT real.
#[inline(always)]
pub fn to_real(ctx: &XdpContext, handoff: &Handoff) -> Result<(), Verdict> {
    if handoff.reason == Reason::ForwardedIcmpError.index() {
        return super::nat_icmp::to_real(ctx, handoff);
    }
    let real = &handoff.real;
    let flow = &handoff.flow;
    let real_port_be = real_port_be(flow, real);
    if real.forward == FORWARD_FULLNAT {
        // A flow's packets use the source it was given; a later fragment (no ports, no flow
        // at hand) the one the same hash gives its datagram's first fragment.
        let local = if handoff.local_port_be != 0 {
            recorded_source(handoff.real_id, handoff.local_source)?
        } else {
            local_source(flow, handoff.real_id)?.0
        };
        rewrite(
            ctx,
            handoff,
            &local,
            &real.addr,
            handoff.local_port_be,
            real_port_be,
        )
    } else {
        rewrite(
            ctx,
            handoff,
            &flow.src,
            &real.addr,
            flow.src_port_be,
            real_port_be,
        )
    }
}

/// A packet for no service: if it is the reply of a NAT or full-NAT flow, translated back and
/// sent to the client; otherwise it passes.
#[inline(always)]
pub fn reply(ctx: &XdpContext, handoff: &Handoff) -> Verdict {
    let pass = Verdict::Pass(Reason::PassNoService);
    let Some(reply) = (unsafe { REPLIES.get(&handoff.flow) }).copied() else {
        return pass;
    };
    // Only for a flow that lives on, on the real the entry names: an entry left by a flow
    // that has gone (until lbd's sweep removes it) translates nothing.
    let now = conntrack::now_ns();
    match unsafe { FLOWS.get(&reply.flow) }.copied() {
        Some(known) if known.real_id == reply.real_id && conntrack::is_alive(&known, now) => {
            conntrack::reply_seen(&reply.flow, &known, now);
        }
        _ => return pass,
    }
    let client = &reply.flow;
    if let Err(verdict) = rewrite(
        ctx,
        handoff,
        &client.dst,
        &client.src,
        client.dst_port_be,
        client.src_port_be,
    ) {
        return verdict;
    }
    let own = match interface(reply.ingress_ifindex) {
        Ok(own) => own,
        Err(verdict) => return verdict,
    };
    let tagged = reply.vlan & TAGGED != 0;
    let back = Interface {
        mac: own.mac,
        vlan_tci_be: if tagged { reply.vlan as u16 } else { 0 },
        vlan_proto_be: if tagged { reply.vlan_proto_be } else { 0 },
        mtu: 0,
        egress_ifindex: reply.ingress_ifindex,
    };
    // Counted as the service's and real's outgoing traffic (ipvsadm's Out columns; see
    // `stats`), and shown under them by a capture.
    let forwarded = Forwarded {
        service_id: reply.service_id,
        real_id: reply.real_id,
        new_flow: false,
        reason: Reason::ForwardedReply,
    };
    dr::send(ctx, handoff.vlan, &reply.client_mac, &back, forwarded)
}

/// Whether some real is NAT or full NAT (lbd says so in the settings), so that a packet for
/// no service may be a reply to translate back.
#[inline(always)]
pub fn translates_replies() -> bool {
    matches!(SETTINGS.get(0), Some(settings) if settings.flags & SETTINGS_TRANSLATES_REPLIES != 0)
}

/// Whether a packet for no service (a first fragment's 5-tuple) is a NAT flow's reply.
#[inline(always)]
pub fn is_reply(flow: &FlowKey) -> bool {
    // A field of the entry, not just whether there is one: tested as a pointer, the answer
    // was folded into pointer arithmetic the verifier refuses.
    translates_replies()
        && match unsafe { REPLIES.get(flow) } {
            Some(reply) => reply.real_id != 0,
            None => false,
        }
}

/// Claims the reply entry of a new flow to `real` (NAT or full NAT): returns the local port
/// (network order; 0 for NAT) and local source index the flow records.
#[inline(always)]
pub fn claim(
    ctx: &XdpContext,
    vlan: u32,
    flow: &FlowKey,
    service_id: u32,
    real_id: u32,
    real: &Real,
) -> Result<(u16, u8), Verdict> {
    let refused = Verdict::Drop(Reason::DropNatNoPort);
    let scratch = REPLY_SCRATCH.get_ptr_mut(0).ok_or(refused)?;
    let eth: *mut VlanEthHeader = header(ctx, 0).ok_or(refused)?;
    let client_mac = unsafe { (*eth).src };
    let vlan_proto_be = if vlan & TAGGED != 0 {
        unsafe { (*eth).tpid_be }
    } else {
        0
    };
    let ingress_ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let full = real.forward == FORWARD_FULLNAT;
    let (local, source_index) = if full {
        local_source(flow, real_id)?
    } else {
        (flow.src, 0)
    };
    unsafe {
        (*scratch).reply = Reply {
            flow: *flow,
            client_mac,
            vlan_proto_be,
            ingress_ifindex,
            vlan,
            real_id,
            service_id,
        };
        (*scratch).key = FlowKey {
            src: real.addr,
            dst: local,
            src_port_be: real_port_be(flow, real),
            dst_port_be: flow.src_port_be,
            protocol: flow.protocol,
            family: flow.family,
            _pad: [0; 2],
        };
    }
    if !full {
        return if claim_key(scratch) {
            Ok((0, 0))
        } else {
            Err(refused)
        };
    }
    let mut probe = PortProbe {
        start: hash::connection(flow) % u32::from(LOCAL_PORT_COUNT),
        port_be: 0,
    };
    let callback = port_probe as *const ();
    unsafe {
        bpf_loop(
            LOCAL_PORT_PROBES,
            callback as *mut c_void,
            (&raw mut probe).cast(),
            0,
        )
    };
    if probe.port_be == 0 {
        return Err(refused);
    }
    Ok((probe.port_be as u16, source_index))
}

/// Gives back the reply entry [`claim`] just took on this CPU (its flow was recorded by
/// another CPU first, with its own).
#[inline(always)]
pub fn release_claim() {
    if let Some(scratch) = REPLY_SCRATCH.get_ptr_mut(0) {
        let _ = unsafe { REPLIES.remove(&(*scratch).key) };
    }
}

/// The walk over candidate local ports; `port_be` is the one claimed (0: none yet). Both
/// fields are words, so the program builds it with two stores.
#[repr(C)]
struct PortProbe {
    start: u32,
    port_be: u32,
}

/// One candidate port: claims it if free; stops the walk when claimed.
extern "C" fn port_probe(index: u64, context: *mut c_void) -> i64 {
    let probe = unsafe { &mut *context.cast::<PortProbe>() };
    let Some(scratch) = REPLY_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let offset = (probe.start + index as u32) % u32::from(LOCAL_PORT_COUNT);
    let port_be = (LOCAL_PORT_FIRST + offset as u16).to_be();
    unsafe { (*scratch).key.dst_port_be = port_be };
    if claim_key(scratch) {
        probe.port_be = u32::from(port_be);
        1
    } else {
        0
    }
}

/// Inserts the scratch entry unless its key is held by another flow.
///
/// An entry held by this same flow (recorded again after it expired) is taken over. One held
/// by another flow is never taken, even if that flow is gone: a flow is recorded just after
/// its claim, so a claim whose flow is not in the table yet looks the same as a stale one,
/// and two CPUs taking over one stale entry would both succeed. lbd's sweep removes entries
/// whose flow has gone (within two sweeps, about two seconds); until then that 4-tuple is
/// busy, and full NAT probes the next port.
#[inline(always)]
fn claim_key(scratch: *mut ReplyClaim) -> bool {
    let (key, reply) = unsafe { (&(*scratch).key, &(*scratch).reply) };
    match REPLIES.insert(key, reply, u64::from(BPF_NOEXIST)) {
        Ok(()) => return true,
        Err(error) if error != EEXIST => return false,
        Err(_) => {}
    }
    match REPLIES.get_ptr(key) {
        Some(held) if unsafe { (*held).flow == reply.flow } => {
            REPLIES.insert(key, reply, u64::from(BPF_ANY)).is_ok()
        }
        Some(_) => false,
        // Removed meanwhile: free again.
        None => REPLIES.insert(key, reply, u64::from(BPF_NOEXIST)).is_ok(),
    }
}

/// The port the real listens on: its own, or the client's destination port for a real
/// without one (an all-ports service).
#[inline(always)]
pub(super) fn real_port_be(flow: &FlowKey, real: &Real) -> u16 {
    if real.port_be != 0 {
        real.port_be
    } else {
        flow.dst_port_be
    }
}

/// The local address a full-NAT flow was given. One no longer among the real's (its
/// `snat_pool` changed) cannot carry the flow on: the real would see another connection.
#[inline(always)]
pub(super) fn recorded_source(real_id: u32, index: u8) -> Result<[u8; 16], Verdict> {
    let egress = unsafe { EGRESS.get(&real_id) }.ok_or(Verdict::Drop(Reason::DropEncapFailed))?;
    let index = usize::from(index) & (MAX_LOCAL_SOURCES - 1);
    if index as u32 >= egress.source_count {
        return Err(Verdict::Drop(Reason::DropNatNoPort));
    }
    Ok(egress.sources[index])
}

/// The local address a new full-NAT flow comes from, and its index among the real's.
#[inline(always)]
fn local_source(flow: &FlowKey, real_id: u32) -> Result<([u8; 16], u8), Verdict> {
    let missing = Verdict::Drop(Reason::DropEncapFailed);
    let egress = unsafe { EGRESS.get(&real_id) }.ok_or(missing)?;
    if egress.source_count == 0 {
        return Err(missing);
    }
    let index = (hash::datagram(flow) % egress.source_count) as usize & (MAX_LOCAL_SOURCES - 1);
    Ok((egress.sources[index], index as u8))
}

/// Rewrites the packet's addresses to `src` and `dst`, and its ports (when it has a
/// transport header) to `src_port_be` and `dst_port_be`, with its checksums.
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    packet: &Handoff,
    src: &[u8; 16],
    dst: &[u8; 16],
    src_port_be: u16,
    dst_port_be: u16,
) -> Result<(), Verdict> {
    let truncated = Verdict::Pass(Reason::PassTruncated);
    let flow = &packet.flow;
    let l3 = ETH_HEADER_LEN
        + if packet.vlan & TAGGED != 0 {
            VLAN_HEADER_LEN
        } else {
            0
        };
    let address_delta =
        checksum::address_delta(&flow.src, src) + checksum::address_delta(&flow.dst, dst);
    if flow.family == FAMILY_IPV4 {
        let ip: *mut Ipv4Header = header(ctx, l3).ok_or(truncated)?;
        unsafe {
            (*ip).src = ipv4_word(src);
            (*ip).dst = ipv4_word(dst);
            (*ip).check = checksum::updated((*ip).check, address_delta);
        }
    } else {
        let ip: *mut super::tunnel::Ipv6Header = header(ctx, l3).ok_or(truncated)?;
        unsafe {
            store_address(&raw mut (*ip).src, src);
            store_address(&raw mut (*ip).dst, dst);
        }
    }
    if packet.l4 == 0 {
        return Ok(());
    }
    // Bounded for the verifier, as in `parse::tcp_flags`.
    let l4 = usize::from(packet.l4) & L4_OFFSET_BOUND;
    let old_ports = ports_word(flow.src_port_be, flow.dst_port_be);
    let new_ports = ports_word(src_port_be, dst_port_be);
    let ports: *mut u32 = header(ctx, l4).ok_or(truncated)?;
    let delta = address_delta + checksum::word_delta(old_ports, new_ports);
    unsafe { core::ptr::write_unaligned(ports, new_ports) };
    let check_at = l4 + checksum::transport_check_offset(flow.protocol);
    let check: *mut u16 = header(ctx, check_at).ok_or(truncated)?;
    unsafe {
        if let Some(new) = checksum::transport_updated(*check, delta, flow.protocol, flow.family) {
            *check = new;
        }
    }
    Ok(())
}
