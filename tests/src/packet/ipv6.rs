//! The IPv6 header and its extension headers (RFC 8200 §4).
//!
//! Extension headers are emitted in the order the knobs are called, between the fixed header
//! and the L4 header; each one's Next Header names the one after it, the last names the L4
//! protocol, and Payload Length covers them all. The builder does not enforce RFC 8200's
//! order (hop-by-hop first, …): fixtures of odd orders are the point of some tests.
//!
//! Whatever the extensions, the L4 checksum's pseudo-header uses the fixed header's
//! destination: routing headers are built with Segments Left 0, so it is the final one.

use std::net::Ipv6Addr;

use super::{
    Frame, PROTO_HOP_BY_HOP, PROTO_IPV6_DEST_OPTS, PROTO_IPV6_FRAGMENT, PROTO_IPV6_ROUTING,
};

#[derive(Clone, Debug)]
pub(super) struct Ipv6 {
    pub(super) src: Ipv6Addr,
    pub(super) dst: Ipv6Addr,
    pub(super) hop_limit: u8,
    /// DSCP (high six bits) and ECN (low two).
    traffic_class: u8,
    extensions: Vec<Extension>,
}

#[derive(Clone, Debug)]
enum Extension {
    /// Hdr Ext Len in 8-byte units beyond the first 8; options area all PadN.
    HopByHop(u8),
    /// Type 0, Segments Left 0; Hdr Ext Len as given.
    Routing(u8),
    DestinationOptions(u8),
    Fragment {
        more: bool,
        /// In bytes; a multiple of 8.
        offset: u16,
        id: u32,
    },
    /// Emitted verbatim, announced by the previous header's Next Header.
    Raw {
        code: u8,
        bytes: Vec<u8>,
    },
}

/// Routing type written by [`Frame::ipv6_routing`]: type 0 (RFC 5095 deprecated it, but with
/// Segments Left 0 a receiver ignores the header; Linux accepts it, whereas it drops type 4
/// (SRH) unless `seg6_enabled` is set).
pub const IPV6_ROUTING_TYPE: u8 = 0;

impl Ipv6 {
    pub(super) fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6 {
        Ipv6 {
            src,
            dst,
            hop_limit: 64,
            traffic_class: 0,
            extensions: Vec::new(),
        }
    }

    /// Fixed header, extension headers, then `segment` (an L4 header and data of `protocol`).
    pub(super) fn packet(&self, protocol: u8, segment: &[u8]) -> Vec<u8> {
        let mut headers = Vec::new();
        for (index, extension) in self.extensions.iter().enumerate() {
            let next = self
                .extensions
                .get(index + 1)
                .map_or(protocol, Extension::code);
            extension.emit(next, &mut headers);
        }
        let first = self.extensions.first().map_or(protocol, Extension::code);
        let payload_length =
            u16::try_from(headers.len() + segment.len()).expect("IPv6 payload over 64 KiB");
        let mut packet = Vec::with_capacity(40 + headers.len() + segment.len());
        // Version 6, the traffic class, flow label 0.
        let version_class_flow = 0x6000_0000u32 | (u32::from(self.traffic_class) << 20);
        packet.extend_from_slice(&version_class_flow.to_be_bytes());
        packet.extend_from_slice(&payload_length.to_be_bytes());
        packet.push(first);
        packet.push(self.hop_limit);
        packet.extend_from_slice(&self.src.octets());
        packet.extend_from_slice(&self.dst.octets());
        packet.extend_from_slice(&headers);
        packet.extend_from_slice(segment);
        packet
    }
}

impl Extension {
    fn code(&self) -> u8 {
        match self {
            Extension::HopByHop(_) => PROTO_HOP_BY_HOP,
            Extension::Routing(_) => PROTO_IPV6_ROUTING,
            Extension::DestinationOptions(_) => PROTO_IPV6_DEST_OPTS,
            Extension::Fragment { .. } => PROTO_IPV6_FRAGMENT,
            Extension::Raw { code, .. } => *code,
        }
    }

