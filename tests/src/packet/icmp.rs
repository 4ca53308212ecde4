//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages: echo requests and the errors a router sends
//! about a packet it could not forward, quoting the start of that packet.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    Frame,
    l4::{Icmp, L4},
};

pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// Code of [`ICMP_DEST_UNREACH`]: fragmentation needed and DF set (next-hop MTU in the low 16
/// bits of the rest of the header, RFC 1191).
pub const ICMP_FRAG_NEEDED: u8 = 4;

pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// The MTU is the whole rest of the header.
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;

impl Frame {
    /// An ICMP error (IPv4 protocol 1) from `src` to `dst`: `icmp_type`, `code`, then
    /// `rest_of_header` (the 4 bytes after the checksum; for fragmentation-needed the
    /// next-hop MTU in the low 16 bits), then `quoted` (the start of the packet the error is
    /// about: its IP header and at least 8 bytes more, e.g. `&reply.ip_bytes()[..28]`). The
    /// checksum covers the ICMP message.
    pub fn icmp_error(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        icmp_type: u8,
        code: u8,
        rest_of_header: u32,
        quoted: &[u8],
    ) -> Frame {
        let icmp = Icmp {
            icmp_type,
            code,
            rest: rest_of_header,
            checksum: None,
        };
        Frame::ipv4(src, dst, L4::Icmp(icmp)).payload(quoted)
    }

    /// An ICMPv6 error (next header 58) from `src` to `dst`: like [`Frame::icmp_error`], with
    /// the checksum also covering the IPv6 pseudo-header. For packet-too-big,
    /// `rest_of_header` is the MTU. Extension headers may be added before the ICMPv6 header
    /// with the IPv6 knobs ([`Frame::hop_by_hop`], …).
    pub fn icmpv6_error(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        icmp_type: u8,
        code: u8,
        rest_of_header: u32,
        quoted: &[u8],
    ) -> Frame {
        let icmp = Icmp {
            icmp_type,
            code,
            rest: rest_of_header,
            checksum: None,
        };
        Frame::ipv6(src, dst, L4::Icmpv6(icmp)).payload(quoted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        LB_MAC, PROTO_ICMP, PROTO_ICMPV6, check_checksums,
        tests::{v4, v6},
    };
    use super::*;

    /// Hand-written: checksums computed independently (Python), not by this module.
    #[rustfmt::skip]
    const FRAG_NEEDED: &[u8] = &[
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02,    // eth.dst: the lb
        0x02, 0x00, 0x00, 0x00, 0x00, 0xfe,    // eth.src: a router
        0x08, 0x00,                            // eth.type: IPv4
        0x45, 0x00,                            // ip: version 4, IHL 5, tos 0
        0x00, 0x38,                            // ip.total_length: 20 + 8 + 28 = 56
        0x00, 0x00, 0x00, 0x00,                // ip.id, flags and offset
        0x40, 0x01,                            // ip.ttl 64, ip.protocol: ICMP
        0xf5, 0x62,                            // ip.checksum
        0xc0, 0x00, 0x02, 0xfe,                // ip.src: 192.0.2.254
        0xc0, 0x00, 0x02, 0x64,                // ip.dst: 192.0.2.100 (the VIP)
        0x03, 0x04,                            // icmp: destination unreachable, frag needed
        0x5a, 0xf2,                            // icmp.checksum
        0x00, 0x00, 0x05, 0x78,                // icmp: unused, next-hop MTU 1400
        0x45, 0x00, 0x00, 0x28,                // quoted ip: IHL 5, total length 40
        0x00, 0x00, 0x00, 0x00,                // quoted ip: id, flags and offset
        0x40, 0x06, 0x8e, 0x36,                // quoted ip: ttl, TCP, checksum
        0xc0, 0x00, 0x02, 0x64,                // quoted ip.src: 192.0.2.100
        0xc6, 0x33, 0x64, 0x02,                // quoted ip.dst: 198.51.100.2
        0x00, 0x50, 0x9c, 0x40,                // quoted tcp: ports 80 → 40000
        0x00, 0x00, 0x00, 0x01,                // quoted tcp.seq: 1
    ];

    #[test]
    fn frag_needed_quoting_a_reply_matches_the_hand_written_fixture() {
        let reply = Frame::tcp(v4("192.0.2.100:80"), v4("198.51.100.2:40000")).ack();
        let built = Frame::icmp_error(
            "192.0.2.254".parse().unwrap(),
            "192.0.2.100".parse().unwrap(),
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            1400,
            &reply.ip_bytes()[..28],
        )
        .src_mac([2, 0, 0, 0, 0, 0xfe])
        .dst_mac(LB_MAC)
        .build();
        assert_eq!(
            built,
            FRAG_NEEDED,
            "{}",
            crate::pcap::field_diff(FRAG_NEEDED, &built)
        );
        check_checksums(&built).unwrap();
    }

    #[test]
    fn packet_too_big_checksum_covers_the_pseudo_header() {
        let quoted = [0x60, 0, 0, 0, 0, 0, 6, 0x40];
        let frame = Frame::icmpv6_error(
            "2001:db8::fe".parse().unwrap(),
            "2001:db8::100".parse().unwrap(),
            ICMPV6_PACKET_TOO_BIG,
            0,
            1280,
            &quoted,
        )
        .build();
        assert_eq!(frame[20], PROTO_ICMPV6);
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]), 8 + 8);
        // type, code, checksum (computed independently), MTU 1280, quoted bytes.
        assert_eq!(&frame[54..62], &[2, 0, 0x35, 0x05, 0, 0, 0x05, 0x00]);
        assert_eq!(&frame[62..], &quoted);
        check_checksums(&frame).unwrap();

        // The same message between other addresses no longer verifies: the pseudo-header
        // counts.
        let mut moved = frame.clone();
        moved[22 + 15] ^= 1; // a bit of the source address
        let error = check_checksums(&moved).unwrap_err();
        assert!(error.contains("icmp6.checksum"), "{error}");
    }

    #[test]
    fn icmp_errors_quote_real_replies() {
        let reply6 = Frame::ipv6_tcp(v6("[2001:db8::100]:80"), v6("[2001:db8:1::2]:40000"))
            .ack()
            .payload(&[0; 1400]);
        let quoted = &reply6.ip_bytes()[..1232];
        let frame = Frame::icmpv6_error(
            "2001:db8::fe".parse().unwrap(),
            "2001:db8::100".parse().unwrap(),
            ICMPV6_PACKET_TOO_BIG,
            0,
            1280,
            quoted,
        )
        .build();
        assert_eq!(
            frame.len() - 14,
            1280,
            "a full-size error fills the minimum MTU"
        );
        check_checksums(&frame).unwrap();

        let time_exceeded = Frame::icmp_error(
            "192.0.2.254".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            ICMP_TIME_EXCEEDED,
            0,
            0,
            &Frame::udp(v4("192.0.2.1:1"), v4("198.51.100.2:2")).ip_bytes(),
        )
        .ttl(255)
        .build();
        assert_eq!(time_exceeded[23], PROTO_ICMP);
        assert_eq!(time_exceeded[34], ICMP_TIME_EXCEEDED);
        check_checksums(&time_exceeded).unwrap();
        let broken = Frame::icmp_error(
            "192.0.2.254".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            ICMP_DEST_UNREACH,
            1,
            0,
            &[0; 28],
        )
        .l4_checksum(0xbad)
        .build();
        let error = check_checksums(&broken).unwrap_err();
        assert!(error.contains("ip.icmp.checksum"), "{error}");
    }
}
