//! An lbd pair as a keepalived + LVS pair is used: VRRP elects a master, which holds the VIP
//! and forwards; connection sync gives the backup the master's flows. Through real packets:
//! the backup takes over within the RFC's time when the master is killed, when its link is
//! cut, and at once when it stops; fail-back with preempt waits for a full copy; and no
//! long-lived connection breaks on the way. Multicast and unicast. Needs root.

use std::time::{Duration, Instant};

use lb_tests::{
    ha::{LongLived, Pair, RequestLoop, report, router, state, wait_for_copy, wait_for_state},
    http::HttpServer,
    lbd::Lbd,
    privilege::require_root,
    topology::{
        ha::{HaTopology, LB1_IP, LB1_SECOND_IP, LB2_IP, lb_mac_text},
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
    let servers = topology.serve_http();
    let reals = topology.real_addresses();
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
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    Pairing {
        topology,
        lb1,
        lb2,
        _servers: servers,
    }
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
    connections.assert_none_broke("before anything happened");

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
    topology.wait_for_vip(&[1, 2], Duration::from_secs(2));
    // The client learnt the new master's MAC from its gratuitous ARPs.
    topology.wait_for_client_mac(2, Duration::from_secs(2));
    connections.assert_none_broke("after the takeover");

    // The old master comes back (preempt, higher priority): it waits for a full copy of
    // lb2's flows before it claims the role back, so the fail-back resets nothing.
    pairing.lb1.restart(&topology.lb1);
    wait_for_copy(&pairing.lb1, LONG_LIVED as u64, Duration::from_secs(10));
    wait_for_state(&pairing.lb1, "MASTER", Duration::from_secs(5));
    wait_for_state(&pairing.lb2, "BACKUP", Duration::from_secs(5));
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    topology.wait_for_client_mac(1, Duration::from_secs(2));
    connections.assert_none_broke("after the fail-back");
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
    // The faulty node gave the VIP up.
    topology.wait_for_vip(&[2], Duration::from_secs(2));
    connections.assert_none_broke("after the takeover");

    // The link comes back: lb1 fetches lb2's flows, then preempts.
    topology.set_link(1, true);
    wait_for_copy(&pairing.lb1, LONG_LIVED as u64, Duration::from_secs(10));
    wait_for_state(&pairing.lb1, "MASTER", Duration::from_secs(5));
    wait_for_state(&pairing.lb2, "BACKUP", Duration::from_secs(5));
    connections.assert_none_broke("after the fail-back");

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
    // The stopped node removed the VIP.
    topology.wait_for_vip(&[2], Duration::from_secs(2));
    connections.assert_none_broke("after the graceful stop");
    assert_eq!(state(&pairing.lb2), "MASTER");
}

/// `source_address` (keepalived's `unicast_src_ip`): lb1's adverts come from a second
/// address of its eth0, the only one lb2 lists. Were they sent from its first (192.0.2.2),
/// lb2 would ignore them as from an unknown peer and claim the role too (checked by hand:
/// without the key, lb2 does not stay backup). The address removed, lb1 goes to FAULT.
#[test]
fn unicast_adverts_come_from_the_source_address() {
    if !require_root("the VRRP source address test") {
        return;
    }
    let test = "vrrp-src";
    let topology = HaTopology::build(&test_prefix(test), &["r1"]);
    let reals = topology.real_addresses();
    let source = LB1_SECOND_IP;
    topology
        .lb1
        .exec(&["ip", "addr", "add", &format!("{source}/24"), "dev", "eth0"]);
    let side = |priority, peer| Pair {
        priority,
        advert: ADVERT,
        unicast_peer: Some(peer),
        sync_peer: None,
        preempt: true,
    };
    let instance = lb_tests::topology::modes::test_instance(test);
    let lb1 = Lbd::start(
        &topology.lb1,
        &format!("{instance}1"),
        &side(150, LB2_IP).config(&reals, &format!("    source_address: {source}\n")),
    );
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    let lb2 = Lbd::start(
        &topology.lb2,
        &format!("{instance}2"),
        &side(100, source).config(&reals, ""),
    );
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    // Ten adverts later, lb2 is still backup, having heard them and ignored none.
    std::thread::sleep(10 * ADVERT);
    let heard = router(&lb2).expect("lb2 answers");
    assert_eq!(heard.state, "BACKUP");
    assert!(heard.adverts_received >= 5, "{heard:?}");
    assert!(heard.adverts_ignored.is_empty(), "{heard:?}");
    let sent = router(&lb1).expect("lb1 answers");
    assert_eq!(sent.address, Some(source.into()), "{sent:?}");
    assert_eq!(sent.state, "MASTER");

    // The address goes: lb1 can no longer send adverts lb2 hears, so it gives the role up
    // (FAULT) rather than holding the VIP beside a new master; it comes back with it.
    topology
        .lb1
        .exec(&["ip", "addr", "del", &format!("{source}/24"), "dev", "eth0"]);
    wait_for_state(&lb1, "FAULT", Duration::from_secs(2));
    let reason = router(&lb1).and_then(|router| router.last_reason);
    assert!(
        reason.as_deref().is_some_and(
            |reason| reason.contains(&format!("source_address {source} is not on eth0"))
        ),
        "{reason:?}"
    );
    wait_for_state(&lb2, "MASTER", Duration::from_secs(2));
    topology.wait_for_vip(&[2], Duration::from_secs(2));
    topology
        .lb1
        .exec(&["ip", "addr", "add", &format!("{source}/24"), "dev", "eth0"]);
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(2));
}

