//! A reload changes a running router's election settings, as keepalived's reload does: the
//! usual way to move the master role by hand (lower its priority, reload) and back. The peer
//! takes over, connection sync keeps every connection, and the node takes the role back once
//! its priority is restored and it holds a full copy. Needs root.

use std::time::Duration;

use lb_tests::{
    ha::{LongLived, Pair, router, wait_for_copy, wait_for_state},
    http::HttpServer,
    lbd::Lbd,
    privilege::require_root,
    topology::{
        ha::{HaTopology, LB1_IP, LB2_IP},
        modes::{test_instance, test_prefix},
    },
};

const TEST: &str = "vrrp-reload";
const LONG_LIVED: usize = 50;

/// Reloads `lbd` with `from` replaced by `to` in its config.
fn reload(lbd: &Lbd, from: &str, to: &str) {
    lbd.edit_config(from, to);
    lbd.reload();
}

#[test]
fn a_reload_moves_the_master_role_and_back_without_breaking_a_connection() {
    if !require_root("the VRRP reload test") {
        return;
    }
    let topology = HaTopology::build(&test_prefix(TEST), &["r1", "r2", "r3"]);
    let _servers: Vec<HttpServer> = topology.serve_http();
    let reals = topology.real_addresses();
    let side = |priority, peer| Pair {
        priority,
        advert: Duration::from_millis(100),
        unicast_peer: None,
        sync_peer: Some(peer),
        preempt: true,
    };
    let lb1 = Lbd::start(
        &topology.lb1,
        &format!("{}1", test_instance(TEST)),
        &side(150, LB2_IP).config(&reals, ""),
    );
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    let lb2 = Lbd::start(
        &topology.lb2,
        &format!("{}2", test_instance(TEST)),
        &side(100, LB1_IP).config(&reals, ""),
    );
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    let mut connections = LongLived::open(&topology.client, LONG_LIVED, Duration::from_secs(2));
    wait_for_copy(&lb2, LONG_LIVED as u64, Duration::from_secs(10));

    // lb1's priority goes below lb2's: lb2 (preempt) takes the role.
    reload(&lb1, "priority: 150", "priority: 50");
    wait_for_state(&lb2, "MASTER", Duration::from_secs(5));
    wait_for_state(&lb1, "BACKUP", Duration::from_secs(2));
    topology.wait_for_vip(&[2], Duration::from_secs(2));
    topology.wait_for_client_mac(2, Duration::from_secs(2));
    let status = router(&lb1).expect("lb1 answers");
    assert_eq!((status.priority, status.configured_priority), (50, 50));
    assert!(
        lb1.log().contains("priority of vrrp VI_1: 150 → 50"),
        "the reload names the change:\n{}",
        lb1.log()
    );
    connections.assert_none_broke("after the role moved by reload");

    // Back to 150, and adverts every second: lb1 takes a full copy, then preempts.
    reload(
        &lb1,
        "priority: 50\n    advert_interval: 100ms",
        "priority: 150\n    advert_interval: 1000ms",
    );
    wait_for_copy(&lb1, LONG_LIVED as u64, Duration::from_secs(10));
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(2));
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    topology.wait_for_client_mac(1, Duration::from_secs(2));
    let status = router(&lb1).expect("lb1 answers");
    assert_eq!(
        (status.configured_priority, status.advert_interval_cs),
        (150, 100)
    );
    // lb2 (at 100 ms itself, so Master_Down 361 ms by its own interval) learns the master's
    // 1 s from its adverts and stays backup through three of them.
    let transitions = router(&lb2).expect("lb2 answers").transitions;
    std::thread::sleep(Duration::from_millis(3500));
    let heard = router(&lb2).expect("lb2 answers");
    assert_eq!(
        (heard.state.as_str(), heard.transitions),
        ("BACKUP", transitions),
        "{heard:?}"
    );
    connections.assert_none_broke("after the role came back by reload");

    // What makes another router is refused, and changes nothing.
    lb1.edit_config("vrid: 51", "vrid: 52");
    lb1.signal(libc::SIGHUP);
    assert!(
        lb1.wait_for_log("vrrp VI_1: vrid cannot change", Duration::from_secs(10)),
        "{}",
        lb1.log()
    );
    assert_eq!(router(&lb1).expect("lb1 answers").state, "MASTER");
}
