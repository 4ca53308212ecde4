//! The answer to a packet that would not fit the egress MTU once encapsulated: ICMP
//! "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big", from the VIP to the
//! client, naming the MTU the client's packets must fit. The client's stack lowers its path
//! MTU for the VIP and resends smaller, so path-MTU discovery works across the tunnel instead
//! of black-holing large packets.
//!
//! The answer is built in the frame itself: the ICMP and new IP headers go in front of the
//! client's datagram (which the ICMP message quotes), the frame is cut after
//! [`QUOTED_BYTES`] of it, and it goes back out of the interface it came in on, MACs swapped.
//! Answers are rate-limited per CPU (a token bucket, `ICMP_TOO_BIG_*` in lb-common); over the
//! limit, or for an IPv4 packet without DF (which a router would fragment, and this program
//! cannot), the packet is dropped (`DropTooBig`).

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{
            bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len,
        },
    },
    programs::XdpContext,
};
use lb_common::{FAMILY_IPV4, Handoff, ICMP_TOO_BIG_BURST, ICMP_TOO_BIG_PER_SECOND, Reason};

use super::{
    checksum, ipv4_word, store_address,
    tunnel::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, Inner, Ipv4Header, Ipv6Header, ipv4_header_sum},
};
use crate::{
    Forwarded, Verdict,
    maps::ICMP_BUDGET,
    parse::{EthHeader, Kind, TAGGED, VlanEthHeader, header},
};

/// Bytes of the client's datagram the answer quotes: its IP header and well beyond its
/// transport header (RFC 792 asks for 8 bytes past the IP header, RFC 4443 for as much as
/// fits, which this is a modest share of).
const QUOTED_BYTES: usize = 256;
const ICMP_HEADER_LEN: usize = 8;
/// The ICMP message: its header and the quote.
const MESSAGE_LEN: usize = ICMP_HEADER_LEN + QUOTED_BYTES;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// The TOS of ICMP errors Linux sends (precedence "internetwork control").
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;
const HOP_LIMIT: u8 = 64;
const IPV6_MINIMUM_MTU: u32 = 1280;

#[repr(C)]
struct IcmpHeader {
    kind: u8,
    code: u8,
    check: u16,
    /// ICMPv4: two unused bytes, then the next-hop MTU; ICMPv6: the MTU, 32 bits.
    rest_be: u32,
}

