//! Chaos under traffic, through real packets: while a request loop opens a new connection
//! every 20 ms and 50 long-lived connections talk in rounds, each scenario breaks one thing —
//! lbd SIGKILLed and restarted, a real killed and revived, the balancer's link flapped, 100
//! reloads in a row, the admin socket flooded, a real's neighbour entry deleted, an HA pair
//! partitioned and healed — and reports its figures (`chaos | <scenario> | …`, appended to
//! `<target>/chaos/report.md`). Expected: no failure of a flow whose real stayed up. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology,
    chaos::{Excused, Figures, Traffic, process::Footprint, report},
    ha::{Pair, state, wait_for_copy, wait_for_state},
    http::HttpServer,
    lbd::Lbd,
    privilege::require_root,
    topology::ha::{HaTopology, LB1_IP, LB2_IP, lb_mac_text},
};

const LONG_LIVED: usize = 50;
const REAL_NAMES: [&str; 3] = ["real1", "real2", "real3"];
/// Health checks of the real-killed scenario: a dead real is out after `fall` failed checks.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// When a new VRRP master's second burst of gratuitous ARPs is over (5 s, and a margin).
const ANNOUNCEMENT_REPEATED: Duration = Duration::from_secs(6);

/// Namespaces `cha-<scenario>-<pid>-…`, so parallel runs never share one.
fn prefix(scenario: &str) -> String {
    format!("cha-{scenario}-{}-", std::process::id())
}

fn instance(scenario: &str) -> String {
    format!("cha-{scenario}-{}", std::process::id())
}

/// One balancer in front of three reals, each serving HTTP on port 80.
struct Dr {
    topology: DrTopology,
    /// `None` while the scenario has a real's server stopped.
    servers: Vec<Option<HttpServer>>,
    lbd: Lbd,
}

/// The DR network and lbd with one rr service over the three reals; `service_extra` is added
/// to the service (e.g. a health check).
fn dr(scenario: &str, service_extra: &str) -> Dr {
    let topology = DrTopology::build(&prefix(scenario), &REAL_NAMES);
    topology.attach_pass_program();
    let servers = topology
        .reals
        .iter()
        .map(|(name, netns, _)| Some(serve(netns, name)))
        .collect();
    let lbd = Lbd::start(
        &topology.lb,
        &instance(scenario),
        &dr_config(service_extra, 1),
    );
    Dr {
        topology,
        servers,
        lbd,
    }
}

fn serve(netns: &lb_tests::Netns, name: &str) -> HttpServer {
    HttpServer::start(netns, SocketAddr::from(([0, 0, 0, 0], 80)), name)
}

/// The DR config; `weight` is real3's (the hundred reloads change it).
fn dr_config(service_extra: &str, weight: u32) -> String {
    format!(
        "interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
{service_extra}    reals:
      - {{address: 192.0.2.11, weight: 1}}
      - {{address: 192.0.2.12, weight: 1}}
      - {{address: 192.0.2.13, weight: {weight}}}
limits: {{flows: 65536, services: 16, reals: 64}}
"
    )
}

/// Reports the figures, then checks that no flow whose real stayed up failed.
#[track_caller]
fn report_and_check(scenario: &str, figures: &Figures, note: &str, log: &str) {
    report(scenario, figures, note);
    assert!(
        figures.requests > 0 && figures.long_lived == LONG_LIVED,
        "{scenario}: no traffic ran: {figures:?}"
    );
    assert_eq!(
        (
            figures.failed - figures.failed_excused,
            figures.broken - figures.broken_excused
        ),
        (0, 0),
        "{scenario}: flows whose real stayed up failed: {:#?}\n{log}",
        figures.errors
    );
}

