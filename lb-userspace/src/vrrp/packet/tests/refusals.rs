//! Each refusal, from a real advert of the 1 s capture with one thing changed; the variant
//! and its values are asserted, not only that parsing failed.

use std::net::IpAddr;

use super::pcap::{Captured, classify, ipv4_at, read_pcap, u16_at};
use super::*;

/// The first IPv4 advert of the 1 s capture, IP header included: 198.51.100.2 → 224.0.0.18,
/// priority 100, checksum 0x350a.
fn real_ipv4_packet() -> Vec<u8> {
    let frames = read_pcap("keepalived-v3-mcast-adv1s.pcap");
    let Captured::AdvertV4(packet) = classify(&frames[0], "adv1s", 1) else {
        panic!("frame 1 of the 1 s capture is not an IPv4 advert");
    };
    assert_eq!(
        u16_at(packet, 26),
        0x350a,
        "not the advert these tests were written on"
    );
    packet.to_vec()
}

/// The first IPv4 advert as (source, destination, VRRP payload).
fn real_ipv4_advert() -> (IpAddr, IpAddr, Vec<u8>) {
    let packet = real_ipv4_packet();
    (
        IpAddr::V4(ipv4_at(&packet, 12)),
        IpAddr::V4(ipv4_at(&packet, 16)),
        packet[20..].to_vec(),
    )
}

/// The first IPv6 advert of the 1 s capture as (source, destination, VRRP payload):
/// fe80::2c0f:d4ff:fe0e:947e → ff02::12, priority 100, checksum 0xcbea.
fn real_ipv6_advert() -> (IpAddr, IpAddr, Vec<u8>) {
    let frames = read_pcap("keepalived-v3-mcast-adv1s.pcap");
    let Captured::AdvertV6 {
        source,
        destination,
        payload,
        ..
    } = classify(&frames[6], "adv1s", 7)
    else {
        panic!("frame 7 of the 1 s capture is not an IPv6 advert");
    };
    assert_eq!(
        u16_at(payload, 6),
        0xcbea,
        "not the advert these tests were written on"
    );
    (source.into(), destination.into(), payload.to_vec())
}

/// `payload` with the checksum it should have, to reach the checks after the checksum's.
fn with_right_checksum(mut payload: Vec<u8>, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let checksum = vrrp_checksum(src, dst, &payload);
    payload[6..8].copy_from_slice(&checksum.to_be_bytes());
    payload
}

#[test]
fn ttl_other_than_255_is_refused() {
    for ttl in [0, 1, 64, 128, 254] {
        let mut packet = real_ipv4_packet();
        packet[8] = ttl;
        assert_eq!(
            parse_ipv4_packet(&packet),
            Err(AdvertError::Ttl { ttl }),
            "TTL {ttl}"
        );
        assert_eq!(
            check_hop_limit(ttl),
            Err(AdvertError::Ttl { ttl }),
            "hop limit {ttl}"
        );
    }
    assert_eq!(check_hop_limit(255), Ok(()));
}

#[test]
fn a_flipped_checksum_bit_is_refused_with_both_values() {
    let (src, dst, mut payload) = real_ipv4_advert();
    payload[7] ^= 0x01;
    assert_eq!(
        Advert::parse(&payload, src, dst),
        Err(AdvertError::Checksum {
            expected: 0x350a,
            found: 0x350b
        })
    );

    // The pseudo-header counts: the same bytes from another source fail.
    let (_, dst, payload) = real_ipv4_advert();
    assert_eq!(
        Advert::parse(&payload, IpAddr::V4(ROUTER_1), dst),
        Err(AdvertError::Checksum {
            expected: 0x350b,
            found: 0x350a
        })
    );
}

/// Every single-bit flip of a real advert, in either family, is refused by the check of the
/// field it lands in: version or type in the first byte, Count IPvX Addr in the fourth, and the
/// checksum anywhere else (Rsvd and Max Adver Int included, the checksum covers them).
#[test]
fn every_single_bit_flip_is_refused_by_the_field_it_hits() {
    for (src, dst, original) in [real_ipv4_advert(), real_ipv6_advert()] {
        let original_checksum = u16_at(&original, 6);
        for bit in 0..original.len() * 8 {
            let mut payload = original.clone();
            payload[bit / 8] ^= 0x80 >> (bit % 8);
            let error = Advert::parse(&payload, src, dst)
                .expect_err(&format!("bit {bit} flipped in the advert from {src}"));
            let context = format!("bit {bit} flipped in the advert from {src}: {error}");
            match bit / 8 {
                0 if bit < 4 => assert_eq!(
                    error,
                    AdvertError::Version {
                        version: payload[0] >> 4
                    },
                    "{context}"
                ),
                0 => assert_eq!(
                    error,
                    AdvertError::Type {
                        packet_type: payload[0] & 0x0f
                    },
                    "{context}"
                ),
                3 => assert_eq!(error.kind(), "address_count", "{context}"),
                6 | 7 => assert_eq!(
                    error,
                    AdvertError::Checksum {
                        expected: original_checksum,
                        found: u16_at(&payload, 6)
                    },
                    "{context}"
                ),
                _ => assert!(
                    matches!(error, AdvertError::Checksum { found, .. } if found == original_checksum),
                    "{context}"
                ),
            }
        }
    }
}