/// `mtu`: the largest datagram the client may send to fit once encapsulated.
#[inline(always)]
pub fn answer(ctx: &XdpContext, handoff: &Handoff, l3: usize, mtu: u32, inner: &Inner) -> Verdict {
    let too_big = Verdict::Drop(Reason::DropTooBig);
    let v4 = handoff.flow.family == FAMILY_IPV4;
    // Never an ICMP error about an ICMP error (RFC 1122, RFC 4443 2.4 e); an IPv6 MTU below
    // the minimum would be taken as 1280 by the client, which still would not fit.
    if !inner.dont_fragment
        || inner.len < QUOTED_BYTES
        || handoff.kind == Kind::IcmpError as u8
        || (!v4 && mtu < IPV6_MINIMUM_MTU)
        || !take_token()
    {
        return too_big;
    }
    let ip_len = if v4 { IPV4_HEADER_LEN } else { IPV6_HEADER_LEN };
    // The frame's MACs and tag, before they move.
    let Some(eth) = header::<VlanEthHeader>(ctx, 0) else {
        return too_big;
    };
    let (client_mac, own_mac, tpid_be, tci_be) =
        unsafe { ((*eth).src, (*eth).dst, (*eth).tpid_be, (*eth).tci_be) };
    let grow = (ip_len + ICMP_HEADER_LEN) as i32;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return too_big;
    }
    let frame_end = l3 + ip_len + MESSAGE_LEN;
    // The frame as it is now, all buffers (the parse may have measured the linear part
    // only).
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as i64;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, (frame_end as i64 - frame_len) as i32) } != 0 {
        return too_big;
    }
    unsafe {
        if handoff.vlan & TAGGED != 0 {
            let Some(eth) = header::<VlanEthHeader>(ctx, 0) else {
                return too_big;
            };
            (*eth).tpid_be = tpid_be;
            (*eth).tci_be = tci_be;
            (*eth).ether_type_be = ether_type_be(v4);
            super::write_macs(eth.cast(), &client_mac, &own_mac);
        } else {
            let Some(eth) = header::<EthHeader>(ctx, 0) else {
                return too_big;
            };
            (*eth).ether_type_be = ether_type_be(v4);
            super::write_macs(eth.cast(), &client_mac, &own_mac);
        }
    }
    let flow = &handoff.flow;
    // Each family's headers and message from one bounds check, so the verifier sees every
    // access at a constant offset from one checked pointer.
    if v4 {
        let Some(base) = header::<[u8; IPV4_HEADER_LEN + MESSAGE_LEN]>(ctx, l3) else {
            return too_big;
        };
        let ip = base.cast::<Ipv4Header>();
        let icmp = unsafe { base.cast::<u8>().add(IPV4_HEADER_LEN) }.cast::<IcmpHeader>();
        unsafe {
            (*ip).version_ihl = 0x45;
            (*ip).tos = TOS_INTERNETWORK_CONTROL;
            (*ip).total_len_be = ((IPV4_HEADER_LEN + MESSAGE_LEN) as u16).to_be();
            (*ip).id_be = 0;
            (*ip).frag_off_be = 0;
            (*ip).ttl = HOP_LIMIT;
            (*ip).protocol = PROTO_ICMP;
            (*ip).check = 0;
            (*ip).src = ipv4_word(&flow.dst);
            (*ip).dst = ipv4_word(&flow.src);
            (*ip).check = !checksum::fold(ipv4_header_sum(ip));
            (*icmp).kind = ICMP_DEST_UNREACH;
            (*icmp).code = ICMP_FRAG_NEEDED;
            (*icmp).rest_be = (mtu & 0xffff).to_be();
            // ICMPv4's checksum covers the message alone.
            seal(icmp, 0);
        }
    } else {
        let Some(base) = header::<[u8; IPV6_HEADER_LEN + MESSAGE_LEN]>(ctx, l3) else {
            return too_big;
        };
        let ip = base.cast::<Ipv6Header>();
        let icmp = unsafe { base.cast::<u8>().add(IPV6_HEADER_LEN) }.cast::<IcmpHeader>();
        unsafe {
            (*ip).version_class_flow_be = (6u32 << 28).to_be();
            (*ip).payload_len_be = (MESSAGE_LEN as u16).to_be();
            (*ip).next_header = PROTO_ICMPV6;
            (*ip).hop_limit = HOP_LIMIT;
            store_address(&raw mut (*ip).src, &flow.dst);
            store_address(&raw mut (*ip).dst, &flow.src);
            (*icmp).kind = ICMPV6_PACKET_TOO_BIG;
            (*icmp).code = 0;
            (*icmp).rest_be = mtu.to_be();
            let pseudo_header_sum = checksum::address_sum(&flow.src)
                + checksum::address_sum(&flow.dst)
                + u64::from(u32::from_ne_bytes((MESSAGE_LEN as u32).to_be_bytes()))
                + u64::from(u32::from_ne_bytes(u32::from(PROTO_ICMPV6).to_be_bytes()));
            seal(icmp, pseudo_header_sum);
        }
    }
    Verdict::Tx(Forwarded {
        service_id: handoff.service_id,
        // Not the real's traffic: counted under the service and the reason only.
        real_id: 0,
        new_flow: false,
        reason: Reason::TxIcmpTooBig,
    })
}

/// Writes the checksum of the ICMP message at `icmp` ([`MESSAGE_LEN`] bytes, in the packet),
/// with `pseudo_header_sum` added (ICMPv6's).
///
/// # Safety
/// The whole message must lie in the packet, checked.
#[inline(always)]
unsafe fn seal(icmp: *mut IcmpHeader, pseudo_header_sum: u64) {
    unsafe {
        (*icmp).check = 0;
        let message_sum =
            bpf_csum_diff(core::ptr::null_mut(), 0, icmp.cast(), MESSAGE_LEN as u32, 0) as u32;
        (*icmp).check = !checksum::fold(pseudo_header_sum + u64::from(message_sum));
    }
}

#[inline(always)]
fn ether_type_be(v4: bool) -> u16 {
    if v4 { 0x0800_u16 } else { 0x86dd_u16 }.to_be()
}

/// Takes one token of this CPU's ICMP budget, refilling it for the time since it was last
/// refilled.
#[inline(always)]
fn take_token() -> bool {
    let Some(budget) = ICMP_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    // Per-CPU memory: no other program run touches it meanwhile.
    unsafe {
        let earned =
            now.saturating_sub((*budget).refilled_ns) * ICMP_TOO_BIG_PER_SECOND / 1_000_000_000;
        if earned > 0 {
            (*budget).tokens = ((*budget).tokens + earned).min(ICMP_TOO_BIG_BURST);
            (*budget).refilled_ns = now;
        }
        if (*budget).tokens == 0 {
            return false;
        }
        (*budget).tokens -= 1;
    }
    true
}
