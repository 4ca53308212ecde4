//! Fragments through the balancer (BPF_PROG_TEST_RUN), IPv4 and IPv6: every fragment of a
//! datagram reaches one real, in order or not. Needs root.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use lb_common::Reason;
use lb_tests::{
    fixture::{BALANCER_MAC, Balancer, XDP_PASS, XDP_TX, check_exact, direct_routed, real_of},
    packet::{CLIENT_MAC, Frame, fragments},
};

const DNS4: usize = 0;
const DNS6: usize = 2;

const CONFIG: &str = "
instance: fragments
interfaces: [{name: lo}]
services:
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    scheduler: rr
    reals: [{address: 192.0.2.21}, {address: 192.0.2.22}, {address: 192.0.2.23}]
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals: [{address: 192.0.2.11}]
  - vip: 2001:db8::100
    port: 53
    protocol: udp
    scheduler: rr
    reals: [{address: 2001:db8::21}, {address: 2001:db8::22}, {address: 2001:db8::23}]
limits: {flows: 4096, services: 16, reals: 64}
";

fn balancer(test: &str) -> Option<Balancer> {
    Balancer::for_test(test, CONFIG)
}

fn reals_of(balancer: &Balancer, service: usize) -> Vec<IpAddr> {
    balancer.state.services[service]
        .reals
        .iter()
        .map(|real| real.config.address)
        .collect()
}

/// A UDP datagram of `len` payload bytes from `client` to the VIP's DNS service, as frames
/// fragmented to 1280-byte packets with IP id `id`.
fn fragmented_query(client: SocketAddr, id: u32, len: usize) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let frame = match client {
        SocketAddr::V4(client) => Frame::udp(client, "192.0.2.100:53".parse().unwrap()),
        SocketAddr::V6(client) => Frame::ipv6_udp(client, "[2001:db8::100]:53".parse().unwrap()),
    }
    .payload(&payload)
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    let pieces = fragments(&frame, 1280, id);
    assert!(pieces.len() >= 2, "{len} bytes make at least two fragments");
    pieces
}

fn client4(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), port))
}

fn client6(port: u16) -> SocketAddr {
    SocketAddr::V6(
        format!("[2001:db8:ffff::7]:{port}")
            .parse::<SocketAddrV6>()
            .unwrap(),
    )
}

#[track_caller]
fn forwarded(balancer: &mut Balancer, name: &str, frame: &[u8], real: IpAddr, reason: Reason) {
    check_exact(
        balancer,
        name,
        frame,
        XDP_TX,
        reason,
        &direct_routed(frame, real),
    );
}

/// First fragment first: it is placed by its flow (scheduled, like any new flow), and the
/// rest follow it; later whole packets of the flow go there too.
fn in_order(balancer: &mut Balancer, family: &str, client: SocketAddr, service: usize) {
    let pieces = fragmented_query(client, 0x1234, 3000);
    let real = balancer.next_scheduled_address(service);
    for (index, piece) in pieces.iter().enumerate() {
        let name = format!("{family}_in_order_fragment_{index}");
        forwarded(balancer, &name, piece, real, Reason::ForwardedFragment);
    }
    // Other flows move the scheduler on; this datagram's flow keeps its real, for whole
    // packets and for its next fragmented datagram.
    for port in 1..4 {
        let other = shifted(client, port);
        assert_eq!(
            balancer
                .run(&fragmented_query(other, 0x2000 + u32::from(port), 2000)[0])
                .action,
            XDP_TX
        );
    }
    let whole = match client {
        SocketAddr::V4(client) => Frame::udp(client, "192.0.2.100:53".parse().unwrap()),
        SocketAddr::V6(client) => Frame::ipv6_udp(client, "[2001:db8::100]:53".parse().unwrap()),
    }
    .payload(b"small")
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    forwarded(
        balancer,
        &format!("{family}_whole_packet_of_the_flow"),
        &whole,
        real,
        Reason::ForwardedTx,
    );
    for (index, piece) in fragmented_query(client, 0x1235, 3000).iter().enumerate() {
        let name = format!("{family}_next_datagram_fragment_{index}");
        forwarded(balancer, &name, piece, real, Reason::ForwardedFragment);
    }
    assert_eq!(
        balancer.service_counters(service).new_flows,
        4,
        "{family}: four flows"
    );
}

fn shifted(client: SocketAddr, by: u16) -> SocketAddr {
    let mut shifted = client;
    shifted.set_port(client.port() + by);
    shifted
}

