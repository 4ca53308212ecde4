//! The test networks themselves, without the load balancer: the dual-stack DR topology and the
//! far client behind a smaller path MTU do what tests of the balancer will rely on. Needs root.
//!
//! - Dual stack: every host reaches the others over IPv6, and only the lb answers neighbour
//!   solicitations for VIP6 (the reals hold it on `lo`).
//! - Far client: path-MTU discovery works towards a real's own address, and a real that never
//!   gets the router's ICMP turns a download into a stall: so a test built this way catches
//!   ICMP errors that the balancer fails to deliver.
//! - A fragmented UDP datagram from the far client is reassembled and answered.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, Netns,
    bulk::{self, BulkServer},
    http::{self, HttpServer},
    packet::Frame,
    privilege::require_root,
    topology::{
        CLIENT_IP6, CLIENT_MAC, HOST_IF, LB_IP6, LB_MAC, VIP6,
        far_client::{FAR_CLIENT_IP, FAR_CLIENT_IP6, FAR_PATH_MTU},
        real_ip, real_ip6, real_mac,
    },
    udp::{UdpEchoServer, udp_request},
};

const TIMEOUT: Duration = Duration::from_secs(3);
/// No byte for this long and a download counts as stalled.
const IDLE: Duration = Duration::from_secs(2);
const DOWNLOAD_TOTAL: Duration = Duration::from_secs(10);
const DOWNLOAD_SIZE: usize = 5 * 1024 * 1024;
const NEIGHBOUR_SOLICITATION: u8 = 135;

fn prefix(test: &str) -> String {
    format!("lbt-h-{test}-{}-", std::process::id())
}

/// One counter of the namespace's /proc/net/snmp6 (absent counters are 0).
fn snmp6(netns: &Netns, counter: &str) -> u64 {
    netns
        .exec(&["cat", "/proc/net/snmp6"])
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(counter)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// A unicast neighbour solicitation for `target`, from the client to the host with `dst_mac`.
fn solicitation(target: Ipv6Addr, dst_mac: [u8; 6]) -> Vec<u8> {
    // Body after the reserved word: the target, then a source link-layer address option.
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&CLIENT_MAC);
    Frame::icmpv6_error(CLIENT_IP6, target, NEIGHBOUR_SOLICITATION, 0, 0, &body)
        .ttl(255) // RFC 4861: anything else is not from the link
        .src_mac(CLIENT_MAC)
        .dst_mac(dst_mac)
        .build()
}

