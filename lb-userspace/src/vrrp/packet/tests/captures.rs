//! Every frame of the three captures: each advert parses to what the captures' README
//! describes and re-emits to the same bytes, each gratuitous ARP and neighbour advertisement is
//! what our builders make from its MAC and addresses, and the counts are asserted, so that an
//! empty or different capture cannot pass.

use std::{collections::BTreeMap, net::IpAddr};

use super::pcap::{Captured, classify, read_pcap};
use super::*;

/// What a capture holds, counted.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    /// (source, destination, priority) → adverts.
    adverts: BTreeMap<(IpAddr, IpAddr, u8), usize>,
    /// Sender MAC → frames.
    gratuitous_arps: BTreeMap<[u8; 6], usize>,
    neighbour_adverts: BTreeMap<[u8; 6], usize>,
    peer_arps: usize,
}

/// The priority each router advertises while it runs; 0 is the advert of a graceful stop.
fn configured_priority(source: IpAddr) -> u8 {
    match source {
        IpAddr::V4(ROUTER_1) | IpAddr::V6(ROUTER_1_LINK_LOCAL) => 150,
        IpAddr::V4(ROUTER_2) | IpAddr::V6(ROUTER_2_LINK_LOCAL) => 100,
        other => panic!("advert from {other}, not one of the two routers"),
    }
}

/// Checks every frame of a capture, and counts them: each advert parses to what the README
/// describes and re-emits to the same bytes; each gratuitous ARP and neighbour advertisement
/// is what our builders make from its MAC and addresses.
fn check_capture(name: &str, interval_cs: u16) -> Tally {
    let mut tally = Tally::default();
    for (index, frame) in read_pcap(name).iter().enumerate() {
        let context = format!("{name}: frame {}", index + 1);
        let (source, destination, advert, payload) = match classify(frame, name, index + 1) {
            Captured::AdvertV4(packet) => {
                let (source, destination, advert) = parse_ipv4_packet(packet)
                    .unwrap_or_else(|e| panic!("{context}: {e}: {packet:02x?}"));
                let header_length = usize::from(packet[0] & 0x0f) * 4;
                let payload = &packet[header_length..];
                assert_eq!(advert.vrid, VRID_V4, "{context}");
                assert_eq!(advert.addresses, [IpAddr::V4(VIP_V4)], "{context}");
                (source.into(), destination.into(), advert, payload)
            }
            Captured::AdvertV6 {
                source,
                destination,
                hop_limit,
                payload,
            } => {
                check_hop_limit(hop_limit).unwrap_or_else(|e| panic!("{context}: {e}"));
                let advert = Advert::parse(payload, source.into(), destination.into())
                    .unwrap_or_else(|e| panic!("{context}: {e}: {payload:02x?}"));
                assert_eq!(destination, MULTICAST_V6, "{context}");
                assert_eq!(advert.vrid, VRID_V6, "{context}");
                assert_eq!(advert.addresses, [IpAddr::V6(VIP_V6)], "{context}");
                (source.into(), destination.into(), advert, payload)
            }
            Captured::GratuitousArp { mac, address } => {
                assert_eq!(address, VIP_V4, "{context}");
                assert_eq!(gratuitous_arp(mac, VIP_V4), *frame, "{context}");
                *tally.gratuitous_arps.entry(mac).or_default() += 1;
                continue;
            }
            Captured::NeighbourAdvert {
                mac,
                source,
                target,
            } => {
                // keepalived sends it from the VIP itself, not from a link-local address.
                assert_eq!(source, VIP_V6, "{context}");
                assert_eq!(target, VIP_V6, "{context}");
                assert_eq!(
                    unsolicited_neighbour_advert(mac, VIP_V6, VIP_V6),
                    *frame,
                    "{context}"
                );
                *tally.neighbour_adverts.entry(mac).or_default() += 1;
                continue;
            }
            Captured::PeerArp => {
                tally.peer_arps += 1;
                continue;
            }
        };
        assert_eq!(advert.max_advert_interval_cs, interval_cs, "{context}");
        assert!(
            advert.priority == configured_priority(source) || advert.priority == 0,
            "{context}: priority {} from {source}",
            advert.priority
        );
        assert_eq!(
            advert.emit(source, destination),
            payload,
            "{context}: {advert:?}"
        );
        *tally
            .adverts
            .entry((source, destination, advert.priority))
            .or_default() += 1;
    }
    tally
}

/// Both routers in both families, multicast: `runs` adverts at each one's priority, and one
/// priority-0 advert each on a graceful stop.
fn multicast_adverts(
    runs_router_1: usize,
    runs_router_2: usize,
) -> BTreeMap<(IpAddr, IpAddr, u8), usize> {
    let v4 = IpAddr::V4(MULTICAST_V4);
    let v6 = IpAddr::V6(MULTICAST_V6);
    let mut adverts = BTreeMap::new();
    for (source, destination) in [
        (IpAddr::V4(ROUTER_1), v4),
        (IpAddr::V6(ROUTER_1_LINK_LOCAL), v6),
    ] {
        adverts.insert((source, destination, 150), runs_router_1);
        adverts.insert((source, destination, 0), 1);
    }
    for (source, destination) in [
        (IpAddr::V4(ROUTER_2), v4),
        (IpAddr::V6(ROUTER_2_LINK_LOCAL), v6),
    ] {
        adverts.insert((source, destination, 100), runs_router_2);
        adverts.insert((source, destination, 0), 1);
    }
    adverts
}

#[test]
fn every_frame_of_the_1s_multicast_capture() {
    let tally = check_capture("keepalived-v3-mcast-adv1s.pcap", 100);
    // Router 2 took over 5 times and router 1 twice, each time 5 frames per address at once
    // and 5 more after 5 s.
    let expected = Tally {
        adverts: multicast_adverts(8, 18),
        gratuitous_arps: BTreeMap::from([(ROUTER_1_MAC, 10), (ROUTER_2_MAC, 25)]),
        neighbour_adverts: BTreeMap::from([(ROUTER_1_MAC, 10), (ROUTER_2_MAC, 25)]),
        peer_arps: 0,
    };
    assert_eq!(tally, expected);
}

#[test]
fn every_frame_of_the_100ms_multicast_capture() {
    let tally = check_capture("keepalived-v3-mcast-adv100ms.pcap", 10);
    let expected = Tally {
        adverts: multicast_adverts(134, 171),
        gratuitous_arps: BTreeMap::from([(ROUTER_1_MAC, 20), (ROUTER_2_MAC, 25)]),
        neighbour_adverts: BTreeMap::from([(ROUTER_1_MAC, 20), (ROUTER_2_MAC, 25)]),
        peer_arps: 0,
    };
    assert_eq!(tally, expected);
}

#[test]
fn every_frame_of_the_unicast_capture() {
    let tally = check_capture("keepalived-v3-unicast-adv1s.pcap", 100);
    let (router_1, router_2) = (IpAddr::V4(ROUTER_1), IpAddr::V4(ROUTER_2));
    let expected = Tally {
        adverts: BTreeMap::from([
            ((router_1, router_2, 150), 3),
            ((router_1, router_2, 0), 1),
            ((router_2, router_1, 100), 7),
            ((router_2, router_1, 0), 1),
        ]),
        gratuitous_arps: BTreeMap::from([(ROUTER_1_MAC, 5), (ROUTER_2_MAC, 10)]),
        neighbour_adverts: BTreeMap::new(),
        // Each peer asks for the other's MAC once, and is answered.
        peer_arps: 4,
    };
    assert_eq!(tally, expected);
}
