//! The model's own reading of a frame: what the program must take it for, written from the
//! README's and the reason table's rules (and, where those leave a choice, the parse stage's
//! documented behaviour), without the program's code. A frame is either passed for a parse
//! reason, or an IP datagram of one [`Kind`] with its flow.
//!
//! The bounds follow the program's: headers are read from the frame (the linear part: test
//! frames are single-buffer), transport headers and ICMP quotes must also lie within the
//! datagram (IPv4 total length, IPv6 payload length); what follows the datagram is padding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{PROTO_TCP, PROTO_UDP, Reason};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
/// Extension headers the program follows before giving up.
const MAX_EXTENSION_HEADERS: usize = 6;

/// A flow's 5-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
}

impl Key {
    pub fn reversed(&self) -> Key {
        Key {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            protocol: self.protocol,
        }
    }

    pub fn flow_key(&self) -> lb_common::FlowKey {
        crate::forwarding::flow_key(
            (self.src, self.sport).into(),
            (self.dst, self.dport).into(),
            self.protocol,
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Whole,
    FirstFragment,
    /// No ports: [`Datagram::flow`] has them 0.
    LaterFragment,
    /// [`Datagram::flow`] is the quoted packet's, as it was sent.
    IcmpError,
}

#[derive(Clone, Debug)]
pub struct Datagram {
    /// The frame's VLAN tag: (TPID, TCI).
    pub tag: Option<(u16, u16)>,
    pub l3: usize,
    /// Where the datagram ends (padding may follow).
    pub end: usize,
    pub v6: bool,
    pub kind: Kind,
    pub flow: Key,
    /// The TCP/UDP header (0 for a later fragment); for an ICMP error, the ICMP header.
    pub l4: usize,
    /// ICMP errors: the quoted IP header and the quoted transport header.
    pub quote_l3: usize,
    pub quote_l4: usize,
    /// Fragments: the identification (IPv4's 16 bits widened).
    pub fragment_id: u32,
    /// TCP segments (whole or first fragments): the flags byte; 0 otherwise.
    pub tcp_flags: u8,
}

fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

fn v4_at(frame: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        frame[at],
        frame[at + 1],
        frame[at + 2],
        frame[at + 3],
    ))
}

fn v6_at(frame: &[u8], at: usize) -> IpAddr {
    let bytes: [u8; 16] = frame[at..at + 16].try_into().expect("16 bytes");
    IpAddr::V6(Ipv6Addr::from(bytes))
}

fn transport_len(protocol: u8) -> Option<usize> {
    match protocol {
        PROTO_TCP => Some(20),
        PROTO_UDP => Some(8),
        _ => None,
    }
}

pub fn is_extension_header(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 60 | 50 | 51 | 135 | 139 | 140 | 253 | 254
    )
}

/// What the program must take `frame` for.
pub fn classify(frame: &[u8]) -> Result<Datagram, Reason> {
    if frame.len() < 14 {
        return Err(Reason::PassTruncated);
    }
    let mut ether_type = be16(frame, 12);
    let mut l3 = 14;
    let mut tag = None;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        if frame.len() < 18 {
            return Err(Reason::PassTruncated);
        }
        tag = Some((ether_type, be16(frame, 14)));
        ether_type = be16(frame, 16);
        l3 = 18;
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            return Err(Reason::PassStackedVlan);
        }
    }
    match ether_type {
        ETH_P_IPV4 => ipv4(frame, l3, tag),
        ETH_P_IPV6 => ipv6(frame, l3, tag),
        _ => Err(Reason::PassNotIp),
    }
}

