//! The decapsulation program (`lb_decap`, run by `lbd decap` on tunnel reals) through
//! BPF_PROG_TEST_RUN: IPIP of each family pair and GUE over IPv4 and IPv6 lose their outer
//! headers (the output is exactly the inner packet in the same Ethernet header); tunnel
//! packets that are not for this host or are malformed, and everything that is not tunnel
//! traffic, pass byte for byte. Needs root.

use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};

use lb_common::Reason;
use lb_tests::{
    decap::Decapsulator,
    fixture::XDP_PASS,
    packet::{self, Frame, GUE_PORT, checksum, truncated},
};

const BALANCER4: &str = "192.0.2.1";
const BALANCER6: &str = "2001:db8::1";
const LOCAL4: &str = "192.0.2.2";
const LOCAL6: &str = "2001:db8::2";
const VIP4: &str = "203.0.113.10";
const VIP6: &str = "2001:db8:100::10";

fn ip(addr: &str) -> IpAddr {
    addr.parse().unwrap()
}

fn v4(addr: &str) -> SocketAddrV4 {
    addr.parse().unwrap()
}

fn v6(addr: &str) -> SocketAddrV6 {
    addr.parse().unwrap()
}

/// The real: 192.0.2.2 and 2001:db8::2 on its interface, the VIPs on `lo`, GUE on 6080.
fn decapsulator(test: &str) -> Option<Decapsulator> {
    Decapsulator::for_test(
        test,
        &[ip(LOCAL4), ip(LOCAL6)],
        &[ip(VIP4), ip(VIP6)],
        GUE_PORT,
    )
}

fn query4() -> Frame {
    Frame::udp(v4("198.51.100.7:40000"), v4(&format!("{VIP4}:53"))).payload(b"query")
}

fn syn4() -> Frame {
    Frame::tcp(v4("198.51.100.7:40001"), v4(&format!("{VIP4}:80"))).syn()
}

fn query6() -> Frame {
    Frame::ipv6_udp(v6("[2001:db8:ffff::7]:40000"), v6(&format!("[{VIP6}]:53"))).payload(b"query")
}

fn syn6() -> Frame {
    Frame::ipv6_tcp(v6("[2001:db8:ffff::7]:40001"), v6(&format!("[{VIP6}]:80"))).syn()
}

/// An outer packet in an Ethernet frame (the builder's default MACs, as the inner frames).
fn framed(outer: &[u8]) -> Vec<u8> {
    Frame::from_ip(outer).build()
}

fn ipip4(inner: &Frame) -> Vec<u8> {
    framed(&packet::ipip(ip(BALANCER4), ip(LOCAL4), &inner.ip_bytes()))
}

fn ipip6(inner: &Frame) -> Vec<u8> {
    framed(&packet::ipip(ip(BALANCER6), ip(LOCAL6), &inner.ip_bytes()))
}

fn gue4(inner: &Frame) -> Vec<u8> {
    let outer = packet::gue(
        ip(BALANCER4),
        ip(LOCAL4),
        33333,
        GUE_PORT,
        &inner.ip_bytes(),
    );
    framed(&outer)
}

fn gue6(inner: &Frame) -> Vec<u8> {
    let outer = packet::gue(
        ip(BALANCER6),
        ip(LOCAL6),
        33333,
        GUE_PORT,
        &inner.ip_bytes(),
    );
    framed(&outer)
}

/// `frame` is decapsulated: the result is `inner` as if it had come on its own.
#[track_caller]
fn decapsulated(decap: &mut Decapsulator, name: &str, frame: &[u8], inner: &[u8]) {
    packet::check_checksums(frame).unwrap_or_else(|e| panic!("{name}: input: {e}"));
    let bytes_before = decap.reason_bytes(Reason::Decapsulated);
    decap.check(name, frame, XDP_PASS, Some(Reason::Decapsulated), inner);
    assert_eq!(
        decap.reason_bytes(Reason::Decapsulated) - bytes_before,
        frame.len() as u64,
        "{name}: bytes counted are the frame's as received"
    );
}

