//! IPv6 end to end: the DR topology dual stack, real HTTP over IPv6 to a VIP through the real
//! `lbd`, reals' MACs found by neighbour discovery. What the foundation guarantees for IPv4
//! holds: weights, each connection on one real, drain, counters, the listing, and a restart
//! that adopts every flow. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    DrTopology,
    http::{self, HttpClient, HttpServer},
    lbd::{Lbd, assert_split_follows_weights},
    netns,
    privilege::require_root,
    topology::VIP6,
};

/// (name, weight): real4 is drained.
const REALS: [(&str, u32); 4] = [("real1", 1), ("real2", 2), ("real3", 3), ("real4", 0)];
const CONNECTIONS: usize = 120;
const REQUESTS_PER_CONNECTION: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

const CONFIG: &str = "
interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: 2001:db8::100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 2001:db8::11, weight: 1}
      - {address: 2001:db8::12, weight: 2}
      - {address: 2001:db8::13, weight: 3}
      - {address: 2001:db8::14, weight: 0}
limits: {flows: 65536, services: 16, reals: 64}
";

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V6(VIP6), 80)
}

#[test]
fn http_over_ipv6_is_spread_by_weight_and_survives_a_daemon_restart() {
    if !require_root("e2e_ipv6") {
        return;
    }
    let prefix = format!("lbt-v6-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let names: Vec<&str> = REALS.iter().map(|(name, _)| *name).collect();
    let topology = DrTopology::build_dual_stack(&prefix, &names);
    topology.attach_pass_program();
    let _servers: Vec<HttpServer> = topology
        .reals
        .iter()
        .map(|(name, netns, _)| HttpServer::start(netns, "[::]:80".parse().unwrap(), name))
        .collect();
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-v6-{}", std::process::id()),
        CONFIG,
    );

    let mut kept = topology
        .client
        .run(|| HttpClient::connect(vip(), TIMEOUT))
        .unwrap_or_else(|e| panic!("connecting to [{VIP6}]:80: {e}\n{}", lbd.log()));
    let kept_real = kept.get("/").expect("first request on the kept connection");

    let results = http::connections(
        &topology.client,
        vip(),
        CONNECTIONS,
        REQUESTS_PER_CONNECTION,
        TIMEOUT,
    );
    let mut per_real =
        http::connections_per_server(&results, REQUESTS_PER_CONNECTION, || lbd.log());
    *per_real.entry(kept_real.trim_end().to_owned()).or_default() += 1;

    // The split follows the weights (see the helper for the bound); the drained real gets
    // nothing.
    let per_cpu = lbd.new_flows_per_cpu(1);
    assert_eq!(
        per_cpu.iter().sum::<u64>(),
        CONNECTIONS as u64 + 1,
        "{per_cpu:?}"
    );
    assert_split_follows_weights(&per_real, &REALS, &per_cpu);
    assert_eq!(per_real.get("real4"), None, "the drained real took a flow");

    // Counters and the listing, in ipvsadm's IPv6 notation.
    let listing = lbd.listing();
    let service = &listing.services[0];
    assert_eq!(service.vip, IpAddr::V6(VIP6));
    assert_eq!(service.stats.conns, CONNECTIONS as u64 + 1, "{listing:#?}");
    for real in &service.reals {
        let index = real
            .address
            .to_string()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u8>()
            .unwrap()
            - 10;
        let name = format!("real{index}");
        let seen = per_real.get(&name).copied().unwrap_or(0);
        assert_eq!(real.stats.conns, seen, "{name}: {listing:#?}");
        assert_eq!(
            real.active_conn + real.inactive_conn,
            seen,
            "{name}: connections in the table"
        );
        assert!(real.available, "{name}: MAC found by neighbour discovery");
    }
    let table = lbd.lbadm(&["-L", "-n"]);
    assert!(table.contains("TCP  [2001:db8::100]:80 wrr\n"), "{table}");
    assert!(table.contains("  -> [2001:db8::13]:80"), "{table}");
    let one = lbd.lbadm(&["-L", "-n", "-t", "[2001:db8::100]:80"]);
    assert!(one.contains("TCP  [2001:db8::100]:80 wrr\n"), "{one}");

    // A restarted daemon adopts the pinned maps: the kept connection stays on its real.
    lbd.restart(&topology.lb);
    assert!(lbd.log().contains("adopting pinned maps"), "{}", lbd.log());
    assert_eq!(
        kept.get("/").expect("kept connection after the restart"),
        kept_real
    );
    for result in http::connections(&topology.client, vip(), 6, 1, TIMEOUT) {
        result.expect("new connection after the restart");
    }
    let status = lbd.stop();
    assert!(status.success(), "lbd exit: {status}\n{}", lbd.log());
}
