//! Cutting a built frame into IP fragments the way a sending kernel does.

use super::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, PROTO_HOP_BY_HOP, PROTO_IPV6_FRAGMENT, PROTO_IPV6_ROUTING,
    checks::checksum, l3_start, read_u16,
};

/// Splits the IPv4 or IPv6 packet in `frame` into fragments of at most `max_ip_packet` bytes
/// (IP header included), each returned as a whole frame behind the original's Ethernet header
/// and tags. Fragment data is a multiple of 8 bytes except in the last fragment. A packet that
/// already fits comes back unchanged, alone (a kernel would not fragment it).
///
/// - IPv4: every fragment copies the header with MF, offset and id (`id` truncated to 16 bits)
///   set and the checksum recomputed; options not marked "copied" become NOPs after the first
///   fragment, as Linux does. A packet that is already a fragment is cut further (offsets
///   added, its MF kept on the last piece). A DF packet is refused: a kernel would send
///   fragmentation-needed instead.
/// - IPv6: a Fragment header with `id` goes after the fixed header (after any hop-by-hop and
///   routing headers, which are the unfragmentable part), taking over their Next Header.
///
/// Panics on anything else, or if `max_ip_packet` leaves no room for 8 bytes of data.
pub fn fragments(frame: &[u8], max_ip_packet: usize, id: u32) -> Vec<Vec<u8>> {
    let (start, ethertype) = l3_start(frame).unwrap_or_else(|error| panic!("fragments: {error}"));
    let (ethernet, packet) = frame.split_at(start);
    let packets = match ethertype {
        ETHERTYPE_IPV4 => fragment_ipv4(packet, max_ip_packet, id as u16),
        ETHERTYPE_IPV6 => fragment_ipv6(packet, max_ip_packet, id),
        other => panic!("fragments: ethertype 0x{other:04x} is not IP"),
    };
    packets
        .into_iter()
        .map(|packet| [ethernet, &packet].concat())
        .collect()
}

fn fragment_ipv4(packet: &[u8], max: usize, id: u16) -> Vec<Vec<u8>> {
    let ihl = usize::from(packet.first().expect("fragments: empty IPv4 packet") & 0x0f) * 4;
    let total = usize::from(read_u16(packet, 2).expect("fragments: truncated IPv4 header"));
    assert!(
        ihl >= 20 && ihl <= total && total <= packet.len(),
        "fragments: IHL {ihl} / total length {total} do not fit {} bytes",
        packet.len()
    );
    if total <= max {
        return vec![packet[..total].to_vec()];
    }
    let flags_offset = read_u16(packet, 6).unwrap_or(0);
    assert!(
        flags_offset & 0x4000 == 0,
        "fragments: the packet has DF set; a kernel would not fragment it"
    );
    let base = usize::from(flags_offset & 0x1fff) * 8;
    let last_more = flags_offset & 0x2000 != 0;
    let step = max.saturating_sub(ihl) & !7;
    assert!(
        step >= 8,
        "fragments: {max} bytes leave no room for data behind a {ihl}-byte header"
    );

    let mut later_header = packet[..ihl].to_vec();
    nop_uncopied_options(&mut later_header[20..]);
    let data = &packet[ihl..total];
    let count = data.len().div_ceil(step);
    data.chunks(step)
        .enumerate()
        .map(|(index, chunk)| {
            let mut header = if index == 0 {
                packet[..ihl].to_vec()
            } else {
                later_header.clone()
            };
            let more = index + 1 < count || last_more;
            let offset = u16::try_from((base + index * step) / 8)
                .ok()
                .filter(|offset| *offset < 0x2000)
                .expect("fragments: offset beyond 13 bits");
            header[2..4].copy_from_slice(&((ihl + chunk.len()) as u16).to_be_bytes());
            header[4..6].copy_from_slice(&id.to_be_bytes());
            header[6..8].copy_from_slice(&((u16::from(more) << 13) | offset).to_be_bytes());
            header[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&[&header]);
            header[10..12].copy_from_slice(&sum.to_be_bytes());
            [&header, chunk].concat()
        })
        .collect()
}

/// Overwrites with NOPs the options whose "copied" bit is clear (Linux's
/// `ip_options_fragment`): the header keeps its length.
fn nop_uncopied_options(options: &mut [u8]) {
    const END: u8 = 0;
    const NOP: u8 = 1;
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            END => return,
            NOP => at += 1,
            kind => {
                let len = usize::from(*options.get(at + 1).unwrap_or(&0));
                if len < 2 || at + len > options.len() {
                    return;
                }
                if kind & 0x80 == 0 {
                    options[at..at + len].fill(NOP);
                }
                at += len;
            }
        }
    }
}