/// Tunnel traffic left as it is: not for this host, or malformed.
#[track_caller]
fn not_for_us(decap: &mut Decapsulator, name: &str, frame: &[u8]) {
    decap.check(
        name,
        frame,
        XDP_PASS,
        Some(Reason::PassNotDecapsulated),
        frame,
    );
}

/// Not tunnel traffic: passes untouched, counted nowhere.
#[track_caller]
fn not_tunnel(decap: &mut Decapsulator, name: &str, frame: &[u8]) {
    decap.check(name, frame, XDP_PASS, None, frame);
}

/// Edits the outer IPv4 header of an untagged frame and fixes its checksum.
fn edit_outer_ipv4(frame: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut frame = frame.to_vec();
    edit(&mut frame[14..]);
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&[&frame[14..14 + header_len]]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// An untagged IPv4 frame whose outer header gets `options` (a multiple of 4 bytes).
fn with_outer_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let mut longer = frame[..34].to_vec();
    longer.extend_from_slice(options);
    longer.extend_from_slice(&frame[34..]);
    edit_outer_ipv4(&longer, |ip| {
        ip[0] = 0x40 | ((20 + options.len()) / 4) as u8;
        let total = u16::from_be_bytes([ip[2], ip[3]]) + options.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
    })
}

#[test]
fn ipip_of_every_family_pair_is_decapsulated() {
    let Some(mut decap) = decapsulator("ipip_of_every_family_pair_is_decapsulated") else {
        return;
    };
    for (name, inner) in [("udp", query4()), ("tcp", syn4())] {
        decapsulated(
            &mut decap,
            &format!("4in4_{name}"),
            &ipip4(&inner),
            &inner.build(),
        );
        decapsulated(
            &mut decap,
            &format!("4in6_{name}"),
            &ipip6(&inner),
            &inner.build(),
        );
    }
    for (name, inner) in [("udp", query6()), ("tcp", syn6())] {
        decapsulated(
            &mut decap,
            &format!("6in6_{name}"),
            &ipip6(&inner),
            &inner.build(),
        );
        decapsulated(
            &mut decap,
            &format!("6in4_{name}"),
            &ipip4(&inner),
            &inner.build(),
        );
    }
    // The inner packet keeps its options; the outer header may have some too.
    let with_options = query4().ip_options(&[1, 1, 1, 0]);
    decapsulated(
        &mut decap,
        "4in4_inner_options",
        &ipip4(&with_options),
        &with_options.build(),
    );
    decapsulated(
        &mut decap,
        "4in4_outer_options",
        &with_outer_options(&ipip4(&query4()), &[1, 1, 1, 1, 1, 1, 1, 0]),
        &query4().build(),
    );
    // A large inner packet, and one whose frame carries Ethernet padding after it.
    let large = query4().payload(&[0x5a; 1400]);
    decapsulated(&mut decap, "4in4_large", &ipip4(&large), &large.build());
    let tiny = Frame::udp(v4("198.51.100.7:1"), v4(&format!("{VIP4}:9")));
    let mut padded = ipip4(&tiny);
    padded.resize(padded.len() + 6, 0);
    let mut expected = tiny.build();
    expected.resize(expected.len() + 6, 0);
    decapsulated(&mut decap, "4in4_padded", &padded, &expected);
}

