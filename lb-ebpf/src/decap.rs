//! Tunnel decapsulation, for the reals of a tunnel-mode service (`lbd decap`): the balancer
//! sends them the client's packet inside IPIP (4in4, 6in4, 4in6, 6in6) or GUE (variant 1:
//! a UDP header to the GUE port, then the inner IP packet itself), and this program takes
//! the outer headers off so the stack delivers the client's packet to the VIP on `lo`, as
//! Linux's `ipip`/`ip6_tunnel`/`fou` modules would.
//!
//! A frame is decapsulated only when every check holds; otherwise it passes byte for byte:
//! - Ethernet with at most one VLAN tag (kept);
//! - an outer IPv4 header (any valid length, not a fragment) or IPv6 header (no extension
//!   headers) carrying protocol 4 (IPv4) or 41 (IPv6), or UDP to the configured GUE port
//!   whose payload starts with an IP version nibble (4 or 6);
//! - the outer datagram within the frame, the UDP length within the datagram;
//! - the outer destination a local address ([`DECAP_LOCAL`]) and the inner destination a
//!   VIP of this host ([`DECAP_VIP`]), both from [`MAP_DECAP_ADDRS`] which `lbd decap` keeps;
//! - a minimal valid inner header within the outer datagram: IPv4 with IHL ≥ 5 and its whole
//!   header present, or the 40-byte IPv6 header; its version the one the outer protocol
//!   names (IPIP).
//!
//! Neither the outer IPv4 header checksum nor a GUE UDP checksum is verified (Katran's
//! decapsulation does not either): the inner packet's own checksums protect what is
//! delivered, and its destination has been checked. RFC 6040's normal mode is followed for
//! ECN: an outer CE mark is copied into an inner packet that is ECN-capable (the inner IPv4
//! checksum updated); a CE-marked outer packet whose inner packet is not ECN-capable is
//! delivered unmarked rather than dropped.
//!
//! Counting: tunnel traffic is counted as `Decapsulated` or `PassNotDecapsulated` (not for
//! this host, or malformed). Everything else (ordinary traffic to the real, UDP to other
//! ports, frames whose outer header is not a valid IP header) passes without touching a
//! counter, so the host's own traffic pays for the parse only.

use aya_ebpf::{
    helpers::generated::bpf_xdp_adjust_head,
    macros::map,
    maps::{Array, HashMap},
    programs::XdpContext,
};
use lb_common::{
    ETH_P_8021AD, ETH_P_8021Q, FAMILY_IPV4, FAMILY_IPV6, PROTO_UDP, Reason,
    decap::{
        DECAP_LOCAL, DECAP_VIP, DecapAddrKey, DecapConfig, MAX_DECAP_ADDRS, PROTO_IPIP,
        PROTO_IPV6_IN_IP,
    },
};

use crate::parse::{
    Datagram, ETH_HEADER_LEN, ETH_P_IPV4, ETH_P_IPV6, EthHeader, VLAN_HEADER_LEN, VlanEthHeader,
    header,
    ipv4::{self, Ipv4Header},
    ipv4_key_bytes,
    ipv6::{IPV6_HEADER_LEN, Ipv6Header},
    linear_len,
};

// Declared here, not in `maps`: only this program uses them, and the balancer's loader
// neither sizes nor pins them (see `lb_common::decap`).
#[map(name = "LB_DECAP_ADDRS_V1")]
static DECAP_ADDRS: HashMap<DecapAddrKey, u32> = HashMap::with_max_entries(MAX_DECAP_ADDRS, 0);

#[map(name = "LB_DECAP_CFG_V1")]
static DECAP_CONFIG: Array<DecapConfig> = Array::with_max_entries(1, 0);

const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
/// IPv4 `frag_off`: more fragments, and the offset.
const FRAGMENT_BITS: u16 = 0x3fff;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;
/// The ECN field (low two bits of the TOS / traffic class): Not-ECT 0, ECT(1) 1, ECT(0) 2,
/// CE 3.
const ECN_CE: u16 = 3;

/// Why a frame is left as it is.
#[derive(Clone, Copy)]
enum Skip {
    /// Not tunnel traffic: passes uncounted.
    NotTunnel,
    /// Tunnel traffic that is not for this host, or malformed: `PassNotDecapsulated`.
    NotForUs,
}

