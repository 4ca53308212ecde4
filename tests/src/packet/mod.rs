//! The one packet builder: Ethernet frames (optionally VLAN-tagged) carrying IPv4 or IPv6 with
//! TCP, UDP, ICMP echo or ICMP errors, and ARP requests, with correct checksums unless told
//! otherwise; IPv6 extension headers; and fragmentation of a built frame.
//!
//! ```
//! use std::net::SocketAddrV4;
//! use lb_tests::packet::Frame;
//!
//! let client: SocketAddrV4 = "192.0.2.1:40000".parse().unwrap();
//! let vip: SocketAddrV4 = "192.0.2.100:80".parse().unwrap();
//! let syn = Frame::tcp(client, vip).syn().vlan(100).build();
//! lb_tests::packet::check_checksums(&syn).unwrap();
//! ```
//!
//! Defaults: source MAC [`CLIENT_MAC`], destination MAC [`LB_MAC`] (the DR topology's client
//! and lb), TTL/hop limit 64, IP id 0, no TCP flags, TCP seq 1, window 65535. Knobs that make
//! a frame malformed on purpose (`ip_ihl`, `ip_total_length`, `ip_checksum`, `l4_checksum`,
//! [`truncated`]) exist for fixtures of bad input.
//!
//! # Layout
//!
//! - this file: [`Frame`], its constructors, the Ethernet knobs and [`Frame::build`];
//! - `ipv4`: the IPv4 header and its knobs (id, DF, fragment, options, malformations);
//! - `ipv6`: the IPv6 header and its extension headers;
//! - `l4`: TCP, UDP and ICMP/ICMPv6 headers, pseudo-headers and their knobs;
//! - `icmp`: ICMP and ICMPv6 error messages ([`Frame::icmp_error`], [`Frame::icmpv6_error`]);
//! - `fragment`: [`fragments`], cutting a built frame the way a kernel would;
//! - `encap`: [`ipip`] and [`gue`], an IP packet inside another (wrap the result in
//!   [`Frame::from_ip`]);
//! - `checks`: [`checksum`], [`check_checksums`], [`truncated`].

mod checks;
mod encap;
mod fragment;
mod icmp;
mod ipv4;
mod ipv6;
mod l4;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

pub use checks::{check_checksums, checksum, truncated};
pub use encap::{gue, ipip};
pub use fragment::fragments;
pub use icmp::{
    ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_FRAG_NEEDED, ICMP_TIME_EXCEEDED,
    ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REQUEST, ICMPV6_PACKET_TOO_BIG, ICMPV6_TIME_EXCEEDED,
};
pub use ipv6::IPV6_ROUTING_TYPE;
pub use lb_common::{PROTO_TCP, PROTO_UDP};

pub use crate::topology::{CLIENT_MAC, LB_MAC};

use ipv4::Ipv4;
use ipv6::Ipv6;
use l4::{Icmp, L4, Tcp};

pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag (outer tag of QinQ).
pub const TPID_8021AD: u16 = 0x88a8;

/// IP protocol numbers, which are also IPv6 Next Header values.
pub const PROTO_HOP_BY_HOP: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
/// IP in IP: an IPv4 packet inside.
pub const PROTO_IPIP: u8 = 4;
/// IP in IP: an IPv6 packet inside (6in4, 6in6).
pub const PROTO_IPV6_IN_IP: u8 = 41;
pub const PROTO_IPV6_ROUTING: u8 = 43;
pub const PROTO_IPV6_FRAGMENT: u8 = 44;
/// Encapsulating Security Payload: nothing after its SPI and sequence number is readable.
pub const PROTO_ESP: u8 = 50;
/// Authentication Header: its length counts 4-byte units minus 2, unlike other extensions.
pub const PROTO_AH: u8 = 51;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_IPV6_NO_NEXT: u8 = 59;
pub const PROTO_IPV6_DEST_OPTS: u8 = 60;

/// The UDP port GUE packets go to by default (the balancer's `gue_port`, `lbd decap
/// --gue-port`).
pub const GUE_PORT: u16 = lb_common::decap::DEFAULT_GUE_PORT;

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// A frame under construction. Cheap to clone: build variants from one base.
#[derive(Clone, Debug)]
pub struct Frame {
    dst_mac: Mac,
    src_mac: Mac,
    /// (TPID, TCI), outermost first.
    tags: Vec<(u16, u16)>,
    l3: L3,
    payload: Vec<u8>,
}