#[test]
fn gue_over_ipv4_and_ipv6_is_decapsulated() {
    let Some(mut decap) = decapsulator("gue_over_ipv4_and_ipv6_is_decapsulated") else {
        return;
    };
    for (name, inner) in [
        ("v4_udp", query4()),
        ("v4_tcp", syn4()),
        ("v6_udp", query6()),
        ("v6_tcp", syn6()),
    ] {
        let expected = inner.build();
        decapsulated(
            &mut decap,
            &format!("gue4_{name}"),
            &gue4(&inner),
            &expected,
        );
        decapsulated(
            &mut decap,
            &format!("gue6_{name}"),
            &gue6(&inner),
            &expected,
        );
    }
    // Another GUE port, configured.
    decap.set_gue_port(7777);
    let outer = packet::gue(ip(BALANCER4), ip(LOCAL4), 1, 7777, &query4().ip_bytes());
    decapsulated(
        &mut decap,
        "gue_port_7777",
        &framed(&outer),
        &query4().build(),
    );
    not_tunnel(&mut decap, "gue_to_the_old_port", &gue4(&query4()));
}

#[test]
fn a_vlan_tag_is_kept() {
    let Some(mut decap) = decapsulator("a_vlan_tag_is_kept") else {
        return;
    };
    let outer = packet::ipip(ip(BALANCER4), ip(LOCAL4), &query6().ip_bytes());
    decapsulated(
        &mut decap,
        "8021q_6in4",
        &Frame::from_ip(&outer).vlan(7).build(),
        &query6().vlan(7).build(),
    );
    let outer = packet::gue(ip(BALANCER6), ip(LOCAL6), 1, GUE_PORT, &query4().ip_bytes());
    decapsulated(
        &mut decap,
        "8021ad_gue6",
        &Frame::from_ip(&outer)
            .tag(packet::TPID_8021AD, 0x2005)
            .build(),
        &query4().tag(packet::TPID_8021AD, 0x2005).build(),
    );
    // Two tags are not followed: not tunnel traffic to this program.
    let outer = packet::ipip(ip(BALANCER4), ip(LOCAL4), &query4().ip_bytes());
    not_tunnel(
        &mut decap,
        "qinq_ipip",
        &Frame::from_ip(&outer).qinq(5, 6).build(),
    );
}

#[test]
fn an_outer_congestion_mark_reaches_an_ecn_capable_inner_packet() {
    let Some(mut decap) =
        decapsulator("an_outer_congestion_mark_reaches_an_ecn_capable_inner_packet")
    else {
        return;
    };
    // DSCP EF (46) and ECT(0); a router marked the outer header CE.
    let (ect, ce, not_ect) = (0xba, 0xbb, 0xb8);
    let mark_outer4 = |frame: &[u8]| edit_outer_ipv4(frame, |ip| ip[1] |= 3);
    let mark_outer6 = |frame: &[u8]| {
        let mut frame = frame.to_vec();
        frame[15] |= 0x30;
        frame
    };
    decapsulated(
        &mut decap,
        "ce_4in4",
        &mark_outer4(&ipip4(&query4().tos(ect))),
        &query4().tos(ce).build(),
    );
    decapsulated(
        &mut decap,
        "ce_4in6",
        &mark_outer6(&ipip6(&syn4().tos(ect))),
        &syn4().tos(ce).build(),
    );
    decapsulated(
        &mut decap,
        "ce_6in6",
        &mark_outer6(&ipip6(&query6().traffic_class(ect))),
        &query6().traffic_class(ce).build(),
    );
    decapsulated(
        &mut decap,
        "ce_gue4_6",
        &mark_outer4(&gue4(&syn6().traffic_class(0x01))),
        &syn6().traffic_class(0x03).build(),
    );
    // Not ECN-capable: delivered unmarked (RFC 6040 would drop it; we do not drop).
    decapsulated(
        &mut decap,
        "ce_4in4_not_ect",
        &mark_outer4(&ipip4(&query4().tos(not_ect))),
        &query4().tos(not_ect).build(),
    );
    // Without a mark outside, an inner CE or ECT stays as it is.
    decapsulated(
        &mut decap,
        "ect_4in4",
        &ipip4(&query4().tos(ce)),
        &query4().tos(ce).build(),
    );
}

