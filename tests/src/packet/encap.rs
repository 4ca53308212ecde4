//! Encapsulation: an IP packet inside IP (IPIP: 4in4, 6in4, 4in6, 6in6) or inside GUE
//! (variant 1: a UDP header, then the inner packet itself, as Katran sends and Linux's `fou`
//! in `gue` mode accepts), as the balancer sends packets to tunnel reals and `lb_decap` takes
//! them apart.
//!
//! The outer header is what the balancer writes: the outer family follows the outer
//! addresses; the TTL (hop limit) and the DSCP/ECN byte (traffic class) are the inner
//! packet's; an IPv4 outer header has id 0, DF set and a correct checksum; an IPv6 outer
//! header flow label 0; a GUE UDP header checksum 0 (allowed over IPv6 for tunnels, RFC 6935).
//!
//! ```
//! use std::net::{IpAddr, SocketAddrV4};
//! use lb_tests::packet::{self, Frame};
//!
//! let client: SocketAddrV4 = "198.51.100.7:40000".parse().unwrap();
//! let vip: SocketAddrV4 = "203.0.113.10:53".parse().unwrap();
//! let inner = Frame::udp(client, vip).payload(b"query").ip_bytes();
//! let (lb, real): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
//! let frame = Frame::from_ip(&packet::ipip(lb, real, &inner)).build();
//! packet::check_checksums(&frame).unwrap();
//! let gue = Frame::from_ip(&packet::gue(lb, real, 40000, packet::GUE_PORT, &inner)).build();
//! packet::check_checksums(&gue).unwrap();
//! ```

use std::net::IpAddr;

use super::{PROTO_IPIP, PROTO_IPV6_IN_IP, PROTO_UDP, checks::checksum};

/// `inner` (an IPv4 or IPv6 packet, e.g. [`super::Frame::ip_bytes`]) inside an outer IP header
/// from `outer_src` to `outer_dst` (both of one family), protocol 4 for an IPv4 inner packet
/// and 41 for IPv6. Returns the outer packet.
pub fn ipip(outer_src: IpAddr, outer_dst: IpAddr, inner: &[u8]) -> Vec<u8> {
    let protocol = match inner_version(inner) {
        4 => PROTO_IPIP,
        _ => PROTO_IPV6_IN_IP,
    };
    outer(outer_src, outer_dst, protocol, inner, inner)
}

/// `inner` after a UDP header from port `sport` to `dport` (checksum 0), inside an outer IP
/// header from `outer_src` to `outer_dst`. Returns the outer packet.
pub fn gue(outer_src: IpAddr, outer_dst: IpAddr, sport: u16, dport: u16, inner: &[u8]) -> Vec<u8> {
    inner_version(inner);
    let length = u16::try_from(8 + inner.len()).expect("GUE datagram over 64 KiB");
    let mut datagram = Vec::with_capacity(8 + inner.len());
    datagram.extend_from_slice(&sport.to_be_bytes());
    datagram.extend_from_slice(&dport.to_be_bytes());
    datagram.extend_from_slice(&length.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]); // checksum: none
    datagram.extend_from_slice(inner);
    outer(outer_src, outer_dst, PROTO_UDP, &datagram, inner)
}

/// The IP version of `inner`; panics unless it is 4 or 6.
fn inner_version(inner: &[u8]) -> u8 {
    let version = inner.first().map_or(0, |byte| byte >> 4);
    assert!(
        matches!(version, 4 | 6),
        "the inner packet must be IPv4 or IPv6 (its first byte is {:02x?})",
        inner.first()
    );
    version
}

/// The inner packet's DSCP/ECN byte (TOS, traffic class) and TTL (hop limit).
fn inner_class_and_ttl(inner: &[u8]) -> (u8, u8) {
    let version = inner_version(inner);
    let header_len = if version == 4 { 20 } else { 40 };
    assert!(
        inner.len() >= header_len,
        "the inner packet is shorter than its IP header ({} bytes)",
        inner.len()
    );
    if version == 4 {
        (inner[1], inner[8])
    } else {
        ((inner[0] << 4) | (inner[1] >> 4), inner[7])
    }
}

