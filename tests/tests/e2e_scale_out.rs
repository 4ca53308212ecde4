//! Scale-out end to end: two balancers behind a router that spreads the VIP over them by
//! ECMP, each announcing the VIP over BGP through BIRD (`topology::scale_out`). With
//! long-lived connections and a request loop running, in this order: traffic spreads over
//! both; draining one moves everything to the other and no connection breaks (Maglev gives
//! the same real wherever ECMP sends a flow); undraining brings it back; a balancer killed
//! outright is withdrawn by BFD and its connections carry on through the other. Then, with
//! the traffic stopped, the survivor withdraws the VIP when no real is healthy, announces it
//! when one is again, and withdraws it when lbd stops.
//!
//! lbd writes the BIRD file and drives BIRD (the `bgp` key); the test only starts BIRD on
//! each balancer with a main config that includes that file, and `lbadm drain-node` /
//! `undrain-node` drain. One line (`grep '^scale-out |'`) gives the figures: each time to
//! withdraw or announce, the long-lived connections kept, flows per balancer.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::{
    bird::Bird,
    chaos::{Excused, Traffic},
    lbd::Lbd,
    privilege::require_root,
    topology::scale_out::{
        HOLD_TIME_S, LB_AS, LB_IPS, REAL_IPS, ROUTER_AS, ROUTER_IP, ScaleOutTopology, VIP,
    },
};

/// Long-lived connections, from as many source ports: ECMP hashes each to a balancer.
const LONG_LIVED: usize = 40;
/// How long BGP may take to come up and announce (BIRD retries a connection every second).
const ANNOUNCE_LIMIT: Duration = Duration::from_secs(30);
/// How long a withdrawal or an announcement may take once asked for.
const CHANGE_LIMIT: Duration = Duration::from_secs(10);
/// How long every long-lived connection may take to answer after a change of path.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// How long the request loop runs with one balancer drained, to see where new flows go.
const DRAINED_FOR: Duration = Duration::from_millis(1500);
/// The reals' health checks: a dead real is out after `fall` (2) of these.
const HEALTH_INTERVAL_MS: u64 = 200;

/// A balancer: lbd announcing the VIP through its BIRD.
struct Balancer {
    lbd: Lbd,
    bird: Bird,
}

impl Balancer {
    /// lbd first, writing the file BIRD includes (BIRD refuses to start while an include is
    /// missing), then BIRD, whose main config is the README's: its own device protocol and
    /// lbd's file.
    fn start(topology: &ScaleOutTopology, index: usize) -> Balancer {
        let netns = topology.lb(index);
        let pid = std::process::id();
        let dir = Bird::make_dir(&format!("lbso-bird-lb{index}-{pid}"));
        let fragment = dir.join("lbd-bird.conf");
        let config = lbd_config(index, &Bird::socket_in(&dir), &fragment);
        let lbd = Lbd::start(netns, &format!("lbso-lb{index}-{pid}"), &config);
        let bird = Bird::start_in(
            netns,
            dir,
            &format!(
                "protocol device {{\n}}\ninclude \"{}\";\n",
                fragment.display()
            ),
        );
        Balancer { lbd, bird }
    }

    /// `lbadm drain-node` (`true`) or `undrain-node`, which answer once BIRD took the change.
    fn drain(&self, drained: bool) {
        let verb = if drained {
            "drain-node"
        } else {
            "undrain-node"
        };
        self.lbd.lbadm(&[verb]);
        let bgp = self.lbd.status().bgp.expect("lbd's status has a BGP block");
        assert_eq!(bgp.drained, drained, "{bgp:?}");
        assert!(
            bgp.bird_up_to_date,
            "{verb}: BIRD has not taken it: {bgp:?}"
        );
    }

    /// Flows lbd recorded for the service (lbadm's `conns`): those a SYN opened, and those
    /// whose first packet here came mid-stream ([`Self::mid_stream`]).
    fn flows(&self) -> u64 {
        self.lbd.listing().services[0].stats.conns
    }

    /// Flows a SYN opened here: new connections.
    fn new_connections(&self) -> u64 {
        self.flows() - self.mid_stream()
    }

    fn mid_stream(&self) -> u64 {
        self.lbd.reason("forwarded_mid_stream")
    }

    /// What lbd and its BIRD say, for a failure's message.
    fn describe(&self) -> String {
        format!(
            "lbd's status:\n{}\nBIRD's protocols:\n{}",
            self.lbd.lbadm(&["status"]),
            self.bird
                .try_birdc(&["show", "protocols"])
                .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                .unwrap_or_default()
        )
    }
}