#[test]
fn tunnel_packets_not_for_this_host_pass_untouched() {
    let Some(mut decap) = decapsulator("tunnel_packets_not_for_this_host_pass_untouched") else {
        return;
    };
    let elsewhere4 = Frame::udp(v4("198.51.100.7:40000"), v4("203.0.113.99:53")).payload(b"query");
    not_for_us(&mut decap, "inner_not_a_vip_ipip", &ipip4(&elsewhere4));
    not_for_us(&mut decap, "inner_not_a_vip_gue", &gue4(&elsewhere4));
    let elsewhere6 = Frame::ipv6_udp(v6("[2001:db8:ffff::7]:40000"), v6("[2001:db8:100::99]:53"));
    not_for_us(&mut decap, "inner_not_a_vip_6in6", &ipip6(&elsewhere6));
    // A local address is no VIP.
    let to_local = Frame::udp(v4("198.51.100.7:40000"), v4(&format!("{LOCAL4}:53")));
    not_for_us(&mut decap, "inner_to_a_local_address", &ipip4(&to_local));

    let other_host4 = packet::ipip(ip(BALANCER4), ip("192.0.2.3"), &query4().ip_bytes());
    not_for_us(&mut decap, "outer_not_local_ipip4", &framed(&other_host4));
    let other_host6 = packet::gue(
        ip(BALANCER6),
        ip("2001:db8::3"),
        1,
        GUE_PORT,
        &query6().ip_bytes(),
    );
    not_for_us(&mut decap, "outer_not_local_gue6", &framed(&other_host6));
    // The VIP is on lo, not where tunnels end.
    let to_vip = packet::ipip(ip(BALANCER4), ip(VIP4), &query4().ip_bytes());
    not_for_us(&mut decap, "outer_to_the_vip", &framed(&to_vip));

    // The map follows the host: without the VIP nothing is decapsulated, with it again.
    decap.set_addresses(&[ip(LOCAL4), ip(LOCAL6)], &[ip(VIP6)]);
    not_for_us(&mut decap, "vip_removed", &ipip4(&query4()));
    decapsulated(
        &mut decap,
        "other_vip_kept",
        &ipip4(&query6()),
        &query6().build(),
    );
    decap.set_addresses(&[ip(LOCAL6)], &[ip(VIP4), ip(VIP6)]);
    not_for_us(&mut decap, "local_address_removed", &ipip4(&query4()));
    decap.set_addresses(&[ip(LOCAL4), ip(LOCAL6)], &[ip(VIP4), ip(VIP6)]);
    decapsulated(&mut decap, "vip_back", &ipip4(&query4()), &query4().build());
}

