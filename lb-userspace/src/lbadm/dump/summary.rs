//! A one-line summary of a captured frame, as tcpdump would print it: addresses, ports, TCP
//! flags, lengths; what is inside an IPIP or IPv6-in-IP tunnel after the outer addresses.
//! Only the captured bytes are read: a header cut off by the snap length says so.

use std::net::{Ipv4Addr, Ipv6Addr};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const PROTO_ICMP: u8 = 1;
const PROTO_IPIP: u8 = 4;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_IPV6: u8 = 41;
const PROTO_ICMPV6: u8 = 58;

/// tcpdump's one line for an Ethernet frame (without its time and MACs).
pub fn frame(data: &[u8]) -> String {
    let Some(mut ether_type) = be16(data, 12) else {
        return format!("truncated Ethernet header, {} bytes", data.len());
    };
    let mut offset = 14;
    let mut out = String::new();
    while ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let (Some(tci), Some(inner)) = (be16(data, offset), be16(data, offset + 2)) else {
            return out + "truncated VLAN tag";
        };
        out += &format!("vlan {}, p {}, ", tci & 0x0fff, tci >> 13);
        ether_type = inner;
        offset += 4;
    }
    let rest = &data[offset.min(data.len())..];
    out += &match ether_type {
        ETH_P_IPV4 => ipv4(rest),
        ETH_P_IPV6 => ipv6(rest),
        ETH_P_ARP => format!("ARP, length {}", rest.len()),
        other => format!("ethertype {other:#06x}, length {}", rest.len()),
    };
    out
}

fn ipv4(packet: &[u8]) -> String {
    if packet.len() < 20 {
        return "IP, truncated header".to_owned();
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total_len = usize::from(be16(packet, 2).unwrap_or(0));
    let fragment = be16(packet, 6).unwrap_or(0);
    let protocol = packet[9];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]).to_string();
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]).to_string();
    let payload_len = total_len.saturating_sub(header_len);
    let payload = packet.get(header_len..).unwrap_or(&[]);
    let offset = (fragment & 0x1fff) * 8;
    if offset != 0 {
        return format!(
            "IP {src} > {dst}: fragment of protocol {protocol} at {offset}, length {payload_len}"
        );
    }
    let more = if fragment & 0x2000 != 0 {
        " (first fragment)"
    } else {
        ""
    };
    format!(
        "IP {}{more}",
        transport(&src, &dst, protocol, payload, payload_len, "IP")
    )
}

fn ipv6(packet: &[u8]) -> String {
    if packet.len() < 40 {
        return "IP6, truncated header".to_owned();
    }
    let payload_len = usize::from(be16(packet, 4).unwrap_or(0));
    let next = packet[6];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap()).to_string();
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap()).to_string();
    format!(
        "IP6 {}",
        transport(&src, &dst, next, &packet[40..], payload_len, "IP6")
    )
}

/// `src.port > dst.port: …` for TCP and UDP, the tunnel's inner packet for IPIP, the type for
/// ICMP.
fn transport(
    src: &str,
    dst: &str,
    protocol: u8,
    payload: &[u8],
    payload_len: usize,
    family: &str,
) -> String {
    match protocol {
        PROTO_TCP => {
            let (Some(sport), Some(dport), Some(seq), Some(ack)) = (
                be16(payload, 0),
                be16(payload, 2),
                be32(payload, 4),
                be32(payload, 8),
            ) else {
                return format!("{src} > {dst}: TCP, truncated header");
            };
            let data_offset = usize::from(payload.get(12).copied().unwrap_or(0x50) >> 4) * 4;
            let flags = payload.get(13).copied().unwrap_or(0);
            let mut text = format!(
                "{src}.{sport} > {dst}.{dport}: Flags [{}], seq {seq}",
                tcp_flags(flags)
            );
            if flags & 0x10 != 0 {
                text += &format!(", ack {ack}");
            }
            text + &format!(", length {}", payload_len.saturating_sub(data_offset))
        }
        PROTO_UDP => match (be16(payload, 0), be16(payload, 2)) {
            (Some(sport), Some(dport)) => format!(
                "{src}.{sport} > {dst}.{dport}: UDP, length {}",
                payload_len.saturating_sub(8)
            ),
            _ => format!("{src} > {dst}: UDP, truncated header"),
        },
        PROTO_ICMP | PROTO_ICMPV6 => {
            let name = if protocol == PROTO_ICMP {
                "ICMP"
            } else {
                "ICMP6"
            };
            match (payload.first(), payload.get(1)) {
                (Some(kind), Some(code)) => {
                    format!("{src} > {dst}: {name} type {kind} code {code}, length {payload_len}")
                }
                _ => format!("{src} > {dst}: {name}, truncated"),
            }
        }
        PROTO_IPIP => format!("{src} > {dst}: {family} in IPIP: {}", ipv4(payload)),
        PROTO_IPV6 => format!("{src} > {dst}: {family} in IPIP: {}", ipv6(payload)),
        other => format!("{src} > {dst}: protocol {other}, length {payload_len}"),
    }
}