/// How the inner packet is carried.
#[derive(Clone, Copy)]
enum Encap {
    /// IPIP: the inner packet's IP version, as the outer protocol names it.
    Ipip(u8),
    /// GUE: the UDP length, as its header says.
    Gue(usize),
}

/// What the outer headers say about a tunnel packet.
struct Tunnel {
    /// Where the inner packet starts.
    inner: usize,
    /// Where it ends: the outer datagram's end, or the UDP datagram's.
    end: usize,
    /// The inner packet's IP version that the outer protocol names; 0 (GUE): its own.
    version: u8,
    outer_dst: DecapAddrKey,
    /// The outer header's ECN field.
    outer_ecn: u16,
    /// The whole frame's length, for the byte counters.
    frame_len: u64,
}

/// The start of an IPv4 header as 16-bit words: version, IHL and TOS in one (where the ECN
/// bits are), the checksum six words in.
#[repr(C)]
struct Ipv4Words {
    version_tos_be: u16,
    _words: [u16; 4],
    check_be: u16,
}

/// The Ethernet addresses (and a VLAN tag, or the EtherType and two bytes after it) as
/// words, to move them with three or four loads and stores.
#[repr(C)]
struct LinkWords {
    macs: [u32; 3],
    tag: u32,
}

/// `None` for frames that are not tunnel traffic (pass uncounted); otherwise the reason to
/// pass the frame with (decapsulated or not) and its length, for the counters.
#[inline(always)]
pub fn decapsulate(ctx: &XdpContext) -> Option<(Reason, u64)> {
    let (l3, tagged, ether_type) = link_header(ctx)?;
    let outer = match ether_type {
        ETH_P_IPV4 => outer_ipv4(ctx, l3),
        ETH_P_IPV6 => outer_ipv6(ctx, l3),
        _ => return None,
    };
    let tunnel = match outer {
        Ok(tunnel) => tunnel,
        Err(Skip::NotTunnel) => return None,
        Err(Skip::NotForUs) => return Some((Reason::PassNotDecapsulated, linear_len(ctx))),
    };
    let reason = match inner_for_us(ctx, &tunnel) {
        Some(inner_ether_type) if strip(ctx, l3, tagged, &tunnel, inner_ether_type) => {
            Reason::Decapsulated
        }
        _ => Reason::PassNotDecapsulated,
    };
    Some((reason, tunnel.frame_len))
}

/// Where the IP header starts, whether the frame has a VLAN tag, and the EtherType.
#[inline(always)]
fn link_header(ctx: &XdpContext) -> Option<(usize, bool, u16)> {
    let eth: *mut EthHeader = header(ctx, 0)?;
    let ether_type = u16::from_be(unsafe { (*eth).ether_type_be });
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let tagged: *mut VlanEthHeader = header(ctx, 0)?;
        let inner_type = u16::from_be(unsafe { (*tagged).ether_type_be });
        return Some((ETH_HEADER_LEN + VLAN_HEADER_LEN, true, inner_type));
    }
    Some((ETH_HEADER_LEN, false, ether_type))
}

#[inline(always)]
fn outer_ipv4(ctx: &XdpContext, l3: usize) -> Result<Tunnel, Skip> {
    let ip: *mut Ipv4Header = header(ctx, l3).ok_or(Skip::NotTunnel)?;
    let header_len = ipv4::header_len(ip).ok_or(Skip::NotTunnel)?;
    let payload = l3 + header_len;
    let frag_off = u16::from_be(unsafe { (*ip).frag_off_be });
    let encap = match unsafe { (*ip).protocol } {
        PROTO_IPIP => Encap::Ipip(4),
        PROTO_IPV6_IN_IP => Encap::Ipip(6),
        // A later fragment has no UDP header to tell GUE by.
        PROTO_UDP if frag_off & FRAGMENT_OFFSET_MASK == 0 => Encap::Gue(gue(ctx, payload)?),
        _ => return Err(Skip::NotTunnel),
    };
    // The inner packet of a fragment is not whole here; the stack may reassemble it, but it
    // has no tunnel to hand it to.
    if frag_off & FRAGMENT_BITS != 0 {
        return Err(Skip::NotForUs);
    }
    let total_len = u16::from_be(unsafe { (*ip).total_len_be }) as usize;
    if total_len < header_len {
        return Err(Skip::NotForUs);
    }
    let datagram = Datagram::within_frame(ctx, l3, total_len).map_err(|_| Skip::NotForUs)?;
    let words: *mut Ipv4Words = header(ctx, l3).ok_or(Skip::NotForUs)?;
    let outer_ecn = u16::from_be(unsafe { (*words).version_tos_be }) & ECN_CE;
    let outer_dst = DecapAddrKey {
        addr: ipv4_key_bytes(unsafe { (*ip).dst }),
        family: u32::from(FAMILY_IPV4),
    };
    tunnel(payload, encap, datagram, outer_dst, outer_ecn)
}