#[test]
fn dual_stack_hosts_talk_ipv6_and_only_the_lb_answers_for_vip6() {
    if !require_root("dual_stack_hosts_talk_ipv6_and_only_the_lb_answers_for_vip6") {
        return;
    }
    let prefix = prefix("ds");
    {
        let topology = DrTopology::build_dual_stack(&prefix, &["real1", "real2"]);
        assert!(topology.is_dual_stack());
        let real1 = topology.real("real1");

        // A solicitation for VIP6 sent straight to real1 reaches its ICMPv6 code but gets no
        // advertisement; one for real1's own address, the control, does.
        let (solicits, adverts) = (
            snmp6(real1, "Icmp6InNeighborSolicits"),
            snmp6(real1, "Icmp6OutNeighborAdvertisements"),
        );
        topology
            .client
            .send_frame(HOST_IF, &solicitation(VIP6, real_mac(0)));
        topology
            .client
            .send_frame(HOST_IF, &solicitation(real_ip6(0), real_mac(0)));
        let deadline = Instant::now() + TIMEOUT;
        while snmp6(real1, "Icmp6InNeighborSolicits") < solicits + 2 {
            assert!(
                Instant::now() < deadline,
                "real1 did not receive both solicitations"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            snmp6(real1, "Icmp6OutNeighborAdvertisements"),
            adverts + 1,
            "real1 must answer for its own address only, never for VIP6"
        );

        let servers = topology
            .reals
            .iter()
            .map(|(name, netns, _)| {
                HttpServer::start(
                    netns,
                    SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 80),
                    name,
                )
            })
            .collect::<Vec<_>>();
        let lb_server = HttpServer::start(&topology.lb, SocketAddr::new(LB_IP6.into(), 8080), "lb");
        let vip_server = HttpServer::start(&topology.lb, SocketAddr::new(VIP6.into(), 80), "lb");

        topology.client.run(|| {
            for (index, (name, ..)) in topology.reals.iter().enumerate() {
                // The [::] servers take IPv4 too.
                for ip in [IpAddr::from(real_ip6(index)), IpAddr::from(real_ip(index))] {
                    let addr = SocketAddr::new(ip, 80);
                    let body = http::get(addr, "/", TIMEOUT)
                        .unwrap_or_else(|error| panic!("GET / from {addr}: {error}"));
                    assert_eq!(body, format!("{name}\n"), "body from {addr}");
                }
            }
            let addr = SocketAddr::new(LB_IP6.into(), 8080);
            let body = http::get(addr, "/", TIMEOUT)
                .unwrap_or_else(|error| panic!("GET / from {addr}: {error}"));
            assert_eq!(body, "lb\n");
            // Every real listens on [::]:80 and holds VIP6 too: the lb answering proves the
            // client resolved VIP6 to the lb's MAC.
            let addr = SocketAddr::new(VIP6.into(), 80);
            let body = http::get(addr, "/", TIMEOUT)
                .unwrap_or_else(|error| panic!("GET / from {addr}: {error}"));
            assert_eq!(body, "lb\n", "VIP6 answered by a real");
        });
        let neighbour =
            topology
                .client
                .ip(&["-6", "neigh", "show", &VIP6.to_string(), "dev", HOST_IF]);
        let lb_mac = lb_userspace::admin::format_mac(&LB_MAC);
        assert!(
            neighbour.contains(&format!("lladdr {lb_mac}")),
            "client's neighbour entry for VIP6: {neighbour:?}"
        );
        for (server, (name, ..)) in servers.iter().zip(&topology.reals) {
            assert_eq!(server.requests(), 2, "requests served by {name}");
        }
        assert_eq!((lb_server.requests(), vip_server.requests()), (1, 1));
        // Nothing tentative, the link-local address included (solicitations need it).
        let addresses = topology
            .lb
            .ip(&["-6", "-o", "addr", "show", "dev", HOST_IF]);
        assert!(addresses.contains("fe80::"), "{addresses}");
        assert!(!addresses.contains("tentative"), "{addresses}");
    }
    assert_no_namespaces_left(&prefix);
}

