//! Tunnel forwarding (LVS-TUN) end to end, IPv4 and IPv6, through the real `lbd`: the
//! balancer wraps the client's packet in IPIP or GUE to the real, which unwraps it with
//! `lbd decap` and answers the client directly from the VIP it holds on `lo`.
//!
//! - A real beside the balancer and one behind a router (reached only by routing the outer
//!   packet), for IPIP and GUE services, TCP (HTTP) and UDP; the encapsulated frames are
//!   counted on the switch, so a packet sent by direct routing instead does not pass.
//! - Mixed families: an IPv4 VIP to an IPv6 real (4in6) and the reverse (6in4).
//! - Path MTU: the balancer's link to the real is smaller than the far client's path, so the
//!   client's full-size segments no longer fit once wrapped; the balancer must answer them
//!   with fragmentation-needed / packet-too-big (`tx_icmp_too_big`), or an upload stalls (the
//!   control run shows it does when the client ignores those answers).
//!
//! Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    DrTopology, Netns, VIP,
    bulk::{self, BulkSink},
    decap::DecapDaemon,
    http::{self, HttpServer},
    lbd::Lbd,
    netns,
    privilege::require_root,
    topology::{
        HOST_IF, VIP6,
        modes::{
            self, LINK_IF, LINK_REAL_IF, LINK_REAL_IP, LINK_REAL_IP6, TunnelFrames,
            prepare_tunnel_real, site_ip, site_ip6,
        },
        real_ip, real_ip6,
    },
    udp::{UdpEchoServer, datagrams_per_server},
};

const GUE_PORT: u16 = 6080;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Connections (and datagrams) per service: enough for rr to reach every real.
const FLOWS: usize = 8;
const REQUESTS_PER_CONNECTION: usize = 2;

fn prefix(test: &str) -> String {
    modes::test_prefix(test)
}

fn instance(test: &str) -> String {
    modes::test_instance(test)
}

