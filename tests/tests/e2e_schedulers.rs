//! The schedulers and connection tracking end to end, through real TCP connections: a client,
//! the balancer (the real `lbd` binary) and three LVS-DR reals, each in a namespace of its own.
//!
//! - wlc spreads long-lived connections by weight, `lbadm` shows them as ActiveConn, and the
//!   counts go back to zero once every client has closed (through FIN_WAIT and its timeout);
//! - a drained real (weight 0) keeps its connections while new ones go elsewhere;
//! - sh keeps one client on one real;
//! - Maglev: with a real removed, a balancer that has never seen the other reals'
//!   connections (a fresh flow table) still sends them where they were.
//!
//! Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, VIP,
    http::{HttpClient, HttpServer},
    lbd::Lbd,
    netns,
    privilege::require_root,
};

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long counts may take to settle: a FIN_WAIT flow lives `tcp_fin` (2 s here) plus the
/// second its last-seen time may lag, and the sweep runs every second.
const SETTLE: Duration = Duration::from_secs(10);

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), 80)
}

/// The reals' names, `real1` … `real3`, by address (`192.0.2.11` is `real1`).
fn real_name(address: IpAddr) -> String {
    let IpAddr::V4(v4) = address else {
        panic!("IPv4 reals only here: {address}");
    };
    format!("real{}", v4.octets()[3] - 10)
}

/// A namespace topology with an HTTP server on each real answering with its name, and `lbd`
/// running `services` (YAML under `services:`) and `extra` top-level keys.
struct Bench {
    topology: DrTopology,
    _servers: Vec<HttpServer>,
    lbd: Lbd,
}

impl Bench {
    fn start(test: &str, services: &str, extra: &str) -> Option<Bench> {
        if !require_root(test) {
            return None;
        }
        let prefix = format!("lbt-sch-{test}-{}-", std::process::id());
        netns::remove_leftovers(&prefix);
        let topology = DrTopology::build(&prefix, &["real1", "real2", "real3"]);
        topology.attach_pass_program();
        let servers = topology.serve_http();
        let config = format!(
            "interfaces:\n  - name: eth0\n    xdp_mode: native\nservices:\n{services}{extra}\
             limits: {{flows: 65536, services: 16, reals: 64}}\n"
        );
        let lbd = Lbd::start(
            &topology.lb,
            &format!("lbt-sch-{test}-{}", std::process::id()),
            &config,
        );
        Some(Bench {
            topology,
            _servers: servers,
            lbd,
        })
    }

    /// Opens `count` connections one after another, each answering one request before the
    /// next opens (so each is established, and counted so, before the next is scheduled),
    /// and keeps them open. Returns each with the real that answered.
    fn open(&self, count: usize) -> Vec<(HttpClient, String)> {
        (0..count)
            .map(|index| {
                let mut connection = self
                    .topology
                    .client
                    .run(|| HttpClient::connect(vip(), TIMEOUT))
                    .unwrap_or_else(|e| {
                        panic!("connection {index}: connecting: {e}\n{}", self.lbd.log())
                    });
                let real = connection.get("/").unwrap_or_else(|e| {
                    panic!("connection {index}: first request: {e}\n{}", self.lbd.log())
                });
                (connection, real.trim_end().to_owned())
            })
            .collect()
    }

    /// (ActiveConn, InActConn) per real name, as `lbadm -L -n` reports them.
    fn counts(&self) -> HashMap<String, (u64, u64)> {
        self.lbd.listing().services[0]
            .reals
            .iter()
            .map(|real| {
                (
                    real_name(real.address),
                    (real.active_conn, real.inactive_conn),
                )
            })
            .collect()
    }

