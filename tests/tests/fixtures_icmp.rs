//! ICMP and ICMPv6 errors through the balancer (BPF_PROG_TEST_RUN): an error about a VIP
//! flow reaches that flow's real when it quotes the real's reply (path-MTU discovery); one
//! that quotes the client's packet, or cannot be placed, passes. Needs root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use lb_common::Reason;
use lb_tests::{
    fixture::{BALANCER_MAC, Balancer, XDP_PASS, XDP_TX, check_exact, direct_routed},
    packet::{
        CLIENT_MAC, Frame, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_TIME_EXCEEDED,
        ICMPV6_DEST_UNREACH, ICMPV6_PACKET_TOO_BIG, ICMPV6_TIME_EXCEEDED, fragments,
    },
    topology::far_client::ROUTER_MAC,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const WEB: usize = 0;
const WEB6: usize = 1;

const CONFIG: &str = "
instance: icmp
interfaces: [{name: lo}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: rr
    reals: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]
  - vip: 2001:db8::100
    port: 80
    protocol: tcp
    scheduler: rr
    reals: [{address: 2001:db8::11}, {address: 2001:db8::12}, {address: 2001:db8::13}]
limits: {flows: 4096, services: 16, reals: 64}
";

fn balancer(test: &str) -> Option<Balancer> {
    Balancer::for_test(test, CONFIG)
}

fn client6() -> Ipv6Addr {
    "2001:db8:ffff::7".parse().unwrap()
}

fn vip6() -> Ipv6Addr {
    "2001:db8::100".parse().unwrap()
}

fn router6() -> Ipv6Addr {
    "2001:db8::fe".parse().unwrap()
}

/// Opens the IPv4 flow client:port → VIP:80 with a SYN; returns the real it went to.
fn open_flow(balancer: &mut Balancer, port: u16) -> IpAddr {
    let real = balancer.next_scheduled_address(WEB);
    let syn = Frame::tcp(SocketAddrV4::new(CLIENT, port), SocketAddrV4::new(VIP, 80))
        .syn()
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .build();
    check_exact(
        balancer,
        "syn",
        &syn,
        XDP_TX,
        Reason::ForwardedTx,
        &direct_routed(&syn, real),
    );
    real
}

fn open_flow6(balancer: &mut Balancer, port: u16) -> IpAddr {
    let real = balancer.next_scheduled_address(WEB6);
    let syn = Frame::ipv6_tcp(
        SocketAddrV6::new(client6(), port, 0, 0),
        SocketAddrV6::new(vip6(), 80, 0, 0),
    )
    .syn()
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    check_exact(
        balancer,
        "syn6",
        &syn,
        XDP_TX,
        Reason::ForwardedTx,
        &direct_routed(&syn, real),
    );
    real
}

/// A real's full-size reply to the client, as a router quotes it: IP header + 8 bytes (the
/// minimum ICMPv4 quotes) or as much as fits (ICMPv6).
fn reply(port: u16) -> Vec<u8> {
    Frame::tcp(SocketAddrV4::new(VIP, 80), SocketAddrV4::new(CLIENT, port))
        .ack()
        .payload(&[0x55; 1400])
        .ip_bytes()
}

fn reply6(port: u16) -> Vec<u8> {
    Frame::ipv6_tcp(
        SocketAddrV6::new(vip6(), 80, 0, 0),
        SocketAddrV6::new(client6(), port, 0, 0),
    )
    .ack()
    .payload(&[0x55; 1400])
    .ip_bytes()
}

fn icmp_to_vip(icmp_type: u8, code: u8, rest: u32, quoted: &[u8]) -> Vec<u8> {
    Frame::icmp_error(ROUTER, VIP, icmp_type, code, rest, quoted)
        .src_mac(ROUTER_MAC)
        .dst_mac(BALANCER_MAC)
        .build()
}

fn icmpv6_to_vip(icmp_type: u8, code: u8, rest: u32, quoted: &[u8]) -> Vec<u8> {
    Frame::icmpv6_error(router6(), vip6(), icmp_type, code, rest, quoted)
        .src_mac(ROUTER_MAC)
        .dst_mac(BALANCER_MAC)
        .build()
}

#[track_caller]
fn reaches(balancer: &mut Balancer, name: &str, frame: &[u8], real: IpAddr) {
    check_exact(
        balancer,
        name,
        frame,
        XDP_TX,
        Reason::ForwardedIcmpError,
        &direct_routed(frame, real),
    );
}

#[track_caller]
fn passes(balancer: &mut Balancer, name: &str, frame: &[u8], reason: Reason) {
    check_exact(balancer, name, frame, XDP_PASS, reason, frame);
}

#[test]
fn icmp_errors_about_a_flow_reach_its_real() {
    let Some(mut balancer) = balancer("icmp_errors_about_a_flow_reach_its_real") else {
        return;
    };
    let real = open_flow(&mut balancer, 40000);
    // Other flows take the other reals: the errors must not follow the scheduler.
    open_flow(&mut balancer, 40001);
    open_flow(&mut balancer, 40002);
    let quote = reply(40000);
    reaches(
        &mut balancer,
        "frag_needed_quoting_the_reply_minimum",
        &icmp_to_vip(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1280, &quote[..28]),
        real,
    );
    reaches(
        &mut balancer,
        "frag_needed_quoting_the_reply_long",
        &icmp_to_vip(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1280, &quote[..548]),
        real,
    );
    reaches(
        &mut balancer,
        "time_exceeded_quoting_the_reply",
        &icmp_to_vip(ICMP_TIME_EXCEEDED, 0, 0, &quote[..28]),
        real,
    );
    // An error about the client's own packet (VIP as destination) is addressed to the
    // client: it is the client's to handle, and passes (a balancer on the client's path
    // routes it on).
    let client_packet = Frame::tcp(SocketAddrV4::new(CLIENT, 40000), SocketAddrV4::new(VIP, 80))
        .ack()
        .ip_bytes();
    let about_client_packet = Frame::icmp_error(
        ROUTER,
        CLIENT,
        ICMP_DEST_UNREACH,
        1,
        0,
        &client_packet[..28],
    )
    .src_mac(ROUTER_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    passes(
        &mut balancer,
        "host_unreachable_quoting_the_client_packet",
        &about_client_packet,
        Reason::PassNoService,
    );
    // An error quoting the reply but not addressed to its source (the VIP) is not an error
    // any router sends.
    let misaddressed = Frame::icmp_error(
        ROUTER,
        CLIENT,
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        1280,
        &quote[..28],
    )
    .src_mac(ROUTER_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    passes(
        &mut balancer,
        "error_not_addressed_to_the_quoted_source",
        &misaddressed,
        Reason::PassIcmpBadQuote,
    );
    let counters = balancer.service_counters(WEB);
    assert_eq!(counters.new_flows, 3, "errors make no flows");
}

#[test]
fn icmpv6_errors_about_a_flow_reach_its_real() {
    let Some(mut balancer) = balancer("icmpv6_errors_about_a_flow_reach_its_real") else {
        return;
    };
    let real = open_flow6(&mut balancer, 40000);
    open_flow6(&mut balancer, 40001);
    open_flow6(&mut balancer, 40002);
    let quote = reply6(40000);
    // Packet too big quotes as much of the packet as fits in 1280 bytes.
    reaches(
        &mut balancer,
        "packet_too_big",
        &icmpv6_to_vip(ICMPV6_PACKET_TOO_BIG, 0, 1280, &quote[..1232]),
        real,
    );
    reaches(
        &mut balancer,
        "packet_too_big_short_quote",
        &icmpv6_to_vip(ICMPV6_PACKET_TOO_BIG, 0, 1280, &quote[..48]),
        real,
    );
    reaches(
        &mut balancer,
        "destination_unreachable",
        &icmpv6_to_vip(ICMPV6_DEST_UNREACH, 3, 0, &quote[..48]),
        real,
    );
    reaches(
        &mut balancer,
        "time_exceeded",
        &icmpv6_to_vip(ICMPV6_TIME_EXCEEDED, 0, 0, &quote[..48]),
        real,
    );
}

#[test]
fn icmp_errors_that_cannot_be_placed_pass() {
    let Some(mut balancer) = balancer("icmp_errors_that_cannot_be_placed_pass") else {
        return;
    };
    open_flow(&mut balancer, 40000);
    open_flow6(&mut balancer, 40000);
    let quote = reply(40000);
    let unknown_flow = reply(49999);
    let mut bad_version = quote.clone();
    bad_version[0] = 0x55;
    let mut quoted_icmp = quote.clone();
    quoted_icmp[9] = 1;
    let mut quoted_later_fragment = quote.clone();
    quoted_later_fragment[6..8].copy_from_slice(&0x00b9u16.to_be_bytes());
    let not_a_vip = Frame::tcp(
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 22),
        SocketAddrV4::new(CLIENT, 40000),
    )
    .ack()
    .ip_bytes();
    let quote_with_hop_by_hop = Frame::ipv6_tcp(
        SocketAddrV6::new(vip6(), 80, 0, 0),
        SocketAddrV6::new(client6(), 40000, 0, 0),
    )
    .hop_by_hop(0)
    .ack()
    .ip_bytes();
    let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        (
            "unknown_flow",
            icmp_to_vip(
                ICMP_DEST_UNREACH,
                ICMP_FRAG_NEEDED,
                1280,
                &unknown_flow[..28],
            ),
            Reason::PassIcmpNoFlow,
        ),
        (
            "quote_without_ports",
            icmp_to_vip(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1280, &quote[..24]),
            Reason::PassIcmpBadQuote,
        ),
        (
            "quote_only_an_ip_header",
            icmp_to_vip(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1280, &quote[..20]),
            Reason::PassIcmpBadQuote,
        ),
        (
            "empty_quote",
            icmp_to_vip(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1280, &[]),
            Reason::PassIcmpBadQuote,
        ),
        (
            "garbage_version",
            icmp_to_vip(
                ICMP_DEST_UNREACH,
                ICMP_FRAG_NEEDED,
                1280,
                &bad_version[..28],
            ),
            Reason::PassIcmpBadQuote,
        ),
        (
            "quoted_icmp",
            icmp_to_vip(
                ICMP_DEST_UNREACH,
                ICMP_FRAG_NEEDED,
                1280,
                &quoted_icmp[..28],
            ),
            Reason::PassIcmpBadQuote,
        ),
        (
            "quoted_later_fragment",
            icmp_to_vip(
                ICMP_DEST_UNREACH,
                ICMP_FRAG_NEEDED,
                1280,
                &quoted_later_fragment[..28],
            ),
            Reason::PassIcmpBadQuote,
        ),
        (
            "about_the_balancer_own_traffic",
            Frame::icmp_error(
                ROUTER,
                Ipv4Addr::new(192, 0, 2, 2),
                ICMP_DEST_UNREACH,
                ICMP_FRAG_NEEDED,
                1280,
                &not_a_vip[..28],
            )
            .src_mac(ROUTER_MAC)
            .dst_mac(BALANCER_MAC)
            .build(),
            Reason::PassNoService,
        ),
        (
            "echo_request_to_vip",
            Frame::icmp_echo(CLIENT, VIP)
                .src_mac(CLIENT_MAC)
                .dst_mac(BALANCER_MAC)
                .build(),
            Reason::PassNotTcpUdp,
        ),
        (
            "unknown_flow_v6",
            icmpv6_to_vip(ICMPV6_PACKET_TOO_BIG, 0, 1280, &reply6(49999)[..48]),
            Reason::PassIcmpNoFlow,
        ),
        (
            "quote_without_ports_v6",
            icmpv6_to_vip(ICMPV6_PACKET_TOO_BIG, 0, 1280, &reply6(40000)[..44]),
            Reason::PassIcmpBadQuote,
        ),
        (
            "garbage_v6",
            icmpv6_to_vip(ICMPV6_PACKET_TOO_BIG, 0, 1280, &[0xff; 48]),
            Reason::PassIcmpBadQuote,
        ),
        (
            // Not followed a second time: errors about such packets are rare.
            "quote_with_an_extension_header_v6",
            icmpv6_to_vip(ICMPV6_PACKET_TOO_BIG, 0, 1280, &quote_with_hop_by_hop[..56]),
            Reason::PassIcmpBadQuote,
        ),
    ];
    for (name, frame, reason) in &cases {
        passes(&mut balancer, name, frame, *reason);
    }
}

#[test]
fn an_icmp_error_that_is_itself_fragmented_passes() {
    let Some(mut balancer) = balancer("an_icmp_error_that_is_itself_fragmented_passes") else {
        return;
    };
    open_flow(&mut balancer, 40000);
    let error = Frame::icmp_error(
        ROUTER,
        VIP,
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        1280,
        &reply(40000)[..1400],
    )
    .src_mac(ROUTER_MAC)
    .dst_mac(BALANCER_MAC)
    .build();
    for (index, piece) in fragments(&error, 576, 3).iter().enumerate() {
        passes(
            &mut balancer,
            &format!("icmp_error_fragment_{index}"),
            piece,
            Reason::PassNotTcpUdp,
        );
    }
}
