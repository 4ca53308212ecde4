//! Wire formats written out by hand, a comment per field: `parse(raw) == value` and
//! `value.emit() == raw`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

#[test]
fn ipv4_advert_round_trips_byte_for_byte() {
    let (src, dst) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(MULTICAST_V4),
    );
    #[rustfmt::skip]
    let raw: [u8; 16] = [
        0x31,           // version 3, type 1 (advertisement)
        7,              // VRID
        200,            // priority
        2,              // Count IPvX Addr
        0x00, 0x64,     // Rsvd 0 (4 bits), Max Adver Int 100 cs (12 bits)
        0xdf, 0xe6,     // checksum: IPv4 pseudo-header (src, dst, 0, 112, 16) and these bytes
        192, 0, 2, 10,  // first address
        192, 0, 2, 11,  // second address
    ];
    let advert = Advert {
        vrid: 7,
        priority: 200,
        max_advert_interval_cs: 100,
        addresses: vec![
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
        ],
    };
    assert_eq!(Advert::parse(&raw, src, dst), Ok(advert.clone()));
    assert_eq!(advert.emit(src, dst), raw);
}

#[test]
fn ipv6_advert_round_trips_byte_for_byte() {
    let (src, dst) = (
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(MULTICAST_V6),
    );
    #[rustfmt::skip]
    let raw: [u8; 24] = [
        0x31,           // version 3, type 1 (advertisement)
        9,              // VRID
        255,            // priority: the address owner
        1,              // Count IPvX Addr
        0x0f, 0xff,     // Rsvd 0 (4 bits), Max Adver Int 4095 cs (12 bits, the largest)
        0x94, 0x0d,     // checksum: IPv6 pseudo-header (src, dst, 24, 112) and these bytes
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0x10,          // the address, 2001:db8::10
    ];
    let advert = Advert {
        vrid: 9,
        priority: 255,
        max_advert_interval_cs: MAX_ADVERT_INTERVAL_CS,
        addresses: vec![IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10,
        ))],
    };
    assert_eq!(Advert::parse(&raw, src, dst), Ok(advert.clone()));
    assert_eq!(advert.emit(src, dst), raw);
}

/// RFC 5798 makes 1 the least a sender puts in Count IPvX Addr, but does not discard 0 on
/// receipt: the state machine compares the addresses, not the packet layer.
#[test]
fn advert_without_addresses_round_trips() {
    let (src, dst) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(MULTICAST_V4),
    );
    #[rustfmt::skip]
    let raw: [u8; 8] = [
        0x31,           // version 3, type 1 (advertisement)
        1,              // VRID
        100,            // priority
        0,              // Count IPvX Addr: none
        0x00, 0x64,     // Rsvd 0, Max Adver Int 100 cs
        0xc8, 0x0d,     // checksum: IPv4 pseudo-header (src, dst, 0, 112, 8) and these bytes
    ];
    let advert = Advert {
        vrid: 1,
        priority: 100,
        max_advert_interval_cs: 100,
        addresses: vec![],
    };
    assert_eq!(Advert::parse(&raw, src, dst), Ok(advert.clone()));
    assert_eq!(advert.emit(src, dst), raw);
}

#[test]
fn gratuitous_arp_byte_for_byte() {
    let mac = [0x02, 0, 0, 0, 0, 1];
    #[rustfmt::skip]
    let expected: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // Ethernet destination: broadcast
        0x02, 0, 0, 0, 0, 1,                // Ethernet source: the interface's own MAC
        0x08, 0x06,                         // ethertype ARP
        0, 1,                               // hardware type Ethernet
        0x08, 0x00,                         // protocol type IPv4
        6, 4,                               // hardware and protocol address lengths
        0, 1,                               // operation: request
        0x02, 0, 0, 0, 0, 1,                // sender hardware address: the interface's MAC
        192, 0, 2, 10,                      // sender protocol address: the VIP
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // target hardware address: broadcast (keepalived's)
        192, 0, 2, 10,                      // target protocol address: the VIP again
    ];
    assert_eq!(gratuitous_arp(mac, Ipv4Addr::new(192, 0, 2, 10)), expected);
}

#[test]
fn unsolicited_neighbour_advert_byte_for_byte() {
    let mac = [0x02, 0, 0, 0, 0, 1];
    let vip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    #[rustfmt::skip]
    let expected: [u8; 86] = [
        0x33, 0x33, 0, 0, 0, 1,             // Ethernet destination: ff02::1's multicast MAC
        0x02, 0, 0, 0, 0, 1,                // Ethernet source: the interface's own MAC
        0x86, 0xdd,                         // ethertype IPv6
        0x60, 0, 0, 0,                      // version 6, traffic class 0, flow label 0
        0, 32,                              // payload length
        58,                                 // next header: ICMPv6
        255,                                // hop limit: RFC 4861 receivers drop anything less
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0x10,          // source: the VIP, 2001:db8::10
        0xff, 0x02, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 1,             // destination: ff02::1, all nodes
        136,                                // ICMPv6 type: neighbour advertisement
        0,                                  // code
        0xf9, 0x0c,                         // checksum: IPv6 pseudo-header (58) and the message
        0x20, 0, 0, 0,                      // flags: Override; not Router, not Solicited
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0x10,          // target: the VIP
        2,                                  // option: target link-layer address
        1,                                  // its length, in units of 8 bytes
        0x02, 0, 0, 0, 0, 1,                // the interface's MAC
    ];
    assert_eq!(unsolicited_neighbour_advert(mac, vip, vip), expected);
}

/// RFC 1071 §3's worked example: the words 0x0001, 0xf203, 0xf4f5, 0xf6f7 sum to 0xddf2.
#[test]
fn internet_checksum_matches_rfc_1071_example() {
    let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(
        InternetChecksum::default().add_bytes(&bytes).finish(),
        !0xddf2
    );
    // Fed in even pieces, the same.
    assert_eq!(
        InternetChecksum::default()
            .add_bytes(&bytes[..2])
            .add_bytes(&bytes[2..])
            .finish(),
        !0xddf2
    );
    // An odd last byte counts as the high half of a word.
    assert_eq!(
        InternetChecksum::default().add_bytes(&bytes[..7]).finish(),
        InternetChecksum::default()
            .add_bytes(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0x00])
            .finish()
    );
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "addresses of the other family")]
fn emitting_an_address_of_the_other_family_is_a_programming_error() {
    let advert = Advert {
        vrid: 1,
        priority: 100,
        max_advert_interval_cs: 100,
        addresses: vec![IpAddr::V6(VIP_V6)],
    };
    advert.emit(IpAddr::V4(ROUTER_1), IpAddr::V4(MULTICAST_V4));
}
