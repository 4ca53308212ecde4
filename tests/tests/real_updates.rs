//! A real's entry is never seen half-written: its MAC flips between two values in a tight
//! loop on one CPU while the program forwards a known flow to it on another, and every frame
//! leaves with one of the two MACs. Needs root and two CPUs.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use lb_tests::{
    fixture::{BALANCER_MAC, Balancer, XDP_TX, pin_to_current_cpu},
    packet::{Frame, Mac},
    privilege::require_root,
};
use lb_userspace::dataplane::Dataplane as _;

/// MACs that differ in every byte, so any mix of the two is neither.
const OLD_MAC: Mac = [0x02, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa];
const NEW_MAC: Mac = [0x06, 0x55, 0x55, 0x55, 0x55, 0x55];
const FRAMES: usize = 200_000;
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_real_changing_its_mac_is_never_seen_half_written() {
    if !require_root("a_real_changing_its_mac_is_never_seen_half_written") {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        // Forwarding and writing must overlap in time for the test to mean anything.
        panic!("this test needs two CPUs, the machine has {cpus}");
    }
    pin_to_current_cpu();
    let mut balancer = Balancer::load(
        "instance: flip\ninterfaces: [{name: lo}]\nservices:\n  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}\n",
    );
    let segment = || {
        Frame::tcp(
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 40000),
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 80),
        )
        .src_mac([2, 0, 0, 0, 0, 1])
        .dst_mac(BALANCER_MAC)
    };
    // The connection opens, then its data flows while the real's MAC flips.
    assert_eq!(balancer.run(&segment().syn().build()).action, XDP_TX);
    let frame = segment().ack().payload(&[0; 64]).build();
    let (id, entry) = balancer.dataplane.reals().unwrap()[0];
    let mut flipped = 0usize;
    let (outcomes, flips) = balancer.run_during(&frame, FRAMES, LIMIT, |dataplane| {
        let mut next = entry;
        next.mac = if flipped.is_multiple_of(2) {
            NEW_MAC
        } else {
            OLD_MAC
        };
        flipped += 1;
        dataplane.set_real(id, next).expect("writing the real");
    });

    let mut seen = [0usize; 2];
    for (index, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.action, XDP_TX, "frame {index}");
        let mac: Mac = outcome.frame[0..6].try_into().unwrap();
        match mac {
            OLD_MAC => seen[0] += 1,
            NEW_MAC => seen[1] += 1,
            _ => {
                // The starting MAC (from the fixture) is legitimate until the first flip.
                assert!(
                    seen == [0, 0],
                    "frame {index} went to {mac:02x?}, a MAC never configured, after {seen:?} \
                     frames to the configured ones ({flips} flips)"
                )
            }
        }
    }
    eprintln!(
        "{} frames forwarded during {flips} MAC changes: {} to the old MAC, {} to the new",
        outcomes.len(),
        seen[0],
        seen[1]
    );
    assert!(
        seen[0] > 0 && seen[1] > 0 && flips >= 10,
        "the flips must overlap the traffic: {flips} flips, {seen:?}"
    );
}