#[test]
fn version_2_and_type_2_are_refused() {
    let (src, dst, mut payload) = real_ipv4_advert();
    payload[0] = 0x21;
    assert_eq!(
        Advert::parse(&payload, src, dst),
        Err(AdvertError::Version { version: 2 })
    );
    payload[0] = 0x32;
    assert_eq!(
        Advert::parse(&payload, src, dst),
        Err(AdvertError::Type { packet_type: 2 })
    );
}

#[test]
fn truncation_at_every_length_is_refused() {
    for (src, dst, payload) in [real_ipv4_advert(), real_ipv6_advert()] {
        let family = if src.is_ipv4() { 4 } else { 6 };
        for length in 0..payload.len() {
            let expected = if length < 8 {
                AdvertError::Truncated {
                    what: "VRRP header",
                    length,
                    needed: 8,
                }
            } else {
                AdvertError::AddressCount {
                    count: 1,
                    family,
                    needed: payload.len(),
                    length,
                }
            };
            assert_eq!(
                Advert::parse(&payload[..length], src, dst),
                Err(expected),
                "payload from {src} cut to {length} bytes"
            );
        }
    }

    let packet = real_ipv4_packet();
    for length in 0..packet.len() {
        let expected = if length < 20 {
            AdvertError::Truncated {
                what: "IPv4 header",
                length,
                needed: 20,
            }
        } else {
            AdvertError::Ipv4TotalLength {
                total_length: 32,
                buffer_length: length,
            }
        };
        assert_eq!(
            parse_ipv4_packet(&packet[..length]),
            Err(expected),
            "IPv4 packet cut to {length} bytes"
        );
    }
}

#[test]
fn address_count_disagreeing_with_the_length_is_refused() {
    let (src, dst, original) = real_ipv4_advert();
    for (count, needed) in [(0, 8), (2, 16), (255, 8 + 255 * 4)] {
        let mut payload = original.clone();
        payload[3] = count;
        assert_eq!(
            Advert::parse(&payload, src, dst),
            Err(AdvertError::AddressCount {
                count,
                family: 4,
                needed,
                length: 12
            }),
            "count {count}"
        );
    }
    // Trailing bytes: a stray byte, or a whole address the count does not announce.
    for extra in [1, 4] {
        let mut payload = original.clone();
        payload.extend(std::iter::repeat_n(0, extra));
        assert_eq!(
            Advert::parse(&payload, src, dst),
            Err(AdvertError::AddressCount {
                count: 1,
                family: 4,
                needed: 12,
                length: 12 + extra
            }),
            "{extra} bytes appended"
        );
    }
}

#[test]
fn the_source_family_decides_the_address_length() {
    let (_, _, v6_payload) = real_ipv6_advert();
    assert_eq!(
        Advert::parse(&v6_payload, IpAddr::V4(ROUTER_2), IpAddr::V4(MULTICAST_V4)),
        Err(AdvertError::AddressCount {
            count: 1,
            family: 4,
            needed: 12,
            length: 24
        })
    );
    let (_, _, v4_payload) = real_ipv4_advert();
    assert_eq!(
        Advert::parse(
            &v4_payload,
            IpAddr::V6(ROUTER_2_LINK_LOCAL),
            IpAddr::V6(MULTICAST_V6)
        ),
        Err(AdvertError::AddressCount {
            count: 1,
            family: 6,
            needed: 24,
            length: 12
        })
    );
    assert_eq!(
        Advert::parse(&v4_payload, IpAddr::V4(ROUTER_2), IpAddr::V6(MULTICAST_V6)),
        Err(AdvertError::MixedFamilies {
            src: IpAddr::V4(ROUTER_2),
            dst: IpAddr::V6(MULTICAST_V6)
        })
    );
}

#[test]
fn max_advert_interval_zero_is_refused() {
    for (src, dst, mut payload) in [real_ipv4_advert(), real_ipv6_advert()] {
        payload[4..6].copy_from_slice(&[0, 0]);
        let payload = with_right_checksum(payload, src, dst);
        assert_eq!(
            Advert::parse(&payload, src, dst),
            Err(AdvertError::IntervalZero),
            "from {src}"
        );
    }
}

/// RFC 5798 §5.2.6: Rsvd is ignored on reception, so an advert with it set reads the same, and
/// emits with it zero.
#[test]
fn rsvd_bits_are_ignored() {
    for (src, dst, original) in [real_ipv4_advert(), real_ipv6_advert()] {
        let expected = Advert::parse(&original, src, dst)
            .unwrap_or_else(|e| panic!("the real advert from {src}: {e}"));
        let mut payload = original.clone();
        payload[4] |= 0xf0;
        let payload = with_right_checksum(payload, src, dst);
        assert_eq!(
            Advert::parse(&payload, src, dst),
            Ok(expected.clone()),
            "from {src}"
        );
        assert_eq!(expected.emit(src, dst), original, "from {src}");
    }
}