/// Waits (bounded) until the listing says whether `real` is available; returns when it did.
fn wait_available(lbd: &Lbd, real: IpAddr, available: bool, limit: Duration) -> Instant {
    let started = Instant::now();
    loop {
        let listing = lbd.listing();
        let now = listing.services[0]
            .reals
            .iter()
            .find(|listed| listed.address == real)
            .is_some_and(|listed| listed.available);
        if now == available {
            return Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "{real} not {} after {limit:?}:\n{}",
            if available { "available" } else { "out" },
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn chaos_lbd_sigkill_and_restart() {
    if !require_root("chaos_lbd_sigkill_and_restart") {
        return;
    }
    let mut setup = dr("kill", "");
    let traffic = Traffic::start(&setup.topology.client, LONG_LIVED);
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    assert!(!setup.lbd.stop_with(libc::SIGKILL).success());
    std::thread::sleep(Duration::from_secs(1));
    setup.lbd.restart(&setup.topology.lb);
    let down = killed.elapsed();
    assert!(
        setup.lbd.log().contains("adopting pinned maps"),
        "{}",
        setup.lbd.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let figures = traffic.stop(&Excused::default());
    report_and_check(
        "lbd SIGKILL and restart",
        &figures,
        &format!("lbd down {:.1} s", down.as_secs_f64()),
        &setup.lbd.log(),
    );
}

#[test]
fn chaos_real_killed_and_revived() {
    if !require_root("chaos_real_killed_and_revived") {
        return;
    }
    let check = format!(
        "    health_check: {{type: http, path: /, expect_status: 200, interval: {}ms, timeout: 150ms, rise: 2, fall: 2}}\n",
        CHECK_INTERVAL.as_millis()
    );
    let mut setup = dr("real", &check);
    let real2: IpAddr = "192.0.2.12".parse().unwrap();
    let traffic = Traffic::start(&setup.topology.client, LONG_LIVED);
    let on_real2 = traffic
        .long_lived_reals()
        .iter()
        .filter(|real| *real == "real2")
        .count();
    std::thread::sleep(Duration::from_millis(500));

    // Its server stops: its connections end, new ones to it are refused until the checks
    // take it out.
    let killed = Instant::now();
    setup.servers[1] = None;
    let detected = wait_available(&setup.lbd, real2, false, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));

    let revived = Instant::now();
    setup.servers[1] = Some(serve(&setup.topology.reals[1].1, "real2"));
    let back = wait_available(&setup.lbd, real2, true, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let served_after = traffic.served_since(back);
    let figures = traffic.stop(&Excused {
        real: Some("real2".into()),
        from: Some(killed),
        until: Some(detected),
    });
    report_and_check(
        "real killed and revived",
        &figures,
        &format!(
            "real2 out {:.2} s after its kill, back {:.2} s after revival; its {on_real2} long-lived broke",
            detected.duration_since(killed).as_secs_f64(),
            back.duration_since(revived).as_secs_f64(),
        ),
        &setup.lbd.log(),
    );
    assert_eq!(
        figures.broken_excused, on_real2,
        "every long-lived connection on the killed real ended"
    );
    assert!(
        served_after.get("real2").copied().unwrap_or(0) > 0,
        "real2 took no new connection after its revival: {served_after:?}"
    );
}

#[test]
fn chaos_link_flapped() {
    if !require_root("chaos_link_flapped") {
        return;
    }
    const FLAPS: usize = 3;
    const DOWN: Duration = Duration::from_millis(500);
    let setup = dr("flap", "");
    let traffic = Traffic::start(&setup.topology.client, LONG_LIVED);
    std::thread::sleep(Duration::from_millis(500));
    let port = setup.topology.lb_switch_port();
    for _ in 0..FLAPS {
        setup.topology.switch.ip(&["link", "set", port, "down"]);
        std::thread::sleep(DOWN);
        setup.topology.switch.ip(&["link", "set", port, "up"]);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let figures = traffic.stop(&Excused::default());
    report_and_check(
        "balancer link flapped",
        &figures,
        &format!("{FLAPS} flaps of {} ms", DOWN.as_millis()),
        &setup.lbd.log(),
    );
}

#[test]
fn chaos_hundred_reloads() {
    if !require_root("chaos_hundred_reloads") {
        return;
    }
    const RELOADS: u32 = 100;
    let setup = dr("rld", "");
    let traffic = Traffic::start(&setup.topology.client, LONG_LIVED);
    let started = Instant::now();
    for reload in 0..RELOADS {
        // real3's weight goes 1 → 2 → 1 …: a change to apply each time, every real stays.
        let (from, to) = if reload % 2 == 0 { (1, 2) } else { (2, 1) };
        setup.lbd.edit_config(
            &format!("192.0.2.13, weight: {from}}}"),
            &format!("192.0.2.13, weight: {to}}}"),
        );
        let applied = setup.lbd.log().matches("reload applied").count();
        setup.lbd.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while setup.lbd.log().matches("reload applied").count() == applied {
            assert!(
                Instant::now() < deadline && !setup.lbd.log().contains("reload refused"),
                "reload {reload} not applied:\n{}",
                setup.lbd.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let figures = traffic.stop(&Excused::default());
    report_and_check(
        "100 reloads in a row",
        &figures,
        &format!(
            "{RELOADS} reloads in {:.1} s ({:.0} ms each)",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / f64::from(RELOADS)
        ),
        &setup.lbd.log(),
    );
}

/// The kernel reports an entry it deletes as FAILED first (`ip monitor neigh` shows `… FAILED`
/// then `Deleted … FAILED`): taken for a real that stopped answering, that FAILED would
/// reschedule the real's flows and reset every long-lived connection on it.
#[test]
fn chaos_neighbour_entry_deleted() {
    if !require_root("chaos_neighbour_entry_deleted") {
        return;
    }
    const DELETIONS: usize = 10;
    let setup = dr("nbr", "");
    let traffic = Traffic::start(&setup.topology.client, LONG_LIVED);
    std::thread::sleep(Duration::from_millis(500));
    let mut deleted = 0;
    for _ in 0..DELETIONS {
        // Absent (not re-learnt yet) is fine: `ip neigh del` then fails and nothing changes.
        let status = std::process::Command::new("ip")
            .args(["-n", setup.topology.lb.name()])
            .args(["neigh", "del", "192.0.2.12", "dev", "eth0"])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running ip");
        deleted += usize::from(status.success());
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    let figures = traffic.stop(&Excused::default());
    report_and_check(
        "real's neighbour entry deleted",
        &figures,
        &format!("real2's entry deleted {deleted} times, 300 ms apart"),
        &setup.lbd.log(),
    );
    assert!(deleted > 0, "the entry was never there to delete");
    let real2 = &setup.lbd.listing().services[0].reals[1];
    assert!(
        real2.available && real2.mac.is_some(),
        "real2 back in rotation with its MAC: {real2:?}"
    );
}

/// Sends junk to the admin socket from many connections at once for `duration`: malformed
/// JSON, lines longer than the protocol's limit, and requests left half-written (held open
/// until the flood ends). Returns how many connections it made.
fn flood_admin(socket: &std::path::Path, duration: Duration) -> usize {
    use std::{io::Write as _, os::unix::net::UnixStream};
    const MALFORMED_SENDERS: usize = 16;
    const OVERSIZED_SENDERS: usize = 2;
    const HALF_WRITTEN: usize = 200;
    let oversized = vec![b'x'; lb_userspace::admin::MAX_REQUEST_BYTES + 4096];
    let until = Instant::now() + duration;
    let held: Vec<UnixStream> = (0..HALF_WRITTEN)
        .filter_map(|_| {
            let mut stream = UnixStream::connect(socket).ok()?;
            stream.write_all(b"{\"request\":\"sta").ok()?;
            Some(stream)
        })
        .collect();
    let mut made = held.len();
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..MALFORMED_SENDERS + OVERSIZED_SENDERS)
            .map(|sender| {
                let oversized = &oversized;
                scope.spawn(move || {
                    let mut connections = 0;
                    let junk: [&[u8]; 4] = [
                        b"{\"request\": nope\n",
                        b"\xff\xfe not even utf-8\n",
                        b"{\"request\":\"no such request\"}\n",
                        b"[1,2,3\n",
                    ];
                    while Instant::now() < until {
                        let Ok(mut stream) = UnixStream::connect(socket) else {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        connections += 1;
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let payload: &[u8] = if sender < OVERSIZED_SENDERS {
                            oversized
                        } else {
                            junk[connections % junk.len()]
                        };
                        // The daemon may close first (that is its right): errors are expected.
                        let _ = stream.write_all(payload);
                        let _ = stream.write_all(b"\n");
                        let _ = std::io::Read::read(&mut stream, &mut [0u8; 512]);
                    }
                    connections
                })
            })
            .collect();
        for sender in senders {
            made += sender.join().expect("a flood sender panicked");
        }
    });
    drop(held);
    made
}

#[test]
fn chaos_admin_socket_flooded() {
    if !require_root("chaos_admin_socket_flooded") {
        return;
    }
    const FLOOD: Duration = Duration::from_secs(3);
    let setup = dr("adm", "");
    let pid = setup.lbd.pid().expect("lbd runs");
    let traffic = Traffic::start(&setup.topology.client, LONG_LIVED);
    std::thread::sleep(Duration::from_millis(500));
    setup.lbd.lbadm(&["-L", "-n"]);
    let before = Footprint::of(pid);

    // Two floods: the second must not leave lbd bigger than the first did (no growth per
    // flood), and after each, lbd answers and its descriptors come back down.
    let mut after = Vec::new();
    let mut connections = 0;
    let mut answered_in = Vec::new();
    for _ in 0..2 {
        connections += flood_admin(setup.lbd.socket(), FLOOD);
        let ended = Instant::now();
        // A legitimate request soon after (lbadm's own timeout bounds each try).
        let deadline = ended + Duration::from_secs(10);
        loop {
            let output = std::process::Command::new(lb_tests::lbd::binary("lbadm"))
                .args(["-L", "-n", "--socket"])
                .arg(setup.lbd.socket())
                .output()
                .expect("running lbadm");
            if output.status.success() {
                assert!(String::from_utf8_lossy(&output.stdout).contains("192.0.2.100:80"));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "lbd did not answer lbadm -L -n within 10 s of the flood: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                setup.lbd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        answered_in.push(ended.elapsed());
        // Descriptors back to what they were (give the daemon a moment to see the closes).
        let deadline = Instant::now() + Duration::from_secs(10);
        let settled = loop {
            let now = Footprint::of(pid);
            if now.fds <= before.fds + 2 || Instant::now() >= deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        after.push(settled);
    }
    let figures = traffic.stop(&Excused::default());
    let mib = |kib: u64| kib as f64 / 1024.0;
    report_and_check(
        "admin socket flooded",
        &figures,
        &format!(
            "{connections} junk connections in 2 × {} s; lbadm answered {:.2?} after; RSS {:.0} → {:.0} → {:.0} MiB, fds {} → {} → {}",
            FLOOD.as_secs(),
            answered_in,
            mib(before.rss_kib),
            mib(after[0].rss_kib),
            mib(after[1].rss_kib),
            before.fds,
            after[0].fds,
            after[1].fds,
        ),
        &setup.lbd.log(),
    );
    for settled in &after {
        assert!(
            settled.fds <= before.fds + 2,
            "lbd's descriptors did not come back down: before {before}, after {settled}"
        );
    }
    // One oversized request is 16 MiB: the second flood may cost one more of them, no more.
    let slack_kib = (lb_userspace::admin::MAX_REQUEST_BYTES / 1024) as u64 * 2;
    assert!(
        after[1].rss_kib <= after[0].rss_kib + slack_kib,
        "lbd grew with the second flood: before {before}, after the first {}, after the second {}",
        after[0],
        after[1]
    );
}

/// Bridge-level drops between the two balancers' ports: each still reaches the client and
/// the reals, but neither hears the other (adverts, sync).
fn partition(topology: &HaTopology, cut: bool) {
    let nft = |args: &[&str]| {
        let mut command = vec!["nft"];
        command.extend_from_slice(args);
        topology.switch.exec(&command);
    };
    if !cut {
        nft(&["delete", "table", "bridge", "chaos"]);
        return;
    }
    nft(&["add", "table", "bridge", "chaos"]);
    nft(&[
        "add", "chain", "bridge", "chaos", "forward", "{", "type", "filter", "hook", "forward",
        "priority", "0", ";", "}",
    ]);
    for (from, to) in [("p-lb1", "p-lb2"), ("p-lb2", "p-lb1")] {
        nft(&[
            "add", "rule", "bridge", "chaos", "forward", "iifname", from, "oifname", to, "drop",
        ]);
    }
}

/// Both nodes become master while partitioned; after the heal exactly one remains and the
/// VIP is announced afresh, whichever node's advert crosses first (the loser's last advert as
/// it stands down tells the winner; before that fix the client kept lb2's MAC when lb1's advert
/// crossed first).
#[test]
fn chaos_ha_partition_and_heal() {
    if !require_root("chaos_ha_partition_and_heal") {
        return;
    }
    let topology = HaTopology::build(&prefix("ha"), &REAL_NAMES);
    let _servers: Vec<HttpServer> = topology
        .reals
        .iter()
        .map(|(name, netns, _)| serve(netns, name))
        .collect();
    let reals: Vec<_> = topology.reals.iter().map(|(_, _, ip)| *ip).collect();
    let side = |priority, peer| Pair {
        priority,
        advert: Duration::from_millis(100),
        unicast_peer: None,
        sync_peer: Some(peer),
        preempt: true,
    };
    // Maglev, as an HA pair should run: a connection made on one node while the partition
    // keeps it from the other's copy still finds the same real there (rr would pick another,
    // whose kernel resets it).
    let config = |priority, peer| {
        let text = side(priority, peer).config(&reals, "");
        assert!(
            text.contains("scheduler: rr"),
            "the pair's config changed:\n{text}"
        );
        text.replace("scheduler: rr", "scheduler: mh")
    };
    let lb1 = Lbd::start(
        &topology.lb1,
        &format!("{}1", instance("ha")),
        &config(150, LB2_IP),
    );
    wait_for_state(&lb1, "MASTER", Duration::from_secs(5));
    let lb1_master = Instant::now();
    let lb2 = Lbd::start(
        &topology.lb2,
        &format!("{}2", instance("ha")),
        &config(100, LB1_IP),
    );
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    let traffic = Traffic::start(&topology.client, LONG_LIVED);
    wait_for_copy(&lb2, LONG_LIVED as u64, Duration::from_secs(10));
    // A new master announces its addresses again 5 s after (keepalived's garp_master_delay):
    // the partition starts after lb1's second burst, so that only a fresh announcement can
    // move the client back to it after the heal.
    std::thread::sleep(
        (lb1_master + ANNOUNCEMENT_REPEATED).saturating_duration_since(Instant::now()),
    );

    // Partitioned: lb2 hears no advert and becomes master too; both hold the VIP, and the
    // client follows the last gratuitous ARP, lb2's.
    partition(&topology, true);
    let split = wait_for_state(&lb2, "MASTER", Duration::from_secs(5));
    assert_eq!(state(&lb1), "MASTER", "lb1 stays master while partitioned");
    topology.wait_for_vip(&[1, 2], Duration::from_secs(2));
    assert!(
        topology
            .client_mac_within(2, Duration::from_secs(2))
            .is_some(),
        "the client never followed lb2's gratuitous ARPs: {:?}",
        topology.client_vip_mac()
    );
    std::thread::sleep(Duration::from_secs(1));

    // Healed: lb2 hears lb1's higher priority and steps down; lb1 hears a lower-priority
    // master and announces the VIP afresh. The client's entry follows within 2 s, far
    // sooner than its own probing would (a reachable entry is only probed after 15-45 s).
    let healed = Instant::now();
    partition(&topology, false);
    wait_for_state(&lb2, "BACKUP", Duration::from_secs(5));
    topology.wait_for_vip(&[1], Duration::from_secs(2));
    let masters = [&lb1, &lb2]
        .iter()
        .filter(|lbd| state(lbd) == "MASTER")
        .count();
    assert_eq!(masters, 1, "exactly one master after the heal");
    assert_eq!(state(&lb1), "MASTER");
    let repointed = topology
        .client_mac_within(1, Duration::from_secs(2))
        .map(|_| healed.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let figures = traffic.stop(&Excused::default());
    let client_mac = topology.client_vip_mac();
    report_and_check(
        "HA partition and heal",
        &figures,
        &format!(
            "both masters {:.2} s after the cut; one after the heal; the client {}",
            split.as_secs_f64(),
            repointed.map_or_else(
                || format!("not re-pointed to lb1 within 2 s (1 s later: {client_mac:?})"),
                |took| format!("re-pointed to lb1 {:.2} s after it", took.as_secs_f64())
            )
        ),
        &format!("lb1:\n{}\nlb2:\n{}", lb1.log(), lb2.log()),
    );
    assert!(
        repointed.is_some(),
        "the VIP was not announced afresh after the heal: the client has {client_mac:?}, \
         not lb1's {}",
        lb_mac_text(1)
    );
}