#[derive(Clone, Debug)]
enum L3 {
    V4(Ipv4, L4),
    V6(Ipv6, L4),
    ArpRequest {
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    /// An IP packet given whole ([`Frame::from_ip`]).
    Ip(Vec<u8>),
}

impl Frame {
    /// IPv4 + TCP, no flags set yet (see [`Frame::syn`] and friends).
    pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4) -> Frame {
        Frame::ipv4(
            *src.ip(),
            *dst.ip(),
            L4::Tcp(Tcp::new(src.port(), dst.port())),
        )
    }

    /// IPv4 + UDP.
    pub fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Frame {
        Frame::ipv4(*src.ip(), *dst.ip(), L4::udp(src.port(), dst.port()))
    }

    /// IPv4 + ICMP echo request, id 1 seq 1 unless set.
    pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Frame {
        Frame::ipv4(src, dst, L4::Icmp(Icmp::echo(ICMP_ECHO_REQUEST)))
    }

    /// ARP "who has `target`? tell `sender`", broadcast, from [`Frame::src_mac`].
    pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Frame {
        Frame::new(L3::ArpRequest { sender, target }).dst_mac(BROADCAST)
    }

    /// IPv6 + TCP, no flags set yet. Extension headers go in with [`Frame::hop_by_hop`] and
    /// friends.
    pub fn ipv6_tcp(src: SocketAddrV6, dst: SocketAddrV6) -> Frame {
        let l4 = L4::Tcp(Tcp::new(src.port(), dst.port()));
        Frame::ipv6(*src.ip(), *dst.ip(), l4)
    }

    /// IPv6 + UDP.
    pub fn ipv6_udp(src: SocketAddrV6, dst: SocketAddrV6) -> Frame {
        Frame::ipv6(*src.ip(), *dst.ip(), L4::udp(src.port(), dst.port()))
    }

    /// IPv6 + ICMPv6 echo request, id 1 seq 1 unless set.
    pub fn icmpv6_echo(src: Ipv6Addr, dst: Ipv6Addr) -> Frame {
        Frame::ipv6(src, dst, L4::Icmpv6(Icmp::echo(ICMPV6_ECHO_REQUEST)))
    }

    /// An IPv4 or IPv6 packet given as bytes (an encapsulated one from [`ipip`] or [`gue`],
    /// or [`Frame::ip_bytes`] of another frame), in an Ethernet frame: only the Ethernet
    /// knobs apply. The EtherType follows the packet's version nibble.
    pub fn from_ip(packet: &[u8]) -> Frame {
        assert!(
            matches!(packet.first().map(|byte| byte >> 4), Some(4 | 6)),
            "from_ip needs an IPv4 or IPv6 packet (first byte {:02x?})",
            packet.first()
        );
        Frame::new(L3::Ip(packet.to_vec()))
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Frame {
        Frame::new(L3::V4(Ipv4::new(src, dst), l4))
    }

    fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, l4: L4) -> Frame {
        Frame::new(L3::V6(Ipv6::new(src, dst), l4))
    }

    fn new(l3: L3) -> Frame {
        Frame {
            dst_mac: LB_MAC,
            src_mac: CLIENT_MAC,
            tags: Vec::new(),
            l3,
            payload: Vec::new(),
        }
    }

    // ---- Ethernet ----

    pub fn src_mac(mut self, mac: Mac) -> Frame {
        self.src_mac = mac;
        self
    }

    pub fn dst_mac(mut self, mac: Mac) -> Frame {
        self.dst_mac = mac;
        self
    }

    /// Adds an 802.1Q tag with VLAN id `id` (priority 0) inside the tags added before: call it
    /// twice for a double 802.1Q tag, outer first.
    pub fn vlan(self, id: u16) -> Frame {
        assert!(id < 4096, "VLAN id {id} does not fit 12 bits");
        self.tag(TPID_8021Q, id)
    }

    /// QinQ: an 802.1ad outer tag then an 802.1Q inner tag.
    pub fn qinq(self, outer: u16, inner: u16) -> Frame {
        assert!(
            outer < 4096 && inner < 4096,
            "VLAN ids {outer}/{inner} do not fit 12 bits"
        );
        self.tag(TPID_8021AD, outer).tag(TPID_8021Q, inner)
    }