fn ipv4(frame: &[u8], l3: usize, tag: Option<(u16, u16)>) -> Result<Datagram, Reason> {
    if frame.len() < l3 + 20 {
        return Err(Reason::PassTruncated);
    }
    let header_len = usize::from(frame[l3] & 0x0f) * 4;
    if frame[l3] >> 4 != 4 || header_len < 20 {
        return Err(Reason::PassMalformed);
    }
    let total_len = usize::from(be16(frame, l3 + 2));
    let end = l3 + total_len;
    if end > frame.len() || total_len < header_len {
        return Err(Reason::PassTruncated);
    }
    let protocol = frame[l3 + 9];
    let l4 = l3 + header_len;
    let frag_off = be16(frame, l3 + 6);
    let kind = if frag_off & 0x1fff != 0 {
        Kind::LaterFragment
    } else if frag_off & 0x2000 != 0 {
        Kind::FirstFragment
    } else {
        Kind::Whole
    };
    let src = v4_at(frame, l3 + 12);
    let dst = v4_at(frame, l3 + 16);
    let mut datagram = Datagram {
        tag,
        l3,
        end,
        v6: false,
        kind,
        flow: Key {
            src,
            dst,
            sport: 0,
            dport: 0,
            protocol,
        },
        l4: 0,
        quote_l3: 0,
        quote_l4: 0,
        fragment_id: if kind == Kind::Whole {
            0
        } else {
            u32::from(be16(frame, l3 + 4))
        },
        tcp_flags: 0,
    };
    match transport_len(protocol) {
        Some(_) if kind == Kind::LaterFragment => Ok(datagram),
        Some(len) => {
            if total_len < header_len + len {
                return Err(Reason::PassTruncated);
            }
            ports(frame, l4, &mut datagram);
            Ok(datagram)
        }
        None if protocol == PROTO_ICMP && kind == Kind::Whole => {
            icmp_error(frame, l4, false, &mut datagram)?;
            Ok(datagram)
        }
        None => Err(Reason::PassNotTcpUdp),
    }
}

fn ports(frame: &[u8], l4: usize, datagram: &mut Datagram) {
    datagram.flow.sport = be16(frame, l4);
    datagram.flow.dport = be16(frame, l4 + 2);
    datagram.l4 = l4;
    if datagram.flow.protocol == PROTO_TCP {
        datagram.tcp_flags = frame[l4 + 13];
    }
}

fn ipv6(frame: &[u8], l3: usize, tag: Option<(u16, u16)>) -> Result<Datagram, Reason> {
    if frame.len() < l3 + 40 {
        return Err(Reason::PassTruncated);
    }
    if frame[l3] >> 4 != 6 {
        return Err(Reason::PassMalformed);
    }
    let payload_len = usize::from(be16(frame, l3 + 4));
    if payload_len == 0 {
        return Err(Reason::PassMalformed);
    }
    let end = l3 + 40 + payload_len;
    if end > frame.len() {
        return Err(Reason::PassTruncated);
    }
    let mut next = frame[l3 + 6];
    let mut offset = l3 + 40;
    let mut kind = Kind::Whole;
    let mut fragment_id = 0;
    for _ in 0..MAX_EXTENSION_HEADERS {
        match next {
            0 | 43 | 60 => {
                if offset + 4 > frame.len() {
                    return Err(Reason::PassTruncated);
                }
                // A routing header with segments left: the destination is a waypoint.
                if next == 43 && frame[offset + 3] != 0 {
                    return Err(Reason::PassIpv6Extensions);
                }
                next = frame[offset];
                offset += (usize::from(frame[offset + 1]) + 1) * 8;
            }
            44 => {
                if offset + 8 > frame.len() {
                    return Err(Reason::PassTruncated);
                }
                next = frame[offset];
                fragment_id = u32::from_be_bytes(frame[offset + 4..offset + 8].try_into().unwrap());
                let offset_flags = be16(frame, offset + 2);
                offset += 8;
                if offset_flags & 0xfff8 != 0 {
                    kind = Kind::LaterFragment;
                    break;
                }
                if offset_flags & 1 != 0 {
                    // A first fragment must name TCP/UDP next, like its later fragments.
                    if is_extension_header(next) {
                        return Err(Reason::PassIpv6Extensions);
                    }
                    kind = Kind::FirstFragment;
                }
            }
            _ => break,
        }
    }
    if offset > end {
        return Err(Reason::PassTruncated);
    }
    let mut datagram = Datagram {
        tag,
        l3,
        end,
        v6: true,
        kind,
        flow: Key {
            src: v6_at(frame, l3 + 8),
            dst: v6_at(frame, l3 + 24),
            sport: 0,
            dport: 0,
            protocol: next,
        },
        l4: 0,
        quote_l3: 0,
        quote_l4: 0,
        fragment_id: if kind == Kind::Whole { 0 } else { fragment_id },
        tcp_flags: 0,
    };
    match transport_len(next) {
        Some(_) if kind == Kind::LaterFragment => Ok(datagram),
        Some(len) => {
            if offset + len > end {
                return Err(Reason::PassTruncated);
            }
            ports(frame, offset, &mut datagram);
            Ok(datagram)
        }
        None if next == PROTO_ICMPV6 && kind == Kind::Whole => {
            icmp_error(frame, offset, true, &mut datagram)?;
            Ok(datagram)
        }
        None if is_extension_header(next) => Err(Reason::PassIpv6Extensions),
        None => Err(Reason::PassNotTcpUdp),
    }
}

