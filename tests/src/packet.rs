//! The one packet builder: Ethernet frames (optionally VLAN-tagged) carrying IPv4 or IPv6 with
//! TCP, UDP or ICMP echo, and ARP requests, with correct checksums unless told otherwise.
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

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

pub use crate::topology::{CLIENT_MAC, LB_MAC};

pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag (outer tag of QinQ).
pub const TPID_8021AD: u16 = 0x88a8;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub use lb_common::{PROTO_TCP, PROTO_UDP};

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
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        l4: L4,
    },
    ArpRequest {
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
}

#[derive(Clone, Debug)]
struct Ipv4 {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    id: u16,
    dont_fragment: bool,
    more_fragments: bool,
    /// In bytes; a multiple of 8.
    fragment_offset: u16,
    ttl: u8,
    options: Vec<u8>,
    ihl: Option<u8>,
    total_length: Option<u16>,
    checksum: Option<u16>,
}

#[derive(Clone, Debug)]
enum L4 {
    Tcp(Tcp),
    Udp {
        src_port: u16,
        dst_port: u16,
        checksum: Option<u16>,
    },
    IcmpEcho {
        id: u16,
        seq: u16,
        checksum: Option<u16>,
    },
}

#[derive(Clone, Debug)]
struct Tcp {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: Vec<u8>,
    checksum: Option<u16>,
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
        Frame::ipv4(
            *src.ip(),
            *dst.ip(),
            L4::Udp {
                src_port: src.port(),
                dst_port: dst.port(),
                checksum: None,
            },
        )
    }

    /// IPv4 + ICMP echo request, id 1 seq 1 unless set.
    pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Frame {
        Frame::ipv4(
            src,
            dst,
            L4::IcmpEcho {
                id: 1,
                seq: 1,
                checksum: None,
            },
        )
    }

    /// ARP "who has `target`? tell `sender`", broadcast, from [`Frame::src_mac`].
    pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Frame {
        Frame::new(L3::ArpRequest { sender, target }).dst_mac(BROADCAST)
    }

    /// IPv6 + TCP (no extension headers), no flags set yet.
    pub fn ipv6_tcp(src: SocketAddrV6, dst: SocketAddrV6) -> Frame {
        let l4 = L4::Tcp(Tcp::new(src.port(), dst.port()));
        Frame::new(L3::V6 {
            src: *src.ip(),
            dst: *dst.ip(),
            hop_limit: 64,
            l4,
        })
    }

    /// IPv6 + UDP (no extension headers).
    pub fn ipv6_udp(src: SocketAddrV6, dst: SocketAddrV6) -> Frame {
        let l4 = L4::Udp {
            src_port: src.port(),
            dst_port: dst.port(),
            checksum: None,
        };
        Frame::new(L3::V6 {
            src: *src.ip(),
            dst: *dst.ip(),
            hop_limit: 64,
            l4,
        })
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Frame {
        Frame::new(L3::V4(
            Ipv4 {
                src,
                dst,
                tos: 0,
                id: 0,
                dont_fragment: false,
                more_fragments: false,
                fragment_offset: 0,
                ttl: 64,
                options: Vec::new(),
                ihl: None,
                total_length: None,
                checksum: None,
            },
            l4,
        ))
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
            L3::V6 { hop_limit, .. } => *hop_limit = ttl,
            L3::ArpRequest { .. } => panic!("ttl() applies to IP frames"),
        }
        self
    }

    pub fn tos(mut self, tos: u8) -> Frame {
        self.ipv4_mut("tos").tos = tos;
        self
    }

    pub fn ip_id(mut self, id: u16) -> Frame {
        self.ipv4_mut("ip_id").id = id;
        self
    }

    pub fn dont_fragment(mut self) -> Frame {
        self.ipv4_mut("dont_fragment").dont_fragment = true;
        self
    }

    /// Marks the packet a fragment: `more` sets MF, `offset` is in bytes (a multiple of 8).
    /// The builder still writes the L4 header after the IP header: for a non-first fragment
    /// those bytes are simply fragment data.
    pub fn fragment(mut self, more: bool, offset: u16) -> Frame {
        assert!(
            offset.is_multiple_of(8) && offset / 8 < 0x2000,
            "fragment offset {offset} is not a multiple of 8 below 65536"
        );
        let ip = self.ipv4_mut("fragment");
        ip.more_fragments = more;
        ip.fragment_offset = offset;
        self
    }

    /// IPv4 options, padded by the caller to a multiple of 4 bytes (at most 40); IHL follows.
    pub fn ip_options(mut self, options: &[u8]) -> Frame {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "IPv4 options must be 0..=40 bytes, a multiple of 4"
        );
        self.ipv4_mut("ip_options").options = options.to_vec();
        self
    }

    /// Malformed on purpose: writes this IHL instead of the true one.
    pub fn ip_ihl(mut self, ihl: u8) -> Frame {
        assert!(ihl < 16, "IHL {ihl} does not fit 4 bits");
        self.ipv4_mut("ip_ihl").ihl = Some(ihl);
        self
    }

    /// Malformed on purpose: writes this total length instead of the true one.
    pub fn ip_total_length(mut self, length: u16) -> Frame {
        self.ipv4_mut("ip_total_length").total_length = Some(length);
        self
    }

    /// Malformed on purpose: writes this header checksum instead of the true one.
    pub fn ip_checksum(mut self, checksum: u16) -> Frame {
        self.ipv4_mut("ip_checksum").checksum = Some(checksum);
        self
    }

    // ---- L4 ----

    pub fn syn(self) -> Frame {
        self.add_flags("syn", tcp_flags::SYN)
    }

    pub fn ack(self) -> Frame {
        self.add_flags("ack", tcp_flags::ACK)
    }

    pub fn fin(self) -> Frame {
        self.add_flags("fin", tcp_flags::FIN)
    }

    pub fn rst(self) -> Frame {
        self.add_flags("rst", tcp_flags::RST)
    }

    pub fn psh(self) -> Frame {
        self.add_flags("psh", tcp_flags::PSH)
    }

    /// Sets the TCP flags byte exactly (see [`tcp_flags`]).
    pub fn tcp_flags(mut self, flags: u8) -> Frame {
        self.tcp_mut("tcp_flags").flags = flags;
        self
    }

    pub fn seq(mut self, seq: u32) -> Frame {
        self.tcp_mut("seq").seq = seq;
        self
    }

    /// The acknowledgment number (does not set the ACK flag: see [`Frame::ack`]).
    pub fn ack_number(mut self, ack: u32) -> Frame {
        self.tcp_mut("ack_number").ack = ack;
        self
    }

    pub fn window(mut self, window: u16) -> Frame {
        self.tcp_mut("window").window = window;
        self
    }

    /// TCP options, padded by the caller to a multiple of 4 bytes (at most 40); the data
    /// offset follows.
    pub fn tcp_options(mut self, options: &[u8]) -> Frame {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "TCP options must be 0..=40 bytes, a multiple of 4"
        );
        self.tcp_mut("tcp_options").options = options.to_vec();
        self
    }

    pub fn icmp_id(mut self, value: u16) -> Frame {
        match self.l4_mut("icmp_id") {
            L4::IcmpEcho { id, .. } => *id = value,
            _ => panic!("icmp_id() applies to ICMP echo frames"),
        }
        self
    }

    pub fn icmp_seq(mut self, value: u16) -> Frame {
        match self.l4_mut("icmp_seq") {
            L4::IcmpEcho { seq, .. } => *seq = value,
            _ => panic!("icmp_seq() applies to ICMP echo frames"),
        }
        self
    }

    /// Malformed on purpose: writes this TCP/UDP/ICMP checksum instead of the true one.
    pub fn l4_checksum(mut self, value: u16) -> Frame {
        match self.l4_mut("l4_checksum") {
            L4::Tcp(tcp) => tcp.checksum = Some(value),
            L4::Udp { checksum, .. } | L4::IcmpEcho { checksum, .. } => *checksum = Some(value),
        }
        self
    }

    /// Data after the TCP/UDP/ICMP header.
    pub fn payload(mut self, payload: &[u8]) -> Frame {
        assert!(
            !matches!(self.l3, L3::ArpRequest { .. }),
            "payload() does not apply to ARP frames"
        );
        self.payload = payload.to_vec();
        self
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(128 + self.payload.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
        }
        match &self.l3 {
            L3::V4(ip, l4) => {
                frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let segment = l4.build(&self.payload, &Pseudo::V4(ip.src, ip.dst));
                frame.extend_from_slice(&ip.header(l4.protocol(), segment.len()));
                frame.extend_from_slice(&segment);
            }
            L3::V6 {
                src,
                dst,
                hop_limit,
                l4,
            } => {
                frame.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                let segment = l4.build(&self.payload, &Pseudo::V6(*src, *dst));
                let payload_length =
                    u16::try_from(segment.len()).expect("IPv6 payload over 64 KiB");
                frame.extend_from_slice(&0x6000_0000u32.to_be_bytes()); // version 6, class 0, flow 0
                frame.extend_from_slice(&payload_length.to_be_bytes());
                frame.push(l4.protocol());
                frame.push(*hop_limit);
                frame.extend_from_slice(&src.octets());
                frame.extend_from_slice(&dst.octets());
                frame.extend_from_slice(&segment);
            }
            L3::ArpRequest { sender, target } => {
                frame.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
                frame.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
                frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // protocol: IPv4
                frame.extend_from_slice(&[6, 4]); // address lengths
                frame.extend_from_slice(&1u16.to_be_bytes()); // operation: request
                frame.extend_from_slice(&self.src_mac);
                frame.extend_from_slice(&sender.octets());
                frame.extend_from_slice(&[0; 6]); // target hardware address: unknown
                frame.extend_from_slice(&target.octets());
            }
        }
        frame
    }

    fn ipv4_mut(&mut self, what: &str) -> &mut Ipv4 {
        match &mut self.l3 {
            L3::V4(ip, _) => ip,
            _ => panic!("{what}() applies to IPv4 frames"),
        }
    }

    fn l4_mut(&mut self, what: &str) -> &mut L4 {
        match &mut self.l3 {
            L3::V4(_, l4) | L3::V6 { l4, .. } => l4,
            L3::ArpRequest { .. } => panic!("{what}() applies to IP frames"),
        }
    }

    fn tcp_mut(&mut self, what: &str) -> &mut Tcp {
        match self.l4_mut(what) {
            L4::Tcp(tcp) => tcp,
            _ => panic!("{what}() applies to TCP frames"),
        }
    }

    fn add_flags(mut self, what: &str, flags: u8) -> Frame {
        self.tcp_mut(what).flags |= flags;
        self
    }
}