    fn emit(&self, next: u8, out: &mut Vec<u8>) {
        match self {
            Extension::HopByHop(units) | Extension::DestinationOptions(units) => {
                out.extend_from_slice(&[next, *units]);
                pad_n(options_len(*units), out);
            }
            Extension::Routing(units) => {
                // Next Header, Hdr Ext Len, Routing Type, Segments Left, then type-specific
                // data (for type 0: 4 reserved bytes and the addresses), all zero.
                out.extend_from_slice(&[next, *units, IPV6_ROUTING_TYPE, 0]);
                out.resize(out.len() + options_len(*units) - 2, 0);
            }
            Extension::Fragment { more, offset, id } => {
                out.extend_from_slice(&[next, 0]); // Next Header, reserved
                out.extend_from_slice(&(offset | u16::from(*more)).to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
            Extension::Raw { bytes, .. } => out.extend_from_slice(bytes),
        }
    }
}

/// Bytes after Next Header and Hdr Ext Len in a header of `units`: (units + 1) × 8 − 2.
fn options_len(units: u8) -> usize {
    (usize::from(units) + 1) * 8 - 2
}

/// Fills `len` bytes (at least 2) with PadN options (type 1, length, zeros): each carries at
/// most 255 bytes of zeros, and none is cut to one byte (which only Pad1 could fill).
fn pad_n(mut len: usize, out: &mut Vec<u8>) {
    assert!(len >= 2, "PadN needs 2 bytes, {len} left");
    while len > 0 {
        let mut option = len.min(2 + 255);
        if len - option == 1 {
            option -= 1;
        }
        out.extend_from_slice(&[1, (option - 2) as u8]);
        out.resize(out.len() + option - 2, 0);
        len -= option;
    }
}

impl Frame {
    /// The traffic class: DSCP in the high six bits, ECN in the low two (IPv4's [`Frame::tos`]).
    pub fn traffic_class(mut self, class: u8) -> Frame {
        self.ipv6_mut("traffic_class").traffic_class = class;
        self
    }

    /// Appends a Hop-by-Hop Options header of `len_units` (its Hdr Ext Len): (len_units + 1) × 8
    /// bytes, the options area filled with PadN options.
    ///
    /// Linux drops a packet whose options hold more than 7 consecutive bytes of padding
    /// (`ip6_parse_tlv`), so beyond `len_units` 0 such a packet is for XDP fixtures, not for
    /// a kernel's stack.
    pub fn hop_by_hop(mut self, len_units: u8) -> Frame {
        self.ipv6_mut("hop_by_hop")
            .extensions
            .push(Extension::HopByHop(len_units));
        self
    }

    /// Appends a Routing header of `len_units` (its Hdr Ext Len): routing type 0
    /// ([`IPV6_ROUTING_TYPE`]), Segments Left 0, the rest zero. With nothing left to route, the
    /// destination stays the fixed header's (and the pseudo-header's).
    pub fn ipv6_routing(mut self, len_units: u8) -> Frame {
        self.ipv6_mut("ipv6_routing")
            .extensions
            .push(Extension::Routing(len_units));
        self
    }

    /// Appends a Destination Options header of `len_units`, filled with PadN options (the same
    /// Linux caveat as [`Frame::hop_by_hop`]).
    pub fn destination_options(mut self, len_units: u8) -> Frame {
        self.ipv6_mut("destination_options")
            .extensions
            .push(Extension::DestinationOptions(len_units));
        self
    }

    /// Appends a Fragment header: `more` sets M, `offset` is in bytes (a multiple of 8),
    /// `id` the identification. The L4 header still follows (and its checksum still covers
    /// just this packet's segment): for a non-first fragment those bytes are simply data. To
    /// cut a whole packet into fragments, see [`super::fragments`].
    pub fn ipv6_fragment_header(mut self, more: bool, offset: u16, id: u32) -> Frame {
        assert!(
            offset.is_multiple_of(8),
            "fragment offset {offset} is not a multiple of 8"
        );
        self.ipv6_mut("ipv6_fragment_header")
            .extensions
            .push(Extension::Fragment { more, offset, id });
        self
    }

    /// Appends a header the balancer is not meant to parse (e.g. [`super::PROTO_AH`],
    /// [`super::PROTO_ESP`] or an unassigned code): the previous header's Next Header becomes
    /// `next_header_code` and `bytes` follow verbatim, their own Next Header and length
    /// included. The L4 header and payload still follow them.
    pub fn ipv6_raw_extension(mut self, next_header_code: u8, bytes: &[u8]) -> Frame {
        self.ipv6_mut("ipv6_raw_extension")
            .extensions
            .push(Extension::Raw {
                code: next_header_code,
                bytes: bytes.to_vec(),
            });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PROTO_AH, PROTO_ESP, PROTO_TCP, PROTO_UDP, check_checksums, tests::v6};
    use super::*;

    /// Hand-written: the UDP checksum computed independently (Python), not by this module.
    #[rustfmt::skip]
    const UDP_BEHIND_HOP_BY_HOP_AND_FRAGMENT: &[u8] = &[
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02,    // eth.dst: the lb
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,    // eth.src: the client
        0x86, 0xdd,                            // eth.type: IPv6
        0x60, 0x00, 0x00, 0x00,                // ip6: version 6, class 0, flow 0
        0x00, 0x1a,                            // ip6.payload_length: 8 + 8 + 8 + 2 = 26
        0x00,                                  // ip6.next_header: hop-by-hop
        0x40,                                  // ip6.hop_limit: 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,    // ip6.src: 2001:db8::1
        0, 0, 0, 0, 0, 0, 0, 0x01,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,    // ip6.dst: 2001:db8::100
        0, 0, 0, 0, 0, 0, 0x01, 0x00,
        0x2c,                                  // hbh.next_header: fragment
        0x00,                                  // hbh.hdr_ext_len: 0 (8 bytes)
        0x01, 0x04, 0x00, 0x00, 0x00, 0x00,    // hbh: PadN of 4 zeros
        0x11,                                  // frag.next_header: UDP
        0x00,                                  // frag: reserved
        0x00, 0x00,                            // frag: offset 0, M 0 (an atomic fragment)
        0x12, 0x34, 0x56, 0x78,                // frag.id
        0x9c, 0x40,                            // udp.sport: 40000
        0x00, 0x35,                            // udp.dport: 53
        0x00, 0x0a,                            // udp.length: 8 + 2
        0x9e, 0x88,                            // udp.checksum
        b'h', b'i',                            // payload
    ];

    #[test]
    fn hop_by_hop_and_fragment_match_the_hand_written_fixture() {
        let built = Frame::ipv6_udp(v6("[2001:db8::1]:40000"), v6("[2001:db8::100]:53"))
            .hop_by_hop(0)
            .ipv6_fragment_header(false, 0, 0x1234_5678)
            .payload(b"hi")
            .build();
        assert_eq!(
            built,
            UDP_BEHIND_HOP_BY_HOP_AND_FRAGMENT,
            "{}",
            crate::pcap::field_diff(UDP_BEHIND_HOP_BY_HOP_AND_FRAGMENT, &built)
        );
        check_checksums(&built).unwrap();
    }

    #[test]
    fn extension_headers_chain_in_call_order() {
        let base = Frame::ipv6_tcp(v6("[2001:db8::1]:40000"), v6("[2001:db8::100]:80")).syn();
        let bare = base.build();
        let frame = base
            .clone()
            .hop_by_hop(1) // 16 bytes
            .ipv6_routing(2) // 24 bytes
            .destination_options(0) // 8 bytes
            .ipv6_fragment_header(false, 0, 7) // 8 bytes
            .build();
        let l3 = &frame[14..];
        assert_eq!(frame.len(), bare.len() + 16 + 24 + 8 + 8);
        assert_eq!(u16::from_be_bytes([l3[4], l3[5]]), 16 + 24 + 8 + 8 + 20);
        assert_eq!(l3[6], PROTO_HOP_BY_HOP);
        // hop-by-hop at 40: next = routing, 1 unit, then 14 bytes of PadN.
        assert_eq!(&l3[40..44], &[PROTO_IPV6_ROUTING, 1, 1, 12]);
        assert!(l3[44..56].iter().all(|&byte| byte == 0));
        // routing at 56: next = destination options, 2 units, type 0, segments left 0.
        assert_eq!(
            &l3[56..60],
            &[PROTO_IPV6_DEST_OPTS, 2, IPV6_ROUTING_TYPE, 0]
        );
        // destination options at 80: next = fragment.
        assert_eq!(&l3[80..84], &[PROTO_IPV6_FRAGMENT, 0, 1, 4]);
        // fragment at 88: next = TCP, offset 0, M 0, id 7.
        assert_eq!(&l3[88..96], &[PROTO_TCP, 0, 0, 0, 0, 0, 0, 7]);
        // The TCP header is unchanged by what precedes it (same pseudo-header).
        assert_eq!(&l3[96..], &bare[54..]);
        check_checksums(&frame).unwrap();
    }

    #[test]
    fn pad_n_fills_any_length_without_pad1() {
        for units in [0u8, 1, 31, 32, 33, 255] {
            let frame = Frame::ipv6_udp(v6("[2001:db8::1]:1"), v6("[2001:db8::2]:2"))
                .destination_options(units)
                .build();
            let total = (usize::from(units) + 1) * 8;
            let header = &frame[54..54 + total];
            assert_eq!(header[..2], [PROTO_UDP, units]);
            let mut at = 2;
            while at < total {
                assert_eq!(header[at], 1, "PadN expected at {at} of {total}");
                let len = usize::from(header[at + 1]);
                assert!(header[at + 2..at + 2 + len].iter().all(|&byte| byte == 0));
                at += 2 + len;
            }
            assert_eq!(at, total, "options overrun the header of {units} units");
            check_checksums(&frame).unwrap();
        }
    }

    #[test]
    fn raw_extensions_are_verbatim() {
        // An AH: next header UDP, payload len 4 (= (4 + 2) × 4 = 24 bytes), SPI, seq, ICV.
        let mut ah = vec![PROTO_UDP, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        ah.extend_from_slice(&[0xaa; 12]);
        let frame = Frame::ipv6_udp(v6("[2001:db8::1]:1"), v6("[2001:db8::2]:2"))
            .hop_by_hop(0)
            .ipv6_raw_extension(PROTO_AH, &ah)
            .payload(b"data")
            .build();
        assert_eq!(frame[20], PROTO_HOP_BY_HOP);
        assert_eq!(frame[54], PROTO_AH); // hop-by-hop's next header
        assert_eq!(&frame[62..62 + 24], &ah[..]);
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]), 8 + 24 + 8 + 4);
        // The checker stops at headers it cannot walk: nothing to verify, no error.
        check_checksums(&frame).unwrap();

        let esp = Frame::ipv6_tcp(v6("[2001:db8::1]:1"), v6("[2001:db8::2]:2"))
            .ipv6_raw_extension(PROTO_ESP, &[0, 0, 1, 0, 0, 0, 0, 9])
            .build();
        assert_eq!(esp[20], PROTO_ESP);
        assert_eq!(&esp[54..62], &[0, 0, 1, 0, 0, 0, 0, 9]);
        check_checksums(&esp).unwrap();
    }

    #[test]
    fn fragments_skip_the_l4_check_and_atomic_ones_do_not() {
        let base = Frame::ipv6_udp(v6("[2001:db8::1]:1"), v6("[2001:db8::2]:2")).l4_checksum(1);
        let error =
            check_checksums(&base.clone().ipv6_fragment_header(false, 0, 1).build()).unwrap_err();
        assert!(error.contains("ip6.udp.checksum"), "{error}");
        check_checksums(&base.clone().ipv6_fragment_header(true, 0, 1).build()).unwrap();
        let later = base.ipv6_fragment_header(false, 1232, 1).build();
        assert_eq!(&later[56..58], &1232u16.to_be_bytes()); // offset 154 × 8, M 0
        check_checksums(&later).unwrap();
        // Sanity of the raw field: offset in the high 13 bits, M in the low bit.
        let first = Frame::ipv6_udp(v6("[2001:db8::1]:1"), v6("[2001:db8::2]:2"))
            .ipv6_fragment_header(true, 8, 0xffff_ffff)
            .build();
        assert_eq!(
            &first[54..62],
            &[PROTO_UDP, 0, 0, 9, 0xff, 0xff, 0xff, 0xff]
        );
    }
}