/// An ICMP or ICMPv6 message at `l4`: the flow its quote belongs to, if it is an error the
/// program forwards (destination unreachable, time exceeded, and for ICMPv6 packet too big)
/// quoting the start of a TCP or UDP packet sent by the error's own destination.
fn icmp_error(frame: &[u8], l4: usize, v6: bool, datagram: &mut Datagram) -> Result<(), Reason> {
    if l4 + 8 > frame.len() {
        return Err(Reason::PassTruncated);
    }
    let is_error = if v6 {
        matches!(frame[l4], 1..=3)
    } else {
        matches!(frame[l4], 3 | 11)
    };
    if !is_error {
        return Err(Reason::PassNotTcpUdp);
    }
    let quote = l4 + 8;
    let bad = Reason::PassIcmpBadQuote;
    let (src, dst, protocol, quote_l4) = if v6 {
        if quote + 40 > frame.len() || frame[quote] >> 4 != 6 {
            return Err(bad);
        }
        (
            v6_at(frame, quote + 8),
            v6_at(frame, quote + 24),
            frame[quote + 6],
            quote + 40,
        )
    } else {
        if quote + 20 > frame.len() {
            return Err(bad);
        }
        let header_len = usize::from(frame[quote] & 0x0f) * 4;
        if frame[quote] >> 4 != 4 || header_len < 20 {
            return Err(bad);
        }
        // A later fragment's quote has no ports.
        if be16(frame, quote + 6) & 0x1fff != 0 {
            return Err(bad);
        }
        (
            v4_at(frame, quote + 12),
            v4_at(frame, quote + 16),
            frame[quote + 9],
            quote + header_len,
        )
    };
    if transport_len(protocol).is_none() || quote_l4 + 8 > datagram.end {
        return Err(bad);
    }
    // Every ICMP error goes to the source of the packet it quotes.
    if src != datagram.flow.dst {
        return Err(bad);
    }
    datagram.kind = Kind::IcmpError;
    datagram.flow = Key {
        src,
        dst,
        sport: be16(frame, quote_l4),
        dport: be16(frame, quote_l4 + 2),
        protocol,
    };
    datagram.l4 = l4;
    datagram.quote_l3 = quote;
    datagram.quote_l4 = quote_l4;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddrV4, SocketAddrV6};

    use super::*;
    use crate::packet::{Frame, PROTO_ESP};

    fn v4() -> Frame {
        Frame::tcp(
            "203.0.113.7:40000".parse::<SocketAddrV4>().unwrap(),
            "192.0.2.10:80".parse().unwrap(),
        )
        .syn()
    }

    #[test]
    fn a_tcp_syn_is_a_whole_datagram_with_its_flow() {
        let d = classify(&v4().vlan(5).build()).unwrap();
        assert_eq!(d.kind, Kind::Whole);
        assert_eq!(
            (d.flow.sport, d.flow.dport, d.flow.protocol),
            (40000, 80, PROTO_TCP)
        );
        assert_eq!((d.l3, d.tag), (18, Some((0x8100, 5))));
        assert_eq!(d.tcp_flags, 0x02);
    }

    #[test]
    fn broken_frames_get_the_parse_reasons() {
        let frame = v4().build();
        assert_eq!(classify(&frame[..40]).unwrap_err(), Reason::PassTruncated);
        assert_eq!(
            classify(&v4().ip_ihl(4).build()).unwrap_err(),
            Reason::PassMalformed
        );
        assert_eq!(
            classify(&v4().vlan(1).vlan(2).build()).unwrap_err(),
            Reason::PassStackedVlan
        );
        let esp = Frame::ipv6_udp(
            "[2001:db8:ffff::7]:4000".parse::<SocketAddrV6>().unwrap(),
            "[2001:db8::100]:53".parse().unwrap(),
        )
        .ipv6_raw_extension(PROTO_ESP, &[0; 8])
        .build();
        assert_eq!(classify(&esp).unwrap_err(), Reason::PassIpv6Extensions);
    }
}