#[test]
fn malformed_tunnel_packets_pass_untouched() {
    let Some(mut decap) = decapsulator("malformed_tunnel_packets_pass_untouched") else {
        return;
    };
    // IPIP saying IPv4 inside, carrying IPv6 (and the other way round).
    let v6_as_v4 = edit_outer_ipv4(&ipip4(&query6()), |ip| ip[9] = packet::PROTO_IPIP);
    not_for_us(&mut decap, "protocol_4_carrying_ipv6", &v6_as_v4);
    let v4_as_v6 = edit_outer_ipv4(&ipip4(&query4()), |ip| ip[9] = packet::PROTO_IPV6_IN_IP);
    not_for_us(&mut decap, "protocol_41_carrying_ipv4", &v4_as_v6);

    // GUE whose payload is not an IP packet, or whose UDP length overruns the datagram.
    let not_ip = Frame::udp(
        v4(&format!("{BALANCER4}:1")),
        v4(&format!("{LOCAL4}:{GUE_PORT}")),
    )
    .payload(b"hello, not an IP packet");
    not_for_us(&mut decap, "gue_payload_not_ip", &not_ip.build());
    let zeros = Frame::ipv6_udp(
        v6(&format!("[{BALANCER6}]:1")),
        v6(&format!("[{LOCAL6}]:{GUE_PORT}")),
    )
    .payload(&[0; 60]);
    not_for_us(&mut decap, "gue6_payload_zeros", &zeros.build());
    let mut long_udp = gue4(&query4());
    let udp_len = u16::from_be_bytes([long_udp[38], long_udp[39]]) + 1;
    long_udp[38..40].copy_from_slice(&udp_len.to_be_bytes());
    not_for_us(&mut decap, "gue_udp_length_overruns", &long_udp);

    // The inner header cut short by the outer datagram's length (the frame is consistent).
    let short_inner = edit_outer_ipv4(&truncated(&ipip4(&query4()), 14 + 20 + 10), |ip| {
        ip[2..4].copy_from_slice(&30u16.to_be_bytes())
    });
    not_for_us(&mut decap, "inner_header_truncated", &short_inner);
    let short_inner6 = edit_outer_ipv4(&truncated(&ipip4(&query6()), 14 + 20 + 36), |ip| {
        ip[2..4].copy_from_slice(&56u16.to_be_bytes())
    });
    not_for_us(&mut decap, "inner_ipv6_header_truncated", &short_inner6);
    // An inner IPv4 header with IHL 4, or claiming options it does not have.
    let mut bad_ihl = ipip4(&query4());
    bad_ihl[34] = 0x44;
    not_for_us(&mut decap, "inner_ihl_4", &bad_ihl);
    let short_options = edit_outer_ipv4(&truncated(&ipip4(&query4()), 14 + 20 + 20), |ip| {
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[20] = 0x46;
    });
    not_for_us(&mut decap, "inner_options_truncated", &short_options);

    // An outer IPv6 payload length of 0 (a jumbogram).
    let mut jumbo = ipip6(&query4());
    jumbo[18..20].copy_from_slice(&[0, 0]);
    not_for_us(&mut decap, "outer_jumbogram", &jumbo);
}

#[test]
fn fragments_are_not_decapsulated() {
    let Some(mut decap) = decapsulator("fragments_are_not_decapsulated") else {
        return;
    };
    let first = edit_outer_ipv4(&ipip4(&query4()), |ip| ip[6] |= 0x20);
    not_for_us(&mut decap, "ipip_first_fragment", &first);
    let later = edit_outer_ipv4(&ipip4(&query4()), |ip| {
        ip[6..8].copy_from_slice(&[0x00, 0xb9])
    });
    not_for_us(&mut decap, "ipip_last_fragment", &later);
    let gue_first = edit_outer_ipv4(&gue4(&query4()), |ip| ip[6] |= 0x20);
    not_for_us(&mut decap, "gue_first_fragment", &gue_first);
    // A later UDP fragment has no port to tell GUE by.
    let udp_later = edit_outer_ipv4(&gue4(&query4()), |ip| {
        ip[6..8].copy_from_slice(&[0x00, 0xb9])
    });
    not_tunnel(&mut decap, "udp_later_fragment", &udp_later);
}

