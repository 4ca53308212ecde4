//! Checksums: computing them, and verifying every one a frame carries.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, GUE_PORT, PROTO_HOP_BY_HOP, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_IPIP, PROTO_IPV6_DEST_OPTS, PROTO_IPV6_FRAGMENT, PROTO_IPV6_IN_IP, PROTO_IPV6_ROUTING,
    PROTO_TCP, PROTO_UDP, l3_start, l4::Pseudo, read_u16,
};

/// The Internet checksum (RFC 1071) of the concatenation of `chunks`.
pub fn checksum(chunks: &[&[u8]]) -> u16 {
    // Word by word with plain indexing: the fuzzer computes millions of these in debug builds,
    // where an iterator chain per byte costs several times more.
    let mut sum = 0u64;
    let mut odd: Option<u8> = None;
    for chunk in chunks {
        let mut bytes = &chunk[..];
        if let Some(high) = odd.take() {
            match bytes.split_first() {
                Some((&low, rest)) => {
                    sum += u64::from(u16::from_be_bytes([high, low]));
                    bytes = rest;
                }
                None => {
                    odd = Some(high);
                    continue;
                }
            }
        }
        let pairs = bytes.len() / 2;
        let mut i = 0;
        while i < pairs {
            sum += u64::from(u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]));
            i += 1;
        }
        if bytes.len() % 2 == 1 {
            odd = Some(bytes[bytes.len() - 1]);
        }
    }
    if let Some(high) = odd {
        sum += u64::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A frame cut to its first `len` bytes. Length fields keep the values they were built with:
/// the headers claim more than the frame holds.
pub fn truncated(frame: &[u8], len: usize) -> Vec<u8> {
    assert!(
        len <= frame.len(),
        "cannot truncate a {}-byte frame to {len} bytes",
        frame.len()
    );
    frame[..len].to_vec()
}

/// Verifies every checksum of a frame: the IPv4 header, and TCP/UDP/ICMP/ICMPv6 of
/// unfragmented IPv4 and IPv6 packets (also inside IPIP of either family, inside GUE to
/// [`GUE_PORT`] whose UDP checksum may be 0 also over IPv6 (RFC 6935), and behind IPv6
/// hop-by-hop, routing, destination options and fragment headers; an atomic fragment, offset
/// 0 without M, counts as unfragmented). `Err` names the first bad one. Anything else (ARP, other protocols,
/// headers the walk does not know such as AH or ESP, the packet quoted by an ICMP error)
/// passes.
pub fn check_checksums(frame: &[u8]) -> Result<(), String> {
    let (at, ethertype) = l3_start(frame)?;
    let l3 = &frame[at..];
    match ethertype {
        ETHERTYPE_IPV4 => check_ipv4(l3, "ip"),
        ETHERTYPE_IPV6 => check_ipv6(l3, "ip6"),
        _ => Ok(()),
    }
}

fn check_ipv4(packet: &[u8], name: &str) -> Result<(), String> {
    let ihl = usize::from(packet.first().ok_or(format!("{name}: empty"))? & 0x0f) * 4;
    let total = usize::from(read_u16(packet, 2).ok_or(format!("{name}: truncated header"))?);
    if ihl < 20 || packet.len() < ihl || total < ihl || packet.len() < total {
        return Err(format!(
            "{name}: IHL {ihl} / total length {total} do not fit {} bytes",
            packet.len()
        ));
    }
    if checksum(&[&packet[..ihl]]) != 0 {
        return Err(format!(
            "{name}.checksum: bad (0x{:04x})",
            read_u16(packet, 10).unwrap_or(0)
        ));
    }
    let flags_offset = read_u16(packet, 6).unwrap_or(0);
    if flags_offset & 0x3fff != 0 {
        return Ok(()); // a fragment: the L4 checksum covers the reassembled datagram
    }
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[12..16]).unwrap_or_default());
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[16..20]).unwrap_or_default());
    let segment = &packet[ihl..total];
    match packet[9] {
        PROTO_IPIP => check_ipv4(segment, &format!("inner.{name}")),
        PROTO_IPV6_IN_IP => check_ipv6(segment, "inner.ip6"),
        PROTO_ICMP if checksum(&[segment]) != 0 => Err(format!("{name}.icmp.checksum: bad")),
        protocol => check_l4(protocol, segment, &Pseudo::V4(src, dst), name),
    }
}

fn check_ipv6(packet: &[u8], name: &str) -> Result<(), String> {
    if packet.len() < 40 {
        return Err(format!("{name}: truncated header"));
    }
    let length = usize::from(read_u16(packet, 4).unwrap_or(0));
    let payload = packet
        .get(40..40 + length)
        .ok_or(format!("{name}: payload length exceeds the frame"))?;
    // Walk the extension headers this checker knows, up to the upper-layer header.
    let (mut next, mut at) = (packet[6], 0);
    loop {
        let header_len = match next {
            PROTO_HOP_BY_HOP | PROTO_IPV6_ROUTING | PROTO_IPV6_DEST_OPTS => {
                let units = payload
                    .get(at + 1)
                    .ok_or(format!("{name}: extension header {next} truncated"))?;
                (usize::from(*units) + 1) * 8
            }
            PROTO_IPV6_FRAGMENT => {
                let offset_more =
                    read_u16(payload, at + 2).ok_or(format!("{name}: fragment truncated"))?;
                if offset_more & 0xfff9 != 0 {
                    return Ok(()); // a fragment: the L4 checksum covers the whole datagram
                }
                8
            }
            _ => break,
        };
        if at + header_len > payload.len() {
            return Err(format!(
                "{name}: extension header {next} at {at} overruns the payload"
            ));
        }
        next = payload[at];
        at += header_len;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap_or_default());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap_or_default());
    let segment = &payload[at..];
    match next {
        PROTO_IPIP => check_ipv4(segment, "inner.ip"),
        PROTO_IPV6_IN_IP => check_ipv6(segment, "inner.ip6"),
        protocol => check_l4(protocol, segment, &Pseudo::V6(src, dst), name),
    }
}

fn check_l4(protocol: u8, segment: &[u8], pseudo: &Pseudo, name: &str) -> Result<(), String> {
    let (label, skip_zero) = match protocol {
        PROTO_TCP => ("tcp", false),
        PROTO_UDP => ("udp", matches!(pseudo, Pseudo::V4(..))),
        PROTO_ICMPV6 => ("icmp6", false),
        _ => return Ok(()),
    };
    let gue = protocol == PROTO_UDP && read_u16(segment, 2) == Some(GUE_PORT);
    let no_checksum = read_u16(segment, 6) == Some(0);
    // Over IPv6 a UDP checksum of 0 is not "none" but invalid (RFC 8200), whatever the sum.
    if protocol == PROTO_UDP && !gue && no_checksum && matches!(pseudo, Pseudo::V6(..)) {
        return Err(format!("{name}.udp.checksum: 0, which IPv6 does not allow"));
    }
    // IPv4 UDP without a checksum; or GUE, which may go without over IPv6 too (RFC 6935).
    if !((skip_zero || gue) && no_checksum)
        && checksum(&[&pseudo.bytes(protocol, segment.len()), segment]) != 0
    {
        return Err(format!("{name}.{label}.checksum: bad"));
    }
    match segment.get(8).map(|byte| byte >> 4) {
        Some(4) if gue => check_ipv4(&segment[8..], "gue.inner.ip"),
        Some(6) if gue => check_ipv6(&segment[8..], "gue.inner.ip6"),
        _ => Ok(()),
    }
}
