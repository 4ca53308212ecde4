//! An lbd pair as a keepalived + LVS pair is used: VRRP elects a master, which holds the VIP
//! and forwards; connection sync gives the backup the master's flows. Through real packets:
//! the backup takes over within the RFC's time when the master is killed, when its link is
//! cut, and at once when it stops; fail-back with preempt waits for a full copy; and no
//! long-lived connection breaks on the way. Multicast and unicast. Needs root.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    ha::{LongLived, Pair, RequestLoop, router, state, wait_for_copy, wait_for_state},
    http::HttpServer,
    lbd::Lbd,
    privilege::require_root,
    topology::{
        ha::{HaTopology, LB1_IP, LB2_IP, lb_mac_text},
        modes::test_prefix,
    },
};

const ADVERT: Duration = Duration::from_millis(100);
const LONG_LIVED: usize = 200;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Master_Down_Interval for the backup (priority 100) at 100 ms adverts: 3 × 100 ms + skew
/// (256 − 100) × 100 ms / 256 = 360.9 ms.
const MASTER_DOWN: Duration = Duration::from_micros(360_900);
/// What the measurement adds: the status poll (5 ms), the admin round trip, and a busy
/// 2-core machine scheduling the daemon.
const POLL_SLACK: Duration = Duration::from_millis(150);

struct Pairing {
    topology: HaTopology,
    lb1: Lbd,
    lb2: Lbd,
    _servers: Vec<HttpServer>,
}

/// lb1 (priority 150) and lb2 (100), adverts every 100 ms, sync between them, three reals.
fn pair(test: &str, unicast: bool) -> Pairing {
    let prefix = test_prefix(test);
    let topology = HaTopology::build(&prefix, &["r1", "r2", "r3"]);
    let servers = topology
        .reals
        .iter()
        .map(|(name, netns, _)| {
            HttpServer::start(netns, SocketAddr::from(([0, 0, 0, 0], 80)), name)
        })
        .collect();
    let reals: Vec<_> = topology
        .reals
        .iter()
        .map(|(_, _, address)| *address)
        .collect();
    let side = |priority, peer| Pair {
        priority,
        advert: ADVERT,
        unicast_peer: unicast.then_some(peer),
        sync_peer: Some(peer),
        preempt: true,
    };
    let lb1 = Lbd::start(
        &topology.lb1,
        &format!("{}1", lb_tests::topology::modes::test_instance(test)),
        &side(150, LB2_IP).config(&reals, ""),
    );
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    let lb2 = Lbd::start(
        &topology.lb2,
        &format!("{}2", lb_tests::topology::modes::test_instance(test)),
        &side(100, LB1_IP).config(&reals, ""),
    );
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    assert_eq!(
        topology.vip_holders(),
        vec![1],
        "only the master holds the VIP"
    );
    Pairing {
        topology,
        lb1,
        lb2,
        _servers: servers,
    }
}

/// Every long-lived connection answers, from its own real.
fn assert_none_broke(connections: &mut LongLived, when: &str) {
    let broken = connections.check();
    assert!(
        broken.is_empty(),
        "{} of {} long-lived connections broke {when}: {broken:#?}",
        broken.len(),
        connections.len()
    );
}

fn report(what: &str, took: Duration) {
    // Straight to stderr, so the figure shows in the test's output even when it passes.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{what}: {took:?}");
}

