//! NAT and full-NAT connections through an lbd HA pair survive a failover and the fail-back.
//!
//! The replies of a NAT real cross the balancer to be translated back, through the reply entry
//! the master wrote when the flow started (its 5-tuple → the client's flow, MAC, interface).
//! A backup that takes over with the flows but without those entries forwards the clients'
//! packets to the right real and then drops the real's answers: connection sync must carry
//! the entries' way back too.
//!
//! The reals sit on the pair's switch in 198.51.100.0/24 ([`HaTopology::build_nat`]); what
//! brings their replies to whichever node is master is a VRRP virtual address beside the VIP:
//! the NAT reals' gateway ([`NAT_GATEWAY`]), or the full-NAT service's `snat_pool` address
//! ([`SNAT_ADDRESS`]). The rr scheduler sends a flow the new master did not know to another
//! real, so a lost flow shows too. Needs root.

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    VIP,
    ha::{LongLived, Pair, RequestLoop, report, wait_for_copy, wait_for_state},
    http::HttpServer,
    lbd::Lbd,
    privilege::require_root,
    topology::{
        CLIENT_IP,
        ha::{HaTopology, LB1_IP, LB2_IP, NAT_GATEWAY, SNAT_ADDRESS},
        modes::{test_instance, test_prefix},
    },
};

const ADVERT: Duration = Duration::from_millis(100);
const LONG_LIVED: usize = 100;
/// A request on a broken connection fails after this long (the checks run every connection
/// at once, so a failing check takes about this long too).
const TIMEOUT: Duration = Duration::from_secs(2);
/// The reals listen here; the service is on port 80: NAT translates the port both ways.
const REAL_PORT: u16 = 8080;
const REALS: [&str; 3] = ["r1", "r2", "r3"];

#[derive(Clone, Copy, PartialEq)]
enum Forward {
    /// LVS-NAT: the reals route the clients through [`NAT_GATEWAY`].
    Nat,
    /// Full NAT from [`SNAT_ADDRESS`]: the reals have no route to the clients at all.
    FullNat,
}

impl Forward {
    /// The address the reals send their replies to: a virtual address of the pair.
    fn return_address(self) -> Ipv4Addr {
        match self {
            Forward::Nat => NAT_GATEWAY,
            Forward::FullNat => SNAT_ADDRESS,
        }
    }

    /// Whom the reals' servers see at the other end of their connections.
    fn peer_seen_by_reals(self) -> Ipv4Addr {
        match self {
            Forward::Nat => CLIENT_IP,
            Forward::FullNat => SNAT_ADDRESS,
        }
    }