#[inline(always)]
fn outer_ipv6(ctx: &XdpContext, l3: usize) -> Result<Tunnel, Skip> {
    let ip: *mut Ipv6Header = header(ctx, l3).ok_or(Skip::NotTunnel)?;
    let first = unsafe { (*ip).version_class_flow };
    if first[0] >> 4 != 6 {
        return Err(Skip::NotTunnel);
    }
    let payload = l3 + IPV6_HEADER_LEN;
    let encap = match unsafe { (*ip).next_header } {
        PROTO_IPIP => Encap::Ipip(4),
        PROTO_IPV6_IN_IP => Encap::Ipip(6),
        PROTO_UDP => Encap::Gue(gue(ctx, payload)?),
        _ => return Err(Skip::NotTunnel),
    };
    let payload_len = u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize;
    // 0 announces a jumbogram, which no Ethernet link carries.
    if payload_len == 0 {
        return Err(Skip::NotForUs);
    }
    let datagram = Datagram::within_frame(ctx, l3, IPV6_HEADER_LEN + payload_len)
        .map_err(|_| Skip::NotForUs)?;
    let outer_ecn = u16::from(first[1] >> 4) & ECN_CE;
    let outer_dst = DecapAddrKey {
        addr: unsafe { (*ip).dst },
        family: u32::from(FAMILY_IPV6),
    };
    tunnel(payload, encap, datagram, outer_dst, outer_ecn)
}

/// The UDP length of a GUE packet (UDP to the configured port), from its header at `udp`.
#[inline(always)]
fn gue(ctx: &XdpContext, udp: usize) -> Result<usize, Skip> {
    let port_be = match DECAP_CONFIG.get(0) {
        Some(config) if config.gue_port_be != 0 => config.gue_port_be,
        _ => return Err(Skip::NotTunnel),
    };
    // Source port, destination port, length, checksum.
    let header: *mut [u16; 4] = header(ctx, udp).ok_or(Skip::NotTunnel)?;
    let fields = unsafe { *header };
    if fields[1] != port_be {
        return Err(Skip::NotTunnel);
    }
    Ok(u16::from_be(fields[2]) as usize)
}

/// Where the inner packet lies, once the outer datagram is known to be within the frame.
#[inline(always)]
fn tunnel(
    payload: usize,
    encap: Encap,
    datagram: Datagram,
    outer_dst: DecapAddrKey,
    outer_ecn: u16,
) -> Result<Tunnel, Skip> {
    let (inner, end, version) = match encap {
        Encap::Ipip(version) => (payload, datagram.end, version),
        Encap::Gue(udp_len) => {
            if udp_len < UDP_HEADER_LEN || payload + udp_len > datagram.end {
                return Err(Skip::NotForUs);
            }
            (payload + UDP_HEADER_LEN, payload + udp_len, 0)
        }
    };
    Ok(Tunnel {
        inner,
        end,
        version,
        outer_dst,
        outer_ecn,
        frame_len: datagram.frame_len,
    })
}

