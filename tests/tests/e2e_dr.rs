//! End to end through real packets: a client, the balancer (the real `lbd` binary) and three
//! LVS-DR reals with HTTP servers, each host in a network namespace of its own on one bridge.
//! Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    DrTopology, VIP,
    http::{self, HttpClient, HttpServer},
    lbd::{Lbd, assert_split_follows_weights},
    netns,
    privilege::require_root,
    topology::LB_IP,
};

const REALS: [(&str, u32); 3] = [("real1", 1), ("real2", 2), ("real3", 3)];
const CONNECTIONS: usize = 120;
const REQUESTS_PER_CONNECTION: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

const CONFIG: &str = "
interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.13, weight: 3}
limits: {flows: 65536, services: 16, reals: 64}
";

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), 80)
}

#[test]
fn http_through_the_vip_is_spread_by_weight_and_survives_a_daemon_restart() {
    if !require_root("e2e_dr") {
        return;
    }
    let prefix = format!("lbt-e2e-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let names: Vec<&str> = REALS.iter().map(|(name, _)| *name).collect();
    let topology = DrTopology::build(&prefix, &names);
    topology.attach_pass_program();
    let _servers = topology.serve_http();
    let _own_server =
        HttpServer::start(&topology.lb, SocketAddr::new(IpAddr::V4(LB_IP), 8080), "lb");
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-e2e-{}", std::process::id()),
        CONFIG,
    );

    // A kept-alive connection opened first; it must stay on its real through a restart.
    let mut kept = topology
        .client
        .run(|| HttpClient::connect(vip(), TIMEOUT))
        .unwrap_or_else(|e| panic!("connecting to the VIP: {e}\n{}", lbd.log()));
    let kept_real = kept.get("/").expect("first request on the kept connection");

    // Every request succeeds, each connection stays on one real.
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

    // The split follows the weights (the bound is explained at the helper). The client sends
    // from one CPU, so one CPU scheduled them all (read, not assumed). The only service of a
    // first start has id 1.
    let per_cpu = lbd.new_flows_per_cpu(1);
    assert_eq!(
        per_cpu.iter().sum::<u64>(),
        CONNECTIONS as u64 + 1,
        "{per_cpu:?}"
    );
    assert_split_follows_weights(&per_real, &REALS, &per_cpu);

    // The balancer's counters agree with what the client saw, connection for connection.
    let listing = lbd.listing();
    let service = &listing.services[0];
    assert_eq!(service.stats.conns, CONNECTIONS as u64 + 1, "{listing:#?}");
    for real in &service.reals {
        let name = format!(
            "real{}",
            real.address
                .to_string()
                .rsplit('.')
                .next()
                .unwrap()
                .parse::<u8>()
                .unwrap()
                - 10
        );
        let seen = per_real.get(&name).copied().unwrap_or(0);
        assert_eq!(real.stats.conns, seen, "{name}: {listing:#?}");
        // Closed by the client: FIN_WAIT, counted as inactive until tcp_fin expires.
        assert_eq!(
            real.active_conn + real.inactive_conn,
            seen,
            "{name}: connections in the table"
        );
        assert!(real.available, "{name}");
    }
    let reasons: HashMap<&str, u64> = listing
        .reasons
        .iter()
        .map(|r| (r.reason.as_str(), r.packets))
        .collect();
    assert!(reasons["forwarded_tx"] >= (CONNECTIONS * (2 + REQUESTS_PER_CONNECTION)) as u64);

    // Traffic to the balancer's own address is not eaten by XDP.
    let own = topology
        .client
        .run(|| http::get(SocketAddr::new(IpAddr::V4(LB_IP), 8080), "/", TIMEOUT));
    assert_eq!(own.expect("HTTP to the balancer's own address"), "lb\n");

    // lbadm shows it in ipvsadm's layout.
    let table = lbd.lbadm(&["-L", "-n"]);
    assert!(table.contains("TCP  192.0.2.100:80 wrr\n"), "{table}");
    assert!(
        table.contains("  -> 192.0.2.13:80                Route   3      "),
        "{table}"
    );
    let stats = lbd.lbadm(&["-L", "-n", "--stats", "--exact"]);
    assert!(
        stats.contains(&format!(
            "TCP  192.0.2.100:80                    {}",
            CONNECTIONS + 1
        )),
        "{stats}"
    );

    // Stopping the daemon does not stop forwarding: the program and its maps stay pinned.
    let status = lbd.stop();
    assert!(status.success(), "lbd exit: {status}\n{}", lbd.log());
    assert_eq!(
        kept.get("/").expect("kept connection while lbd is stopped"),
        kept_real
    );
    for result in http::connections(&topology.client, vip(), 6, 1, TIMEOUT) {
        result.expect("new connection while lbd is stopped");
    }
    // A new daemon adopts the pinned program, maps and flows, even with the reals listed in
    // another order: flows name reals by id, and ids follow addresses, not positions.
    lbd.edit_config(
        "      - {address: 192.0.2.11, weight: 1}\n      - {address: 192.0.2.12, weight: 2}\n      - {address: 192.0.2.13, weight: 3}\n",
        "      - {address: 192.0.2.13, weight: 3}\n      - {address: 192.0.2.12, weight: 2}\n      - {address: 192.0.2.11, weight: 1}\n",
    );
    lbd.restart(&topology.lb);
    for expected in ["replaced the program on eth0", "adopting pinned maps"] {
        assert!(
            lbd.log().contains(expected),
            "{expected:?} not in:\n{}",
            lbd.log()
        );
    }
    assert_eq!(
        kept.get("/").expect("kept connection after the restart"),
        kept_real
    );
    for result in http::connections(&topology.client, vip(), 6, 1, TIMEOUT) {
        result.expect("new connection after the restart");
    }
    assert!(lbd.pin_dir().join(lb_common::MAP_FLOWS).exists());

    // The restarted daemon owns an adopted link; stopping it must not detach it either.
    let status = lbd.stop();
    assert!(status.success(), "lbd exit: {status}\n{}", lbd.log());
    assert_eq!(
        kept.get("/")
            .expect("kept connection after the second stop"),
        kept_real
    );
}