/// `payload` (of `protocol`) inside an outer header whose class and TTL are `inner`'s.
fn outer(src: IpAddr, dst: IpAddr, protocol: u8, payload: &[u8], inner: &[u8]) -> Vec<u8> {
    let (class, ttl) = inner_class_and_ttl(inner);
    let mut packet = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = u16::try_from(20 + payload.len()).expect("outer packet over 64 KiB");
            let mut header = Vec::with_capacity(20 + payload.len());
            header.push(0x45); // version 4, IHL 5
            header.push(class);
            header.extend_from_slice(&total.to_be_bytes());
            header.extend_from_slice(&[0, 0]); // id 0
            header.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
            header.push(ttl);
            header.push(protocol);
            header.extend_from_slice(&[0, 0]);
            header.extend_from_slice(&src.octets());
            header.extend_from_slice(&dst.octets());
            let sum = checksum(&[&header]);
            header[10..12].copy_from_slice(&sum.to_be_bytes());
            header
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let length = u16::try_from(payload.len()).expect("outer payload over 64 KiB");
            let mut header = Vec::with_capacity(40 + payload.len());
            // Version 6, the traffic class, flow label 0.
            let first = 0x6000_0000u32 | (u32::from(class) << 20);
            header.extend_from_slice(&first.to_be_bytes());
            header.extend_from_slice(&length.to_be_bytes());
            header.push(protocol);
            header.push(ttl);
            header.extend_from_slice(&src.octets());
            header.extend_from_slice(&dst.octets());
            header
        }
        (src, dst) => panic!("outer addresses of two families: {src} and {dst}"),
    };
    packet.extend_from_slice(payload);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Frame, check_checksums, tests::v4, tests::v6};

    fn ip(addr: &str) -> IpAddr {
        addr.parse().unwrap()
    }

    /// Hand-written: checksums computed independently (Python), not by this module.
    #[rustfmt::skip]
    const IPIP_UDP: &[u8] = &[
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02,    // eth.dst: the lb
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,    // eth.src: the client
        0x08, 0x00,                            // eth.type: IPv4
        0x45,                                  // outer: version 4, IHL 5
        0x2e,                                  // outer.tos: the inner one (DSCP 11, ECT(0))
        0x00, 0x31,                            // outer.total_length: 20 + 29 = 49
        0x00, 0x00,                            // outer.id: 0
        0x40, 0x00,                            // outer: DF, offset 0
        0x21,                                  // outer.ttl: the inner one (33)
        0x04,                                  // outer.protocol: IPIP
        0xd5, 0x97,                            // outer.checksum
        0xc0, 0x00, 0x02, 0x01,                // outer.src: 192.0.2.1
        0xc0, 0x00, 0x02, 0x02,                // outer.dst: 192.0.2.2
        0x45,                                  // inner: version 4, IHL 5
        0x2e,                                  // inner.tos
        0x00, 0x1d,                            // inner.total_length: 20 + 8 + 1 = 29
        0x00, 0x00,                            // inner.id
        0x00, 0x00,                            // inner: no flags, offset 0
        0x21,                                  // inner.ttl: 33
        0x11,                                  // inner.protocol: UDP
        0x33, 0x5d,                            // inner.checksum
        0xc6, 0x33, 0x64, 0x07,                // inner.src: 198.51.100.7
        0xcb, 0x00, 0x71, 0x0a,                // inner.dst: 203.0.113.10
        0x9c, 0x40,                            // udp.sport: 40000
        0x00, 0x35,                            // udp.dport: 53
        0x00, 0x09,                            // udp.length: 9
        0x8c, 0x20,                            // udp.checksum
        b'q',                                  // payload
    ];

    #[test]
    fn ipip_matches_the_hand_written_fixture() {
        let inner = Frame::udp(v4("198.51.100.7:40000"), v4("203.0.113.10:53"))
            .tos(0x2e)
            .ttl(33)
            .payload(b"q")
            .ip_bytes();
        let built = Frame::from_ip(&ipip(ip("192.0.2.1"), ip("192.0.2.2"), &inner)).build();
        assert_eq!(
            built,
            IPIP_UDP,
            "{}",
            crate::pcap::field_diff(IPIP_UDP, &built)
        );
    }

    #[test]
    fn every_kind_carries_its_inner_packet_with_the_right_header() {
        let inner4 = Frame::udp(v4("198.51.100.7:40000"), v4("203.0.113.10:53"))
            .tos(0xb9)
            .ttl(17)
            .payload(b"four")
            .ip_bytes();
        let inner6 = Frame::ipv6_udp(v6("[2001:db8:ffff::7]:40000"), v6("[2001:db8:100::10]:53"))
            .traffic_class(0xb9)
            .ttl(17)
            .payload(b"six")
            .ip_bytes();
        let (a4, b4) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let (a6, b6) = (ip("2001:db8::1"), ip("2001:db8::2"));
        for (inner, protocol) in [(&inner4, PROTO_IPIP), (&inner6, PROTO_IPV6_IN_IP)] {
            let outer4 = ipip(a4, b4, inner);
            assert_eq!(outer4[9], protocol);
            assert_eq!((outer4[1], outer4[8]), (0xb9, 17), "TOS and TTL copied");
            assert_eq!(&outer4[6..8], &[0x40, 0], "DF");
            assert_eq!(&outer4[20..], &inner[..]);
            check_checksums(&Frame::from_ip(&outer4).build()).unwrap();

            let outer6 = ipip(a6, b6, inner);
            assert_eq!(outer6[6], protocol);
            assert_eq!(&outer6[0..4], &[0x6b, 0x90, 0, 0], "traffic class copied");
            assert_eq!(outer6[7], 17, "hop limit copied");
            assert_eq!(
                usize::from(u16::from_be_bytes([outer6[4], outer6[5]])),
                inner.len()
            );
            assert_eq!(&outer6[40..], &inner[..]);
            check_checksums(&Frame::from_ip(&outer6).vlan(7).build()).unwrap();

            for (outer, udp_at) in [
                (gue(a4, b4, 1234, 6080, inner), 20),
                (gue(a6, b6, 1234, 6080, inner), 40),
            ] {
                let udp = &outer[udp_at..udp_at + 8];
                assert_eq!(udp[..4], [0x04, 0xd2, 0x17, 0xc0], "ports");
                assert_eq!(
                    usize::from(u16::from_be_bytes([udp[4], udp[5]])),
                    8 + inner.len()
                );
                assert_eq!(udp[6..], [0, 0], "no checksum");
                assert_eq!(&outer[udp_at + 8..], &inner[..]);
                check_checksums(&Frame::from_ip(&outer).build()).unwrap();
            }
        }
    }

    #[test]
    fn check_checksums_looks_inside_every_kind() {
        let mut inner = Frame::udp(v4("198.51.100.7:1"), v4("203.0.113.10:2"))
            .payload(b"x")
            .ip_bytes();
        inner[10] ^= 0xff; // break the inner IPv4 checksum
        for outer in [
            ipip(ip("192.0.2.1"), ip("192.0.2.2"), &inner),
            ipip(ip("2001:db8::1"), ip("2001:db8::2"), &inner),
            gue(ip("192.0.2.1"), ip("192.0.2.2"), 1, 6080, &inner),
            gue(ip("2001:db8::1"), ip("2001:db8::2"), 1, 6080, &inner),
        ] {
            let error = check_checksums(&Frame::from_ip(&outer).build()).unwrap_err();
            assert!(error.contains("inner"), "{error}");
        }
    }

    #[test]
    #[should_panic(expected = "outer addresses of two families")]
    fn outer_families_must_agree() {
        let inner = Frame::udp(v4("198.51.100.7:1"), v4("203.0.113.10:2")).ip_bytes();
        let _ = ipip(ip("192.0.2.1"), ip("2001:db8::2"), &inner);
    }
}
