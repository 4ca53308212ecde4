//! The bench's reference programs do the work the report says they do: the stateless DR
//! program forwards a packet for a service to one of its reals (the same real for the same
//! 5-tuple) and passes everything else untouched; the MAC swap swaps. A ratio against a
//! reference that did less would flatter nobody but the reference.

use std::net::{Ipv4Addr, SocketAddrV4};

use lb_common::PROTO_TCP;
use lb_tests::{
    bench::baselines::{Baselines, MAC_SWAP, STATELESS_DR, StatelessService},
    fixture::{BALANCER_MAC, XDP_PASS, XDP_TX},
    packet::Frame,
    privilege::require_root,
};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const REAL_MACS: [[u8; 6]; 3] = [
    [2, 0, 0, 0, 0, 11],
    [2, 0, 0, 0, 0, 12],
    [2, 0, 0, 0, 0, 13],
];

fn to(port: u16, client_port: u16) -> Vec<u8> {
    Frame::tcp(
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), client_port),
        SocketAddrV4::new(VIP, port),
    )
    .ack()
    .payload(&[0; 16])
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .build()
}

#[test]
fn the_stateless_program_forwards_services_and_passes_the_rest() {
    if !require_root("bench references") {
        return;
    }
    let mut baselines = Baselines::load();
    baselines.add_stateless_service(&StatelessService {
        vip: VIP.into(),
        port: 80,
        protocol: PROTO_TCP,
        real_macs: REAL_MACS.to_vec(),
    });
    let mut reals_seen = std::collections::BTreeSet::new();
    for client_port in 40000..40064 {
        let frame = to(80, client_port);
        let (action, out) = baselines.run(STATELESS_DR, &frame);
        assert_eq!(action, XDP_TX, "a packet for the service is sent back out");
        let real: [u8; 6] = out[..6].try_into().unwrap();
        assert!(REAL_MACS.contains(&real), "to a real: {real:02x?}");
        assert_eq!(out[6..12], BALANCER_MAC, "from the balancer");
        assert_eq!(out[12..], frame[12..], "the IP packet untouched");
        assert_eq!(
            baselines.run(STATELESS_DR, &frame).1,
            out,
            "same flow, same real"
        );
        reals_seen.insert(real);
    }
    assert_eq!(reals_seen.len(), 3, "64 flows reach every real");
    let other_port = to(22, 40000);
    assert_eq!(
        baselines.run(STATELESS_DR, &other_port),
        (XDP_PASS, other_port),
        "not a service: passed untouched"
    );
}

#[test]
fn the_ceiling_swaps_macs_and_transmits() {
    if !require_root("bench references") {
        return;
    }
    let mut baselines = Baselines::load();
    let frame = to(80, 40000);
    let (action, out) = baselines.run(MAC_SWAP, &frame);
    assert_eq!(action, XDP_TX);
    assert_eq!(out[..6], frame[6..12]);
    assert_eq!(out[6..12], frame[..6]);
    assert_eq!(out[12..], frame[12..]);
}
