//! The captures: where they are, their frames, and what each frame is.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use super::super::{ICMPV6_NEIGHBOUR_ADVERT, IPPROTO_ICMPV6, IPPROTO_VRRP};

/// Where the captures live: `testdata/` beside this module (copied from the shared test
/// data, so every checkout has them). A missing capture fails the test: passing on nothing
/// would prove nothing.
fn capture_path(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/vrrp/packet/testdata")
        .join(name);
    assert!(
        path.is_file(),
        "capture {name} not found at {}",
        path.display()
    );
    path
}

/// The frames of a classic pcap file: 24-byte global header (little-endian magic 0xa1b2c3d4,
/// link type 1 for Ethernet), then a 16-byte record header before each frame.
pub(super) fn read_pcap(name: &str) -> Vec<Vec<u8>> {
    let path = capture_path(name);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let Some((global, mut rest)) = bytes.split_first_chunk::<24>() else {
        panic!(
            "{name}: {} bytes, no room for the 24-byte global header",
            bytes.len()
        );
    };
    let magic = u32::from_le_bytes(global[0..4].try_into().unwrap());
    assert_eq!(
        magic, 0xa1b2_c3d4,
        "{name}: not a little-endian microsecond pcap"
    );
    let link_type = u32::from_le_bytes(global[20..24].try_into().unwrap());
    assert_eq!(link_type, 1, "{name}: link type is not Ethernet");

    let mut frames = Vec::new();
    while !rest.is_empty() {
        let number = frames.len() + 1;
        let Some((record, after)) = rest.split_first_chunk::<16>() else {
            panic!("{name}: frame {number}: record header truncated");
        };
        let included = u32::from_le_bytes(record[8..12].try_into().unwrap()) as usize;
        let original = u32::from_le_bytes(record[12..16].try_into().unwrap()) as usize;
        assert_eq!(
            included, original,
            "{name}: frame {number} was cut by the snap length"
        );
        let Some((frame, after)) = after.split_at_checked(included) else {
            panic!(
                "{name}: frame {number}: {included} bytes announced, {} left",
                after.len()
            );
        };
        frames.push(frame.to_vec());
        rest = after;
    }
    frames
}

pub(super) fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes(bytes[offset..offset + 2].try_into().unwrap())
}

fn mac_at(bytes: &[u8], offset: usize) -> [u8; 6] {
    bytes[offset..offset + 6].try_into().unwrap()
}

pub(super) fn ipv4_at(bytes: &[u8], offset: usize) -> Ipv4Addr {
    <[u8; 4]>::try_from(&bytes[offset..offset + 4])
        .unwrap()
        .into()
}

fn ipv6_at(bytes: &[u8], offset: usize) -> Ipv6Addr {
    <[u8; 16]>::try_from(&bytes[offset..offset + 16])
        .unwrap()
        .into()
}

/// A captured frame, by what the tests do with it.
pub(super) enum Captured<'a> {
    /// From the IPv4 header to the total length: what a raw socket hands over.
    AdvertV4(&'a [u8]),
    AdvertV6 {
        source: Ipv6Addr,
        destination: Ipv6Addr,
        hop_limit: u8,
        payload: &'a [u8],
    },
    GratuitousArp {
        mac: [u8; 6],
        address: Ipv4Addr,
    },
    /// ARP between the unicast peers resolving each other: the kernel's, not ours to build.
    PeerArp,
    NeighbourAdvert {
        mac: [u8; 6],
        source: Ipv6Addr,
        target: Ipv6Addr,
    },
}

pub(super) fn classify<'a>(frame: &'a [u8], name: &str, number: usize) -> Captured<'a> {
    let context = format!("{name}: frame {number}");
    assert!(
        frame.len() >= 14,
        "{context}: {} bytes, no Ethernet header",
        frame.len()
    );
    let ip = &frame[14..];
    match u16_at(frame, 12) {
        0x0806 => {
            let sender = ipv4_at(ip, 14);
            if u16_at(ip, 6) == 1 && sender == ipv4_at(ip, 24) {
                Captured::GratuitousArp {
                    mac: mac_at(frame, 6),
                    address: sender,
                }
            } else {
                Captured::PeerArp
            }
        }
        0x0800 => {
            assert_eq!(ip[9], IPPROTO_VRRP, "{context}: IPv4 but not VRRP");
            // The kernel trims Ethernet padding before a raw socket sees the packet.
            let total_length = usize::from(u16_at(ip, 2));
            Captured::AdvertV4(&ip[..total_length])
        }
        0x86dd => {
            let payload = &ip[40..40 + usize::from(u16_at(ip, 4))];
            let (source, destination) = (ipv6_at(ip, 8), ipv6_at(ip, 24));
            match ip[6] {
                IPPROTO_VRRP => Captured::AdvertV6 {
                    source,
                    destination,
                    hop_limit: ip[7],
                    payload,
                },
                IPPROTO_ICMPV6 if payload[0] == ICMPV6_NEIGHBOUR_ADVERT => {
                    Captured::NeighbourAdvert {
                        mac: mac_at(frame, 6),
                        source,
                        target: ipv6_at(payload, 8),
                    }
                }
                next_header => panic!("{context}: IPv6 next header {next_header}, unexpected"),
            }
        }
        ethertype => panic!("{context}: ethertype {ethertype:#06x}, unexpected"),
    }
}

/// A capture that is not there fails the test, saying where it looked for it, rather than
/// passing on nothing.
#[test]
#[should_panic(expected = "capture no-such-capture.pcap not found at")]
fn a_missing_capture_fails_naming_where_it_looked() {
    read_pcap("no-such-capture.pcap");
}
