//! The control plane of tunnel and NAT forwarding against a real kernel: routes to reals read
//! over rtnetlink and the placement built on them, the egress entries and settings in the
//! program's maps, and the sweep of NAT reply entries. Needs root.
//!
//! The route test uses two namespaces, `lbt-fwd-<pid>-a` and `-b`, joined by two veth pairs:
//! `eth0` (192.0.2.0/24, 2001:db8::/64) and `other0` (203.0.113.0/24). Namespace a routes
//! 198.51.100.0/24 and 2001:db8:5::/64 through b on eth0, and 10.9.0.0/16 through b on
//! other0.

use std::{net::IpAddr, os::fd::AsFd, time::Duration};

use lb_common::{
    FAMILY_IPV4, FORWARD_FULLNAT, FORWARD_NAT, FORWARD_TUN, Flow, FlowKey, PROTO_TCP, Reply,
    TUNNEL_GUE, conntrack::SETTINGS_TRANSLATES_REPLIES, conntrack::STATE_ESTABLISHED,
};
use lb_tests::{
    Netns,
    fixture::{BALANCER_V4, BALANCER_V6, Balancer},
    netns,
    privilege::require_root,
};
use lb_userspace::{
    admin::monotonic_now_ns,
    config,
    dataplane::{Dataplane as _, batch},
    neighbour::{NeighbourError, Neighbours, Routes},
    reconcile::{Desired, ReconcileError, address_bytes},
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn routes_to_reals_come_from_the_kernel() {
    if !require_root("routes_to_reals_come_from_the_kernel") {
        return;
    }
    let prefix = format!("lbt-fwd-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let a = Netns::create(&format!("{prefix}a"));
    let b = Netns::create(&format!("{prefix}b"));
    for link in ["eth0", "other0"] {
        a.ip(&[
            "link",
            "add",
            link,
            "type",
            "veth",
            "peer",
            "name",
            link,
            "netns",
            b.name(),
        ]);
    }
    for (ns, host) in [(&a, "1"), (&b, "2")] {
        ns.ip(&["addr", "add", &format!("192.0.2.{host}/24"), "dev", "eth0"]);
        let v6 = format!("2001:db8::{host}/64");
        ns.ip(&["addr", "add", &v6, "dev", "eth0", "nodad"]);
        ns.ip(&[
            "addr",
            "add",
            &format!("203.0.113.{host}/24"),
            "dev",
            "other0",
        ]);
        for link in ["lo", "eth0", "other0"] {
            ns.ip(&["link", "set", link, "up"]);
        }
    }
    a.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.2"]);
    a.ip(&["route", "add", "2001:db8:5::/64", "via", "2001:db8::2"]);
    a.ip(&["route", "add", "10.9.0.0/16", "via", "203.0.113.2"]);

    a.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), routes_body())
                .await
                .expect("the route lookups finish")
        })
    });
}

async fn routes_body() {
    let neighbours = Neighbours::new().expect("a netlink socket");
    let eth0 = neighbours.interface("eth0").await.expect("eth0");
    let route = |addr: &'static str| {
        let neighbours = &neighbours;
        async move { neighbours.route(ip(addr)).await }
    };

    let routed = route("198.51.100.7")
        .await
        .expect("a route to 198.51.100.7");
    assert_eq!(
        (
            routed.ifindex,
            routed.interface.as_str(),
            routed.gateway,
            routed.prefsrc
        ),
        (
            eth0.index,
            "eth0",
            Some(ip("192.0.2.2")),
            Some(ip("192.0.2.1"))
        )
    );
    let connected = route("192.0.2.9").await.expect("a route to 192.0.2.9");
    assert_eq!(
        (connected.ifindex, connected.gateway, connected.prefsrc),
        (eth0.index, None, Some(ip("192.0.2.1")))
    );
    let routed6 = route("2001:db8:5::7")
        .await
        .expect("a route to 2001:db8:5::7");
    assert_eq!(
        (routed6.ifindex, routed6.gateway, routed6.prefsrc),
        (eth0.index, Some(ip("2001:db8::2")), Some(ip("2001:db8::1")))
    );
    let elsewhere = route("10.9.9.9").await.expect("a route to 10.9.9.9");
    assert_eq!(elsewhere.interface, "other0");

    // No route at all (no default route here), and the balancer's own address.
    match route("100.64.0.1").await {
        Err(error @ NeighbourError::NoRoute { .. }) => {
            assert!(error.to_string().contains("100.64.0.1"), "{error}")
        }
        other => panic!("100.64.0.1: expected NoRoute, got {other:?}"),
    }
    match route("192.0.2.1").await {
        Err(error @ NeighbourError::BadRoute { .. }) => {
            assert!(error.to_string().contains("192.0.2.1"), "{error}")
        }
        other => panic!("192.0.2.1 (local): expected BadRoute, got {other:?}"),
    }

    // Placement on those routes, with eth0 the only XDP interface.
    let yaml = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    forward: tun
    reals:
      - {address: 198.51.100.7}
      - {address: 2001:db8:5::7}
      - {address: 192.0.2.9, forward: fullnat, port: 8080}
