//! The networks the forwarding-mode tests build (`lb_tests::topology::modes`), without the
//! load balancer: each does what the tunnel, NAT and full-NAT tests rely on. Needs root.
//!
//! - Routed site: the lb reaches a site host only through the site router, the client not at
//!   all, and what the host sends from the VIP reaches the client through the router (the
//!   path a tunnel real's replies take).
//! - Back segment: the lb reaches every host on it; a host left alone has no route to the
//!   client (full NAT), a NAT real reaches the client only through the lb, and so does a NAT
//!   real beside the client on the switch. With the lb's kernel routing (never during the
//!   balancer's tests) a NAT real answers the client and a host left alone cannot.
//! - Direct link: the lb's way to the real has the link's MTU, the real's way to a far client
//!   goes by the switch.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, Netns,
    http::{self, HttpServer},
    netns,
    privilege::require_root,
    topology::{
        CLIENT_IP, CLIENT_IP6, LB_IP, LB_IP6, VIP, VIP6,
        far_client::FAR_CLIENT_IP,
        modes::{
            self, BACK_NET, BACK_NET6, BACK_PREFIX_LEN, LB_BACK_IP, LB_BACK_IP6, LB_LINK_IP,
            LB_LINK_IP6, LINK_IF, LINK_REAL_IF, LINK_REAL_IP, LINK_REAL_IP6, SITE_ROUTER_IP,
            back_ip, back_ip6, prepare_tunnel_real, site_ip, site_ip6,
        },
        real_ip, real_ip6,
    },
    udp::UdpEchoServer,
};

const TIMEOUT: Duration = Duration::from_secs(3);
/// What a connection that must fail is given.
const SHORT: Duration = Duration::from_secs(1);

fn prefix(test: &str) -> String {
    modes::test_prefix(&format!("h{test}"))
}

fn any(port: u16) -> SocketAddr {
    modes::any_address(port)
}

/// GET / from `from`, which must answer `name`.
#[track_caller]
fn assert_answers(from: &Netns, addr: SocketAddr, name: &str) {
    let body = from
        .run(|| http::get(addr, "/", TIMEOUT))
        .unwrap_or_else(|e| panic!("GET / from {addr} in {}: {e}", from.name()));
    assert_eq!(body, format!("{name}\n"), "body from {addr}");
}

