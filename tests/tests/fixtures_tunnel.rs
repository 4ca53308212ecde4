//! Tunnel forwarding through the balancer (BPF_PROG_TEST_RUN), byte for byte: IPIP and GUE
//! of every family pair, and ICMP packet-too-big for what no longer fits once encapsulated.
//! Needs root. The config and frame helpers are `lb_tests::forwarding`'s.

use std::net::IpAddr;

use lb_common::{PROTO_UDP, Reason};
use lb_tests::{
    fixture::{BALANCER_V4, BALANCER_V6, Balancer, XDP_DROP, XDP_TX, check_exact, loopback},
    forwarding::{
        CLIENT4, CLIENT6, CONFIG, VIP4, VIP6, flow_key, from_client, gue_source_port, to_client,
        to_next_hop, v4, v6,
    },
    packet::{
        Frame, GUE_PORT, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMPV6_PACKET_TOO_BIG, gue, ipip,
    },
    privilege::require_root,
};

fn balancer(test: &str) -> Option<Balancer> {
    Balancer::for_test(test, CONFIG)
}

#[track_caller]
fn tunnelled(balancer: &mut Balancer, name: &str, frame: &[u8], expected: &[u8]) {
    check_exact(balancer, name, frame, XDP_TX, Reason::ForwardedTx, expected);
}

#[test]
fn ipip_carries_the_packet_untouched_for_every_family_pair() {
    let Some(mut balancer) = balancer("ipip_carries_the_packet_untouched_for_every_family_pair")
    else {
        return;
    };
    let real4: IpAddr = "198.51.100.11".parse().unwrap();
    let syn = Frame::tcp(v4(CLIENT4, 40000), v4(VIP4, 80))
        .syn()
        .dont_fragment()
        .tos(0xb9);
    let expected = to_next_hop(&ipip(BALANCER_V4.into(), real4, &syn.ip_bytes()), real4);
    tunnelled(&mut balancer, "4in4", &from_client(syn.clone()), &expected);
    // A known flow's next segment goes the same way.
    let ack = Frame::tcp(v4(CLIENT4, 40000), v4(VIP4, 80))
        .ack()
        .dont_fragment();
    let expected = to_next_hop(&ipip(BALANCER_V4.into(), real4, &ack.ip_bytes()), real4);
    tunnelled(
        &mut balancer,
        "4in4, known flow",
        &from_client(ack),
        &expected,
    );

    let real6: IpAddr = "2001:db8::11".parse().unwrap();
    let syn = Frame::ipv6_tcp(v6(CLIENT6, 40000), v6(VIP6, 80))
        .syn()
        .traffic_class(0x2e);
    let expected = to_next_hop(&ipip(BALANCER_V6.into(), real6, &syn.ip_bytes()), real6);
    tunnelled(&mut balancer, "6in6", &from_client(syn), &expected);

    let real6: IpAddr = "2001:db8::12".parse().unwrap();
    let syn = Frame::tcp(v4(CLIENT4, 40001), v4(VIP4, 81))
        .syn()
        .dont_fragment()
        .ttl(17);
    let expected = to_next_hop(&ipip(BALANCER_V6.into(), real6, &syn.ip_bytes()), real6);
    tunnelled(&mut balancer, "4in6", &from_client(syn), &expected);

    let real4: IpAddr = "198.51.100.12".parse().unwrap();
    let syn = Frame::ipv6_tcp(v6(CLIENT6, 40001), v6(VIP6, 81)).syn();
    let expected = to_next_hop(&ipip(BALANCER_V4.into(), real4, &syn.ip_bytes()), real4);
    tunnelled(&mut balancer, "6in4", &from_client(syn), &expected);
}

#[test]
fn a_vlan_tag_is_dropped_when_tunnelling_to_an_untagged_real() {
    let Some(mut balancer) = balancer("a_vlan_tag_is_dropped_when_tunnelling_to_an_untagged_real")
    else {
        return;
    };
    let real4: IpAddr = "198.51.100.11".parse().unwrap();
    let syn = Frame::tcp(v4(CLIENT4, 40100), v4(VIP4, 80))
        .syn()
        .dont_fragment();
    let expected = to_next_hop(&ipip(BALANCER_V4.into(), real4, &syn.ip_bytes()), real4);
    tunnelled(
        &mut balancer,
        "tagged 4in4",
        &from_client(syn.vlan(7)),
        &expected,
    );
}

