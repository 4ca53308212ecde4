//! Reals' liveness from the kernel's neighbour table, through real packets: a real that stops
//! answering ARP (its link goes down, as a powered-off host's would) is taken out once the
//! kernel marks it FAILED, so no new connection is sent into the void; when it answers again
//! it takes new connections again. Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, VIP,
    http::{self},
    lbd::Lbd,
    netns,
    privilege::require_root,
};

const TIMEOUT: Duration = Duration::from_secs(3);
const CONNECTIONS: usize = 30;
/// How long the kernel may take to call a silent real FAILED (with the fast neighbour
/// timers set below, about 3 s) or to see it answer again.
const DETECTION: Duration = Duration::from_secs(20);

/// Connections served per real; panics if any fails.
fn spread(topology: &DrTopology, lbd: &Lbd, what: &str) -> HashMap<String, u64> {
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let results = http::connections(&topology.client, vip, CONNECTIONS, 1, TIMEOUT);
    http::connections_per_server(&results, 1, || format!("{what}\n{}", lbd.log()))
}

/// Waits (bounded) until real2's state in lbd's listing satisfies `wanted`.
fn wait_for_real2(lbd: &Lbd, wanted: impl Fn(bool, &str) -> bool) -> bool {
    let deadline = Instant::now() + DETECTION;
    while Instant::now() < deadline {
        let listing = lbd.listing();
        let real = &listing.services[0].reals[1];
        if wanted(real.available, &real.neighbour) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_real_that_stops_answering_arp_gets_no_traffic_until_it_answers_again() {
    if !require_root("e2e_neighbours") {
        return;
    }
    let pid = std::process::id();
    let prefix = format!("lbt-nbr-{pid}-");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2", "real3"]);
    topology.attach_pass_program();
    // The kernel's neighbour timers, shortened so that the test takes seconds: an entry is
    // REACHABLE for 0.25-0.75 s after confirmation, then probed after 1 s, twice, 200 ms apart.
    for (key, value) in [
        ("base_reachable_time_ms", "500"),
        ("delay_first_probe_time", "1"),
        ("retrans_time_ms", "200"),
        ("ucast_solicit", "2"),
        ("mcast_solicit", "2"),
    ] {
        topology
            .lb
            .sysctl(&format!("net.ipv4.neigh.eth0.{key}"), value);
    }
    let _servers = topology.serve_http();
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-nbr-{pid}"),
        "interfaces: [{name: eth0}]\nservices:\n  - vip: 192.0.2.100\n    port: 80\n    protocol: tcp\n    scheduler: rr\n    reals: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]\n",
    );

    // A restarted lbd adopts the reals with the MACs it left in the maps. real2's entry is
    // STALE meanwhile, and the kernel sends no notification about an entry that stays STALE:
    // lbd asks for it to be probed when it reads the table. (On this kernel the entry is
    // probed soon after the restart even without that, so this step shows that an adopted
    // real is still watched, not that lbd's request is what makes it so.)
    lbd.stop();
    topology.lb.ip(&[
        "neigh",
        "replace",
        "192.0.2.12",
        "lladdr",
        "02:00:00:00:00:0c",
        "dev",
        "eth0",
        "nud",
        "stale",
    ]);
    lbd.restart(&topology.lb);
    let deadline = Instant::now() + DETECTION;
    let probed = loop {
        let entry = topology
            .lb
            .ip(&["neigh", "show", "192.0.2.12", "dev", "eth0"]);
        if !entry.contains("STALE") {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        probed,
        "real2's STALE entry was never probed:\n{}",
        lbd.log()
    );

    let before = spread(&topology, &lbd, "all reals up");
    assert_eq!(before.len(), 3, "every real serves: {before:?}");

    // real2 goes silent, as a host powered off: its link drops, nothing answers its ARP.
    let (_, real2, _) = &topology.reals[1];
    real2.ip(&["link", "set", "eth0", "down"]);
    assert!(
        wait_for_real2(&lbd, |available, neighbour| !available
            && neighbour.starts_with("failed")),
        "real2 never marked failed: {:?}\n{}",
        lbd.listing().services[0].reals[1],
        lbd.log()
    );
    let table = lbd.lbadm(&["-L", "-n", "-o", "json"]);
    assert!(table.contains("\"failed (no packets)\""), "{table}");
    let without = spread(&topology, &lbd, "real2 down");
    assert!(!without.contains_key("real2"), "{without:?}");
    assert_eq!(without.values().sum::<u64>(), CONNECTIONS as u64);

    // It comes back: the kernel hears it again, and it takes new connections.
    real2.ip(&["link", "set", "eth0", "up"]);
    assert!(
        wait_for_real2(&lbd, |available, neighbour| available
            && neighbour == "reachable"),
        "real2 never came back: {:?}\n{}",
        lbd.listing().services[0].reals[1],
        lbd.log()
    );
    let after = spread(&topology, &lbd, "real2 back");
    assert!(after.get("real2").copied().unwrap_or(0) > 0, "{after:?}");
}