#[test]
fn a_real_that_changes_its_mac_keeps_its_traffic() {
    if !require_root("e2e_dr mac change") {
        return;
    }
    let prefix = format!("lbt-mac-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1"]);
    topology.attach_pass_program();
    let (_, real_ns, real_ip) = &topology.reals[0];
    let _server = HttpServer::start(real_ns, "0.0.0.0:80".parse().unwrap(), "real1");
    let lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-mac-{}", std::process::id()),
        "interfaces: [{name: eth0}]\nservices:\n  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}\n",
    );
    let mut kept = topology
        .client
        .run(|| HttpClient::connect(vip(), TIMEOUT))
        .expect("connect");
    assert_eq!(kept.get("/").expect("before the change"), "real1\n");

    // The real's NIC is replaced: new MAC, announced with a gratuitous ARP, as hosts do.
    let new_mac = [0x02, 0, 0, 0, 0x0b, 0xee];
    real_ns.ip(&[
        "link",
        "set",
        "eth0",
        "address",
        &lb_userspace::admin::format_mac(&new_mac),
    ]);
    let announcement = lb_tests::packet::Frame::arp_request(*real_ip, *real_ip)
        .src_mac(new_mac)
        .build();
    // The kernel ignores a new MAC within a second of the entry's last update (locktime); a
    // gratuitous ARP overrides that, but send a few in case one is lost. Bounded: 20 × 250 ms.
    let wanted = Some(lb_userspace::admin::format_mac(&new_mac));
    let learned = (0..20).any(|_| {
        real_ns.send_frame("eth0", &announcement);
        std::thread::sleep(Duration::from_millis(250));
        lbd.listing().services[0].reals[0].mac == wanted
    });
    assert!(
        learned,
        "lbd did not learn the new MAC: {:?}\n{}",
        lbd.listing(),
        lbd.log()
    );

    assert_eq!(
        kept.get("/").expect("the kept connection after the change"),
        "real1\n"
    );
    let fresh = topology.client.run(|| http::get(vip(), "/", TIMEOUT));
    assert_eq!(fresh.expect("a new connection after the change"), "real1\n");
}

#[test]
fn jumbo_frames_cross_a_native_attachment() {
    if !require_root("e2e_dr jumbo") {
        return;
    }
    let prefix = format!("lbt-jumbo-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1"]);
    // Frames of 9,000 bytes span several pages: native XDP on veth accepts the program only
    // because it is built for multi-buffer frames (xdp.frags).
    topology.set_mtu(9000);
    topology.attach_pass_program();
    let (_, real_ns, _) = &topology.reals[0];
    let _server = HttpServer::start(real_ns, "0.0.0.0:80".parse().unwrap(), "real1");
    let lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-jumbo-{}", std::process::id()),
        "interfaces: [{name: eth0, xdp_mode: native}]\nservices:\n  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}\n",
    );
    let status = lbd.lbadm(&["status"]);
    assert!(
        status.lines().any(|line| line.starts_with("eth0")
            && line.contains(" native ")
            && line.ends_with(" 9000")),
        "{status}"
    );

    // An 8 KB request goes out as one TCP segment (MSS 8,960). Had the program passed it to
    // the lb's own stack (which holds the VIP), the answer would be a reset.
    let path = format!("/{}", "x".repeat(8000));
    let body = topology
        .client
        .run(|| http::get(vip(), &path, TIMEOUT))
        .unwrap_or_else(|e| panic!("jumbo request through the VIP: {e}\n{}", lbd.log()));
    assert_eq!(body, "real1\n");
    let listing = lbd.listing();
    let service = &listing.services[0].stats;
    assert!(
        service.in_bytes > 8000,
        "the request's bytes were forwarded: {service:?}"
    );
    let truncated = listing
        .reasons
        .iter()
        .find(|r| r.reason == "pass_truncated")
        .unwrap();
    assert_eq!(truncated.packets, 0, "{:?}", listing.reasons);
}