";
    let config = config::parse(yaml, "test.yaml").unwrap();
    let mut routes = Routes::new();
    for real in ["198.51.100.7", "2001:db8:5::7", "192.0.2.9"] {
        routes.insert(ip(real), neighbours.route(ip(real)).await.unwrap());
    }
    let desired = Desired::new(&config, vec![eth0.clone()], &routes).expect("placed");
    let placed: Vec<(IpAddr, IpAddr, Vec<IpAddr>)> = desired.services[0]
        .reals
        .iter()
        .map(|real| (real.config.address, real.next_hop, real.sources.clone()))
        .collect();
    assert_eq!(
        placed,
        [
            (ip("198.51.100.7"), ip("192.0.2.2"), vec![ip("192.0.2.1")]),
            (
                ip("2001:db8:5::7"),
                ip("2001:db8::2"),
                vec![ip("2001:db8::1")]
            ),
            (ip("192.0.2.9"), ip("192.0.2.9"), vec![ip("192.0.2.1")]),
        ]
    );

    let yaml = yaml.replace("198.51.100.7}", "10.9.9.9}");
    let config = config::parse(&yaml, "test.yaml").unwrap();
    routes.insert(
        ip("10.9.9.9"),
        neighbours.route(ip("10.9.9.9")).await.unwrap(),
    );
    match Desired::new(&config, vec![eth0], &routes) {
        Err(error @ ReconcileError::RouteNotXdp { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("real 10.9.9.9")
                    && message.contains("via 203.0.113.2 dev other0")
                    && message.contains("leaves through other0"),
                "{message}"
            );
        }
        other => panic!("10.9.9.9 through other0: expected RouteNotXdp, got {other:?}"),
    }
}

