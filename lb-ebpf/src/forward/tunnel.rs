//! Tunnel (LVS-TUN): the client's IP packet, untouched, inside an outer IPv4 or IPv6 header
//! from the balancer to the real: IPIP (protocol 4 or 41), or GUE variant 1 (a UDP header
//! between the two, whose source port a hash of the connection picks, so that the reals'
//! NICs spread flows over their queues). The real decapsulates (its kernel's ipip/fou, or
//! `lbd decap`) and answers the client directly.
//!
//! The outer header copies the inner one's DSCP and ECN (RFC 6040's normal mode) and its TTL
//! or hop limit, and, for IPv4, its DF bit (always set for an IPv6 inner packet, which routers
//! never fragment). The outer family is the real's, the inner the VIP's: 4in6 and 6in4 work
//! like 4in4 and 6in6. The GUE header's UDP checksum is 0, over IPv6 too (RFC 6935's
//! exception for tunnels).

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{FAMILY_IPV4, FAMILY_IPV6, Reason, TUNNEL_GUE, VLAN_VID_MASK, hash};

use lb_common::Handoff;

use super::{checksum, interface, ipv4_word, leave, store_address, too_big};
use crate::{
    Verdict,
    maps::EGRESS,
    parse::{ETH_HEADER_LEN, EthHeader, TAGGED, VLAN_HEADER_LEN, VlanEthHeader, header},
};

const PROTO_IPIP: u8 = 4;
const PROTO_IPV6_IN_IP: u8 = 41;
const PROTO_UDP: u8 = 17;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;
pub const UDP_HEADER_LEN: usize = 8;
const DONT_FRAGMENT: u16 = 0x4000;
const TTL_DEFAULT: u8 = 64;
/// GUE source ports: the dynamic range (49152–65535), 14 bits of the connection's hash.
const GUE_SOURCE_PORT_BASE: u16 = 0xc000;
const GUE_SOURCE_PORT_MASK: u32 = 0x3fff;

#[repr(C)]
pub struct Ipv4Header {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len_be: u16,
    pub id_be: u16,
    pub frag_off_be: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub check: u16,
    pub src: u32,
    pub dst: u32,
}