impl Tcp {
    fn new(src_port: u16, dst_port: u16) -> Tcp {
        Tcp {
            src_port,
            dst_port,
            seq: 1,
            ack: 0,
            flags: 0,
            window: 65535,
            options: Vec::new(),
            checksum: None,
        }
    }
}

impl Ipv4 {
    fn header(&self, protocol: u8, segment_len: usize) -> Vec<u8> {
        let header_len = 20 + self.options.len();
        let ihl = self.ihl.unwrap_or((header_len / 4) as u8);
        let total_length = self.total_length.unwrap_or_else(|| {
            u16::try_from(header_len + segment_len).expect("IPv4 packet over 64 KiB")
        });
        let flags_offset = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | (self.fragment_offset / 8);
        let mut header = Vec::with_capacity(header_len);
        header.push(0x40 | ihl);
        header.push(self.tos);
        header.extend_from_slice(&total_length.to_be_bytes());
        header.extend_from_slice(&self.id.to_be_bytes());
        header.extend_from_slice(&flags_offset.to_be_bytes());
        header.push(self.ttl);
        header.push(protocol);
        header.extend_from_slice(&[0, 0]);
        header.extend_from_slice(&self.src.octets());
        header.extend_from_slice(&self.dst.octets());
        header.extend_from_slice(&self.options);
        let checksum = self.checksum.unwrap_or_else(|| checksum(&[&header]));
        header[10..12].copy_from_slice(&checksum.to_be_bytes());
        header
    }
}