/// A later fragment first: it is placed by the (source, destination, protocol) hash, and the
/// datagram's other fragments, the first one included, follow it.
fn out_of_order(balancer: &mut Balancer, family: &str, client: SocketAddr, service: usize) {
    let reals = reals_of(balancer, service);
    let mut chosen = Vec::new();
    for id in 0..8u32 {
        let pieces = fragmented_query(client, 0x4000 + id, 3000);
        let last = pieces.last().unwrap();
        let outcome = balancer.run(last);
        assert_eq!(
            outcome.action, XDP_TX,
            "{family} datagram {id}: last fragment"
        );
        let real = real_of(&outcome.frame, &reals);
        chosen.push(real);
        // The others, first included, in reverse order: all to that real.
        for (index, piece) in pieces.iter().enumerate().rev().skip(1) {
            let name = format!("{family}_datagram_{id}_fragment_{index}");
            forwarded(balancer, &name, piece, real, Reason::ForwardedFragment);
        }
    }
    // The hash is of what every datagram between these hosts shares: one real for them all,
    // never a random one.
    assert!(
        chosen.iter().all(|real| *real == chosen[0]),
        "{family}: unmatched fragments of one client went to {chosen:?}"
    );
}

#[test]
fn ipv4_fragments_reach_one_real_in_order_and_out_of_order() {
    let Some(mut balancer) = balancer("ipv4_fragments_reach_one_real_in_order_and_out_of_order")
    else {
        return;
    };
    in_order(&mut balancer, "ipv4", client4(5000), DNS4);
    out_of_order(&mut balancer, "ipv4", client4(6000), DNS4);
    let reasons = balancer.reason_packets();
    assert_eq!(reasons[&Reason::ForwardedFragmentUnmatched], 8);
}

#[test]
fn ipv6_fragments_reach_one_real_in_order_and_out_of_order() {
    let Some(mut balancer) = balancer("ipv6_fragments_reach_one_real_in_order_and_out_of_order")
    else {
        return;
    };
    in_order(&mut balancer, "ipv6", client6(5000), DNS6);
    out_of_order(&mut balancer, "ipv6", client6(6000), DNS6);
    let reasons = balancer.reason_packets();
    assert_eq!(reasons[&Reason::ForwardedFragmentUnmatched], 8);
}

#[test]
fn unmatched_fragments_spread_over_the_reals_by_source() {
    let Some(mut balancer) = balancer("unmatched_fragments_spread_over_the_reals_by_source") else {
        return;
    };
    let reals = reals_of(&balancer, DNS4);
    let mut seen = std::collections::HashSet::new();
    for host in 1..=60u8 {
        let client = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, host), 5000));
        let pieces = fragmented_query(client, 1, 3000);
        let outcome = balancer.run(pieces.last().unwrap());
        assert_eq!(outcome.action, XDP_TX);
        seen.insert(real_of(&outcome.frame, &reals));
    }
    assert_eq!(seen.len(), reals.len(), "60 sources reach every real");
}

#[test]
fn a_new_datagram_reusing_an_id_follows_its_own_flow() {
    let Some(mut balancer) = balancer("a_new_datagram_reusing_an_id_follows_its_own_flow") else {
        return;
    };
    let reals = reals_of(&balancer, DNS4);
    let mut reached = Vec::new();
    // Two flows of one client (different source ports) that the rr schedule gives two
    // different reals, each sending a datagram with IP id 77.
    for port in [7000, 7001] {
        let pieces = fragmented_query(client4(port), 77, 3000);
        let expected = balancer.next_scheduled_address(DNS4);
        let outcome = balancer.run(&pieces[0]);
        assert_eq!(outcome.action, XDP_TX);
        assert_eq!(real_of(&outcome.frame, &reals), expected, "port {port}");
        for piece in &pieces[1..] {
            forwarded(
                &mut balancer,
                "rest",
                piece,
                expected,
                Reason::ForwardedFragment,
            );
        }
        reached.push(expected);
    }
    assert_ne!(reached[0], reached[1], "rr gave the two flows two reals");
}

#[test]
fn fragments_not_for_a_vip_pass() {
    let Some(mut balancer) = balancer("fragments_not_for_a_vip_pass") else {
        return;
    };
    let to_other = Frame::udp(
        "203.0.113.7:5000".parse().unwrap(),
        "192.0.2.2:53".parse().unwrap(),
    )
    .payload(&[0; 3000])
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    let pieces = fragments(&to_other, 1280, 5);
    for (index, piece) in pieces.iter().enumerate().rev() {
        let name = format!("not_a_vip_fragment_{index}");
        check_exact(
            &mut balancer,
            &name,
            piece,
            XDP_PASS,
            Reason::PassNoService,
            piece,
        );
    }
    // The VIP has no TCP service on port 53, but has one on port 80 (the VIP's TCP fragment
    // service): a TCP datagram to port 53 passes whole, its later fragments included.
    let tcp = Frame::tcp(
        "203.0.113.7:5000".parse().unwrap(),
        "192.0.2.100:53".parse().unwrap(),
    )
    .ack()
    .payload(&[0; 3000])
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    for (index, piece) in fragments(&tcp, 1280, 7).iter().enumerate() {
        let name = format!("tcp_to_a_port_without_service_fragment_{index}");
        check_exact(
            &mut balancer,
            &name,
            piece,
            XDP_PASS,
            Reason::PassNoService,
            piece,
        );
    }
    // ICMP is not balanced, fragmented or not.
    let ping = Frame::icmp_echo(Ipv4Addr::new(203, 0, 113, 7), Ipv4Addr::new(192, 0, 2, 100))
        .payload(&[0; 3000])
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .build();
    for (index, piece) in fragments(&ping, 1280, 6).iter().enumerate() {
        let name = format!("icmp_fragment_{index}");
        check_exact(
            &mut balancer,
            &name,
            piece,
            XDP_PASS,
            Reason::PassNotTcpUdp,
            piece,
        );
    }
}