/// The VIP's service (Maglev over the three reals, each checked over TCP), announced to the
/// router with a MED and a community, BFD on the session.
fn lbd_config(index: usize, bird_socket: &Path, bird_config: &Path) -> String {
    let reals: String = REAL_IPS
        .iter()
        .map(|real| format!("      - {{address: {real}}}\n"))
        .collect();
    format!(
        "interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: {VIP}
    port: 80
    protocol: tcp
    scheduler: mh
    forward: dr
    health_check: {{type: tcp, interval: {HEALTH_INTERVAL_MS}ms, timeout: 150ms, rise: 1, fall: 2}}
    reals:
{reals}limits: {{flows: 65536, services: 16, reals: 64}}
bgp:
  local_as: {LB_AS}
  router_id: {}
  bird_socket: {}
  bird_config: {}
  neighbors:
    - {{address: {ROUTER_IP}, as: {ROUTER_AS}, hold_time: {HOLD_TIME_S}s, bfd: true}}
  vips:
    - {{address: {VIP}, med: 10, communities: [\"64500:100\"]}}
",
        LB_IPS[index - 1],
        bird_socket.display(),
        bird_config.display(),
    )
}

/// Waits (bounded) until every unbroken long-lived connection was answered by its own real
/// after `since`; panics with the broken ones if any broke.
fn wait_until_all_answer(traffic: &Traffic, since: Instant, step: &str) {
    let started = Instant::now();
    loop {
        let (answered, broken) = traffic.long_lived_since(since);
        assert!(
            broken.is_empty(),
            "{step}: long-lived connections broke:\n{}",
            broken.join("\n")
        );
        if answered == LONG_LIVED {
            return;
        }
        assert!(
            started.elapsed() < ANSWER_LIMIT,
            "{step}: only {answered} of {LONG_LIVED} long-lived connections answered within \
             {ANSWER_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ecmp_spreads_drain_and_failure_keep_connections() {
    if !require_root("ecmp_spreads_drain_and_failure_keep_connections") {
        return;
    }
    let pid = std::process::id();
    let topology = ScaleOutTopology::build(&format!("lbso{pid}-"));
    let servers = topology.serve_http();
    let router = topology.start_router_bird(&format!("lbso-bird-router-{pid}"));
    let started = Instant::now();
    let mut lb1 = Balancer::start(&topology, 1);
    let mut lb2 = Balancer::start(&topology, 2);

    // a. Both balancers announce; the router has an ECMP route; flows land on both.
    topology.wait_for_next_hops(&[1, 2], ANNOUNCE_LIMIT, || context(&router, &[&lb1, &lb2]));
    let announced = started.elapsed();
    let route = router.birdc(&["show", "route", "all", &format!("{VIP}/32")]);
    assert!(
        route.contains("BGP.med: 10") && route.contains("(64500,100)"),
        "the router's routes to the VIP lack the MED or community lbd was given:\n{route}"
    );
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let traffic = Traffic::start_to(&topology.client, vip, LONG_LIVED);
    let spread = (lb1.flows(), lb2.flows());
    assert!(
        spread.0 > 0 && spread.1 > 0,
        "{LONG_LIVED} connections from as many ports all went through one balancer: \
         flows lb1 {} lb2 {}\n{}",
        spread.0,
        spread.1,
        context(&router, &[&lb1, &lb2])
    );

    // b. Drain lb1: withdrawn; new flows all through lb2; every connection on its real.
    // lb2's mid-stream count before the drain: none of lb1's flows can reach it until then.
    let moved_before = lb2.mid_stream();
    let asked = Instant::now();
    lb1.drain(true);
    topology.wait_for_next_hops(&[2], CHANGE_LIMIT, || context(&router, &[&lb1, &lb2]));
    let drain_withdraw = asked.elapsed();
    let withdrawn = Instant::now();
    let before = (lb1.flows(), lb2.new_connections(), moved_before);
    wait_until_all_answer(&traffic, withdrawn, "lb1 drained");
    std::thread::sleep(DRAINED_FOR.saturating_sub(withdrawn.elapsed()));
    let after = (lb1.flows(), lb2.new_connections(), lb2.mid_stream());
    assert_eq!(
        after.0,
        before.0,
        "lb1 scheduled new flows while drained (asked {:?} ago)",
        asked.elapsed()
    );
    assert!(
        after.1 > before.1,
        "lb2 opened no new connection while lb1 was drained (lb1 flows, lb2 new connections, lb2 mid-stream): {before:?} → {after:?}"
    );
    assert!(
        after.2 > before.2,
        "no connection of lb1's reached lb2 mid-stream: {before:?} → {after:?}"
    );
    let moved_to_lb2 = after.2 - before.2;

    // c. Undrain: lb1 is back in the route, and takes new flows again.
    let asked = Instant::now();
    lb1.drain(false);
    topology.wait_for_next_hops(&[1, 2], CHANGE_LIMIT, || context(&router, &[&lb1, &lb2]));
    let undrain_announce = asked.elapsed();
    let back = Instant::now();
    let drained_connections = lb1.new_connections();
    wait_until_all_answer(&traffic, back, "lb1 undrained");
    wait_until(
        ANSWER_LIMIT,
        "lb1 takes new connections again after the undrain",
        || lb1.new_connections() > drained_connections,
    );

    // d. lb2 dies: link cut first (so that no FIN of its BGP session gets out), then lbd and
    // BIRD killed. Only BFD (or the hold timer) can tell the router.
    // Both balancers' BFD sessions are up at the router, so BFD can tell it.
    let bfd = router.birdc(&["show", "bfd", "sessions"]);
    for ip in LB_IPS {
        assert!(
            bfd.lines()
                .any(|line| line.contains(&ip.to_string()) && line.contains("Up")),
            "the router's BFD session with {ip} is not up:\n{bfd}"
        );
    }
    let mid_stream_before = lb1.mid_stream();
    let killed = Instant::now();
    topology.set_lb_link(2, false);
    lb2.lbd.stop_with(libc::SIGKILL);
    lb2.bird.kill();
    topology.wait_for_next_hops(&[1], CHANGE_LIMIT, || context(&router, &[&lb1]));
    let kill_withdraw = killed.elapsed();
    // What ended lb2's session, in BIRD's words (BFD, or the hold timer).
    let detected = router.protocol_state("lb2").unwrap_or_default();
    let gone = Instant::now();
    wait_until_all_answer(&traffic, gone, "lb2 killed");
    let recovered = wait_until_requests_served(&traffic, gone);
    let moved_to_lb1 = lb1.mid_stream() - mid_stream_before;
    let figures = traffic.stop(&Excused {
        real: None,
        from: Some(killed),
        until: Some(gone),
    });
    assert!(
        moved_to_lb1 > 0,
        "no connection of lb2's reached lb1 mid-stream after lb2 died"
    );
    assert_eq!(
        figures.broken, 0,
        "long-lived connections broke: {:?}",
        figures.errors
    );
    assert_eq!(
        figures.failed, figures.failed_excused,
        "requests failed outside lb2's death: {:?}",
        figures.errors
    );

    // e. No healthy real: lb1 withdraws the VIP; healthy again: announces it.
    drop(servers);
    let asked = Instant::now();
    topology.wait_for_next_hops(&[], CHANGE_LIMIT, || context(&router, &[&lb1]));
    let unhealthy_withdraw = asked.elapsed();
    let bgp = lb1.lbd.status().bgp.expect("lbd's status has a BGP block");
    assert_eq!(
        bgp.vips[0].withheld.as_deref(),
        Some("no healthy real"),
        "{bgp:?}"
    );
    let _servers = topology.serve_http();
    let asked = Instant::now();
    topology.wait_for_next_hops(&[1], CHANGE_LIMIT, || context(&router, &[&lb1]));
    let healthy_announce = asked.elapsed();

    // f. lbd stops: it withdraws first.
    let asked = Instant::now();
    let status = lb1.lbd.stop();
    let stop_took = asked.elapsed();
    assert!(
        status.success(),
        "lbd exited with {status}:\n{}",
        lb1.lbd.log()
    );
    topology.wait_for_next_hops(&[], CHANGE_LIMIT, || context(&router, &[]));
    let stop_withdraw = asked.elapsed();

    eprintln!(
        "scale-out | announce {announced:.2?} | drain withdraw {drain_withdraw:.2?} | undrain \
         announce {undrain_announce:.2?} | kill withdraw {kill_withdraw:.2?} ({detected}) | \
         long-lived {} kept {} | moved to lb2 mid-stream {moved_to_lb2} | moved to lb1 \
         mid-stream {moved_to_lb1} | flows at start lb1 {} lb2 {} | requests {} failed {} \
         (excused {}) | loop answered again {recovered:.2?} after the withdrawal | no healthy \
         real withdraw {unhealthy_withdraw:.2?} | healthy announce {healthy_announce:.2?} | \
         lbd stop withdraw {stop_withdraw:.2?} (lbd exited in {stop_took:.2?})",
        figures.long_lived,
        figures.long_lived - figures.broken,
        spread.0,
        spread.1,
        figures.requests,
        figures.failed,
        figures.failed_excused,
    );
}

/// The router's view (sessions, routes) and each balancer's (lbd's status, BIRD's sessions),
/// for a failure's message.
fn context(router: &Bird, balancers: &[&Balancer]) -> String {
    let mut text = format!(
        "router's BIRD:\n{}\n{}",
        router.birdc(&["show", "protocols", "all"]),
        router.birdc(&["show", "route", "all"])
    );
    for balancer in balancers {
        text.push_str(&balancer.describe());
    }
    text
}

/// Polls `done` every 20 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until the request loop has had a request answered that it made after
/// `since`; returns how long after `since` that was seen.
fn wait_until_requests_served(traffic: &Traffic, since: Instant) -> Duration {
    loop {
        let served: usize = traffic.served_since(since).values().sum();
        if served > 0 {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < ANSWER_LIMIT,
            "the request loop served {served} requests in {ANSWER_LIMIT:?} after lb2's withdrawal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