#[test]
fn far_client_finds_the_path_mtu_and_stalls_when_icmp_is_lost() {
    if !require_root("far_client_finds_the_path_mtu_and_stalls_when_icmp_is_lost") {
        return;
    }
    let prefix = prefix("pm");
    {
        let topology = DrTopology::build_dual_stack(&prefix, &["real1", "real2"]);
        let far = topology.add_far_client();
        let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 9000);
        let servers = topology
            .reals
            .iter()
            .map(|(_, netns, _)| BulkServer::start(netns, any, DOWNLOAD_SIZE))
            .collect::<Vec<_>>();

        // real1 keeps getting the router's ICMP: its full-size segments shrink to the path MTU.
        for ip in [IpAddr::from(real_ip(0)), IpAddr::from(real_ip6(0))] {
            let addr = SocketAddr::new(ip, 9000);
            let received = far
                .far
                .run(|| bulk::download(addr, IDLE, DOWNLOAD_TOTAL))
                .unwrap_or_else(|error| panic!("download from {addr}: {error}"));
            assert_eq!(received, DOWNLOAD_SIZE, "bytes from {addr}");
        }
        let real1 = topology.real("real1");
        for (family, far_ip) in [
            ("-4", IpAddr::from(FAR_CLIENT_IP)),
            ("-6", FAR_CLIENT_IP6.into()),
        ] {
            let route = real1.ip(&[family, "route", "get", &far_ip.to_string()]);
            assert!(
                route.contains(&format!("mtu {FAR_PATH_MTU}")),
                "real1 has not learnt the path MTU to {far_ip} (no ICMP from the router?): {route}"
            );
        }

        // real2 drops the router's ICMP: the connection is set up, then nothing full-size
        // ever arrives.
        let real2 = topology.real("real2");
        for rule in [
            "add table inet lbt",
            "add chain inet lbt input { type filter hook input priority 0; }",
            "add rule inet lbt input icmp type destination-unreachable drop",
            "add rule inet lbt input icmpv6 type packet-too-big drop",
        ] {
            real2.exec(&["nft", rule]);
        }
        // The control: what fits in one small segment still gets through.
        let small = BulkServer::start(real2, SocketAddr::new(any.ip(), 9001), 1000);
        for ip in [IpAddr::from(real_ip(1)), IpAddr::from(real_ip6(1))] {
            let addr = SocketAddr::new(ip, small.addr().port());
            let received = far
                .far
                .run(|| bulk::download(addr, IDLE, DOWNLOAD_TOTAL))
                .unwrap_or_else(|error| panic!("small download from {addr}: {error}"));
            assert_eq!(received, 1000, "bytes from {addr}");
        }
        for ip in [IpAddr::from(real_ip(1)), IpAddr::from(real_ip6(1))] {
            let addr = SocketAddr::new(ip, 9000);
            let started = Instant::now();
            let result = far.far.run(|| bulk::download(addr, IDLE, DOWNLOAD_TOTAL));
            let error = match result {
                Ok(received) => panic!("{received} bytes from {addr} through a black hole"),
                Err(error) => error,
            };
            assert!(
                error.to_string().contains("stalled"),
                "download from {addr}: {error}"
            );
            assert!(
                started.elapsed() < IDLE + TIMEOUT,
                "{:?}",
                started.elapsed()
            );
        }
        let counters = real2.exec(&["nft", "list", "chain", "inet", "lbt", "input"]);
        assert!(
            counters.contains("packet-too-big drop"),
            "the rules as installed: {counters}"
        );
        drop((servers, small));
    }
    assert_no_namespaces_left(&prefix);
}

#[test]
fn far_client_gets_an_answer_to_a_fragmented_datagram() {
    if !require_root("far_client_gets_an_answer_to_a_fragmented_datagram") {
        return;
    }
    let prefix = prefix("fr");
    {
        let topology = DrTopology::build_dual_stack(&prefix, &["real1"]);
        let far = topology.add_far_client();
        let real1 = topology.real("real1");
        let server = UdpEchoServer::start(
            real1,
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 7),
            "real1",
        );
        let reassembled = |netns: &Netns| {
            let v4 = netns.exec(&["cat", "/proc/net/snmp"]);
            let v4 = v4
                .lines()
                .filter(|line| line.starts_with("Ip:"))
                .collect::<Vec<_>>();
            // "Ip: Forwarding DefaultTTL ... ReasmOKs ..." then the values.
            let column = v4[0]
                .split_whitespace()
                .position(|name| name == "ReasmOKs")
                .expect("ReasmOKs column");
            let v4: u64 = v4[1]
                .split_whitespace()
                .nth(column)
                .unwrap()
                .parse()
                .unwrap();
            v4 + snmp6(netns, "Ip6ReasmOKs")
        };
        let before = reassembled(real1);
        let payload = vec![0x5a; 3000];
        for ip in [IpAddr::from(real_ip(0)), IpAddr::from(real_ip6(0))] {
            let addr = SocketAddr::new(ip, 7);
            let reply = far
                .far
                .run(|| udp_request(addr, &payload, TIMEOUT))
                .unwrap_or_else(|error| panic!("3000 bytes to {addr}: {error}"));
            assert_eq!(reply, "real1 3000\n", "reply from {addr}");
        }
        assert_eq!(server.datagrams(), 2);
        assert_eq!(
            reassembled(real1),
            before + 2,
            "datagrams reassembled by real1"
        );
    }
    assert_no_namespaces_left(&prefix);
}

fn assert_no_namespaces_left(prefix: &str) {
    let left = lb_tests::netns::list()
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
