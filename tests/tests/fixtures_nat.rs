//! NAT and full NAT through the balancer (BPF_PROG_TEST_RUN), byte for byte: NAT with a port
//! mapping and its replies, full NAT and its replies, fragmented replies, ICMP errors about
//! replies translated for the real, replies keeping their flow alive, and the refusals.
//! Needs root. The config and frame helpers are `lb_tests::forwarding`'s.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
};

use lb_common::{PROTO_TCP, PROTO_UDP, Reason, Reply};
use lb_tests::{
    fixture::{
        BALANCER_MAC, BALANCER_V4, BALANCER_V6, Balancer, XDP_DROP, XDP_PASS, XDP_TX, check_exact,
    },
    forwarding::{
        CLIENT4, CLIENT6, CONFIG, VIP4, VIP6, first_local_port, flow_key, from_client, from_real,
        to_client, to_next_hop, v4, v6,
    },
    packet::{
        CLIENT_MAC, Frame, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMPV6_PACKET_TOO_BIG, TPID_8021AD,
        fragments,
    },
    privilege::require_root,
};
use lb_userspace::dataplane::batch;

fn balancer(test: &str) -> Option<Balancer> {
    Balancer::for_test(test, CONFIG)
}

#[test]
fn nat_maps_the_port_and_translates_replies_back() {
    let Some(mut balancer) = balancer("nat_maps_the_port_and_translates_replies_back") else {
        return;
    };
    let real: IpAddr = "198.51.100.21".parse().unwrap();
    let real4 = v4("198.51.100.21".parse().unwrap(), 8080);
    let (client, vip) = (v4(CLIENT4, 42000), v4(VIP4, 8000));
    let syn = Frame::tcp(client, vip).syn().seq(1000);
    let expected = to_next_hop(&Frame::tcp(client, real4).syn().seq(1000).ip_bytes(), real);
    check_exact(
        &mut balancer,
        "NAT, SYN",
        &from_client(syn),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let reply = Frame::tcp(real4, client)
        .syn()
        .ack()
        .seq(5000)
        .ack_number(1001);
    let expected = to_client(
        Frame::tcp(vip, client)
            .syn()
            .ack()
            .seq(5000)
            .ack_number(1001),
    );
    check_exact(
        &mut balancer,
        "NAT, SYN-ACK back",
        &from_real(reply, real),
        XDP_TX,
        Reason::ForwardedReply,
        &expected,
    );
    let data = Frame::tcp(client, vip)
        .ack()
        .psh()
        .payload(b"GET / HTTP/1.0\r\n\r\n");
    let expected = to_next_hop(
        &Frame::tcp(client, real4)
            .ack()
            .psh()
            .payload(b"GET / HTTP/1.0\r\n\r\n")
            .ip_bytes(),
        real,
    );
    check_exact(
        &mut balancer,
        "NAT, data",
        &from_client(data),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );

    // IPv6.
    let real: IpAddr = "2001:db8::21".parse().unwrap();
    let real6 = v6("2001:db8::21".parse().unwrap(), 8080);
    let (client, vip) = (v6(CLIENT6, 42000), v6(VIP6, 8000));
    let syn = Frame::ipv6_tcp(client, vip).syn();
    let expected = to_next_hop(&Frame::ipv6_tcp(client, real6).syn().ip_bytes(), real);
    check_exact(
        &mut balancer,
        "NAT6, SYN",
        &from_client(syn),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let reply = Frame::ipv6_tcp(real6, client).syn().ack();
    let expected = to_client(Frame::ipv6_tcp(vip, client).syn().ack());
    check_exact(
        &mut balancer,
        "NAT6, SYN-ACK back",
        &from_real(reply, real),
        XDP_TX,
        Reason::ForwardedReply,
        &expected,
    );

    // A packet from the real that is no flow's reply passes.
    let stray = Frame::tcp(real4, v4(CLIENT4, 42999)).ack();
    let frame = from_real(stray, "198.51.100.21".parse().unwrap());
    check_exact(
        &mut balancer,
        "not a reply",
        &frame,
        XDP_PASS,
        Reason::PassNoService,
        &frame,
    );
}

#[test]
fn nat_udp_keeps_a_zero_checksum_and_updates_a_real_one() {
    let Some(mut balancer) = balancer("nat_udp_keeps_a_zero_checksum_and_updates_a_real_one")
    else {
        return;
    };
    let real: IpAddr = "198.51.100.21".parse().unwrap();
    let real4 = v4("198.51.100.21".parse().unwrap(), 53);
    let (client, vip) = (v4(CLIENT4, 43000), v4(VIP4, 5353));
    let query = Frame::udp(client, vip).payload(b"query");
    let expected = to_next_hop(
        &Frame::udp(client, real4).payload(b"query").ip_bytes(),
        real,
    );
    check_exact(
        &mut balancer,
        "UDP",
        &from_client(query),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let query = Frame::udp(client, vip).payload(b"again").l4_checksum(0);
    let expected = to_next_hop(
        &Frame::udp(client, real4)
            .payload(b"again")
            .l4_checksum(0)
            .ip_bytes(),
        real,
    );
    check_exact(
        &mut balancer,
        "UDP, no checksum",
        &from_client(query),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let answer = Frame::udp(real4, client).payload(b"answer");
    let expected = to_client(Frame::udp(vip, client).payload(b"answer"));
    check_exact(
        &mut balancer,
        "UDP answer back",
        &from_real(answer, real),
        XDP_TX,
        Reason::ForwardedReply,
        &expected,
    );
}

#[test]
fn nat_refuses_a_flow_whose_reply_another_live_flow_holds() {
    let Some(mut balancer) = balancer("nat_refuses_a_flow_whose_reply_another_live_flow_holds")
    else {
        return;
    };
    // Ports 8000 and 8001 both go to 198.51.100.21:8080: one client port can have only one
    // of them at a time, or the real's replies would be ambiguous.
    let client = v4(CLIENT4, 44000);
    let first = from_client(Frame::tcp(client, v4(VIP4, 8000)).syn());
    assert_eq!(balancer.run(&first).action, XDP_TX);
    let second = from_client(Frame::tcp(client, v4(VIP4, 8001)).syn());
    check_exact(
        &mut balancer,
        "same reply 4-tuple",
        &second,
        XDP_DROP,
        Reason::DropNatNoPort,
        &[],
    );
}

#[test]
fn full_nat_gives_each_flow_a_local_address_and_port() {
    let Some(mut balancer) = balancer("full_nat_gives_each_flow_a_local_address_and_port") else {
        return;
    };
    let real: IpAddr = "198.51.100.31".parse().unwrap();
    let real4 = v4("198.51.100.31".parse().unwrap(), 8080);
    let (client, vip) = (v4(CLIENT4, 45000), v4(VIP4, 9000));
    let local = v4(
        BALANCER_V4,
        first_local_port(&flow_key(client.into(), vip.into(), PROTO_TCP)),
    );
    let syn = Frame::tcp(client, vip).syn().seq(7);
    let expected = to_next_hop(&Frame::tcp(local, real4).syn().seq(7).ip_bytes(), real);
    check_exact(
        &mut balancer,
        "full NAT, SYN",
        &from_client(syn),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let ack = Frame::tcp(client, vip).ack().seq(8);
    let expected = to_next_hop(&Frame::tcp(local, real4).ack().seq(8).ip_bytes(), real);
    check_exact(
        &mut balancer,
        "full NAT, known flow",
        &from_client(ack),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let reply = Frame::tcp(real4, local).syn().ack();
    let expected = to_client(Frame::tcp(vip, client).syn().ack());
    check_exact(
        &mut balancer,
        "full NAT, reply",
        &from_real(reply, real),
        XDP_TX,
        Reason::ForwardedReply,
        &expected,
    );

    let real: IpAddr = "2001:db8::31".parse().unwrap();
    let real6 = v6("2001:db8::31".parse().unwrap(), 53);
    let (client, vip) = (v6(CLIENT6, 45000), v6(VIP6, 9000));
    let local = v6(
        BALANCER_V6,
        first_local_port(&flow_key(client.into(), vip.into(), PROTO_UDP)),
    );
    let query = Frame::ipv6_udp(client, vip).payload(b"query");
    let expected = to_next_hop(
        &Frame::ipv6_udp(local, real6).payload(b"query").ip_bytes(),
        real,
    );
    check_exact(
        &mut balancer,
        "full NAT6, UDP",
        &from_client(query),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let answer = Frame::ipv6_udp(real6, local).payload(b"answer");
    let expected = to_client(Frame::ipv6_udp(vip, client).payload(b"answer"));
    check_exact(
        &mut balancer,
        "full NAT6, answer",
        &from_real(answer, real),
        XDP_TX,
        Reason::ForwardedReply,
        &expected,
    );
}

#[test]
fn full_nat_probes_past_a_port_another_flow_holds() {
    let Some(mut balancer) = balancer("full_nat_probes_past_a_port_another_flow_holds") else {
        return;
    };
    let real: IpAddr = "198.51.100.31".parse().unwrap();
    let real4 = v4("198.51.100.31".parse().unwrap(), 8080);
    let (client, vip) = (v4(CLIENT4, 46000), v4(VIP4, 9000));
    let first = first_local_port(&flow_key(client.into(), vip.into(), PROTO_TCP));
    // Another client's flow holds the reply 4-tuple of this flow's first port (its flow is
    // not in the table: gone, or about to be recorded; either way never taken over).
    let held_key = flow_key(real4.into(), v4(BALANCER_V4, first).into(), PROTO_TCP);
    let other = Reply {
        flow: flow_key(v4(CLIENT4, 1).into(), vip.into(), PROTO_TCP),
        real_id: balancer.real_id(9, real),
        ..Reply::default()
    };
    let replies = balancer.sweeper.replies().expect("a replies map");
    batch::update(replies.fd().as_fd(), &[held_key], &[other]).unwrap();

    let next = v4(BALANCER_V4, first + 1);
    let syn = Frame::tcp(client, vip).syn();
    let expected = to_next_hop(&Frame::tcp(next, real4).syn().ip_bytes(), real);
    check_exact(
        &mut balancer,
        "next port",
        &from_client(syn),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    // The held entry is untouched, and the reply to the new port reaches this client.
    let reply = Frame::tcp(real4, next).syn().ack();
    let expected = to_client(Frame::tcp(vip, client).syn().ack());
    check_exact(
        &mut balancer,
        "reply to the next port",
        &from_real(reply, real),
        XDP_TX,
        Reason::ForwardedReply,
        &expected,
    );
}

#[test]
fn a_nat_reply_goes_back_with_the_clients_802_1ad_tag() {
    let Some(mut balancer) = balancer("a_nat_reply_goes_back_with_the_clients_802_1ad_tag") else {
        return;
    };
    let real: IpAddr = "198.51.100.21".parse().unwrap();
    let real4 = v4("198.51.100.21".parse().unwrap(), 8080);
    let (client, vip) = (v4(CLIENT4, 47000), v4(VIP4, 8000));
    let tci = 0x2005; // priority 1, VLAN 5
    let syn = Frame::tcp(client, vip).syn().tag(TPID_8021AD, tci);
    // The real sits on the untagged segment: the tag comes off toward it.
    let expected = to_next_hop(&Frame::tcp(client, real4).syn().ip_bytes(), real);
    check_exact(
        &mut balancer,
        "tagged SYN",
        &from_client(syn),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    let reply = Frame::tcp(real4, client).syn().ack();
    let expected = to_client(Frame::tcp(vip, client).syn().ack().tag(TPID_8021AD, tci));
    check_exact(
        &mut balancer,
        "reply, tagged again",
        &from_real(reply, real),
        XDP_TX,
        Reason::ForwardedReply,
        &expected,
    );
}

/// A NAT service whose UDP flows expire after a second without a packet.
const SHORT_UDP: &str = "
instance: fixtures-fwd-udp
interfaces: [{name: lo}]
services:
  - {vip: 192.0.2.10, port: 5353, protocol: udp, scheduler: rr, forward: nat,
     reals: [{address: 198.51.100.21, port: 53}]}
timeouts: {udp: 1s}
limits: {flows: 1024, services: 4, reals: 8}
";

#[test]
fn replies_keep_their_flow_alive_and_a_gone_flows_reply_passes() {
    if !require_root("replies_keep_their_flow_alive_and_a_gone_flows_reply_passes") {
        return;
    }
    lb_tests::fixture::pin_to_current_cpu();
    let mut balancer = Balancer::load(SHORT_UDP);
    let real: IpAddr = "198.51.100.21".parse().unwrap();
    let real4 = v4("198.51.100.21".parse().unwrap(), 53);
    let (client, vip) = (v4(CLIENT4, 48000), v4(VIP4, 5353));
    let query = from_client(Frame::udp(client, vip).payload(b"subscribe"));
    assert_eq!(balancer.run(&query).action, XDP_TX);
    // The real streams answers for 2.5 s, twice the timeout, while the client says nothing.
    let answer = from_real(Frame::udp(real4, client).payload(b"update"), real);
    let expected = to_client(Frame::udp(vip, client).payload(b"update"));
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        check_exact(
            &mut balancer,
            "answer",
            &answer,
            XDP_TX,
            Reason::ForwardedReply,
            &expected,
        );
    }
    // The client's next datagram finds its flow: no new flow was scheduled.
    let before = balancer.service_counters(0).new_flows;
    assert_eq!(balancer.run(&query).action, XDP_TX);
    assert_eq!(
        balancer.service_counters(0).new_flows,
        before,
        "the flow expired"
    );

    // Once the flow is gone (expired, removed by the sweep), its reply entry translates
    // nothing, even before the sweep removes it too.
    let later = lb_userspace::admin::monotonic_now_ns() + 3_600_000_000_000;
    let report = balancer.sweeper.sweep(later).expect("sweeping");
    assert_eq!(report.removed, 1);
    check_exact(
        &mut balancer,
        "orphaned reply",
        &answer,
        XDP_PASS,
        Reason::PassNoService,
        &answer,
    );
}

#[test]
fn a_fragmented_nat_reply_is_translated_fragment_by_fragment() {
    let Some(mut balancer) = balancer("a_fragmented_nat_reply_is_translated_fragment_by_fragment")
    else {
        return;
    };
    let real: IpAddr = "198.51.100.21".parse().unwrap();
    let real4 = v4("198.51.100.21".parse().unwrap(), 53);
    let (client, vip) = (v4(CLIENT4, 49000), v4(VIP4, 5353));
    let query = from_client(Frame::udp(client, vip).payload(b"big question"));
    assert_eq!(balancer.run(&query).action, XDP_TX);

    let answer: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let sent = from_real(Frame::udp(real4, client).payload(&answer), real);
    let wanted = to_client(Frame::udp(vip, client).payload(&answer));
    let pieces = fragments(&sent, 1280, 0x4242);
    let expected = fragments(&wanted, 1280, 0x4242);
    assert_eq!(pieces.len(), 3);
    for (index, (piece, expected)) in pieces.iter().zip(&expected).enumerate() {
        check_exact(
            &mut balancer,
            &format!("fragment {index}"),
            piece,
            XDP_TX,
            Reason::ForwardedReply,
            expected,
        );
    }
}

#[test]
fn icmp_errors_about_nat_replies_are_translated_for_the_real() {
    let Some(mut balancer) = balancer("icmp_errors_about_nat_replies_are_translated_for_the_real")
    else {
        return;
    };
    let router4 = Ipv4Addr::new(192, 0, 2, 254);
    let to_real = |frame: Frame, real: IpAddr| to_next_hop(&frame.ip_bytes(), real);
    let from_router = |frame: Frame| frame.src_mac(CLIENT_MAC).dst_mac(BALANCER_MAC).build();

    // NAT, IPv4: the reply left as VIP:8000 → client; the real sent it as real:8080 → client.
    let real: IpAddr = "198.51.100.21".parse().unwrap();
    let real4 = v4("198.51.100.21".parse().unwrap(), 8080);
    let (client, vip) = (v4(CLIENT4, 50000), v4(VIP4, 8000));
    assert_eq!(
        balancer
            .run(&from_client(Frame::tcp(client, vip).syn()))
            .action,
        XDP_TX
    );
    let seen = Frame::tcp(vip, client)
        .ack()
        .payload(&[7; 100])
        .dont_fragment()
        .ip_bytes();
    let sent = Frame::tcp(real4, client)
        .ack()
        .payload(&[7; 100])
        .dont_fragment()
        .ip_bytes();
    // A short quote (IP header and 8 bytes) and a long one (the TCP checksum in it).
    for quoted in [28, 60] {
        let error = Frame::icmp_error(
            router4,
            VIP4,
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            1400,
            &seen[..quoted],
        );
        let expected = to_real(
            Frame::icmp_error(
                router4,
                *real4.ip(),
                ICMP_DEST_UNREACH,
                ICMP_FRAG_NEEDED,
                1400,
                &sent[..quoted],
            ),
            real,
        );
        check_exact(
            &mut balancer,
            &format!("NAT, frag-needed quoting {quoted} bytes"),
            &from_router(error),
            XDP_TX,
            Reason::ForwardedIcmpError,
            &expected,
        );
    }

    // Full NAT, IPv4: the real sent its reply to the flow's local address and port.
    let real: IpAddr = "198.51.100.31".parse().unwrap();
    let real4 = v4("198.51.100.31".parse().unwrap(), 8080);
    let (client, vip) = (v4(CLIENT4, 50001), v4(VIP4, 9000));
    let local = v4(
        BALANCER_V4,
        first_local_port(&flow_key(client.into(), vip.into(), PROTO_TCP)),
    );
    assert_eq!(
        balancer
            .run(&from_client(Frame::tcp(client, vip).syn()))
            .action,
        XDP_TX
    );
    let seen = Frame::tcp(vip, client).ack().payload(&[8; 100]).ip_bytes();
    let sent = Frame::tcp(real4, local).ack().payload(&[8; 100]).ip_bytes();
    let error = Frame::icmp_error(
        router4,
        VIP4,
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        1400,
        &seen[..60],
    );
    let expected = to_real(
        Frame::icmp_error(
            router4,
            *real4.ip(),
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            1400,
            &sent[..60],
        ),
        real,
    );
    check_exact(
        &mut balancer,
        "full NAT, frag-needed",
        &from_router(error),
        XDP_TX,
        Reason::ForwardedIcmpError,
        &expected,
    );

    // NAT, IPv6: packet too big, the pseudo-header's destination changing too.
    let router6: Ipv6Addr = "2001:db8::fe".parse().unwrap();
    let real: IpAddr = "2001:db8::21".parse().unwrap();
    let real6 = v6("2001:db8::21".parse().unwrap(), 8080);
    let (client, vip) = (v6(CLIENT6, 50000), v6(VIP6, 8000));
    assert_eq!(
        balancer
            .run(&from_client(Frame::ipv6_tcp(client, vip).syn()))
            .action,
        XDP_TX
    );
    let seen = Frame::ipv6_tcp(vip, client)
        .ack()
        .payload(&[9; 100])
        .ip_bytes();
    let sent = Frame::ipv6_tcp(real6, client)
        .ack()
        .payload(&[9; 100])
        .ip_bytes();
    let error = Frame::icmpv6_error(router6, VIP6, ICMPV6_PACKET_TOO_BIG, 0, 1400, &seen[..100]);
    let expected = to_real(
        Frame::icmpv6_error(
            router6,
            *real6.ip(),
            ICMPV6_PACKET_TOO_BIG,
            0,
            1400,
            &sent[..100],
        ),
        real,
    );
    check_exact(
        &mut balancer,
        "NAT6, packet too big",
        &from_router(error),
        XDP_TX,
        Reason::ForwardedIcmpError,
        &expected,
    );
}

/// A backup that took its master's flows through connection sync translates their replies
/// as the master would: the flows come with their way back (the master's reply entries),
/// and the backup writes the reply entries its program looks for under its own ids (NAT over
/// IPv4, full NAT over IPv4 and IPv6). Without the copy, the backup passes the same replies
/// untranslated. Both programs run on `lo`: the interface by name is the unit tests'.
#[test]
fn a_backup_translates_the_replies_of_flows_synced_from_its_master() {
    let test = "a_backup_translates_the_replies_of_flows_synced_from_its_master";
    let Some(mut master) = balancer(test) else {
        return;
    };
    // The backup has a service of its own first: every id of its differs from the master's.
    let backup_config = CONFIG.replacen(
        "services:\n",
        "services:\n  - {vip: 192.0.2.10, port: 82, protocol: tcp, scheduler: rr, forward: tun,\n     reals: [{address: 198.51.100.14}]}\n",
        1,
    );
    let mut backup = Balancer::load(&backup_config);
    assert_ne!(
        backup.real_id(7, "198.51.100.21".parse().unwrap()),
        master.real_id(6, "198.51.100.21".parse().unwrap()),
        "the test must cross different ids"
    );
    let nat_real: IpAddr = "198.51.100.21".parse().unwrap();
    let nat_real4 = v4("198.51.100.21".parse().unwrap(), 8080);
    let nat_client = v4(CLIENT4, 42000);
    let nat_vip = v4(VIP4, 8000);
    let full_real: IpAddr = "198.51.100.31".parse().unwrap();
    let full_real4 = v4("198.51.100.31".parse().unwrap(), 8080);
    let full_client = v4(CLIENT4, 45000);
    let full_vip = v4(VIP4, 9000);
    let full_local = v4(
        BALANCER_V4,
        first_local_port(&flow_key(full_client.into(), full_vip.into(), PROTO_TCP)),
    );
    let full_real6: IpAddr = "2001:db8::31".parse().unwrap();
    let full_real6_port = v6("2001:db8::31".parse().unwrap(), 53);
    let (client6, vip6) = (v6(CLIENT6, 45000), v6(VIP6, 9000));
    let local6 = v6(
        BALANCER_V6,
        first_local_port(&flow_key(client6.into(), vip6.into(), PROTO_UDP)),
    );
    // The master starts the three flows (and claims their reply entries).
    for (what, frame) in [
        (
            "NAT SYN",
            from_client(Frame::tcp(nat_client, nat_vip).syn()),
        ),
        (
            "full NAT SYN",
            from_client(Frame::tcp(full_client, full_vip).syn()),
        ),
        (
            "full NAT6 query",
            from_client(Frame::ipv6_udp(client6, vip6).payload(b"query")),
        ),
    ] {
        assert_eq!(master.run(&frame).action, XDP_TX, "{what} on the master");
    }
    let replies = [
        (
            "NAT SYN-ACK",
            from_real(Frame::tcp(nat_real4, nat_client).syn().ack(), nat_real),
            to_client(Frame::tcp(nat_vip, nat_client).syn().ack()),
        ),
        (
            "full NAT SYN-ACK",
            from_real(Frame::tcp(full_real4, full_local).syn().ack(), full_real),
            to_client(Frame::tcp(full_vip, full_client).syn().ack()),
        ),
        (
            "full NAT6 answer",
            from_real(
                Frame::ipv6_udp(full_real6_port, local6).payload(b"answer"),
                full_real6,
            ),
            to_client(Frame::ipv6_udp(vip6, client6).payload(b"answer")),
        ),
    ];
    for (what, reply, _) in &replies {
        assert_eq!(
            backup.run(reply).action,
            XDP_PASS,
            "{what} on the backup before the copy: it has no reply entry"
        );
    }

    let merged = lb_userspace::sync::copy_every_flow(
        (&master.state, &master.reader),
        (&backup.state, &backup.reader),
    )
    .expect("copies");
    assert_eq!(merged, 3);
    for (what, reply, expected) in &replies {
        check_exact(
            &mut backup,
            &format!("{what} on the backup after the copy"),
            reply,
            XDP_TX,
            Reason::ForwardedReply,
            expected,
        );
    }
    // The client's next packets go on to the same real, full NAT from the same local port.
    let ack = Frame::tcp(full_client, full_vip).ack().seq(8);
    let expected = to_next_hop(
        &Frame::tcp(full_local, full_real4).ack().seq(8).ip_bytes(),
        full_real,
    );
    check_exact(
        &mut backup,
        "full NAT, the client's next segment on the backup",
        &from_client(ack),
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
}
