//! Sync groups (keepalived's `vrrp_sync_group`): the routers of a group fault together, so a
//! failure one router sees hands every router of the group to the peer. Two routers per
//! node on one segment (one for the VIP, one for a second address, as a two-armed balancer
//! has one per side); the second tracks a link of lb1's own that the test takes down. Needs
//! root.

use std::time::Duration;

use lb_tests::{
    ha::{Pair, report, router_named, wait_for_named_state},
    http::HttpServer,
    lbd::Lbd,
    privilege::require_root,
    topology::{
        ha::HaTopology,
        modes::{test_instance, test_prefix},
    },
};

const ADVERT: Duration = Duration::from_millis(100);
const TEST: &str = "vrrp-group";
/// VI_2's address.
const SECOND_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 101);

/// The second router of the group, after the first (VI_1, the VIP's, from [`Pair::config`]):
/// the group key ends VI_1's block, then VI_2 with `extra`.
fn second_router(priority: u8, extra: &str) -> String {
    format!(
        "    sync_group: VG
  - name: VI_2
    interface: eth0
    vrid: 52
    priority: {priority}
    advert_interval: {}ms
    virtual_addresses: [{SECOND_ADDRESS}/32]
    sync_group: VG
{extra}",
        ADVERT.as_millis()
    )
}

#[test]
fn a_sync_group_faults_together_and_the_peer_takes_every_router() {
    if !require_root("the VRRP sync group test") {
        return;
    }
    let topology = HaTopology::build(&test_prefix(TEST), &["r1"]);
    let _servers: Vec<HttpServer> = topology.serve_http();
    let reals = topology.real_addresses();
    // A link of lb1's own whose far end the test takes down (no dummy module here).
    topology.lb1.ip(&[
        "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
    ]);
    topology.lb1.ip(&["link", "set", "trk0", "up"]);
    topology.lb1.ip(&["link", "set", "trk1", "up"]);
    let side = |priority| Pair {
        priority,
        advert: ADVERT,
        unicast_peer: None,
        sync_peer: None,
        preempt: true,
    };
    let lb1 = Lbd::start(
        &topology.lb1,
        &format!("{}1", test_instance(TEST)),
        &side(150).config(
            &reals,
            &second_router(150, "    track_interfaces: [trk0]\n"),
        ),
    );
    let lb2 = Lbd::start(
        &topology.lb2,
        &format!("{}2", test_instance(TEST)),
        &side(100).config(&reals, &second_router(100, "")),
    );
    for name in ["VI_1", "VI_2"] {
        wait_for_named_state(&lb1, name, "MASTER", Duration::from_secs(5));
        wait_for_named_state(&lb2, name, "BACKUP", Duration::from_secs(5));
    }
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    topology.wait_for_address(SECOND_ADDRESS, &[1], Duration::from_secs(2));

    // VI_2's tracked link goes down on lb1: VI_2 goes to FAULT, and VI_1, whose own links are
    // all up, with it. lb2 takes both.
    let cut = std::time::Instant::now();
    topology.lb1.ip(&["link", "set", "trk1", "down"]);
    let took = cut.elapsed() + wait_for_named_state(&lb2, "VI_1", "MASTER", Duration::from_secs(5));
    report(
        "the group's other router handed over after a tracked link went down",
        took,
    );
    wait_for_named_state(&lb2, "VI_2", "MASTER", Duration::from_secs(5));
    wait_for_named_state(&lb1, "VI_1", "FAULT", Duration::from_secs(2));
    wait_for_named_state(&lb1, "VI_2", "FAULT", Duration::from_secs(2));
    let first = router_named(&lb1, "VI_1").expect("lb1 answers");
    let reason = first.last_reason.unwrap_or_default();
    assert!(
        reason.contains("sync group VG: VI_2 is in FAULT"),
        "VI_1's reason: {reason}"
    );
    assert_eq!(first.sync_group.as_deref(), Some("VG"));
    topology.wait_for_vip(&[2], Duration::from_secs(2));
    topology.wait_for_address(SECOND_ADDRESS, &[2], Duration::from_secs(2));

    // The link comes back: both leave FAULT and lb1 takes both back (preempt).
    topology.lb1.ip(&["link", "set", "trk1", "up"]);
    for name in ["VI_1", "VI_2"] {
        wait_for_named_state(&lb1, name, "MASTER", Duration::from_secs(5));
        wait_for_named_state(&lb2, name, "BACKUP", Duration::from_secs(5));
    }
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    topology.wait_for_address(SECOND_ADDRESS, &[1], Duration::from_secs(2));
}
