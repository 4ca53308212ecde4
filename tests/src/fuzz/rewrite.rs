//! The exact frame the program must send, built from the input frame by each forwarding
//! method's documented rewrite: direct routing (MACs; a VLAN tag taken off, as the loopback
//! the fixtures run on has none, and reals behind the VLAN get its tag with the client's
//! priority bits), IPIP and GUE (an outer header from the balancer to the real
//! carrying the inner packet's DSCP/ECN, TTL and DF, TTL 0 sent as 64, GUE's UDP checksum 0),
//! NAT and full NAT (addresses and ports, checksums updated incrementally, a UDP checksum of
//! 0 over IPv4 kept), NAT replies translated back to the client's MAC and tag, and ICMP errors
//! about NAT flows translated for their real (outer destination, the quote's addresses and
//! ports, every checksum on the way).
//!
//! Incremental updates keep a checksum as right or wrong as it came (RFC 1624): the model
//! computes them as its own one's-complement sums over the changed bytes, so the program's
//! result may differ only in the two forms of zero (0x0000, 0xffff), which `check` allows.
//! `packet::ipip`/`packet::gue` are not used for the outer header: they always set DF and
//! copy a TTL of 0, fine for fixtures but not for fuzzed inner packets.

use std::net::IpAddr;

use lb_common::{PROTO_TCP, PROTO_UDP};

use super::{
    classify::{Datagram, Key, Kind},
    config::egress,
    model::{ReplyEntry, real_port},
};
use crate::{
    fixture::{BALANCER_MAC, balancer_address, real_mac_for},
    forwarding::gue_source_port,
    packet::{GUE_PORT, checksum},
};

/// Where a checksum field lies in an expected frame, and whether its zero is significant (a
/// UDP checksum over IPv4: 0 means none).
#[derive(Clone, Copy, Debug)]
pub struct ChecksumField {
    pub at: usize,
    pub zero_is_none: bool,
}

pub struct Expected {
    pub frame: Vec<u8>,
    /// Checksum fields the program updated: compared up to the form of zero.
    pub checksums: Vec<ChecksumField>,
}

fn address_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The Ethernet header of a frame to `real`: from its interface's MAC, with its interface's
/// tag (the VLAN id its own, the priority bits the client's frame had), or none.
fn toward_real(client_tag: Option<(u16, u16)>, real: IpAddr, ether_type: [u8; 2]) -> Vec<u8> {
    let (mac, tag) = egress(real);
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&real_mac_for(real));
    out.extend_from_slice(&mac);
    if let Some((tpid, vid)) = tag {
        let priority = client_tag.map_or(0, |(_, tci)| tci & 0xf000);
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&(priority | vid).to_be_bytes());
    }
    out.extend_from_slice(&ether_type);
    out
}

/// The frame's IP datagram (and any padding after it), with the Ethernet header toward
/// `real`; and how far the datagram moved.
fn retagged_for_real(frame: &[u8], d: &Datagram, real: IpAddr) -> (Vec<u8>, isize) {
    let mut out = toward_real(d.tag, real, [frame[d.l3 - 2], frame[d.l3 - 1]]);
    let shift = out.len() as isize - d.l3 as isize;
    out.extend_from_slice(&frame[d.l3..]);
    (out, shift)
}

fn moved(offset: usize, shift: isize) -> usize {
    (offset as isize + shift) as usize
}

pub fn direct_routed(frame: &[u8], d: &Datagram, real: IpAddr) -> Expected {
    Expected {
        frame: retagged_for_real(frame, d, real).0,
        checksums: Vec::new(),
    }
}