const MAPS: &str = "
instance: fixture
interfaces: [{name: lo}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    forward: tun
    tunnel: gue
    gue_port: 5555
    reals:
      - {address: 198.51.100.11}
      - {address: 2001:db8::12}
  - vip: 192.0.2.100
    port: 53
    protocol: tcp
    forward: nat
    reals:
      - {address: 198.51.100.21, port: 5353}
      - {address: 198.51.100.22, forward: fullnat, port: 5353}
";

#[test]
fn egress_entries_and_the_settings_flag_reach_the_program() {
    let Some(balancer) = Balancer::for_test("egress_entries_and_the_settings_flag", MAPS) else {
        return;
    };
    let id = |service: usize, addr: &str| balancer.real_id(service, ip(addr));
    let egress = |real_id: u32| {
        balancer
            .dataplane
            .egress(real_id)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let tunnel = egress(id(0, "198.51.100.11")).expect("the IPv4 tunnel real's entry");
    assert_eq!(
        (
            tunnel.source_count,
            tunnel.sources[0],
            tunnel.tunnel,
            u16::from_be(tunnel.gue_port_be)
        ),
        (
            1,
            address_bytes(IpAddr::V4(BALANCER_V4)).0,
            TUNNEL_GUE,
            5555
        )
    );
    let tunnel6 = egress(id(0, "2001:db8::12")).expect("the IPv6 tunnel real's entry");
    assert_eq!(tunnel6.sources[0], BALANCER_V6.octets());
    let full_nat = egress(id(1, "198.51.100.22")).expect("the full-NAT real's entry");
    assert_eq!(
        (full_nat.source_count, full_nat.sources[0], full_nat.tunnel),
        (1, address_bytes(IpAddr::V4(BALANCER_V4)).0, 0)
    );
    assert_eq!(egress(id(1, "198.51.100.21")), None, "NAT needs none");

    let reals = balancer.dataplane.reals().unwrap();
    let entry = |real_id: u32| reals.iter().find(|(id, _)| *id == real_id).unwrap().1;
    assert_eq!(entry(id(0, "198.51.100.11")).forward, FORWARD_TUN);
    let nat = entry(id(1, "198.51.100.21"));
    assert_eq!(
        (nat.forward, u16::from_be(nat.port_be)),
        (FORWARD_NAT, 5353)
    );
    assert_eq!(entry(id(1, "198.51.100.22")).forward, FORWARD_FULLNAT);
    assert_eq!(
        balancer.dataplane.settings().unwrap().flags & SETTINGS_TRANSLATES_REPLIES,
        SETTINGS_TRANSLATES_REPLIES
    );
}

#[test]
fn the_sweep_removes_reply_entries_whose_flow_is_gone() {
    let Some(balancer) = Balancer::for_test("the_sweep_removes_reply_entries", MAPS) else {
        return;
    };
    let nat = balancer.real_id(1, ip("198.51.100.21"));
    let service = balancer.state.services[1].id;
    let client = |port: u16| FlowKey {
        src: address_bytes(ip("203.0.113.9")).0,
        dst: address_bytes(ip("192.0.2.100")).0,
        src_port_be: port.to_be(),
        dst_port_be: 53u16.to_be(),
        protocol: PROTO_TCP,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    // The reply as the real sends it: from the real, to the client.
    let reply_key = |port: u16| FlowKey {
        src: address_bytes(ip("198.51.100.21")).0,
        dst: address_bytes(ip("203.0.113.9")).0,
        src_port_be: 5353u16.to_be(),
        dst_port_be: port.to_be(),
        ..client(port)
    };
    let reply = |port: u16, real_id: u32| Reply {
        flow: client(port),
        real_id,
        ..Reply::default()
    };
    let now = monotonic_now_ns();
    let flow = Flow {
        real_id: nat,
        service_id: service,
        last_seen_ns: now,
        state: u32::from(STATE_ESTABLISHED),
        ..Flow::default()
    };
    // A live flow (port 1000) and its reply; a reply without a flow (2000); a reply naming
    // another real than its flow's (1000 again, under another key).
    batch::update(
        balancer.reader.flows().fd().as_fd(),
        &[client(1000)],
        &[flow],
    )
    .unwrap();
    let mut stale_key = reply_key(1000);
    stale_key.src_port_be = 6000u16.to_be();
    let replies = balancer
        .sweeper
        .replies()
        .expect("the program has a replies map");
    batch::update(
        replies.fd().as_fd(),
        &[reply_key(1000), reply_key(2000), stale_key],
        &[reply(1000, nat), reply(2000, nat), reply(1000, nat + 1)],
    )
    .unwrap();
    balancer
        .reader
        .add_connection(nat, STATE_ESTABLISHED, 1)
        .unwrap();

    let remaining = || {
        let mut keys = Vec::new();
        batch::for_each::<FlowKey, Reply>(replies.fd().as_fd(), |key, _| keys.push(*key)).unwrap();
        keys
    };
    // An orphan goes on the second sweep that finds it one: the first may have caught a
    // claim whose flow was about to be recorded.
    let report = balancer.sweeper.sweep(now).unwrap();
    assert_eq!(
        (
            report.flows,
            report.removed,
            report.replies,
            report.replies_removed
        ),
        (1, 0, 3, 0)
    );
    assert_eq!(remaining().len(), 3);
    let report = balancer.sweeper.sweep(now).unwrap();
    assert_eq!((report.replies, report.replies_removed), (3, 2));
    assert_eq!(remaining(), [reply_key(1000)]);

    // Once the flow expires, its reply goes with it, a sweep later.
    let later = now + Duration::from_secs(3600).as_nanos() as u64;
    let report = balancer.sweeper.sweep(later).unwrap();
    assert_eq!(
        (report.removed, report.replies, report.replies_removed),
        (1, 1, 0)
    );
    let report = balancer.sweeper.sweep(later).unwrap();
    assert_eq!((report.replies, report.replies_removed), (1, 1));
    assert!(remaining().is_empty());
}