#[test]
fn multicast_failover_on_sigkill_and_fail_back_keep_every_connection() {
    if !require_root("the VRRP failover test") {
        return;
    }
    let mut pairing = pair("vrrp-mc", false);
    let topology = &pairing.topology;
    let mut connections = LongLived::open(&topology.client, LONG_LIVED, TIMEOUT);
    let requests = RequestLoop::start(&topology.client, Duration::from_millis(20), 5000);
    wait_for_copy(&pairing.lb2, LONG_LIVED as u64, Duration::from_secs(10));
    assert_none_broke(&mut connections, "before anything happened");

    // The master dies outright: no priority-0 advert.
    let killed = Instant::now();
    pairing.lb1.signal(libc::SIGKILL);
    let took = killed.elapsed() + wait_for_state(&pairing.lb2, "MASTER", Duration::from_secs(5));
    report("takeover after SIGKILL (100 ms adverts)", took);
    assert!(
        took <= MASTER_DOWN + ADVERT + POLL_SLACK,
        "takeover took {took:?}, beyond 3 × advert + skew ({MASTER_DOWN:?}) and one advert"
    );
    let _ = pairing.lb1.stop();
    // A killed lbd cannot remove its address (its successor does, at start).
    assert!(
        topology.vip_holders().contains(&2),
        "the new master added the VIP"
    );
    // The client learnt the new master's MAC from its gratuitous ARPs.
    let deadline = Instant::now() + Duration::from_secs(2);
    while topology.client_vip_mac() != Some(lb_mac_text(2)) {
        assert!(
            Instant::now() < deadline,
            "the client still has {:?} for the VIP",
            topology.client_vip_mac()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_none_broke(&mut connections, "after the takeover");

    // The old master comes back (preempt, higher priority): it waits for a full copy of
    // lb2's flows before it claims the role back, so the fail-back resets nothing.
    pairing.lb1.restart(&topology.lb1);
    wait_for_copy(&pairing.lb1, LONG_LIVED as u64, Duration::from_secs(10));
    wait_for_state(&pairing.lb1, "MASTER", Duration::from_secs(5));
    wait_for_state(&pairing.lb2, "BACKUP", Duration::from_secs(5));
    assert_eq!(topology.vip_holders(), vec![1]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while topology.client_vip_mac() != Some(lb_mac_text(1)) {
        assert!(
            Instant::now() < deadline,
            "the client never learnt lb1's MAC again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_none_broke(&mut connections, "after the fail-back");
    let (ok, failed, errors) = requests.stop();
    report(
        &format!("request loop: {ok} ok, {failed} failed ({errors:?}); duration"),
        killed.elapsed(),
    );
    assert!(ok > 0, "the request loop never got an answer");
    let lb1 = router(&pairing.lb1).expect("lb1 answers");
    assert_eq!(lb1.adverts_ignored, Vec::<(String, u64)>::new());
}

#[test]
fn unicast_link_cut_and_graceful_stop_hand_over_in_time() {
    if !require_root("the VRRP failover test") {
        return;
    }
    let mut pairing = pair("vrrp-uc", true);
    let topology = &pairing.topology;
    let mut connections = LongLived::open(&topology.client, LONG_LIVED, TIMEOUT);
    wait_for_copy(&pairing.lb2, LONG_LIVED as u64, Duration::from_secs(10));

    // The master's cable is pulled: it goes to FAULT (and gives the VIP up), the backup hears
    // no advert and takes over.
    let cut = Instant::now();
    topology.set_link(1, false);
    let took = cut.elapsed() + wait_for_state(&pairing.lb2, "MASTER", Duration::from_secs(5));
    report(
        "takeover after the master's link was cut (100 ms adverts)",
        took,
    );
    assert!(
        took <= MASTER_DOWN + ADVERT + POLL_SLACK,
        "takeover took {took:?}, beyond 3 × advert + skew ({MASTER_DOWN:?}) and one advert"
    );
    wait_for_state(&pairing.lb1, "FAULT", Duration::from_secs(2));
    assert_eq!(
        topology.vip_holders(),
        vec![2],
        "the faulty node gave the VIP up"
    );
    assert_none_broke(&mut connections, "after the takeover");

    // The link comes back: lb1 fetches lb2's flows, then preempts.
    topology.set_link(1, true);
    wait_for_copy(&pairing.lb1, LONG_LIVED as u64, Duration::from_secs(10));
    wait_for_state(&pairing.lb1, "MASTER", Duration::from_secs(5));
    wait_for_state(&pairing.lb2, "BACKUP", Duration::from_secs(5));
    assert_none_broke(&mut connections, "after the fail-back");

    // A graceful stop: the priority-0 advert hands over within the backup's skew time.
    let stopped = Instant::now();
    pairing.lb1.signal(libc::SIGTERM);
    let took = stopped.elapsed() + wait_for_state(&pairing.lb2, "MASTER", Duration::from_secs(5));
    report("takeover after a graceful stop (100 ms adverts)", took);
    assert!(
        took <= ADVERT + POLL_SLACK,
        "takeover after a graceful stop took {took:?}, beyond one advert interval"
    );
    let _ = pairing.lb1.stop();
    assert_eq!(
        topology.vip_holders(),
        vec![2],
        "the stopped node removed the VIP"
    );
    assert_none_broke(&mut connections, "after the graceful stop");
    assert_eq!(state(&pairing.lb2), "MASTER");
}
