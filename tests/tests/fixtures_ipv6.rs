//! IPv6 through the balancer (BPF_PROG_TEST_RUN): services, flows and weights as for IPv4,
//! and each extension header kind that occurs before TCP/UDP. Needs root.

use std::net::{IpAddr, SocketAddrV6};

use lb_common::Reason;
use lb_tests::{
    fixture::{BALANCER_MAC, Balancer, XDP_PASS, XDP_TX, check_exact, direct_routed, real_of},
    packet::{CLIENT_MAC, Frame, truncated},
};

const WEB: usize = 0;
const DNS: usize = 1;

const CONFIG: &str = "
instance: fixtures6
interfaces: [{name: lo}]
services:
  - vip: 2001:db8::100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 2001:db8::11, weight: 1}
      - {address: 2001:db8::12, weight: 2}
      - {address: 2001:db8::13, weight: 3}
  - vip: 2001:db8::100
    port: 53
    protocol: udp
    scheduler: rr
    reals: [{address: 2001:db8::21}, {address: 2001:db8::22}]
limits: {flows: 4096, services: 16, reals: 64}
";

fn balancer(test: &str) -> Option<Balancer> {
    Balancer::for_test(test, CONFIG)
}

fn client(port: u16) -> SocketAddrV6 {
    format!("[2001:db8:ffff::7]:{port}").parse().unwrap()
}

fn vip(port: u16) -> SocketAddrV6 {
    format!("[2001:db8::100]:{port}").parse().unwrap()
}

fn syn(client_port: u16) -> Frame {
    Frame::ipv6_tcp(client(client_port), vip(80))
        .syn()
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
}

fn web_reals() -> Vec<IpAddr> {
    ["2001:db8::11", "2001:db8::12", "2001:db8::13"]
        .iter()
        .map(|addr| addr.parse().unwrap())
        .collect()
}