    /// Polls the counts until `done` holds, for at most [`SETTLE`]; returns the last counts.
    fn wait_for_counts(
        &self,
        what: &str,
        done: impl Fn(&HashMap<String, (u64, u64)>) -> bool,
    ) -> HashMap<String, (u64, u64)> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let counts = self.counts();
            if done(&counts) {
                return counts;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: counts still {counts:?} after {SETTLE:?}\n{}",
                self.lbd.lbadm(&["-L", "-n", "-c"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn per_real(connections: &[(HttpClient, String)]) -> HashMap<String, usize> {
    let mut served = HashMap::new();
    for (_, real) in connections {
        *served.entry(real.clone()).or_default() += 1;
    }
    served
}

#[test]
fn wlc_spreads_long_lived_connections_by_weight_and_counts_return_to_zero() {
    let Some(bench) = Bench::start(
        "wlc",
        "  - vip: 192.0.2.100\n    port: 80\n    protocol: tcp\n    scheduler: wlc\n    reals:\n\
         \x20     - {address: 192.0.2.11, weight: 1}\n      - {address: 192.0.2.12, weight: 2}\n\
         \x20     - {address: 192.0.2.13, weight: 3}\n",
        "timeouts: {tcp_fin: 2s}\n",
    ) else {
        return;
    };
    // IPVS's rule on established connections (overhead 256 each) over weights 1:2:3 repeats
    // every six connections: 1, 2, 3, 3, 2, 3 (ties to the first). So 60 split exactly.
    let connections = bench.open(60);
    let served = per_real(&connections);
    assert_eq!(
        (served["real1"], served["real2"], served["real3"]),
        (10, 20, 30),
        "{served:?}"
    );
    let counts = bench.counts();
    assert_eq!(
        (counts["real1"], counts["real2"], counts["real3"]),
        ((10, 0), (20, 0), (30, 0)),
        "ActiveConn, InActConn: {}",
        bench.lbd.lbadm(&["-L", "-n"])
    );
    let table = bench.lbd.lbadm(&["-L", "-n", "-c"]);
    assert_eq!(table.matches(" ESTABLISHED ").count(), 60, "{table}");

    // Every client closes: its FIN moves the flow to FIN_WAIT (inactive) at once, and the
    // flow leaves the counts when tcp_fin expires.
    drop(connections);
    let closing = bench.wait_for_counts("after the clients closed", |counts| {
        counts.values().all(|&(active, _)| active == 0)
    });
    let inactive: u64 = closing.values().map(|&(_, inactive)| inactive).sum();
    assert_eq!(inactive, 60, "closed connections in FIN_WAIT: {closing:?}");
    bench.wait_for_counts("after tcp_fin expired", |counts| {
        counts.values().all(|&counts| counts == (0, 0))
    });
    let table = bench.lbd.lbadm(&["-L", "-n", "-c"]);
    assert_eq!(table.lines().count(), 2, "only the headers left: {table}");
}

#[test]
fn a_drained_real_keeps_its_connections_while_new_ones_go_elsewhere() {
    let services = "  - vip: 192.0.2.100\n    port: 80\n    protocol: tcp\n    scheduler: wlc\n    \
                    reals:\n      - {address: 192.0.2.11, weight: 1}\n      - {address: 192.0.2.12, \
                    weight: 1}\n      - {address: 192.0.2.13, weight: 1}\n";
    let Some(mut bench) = Bench::start("drain", services, "") else {
        return;
    };
    let mut kept = bench.open(30);
    assert_eq!(per_real(&kept)["real1"], 10);

    // Drained by a restart with weight 0 (flows and ids are kept across it).
    bench.lbd.edit_config(
        "{address: 192.0.2.11, weight: 1}",
        "{address: 192.0.2.11, weight: 0}",
    );
    bench.lbd.restart(&bench.topology.lb);
    for (index, (connection, real)) in kept.iter_mut().enumerate() {
        let answer = connection
            .get("/")
            .unwrap_or_else(|e| panic!("kept connection {index} on {real}: {e}"));
        assert_eq!(answer.trim_end(), real, "kept connection {index} moved");
    }
    let counts = bench.counts();
    assert_eq!(
        counts["real1"],
        (10, 0),
        "the draining real's connections stay visible: {counts:?}"
    );
    let fresh = bench.open(20);
    let served = per_real(&fresh);
    assert_eq!(
        served.get("real1"),
        None,
        "a drained real takes no new connection"
    );
    assert_eq!((served["real2"], served["real3"]), (10, 10), "{served:?}");

    // Its own clients leave: the draining real's active count falls to zero.
    kept.retain(|(_, real)| real != "real1");
    bench.wait_for_counts("after real1's clients closed", |counts| {
        counts["real1"].0 == 0
    });
}

#[test]
fn source_hashing_keeps_a_client_on_one_real() {
    let services = "  - vip: 192.0.2.100\n    port: 80\n    protocol: tcp\n    scheduler: sh\n    \
                    reals:\n      - {address: 192.0.2.11}\n      - {address: 192.0.2.12}\n      - \
                    {address: 192.0.2.13}\n";
    let Some(bench) = Bench::start("sh", services, "") else {
        return;
    };
    let connections = bench.open(20);
    let served = per_real(&connections);
    assert_eq!(served.len(), 1, "one client, one real: {served:?}");
}

#[test]
fn maglev_keeps_the_other_reals_connections_when_one_is_removed_even_on_a_fresh_balancer() {
    let services = "  - vip: 192.0.2.100\n    port: 80\n    protocol: tcp\n    scheduler: mh\n    \
                    reals:\n      - {address: 192.0.2.11}\n      - {address: 192.0.2.12}\n      - \
                    {address: 192.0.2.13}\n";
    let Some(mut bench) = Bench::start("mh", services, "") else {
        return;
    };
    let mut connections = bench.open(30);
    let served = per_real(&connections);
    assert_eq!(
        served.len(),
        3,
        "30 connections over three reals: {served:?}"
    );

    // A balancer that never saw these connections (its flow table empty, as a peer's or a
    // replacement's would be), with real3 removed. Nothing is sent while it changes.
    let status = bench.lbd.stop();
    assert!(status.success(), "{status}");
    bench.lbd.teardown();
    bench.lbd.edit_config("      - {address: 192.0.2.13}\n", "");
    bench.lbd.restart(&bench.topology.lb);
    assert!(
        !bench.lbd.log().contains("adopting pinned maps"),
        "a fresh start: {}",
        bench.lbd.log()
    );

    // Every connection of real1 and real2 goes on: its segments, which carry no SYN and have
    // no flow, follow the Maglev table, where only real3's slots moved.
    let mut kept = 0;
    for (index, (connection, real)) in connections.iter_mut().enumerate() {
        if real == "real3" {
            continue;
        }
        let answer = connection
            .get("/")
            .unwrap_or_else(|e| panic!("connection {index} on {real} broke: {e}"));
        assert_eq!(answer.trim_end(), real, "connection {index} moved");
        kept += 1;
    }
    assert_eq!(kept, served["real1"] + served["real2"]);
    let reasons: HashMap<String, u64> = bench
        .lbd
        .listing()
        .reasons
        .into_iter()
        .map(|reason| (reason.reason, reason.packets))
        .collect();
    assert!(
        reasons["forwarded_mid_stream"] >= kept as u64,
        "picked up mid-stream: {reasons:?}"
    );
}