/// Whether `netns` has a route to `to` (a UDP connect is a route lookup).
fn has_route(netns: &Netns, to: IpAddr) -> bool {
    netns.run(|| {
        let local = match to {
            IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let socket = UdpSocket::bind(local).expect("binding a UDP socket");
        socket.connect(SocketAddr::new(to, 7)).is_ok()
    })
}

/// The source address `netns`'s kernel picks toward `to` (`src` of `ip route get`): what lbd
/// takes as the balancer's own address toward a real (tunnel source, full-NAT local address).
fn source_toward(netns: &Netns, to: IpAddr) -> IpAddr {
    let route = netns.ip(&["route", "get", &to.to_string()]);
    let mut words = route.split_whitespace();
    words
        .find(|word| *word == "src")
        .and_then(|_| words.next()?.parse().ok())
        .unwrap_or_else(|| panic!("no source toward {to}: {route}"))
}

/// One counter from the namespace's /proc/net/snmp (`Ip:` line) or /proc/net/snmp6.
fn ip_counter(netns: &Netns, counter: &str) -> u64 {
    let snmp = netns.exec(&["cat", "/proc/net/snmp"]);
    let ip: Vec<&str> = snmp
        .lines()
        .filter(|line| line.starts_with("Ip:"))
        .collect();
    if let Some(column) = ip[0].split_whitespace().position(|name| name == counter) {
        return ip[1]
            .split_whitespace()
            .nth(column)
            .unwrap()
            .parse()
            .unwrap();
    }
    netns
        .exec(&["cat", "/proc/net/snmp6"])
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(counter)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no counter {counter}"))
}

#[test]
fn a_routed_site_is_reached_through_its_router_and_answers_from_the_vip_past_the_lb() {
    if !require_root("a_routed_site_is_reached_through_its_router") {
        return;
    }
    let prefix = prefix("site");
    {
        let topology = DrTopology::build_dual_stack(&prefix, &[]);
        let site = topology.add_routed_site(&["t1", "t2"]);
        let servers: Vec<HttpServer> = site
            .hosts
            .iter()
            .map(|host| HttpServer::start(&host.netns, any(80), &host.name))
            .collect();

        // The lb reaches each host through the router, both families.
        for (index, host) in site.hosts.iter().enumerate() {
            for ip in [IpAddr::V4(site_ip(index)), IpAddr::V6(site_ip6(index))] {
                assert_answers(&topology.lb, SocketAddr::new(ip, 80), &host.name);
            }
        }
        let route = topology.lb.ip(&["route", "get", &site_ip(0).to_string()]);
        assert!(
            route.contains(&format!("via {SITE_ROUTER_IP} dev eth0")),
            "{route}"
        );
        // The lb's own address, never the VIP it also holds, is its source toward the site.
        assert_eq!(source_toward(&topology.lb, site_ip(0).into()), LB_IP);
        assert_eq!(source_toward(&topology.lb, site_ip6(0).into()), LB_IP6);
        // The client has no way there but the balancer's tunnels.
        assert!(!has_route(&topology.client, site_ip(0).into()));
        assert!(!has_route(&topology.client, site_ip6(0).into()));

        // A site host holds the VIPs on lo, and what it sends from them reaches the client
        // through the router (reverse-path filtering off there), as a tunnel real's replies do.
        let echo = UdpEchoServer::start(&topology.client, any(7), "client");
        for (host, (vip, client)) in site.hosts.iter().zip([
            (IpAddr::V4(VIP), IpAddr::V4(CLIENT_IP)),
            (IpAddr::V6(VIP6), IpAddr::V6(CLIENT_IP6)),
        ]) {
            let before = echo.datagrams();
            host.netns.run(|| {
                let socket = UdpSocket::bind(SocketAddr::new(vip, 0))
                    .unwrap_or_else(|e| panic!("binding {vip} in {}: {e}", host.name));
                socket
                    .send_to(b"from the VIP", SocketAddr::new(client, 7))
                    .unwrap_or_else(|e| panic!("sending from {vip} to {client}: {e}"));
            });
            let deadline = Instant::now() + TIMEOUT;
            while echo.datagrams() == before {
                assert!(
                    Instant::now() < deadline,
                    "{client} got nothing {} sent from {vip}",
                    host.name
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for (server, host) in servers.iter().zip(&site.hosts) {
            assert_eq!(server.requests(), 2, "requests served by {}", host.name);
        }
        drop((servers, echo));
    }
    assert_no_namespaces_left(&prefix);
}

#[test]
fn back_segment_hosts_are_reached_from_the_lb_and_only_nat_reals_route_clients_back() {
    if !require_root("back_segment_hosts_are_reached_from_the_lb") {
        return;
    }
    let prefix = prefix("back");
    {
        let topology = DrTopology::build_dual_stack(&prefix, &["nat-a"]);
        topology.make_nat_real("nat-a");
        let back = topology.add_back_segment(&["nat-b", "fn"]);
        back.route_clients_via_lb("nat-b");
        let nat_a = topology.real("nat-a");
        let (nat_b, full) = (&back.host("nat-b").netns, &back.host("fn").netns);
        let _servers = [
            HttpServer::start(nat_a, any(8080), "nat-a"),
            HttpServer::start(nat_b, any(8080), "nat-b"),
            HttpServer::start(full, any(8080), "fn"),
        ];

        // The balancer reaches every host of the back segment.
        for (index, name) in ["nat-b", "fn"].into_iter().enumerate() {
            for ip in [IpAddr::V4(back_ip(index)), IpAddr::V6(back_ip6(index))] {
                assert_answers(&topology.lb, SocketAddr::new(ip, 8080), name);
            }
        }
        // The lb's sources toward the reals: its own addresses on their segments.
        for (real, source) in [
            (IpAddr::V4(back_ip(1)), IpAddr::V4(LB_BACK_IP)),
            (back_ip6(1).into(), LB_BACK_IP6.into()),
            (real_ip(0).into(), LB_IP.into()),
            (real_ip6(0).into(), LB_IP6.into()),
        ] {
            assert_eq!(source_toward(&topology.lb, real), source, "toward {real}");
        }
        // A host left alone (full NAT) has no route to the client; NAT reals go through the lb.
        assert!(!has_route(full, CLIENT_IP.into()));
        assert!(!has_route(full, CLIENT_IP6.into()));
        for (netns, family, client, via) in [
            (nat_b, "-4", IpAddr::V4(CLIENT_IP), IpAddr::V4(LB_BACK_IP)),
            (nat_b, "-6", CLIENT_IP6.into(), LB_BACK_IP6.into()),
            (nat_a, "-4", CLIENT_IP.into(), LB_IP.into()),
            (nat_a, "-6", CLIENT_IP6.into(), LB_IP6.into()),
        ] {
            let route = netns.ip(&[family, "route", "get", &client.to_string()]);
            assert!(route.contains(&format!("via {via} ")), "{route}");
        }
        // The NAT real beside the client no longer holds the VIPs.
        let lo = nat_a.ip(&["addr", "show", "dev", "lo"]);
        assert!(
            !lo.contains(&VIP.to_string()) && !lo.contains(&VIP6.to_string()),
            "{lo}"
        );

        // With the lb's kernel routing (the balancer's tests never do this), the NAT reals
        // answer the client and every reply is forwarded by the lb; the host left alone cannot
        // answer at all.
        topology.lb.sysctl("net.ipv4.ip_forward", "1");
        topology.lb.sysctl("net.ipv6.conf.all.forwarding", "1");
        for conf in ["all", "eth0", "eth1"] {
            // A redirect would teach nat-a to skip the lb.
            topology
                .lb
                .sysctl(&format!("net.ipv4.conf.{conf}.send_redirects"), "0");
        }
        topology.client.ip(&[
            "route",
            "add",
            &format!("{BACK_NET}/{BACK_PREFIX_LEN}"),
            "via",
            &LB_IP.to_string(),
        ]);
        topology.client.ip(&[
            "-6",
            "route",
            "add",
            &format!("{BACK_NET6}/64"),
            "via",
            &LB_IP6.to_string(),
        ]);
        for (ip, name, counter) in [
            (IpAddr::V4(back_ip(0)), "nat-b", "ForwDatagrams"),
            (back_ip6(0).into(), "nat-b", "Ip6OutForwDatagrams"),
            (real_ip(0).into(), "nat-a", "ForwDatagrams"),
        ] {
            let before = ip_counter(&topology.lb, counter);
            assert_answers(&topology.client, SocketAddr::new(ip, 8080), name);
            let forwarded = ip_counter(&topology.lb, counter) - before;
            // nat-a's requests go straight to it; its replies (SYN-ACK, answer, FIN) cross.
            assert!(forwarded >= 3, "{name}: {forwarded} packets through the lb");
        }
        for ip in [IpAddr::V4(back_ip(1)), back_ip6(1).into()] {
            let addr = SocketAddr::new(ip, 8080);
            let result = topology.client.run(|| http::get(addr, "/", SHORT));
            assert!(result.is_err(), "{addr} answered without a route back");
        }
    }
    assert_no_namespaces_left(&prefix);
}

#[test]
fn a_direct_link_has_its_own_mtu_and_the_real_replies_by_the_switch() {
    if !require_root("a_direct_link_has_its_own_mtu") {
        return;
    }
    let prefix = prefix("link");
    {
        let topology = DrTopology::build_dual_stack(&prefix, &["tun"]);
        let _far = topology.add_far_client();
        topology.add_direct_link("tun", 1400);
        let tun = topology.real("tun");
        prepare_tunnel_real(tun);
        let _server = HttpServer::start(tun, any(8080), "tun");

        let link = topology.lb.ip(&["link", "show", "dev", LINK_IF]);
        assert!(link.contains("mtu 1400 "), "{link}");
        for ip in [IpAddr::V4(LINK_REAL_IP), IpAddr::V6(LINK_REAL_IP6)] {
            let route = topology.lb.ip(&["route", "get", &ip.to_string()]);
            assert!(route.contains(&format!("dev {LINK_IF} ")), "{route}");
            let own = if ip.is_ipv4() {
                IpAddr::V4(LB_LINK_IP)
            } else {
                LB_LINK_IP6.into()
            };
            assert_eq!(source_toward(&topology.lb, ip), own);
            assert_answers(&topology.lb, SocketAddr::new(ip, 8080), "tun");
        }
        let route = tun.ip(&["route", "get", &FAR_CLIENT_IP.to_string()]);
        assert!(route.contains("dev eth0 "), "{route}");
        let rp_filter = tun.exec(&["cat", "/proc/sys/net/ipv4/conf/eth1/rp_filter"]);
        assert_eq!(rp_filter.trim(), "0");
        let features = tun.exec(&["ethtool", "-k", LINK_REAL_IF]);
        assert!(
            features.contains("generic-receive-offload: on"),
            "{features}"
        );
    }
    assert_no_namespaces_left(&prefix);
}

fn assert_no_namespaces_left(prefix: &str) {
    let left = netns::list()
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
