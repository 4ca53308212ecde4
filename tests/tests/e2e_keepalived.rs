//! lbd and keepalived (`vrrp_version 3`) on one segment: they elect one master by the RFC's
//! rules and hand the VIP to each other, in both roles. Needs root and keepalived.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    VIP,
    ha::{Pair, report, router, wait_for_state},
    http::{self, HttpServer},
    keepalived::{self, Keepalived},
    lbd::Lbd,
    privilege::require_root,
    topology::{
        ha::{HaTopology, LB2_IP},
        modes::{test_instance, test_prefix},
    },
};

const ADVERT: Duration = Duration::from_secs(1);

fn topology(test: &str) -> (HaTopology, Vec<HttpServer>) {
    let topology = HaTopology::build(&test_prefix(test), &["r1", "r2"]);
    let servers = topology
        .reals
        .iter()
        .map(|(name, netns, _)| {
            HttpServer::start(netns, SocketAddr::from(([0, 0, 0, 0], 80)), name)
        })
        .collect();
    (topology, servers)
}

fn lbd_config(topology: &HaTopology, priority: u8) -> String {
    let reals: Vec<_> = topology
        .reals
        .iter()
        .map(|(_, _, address)| *address)
        .collect();
    Pair {
        priority,
        advert: ADVERT,
        unicast_peer: None,
        sync_peer: None,
        preempt: true,
    }
    .config(&reals, "")
}

fn get_through_vip(topology: &HaTopology) {
    let vip = SocketAddr::from((VIP, 80));
    let body = topology
        .client
        .run(|| http::get(vip, "/", Duration::from_secs(3)))
        .unwrap_or_else(|e| panic!("a request through the VIP: {e}"));
    assert!(body.starts_with('r'), "{body}");
}

fn logs(lbd: &Lbd, keepalived: &Keepalived) -> String {
    format!("lbd:\n{}\nkeepalived:\n{}", lbd.log(), keepalived.log())
}

#[test]
fn lbd_master_with_keepalived_backup_hand_over_both_ways() {
    if !require_root("the keepalived interop test") {
        return;
    }
    let (topology, _servers) = topology("ka-lbdm");
    let mut lbd = Lbd::start(
        &topology.lb1,
        &test_instance("ka-lbdm"),
        &lbd_config(&topology, 150),
    );
    let mut keepalived = Keepalived::start(
        &topology.lb2,
        &test_instance("ka-lbdm-ka"),
        &keepalived::config(100, 1.0, &VIP.to_string(), None),
    );
    wait_for_state(&lbd, "MASTER", Duration::from_secs(10));
    assert!(
        keepalived.wait_for_log("Entering BACKUP STATE", Duration::from_secs(5)),
        "keepalived never became backup:\n{}",
        keepalived.log()
    );
    // keepalived hears lbd's adverts and stays backup for longer than its master down
    // interval.
    std::thread::sleep(4 * ADVERT);
    assert_eq!(
        topology.vip_holders(),
        vec![1],
        "{}",
        logs(&lbd, &keepalived)
    );
    get_through_vip(&topology);

    // lbd stops: its priority-0 advert makes keepalived master within its skew time.
    let stopped = Instant::now();
    lbd.stop();
    let took = stopped.elapsed() + topology.wait_for_vip(&[2], Duration::from_secs(5));
    report(
        "keepalived takes over from a stopping lbd (1 s adverts)",
        took,
    );
    assert!(took < ADVERT + Duration::from_millis(500), "took {took:?}");

    // lbd returns with the higher priority and preempts; keepalived gives the VIP back.
    lbd.restart(&topology.lb1);
    wait_for_state(&lbd, "MASTER", Duration::from_secs(10));
    topology.wait_for_vip(&[1], Duration::from_secs(5));
    get_through_vip(&topology);
    let status = router(&lbd).expect("lbd answers");
    assert_eq!(
        status.adverts_ignored,
        Vec::<(String, u64)>::new(),
        "{}",
        logs(&lbd, &keepalived)
    );
    keepalived.stop();
}

#[test]
fn keepalived_master_with_lbd_backup_hand_over_both_ways() {
    if !require_root("the keepalived interop test") {
        return;
    }
    let (topology, _servers) = topology("ka-kam");
    let mut keepalived = Keepalived::start(
        &topology.lb2,
        &test_instance("ka-kam-ka"),
        &keepalived::config(200, 1.0, &VIP.to_string(), None),
    );
    assert!(
        keepalived.wait_for_log("Entering MASTER STATE", Duration::from_secs(10)),
        "keepalived never became master:\n{}",
        keepalived.log()
    );
    let mut lbd = Lbd::start(
        &topology.lb1,
        &test_instance("ka-kam"),
        &lbd_config(&topology, 100),
    );
    wait_for_state(&lbd, "BACKUP", Duration::from_secs(5));
    // lbd stays backup, hearing keepalived's adverts (all valid), for longer than its master
    // down interval.
    std::thread::sleep(4 * ADVERT);
    let status = router(&lbd).expect("lbd answers");
    assert_eq!(status.state, "BACKUP", "{}", logs(&lbd, &keepalived));
    assert_eq!(
        status.master,
        Some(LB2_IP.into()),
        "{}",
        logs(&lbd, &keepalived)
    );
    assert!(status.adverts_received >= 3, "{status:?}");
    assert_eq!(
        status.adverts_ignored,
        Vec::<(String, u64)>::new(),
        "{}",
        logs(&lbd, &keepalived)
    );
    assert_eq!(topology.vip_holders(), vec![2]);

    // keepalived stops (priority 0): lbd takes over within its skew time and forwards.
    let stopped = Instant::now();
    keepalived.stop();
    let took = stopped.elapsed() + topology.wait_for_vip(&[1], Duration::from_secs(5));
    report(
        "lbd takes over from a stopping keepalived (1 s adverts)",
        took,
    );
    assert!(took < ADVERT + Duration::from_millis(500), "took {took:?}");
    assert_eq!(router(&lbd).expect("lbd answers").state, "MASTER");
    get_through_vip(&topology);

    // keepalived returns with the higher priority: lbd hands the VIP back.
    let mut keepalived = Keepalived::start(
        &topology.lb2,
        &test_instance("ka-kam-ka2"),
        &keepalived::config(200, 1.0, &VIP.to_string(), None),
    );
    wait_for_state(&lbd, "BACKUP", Duration::from_secs(10));
    topology.wait_for_vip(&[2], Duration::from_secs(5));
    keepalived.stop();
    lbd.stop();
}