/// The inner packet's EtherType, if the outer destination is a local address, the inner
/// header a valid one of the expected version, and its destination a VIP of this host.
#[inline(always)]
fn inner_for_us(ctx: &XdpContext, tunnel: &Tunnel) -> Option<u16> {
    // Every IP header is at least this long, so this is read whatever the version.
    let ip: *mut Ipv4Header = header(ctx, tunnel.inner)?;
    if tunnel.inner + IPV4_HEADER_LEN > tunnel.end {
        return None;
    }
    let version = unsafe { (*ip).version_ihl } >> 4;
    if tunnel.version != 0 && version != tunnel.version {
        return None;
    }
    let (inner_dst, ether_type) = if version == 4 {
        let header_len = ipv4::header_len(ip)?;
        if tunnel.inner + header_len > tunnel.end {
            return None;
        }
        let dst = DecapAddrKey {
            addr: ipv4_key_bytes(unsafe { (*ip).dst }),
            family: u32::from(FAMILY_IPV4),
        };
        (dst, ETH_P_IPV4)
    } else if version == 6 {
        let ip6: *mut Ipv6Header = header(ctx, tunnel.inner)?;
        if tunnel.inner + IPV6_HEADER_LEN > tunnel.end {
            return None;
        }
        let dst = DecapAddrKey {
            addr: unsafe { (*ip6).dst },
            family: u32::from(FAMILY_IPV6),
        };
        (dst, ETH_P_IPV6)
    } else {
        return None;
    };
    if flags(&tunnel.outer_dst) & DECAP_LOCAL == 0 || flags(&inner_dst) & DECAP_VIP == 0 {
        return None;
    }
    Some(ether_type)
}

#[inline(always)]
fn flags(key: &DecapAddrKey) -> u32 {
    unsafe { DECAP_ADDRS.get(key) }.copied().unwrap_or(0)
}

/// Takes the outer headers off: the Ethernet header (and its VLAN tag) moves forward to
/// just before the inner packet, with the inner packet's EtherType, and the frame starts
/// there. Then the outer CE mark, if any, goes into the inner header. False if the head
/// could not be moved (the frame is then as it came).
#[inline(always)]
fn strip(
    ctx: &XdpContext,
    l3: usize,
    tagged: bool,
    tunnel: &Tunnel,
    inner_ether_type: u16,
) -> bool {
    let Some(link) = header::<LinkWords>(ctx, 0) else {
        return false;
    };
    let (macs, tag) = unsafe { ((*link).macs, (*link).tag) };
    let outer_len = (tunnel.inner - l3) as i32;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len) } != 0 {
        return false;
    }
    // The inner header (at least 20 bytes) follows the link header: this always holds.
    let Some(link) = header::<LinkWords>(ctx, 0) else {
        return false;
    };
    let Some(tagged_header) = header::<VlanEthHeader>(ctx, 0) else {
        return false;
    };
    // Volatile stores, so that the compiler never turns the copy into a `memcpy` call.
    unsafe {
        core::ptr::write_volatile(&raw mut (*link).macs[0], macs[0]);
        core::ptr::write_volatile(&raw mut (*link).macs[1], macs[1]);
        core::ptr::write_volatile(&raw mut (*link).macs[2], macs[2]);
        if tagged {
            core::ptr::write_volatile(&raw mut (*link).tag, tag);
            (*tagged_header).ether_type_be = inner_ether_type.to_be();
        } else {
            (*tagged_header.cast::<EthHeader>()).ether_type_be = inner_ether_type.to_be();
        }
    }
    if tunnel.outer_ecn == ECN_CE {
        mark_congestion(ctx, l3, inner_ether_type);
    }
    true
}

/// Copies the outer CE mark into the inner header at `l3`, if the inner packet is
/// ECN-capable (RFC 6040).
#[inline(always)]
fn mark_congestion(ctx: &XdpContext, l3: usize, inner_ether_type: u16) {
    if inner_ether_type == ETH_P_IPV4 {
        let Some(ip) = header::<Ipv4Words>(ctx, l3) else {
            return;
        };
        let old = u16::from_be(unsafe { (*ip).version_tos_be });
        if old & ECN_CE == 0 || old & ECN_CE == ECN_CE {
            return;
        }
        let new = old | ECN_CE;
        // RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m').
        let check = u16::from_be(unsafe { (*ip).check_be });
        let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        unsafe {
            (*ip).version_tos_be = new.to_be();
            (*ip).check_be = (!(sum as u16)).to_be();
        }
    } else {
        let Some(ip) = header::<Ipv6Header>(ctx, l3) else {
            return;
        };
        // Version and the traffic class's high nibble, then its low nibble (ECN in the low
        // two bits of the class) and the flow label's high nibble.
        let second = unsafe { (*ip).version_class_flow[1] };
        let ecn = u16::from(second >> 4) & ECN_CE;
        if ecn == 0 || ecn == ECN_CE {
            return;
        }
        unsafe { (*ip).version_class_flow[1] = second | 0x30 };
    }
}