/// Checks that `frame` goes to the next real of `service`'s schedule with only its MACs
/// changed; returns the real.
#[track_caller]
fn forwarded_to_next(balancer: &mut Balancer, name: &str, frame: &[u8], service: usize) -> IpAddr {
    let real = balancer.next_scheduled_address(service);
    let expected = direct_routed(frame, real);
    check_exact(
        balancer,
        name,
        frame,
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    real
}

#[track_caller]
fn passes(balancer: &mut Balancer, name: &str, frame: &[u8], reason: Reason) {
    check_exact(balancer, name, frame, XDP_PASS, reason, frame);
}

#[test]
fn ipv6_tcp_and_udp_to_a_vip_are_forwarded_and_keep_their_real() {
    let Some(mut balancer) =
        balancer("ipv6_tcp_and_udp_to_a_vip_are_forwarded_and_keep_their_real")
    else {
        return;
    };
    let first = syn(40000).build();
    let real = forwarded_to_next(&mut balancer, "syn", &first, WEB);
    // Other flows move the scheduler on; this flow's packets must not follow it.
    for port in 40001..40006 {
        assert_eq!(balancer.run(&syn(port).build()).action, XDP_TX);
    }
    let data = Frame::ipv6_tcp(client(40000), vip(80))
        .ack()
        .psh()
        .payload(b"GET / HTTP/1.1\r\n\r\n")
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .build();
    check_exact(
        &mut balancer,
        "same_flow_data",
        &data,
        XDP_TX,
        Reason::ForwardedTx,
        &direct_routed(&data, real),
    );
    assert_eq!(balancer.service_counters(WEB).new_flows, 6);
    assert!(balancer.real_counters(WEB, real).packets >= 2);

    let query = Frame::ipv6_udp(client(5353), vip(53))
        .payload(b"query")
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .build();
    forwarded_to_next(&mut balancer, "udp", &query, DNS);
}

#[test]
fn ipv6_weights_hold() {
    let Some(mut balancer) = balancer("ipv6_weights_hold") else {
        return;
    };
    let reals = web_reals();
    let mut per_real = vec![0u32; reals.len()];
    for flow in 0..60u16 {
        let outcome = balancer.run(&syn(41000 + flow).build());
        assert_eq!(outcome.action, XDP_TX);
        let real = real_of(&outcome.frame, &reals);
        per_real[reals.iter().position(|r| *r == real).unwrap()] += 1;
    }
    assert_eq!(
        per_real,
        vec![10, 20, 30],
        "weights 1:2:3 over 60 new flows"
    );
}

#[test]
fn each_extension_header_kind_is_followed_to_the_ports() {
    let Some(mut balancer) = balancer("each_extension_header_kind_is_followed_to_the_ports") else {
        return;
    };
    let cases: Vec<(&str, Frame)> = vec![
        ("hop_by_hop", syn(42000).hop_by_hop(0)),
        ("hop_by_hop_long", syn(42001).hop_by_hop(3)),
        ("destination_options", syn(42002).destination_options(1)),
        ("routing", syn(42003).ipv6_routing(2)),
        // Offset 0 without more fragments: an atomic fragment (RFC 6946), a whole packet.
        (
            "atomic_fragment",
            syn(42004).ipv6_fragment_header(false, 0, 7),
        ),
        (
            "rfc8200_order_chain",
            syn(42005)
                .hop_by_hop(0)
                .destination_options(0)
                .ipv6_routing(2)
                .destination_options(1),
        ),
        (
            "six_headers_the_bound",
            syn(42006)
                .hop_by_hop(0)
                .destination_options(0)
                .ipv6_routing(0)
                .destination_options(0)
                .ipv6_routing(0)
                .destination_options(0),
        ),
    ];
    for (name, frame) in cases {
        forwarded_to_next(&mut balancer, name, &frame.build(), WEB);
    }
}

#[test]
fn ipv6_headers_the_program_does_not_follow_pass_untouched() {
    let Some(mut balancer) = balancer("ipv6_headers_the_program_does_not_follow_pass_untouched")
    else {
        return;
    };
    let seven = syn(43000)
        .hop_by_hop(0)
        .destination_options(0)
        .ipv6_routing(0)
        .destination_options(0)
        .ipv6_routing(0)
        .destination_options(0)
        .destination_options(0);
    let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        (
            "chain_longer_than_the_bound",
            seven.build(),
            Reason::PassIpv6Extensions,
        ),
        (
            "authentication_header",
            syn(43001)
                .ipv6_raw_extension(
                    51,
                    &[
                        6, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                )
                .build(),
            Reason::PassIpv6Extensions,
        ),
        (
            "routing_header_with_segments_left",
            // Next header TCP, length 0, type 0, one segment left: the VIP is a waypoint.
            syn(43009)
                .ipv6_raw_extension(43, &[6, 0, 0, 1, 0, 0, 0, 0])
                .build(),
            Reason::PassIpv6Extensions,
        ),
        (
            "first_fragment_with_options_after_the_fragment_header",
            syn(43010)
                .ipv6_fragment_header(true, 0, 5)
                .destination_options(0)
                .build(),
            Reason::PassIpv6Extensions,
        ),
        (
            "later_fragment_continuing_with_options",
            syn(43011)
                .ipv6_fragment_header(false, 8, 5)
                .destination_options(0)
                .build(),
            Reason::PassIpv6Extensions,
        ),
        (
            "esp",
            syn(43002)
                .ipv6_raw_extension(50, &[0, 0, 0, 1, 0, 0, 0, 1])
                .build(),
            Reason::PassIpv6Extensions,
        ),
        (
            "mobility_header",
            syn(43003)
                .ipv6_raw_extension(135, &[59, 0, 0, 0, 0, 0, 0, 0])
                .build(),
            Reason::PassIpv6Extensions,
        ),
        (
            "no_next_header",
            syn(43004).ipv6_raw_extension(59, &[]).build(),
            Reason::PassNotTcpUdp,
        ),
        (
            "wrong_version",
            {
                let mut frame = syn(43005).build();
                frame[14] = 0x40;
                frame
            },
            Reason::PassMalformed,
        ),
        (
            "jumbogram_length_zero",
            {
                let mut frame = syn(43006).build();
                frame[18..20].copy_from_slice(&[0, 0]);
                frame
            },
            Reason::PassMalformed,
        ),
        (
            "payload_length_past_frame_end",
            {
                let mut frame = syn(43007).build();
                frame[18..20].copy_from_slice(&1000u16.to_be_bytes());
                frame
            },
            Reason::PassTruncated,
        ),
        (
            "extension_header_past_payload_length",
            {
                // The header claims 8 × 8 bytes more than the datagram holds.
                let mut frame = syn(43008).destination_options(0).build();
                frame[54 + 1] = 8;
                frame
            },
            Reason::PassTruncated,
        ),
        (
            "neighbour_solicitation_for_vip",
            Frame::icmpv6_error(
                "2001:db8:ffff::7".parse().unwrap(),
                "2001:db8::100".parse().unwrap(),
                135,
                0,
                0,
                &"2001:db8::100"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            )
            .src_mac(CLIENT_MAC)
            .dst_mac(BALANCER_MAC)
            .build(),
            Reason::PassNotTcpUdp,
        ),
    ];
    for (name, frame, reason) in &cases {
        passes(&mut balancer, name, frame, *reason);
    }
}

#[test]
fn truncated_ipv6_frames_pass_untouched_at_every_length() {
    let Some(mut balancer) = balancer("truncated_ipv6_frames_pass_untouched_at_every_length")
    else {
        return;
    };
    let frames = [
        ("tcp", syn(44000).payload(b"GET /").build(), 14 + 40 + 20),
        (
            "tcp_after_hop_by_hop",
            syn(44001).hop_by_hop(1).build(),
            14 + 40 + 16 + 20,
        ),
        (
            "udp_after_fragment_header",
            Frame::ipv6_udp(client(44002), vip(53))
                .ipv6_fragment_header(false, 0, 9)
                .src_mac(CLIENT_MAC)
                .dst_mac(BALANCER_MAC)
                .build(),
            14 + 40 + 8 + 8,
        ),
    ];
    for (kind, frame, headers) in &frames {
        for len in 14..*headers {
            passes(
                &mut balancer,
                &format!("{kind}_truncated_to_{len}"),
                &truncated(frame, len),
                Reason::PassTruncated,
            );
        }
    }
}