    /// Adds any tag: `tpid` then the raw 16-bit TCI (priority, DEI, VLAN id).
    pub fn tag(mut self, tpid: u16, tci: u16) -> Frame {
        self.tags.push((tpid, tci));
        self
    }

    // ---- IP ----

    /// TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(mut self, ttl: u8) -> Frame {
        match &mut self.l3 {
            L3::V4(ip, _) => ip.ttl = ttl,
            L3::V6(ip, _) => ip.hop_limit = ttl,
            L3::ArpRequest { .. } | L3::Ip(_) => {
                panic!("ttl() applies to IP frames the builder makes")
            }
        }
        self
    }

    /// Data after the TCP/UDP/ICMP header (for ICMP errors: the quoted packet).
    pub fn payload(mut self, payload: &[u8]) -> Frame {
        assert!(
            !matches!(self.l3, L3::ArpRequest { .. } | L3::Ip(_)),
            "payload() does not apply to ARP frames nor to frames from_ip"
        );
        self.payload = payload.to_vec();
        self
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let l3 = self.l3_bytes();
        let mut frame = Vec::with_capacity(14 + 4 * self.tags.len() + l3.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
        }
        let ethertype = match self.l3 {
            L3::V4(..) => ETHERTYPE_IPV4,
            L3::V6(..) => ETHERTYPE_IPV6,
            L3::ArpRequest { .. } => ETHERTYPE_ARP,
            L3::Ip(ref packet) if packet[0] >> 4 == 4 => ETHERTYPE_IPV4,
            L3::Ip(_) => ETHERTYPE_IPV6,
        };
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&l3);
        frame
    }

    /// The IP packet alone: [`Frame::build`] without the Ethernet header and tags. This is
    /// what an ICMP error quotes, e.g. the start of a real's reply:
    /// `Frame::icmp_error(router, vip, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1400,
    /// &reply.ip_bytes()[..28])`.
    pub fn ip_bytes(&self) -> Vec<u8> {
        assert!(
            !matches!(self.l3, L3::ArpRequest { .. }),
            "ip_bytes() applies to IP frames"
        );
        self.l3_bytes()
    }

    fn l3_bytes(&self) -> Vec<u8> {
        match &self.l3 {
            L3::V4(ip, l4) => {
                let segment = l4.build(&self.payload, &l4::Pseudo::V4(ip.src, ip.dst));
                let mut packet = ip.header(l4.protocol(), segment.len());
                packet.extend_from_slice(&segment);
                packet
            }
            L3::V6(ip, l4) => {
                let segment = l4.build(&self.payload, &l4::Pseudo::V6(ip.src, ip.dst));
                ip.packet(l4.protocol(), &segment)
            }
            L3::Ip(packet) => packet.clone(),
            L3::ArpRequest { sender, target } => {
                let mut arp = Vec::with_capacity(28);
                arp.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
                arp.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // protocol: IPv4
                arp.extend_from_slice(&[6, 4]); // address lengths
                arp.extend_from_slice(&1u16.to_be_bytes()); // operation: request
                arp.extend_from_slice(&self.src_mac);
                arp.extend_from_slice(&sender.octets());
                arp.extend_from_slice(&[0; 6]); // target hardware address: unknown
                arp.extend_from_slice(&target.octets());
                arp
            }
        }
    }

    fn ipv4_mut(&mut self, what: &str) -> &mut Ipv4 {
        match &mut self.l3 {
            L3::V4(ip, _) => ip,
            _ => panic!("{what}() applies to IPv4 frames"),
        }
    }

    fn ipv6_mut(&mut self, what: &str) -> &mut Ipv6 {
        match &mut self.l3 {
            L3::V6(ip, _) => ip,
            _ => panic!("{what}() applies to IPv6 frames"),
        }
    }

    fn l4_mut(&mut self, what: &str) -> &mut L4 {
        match &mut self.l3 {
            L3::V4(_, l4) | L3::V6(_, l4) => l4,
            L3::ArpRequest { .. } | L3::Ip(_) => {
                panic!("{what}() applies to IP frames the builder makes")
            }
        }
    }
}