#[repr(C)]
pub struct Ipv6Header {
    pub version_class_flow_be: u32,
    pub payload_len_be: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

#[repr(C)]
struct UdpHeader {
    src_be: u16,
    dst_be: u16,
    len_be: u16,
    check: u16,
}

/// What the outer header takes from the inner one.
pub struct Inner {
    /// The whole inner datagram's length.
    pub len: usize,
    /// DSCP and ECN (the IPv4 TOS byte, the IPv6 traffic class).
    pub class: u8,
    pub ttl: u8,
    /// May the path fragment it? (IPv4 without DF only.)
    pub dont_fragment: bool,
}

/// The inner datagram's length, class, TTL and DF bit, from its header at `l3`.
#[inline(always)]
pub fn inner(ctx: &XdpContext, l3: usize, family: u8) -> Result<Inner, Verdict> {
    let truncated = Verdict::Pass(Reason::PassTruncated);
    if family == FAMILY_IPV4 {
        let ip: *mut Ipv4Header = header(ctx, l3).ok_or(truncated)?;
        unsafe {
            Ok(Inner {
                len: usize::from(u16::from_be((*ip).total_len_be)),
                class: (*ip).tos,
                ttl: (*ip).ttl,
                dont_fragment: u16::from_be((*ip).frag_off_be) & DONT_FRAGMENT != 0,
            })
        }
    } else {
        let ip: *mut Ipv6Header = header(ctx, l3).ok_or(truncated)?;
        unsafe {
            let first = u32::from_be((*ip).version_class_flow_be);
            Ok(Inner {
                len: IPV6_HEADER_LEN + usize::from(u16::from_be((*ip).payload_len_be)),
                class: (first >> 20) as u8,
                ttl: (*ip).hop_limit,
                dont_fragment: true,
            })
        }
    }
}

#[inline(always)]
pub fn encapsulate(ctx: &XdpContext, handoff: &Handoff) -> Verdict {
    let real = &handoff.real;
    let interface = match interface(real.ifindex) {
        Ok(interface) => interface,
        Err(verdict) => return verdict,
    };
    // Written by lbd before the real became available; missing only if something is wrong.
    let Some(egress) = (unsafe { EGRESS.get(&handoff.real_id) }) else {
        return Verdict::Drop(Reason::DropEncapFailed);
    };
    let tag_in = if handoff.vlan & TAGGED != 0 {
        VLAN_HEADER_LEN
    } else {
        0
    };
    let l3 = ETH_HEADER_LEN + tag_in;
    let inner = match inner(ctx, l3, handoff.flow.family) {
        Ok(inner) => inner,
        Err(verdict) => return verdict,
    };
    let outer_v6 = real.family == FAMILY_IPV6;
    let gue = egress.tunnel == TUNNEL_GUE;
    let ip_len = if outer_v6 {
        IPV6_HEADER_LEN
    } else {
        IPV4_HEADER_LEN
    };
    let outer_len = ip_len + if gue { UDP_HEADER_LEN } else { 0 };
    let mtu = usize::from(interface.mtu);
    if mtu > outer_len && inner.len + outer_len > mtu {
        return too_big::answer(ctx, handoff, l3, (mtu - outer_len) as u32, &inner);
    }
    let source = egress.sources[0];
    let gue_port_be = egress.gue_port_be;
    let inner_protocol = if handoff.flow.family == FAMILY_IPV4 {
        PROTO_IPIP
    } else {
        PROTO_IPV6_IN_IP
    };
    let gue_source_port =
        GUE_SOURCE_PORT_BASE | (hash::connection(&handoff.flow) & GUE_SOURCE_PORT_MASK) as u16;

    // The client's priority bits stay, as direct routing keeps them; the VLAN id is the
    // real's interface's.
    let vid_mask_be = VLAN_VID_MASK.to_be();
    let tci_be = if handoff.vlan & TAGGED != 0 {
        (handoff.vlan as u16 & !vid_mask_be) | (interface.vlan_tci_be & vid_mask_be)
    } else {
        interface.vlan_tci_be
    };
    let tag_out = if interface.vlan_tci_be != 0 {
        VLAN_HEADER_LEN
    } else {
        0
    };
    let grow = (outer_len + tag_out) as i32 - tag_in as i32;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return Verdict::Drop(Reason::DropEncapFailed);
    }
    let truncated = Verdict::Drop(Reason::DropEncapFailed);
    let ether_type_be = if outer_v6 { ETH_P_IPV6 } else { ETH_P_IPV4 }.to_be();
    unsafe {
        if tag_out == 0 {
            let Some(eth) = header::<EthHeader>(ctx, 0) else {
                return truncated;
            };
            (*eth).ether_type_be = ether_type_be;
            super::write_macs(eth.cast(), &real.mac, &interface.mac);
        } else {
            let Some(eth) = header::<VlanEthHeader>(ctx, 0) else {
                return truncated;
            };
            (*eth).tpid_be = interface.vlan_proto_be;
            (*eth).tci_be = tci_be;
            (*eth).ether_type_be = ether_type_be;
            super::write_macs(eth.cast(), &real.mac, &interface.mac);
        }
    }
    let outer = ETH_HEADER_LEN + tag_out;
    let protocol = if gue { PROTO_UDP } else { inner_protocol };
    let after_ip = if gue { UDP_HEADER_LEN } else { 0 } + inner.len;
    if outer_v6 {
        let Some(ip) = header::<Ipv6Header>(ctx, outer) else {
            return truncated;
        };
        unsafe {
            (*ip).version_class_flow_be = ((6 << 28) | (u32::from(inner.class) << 20)).to_be();
            (*ip).payload_len_be = (after_ip as u16).to_be();
            (*ip).next_header = protocol;
            (*ip).hop_limit = if inner.ttl == 0 {
                TTL_DEFAULT
            } else {
                inner.ttl
            };
            store_address(&raw mut (*ip).src, &source);
            store_address(&raw mut (*ip).dst, &real.addr);
        }
    } else {
        let Some(ip) = header::<Ipv4Header>(ctx, outer) else {
            return truncated;
        };
        let dont_fragment = if inner.dont_fragment {
            DONT_FRAGMENT
        } else {
            0
        };
        unsafe {
            (*ip).version_ihl = 0x45;
            (*ip).tos = inner.class;
            (*ip).total_len_be = ((IPV4_HEADER_LEN + after_ip) as u16).to_be();
            (*ip).id_be = 0;
            (*ip).frag_off_be = dont_fragment.to_be();
            (*ip).ttl = if inner.ttl == 0 {
                TTL_DEFAULT
            } else {
                inner.ttl
            };
            (*ip).protocol = protocol;
            (*ip).check = 0;
            (*ip).src = ipv4_word(&source);
            (*ip).dst = ipv4_word(&real.addr);
            (*ip).check = !checksum::fold(ipv4_header_sum(ip));
        }
    }
    if gue {
        let Some(udp) = header::<UdpHeader>(ctx, outer + ip_len) else {
            return truncated;
        };
        unsafe {
            (*udp).src_be = gue_source_port.to_be();
            (*udp).dst_be = gue_port_be;
            (*udp).len_be = (after_ip as u16).to_be();
            (*udp).check = 0;
        }
    }
    leave(ctx, interface.egress_ifindex, super::forwarded(handoff))
}

/// The sum of a 20-byte IPv4 header's five words.
///
/// # Safety
/// `ip` must point at a whole header in the packet.
#[inline(always)]
pub unsafe fn ipv4_header_sum(ip: *const Ipv4Header) -> u64 {
    let words = ip.cast::<u32>();
    let mut sum = 0;
    let mut i = 0;
    while i < IPV4_HEADER_LEN / 4 {
        sum += u64::from(unsafe { core::ptr::read_unaligned(words.add(i)) });
        i += 1;
    }
    sum
}