/// Adverts that fail the RFC's checks (wrong TTL, bad checksum, version 2), come from an
/// unknown source with unicast peers, or carry other addresses (another pair on our vrid)
/// are counted and change nothing.
#[test]
fn spoofed_adverts_are_counted_and_ignored() {
    if !require_root("the VRRP spoofing test") {
        return;
    }
    use lb_tests::{
        ha::advert_frame,
        topology::{CLIENT_IP, CLIENT_MAC, HOST_IF, ha::LB1_MAC},
    };
    use lb_userspace::vrrp::packet::Advert;
    let pairing = pair("vrrp-spoof", true);
    let topology = &pairing.topology;
    let transitions = |lbd: &Lbd| router(lbd).expect("answers").transitions;
    let before = (transitions(&pairing.lb1), transitions(&pairing.lb2));
    let strongest = Advert {
        vrid: 51,
        priority: 255,
        max_advert_interval_cs: 10,
        addresses: vec![lb_tests::VIP.into()],
    };
    // Spoofed as coming from the peer, to lb1: only the broken field fails them.
    let from_peer = |ttl, corrupt| {
        advert_frame(
            CLIENT_MAC, LB2_IP, LB1_MAC, LB1_IP, ttl, &strongest, corrupt,
        )
    };
    let mut version_2 = from_peer(255, false);
    version_2[34] = 0x21;
    // Well formed, from the peer's address, but for other addresses: another pair that
    // happens to use our vrid.
    let other_pair = advert_frame(
        CLIENT_MAC,
        LB2_IP,
        LB1_MAC,
        LB1_IP,
        255,
        &Advert {
            addresses: vec![std::net::Ipv4Addr::new(192, 0, 2, 200).into()],
            ..strongest.clone()
        },
        false,
    );
    for (frame, what) in [
        (from_peer(64, false), "TTL 64"),
        (from_peer(255, true), "a bad checksum"),
        (version_2, "version 2"),
        (other_pair, "other addresses"),
        // Well formed, to lb1 itself, but not from its unicast peer.
        (
            advert_frame(
                CLIENT_MAC, CLIENT_IP, LB1_MAC, LB1_IP, 255, &strongest, false,
            ),
            "an unknown source",
        ),
    ] {
        for _ in 0..3 {
            topology.client.send_frame(HOST_IF, &frame);
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(state(&pairing.lb1), "MASTER", "after adverts with {what}");
    }
    // Long enough for any effect to show (several master down intervals).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state(&pairing.lb1), "MASTER");
    assert_eq!(state(&pairing.lb2), "BACKUP");
    assert_eq!(
        (transitions(&pairing.lb1), transitions(&pairing.lb2)),
        before
    );
    let ignored = router(&pairing.lb1).expect("answers").adverts_ignored;
    for kind in [
        "ttl",
        "checksum",
        "version",
        "unknown_peer",
        "address_mismatch",
    ] {
        assert!(
            ignored
                .iter()
                .any(|(counted, count)| counted == kind && *count >= 3),
            "{kind} not counted three times: {ignored:?}"
        );
    }
}

/// A tracked interface going down lowers the master's priority below the backup's, which
/// preempts; the notify hooks run with keepalived's arguments.
#[test]
fn a_tracked_interface_moves_the_master_and_hooks_run() {
    if !require_root("the VRRP tracking test") {
        return;
    }
    use lb_tests::ha::{hook_script, wait_for_line};
    let prefix = test_prefix("vrrp-track");
    let topology = HaTopology::build(&prefix, &["r1", "r2"]);
    let _servers: Vec<HttpServer> = topology.serve_http();
    let reals = topology.real_addresses();
    // A link of lb1's own whose far end the test takes down (no dummy module here).
    topology.lb1.ip(&[
        "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
    ]);
    topology.lb1.ip(&["link", "set", "trk0", "up"]);
    topology.lb1.ip(&["link", "set", "trk1", "up"]);
    let dir = std::env::temp_dir().join(format!("{prefix}hooks"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("hook dir");
    let log = dir.join("calls");
    let hook = hook_script(&dir, &log);
    let hook = hook.display();
    let side = |priority, peer| Pair {
        priority,
        advert: ADVERT,
        unicast_peer: None,
        sync_peer: Some(peer),
        preempt: true,
    };
    let mut lb1 = Lbd::start(
        &topology.lb1,
        &format!("{}1", lb_tests::topology::modes::test_instance("vrrp-track")),
        &side(150, LB2_IP).config(
            &reals,
            &format!(
                "    track_interfaces: [{{name: trk0, weight: -60}}]\n    hooks: {{on_master: {hook}, on_backup: {hook}, on_fault: {hook}, on_stop: {hook}}}\n"
            ),
        ),
    );
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    wait_for_line(&log, "INSTANCE VI_1 MASTER 150", Duration::from_secs(2));
    let lb2 = Lbd::start(
        &topology.lb2,
        &format!(
            "{}2",
            lb_tests::topology::modes::test_instance("vrrp-track")
        ),
        &side(100, LB1_IP).config(&reals, ""),
    );
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    wait_for_copy(&lb2, 0, Duration::from_secs(10));

    topology.lb1.ip(&["link", "set", "trk1", "down"]);
    wait_for_state(&lb2, "MASTER", Duration::from_secs(5));
    wait_for_state(&lb1, "BACKUP", Duration::from_secs(2));
    let status = router(&lb1).expect("lb1 answers");
    assert_eq!((status.priority, status.configured_priority), (90, 150));
    wait_for_line(&log, "INSTANCE VI_1 BACKUP 90", Duration::from_secs(2));
    topology.wait_for_vip(&[2], Duration::from_secs(2));

    // Back up: priority 150 again; lb1 takes a full copy, then preempts.
    topology.lb1.ip(&["link", "set", "trk1", "up"]);
    wait_for_state(&lb1, "MASTER", Duration::from_secs(10));
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(2));
    topology.wait_for_vip(&[1], Duration::from_secs(2));

    lb1.stop();
    wait_for_line(&log, "INSTANCE VI_1 STOP 150", Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Adverts keep their schedule while the master is busy: with 500,000 flows in its table, a
/// full connection listing, a bulk copy of the table to a backup that restarts, and config
/// reloads on both nodes, during 100 ms adverts, cause no spurious failover.
#[test]
fn adverts_keep_their_schedule_under_a_large_table() {
    if !require_root("the VRRP load test") {
        return;
    }
    use std::{
        os::fd::AsFd as _,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
    };

    use lb_common::MAP_FLOWS;
    use lb_userspace::{admin::monotonic_now_ns, dataplane::batch};

    const FLOWS: u32 = 500_000;
    let mut pairing = pair("vrrp-load", false);
    let topology = &pairing.topology;
    let lb1_transitions = router(&pairing.lb1).expect("answers").transitions;

    // Half a million established flows over lb1's three reals (a fresh instance: service 1,
    // reals 1 to 3, in config order).
    let (keys, flows) =
        lb_tests::conntrack::established_flows(FLOWS, lb_tests::VIP, 3, monotonic_now_ns());
    let table = aya::maps::MapData::from_pin(pairing.lb1.pin_dir().join(MAP_FLOWS))
        .expect("lb1's pinned flow table");
    batch::update(table.fd().as_fd(), &keys, &flows).expect("filling lb1's flow table");

    // Watch both routers all along: lb1 must stay master, lb2 must never claim the role.
    let watching = Arc::new(AtomicBool::new(true));
    let watch = {
        let watching = watching.clone();
        let (socket1, socket2) = (
            pairing.lb1.socket().to_path_buf(),
            pairing.lb2.socket().to_path_buf(),
        );
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let started = Instant::now();
            while watching.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                for (node, socket) in [("lb1", &socket1), ("lb2", &socket2)] {
                    if let Ok(lb_userspace::admin::Reply::Status(status)) =
                        lb_userspace::admin::request(socket, &lb_userspace::admin::Request::Status)
                        && let Some(router) = status.vrrp.first()
                    {
                        let wrong = (node == "lb1" && router.state != "MASTER")
                            || (node == "lb2" && router.state == "MASTER");
                        if wrong {
                            seen.push(format!(
                                "{node} {} after {:?}",
                                router.state,
                                started.elapsed()
                            ));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };

    // The backup restarts and takes a bulk copy of the whole table.
    let copy_started = Instant::now();
    pairing.lb2.restart(&topology.lb2);
    // A full listing and reloads while the copy runs.
    // What `lbadm -L -n -c` asks, read raw with a patient timeout: a debug build of lbd
    // walking half a million flows while it streams them to the backup takes a while, and
    // lbadm's 30 s are for people.
    let listing = {
        use std::io::{Read as _, Write as _};
        let mut stream =
            std::os::unix::net::UnixStream::connect(pairing.lb1.socket()).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("read timeout");
        stream
            .write_all(b"{\"request\":\"connections\"}\n")
            .expect("asking for the connections");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("reading the listing");
        reply
    };
    let listed = listing
        .windows(b"\"source_port\"".len())
        .filter(|window| *window == b"\"source_port\"")
        .count();
    assert!(
        listed >= FLOWS as usize,
        "the listing has {listed} connections"
    );
    pairing.lb1.signal(libc::SIGHUP);
    pairing.lb2.signal(libc::SIGHUP);
    wait_for_copy(&pairing.lb2, u64::from(FLOWS), Duration::from_secs(60));
    report(
        "restart of the backup, a full listing and its bulk copy of 500,000 flows",
        copy_started.elapsed(),
    );
    let log = pairing.lb1.log();
    let copied = log
        .lines()
        .find(|line| line.contains("sent a bulk copy of") && !line.contains("copy of 0 flows"))
        .unwrap_or("no bulk copy logged");
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "lb1: {copied}");
    assert!(
        pairing.lb1.wait_for_log("reload", Duration::from_secs(10)),
        "{}",
        pairing.lb1.log()
    );
    // A few more seconds of incremental scans of the large table.
    std::thread::sleep(Duration::from_secs(3));
    watching.store(false, Ordering::SeqCst);
    let wrong = watch.join().expect("watcher");
    assert!(
        wrong.is_empty(),
        "spurious failover: {wrong:?}\n{}",
        pairing.lb2.log()
    );
    assert_eq!(
        router(&pairing.lb1).expect("answers").transitions,
        lb1_transitions
    );
    assert_eq!(state(&pairing.lb1), "MASTER");
}

/// IPv6 routers beside IPv4 ones, multicast to ff02::12 from link-local addresses: the
/// master holds both VIPs; on its graceful stop the backup takes both over, announces VIP6
/// with unsolicited neighbour advertisements, and IPv6 connections carry on.
#[test]
fn ipv6_routers_hand_over_with_their_connections() {
    if !require_root("the IPv6 VRRP test") {
        return;
    }
    use std::net::{IpAddr, SocketAddr};

    use lb_tests::{
        http::HttpClient,
        topology::{VIP6, real_ip6},
    };

    let prefix = test_prefix("vrrp-v6");
    let topology = HaTopology::build_dual_stack(&prefix, &["r1", "r2", "r3"]);
    let _servers: Vec<HttpServer> = topology
        .reals
        .iter()
        .map(|(name, netns, _)| HttpServer::start(netns, "[::]:80".parse().unwrap(), name))
        .collect();
    let reals6: String = (0..3)
        .map(|index| format!("      - {{address: {}}}\n", real_ip6(index)))
        .collect();
    let config = |priority: u8, peer: std::net::Ipv4Addr| {
        format!(
            "interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: {VIP6}
    port: 80
    protocol: tcp
    scheduler: rr
    reals:
{reals6}limits: {{flows: 65536, services: 16, reals: 64}}
vrrp:
  - name: VI_6
    interface: eth0
    vrid: 52
    priority: {priority}
    advert_interval: 100ms
    virtual_addresses: [{VIP6}/128]
sync: {{peer: {peer}}}
"
        )
    };
    let instance = lb_tests::topology::modes::test_instance("vrrp-v6");
    let mut lb1 = Lbd::start(&topology.lb1, &format!("{instance}1"), &config(150, LB2_IP));
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    let lb2 = Lbd::start(&topology.lb2, &format!("{instance}2"), &config(100, LB1_IP));
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    topology.wait_for_vip6(&[1], Duration::from_secs(2));

    let vip = SocketAddr::new(IpAddr::V6(VIP6), 80);
    let mut connections: Vec<(HttpClient, String)> = topology.client.run(|| {
        (0..30)
            .map(|index| {
                let mut connection = HttpClient::connect(vip, TIMEOUT)
                    .unwrap_or_else(|e| panic!("IPv6 connection {index}: {e}"));
                let real = connection.get("/").expect("first request");
                (connection, real)
            })
            .collect()
    });
    wait_for_copy(&lb2, connections.len() as u64, Duration::from_secs(10));
    let status = router(&lb2).expect("lb2 answers");
    assert!(status.adverts_received > 0, "{status:?}");
    assert_eq!(
        status.adverts_ignored,
        Vec::<(String, u64)>::new(),
        "{status:?}"
    );
    assert!(
        matches!(status.master, Some(IpAddr::V6(master)) if master.is_unicast_link_local()),
        "IPv6 adverts come from a link-local address: {status:?}"
    );

    let stopped = Instant::now();
    lb1.signal(libc::SIGTERM);
    let took = stopped.elapsed() + wait_for_state(&lb2, "MASTER", Duration::from_secs(5));
    report("IPv6 takeover after a graceful stop (100 ms adverts)", took);
    assert!(took <= ADVERT + POLL_SLACK, "took {took:?}");
    let _ = lb1.stop();
    topology.wait_for_vip6(&[2], Duration::from_secs(2));
    // The client's neighbour entry follows the unsolicited neighbour advertisements.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let entry = topology
            .client
            .ip(&["-6", "neigh", "show", &VIP6.to_string(), "dev", "eth0"]);
        if entry.contains(&lb_mac_text(2)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client's entry for VIP6: {entry}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let broken: Vec<String> = connections
        .iter_mut()
        .enumerate()
        .filter_map(|(index, (connection, real))| match connection.get("/") {
            Ok(body) if body == *real => None,
            other => Some(format!("connection {index}: {other:?}")),
        })
        .collect();
    assert!(broken.is_empty(), "IPv6 connections broke: {broken:#?}");
}