fn fragment_ipv6(packet: &[u8], max: usize, id: u32) -> Vec<Vec<u8>> {
    let length = usize::from(read_u16(packet, 4).expect("fragments: truncated IPv6 header"));
    let end = 40 + length;
    assert!(
        end <= packet.len(),
        "fragments: IPv6 payload length {length} exceeds the {} bytes given",
        packet.len()
    );
    if end <= max {
        return vec![packet[..end].to_vec()];
    }
    // The unfragmentable part: the fixed header, hop-by-hop and routing headers.
    let (mut next_at, mut unfragmentable) = (6, 40);
    while matches!(packet[next_at], PROTO_HOP_BY_HOP | PROTO_IPV6_ROUTING) {
        next_at = unfragmentable;
        unfragmentable += (usize::from(packet[unfragmentable + 1]) + 1) * 8;
        assert!(
            unfragmentable <= end,
            "fragments: extension header overruns"
        );
    }
    let next = packet[next_at];
    assert_ne!(
        next, PROTO_IPV6_FRAGMENT,
        "fragments: the packet is already a fragment"
    );
    let step = max.saturating_sub(unfragmentable + 8) & !7;
    assert!(
        step >= 8,
        "fragments: {max} bytes leave no room for data behind {unfragmentable} + 8 header bytes"
    );
    let data = &packet[unfragmentable..end];
    let count = data.len().div_ceil(step);
    data.chunks(step)
        .enumerate()
        .map(|(index, chunk)| {
            let mut fragment = packet[..unfragmentable].to_vec();
            fragment[next_at] = PROTO_IPV6_FRAGMENT;
            let payload_length = u16::try_from(unfragmentable - 40 + 8 + chunk.len())
                .expect("fragments: IPv6 payload over 64 KiB");
            fragment[4..6].copy_from_slice(&payload_length.to_be_bytes());
            let offset = u16::try_from(index * step).expect("fragments: offset beyond 13 bits");
            let more = u16::from(index + 1 < count);
            fragment.extend_from_slice(&[next, 0]);
            fragment.extend_from_slice(&(offset | more).to_be_bytes());
            fragment.extend_from_slice(&id.to_be_bytes());
            fragment.extend_from_slice(chunk);
            fragment
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{
        Frame, PROTO_UDP, check_checksums,
        tests::{v4, v6},
    };
    use super::*;

    #[test]
    fn ipv4_fragments_like_a_kernel() {
        let datagram = Frame::udp(v4("198.51.100.2:40000"), v4("192.0.2.11:7"))
            .payload(&(0..3000u32).map(|byte| byte as u8).collect::<Vec<_>>())
            .ip_id(1)
            .vlan(5);
        let whole = datagram.build();
        let pieces = fragments(&whole, 1500, 0x1_abcd);
        assert_eq!(
            pieces.iter().map(Vec::len).collect::<Vec<_>>(),
            [18 + 1500, 18 + 1500, 18 + 20 + 48]
        );
        let mut reassembled = Vec::new();
        for (index, piece) in pieces.iter().enumerate() {
            assert_eq!(&piece[..18], &whole[..18], "Ethernet header and tag kept");
            let ip = &piece[18..];
            let flags_offset = u16::from_be_bytes([ip[6], ip[7]]);
            assert_eq!(usize::from(flags_offset & 0x1fff) * 8, index * 1480);
            assert_eq!(
                flags_offset & 0x2000 != 0,
                index < 2,
                "MF of fragment {index}"
            );
            assert_eq!(&ip[4..6], &[0xab, 0xcd], "id truncated to 16 bits");
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
            check_checksums(piece).unwrap_or_else(|error| panic!("fragment {index}: {error}"));
            reassembled.extend_from_slice(&ip[20..]);
        }
        assert_eq!(reassembled, &datagram.ip_bytes()[20..]);
    }

    #[test]
    fn ipv4_options_not_copied_become_nops_after_the_first_fragment() {
        // Record route (7, not copied) then a copied option 0x94 (router alert), padded.
        let options = [7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 0];
        let whole = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.11:2"))
            .ip_options(&options)
            .payload(&[0; 100])
            .build();
        let pieces = fragments(&whole, 32 + 64, 9);
        assert_eq!(pieces.len(), 2);
        assert_eq!(&pieces[0][34..46], &options);
        assert_eq!(&pieces[1][34..46], &[1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0, 0]);
        for piece in &pieces {
            check_checksums(piece).unwrap();
        }
    }

    #[test]
    fn ipv4_fragment_of_a_fragment_keeps_offsets_and_mf() {
        let middle = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.11:2"))
            .payload(&[7; 92]) // 100 bytes of data with the UDP header
            .fragment(true, 800)
            .build();
        let pieces = fragments(&middle, 20 + 48, 3);
        let flags = |piece: &Vec<u8>| u16::from_be_bytes([piece[20], piece[21]]);
        assert_eq!(
            pieces.iter().map(flags).collect::<Vec<_>>(),
            [0x2000 | 100, 0x2000 | 106, 0x2000 | 112]
        );
    }

    #[test]
    fn ipv6_fragments_get_a_fragment_header() {
        let datagram = Frame::ipv6_udp(v6("[2001:db8:1::2]:40000"), v6("[2001:db8::11]:7"))
            .payload(
                &(0..3000u32)
                    .map(|byte| (byte * 7) as u8)
                    .collect::<Vec<_>>(),
            );
        let whole = datagram.build();
        let pieces = fragments(&whole, 1280, 0xdead_beef);
        // (1280 - 40 - 8) & !7 = 1232 bytes of data per fragment; 3008 = 1232 + 1232 + 544.
        assert_eq!(
            pieces.iter().map(Vec::len).collect::<Vec<_>>(),
            [14 + 1280, 14 + 1280, 14 + 48 + 544]
        );
        let mut reassembled = Vec::new();
        for (index, piece) in pieces.iter().enumerate() {
            let ip = &piece[14..];
            assert_eq!(ip[6], PROTO_IPV6_FRAGMENT);
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[4], ip[5]])),
                ip.len() - 40
            );
            assert_eq!(&ip[..4], &whole[14..18]);
            assert_eq!(&ip[7..40], &whole[21..54], "hop limit and addresses kept");
            assert_eq!(ip[40], PROTO_UDP);
            let offset_more = u16::from_be_bytes([ip[42], ip[43]]);
            assert_eq!(usize::from(offset_more & !7), index * 1232);
            assert_eq!(offset_more & 1 == 1, index < 2, "M of fragment {index}");
            assert_eq!(&ip[44..48], &[0xde, 0xad, 0xbe, 0xef]);
            check_checksums(piece).unwrap();
            reassembled.extend_from_slice(&ip[48..]);
        }
        assert_eq!(reassembled, &datagram.ip_bytes()[40..]);
    }

    #[test]
    fn ipv6_fragment_header_follows_hop_by_hop_and_routing() {
        let datagram = Frame::ipv6_udp(v6("[2001:db8::1]:1"), v6("[2001:db8::11]:2"))
            .hop_by_hop(0)
            .ipv6_routing(2)
            .destination_options(0) // fragmentable: travels in the fragments' data
            .payload(&[1; 200]);
        let whole = datagram.build();
        let pieces = fragments(&whole, 200, 1);
        let unfragmentable = 40 + 8 + 24;
        let mut reassembled = Vec::new();
        for piece in &pieces {
            let ip = &piece[14..];
            assert_eq!(ip[6], PROTO_HOP_BY_HOP);
            assert_eq!(ip[40], PROTO_IPV6_ROUTING);
            assert_eq!(ip[48], PROTO_IPV6_FRAGMENT, "routing's next header");
            assert_eq!(ip[unfragmentable], super::super::PROTO_IPV6_DEST_OPTS);
            assert!(ip.len() <= 200);
            reassembled.extend_from_slice(&ip[unfragmentable + 8..]);
        }
        assert_eq!(reassembled, &datagram.ip_bytes()[unfragmentable..]);
    }

    #[test]
    fn packets_that_fit_come_back_whole() {
        let small = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.11:2")).build();
        assert_eq!(fragments(&small, 1500, 1), [small]);
        let small6 = Frame::ipv6_udp(v6("[2001:db8::1]:1"), v6("[2001:db8::11]:2")).build();
        assert_eq!(fragments(&small6, 1280, 1), [small6]);
    }

    #[test]
    #[should_panic(expected = "DF set")]
    fn dont_fragment_is_refused() {
        let big = Frame::udp(v4("192.0.2.1:1"), v4("192.0.2.11:2"))
            .dont_fragment()
            .payload(&[0; 2000])
            .build();
        let _ = fragments(&big, 1500, 1);
    }
}