    /// The service on the VIP's port 80, rr over the reals' [`REAL_PORT`].
    fn service(self, reals: &[Ipv4Addr]) -> String {
        let reals = reals
            .iter()
            .map(|real| format!("{{address: {real}, port: {REAL_PORT}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        let forward = match self {
            Forward::Nat => "nat".to_owned(),
            Forward::FullNat => format!("fullnat, snat_pool: [{SNAT_ADDRESS}]"),
        };
        format!(
            "  - {{vip: {VIP}, port: 80, protocol: tcp, scheduler: rr, forward: {forward}, \
             reals: [{reals}]}}\n"
        )
    }
}

struct Pairing {
    topology: HaTopology,
    lb1: Lbd,
    lb2: Lbd,
    _servers: Vec<HttpServer>,
}

/// lb1 (priority 150) and lb2 (100), 100 ms adverts, preempt, sync between them; one router
/// for the VIP and the reals' return address; three reals serving HTTP on [`REAL_PORT`].
/// Returns with lb1 master and holding the router's addresses.
fn pair(test: &str, forward: Forward) -> Pairing {
    let topology = HaTopology::build_nat(&test_prefix(test), &REALS);
    if forward == Forward::Nat {
        topology.route_clients_via_gateway();
    }
    // The premise: a real's replies to the client can only cross the master (NAT), or the
    // real has no way to the client at all (full NAT).
    for (name, netns, _) in &topology.reals {
        let route = std::process::Command::new("ip")
            .args(["-n", netns.name(), "route", "get", &CLIENT_IP.to_string()])
            .output()
            .expect("running ip route get");
        let route_text = String::from_utf8_lossy(&route.stdout);
        match forward {
            Forward::Nat => assert!(
                route.status.success() && route_text.contains(&format!("via {NAT_GATEWAY} ")),
                "{name}'s route to the client is not via the gateway: {route_text}"
            ),
            Forward::FullNat => assert!(
                !route.status.success(),
                "{name} has a route to the client: {route_text}"
            ),
        }
    }
    let servers = topology
        .reals
        .iter()
        .map(|(name, netns, _)| {
            HttpServer::start(netns, SocketAddr::from(([0, 0, 0, 0], REAL_PORT)), name)
        })
        .collect();
    let reals: Vec<Ipv4Addr> = topology
        .reals
        .iter()
        .map(|(_, _, address)| *address)
        .collect();
    let config = |priority, peer| {
        Pair {
            priority,
            advert: ADVERT,
            unicast_peer: None,
            sync_peer: Some(peer),
            preempt: true,
        }
        .config_with(
            &forward.service(&reals),
            &[VIP, forward.return_address()],
            "",
        )
    };
    // The daemons' instances (pin directories, sockets) after the namespaces' prefix.
    let instance = test_instance(test);
    let lb1 = Lbd::start(&topology.lb1, &format!("{instance}1"), &config(150, LB2_IP));
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    let lb2 = Lbd::start(&topology.lb2, &format!("{instance}2"), &config(100, LB1_IP));
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    topology.wait_for_address(forward.return_address(), &[1], Duration::from_secs(2));
    Pairing {
        topology,
        lb1,
        lb2,
        _servers: servers,
    }
}

/// Waits (bounded) until the client sends to balancer `index` for the VIP and the reals send
/// their replies to it: only then do the packets of the kept connections cross that node
/// (a killed lbd's program stays attached, with its entries, to its node's interface).
fn wait_until_traffic_crosses(topology: &HaTopology, index: usize, forward: Forward) {
    topology.wait_for_client_mac(index, Duration::from_secs(2));
    topology.wait_until_reals_use(index, forward.return_address(), Duration::from_secs(2));
}

/// Waits (bounded) for a full copy of at least [`LONG_LIVED`] flows on `lbd`, then checks
/// that it took every flow it received (a NAT or full-NAT record it refused would be a
/// connection lost on the takeover whatever the replies do).
fn wait_for_whole_copy(lbd: &Lbd) {
    wait_for_copy(lbd, LONG_LIVED as u64, Duration::from_secs(10));
    let sync = lbd.status().sync.expect("a sync status");
    assert_eq!(
        (
            sync.flows_unmatched,
            sync.flows_not_held,
            sync.flows_without_reply
        ),
        (0, 0, 0),
        "flows refused (unmatched, not held) or without their reply entry: {sync:?}\n{}",
        lbd.log()
    );
}

/// How many entries the daemon's program has in its pinned reply table (`LB_REPLIES_V1`).
fn reply_entries(lbd: &Lbd) -> usize {
    use std::os::fd::AsFd as _;
    let path = lbd.pin_dir().join(lb_common::MAP_REPLIES);
    let map = aya::maps::MapData::from_pin(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut entries = 0;
    lb_userspace::dataplane::batch::for_each(
        map.fd().as_fd(),
        |_: &lb_common::FlowKey, _: &lb_common::Reply| entries += 1,
    )
    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    entries
}

/// Waits (bounded) until the request loop has had an answer since it had `ok`.
fn wait_for_answers_after(requests: &RequestLoop, ok: usize, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while requests.counts().0 <= ok {
        assert!(
            Instant::now() < deadline,
            "the request loop got no answer {when}: {:?} (ok, failed)",
            requests.counts()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The whole scenario: long-lived connections and a request loop through lb1, the backup
/// holding a copy; lb1 SIGKILLed, lb2 takes over; lb1 back, it takes a full copy and
/// preempts. No long-lived connection may break, and the request loop must recover.
fn failover_and_fail_back_keep_every_connection(test: &str, forward: Forward) {
    let mut pairing = pair(test, forward);
    let topology = &pairing.topology;
    let mut connections = LongLived::open(&topology.client, LONG_LIVED, TIMEOUT);
    // The mode is the one configured: the reals see the client (NAT) or the local address.
    for (name, netns, _) in &topology.reals {
        let peers = netns.tcp_peers(REAL_PORT);
        assert!(
            !peers.is_empty()
                && peers
                    .iter()
                    .all(|peer| peer.ip() == IpAddr::V4(forward.peer_seen_by_reals())),
            "{name} sees {peers:?}, not only {}",
            forward.peer_seen_by_reals()
        );
    }
    wait_for_whole_copy(&pairing.lb2);
    connections.assert_none_broke("before anything happened");
    // Straight to stderr, as `report` writes, so it shows when the test passes too.
    let (on_master, on_backup) = (reply_entries(&pairing.lb1), reply_entries(&pairing.lb2));
    let _ = writeln!(
        std::io::stderr(),
        "{test}: reply entries before the kill: {on_master} on the master, {on_backup} on the \
         backup"
    );
    // The backup holds every long-lived connection's reply entry (the only flows so far).
    assert!(
        on_backup >= LONG_LIVED,
        "the backup holds {on_backup} reply entries for {LONG_LIVED} connections"
    );
    let requests = RequestLoop::start(&topology.client, Duration::from_millis(20), 5000);
    let replies_before = pairing.lb2.reason("forwarded_reply");

    // The master dies outright: no priority-0 advert. Its program stays attached, so its link
    // is cut too: nothing may cross it (stale neighbour entries would still reach it).
    let killed = Instant::now();
    pairing.lb1.signal(libc::SIGKILL);
    topology.set_link(1, false);
    let took = killed.elapsed() + wait_for_state(&pairing.lb2, "MASTER", Duration::from_secs(5));
    report(&format!("{test}: takeover after SIGKILL"), took);
    let _ = pairing.lb1.stop();
    // A killed lbd cannot remove its addresses (its successor does, at start).
    topology.wait_for_vip(&[1, 2], Duration::from_secs(2));
    topology.wait_for_address(forward.return_address(), &[1, 2], Duration::from_secs(2));
    wait_until_traffic_crosses(topology, 2, forward);
    let (ok_at_takeover, _) = requests.counts();
    connections.assert_none_broke("after the takeover");
    assert!(
        pairing.lb2.reason("forwarded_reply") > replies_before,
        "lb2 translated no reply back while master"
    );
    wait_for_answers_after(&requests, ok_at_takeover, "after the takeover");

    // The old master comes back as after a reboot, with nothing of its own left (a restarted
    // lbd would adopt its pinned flows and reply entries): all it holds is what sync gives
    // it. It waits for a full copy of lb2's flows before it claims the role back (preempt,
    // higher priority), so the fail-back resets nothing.
    topology.set_link(1, true);
    pairing.lb1.teardown();
    pairing.lb1.restart(&topology.lb1);
    wait_for_whole_copy(&pairing.lb1);
    wait_for_state(&pairing.lb1, "MASTER", Duration::from_secs(5));
    wait_for_state(&pairing.lb2, "BACKUP", Duration::from_secs(5));
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    topology.wait_for_address(forward.return_address(), &[1], Duration::from_secs(2));
    wait_until_traffic_crosses(topology, 1, forward);
    let (ok_at_fail_back, _) = requests.counts();
    connections.assert_none_broke("after the fail-back");
    wait_for_answers_after(&requests, ok_at_fail_back, "after the fail-back");

    let (ok, failed, errors) = requests.stop();
    report(
        &format!(
            "{test}: {} long-lived connections kept; request loop {ok} ok, {failed} failed \
             ({errors:?}); duration",
            connections.len()
        ),
        killed.elapsed(),
    );
    assert!(
        pairing.lb1.reason("forwarded_reply") > 0,
        "lb1 translated no reply back"
    );
}

#[test]
fn nat_connections_survive_failover_and_fail_back() {
    if !require_root("the VRRP NAT failover test") {
        return;
    }
    failover_and_fail_back_keep_every_connection("vrrp-nat", Forward::Nat);
}

#[test]
fn fullnat_connections_survive_failover_and_fail_back() {
    if !require_root("the VRRP full-NAT failover test") {
        return;
    }
    failover_and_fail_back_keep_every_connection("vrrp-fnat", Forward::FullNat);
}