#[test]
fn traffic_that_is_not_a_tunnels_passes_untouched_and_uncounted() {
    let Some(mut decap) =
        decapsulator("traffic_that_is_not_a_tunnels_passes_untouched_and_uncounted")
    else {
        return;
    };
    let ssh4 = Frame::tcp(v4("198.51.100.7:40000"), v4(&format!("{LOCAL4}:22"))).syn();
    not_tunnel(&mut decap, "tcp_to_the_host", &ssh4.build());
    let ssh6 = Frame::ipv6_tcp(
        v6("[2001:db8:ffff::7]:40000"),
        v6(&format!("[{LOCAL6}]:22")),
    )
    .syn();
    not_tunnel(&mut decap, "tcp6_to_the_host", &ssh6.build());
    // The client's packet sent straight to the VIP (direct routing) is not a tunnel's.
    not_tunnel(&mut decap, "udp_to_the_vip", &query4().build());
    not_tunnel(&mut decap, "tcp6_to_the_vip", &syn6().build());
    // GUE-shaped, to another UDP port.
    let other_port = packet::gue(
        ip(BALANCER4),
        ip(LOCAL4),
        1,
        GUE_PORT + 1,
        &query4().ip_bytes(),
    );
    not_tunnel(&mut decap, "gue_to_another_port", &framed(&other_port));
    let other_port6 = packet::gue(ip(BALANCER6), ip(LOCAL6), 1, 53, &query6().ip_bytes());
    not_tunnel(&mut decap, "gue6_to_another_port", &framed(&other_port6));
    let echo = Frame::icmp_echo(ip4(BALANCER4), ip4(LOCAL4));
    not_tunnel(&mut decap, "ping", &echo.build());
    let arp = Frame::arp_request(ip4(BALANCER4), ip4(LOCAL4));
    not_tunnel(&mut decap, "arp", &arp.build());
    // An outer header that is not valid IPv4 says nothing about a tunnel.
    let mut bad_version = ipip4(&query4());
    bad_version[14] = 0x55;
    not_tunnel(&mut decap, "outer_version_5", &bad_version);

    // With GUE off, GUE packets are ordinary UDP; IPIP still works.
    decap.set_gue_port(0);
    not_tunnel(&mut decap, "gue_off", &gue4(&query4()));
    decapsulated(
        &mut decap,
        "ipip_with_gue_off",
        &ipip4(&query4()),
        &query4().build(),
    );
}

fn ip4(addr: &str) -> std::net::Ipv4Addr {
    addr.parse().unwrap()
}

#[test]
fn truncated_tunnel_frames_pass_untouched_at_every_length() {
    let Some(mut decap) = decapsulator("truncated_tunnel_frames_pass_untouched_at_every_length")
    else {
        return;
    };
    let frames = [
        ("4in4", ipip4(&query4())),
        ("6in6", ipip6(&query6())),
        ("gue4", gue4(&syn6())),
        ("gue6", gue6(&query4())),
        (
            "vlan_4in6",
            Frame::from_ip(&packet::ipip(
                ip(BALANCER6),
                ip(LOCAL6),
                &query4().ip_bytes(),
            ))
            .vlan(3)
            .build(),
        ),
    ];
    for (kind, frame) in &frames {
        for len in 14..frame.len() {
            let name = format!("{kind}_truncated_to_{len}");
            let cut = truncated(frame, len);
            let before = decap.reason_packets();
            let outcome = decap.run(&cut);
            let after = decap.reason_packets();
            assert_eq!(outcome.action, XDP_PASS, "{name}");
            lb_tests::pcap::assert_frame_eq(&name, &cut, &outcome.frame);
            assert_eq!(
                after[&Reason::Decapsulated],
                before[&Reason::Decapsulated],
                "{name}: counted as decapsulated"
            );
        }
    }
}

#[test]
fn jumbo_tunnel_packets_are_decapsulated_whole() {
    let Some(mut decap) = decapsulator("jumbo_tunnel_packets_are_decapsulated_whole") else {
        return;
    };
    // More than a page: the kernel hands the program the frame in several buffers (it is
    // built with xdp.frags); the headers are in the first.
    let payload: Vec<u8> = (0..8900u32).map(|i| i as u8).collect();
    let inner4 = query4().payload(&payload);
    let frame = ipip4(&inner4);
    assert!(frame.len() > 8950, "{}", frame.len());
    decapsulated(&mut decap, "jumbo_4in4", &frame, &inner4.build());
    let inner6 = query6().payload(&payload);
    decapsulated(&mut decap, "jumbo_gue6", &gue6(&inner6), &inner6.build());

    // An outer length claiming more than even the whole multi-buffer frame holds.
    let lying = edit_outer_ipv4(&frame, |ip| {
        let claimed = (frame.len() - 14 + 100) as u16;
        ip[2..4].copy_from_slice(&claimed.to_be_bytes());
    });
    not_for_us(
        &mut decap,
        "jumbo_total_length_past_the_last_buffer",
        &lying,
    );
}
