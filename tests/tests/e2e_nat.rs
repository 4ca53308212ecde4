//! NAT and full-NAT forwarding end to end, IPv4 and IPv6, through the real `lbd`.
//!
//! - NAT (LVS-NAT): the balancer rewrites the destination to the real's address and port (the
//!   service's port 80 to the real's 8080, 53 to 5300) and the real's replies, routed back
//!   through the balancer, get the VIP and the service's port back before any kernel sees
//!   them. One real sits beside the client on the switch (one interface, the real routing the
//!   client through the lb), one behind the balancer's second interface. The reals see the
//!   client's own address.
//! - Full NAT: the source becomes the balancer's address too, so reals on a segment of their
//!   own, with no route anywhere, answer; they see the balancer's address (by default its
//!   address on their segment; from `snat_pool` when the service has one).
//!
//! Each checks TCP (HTTP) and UDP; the client's connected UDP socket takes only a reply from
//! the VIP and the service's port, so an untranslated reply fails. Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    DrTopology, Netns, VIP,
    http::{self, HttpClient, HttpServer},
    lbd::Lbd,
    netns,
    privilege::require_root,
    topology::{
        CLIENT_IP, CLIENT_IP6, VIP6,
        modes::{self, BACK_IF, LB_BACK_IP, LB_BACK_IP6, back_ip, back_ip6},
        real_ip, real_ip6,
    },
    udp::{UdpEchoServer, datagrams_per_server},
};

const TIMEOUT: Duration = Duration::from_secs(5);
const FLOWS: usize = 8;
const REQUESTS_PER_CONNECTION: usize = 2;
/// The reals' ports for the services' 80 (TCP) and 53 (UDP).
const REAL_HTTP_PORT: u16 = 8080;
const REAL_UDP_PORT: u16 = 5300;

fn prefix(test: &str) -> String {
    modes::test_prefix(test)
}

fn instance(test: &str) -> String {
    modes::test_instance(test)
}

fn any(port: u16) -> SocketAddr {
    modes::any_address(port)
}

