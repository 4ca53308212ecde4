//! TCP, UDP, ICMP and ICMPv6 headers, the pseudo-headers their checksums cover, and the knobs
//! that set their fields.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    Frame, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REQUEST, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
    checks::checksum, tcp_flags,
};

#[derive(Clone, Debug)]
pub(super) enum L4 {
    Tcp(Tcp),
    Udp {
        src_port: u16,
        dst_port: u16,
        checksum: Option<u16>,
    },
    /// ICMP over IPv4: the checksum covers the message alone.
    Icmp(Icmp),
    /// ICMPv6: the checksum covers the IPv6 pseudo-header too.
    Icmpv6(Icmp),
}

#[derive(Clone, Debug)]
pub(super) struct Tcp {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: Vec<u8>,
    checksum: Option<u16>,
}

/// The 8-byte header every ICMP and ICMPv6 message starts with; the frame's payload follows
/// (echo data, or the quoted packet of an error).
#[derive(Clone, Debug)]
pub(super) struct Icmp {
    pub(super) icmp_type: u8,
    pub(super) code: u8,
    /// The 4 bytes after the checksum: id and sequence of an echo, the MTU of a
    /// packet-too-big, the next-hop MTU of a fragmentation-needed, 0 (unused) otherwise.
    pub(super) rest: u32,
    pub(super) checksum: Option<u16>,
}

pub(super) enum Pseudo {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Tcp {
    pub(super) fn new(src_port: u16, dst_port: u16) -> Tcp {
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

impl Icmp {
    /// An echo request of `icmp_type` (ICMP's or ICMPv6's), id 1 seq 1.
    pub(super) fn echo(icmp_type: u8) -> Icmp {
        Icmp {
            icmp_type,
            code: 0,
            rest: 0x0001_0001,
            checksum: None,
        }
    }

    fn is_echo(&self) -> bool {
        matches!(self.icmp_type, ICMP_ECHO_REQUEST | ICMPV6_ECHO_REQUEST)
    }
}

impl Pseudo {
    /// The pseudo-header covered by TCP/UDP/ICMPv6 checksums (RFC 793, RFC 8200 §8.1).
    pub(super) fn bytes(&self, protocol: u8, length: usize) -> Vec<u8> {
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
    pub(super) fn udp(src_port: u16, dst_port: u16) -> L4 {
        L4::Udp {
            src_port,
            dst_port,
            checksum: None,
        }
    }

    pub(super) fn protocol(&self) -> u8 {
        match self {
            L4::Tcp(_) => PROTO_TCP,
            L4::Udp { .. } => PROTO_UDP,
            L4::Icmp(_) => PROTO_ICMP,
            L4::Icmpv6(_) => PROTO_ICMPV6,
        }
    }

    pub(super) fn build(&self, payload: &[u8], pseudo: &Pseudo) -> Vec<u8> {
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
            L4::Icmp(icmp) | L4::Icmpv6(icmp) => {
                segment.extend_from_slice(&[icmp.icmp_type, icmp.code, 0, 0]);
                segment.extend_from_slice(&icmp.rest.to_be_bytes());
                (2, icmp.checksum)
            }
        };
        segment.extend_from_slice(payload);
        let checksum = fixed.unwrap_or_else(|| match self {
            // ICMPv4 has no pseudo-header.
            L4::Icmp(_) => checksum(&[&segment]),
            L4::Tcp(_) | L4::Icmpv6(_) => {
                checksum(&[&pseudo.bytes(self.protocol(), segment.len()), &segment])
            }
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

impl Frame {
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

    /// Identifier of an ICMP or ICMPv6 echo.
    pub fn icmp_id(mut self, value: u16) -> Frame {
        let echo = self.echo_mut("icmp_id");
        echo.rest = (echo.rest & 0xffff) | (u32::from(value) << 16);
        self
    }

    /// Sequence number of an ICMP or ICMPv6 echo.
    pub fn icmp_seq(mut self, value: u16) -> Frame {
        let echo = self.echo_mut("icmp_seq");
        echo.rest = (echo.rest & 0xffff_0000) | u32::from(value);
        self
    }

    /// Malformed on purpose: writes this TCP/UDP/ICMP checksum instead of the true one.
    pub fn l4_checksum(mut self, value: u16) -> Frame {
        match self.l4_mut("l4_checksum") {
            L4::Tcp(tcp) => tcp.checksum = Some(value),
            L4::Udp { checksum, .. } => *checksum = Some(value),
            L4::Icmp(icmp) | L4::Icmpv6(icmp) => icmp.checksum = Some(value),
        }
        self
    }

    fn tcp_mut(&mut self, what: &str) -> &mut Tcp {
        match self.l4_mut(what) {
            L4::Tcp(tcp) => tcp,
            _ => panic!("{what}() applies to TCP frames"),
        }
    }

    fn echo_mut(&mut self, what: &str) -> &mut Icmp {
        match self.l4_mut(what) {
            L4::Icmp(icmp) | L4::Icmpv6(icmp) if icmp.is_echo() => icmp,
            _ => panic!("{what}() applies to ICMP echo frames"),
        }
    }

    fn add_flags(mut self, what: &str, flags: u8) -> Frame {
        self.tcp_mut(what).flags |= flags;
        self
    }
}