#[test]
fn ipv4_header_faults_are_refused() {
    let original = real_ipv4_packet();
    let mutated = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut packet = original.clone();
        change(&mut packet);
        parse_ipv4_packet(&packet)
    };

    assert_eq!(
        mutated(&|p| p[0] = 0x65),
        Err(AdvertError::Ipv4Version { version: 6 })
    );
    assert_eq!(
        mutated(&|p| p[0] = 0x44),
        Err(AdvertError::Ipv4HeaderLength {
            header_length: 16,
            total_length: 32
        })
    );
    assert_eq!(
        mutated(&|p| p[0] = 0x4f),
        Err(AdvertError::Ipv4HeaderLength {
            header_length: 60,
            total_length: 32
        })
    );
    // The buffer must be exactly the packet: a byte more is refused like a byte less.
    assert_eq!(
        mutated(&|p| p.push(0)),
        Err(AdvertError::Ipv4TotalLength {
            total_length: 32,
            buffer_length: 33
        })
    );
    assert_eq!(
        mutated(&|p| p[3] = 31),
        Err(AdvertError::Ipv4TotalLength {
            total_length: 31,
            buffer_length: 32
        })
    );
    assert_eq!(
        mutated(&|p| p[9] = 17),
        Err(AdvertError::NotVrrp { protocol: 17 })
    );
    // A fault in the payload comes through parse_ipv4_packet too.
    assert_eq!(
        mutated(&|p| p[20] = 0x21),
        Err(AdvertError::Version { version: 2 })
    );
}

#[test]
fn ipv4_options_are_skipped() {
    let original = real_ipv4_packet();
    let expected = parse_ipv4_packet(&original).unwrap_or_else(|e| panic!("the real advert: {e}"));
    // Router Alert (RFC 2113), 4 bytes: IHL 6, total length 36.
    let mut packet = original[..20].to_vec();
    packet[0] = 0x46;
    packet[3] = 36;
    packet.extend_from_slice(&[0x94, 0x04, 0, 0]);
    packet.extend_from_slice(&original[20..]);
    assert_eq!(parse_ipv4_packet(&packet), Ok(expected));
}

/// The metric labels are an interface: each variant keeps its name.
#[test]
fn kinds_and_messages_name_the_field() {
    let cases = [
        (
            AdvertError::Truncated {
                what: "VRRP header",
                length: 5,
                needed: 8,
            },
            "truncated",
            "VRRP header truncated: 5 bytes, needs 8",
        ),
        (
            AdvertError::Ipv4Version { version: 6 },
            "ip_header",
            "IP version 6 in an IPv4 header, not 4",
        ),
        (
            AdvertError::Ipv4TotalLength {
                total_length: 32,
                buffer_length: 33,
            },
            "ip_header",
            "IPv4 total length 32, but the packet is 33 bytes",
        ),
        (
            AdvertError::Ipv4HeaderLength {
                header_length: 16,
                total_length: 32,
            },
            "ip_header",
            "IPv4 header length (IHL × 4) 16 bytes, outside 20..=32 (the total length)",
        ),
        (
            AdvertError::NotVrrp { protocol: 17 },
            "protocol",
            "IP protocol 17, not 112 (VRRP)",
        ),
        (
            AdvertError::Ttl { ttl: 64 },
            "ttl",
            "TTL/hop limit 64, not 255",
        ),
        (
            AdvertError::Version { version: 2 },
            "version",
            "VRRP version 2, not 3",
        ),
        (
            AdvertError::Type { packet_type: 2 },
            "type",
            "VRRP type 2, not 1 (advertisement)",
        ),
        (
            AdvertError::AddressCount {
                count: 2,
                family: 4,
                needed: 16,
                length: 12,
            },
            "address_count",
            "Count IPvX Addr 2: 2 IPv4 addresses need a 16-byte VRRP payload, but it is 12 bytes",
        ),
        (
            AdvertError::Checksum {
                expected: 0x350a,
                found: 0x350b,
            },
            "checksum",
            "VRRP checksum 0x350b, expected 0x350a",
        ),
        (
            AdvertError::IntervalZero,
            "interval_zero",
            "Max Adver Int 0 centiseconds",
        ),
        (
            AdvertError::MixedFamilies {
                src: IpAddr::V4(ROUTER_1),
                dst: IpAddr::V6(MULTICAST_V6),
            },
            "address_family",
            "source 198.51.100.1 and destination ff02::12 are of different families",
        ),
    ];
    for (error, kind, message) in cases {
        assert_eq!(error.kind(), kind, "{error:?}");
        assert_eq!(error.to_string(), message, "{error:?}");
    }
}