/// A service of `forward` whose reals listen on `real_port`, in the flow style.
fn service(
    vip: IpAddr,
    port: u16,
    protocol: &str,
    forward: &str,
    reals: &[IpAddr],
    real_port: u16,
    extra: &str,
) -> String {
    let reals = reals
        .iter()
        .map(|real| format!("{{address: {real}, port: {real_port}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  - {{vip: {vip}, port: {port}, protocol: {protocol}, scheduler: rr, \
         forward: {forward}{extra}, reals: [{reals}]}}\n"
    )
}

fn config(services: &str) -> String {
    format!(
        "interfaces:\n  - {{name: eth0, xdp_mode: native}}\n  - {{name: {BACK_IF}, xdp_mode: native}}\n\
         services:\n{services}limits: {{flows: 65536, services: 32, reals: 64}}\n"
    )
}

/// HTTP on [`REAL_HTTP_PORT`] and UDP echo on [`REAL_UDP_PORT`], both families, named `name`.
fn servers(netns: &Netns, name: &str) -> (HttpServer, UdpEchoServer) {
    (
        HttpServer::start(netns, any(REAL_HTTP_PORT), name),
        UdpEchoServer::start(netns, any(REAL_UDP_PORT), name),
    )
}

/// Two NAT reals serving HTTP and UDP: `nat-a` beside the client (it routes the clients
/// through the balancer), `nat-b` behind the balancer's second interface.
fn two_nat_reals(
    test: &str,
    dual_stack: bool,
) -> (
    DrTopology,
    modes::BackSegment,
    [(HttpServer, UdpEchoServer); 2],
) {
    let prefix = prefix(test);
    netns::remove_leftovers(&prefix);
    let topology = if dual_stack {
        DrTopology::build_dual_stack(&prefix, &["nat-a"])
    } else {
        DrTopology::build(&prefix, &["nat-a"])
    };
    topology.attach_pass_program();
    topology.make_nat_real("nat-a");
    let back = topology.add_back_segment(&["nat-b"]);
    back.route_clients_via_lb("nat-b");
    let servers = [
        servers(topology.real("nat-a"), "nat-a"),
        servers(&back.host("nat-b").netns, "nat-b"),
    ];
    (topology, back, servers)
}

/// `FLOWS` HTTP connections to `vip:80` and `FLOWS` datagrams to `vip:53`: each real must
/// answer some of both.
fn check_spread(client: &Netns, lbd: &Lbd, vip: IpAddr, reals: &[&str]) {
    let target = SocketAddr::new(vip, 80);
    let results = http::connections(client, target, FLOWS, REQUESTS_PER_CONNECTION, TIMEOUT);
    let tcp = http::connections_per_server(&results, REQUESTS_PER_CONNECTION, || lbd.log());
    let target = SocketAddr::new(vip, 53);
    let udp = datagrams_per_server(client, target, FLOWS, b"which real?", TIMEOUT, || lbd.log());
    for (protocol, per_real) in [("tcp", &tcp), ("udp", &udp)] {
        for real in reals {
            assert!(
                per_real.get(*real).copied().unwrap_or(0) > 0,
                "{protocol} to {vip}: {real} answered nothing: {per_real:?}"
            );
        }
        assert_eq!(per_real.values().sum::<u64>(), FLOWS as u64, "{per_real:?}");
    }
}

/// Opens kept-alive connections to `vip:80` until every real in `reals` holds one (bounded),
/// and returns them with the real that answered each.
fn one_connection_per_real(
    client: &Netns,
    lbd: &Lbd,
    vip: IpAddr,
    reals: &[&str],
) -> Vec<(String, HttpClient)> {
    let target = SocketAddr::new(vip, 80);
    let mut kept: Vec<(String, HttpClient)> = Vec::new();
    for _ in 0..4 * reals.len() {
        if reals
            .iter()
            .all(|real| kept.iter().any(|(name, _)| name == real))
        {
            break;
        }
        let mut connection = client
            .run(|| HttpClient::connect(target, TIMEOUT))
            .unwrap_or_else(|e| panic!("connecting to {target}: {e}\n{}", lbd.log()));
        let name = connection
            .get("/")
            .unwrap_or_else(|e| panic!("GET / from {target}: {e}\n{}", lbd.log()));
        kept.push((name.trim_end().to_owned(), connection));
    }
    for real in reals {
        assert!(
            kept.iter().any(|(name, _)| name == real),
            "{} connections to {target}, none on {real}",
            kept.len()
        );
    }
    kept
}

/// Whom each real's HTTP server sees at the other end of its connections, by real name.
fn peers_seen(reals: &[(&str, &Netns)]) -> HashMap<String, Vec<IpAddr>> {
    reals
        .iter()
        .map(|(name, netns)| {
            let peers = netns
                .tcp_peers(REAL_HTTP_PORT)
                .into_iter()
                .map(|peer| peer.ip())
                .collect();
            (name.to_string(), peers)
        })
        .collect()
}

#[test]
fn nat_maps_80_to_8080_for_a_real_beside_the_client_and_one_behind_a_second_interface() {
    if !require_root("e2e_nat") {
        return;
    }
    let (topology, back, _servers) = two_nat_reals("nat", true);
    let (nat_a, nat_b) = (topology.real("nat-a"), &back.host("nat-b").netns);

    let mut services = String::new();
    for (vip, reals) in [
        (IpAddr::V4(VIP), [real_ip(0).into(), back_ip(0).into()]),
        (IpAddr::V6(VIP6), [real_ip6(0).into(), back_ip6(0).into()]),
    ] {
        services += &service(vip, 80, "tcp", "nat", &reals, REAL_HTTP_PORT, "");
        services += &service(vip, 53, "udp", "nat", &reals, REAL_UDP_PORT, "");
    }
    let lbd = Lbd::start(&topology.lb, &instance("nat"), &config(&services));

    for (vip, client) in [
        (IpAddr::V4(VIP), IpAddr::V4(CLIENT_IP)),
        (IpAddr::V6(VIP6), IpAddr::V6(CLIENT_IP6)),
    ] {
        check_spread(&topology.client, &lbd, vip, &["nat-a", "nat-b"]);

        // The reals see the client itself (only the destination was rewritten).
        let kept = one_connection_per_real(&topology.client, &lbd, vip, &["nat-a", "nat-b"]);
        for (name, peers) in peers_seen(&[("nat-a", nat_a), ("nat-b", nat_b)]) {
            assert!(
                !peers.is_empty() && peers.iter().all(|peer| *peer == client),
                "{name} sees {peers:?}, not only {client}"
            );
        }
        // Kept connections go on through their reals.
        for (name, mut connection) in kept {
            let again = connection
                .get("/again")
                .unwrap_or_else(|e| panic!("second GET on {name}'s connection: {e}"));
            assert_eq!(again.trim_end(), name);
        }
    }

    let listing = lbd.listing();
    for service in &listing.services {
        for real in &service.reals {
            assert_eq!(real.forward, "nat", "{}: {listing:#?}", real.address);
        }
    }
    let table = lbd.lbadm(&["-L", "-n"]);
    for line in [
        format!("  -> {}:{REAL_HTTP_PORT} ", real_ip(0)),
        format!("  -> [{}]:{REAL_UDP_PORT} ", back_ip6(0)),
    ] {
        assert!(table.contains(&line), "{line:?} not in:\n{table}");
    }
    let real_lines = table
        .lines()
        .filter(|line| line.starts_with("  -> ") && !line.contains("RemoteAddress"));
    for line in real_lines {
        assert!(line.contains(" Masq "), "{table}");
    }
    assert!(lbd.reason("forwarded_reply") > 0, "{:?}", listing.reasons);
    assert_eq!(lbd.reason("drop_nat_no_port"), 0, "{:?}", listing.reasons);
}

#[test]
fn fullnat_reaches_reals_that_have_no_route_back_to_the_client() {
    if !require_root("e2e_nat fullnat") {
        return;
    }
    let prefix = prefix("fnat");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build_dual_stack(&prefix, &[]);
    topology.attach_pass_program();
    let back = topology.add_back_segment(&["fn1", "fn2"]);
    let reals: Vec<(&str, &Netns)> = back
        .hosts
        .iter()
        .map(|host| (host.name.as_str(), &host.netns))
        .collect();
    let _servers: Vec<_> = reals
        .iter()
        .map(|(name, netns)| servers(netns, name))
        .collect();
    // Addresses of a pool, held by the balancer on the reals' segment (so that it answers ARP
    // and neighbour solicitations for them). The IPv6 ones deprecated: they would otherwise
    // be the source address selection prefers toward the reals (a longer match than the
    // lb's own /64), and so the local address of the service without a pool.
    let pool4 = ["203.0.113.130", "203.0.113.131"];
    let pool6 = ["2001:db8:4::130", "2001:db8:4::131"];
    for address in pool4 {
        topology
            .lb
            .ip(&["addr", "add", &format!("{address}/32"), "dev", BACK_IF]);
    }
    for address in pool6 {
        topology.lb.ip(&[
            "addr",
            "add",
            &format!("{address}/128"),
            "dev",
            BACK_IF,
            "nodad",
            "preferred_lft",
            "0",
        ]);
    }

    let mut services = String::new();
    for (vip, reals, pool) in [
        (
            IpAddr::V4(VIP),
            [back_ip(0).into(), back_ip(1).into()],
            pool4,
        ),
        (
            IpAddr::V6(VIP6),
            [back_ip6(0).into(), back_ip6(1).into()],
            pool6,
        ),
    ] {
        services += &service(vip, 80, "tcp", "fullnat", &reals, REAL_HTTP_PORT, "");
        services += &service(vip, 53, "udp", "fullnat", &reals, REAL_UDP_PORT, "");
        // The same reals through a service with a pool of local addresses.
        let pool = format!(", snat_pool: [{}]", pool.join(", "));
        services += &service(vip, 81, "tcp", "fullnat", &reals, REAL_HTTP_PORT, &pool);
    }
    let lbd = Lbd::start(&topology.lb, &instance("fnat"), &config(&services));

    for (vip, lb_address, pool) in [
        (IpAddr::V4(VIP), IpAddr::V4(LB_BACK_IP), pool4),
        (IpAddr::V6(VIP6), IpAddr::V6(LB_BACK_IP6), pool6),
    ] {
        // The premise: the reals cannot reach the client at all.
        for (name, netns) in &reals {
            let client = if vip.is_ipv4() {
                CLIENT_IP.to_string()
            } else {
                CLIENT_IP6.to_string()
            };
            let route = std::process::Command::new("ip")
                .args(["-n", netns.name(), "route", "get", &client])
                .output()
                .expect("running ip route get");
            assert!(
                !route.status.success(),
                "{name} has a route to {client}: {}",
                String::from_utf8_lossy(&route.stdout)
            );
        }

        check_spread(&topology.client, &lbd, vip, &["fn1", "fn2"]);

        // The reals see the balancer's address on their segment, from its local ports.
        let kept = one_connection_per_real(&topology.client, &lbd, vip, &["fn1", "fn2"]);
        for (name, netns) in &reals {
            let peers = netns.tcp_peers(REAL_HTTP_PORT);
            assert!(
                !peers.is_empty()
                    && peers.iter().all(|peer| peer.ip() == lb_address
                        && (lb_common::LOCAL_PORT_FIRST
                            ..lb_common::LOCAL_PORT_FIRST + lb_common::LOCAL_PORT_COUNT)
                            .contains(&peer.port())),
                "{name} sees {peers:?}, not {lb_address} from a local port"
            );
        }
        drop(kept);

        // Through the service with a pool, the reals see addresses of the pool.
        let pool: Vec<IpAddr> = pool
            .iter()
            .map(|address| address.parse().unwrap())
            .collect();
        let target = SocketAddr::new(vip, 81);
        let results = http::connections(&topology.client, target, FLOWS, 1, TIMEOUT);
        http::connections_per_server(&results, 1, || lbd.log());
        let kept: Vec<HttpClient> = (0..4)
            .map(|_| {
                let mut connection = topology
                    .client
                    .run(|| HttpClient::connect(target, TIMEOUT))
                    .unwrap_or_else(|e| panic!("connecting to {target}: {e}\n{}", lbd.log()));
                connection.get("/").expect("GET / through the pool");
                connection
            })
            .collect();
        let seen: Vec<IpAddr> = reals
            .iter()
            .flat_map(|(_, netns)| netns.tcp_peers(REAL_HTTP_PORT))
            .map(|peer| peer.ip())
            .collect();
        assert_eq!(seen.len(), kept.len(), "{seen:?}");
        assert!(
            seen.iter().all(|peer| pool.contains(peer)),
            "{target}: the reals see {seen:?}, not addresses of {pool:?}"
        );
    }

    let table = lbd.lbadm(&["-L", "-n"]);
    let real_lines = table
        .lines()
        .filter(|line| line.starts_with("  -> ") && !line.contains("RemoteAddress"));
    for line in real_lines {
        assert!(line.contains(" FullNat "), "{table}");
    }
    let listing = lbd.listing();
    assert!(lbd.reason("forwarded_reply") > 0, "{:?}", listing.reasons);
    assert_eq!(lbd.reason("drop_nat_no_port"), 0, "{:?}", listing.reasons);
}

/// Interfaces change live: a reload adds the back segment's interface with a NAT real behind
/// it (the program is attached there before the real is scheduled, so its replies are
/// translated), and a later reload removes both (the program leaves the interface).
#[test]
fn a_reload_adds_an_interface_and_a_later_one_removes_it() {
    if !require_root("e2e_nat interfaces") {
        return;
    }
    let (topology, _back, _servers) = two_nat_reals("nif", false);
    let vip = IpAddr::V4(VIP);
    let one = |reals: &[IpAddr]| {
        service(vip, 80, "tcp", "nat", reals, REAL_HTTP_PORT, "")
            + &service(vip, 53, "udp", "nat", reals, REAL_UDP_PORT, "")
    };
    let front_only = format!(
        "interfaces:\n  - {{name: eth0, xdp_mode: native}}\nservices:\n{}limits: {{flows: 65536, services: 32, reals: 64}}\n",
        one(&[real_ip(0).into()])
    );
    let mut lbd = Lbd::start(&topology.lb, &instance("nif"), &front_only);
    let reload = |lbd: &Lbd, text: &str| {
        let head: String = std::fs::read_to_string(lbd.config_path())
            .unwrap()
            .lines()
            .take_while(|line| !line.starts_with("interfaces:"))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(lbd.config_path(), format!("{head}{text}")).unwrap();
        let applied = lbd.log().matches("reload applied").count();
        lbd.signal(libc::SIGHUP);
        let deadline = std::time::Instant::now() + TIMEOUT;
        while lbd.log().matches("reload applied").count() == applied {
            assert!(!lbd.log().contains("reload refused"), "{}", lbd.log());
            assert!(std::time::Instant::now() < deadline, "{}", lbd.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let xdp_on_back = || topology.lb.ip(&["link", "show", BACK_IF]).contains("xdp");
    assert!(!xdp_on_back(), "nothing on {BACK_IF} before the reload");

    reload(&lbd, &config(&one(&[real_ip(0).into(), back_ip(0).into()])));
    assert!(xdp_on_back(), "the program is on {BACK_IF}:\n{}", lbd.log());
    let status = lbd.status();
    assert!(
        status
            .interfaces
            .iter()
            .any(|interface| interface.name == BACK_IF
                && interface.attached_mode.as_deref() == Some("native")),
        "{status:?}"
    );
    check_spread(&topology.client, &lbd, vip, &["nat-a", "nat-b"]);
    assert!(lbd.reason("forwarded_reply") > 0);

    reload(&lbd, &front_only);
    assert!(!xdp_on_back(), "the program left {BACK_IF}:\n{}", lbd.log());
    assert_eq!(lbd.status().interfaces.len(), 1);
    check_spread(&topology.client, &lbd, vip, &["nat-a"]);

    // Added again, adopted by a restart, then removed by a reload: the adopted link goes too.
    reload(&lbd, &config(&one(&[real_ip(0).into(), back_ip(0).into()])));
    lbd.restart(&topology.lb);
    assert!(xdp_on_back(), "the restart kept {BACK_IF}");
    reload(&lbd, &front_only);
    assert!(
        !xdp_on_back(),
        "the program left {BACK_IF} after a restart:\n{}",
        lbd.log()
    );

    // A restart with an interface gone from the config detaches what an earlier daemon left.
    reload(&lbd, &config(&one(&[real_ip(0).into(), back_ip(0).into()])));
    assert!(lbd.stop().success());
    assert!(xdp_on_back(), "a stop leaves the program attached");
    lbd.edit_config(&format!("  - {{name: {BACK_IF}, xdp_mode: native}}\n"), "");
    lbd.edit_config(
        &format!(", {{address: {}, port: {REAL_HTTP_PORT}}}", back_ip(0)),
        "",
    );
    lbd.edit_config(
        &format!(", {{address: {}, port: {REAL_UDP_PORT}}}", back_ip(0)),
        "",
    );
    lbd.restart(&topology.lb);
    assert!(
        !xdp_on_back(),
        "the restart detached {BACK_IF}:\n{}",
        lbd.log()
    );
    assert!(lbd.log().contains("no longer configured"), "{}", lbd.log());
    check_spread(&topology.client, &lbd, vip, &["nat-a"]);
}