#[test]
fn gue_puts_a_udp_header_with_a_hashed_source_port_between() {
    let Some(mut balancer) = balancer("gue_puts_a_udp_header_with_a_hashed_source_port_between")
    else {
        return;
    };
    for client_port in [40000, 40001, 50000] {
        let (client, vip) = (v4(CLIENT4, client_port), v4(VIP4, 53));
        let query = Frame::udp(client, vip).payload(b"query").dont_fragment();
        let real: IpAddr = "198.51.100.13".parse().unwrap();
        let sport = gue_source_port(&flow_key(client.into(), vip.into(), PROTO_UDP));
        let expected = to_next_hop(
            &gue(BALANCER_V4.into(), real, sport, GUE_PORT, &query.ip_bytes()),
            real,
        );
        tunnelled(
            &mut balancer,
            "GUE over IPv4",
            &from_client(query),
            &expected,
        );
    }
    let (client, vip) = (v6(CLIENT6, 40000), v6(VIP6, 53));
    let query = Frame::ipv6_udp(client, vip).payload(b"query");
    let real: IpAddr = "2001:db8::13".parse().unwrap();
    let sport = gue_source_port(&flow_key(client.into(), vip.into(), PROTO_UDP));
    let expected = to_next_hop(
        &gue(BALANCER_V6.into(), real, sport, GUE_PORT, &query.ip_bytes()),
        real,
    );
    tunnelled(
        &mut balancer,
        "GUE over IPv6",
        &from_client(query),
        &expected,
    );
}

/// The balancer's interface with a 1500-byte MTU: a 1500-byte packet no longer fits once
/// encapsulated.
fn balancer_with_mtu_1500(test: &str) -> Option<Balancer> {
    if !require_root(test) {
        return None;
    }
    lb_tests::fixture::pin_to_current_cpu();
    let mut interface = loopback();
    interface.mtu = 1500;
    Some(Balancer::load_with_interfaces(CONFIG, vec![interface]))
}

#[test]
fn too_big_once_encapsulated_is_answered_with_packet_too_big() {
    let Some(mut balancer) =
        balancer_with_mtu_1500("too_big_once_encapsulated_is_answered_with_packet_too_big")
    else {
        return;
    };
    let (client, vip) = (v4(CLIENT4, 41000), v4(VIP4, 80));
    let syn = Frame::tcp(client, vip).syn().dont_fragment();
    balancer.run(&from_client(syn));
    // 1500 bytes of IP: 20 more for IPIP do not fit 1500.
    let big = Frame::tcp(client, vip)
        .ack()
        .dont_fragment()
        .payload(&[0x5a; 1460]);
    let ip = big.ip_bytes();
    assert_eq!(ip.len(), 1500);
    let expected = to_client(
        Frame::icmp_error(
            VIP4,
            CLIENT4,
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            1480,
            &ip[..256],
        )
        .tos(0xc0)
        .ttl(64),
    );
    check_exact(
        &mut balancer,
        "IPv4, DF: fragmentation needed, MTU 1480",
        &from_client(big),
        XDP_TX,
        Reason::TxIcmpTooBig,
        &expected,
    );
    // One that fits goes through.
    let fits = Frame::tcp(client, vip)
        .ack()
        .dont_fragment()
        .payload(&[0x5a; 1440]);
    let real: IpAddr = "198.51.100.11".parse().unwrap();
    let expected = to_next_hop(&ipip(BALANCER_V4.into(), real, &fits.ip_bytes()), real);
    tunnelled(
        &mut balancer,
        "1480 bytes fit",
        &from_client(fits),
        &expected,
    );
    // Without DF a router would fragment; the program cannot, and drops it.
    let no_df = Frame::tcp(client, vip).ack().payload(&[0x5a; 1460]);
    check_exact(
        &mut balancer,
        "IPv4 without DF",
        &from_client(no_df),
        XDP_DROP,
        Reason::DropTooBig,
        &[],
    );

    let (client, vip) = (v6(CLIENT6, 41000), v6(VIP6, 80));
    balancer.run(&from_client(Frame::ipv6_tcp(client, vip).syn()));
    let big = Frame::ipv6_tcp(client, vip).ack().payload(&[0x5a; 1440]);
    let ip = big.ip_bytes();
    assert_eq!(ip.len(), 1500);
    let expected = to_client(
        Frame::icmpv6_error(VIP6, CLIENT6, ICMPV6_PACKET_TOO_BIG, 0, 1460, &ip[..256]).ttl(64),
    );
    check_exact(
        &mut balancer,
        "IPv6: packet too big, MTU 1460",
        &from_client(big),
        XDP_TX,
        Reason::TxIcmpTooBig,
        &expected,
    );
}