enum Pseudo {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Pseudo {
    /// The pseudo-header covered by TCP/UDP checksums (RFC 793, RFC 8200 §8.1).
    fn bytes(&self, protocol: u8, length: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(40);
        match self {
            Pseudo::V4(src, dst) => {
                bytes.extend_from_slice(&src.octets());
                bytes.extend_from_slice(&dst.octets());
                bytes.extend_from_slice(&[0, protocol]);
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            }
            Pseudo::V6(src, dst) => {
                bytes.extend_from_slice(&src.octets());
                bytes.extend_from_slice(&dst.octets());
                bytes.extend_from_slice(&(length as u32).to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0, protocol]);
            }
        }
        bytes
    }
}

impl L4 {
    fn protocol(&self) -> u8 {
        match self {
            L4::Tcp(_) => PROTO_TCP,
            L4::Udp { .. } => PROTO_UDP,
            L4::IcmpEcho { .. } => PROTO_ICMP,
        }
    }

    fn build(&self, payload: &[u8], pseudo: &Pseudo) -> Vec<u8> {
        let mut segment = Vec::with_capacity(60 + payload.len());
        let (checksum_at, fixed) = match self {
            L4::Tcp(tcp) => {
                let data_offset = ((20 + tcp.options.len()) / 4) as u8;
                segment.extend_from_slice(&tcp.src_port.to_be_bytes());
                segment.extend_from_slice(&tcp.dst_port.to_be_bytes());
                segment.extend_from_slice(&tcp.seq.to_be_bytes());
                segment.extend_from_slice(&tcp.ack.to_be_bytes());
                segment.push(data_offset << 4);
                segment.push(tcp.flags);
                segment.extend_from_slice(&tcp.window.to_be_bytes());
                segment.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                segment.extend_from_slice(&tcp.options);
                (16, tcp.checksum)
            }
            L4::Udp {
                src_port,
                dst_port,
                checksum,
            } => {
                let length = u16::try_from(8 + payload.len()).expect("UDP datagram over 64 KiB");
                segment.extend_from_slice(&src_port.to_be_bytes());
                segment.extend_from_slice(&dst_port.to_be_bytes());
                segment.extend_from_slice(&length.to_be_bytes());
                segment.extend_from_slice(&[0, 0]);
                (6, *checksum)
            }
            L4::IcmpEcho { id, seq, checksum } => {
                segment.extend_from_slice(&[8, 0, 0, 0]); // echo request, code 0, checksum
                segment.extend_from_slice(&id.to_be_bytes());
                segment.extend_from_slice(&seq.to_be_bytes());
                (2, *checksum)
            }
        };
        segment.extend_from_slice(payload);
        let checksum = fixed.unwrap_or_else(|| match self {
            // ICMPv4 has no pseudo-header.
            L4::IcmpEcho { .. } => checksum(&[&segment]),
            L4::Tcp(_) => checksum(&[&pseudo.bytes(self.protocol(), segment.len()), &segment]),
            // 0 means "no checksum" in UDP; a computed 0 is sent as all ones.
            L4::Udp { .. } => {
                match checksum(&[&pseudo.bytes(self.protocol(), segment.len()), &segment]) {
                    0 => 0xffff,
                    sum => sum,
                }
            }
        });
        segment[checksum_at..checksum_at + 2].copy_from_slice(&checksum.to_be_bytes());
        segment
    }
}