/// Reads a big-endian u16 at `at`, `None` past the end.
fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Where the L3 header starts in an Ethernet frame (after any VLAN tags) and its ethertype.
fn l3_start(frame: &[u8]) -> Result<(usize, u16), String> {
    let mut at = 12;
    let mut ethertype = read_u16(frame, at).ok_or("frame shorter than an Ethernet header")?;
    while matches!(ethertype, TPID_8021Q | TPID_8021AD) {
        at += 4;
        ethertype = read_u16(frame, at).ok_or("frame ends inside a VLAN tag")?;
    }
    Ok((at + 2, ethertype))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn v4(addr: &str) -> SocketAddrV4 {
        addr.parse().unwrap()
    }

    pub(super) fn v6(addr: &str) -> SocketAddrV6 {
        addr.parse().unwrap()
    }

    #[test]
    fn a_zero_udp_checksum_is_none_over_ipv4_and_invalid_over_ipv6() {
        let v4_frame = Frame::udp(v4("192.0.2.1:4000"), v4("192.0.2.100:53"))
            .l4_checksum(0)
            .build();
        assert_eq!(check_checksums(&v4_frame), Ok(()));
        let v6_frame = Frame::ipv6_udp(v6("[2001:db8::1]:4000"), v6("[2001:db8::100]:53"))
            .l4_checksum(0)
            .build();
        let refused = check_checksums(&v6_frame).unwrap_err();
        assert!(refused.contains("IPv6 does not allow"), "{refused}");
    }

    /// Hand-written: checksums computed independently (Python), not by this module.
    #[rustfmt::skip]
    const VLAN_TCP_SYN: &[u8] = &[
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02,    // eth.dst: the lb
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,    // eth.src: the client
        0x81, 0x00,                            // 802.1Q TPID
        0x00, 0x64,                            // TCI: priority 0, VLAN 100
        0x08, 0x00,                            // eth.type: IPv4
        0x45,                                  // ip: version 4, IHL 5
        0x00,                                  // ip.tos
        0x00, 0x2a,                            // ip.total_length: 20 + 20 + 2 = 42
        0x00, 0x00,                            // ip.id
        0x00, 0x00,                            // ip: no flags, fragment offset 0
        0x40,                                  // ip.ttl: 64
        0x06,                                  // ip.protocol: TCP
        0xf6, 0x68,                            // ip.checksum
        0xc0, 0x00, 0x02, 0x01,                // ip.src: 192.0.2.1
        0xc0, 0x00, 0x02, 0x64,                // ip.dst: 192.0.2.100
        0x9c, 0x40,                            // tcp.sport: 40000
        0x00, 0x50,                            // tcp.dport: 80
        0x00, 0x00, 0x00, 0x01,                // tcp.seq: 1
        0x00, 0x00, 0x00, 0x00,                // tcp.ack: 0
        0x50,                                  // tcp.data_offset: 5 words
        0x02,                                  // tcp.flags: SYN
        0xff, 0xff,                            // tcp.window: 65535
        0x26, 0x80,                            // tcp.checksum
        0x00, 0x00,                            // tcp.urgent
        b'h', b'i',                            // payload
    ];

    #[test]
    fn vlan_tcp_syn_matches_the_hand_written_fixture() {
        let built = Frame::tcp(v4("192.0.2.1:40000"), v4("192.0.2.100:80"))
            .syn()
            .vlan(100)
            .payload(b"hi")
            .build();
        assert_eq!(
            built,
            VLAN_TCP_SYN,
            "{}",
            crate::pcap::field_diff(VLAN_TCP_SYN, &built)
        );
    }

    #[test]
    fn checksums_of_built_frames_verify() {
        let frames = [
            Frame::tcp(v4("192.0.2.1:40000"), v4("192.0.2.100:80"))
                .syn()
                .build(),
            Frame::tcp(v4("192.0.2.1:1"), v4("192.0.2.100:443"))
                .ack()
                .psh()
                .seq(0xdead_beef)
                .ack_number(7)
                .ip_options(&[1, 1, 1, 0]) // NOP NOP NOP EOL
                .tcp_options(&[2, 4, 0x05, 0xb4]) // MSS 1460
                .payload(b"odd")
                .qinq(10, 20)
                .build(),
            Frame::udp(v4("192.0.2.1:5353"), v4("192.0.2.100:53"))
                .payload(b"query")
                .vlan(7)
                .build(),
            Frame::icmp_echo("192.0.2.1".parse().unwrap(), "192.0.2.100".parse().unwrap())
                .payload(b"ping!")
                .build(),
            Frame::ipv6_tcp(v6("[2001:db8::1]:40000"), v6("[2001:db8::100]:80"))
                .syn()
                .build(),
            Frame::ipv6_udp(v6("[2001:db8::1]:40000"), v6("[2001:db8::100]:53"))
                .payload(b"x")
                .build(),
            Frame::icmpv6_echo(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::100".parse().unwrap(),
            )
            .icmp_id(7)
            .payload(b"ping6")
            .build(),
        ];
        for frame in &frames {
            check_checksums(frame).unwrap_or_else(|error| panic!("{error} in {frame:02x?}"));
        }
        // Recomputing over the IPv4 header, checksum included, gives zero.
        let ihl = usize::from(frames[1][22] & 0x0f) * 4;
        assert_eq!(ihl, 24);
        assert_eq!(checksum(&[&frames[1][22..22 + ihl]]), 0);
    }

    #[test]
    fn overrides_break_checksums_on_purpose() {
        let base = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.100:2"));
        assert!(
            check_checksums(&base.clone().ip_checksum(0x1234).build())
                .unwrap_err()
                .contains("ip.checksum")
        );
        assert!(
            check_checksums(&base.clone().l4_checksum(0x1234).build())
                .unwrap_err()
                .contains("udp.checksum")
        );
        // An IPv4 UDP checksum of zero means "none".
        check_checksums(&base.l4_checksum(0).build()).unwrap();
        let echo6 = Frame::icmpv6_echo(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        assert!(
            check_checksums(&echo6.l4_checksum(0x1234).build())
                .unwrap_err()
                .contains("icmp6.checksum")
        );
    }

    #[test]
    fn layout_of_other_frames() {
        let arp = Frame::arp_request("192.0.2.1".parse().unwrap(), "192.0.2.100".parse().unwrap())
            .build();
        assert_eq!(arp.len(), 42);
        assert_eq!(&arp[..6], &BROADCAST);
        assert_eq!(&arp[12..14], &[0x08, 0x06]);
        assert_eq!(&arp[22..28], &CLIENT_MAC); // sender hardware address
        assert_eq!(&arp[38..42], &[192, 0, 2, 100]); // target protocol address

        let fragment = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.100:2"))
            .fragment(true, 1480)
            .ttl(3)
            .build();
        assert_eq!(&fragment[20..22], &[0x20, 0xb9]); // MF, offset 185 × 8
        assert_eq!(fragment[22], 3);
        check_checksums(&fragment).unwrap();

        let ipv6 = Frame::ipv6_tcp(v6("[2001:db8::1]:1"), v6("[2001:db8::2]:2")).build();
        assert_eq!(ipv6.len(), 14 + 40 + 20);
        assert_eq!(&ipv6[12..14], &[0x86, 0xdd]);
        assert_eq!(&ipv6[18..20], &[0, 20]); // payload length
        assert_eq!(ipv6[20], PROTO_TCP);

        let echo6 = Frame::icmpv6_echo(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
        .icmp_seq(9)
        .build();
        assert_eq!(echo6[20], PROTO_ICMPV6);
        assert_eq!(&echo6[54..62], &[128, 0, echo6[56], echo6[57], 0, 1, 0, 9]);

        let short = truncated(
            &Frame::tcp(v4("192.0.2.1:1"), v4("192.0.2.100:2")).build(),
            30,
        );
        assert_eq!(short.len(), 30);
        assert_eq!(&short[16..18], &[0, 40]); // still claims a 40-byte IP packet
    }

    #[test]
    fn ip_bytes_is_the_frame_without_ethernet() {
        let base = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.100:2")).payload(b"abc");
        assert_eq!(base.ip_bytes(), &base.build()[14..]);
        let tagged = base.clone().qinq(1, 2);
        assert_eq!(tagged.ip_bytes(), &tagged.build()[22..]);
        let ipv6 = Frame::ipv6_tcp(v6("[2001:db8::1]:1"), v6("[2001:db8::2]:2")).hop_by_hop(0);
        assert_eq!(ipv6.ip_bytes(), &ipv6.build()[14..]);
        assert_eq!(ipv6.ip_bytes()[0] >> 4, 6);
    }

    #[test]
    #[should_panic(expected = "syn() applies to TCP frames")]
    fn tcp_knobs_refuse_udp_frames() {
        let _ = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.100:2")).syn();
    }

    #[test]
    #[should_panic(expected = "hop_by_hop() applies to IPv6 frames")]
    fn ipv6_knobs_refuse_ipv4_frames() {
        let _ = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.100:2")).hop_by_hop(0);
    }
}