pub fn tunnelled(frame: &[u8], d: &Datagram, real: IpAddr, gue: bool, handed: &Key) -> Expected {
    let l3 = d.l3;
    let (inner_len, class, ttl, dont_fragment) = if d.v6 {
        let len = 40 + usize::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]));
        (
            (len),
            (frame[l3] << 4) | (frame[l3 + 1] >> 4),
            frame[l3 + 7],
            true,
        )
    } else {
        let len = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
        (len, frame[l3 + 1], frame[l3 + 8], frame[l3 + 6] & 0x40 != 0)
    };
    let ttl = if ttl == 0 { 64 } else { ttl };
    let inner_protocol = if d.v6 { 41 } else { 4 };
    let protocol = if gue { PROTO_UDP } else { inner_protocol };
    let after_ip = inner_len + if gue { 8 } else { 0 };
    let source = balancer_address(real);
    let mut out;
    match real {
        IpAddr::V4(_) => {
            out = toward_real(d.tag, real, [0x08, 0x00]);
            let start = out.len();
            out.extend_from_slice(&[0x45, class]);
            out.extend_from_slice(&((20 + after_ip) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(if dont_fragment { 0x4000u16 } else { 0 }).to_be_bytes());
            out.extend_from_slice(&[ttl, protocol, 0, 0]);
            out.extend_from_slice(&address_bytes(source));
            out.extend_from_slice(&address_bytes(real));
            let sum = checksum(&[&out[start..]]);
            out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
        }
        IpAddr::V6(_) => {
            out = toward_real(d.tag, real, [0x86, 0xdd]);
            out.extend_from_slice(&(0x6000_0000u32 | (u32::from(class) << 20)).to_be_bytes());
            out.extend_from_slice(&(after_ip as u16).to_be_bytes());
            out.extend_from_slice(&[protocol, ttl]);
            out.extend_from_slice(&address_bytes(source));
            out.extend_from_slice(&address_bytes(real));
        }
    }
    if gue {
        out.extend_from_slice(&gue_source_port(&handed.flow_key()).to_be_bytes());
        out.extend_from_slice(&GUE_PORT.to_be_bytes());
        out.extend_from_slice(&(after_ip as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&frame[l3..]);
    Expected {
        frame: out,
        checksums: Vec::new(),
    }
}

/// The one's-complement sum of `bytes` as 16-bit words from its start (not folded).
fn sum(bytes: &[u8]) -> u64 {
    let mut total = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        total += u64::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    if i < bytes.len() {
        total += u64::from(bytes[i]) << 8;
    }
    total
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// RFC 1624 eqn. 3: `check` after the words summing to `old` became words summing to `new`.
fn updated(check: u16, old: u64, new: u64) -> u16 {
    // ~m as a sum: (0xffff - m) per word adds up to k·0xffff − old ≡ −old.
    let minus_old = 0xffff * (old / 0xffff + 1) - old;
    !fold(u64::from(!check) + minus_old + new)
}

/// Rewrites the addresses and ports of the IP packet at `l3` of `out` (`l4`: its TCP/UDP
/// header, or 0 when it has none in this frame) and updates the IP and transport checksums;
/// returns the checksum fields updated.
#[expect(clippy::too_many_arguments, reason = "one rewrite, its parts named")]
fn translate(
    out: &mut [u8],
    l3: usize,
    v6: bool,
    l4: usize,
    end: usize,
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
) -> Vec<ChecksumField> {
    let mut fields = Vec::new();
    let (src_at, dst_at, len) = if v6 {
        (l3 + 8, l3 + 24, 16)
    } else {
        (l3 + 12, l3 + 16, 4)
    };
    let old_addresses = sum(&out[src_at..src_at + len]) + sum(&out[dst_at..dst_at + len]);
    out[src_at..src_at + len].copy_from_slice(&address_bytes(src));
    out[dst_at..dst_at + len].copy_from_slice(&address_bytes(dst));
    let new_addresses = sum(&out[src_at..src_at + len]) + sum(&out[dst_at..dst_at + len]);
    if !v6 {
        let check = u16::from_be_bytes([out[l3 + 10], out[l3 + 11]]);
        let new = updated(check, old_addresses, new_addresses);
        out[l3 + 10..l3 + 12].copy_from_slice(&new.to_be_bytes());
        fields.push(ChecksumField {
            at: l3 + 10,
            zero_is_none: false,
        });
    }
    if l4 == 0 {
        return fields;
    }
    let (sport, dport) = ports.expect("ports for a packet with a transport header");
    let old_ports = sum(&out[l4..l4 + 4]);
    out[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    out[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    let new_ports = sum(&out[l4..l4 + 4]);
    let check_at = l4 + if protocol == PROTO_TCP { 16 } else { 6 };
    if check_at + 2 > end {
        return fields;
    }
    let check = u16::from_be_bytes([out[check_at], out[check_at + 1]]);
    let udp = protocol == PROTO_UDP;
    if udp && check == 0 && !v6 {
        fields.push(ChecksumField {
            at: check_at,
            zero_is_none: true,
        });
        return fields;
    }
    let mut new = updated(check, old_addresses + old_ports, new_addresses + new_ports);
    if udp && new == 0 {
        new = 0xffff;
    }
    out[check_at..check_at + 2].copy_from_slice(&new.to_be_bytes());
    fields.push(ChecksumField {
        at: check_at,
        // UDP: 0 means no checksum over IPv4, and is not allowed over IPv6 (RFC 8200), so
        // a computed 0 must be sent as 0xffff either way.
        zero_is_none: udp,
    });
    fields
}

/// NAT or full NAT to `real` (address, port as configured): destination real:port, and for
/// full NAT source `local`:`local_port`.
pub fn nat_to_real(
    frame: &[u8],
    d: &Datagram,
    real: IpAddr,
    configured_port: u16,
    full: Option<u16>,
) -> Expected {
    let (mut out, shift) = retagged_for_real(frame, d, real);
    let (l3, end) = (moved(d.l3, shift), moved(d.end, shift));
    let l4 = if d.kind == Kind::LaterFragment {
        0
    } else {
        moved(d.l4, shift)
    };
    let (src, sport) = match full {
        Some(local_port) => (balancer_address(real), local_port),
        None => (d.flow.src, d.flow.sport),
    };
    let dport = real_port(configured_port, &d.flow);
    let checksums = translate(
        &mut out,
        l3,
        d.v6,
        l4,
        end,
        d.flow.protocol,
        src,
        real,
        Some((sport, dport)),
    );
    Expected {
        frame: out,
        checksums,
    }
}

/// A NAT reply (`sport`, `dport`: the reply entry's, for a later fragment without ports)
/// translated back and sent to the client the way its packets came.
pub fn reply_to_client(frame: &[u8], d: &Datagram, entry: &ReplyEntry) -> Expected {
    let client = &entry.flow;
    // The client's tag, unless its TCI was 0; the reply's own priority bits kept when both
    // are tagged.
    let tag = match (d.tag, entry.tag) {
        (_, Some((_, 0))) | (_, None) => None,
        (Some((_, reply_tci)), Some((tpid, tci))) => {
            Some((tpid, (reply_tci & 0xf000) | (tci & 0x0fff)))
        }
        (None, Some(tag)) => Some(tag),
    };
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&entry.client_mac);
    out.extend_from_slice(&BALANCER_MAC);
    if let Some((tpid, tci)) = tag {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    let l3 = out.len() + 2;
    out.extend_from_slice(&frame[d.l3 - 2..]);
    let shift = l3 as isize - d.l3 as isize;
    let at = |offset: usize| (offset as isize + shift) as usize;
    let l4 = if d.kind == Kind::LaterFragment {
        0
    } else {
        at(d.l4)
    };
    let checksums = translate(
        &mut out,
        l3,
        d.v6,
        l4,
        at(d.end),
        d.flow.protocol,
        client.dst,
        client.src,
        Some((client.dport, client.sport)),
    );
    Expected {
        frame: out,
        checksums,
    }
}

/// An ICMP error about a NAT flow (its quote: the real's reply as translated for the client)
/// translated for the real: the outer destination becomes the real, the quote the reply as
/// the real sent it (`to`:`to_port`: the client, or for full NAT the local address and port).
pub fn icmp_error_to_nat_real(
    frame: &[u8],
    d: &Datagram,
    real: IpAddr,
    configured_port: u16,
    full: Option<u16>,
) -> Expected {
    let quoted = &d.flow;
    let client_flow = quoted.reversed();
    let real_port = real_port(configured_port, &client_flow);
    let (to, to_port) = match full {
        Some(local_port) => (balancer_address(real), local_port),
        None => (quoted.dst, quoted.dport),
    };
    let (mut out, shift) = retagged_for_real(frame, d, real);
    let (l3, end, icmp, quote_l3, quote_l4) = (
        moved(d.l3, shift),
        moved(d.end, shift),
        moved(d.l4, shift),
        moved(d.quote_l3, shift),
        moved(d.quote_l4, shift),
    );
    let mut checksums = Vec::new();
    let icmp_check = u16::from_be_bytes([out[icmp + 2], out[icmp + 3]]);
    let outer_dst = if d.v6 { l3 + 24 } else { l3 + 16 };
    let len = if d.v6 { 16 } else { 4 };
    let old_outer = sum(&out[outer_dst..outer_dst + len]);
    // The outer destination (and, for IPv4, the outer header checksum).
    let old_word = out[outer_dst..outer_dst + len].to_vec();
    out[outer_dst..outer_dst + len].copy_from_slice(&address_bytes(real));
    let new_outer = sum(&out[outer_dst..outer_dst + len]);
    if !d.v6 {
        let check = u16::from_be_bytes([out[l3 + 10], out[l3 + 11]]);
        let new = updated(check, sum(&old_word), new_outer);
        out[l3 + 10..l3 + 12].copy_from_slice(&new.to_be_bytes());
        checksums.push(ChecksumField {
            at: l3 + 10,
            zero_is_none: false,
        });
    }
    // The quote: addresses (its IPv4 header checksum), ports and transport checksum.
    let quote_fields = translate(
        &mut out,
        quote_l3,
        d.v6,
        quote_l4,
        end,
        quoted.protocol,
        real,
        to,
        Some((real_port, to_port)),
    );
    checksums.extend(quote_fields);
    // The ICMP checksum covers the message (and for ICMPv6 the pseudo-header, whose
    // destination changed).
    out[icmp + 2] = 0;
    out[icmp + 3] = 0;
    let mut zeroed = frame[d.l4..d.end].to_vec();
    zeroed[2] = 0;
    zeroed[3] = 0;
    let (mut old, mut new) = (sum(&zeroed), sum(&out[icmp..end]));
    if d.v6 {
        old += old_outer;
        new += new_outer;
    }
    let new_check = updated(icmp_check, old, new);
    out[icmp + 2..icmp + 4].copy_from_slice(&new_check.to_be_bytes());
    checksums.push(ChecksumField {
        at: icmp + 2,
        zero_is_none: false,
    });
    Expected {
        frame: out,
        checksums,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::rng::Rng;

    /// The incremental update agrees with a checksum computed from scratch, up to the form of
    /// zero.
    #[test]
    fn an_updated_checksum_is_the_recomputed_one() {
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            // The checksum field first, then at least one more word.
            let len = 2 * (2 + rng.below(40));
            let mut data = rng.bytes(len);
            data[0] = 0;
            data[1] = 0;
            let check = checksum(&[&data]);
            let at = 2 * (1 + rng.below(len / 2 - 1));
            let old = sum(&data[at..at + 2]);
            data[at] = rng.byte();
            data[at + 1] = rng.byte();
            let new = sum(&data[at..at + 2]);
            let recomputed = checksum(&[&data]);
            let updated = updated(check, old, new);
            let zero = |v: u16| v == 0 || v == 0xffff;
            assert!(
                updated == recomputed || (zero(updated) && zero(recomputed)),
                "{updated:#06x} vs {recomputed:#06x}"
            );
        }
    }
}