/// The Internet checksum (RFC 1071) of the concatenation of `chunks`.
pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for &byte in chunks.iter().flat_map(|chunk| chunk.iter()) {
        match odd.take() {
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
            None => odd = Some(byte),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
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

/// Verifies every checksum of a frame: the IPv4 header, and TCP/UDP/ICMP of unfragmented IPv4
/// and of IPv6, also inside IPIP. `Err` names the first bad one. Anything else (ARP, other
/// protocols) passes.
pub fn check_checksums(frame: &[u8]) -> Result<(), String> {
    let mut at = 12;
    let mut ethertype = read_u16(frame, at).ok_or("frame shorter than an Ethernet header")?;
    while matches!(ethertype, TPID_8021Q | TPID_8021AD) {
        at += 4;
        ethertype = read_u16(frame, at).ok_or("frame ends inside a VLAN tag")?;
    }
    let l3 = &frame[at + 2..];
    match ethertype {
        ETHERTYPE_IPV4 => check_ipv4(l3, "ip"),
        ETHERTYPE_IPV6 => check_ipv6(l3),
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
        PROTO_ICMP if checksum(&[segment]) != 0 => Err(format!("{name}.icmp.checksum: bad")),
        protocol => check_l4(protocol, segment, &Pseudo::V4(src, dst), name),
    }
}

fn check_ipv6(packet: &[u8]) -> Result<(), String> {
    if packet.len() < 40 {
        return Err("ip6: truncated header".into());
    }
    let length = usize::from(read_u16(packet, 4).unwrap_or(0));
    let segment = packet
        .get(40..40 + length)
        .ok_or("ip6: payload length exceeds the frame")?;
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap_or_default());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap_or_default());
    check_l4(packet[6], segment, &Pseudo::V6(src, dst), "ip6")
}

fn check_l4(protocol: u8, segment: &[u8], pseudo: &Pseudo, name: &str) -> Result<(), String> {
    let (label, skip_zero) = match protocol {
        PROTO_TCP => ("tcp", false),
        PROTO_UDP => ("udp", matches!(pseudo, Pseudo::V4(..))),
        _ => return Ok(()),
    };
    if skip_zero && read_u16(segment, 6) == Some(0) {
        return Ok(()); // IPv4 UDP without a checksum
    }
    if checksum(&[&pseudo.bytes(protocol, segment.len()), segment]) != 0 {
        return Err(format!("{name}.{label}.checksum: bad"));
    }
    Ok(())
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(addr: &str) -> SocketAddrV4 {
        addr.parse().unwrap()
    }

    fn v6(addr: &str) -> SocketAddrV6 {
        addr.parse().unwrap()
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

        let short = truncated(
            &Frame::tcp(v4("192.0.2.1:1"), v4("192.0.2.100:2")).build(),
            30,
        );
        assert_eq!(short.len(), 30);
        assert_eq!(&short[16..18], &[0, 40]); // still claims a 40-byte IP packet
    }

    #[test]
    #[should_panic(expected = "syn() applies to TCP frames")]
    fn tcp_knobs_refuse_udp_frames() {
        let _ = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.100:2")).syn();
    }
}