/// One service in the flow style the config accepts.
fn service(vip: IpAddr, port: u16, protocol: &str, tunnel: &str, reals: &[IpAddr]) -> String {
    let gue = if tunnel == "gue" {
        format!(", gue_port: {GUE_PORT}")
    } else {
        String::new()
    };
    let reals = reals
        .iter()
        .map(|real| format!("{{address: {real}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  - {{vip: {vip}, port: {port}, protocol: {protocol}, scheduler: rr, forward: tun, \
         tunnel: {tunnel}{gue}, reals: [{reals}]}}\n"
    )
}

fn config(interfaces: &[&str], services: &str) -> String {
    let interfaces = interfaces
        .iter()
        .map(|name| format!("  - {{name: {name}, xdp_mode: native}}\n"))
        .collect::<String>();
    format!(
        "interfaces:\n{interfaces}services:\n{services}limits: {{flows: 65536, services: 32, reals: 64}}\n"
    )
}

/// Which counter of [`TunnelFrames`] a packet to `real` through `tunnel` moves.
fn frames_of(frames: TunnelFrames, tunnel: &str, real: IpAddr) -> u64 {
    match (tunnel, real.is_ipv4()) {
        ("ipip", true) => frames.ipip4,
        ("ipip", false) => frames.ipip6,
        ("gue", true) => frames.gue4,
        _ => frames.gue6,
    }
}

/// HTTP servers (ports 80 and 81) and UDP echo servers (53 and 54, on both VIPs) on a tunnel
/// real, each answering with `name`.
fn tunnel_servers(netns: &Netns, name: &str) -> (Vec<HttpServer>, Vec<UdpEchoServer>) {
    let http = [80, 81]
        .map(|port| {
            HttpServer::start(
                netns,
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
                name,
            )
        })
        .into();
    let udp = [IpAddr::V4(VIP), IpAddr::V6(VIP6)]
        .into_iter()
        .flat_map(|vip| {
            [53, 54].map(|port| UdpEchoServer::start(netns, SocketAddr::new(vip, port), name))
        })
        .collect();
    (http, udp)
}

/// Drives `FLOWS` connections or datagrams through the service `vip:port` and checks that
/// every real answered some, and that the switch saw at least one frame of the service's
/// tunnel kind toward the reals' family per packet the client sent, and none of another kind.
fn check_service(
    topology: &DrTopology,
    lbd: &Lbd,
    vip: IpAddr,
    port: u16,
    protocol: &str,
    tunnel: &str,
    reals: &[(&str, IpAddr)],
) {
    let target = SocketAddr::new(vip, port);
    let before = topology.tunnel_frames();
    let per_real = if protocol == "tcp" {
        let results = http::connections(
            &topology.client,
            target,
            FLOWS,
            REQUESTS_PER_CONNECTION,
            TIMEOUT,
        );
        http::connections_per_server(&results, REQUESTS_PER_CONNECTION, || lbd.log())
    } else {
        datagrams_per_server(
            &topology.client,
            target,
            FLOWS,
            &[0x75; 100],
            TIMEOUT,
            || lbd.log(),
        )
    };
    for (name, _) in reals {
        assert!(
            per_real.get(*name).copied().unwrap_or(0) > 0,
            "{protocol} {target} ({tunnel}): {name} answered nothing: {per_real:?}"
        );
    }
    assert_eq!(per_real.values().sum::<u64>(), FLOWS as u64, "{per_real:?}");

    let after = topology.tunnel_frames();
    // Before its last answer arrives, a TCP connection has sent at least SYN, ACK and the
    // requests (its FIN may still be on its way); a datagram is one frame.
    let sent = if protocol == "tcp" {
        FLOWS as u64 * (2 + REQUESTS_PER_CONNECTION as u64)
    } else {
        FLOWS as u64
    };
    let family = reals[0].1;
    assert!(
        reals
            .iter()
            .all(|(_, real)| real.is_ipv4() == family.is_ipv4()),
        "one outer family per service here"
    );
    let grew = frames_of(after, tunnel, family) - frames_of(before, tunnel, family);
    assert!(
        grew >= sent,
        "{protocol} {target} ({tunnel}): {grew} tunnelled frames on the switch for {sent} \
         packets: {before:?} → {after:?}"
    );
    for other in ["ipip", "gue"] {
        for other_family in [real_ip(0).into(), IpAddr::from(real_ip6(0))] {
            if (other, other_family.is_ipv4()) != (tunnel, family.is_ipv4()) {
                assert_eq!(
                    frames_of(after, other, other_family),
                    frames_of(before, other, other_family),
                    "{protocol} {target} ({tunnel}): frames of another tunnel kind: {before:?} → {after:?}"
                );
            }
        }
    }
}

#[test]
fn ipip_and_gue_reach_a_real_beside_the_balancer_and_one_behind_a_router() {
    if !require_root("e2e_tunnel ipip and gue") {
        return;
    }
    let prefix = prefix("tun");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build_dual_stack(&prefix, &["near"]);
    topology.attach_pass_program();
    let site = topology.add_routed_site(&["routed"]);
    let near = topology.real("near");
    prepare_tunnel_real(near);
    let routed = &site.host("routed").netns;
    let _servers = [
        tunnel_servers(near, "near"),
        tunnel_servers(routed, "routed"),
    ];
    let _decaps = [
        DecapDaemon::on(near, HOST_IF, Some(GUE_PORT)),
        DecapDaemon::on(routed, HOST_IF, Some(GUE_PORT)),
    ];
    topology.count_tunnel_frames(GUE_PORT);

    let reals4 = [
        ("near", IpAddr::V4(real_ip(0))),
        ("routed", site_ip(0).into()),
    ];
    let reals6 = [
        ("near", IpAddr::V6(real_ip6(0))),
        ("routed", site_ip6(0).into()),
    ];
    let mut services = String::new();
    let mut cases = Vec::new();
    for (vip, reals) in [(IpAddr::V4(VIP), &reals4), (IpAddr::V6(VIP6), &reals6)] {
        let addresses: Vec<IpAddr> = reals.iter().map(|(_, ip)| *ip).collect();
        for (protocol, port, tunnel) in [
            ("tcp", 80, "ipip"),
            ("tcp", 81, "gue"),
            ("udp", 53, "ipip"),
            ("udp", 54, "gue"),
        ] {
            services += &service(vip, port, protocol, tunnel, &addresses);
            cases.push((vip, port, protocol, tunnel, reals));
        }
    }
    let lbd = Lbd::start(
        &topology.lb,
        &instance("tun"),
        &config(&["eth0"], &services),
    );

    for (vip, port, protocol, tunnel, reals) in cases {
        check_service(&topology, &lbd, vip, port, protocol, tunnel, reals);
    }

    // Every real is listed as tunnelled, in the listing and in ipvsadm's layout.
    let listing = lbd.listing();
    for service in &listing.services {
        for real in &service.reals {
            assert_eq!(real.forward, "tun", "{}: {listing:#?}", real.address);
        }
    }
    let table = lbd.lbadm(&["-L", "-n"]);
    let real_lines: Vec<&str> = table
        .lines()
        .filter(|line| line.starts_with("  -> ") && !line.contains("RemoteAddress"))
        .collect();
    assert_eq!(real_lines.len(), 8 * 2, "{table}");
    assert!(
        real_lines.iter().all(|line| line.contains(" Tunnel ")),
        "{table}"
    );
    assert_eq!(lbd.reason("drop_encap_failed"), 0, "{:?}", listing.reasons);
}

#[test]
fn an_ipv4_vip_reaches_an_ipv6_real_and_an_ipv6_vip_an_ipv4_real() {
    if !require_root("e2e_tunnel mixed families") {
        return;
    }
    let prefix = prefix("t46");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build_dual_stack(&prefix, &["t46"]);
    topology.attach_pass_program();
    let real = topology.real("t46");
    prepare_tunnel_real(real);
    let _servers = tunnel_servers(real, "t46");
    let _decap = DecapDaemon::on(real, HOST_IF, Some(GUE_PORT));
    topology.count_tunnel_frames(GUE_PORT);

    // 4in6: the IPv4 VIP's packets inside IPv6 to the real's IPv6 address; 6in4 the reverse.
    let cases = [
        (IpAddr::V4(VIP), IpAddr::V6(real_ip6(0))),
        (IpAddr::V6(VIP6), IpAddr::V4(real_ip(0))),
    ];
    let mut services = String::new();
    for (vip, real) in cases {
        for (protocol, port, tunnel) in
            [("tcp", 80, "ipip"), ("tcp", 81, "gue"), ("udp", 53, "ipip")]
        {
            services += &service(vip, port, protocol, tunnel, &[real]);
        }
    }
    let lbd = Lbd::start(
        &topology.lb,
        &instance("t46"),
        &config(&["eth0"], &services),
    );

    for (vip, real) in cases {
        for (protocol, port, tunnel) in
            [("tcp", 80, "ipip"), ("tcp", 81, "gue"), ("udp", 53, "ipip")]
        {
            check_service(
                &topology,
                &lbd,
                vip,
                port,
                protocol,
                tunnel,
                &[("t46", real)],
            );
        }
    }
}

/// The balancer's link to the real in the path-MTU test; the far client's path is 1500.
const LINK_MTU: u32 = 1400;
const UPLOAD_SIZE: usize = 10 * 1024 * 1024;
/// A black hole shows as no progress for this long.
const IDLE: Duration = Duration::from_secs(3);
const UPLOAD_TOTAL: Duration = Duration::from_secs(60);

/// The path MTU `netns` has learnt toward `to` (`mtu N` of `ip route get`), if any.
fn learnt_mtu(netns: &Netns, to: IpAddr) -> Option<u32> {
    let route = netns.ip(&["route", "get", &to.to_string()]);
    let mut words = route.split_whitespace();
    words.find(|word| *word == "mtu")?;
    words.next()?.parse().ok()
}

#[test]
fn uploads_from_a_far_client_fit_a_smaller_mtu_to_the_real_through_packet_too_big() {
    if !require_root("e2e_tunnel path mtu") {
        return;
    }
    let prefix = prefix("pmtu");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build_dual_stack(&prefix, &["tun"]);
    topology.attach_pass_program();
    let far = topology.add_far_client();
    // The balancer reaches the real over its own link, smaller than every other; the real
    // answers by the switch and the router, as before.
    topology.add_direct_link("tun", LINK_MTU);
    let real = topology.real("tun");
    prepare_tunnel_real(real);
    let _sinks = [8080, 8081]
        .map(|port| BulkSink::start(real, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)));
    let _decap = DecapDaemon::on(real, LINK_REAL_IF, Some(GUE_PORT));

    // (port, tunnel, bytes the tunnel adds under an IPv4 and an IPv6 outer header)
    let tunnels = [(8080, "ipip", 20, 40), (8081, "gue", 28, 48)];
    let mut services = String::new();
    for (vip, real) in [
        (IpAddr::V4(VIP), IpAddr::V4(LINK_REAL_IP)),
        (IpAddr::V6(VIP6), IpAddr::V6(LINK_REAL_IP6)),
    ] {
        for (port, tunnel, ..) in tunnels {
            services += &service(vip, port, "tcp", tunnel, &[real]);
        }
    }
    let lbd = Lbd::start(
        &topology.lb,
        &instance("pmtu"),
        &config(&["eth0", LINK_IF], &services),
    );

    // The control: a far client that never hears the balancer's answers stalls, since its
    // full-size segments cannot cross the balancer once wrapped.
    for rule in [
        "add table inet lbt",
        "add chain inet lbt input { type filter hook input priority 0; }",
        "add rule inet lbt input icmp type destination-unreachable drop",
        "add rule inet lbt input icmpv6 type packet-too-big drop",
    ] {
        far.far.exec(&["nft", rule]);
    }
    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        let addr = SocketAddr::new(vip, 8080);
        match far
            .far
            .run(|| bulk::upload(addr, UPLOAD_SIZE, IDLE, UPLOAD_TOTAL))
        {
            Ok(received) => panic!(
                "{received} bytes to {addr} although the client ignored every packet too big"
            ),
            Err(error) => assert!(error.to_string().contains("stalled"), "{addr}: {error}"),
        }
    }
    let answered_while_ignored = lbd.reason("tx_icmp_too_big");
    assert!(
        answered_while_ignored >= 2,
        "the balancer answered the oversized segments: {:?}",
        lbd.listing().reasons
    );
    far.far.exec(&["nft", "delete", "table", "inet", "lbt"]);

    // Heard, the answers shrink the client's segments to fit: every byte arrives, and the
    // path MTU the client learnt leaves room for the tunnel's header on the link.
    for (vip, index) in [(IpAddr::V4(VIP), 0), (IpAddr::V6(VIP6), 1)] {
        for (port, tunnel, overhead4, overhead6) in tunnels {
            let overhead = [overhead4, overhead6][index];
            let addr = SocketAddr::new(vip, port);
            let received = far
                .far
                .run(|| bulk::upload(addr, UPLOAD_SIZE, IDLE, UPLOAD_TOTAL))
                .unwrap_or_else(|e| panic!("upload to {addr} ({tunnel}): {e}\n{}", lbd.log()));
            assert_eq!(received, UPLOAD_SIZE, "{addr} ({tunnel})");
            let mtu = learnt_mtu(&far.far, vip)
                .unwrap_or_else(|| panic!("the far client learnt no path MTU toward {vip}"));
            assert!(
                mtu + overhead <= LINK_MTU,
                "{addr} ({tunnel}): the client learnt {mtu}, but {overhead} bytes of tunnel \
                 must fit in {LINK_MTU}"
            );
        }
    }
    let reasons: HashMap<String, u64> = lbd
        .listing()
        .reasons
        .into_iter()
        .map(|count| (count.reason, count.packets))
        .collect();
    assert!(
        reasons["tx_icmp_too_big"] > answered_while_ignored,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.get("drop_encap_failed").copied().unwrap_or(0),
        0,
        "{reasons:?}"
    );
}