/// tcpdump's flag letters: `S` SYN, `F` FIN, `R` RST, `P` PSH, `.` ACK, `U` URG, `E` ECE,
/// `W` CWR; `none` for none.
pub fn tcp_flags(flags: u8) -> String {
    let mut text = String::new();
    for (bit, letter) in [
        (0x02, 'S'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
        (0x10, '.'),
    ] {
        if flags & bit != 0 {
            text.push(letter);
        }
    }
    if text.is_empty() {
        text.push_str("none");
    }
    text
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        frame.extend_from_slice(&ether_type.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// An IPv4 header (no options) from 192.0.2.1 to 192.0.2.11, then `payload`.
    fn ipv4_packet(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut packet = vec![0x45, 0];
        packet.extend_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
        packet.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 11]);
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn a_tcp_syn_and_a_data_segment() {
        let mut syn = Vec::new();
        syn.extend_from_slice(&40000u16.to_be_bytes());
        syn.extend_from_slice(&8080u16.to_be_bytes());
        syn.extend_from_slice(&1000u32.to_be_bytes()); // seq
        syn.extend_from_slice(&0u32.to_be_bytes()); // ack
        syn.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(
            frame(&ethernet(ETH_P_IPV4, &ipv4_packet(PROTO_TCP, &syn))),
            "IP 192.0.2.1.40000 > 192.0.2.11.8080: Flags [S], seq 1000, length 0"
        );
        let mut data = syn.clone();
        data[8..12].copy_from_slice(&5001u32.to_be_bytes());
        data[13] = 0x18; // PSH, ACK
        data.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            frame(&ethernet(ETH_P_IPV4, &ipv4_packet(PROTO_TCP, &data))),
            "IP 192.0.2.1.40000 > 192.0.2.11.8080: Flags [P.], seq 1000, ack 5001, length 18"
        );
    }

    #[test]
    fn udp_tagged_tunnelled_and_other_frames() {
        let mut udp = vec![0, 53, 0x13, 0xec, 0, 13, 0, 0];
        udp.extend_from_slice(b"query");
        let mut tagged = vec![0x20, 0x05]; // priority 1, VLAN 5
        tagged.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
        tagged.extend_from_slice(&ipv4_packet(PROTO_UDP, &udp));
        assert_eq!(
            frame(&ethernet(ETH_P_8021Q, &tagged)),
            "vlan 5, p 1, IP 192.0.2.1.53 > 192.0.2.11.5100: UDP, length 5"
        );
        let inner = ipv4_packet(PROTO_UDP, &udp);
        assert_eq!(
            frame(&ethernet(ETH_P_IPV4, &ipv4_packet(PROTO_IPIP, &inner))),
            "IP 192.0.2.1 > 192.0.2.11: IP in IPIP: IP 192.0.2.1.53 > 192.0.2.11.5100: UDP, \
             length 5"
        );
        assert_eq!(frame(&ethernet(ETH_P_ARP, &[0; 28])), "ARP, length 28");
        assert_eq!(frame(&[0; 10]), "truncated Ethernet header, 10 bytes");
        assert_eq!(tcp_flags(0x11), "F.");
        assert_eq!(tcp_flags(0), "none");
    }
}