/// The client (of those tried) whose unmatched fragments the hash sends to another real than
/// the one the rr schedule gives its flow, with that flow opened by a whole packet.
fn client_hashed_elsewhere(balancer: &mut Balancer) -> (SocketAddr, IpAddr, IpAddr) {
    let reals = reals_of(balancer, DNS4);
    for host in 1..=40u8 {
        let client = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, host), 6000));
        let whole = Frame::udp(
            match client {
                SocketAddr::V4(client) => client,
                SocketAddr::V6(_) => unreachable!(),
            },
            "192.0.2.100:53".parse().unwrap(),
        )
        .payload(b"small")
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .build();
        let flow_real = balancer.next_scheduled_address(DNS4);
        forwarded(balancer, "whole", &whole, flow_real, Reason::ForwardedTx);
        // Probe the hash with a datagram of another flow of the same host (another port):
        // the hash does not look at ports.
        let probe = fragmented_query(shifted(client, 1000), 0x7000 + u32::from(host), 3000);
        let outcome = balancer.run(probe.last().unwrap());
        assert_eq!(outcome.action, XDP_TX);
        let hashed = real_of(&outcome.frame, &reals);
        if hashed != flow_real {
            return (client, flow_real, hashed);
        }
    }
    panic!("no client among 40 whose fragments hash away from its flow's real");
}

#[test]
fn a_known_flow_keeps_its_real_when_its_datagram_comes_out_of_order() {
    let Some(mut balancer) =
        balancer("a_known_flow_keeps_its_real_when_its_datagram_comes_out_of_order")
    else {
        return;
    };
    let (client, flow_real, hashed) = client_hashed_elsewhere(&mut balancer);
    let pieces = fragmented_query(client, 0x4242, 3000);
    let last = pieces.len() - 1;
    forwarded(
        &mut balancer,
        "last_fragment_first",
        &pieces[last],
        hashed,
        Reason::ForwardedFragmentUnmatched,
    );
    // The flow's real wins: the connection is never handed to a real that does not have it.
    forwarded(
        &mut balancer,
        "first_fragment",
        &pieces[0],
        flow_real,
        Reason::ForwardedFragment,
    );
    for (index, piece) in pieces.iter().enumerate().take(last).skip(1) {
        let name = format!("middle_fragment_{index}");
        forwarded(
            &mut balancer,
            &name,
            piece,
            flow_real,
            Reason::ForwardedFragment,
        );
    }
}

#[test]
fn a_new_flow_whose_datagram_comes_out_of_order_stays_where_it_went() {
    let Some(mut balancer) =
        balancer("a_new_flow_whose_datagram_comes_out_of_order_stays_where_it_went")
    else {
        return;
    };
    let reals = reals_of(&balancer, DNS4);
    let client = client4(8000);
    let pieces = fragmented_query(client, 0x5151, 3000);
    let outcome = balancer.run(pieces.last().unwrap());
    assert_eq!(outcome.action, XDP_TX);
    let hashed = real_of(&outcome.frame, &reals);
    for (index, piece) in pieces.iter().enumerate().rev().skip(1) {
        let name = format!("fragment_{index}");
        forwarded(
            &mut balancer,
            &name,
            piece,
            hashed,
            Reason::ForwardedFragment,
        );
    }
    // The first fragment recorded the flow on that real: the flow's next packets go there.
    let whole = Frame::udp(
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 8000),
        "192.0.2.100:53".parse().unwrap(),
    )
    .payload(b"small")
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    for _ in 0..3 {
        forwarded(
            &mut balancer,
            "whole_packet_after",
            &whole,
            hashed,
            Reason::ForwardedTx,
        );
    }
    assert_eq!(balancer.service_counters(DNS4).new_flows, 1);

    // Another flow reusing the IP id later, in order, follows its own schedule: the entry
    // now says a first fragment wrote it.
    let mut reached = Vec::new();
    for port in 8001..8004 {
        let expected = balancer.next_scheduled_address(DNS4);
        let reuse = fragmented_query(client4(port), 0x5151, 3000);
        for (index, piece) in reuse.iter().enumerate() {
            let name = format!("port_{port}_fragment_{index}");
            forwarded(
                &mut balancer,
                &name,
                piece,
                expected,
                Reason::ForwardedFragment,
            );
        }
        reached.push(expected);
    }
    reached.sort();
    reached.dedup();
    assert_eq!(reached.len(), 3, "rr gave the three flows three reals");
}
