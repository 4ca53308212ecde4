//! New TCP connections per second and latency percentiles through lbd, from wrk, next to the
//! three references of issue 12 on the same network, client and servers: direct to one real,
//! an nftables DNAT balancer and HAProxy `mode tcp`.
//!
//! The network is the LVS-DR topology ([`DrTopology`], namespaces `lbcn-<pid>-…`): a client,
//! the balancer and three reals on one bridge. Every real runs nginx (one process, answering
//! each `GET` with its name) on ports 80, 81 and 8080: one server for every setup, and one
//! that is not the bottleneck by design (the harness's own server, [`crate::http`], sleeps
//! 20 ms whenever its accept queue is empty and starts a thread per connection). Each setup
//! has an address or port of its own, so all stay up for the whole run and nothing restarts
//! between samples:
//!
//! - direct: the client to real1's own address, `192.0.2.11:80`;
//! - lbd: the VIP `192.0.2.100:80`, a DR service (`rr`) over the three reals, XDP in native
//!   mode on the balancer's eth0; and `192.0.2.100:81` with real1 alone, which against
//!   direct shows what the balancer's path costs apart from spreading the connections;
//! - nftables: `192.0.2.101:80` on the balancer, DNAT by `numgen inc mod 3` to the reals'
//!   port 8080 (conntrack). The reals route what they send from port 8080 back through the
//!   balancer (a policy rule on the source port), so nothing else changes path; the balancer
//!   sends no ICMP redirects for the hairpin;
//! - HAProxy: `192.0.2.102:80` on the balancer, `mode tcp`, `balance roundrobin` over the
//!   reals' port 80, one thread. The nftables table exempts its traffic from conntrack, so
//!   it pays for no DNAT it does not use.
//!
//! wrk sends `Connection: close`, so each request is a connection of its own and wrk's
//! requests per second are connections per second. The setups are sampled in rotations (each
//! round starts one setup later), so each ratio comes from samples of one round.

mod cpu;
mod network;
mod wrk;

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use super::{Row, Samples, Section, Target};
use crate::{privilege::require_root, topology::VIP};
use cpu::CpuUse;
use network::Network;

const REALS: [&str; 3] = ["real1", "real2", "real3"];
/// Where the nftables balancer listens, on the balancer's eth0 next to the VIP.
const NFT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
/// Where HAProxy listens.
const HAPROXY_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 102);
/// The reals' port for nftables' connections: what they send from it goes back through the
/// balancer (conntrack must see the replies to undo the DNAT); from port 80 it goes straight
/// to the client (direct routing, direct access) or to the balancer's own address (HAProxy).
const NFT_REAL_PORT: u16 = 8080;
/// The routing table of the reals' policy route for [`NFT_REAL_PORT`].
const NFT_REPLY_TABLE: &str = "100";
const NFT_TABLE: &str = "lbcn_bench";

const ROUNDS: usize = 5;
const SAMPLE: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_secs(1);
/// One wrk thread: on two CPUs a second would only take time from the reals and balancer.
const WRK_THREADS: usize = 1;
/// Connections wrk keeps in flight.
const WRK_CONNECTIONS: usize = 32;
/// wrk's own per-request timeout; a request slower than this is an error, not a sample.
const WRK_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than any wrk run may take beyond its duration before it is killed.
const WRK_GRACE: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// lbd's FIN timeout, and conntrack's TIME_WAIT in the balancer: ten seconds keep both
/// tables far below their sizes at these rates; the defaults (120 s) would fill conntrack's.
const FIN_TIMEOUT_S: u32 = 10;

/// lbd's second service, with real1 alone: the balancer's path without the spreading.
const LBD_ONE_REAL_PORT: u16 = 81;

/// One way from the client to the reals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Direct,
    Lbd,
    /// lbd in front of real1 alone: against direct, what the balancer's path costs, apart
    /// from spreading connections over three nginx processes instead of one.
    LbdOneReal,
    Nftables,
    Haproxy,
}

const SETUPS: [Setup; 5] = [
    Setup::Lbd,
    Setup::Direct,
    Setup::Nftables,
    Setup::Haproxy,
    Setup::LbdOneReal,
];

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Direct => "direct to one real",
            Setup::Lbd => "lbd",
            Setup::LbdOneReal => "lbd, real1 alone",
            Setup::Nftables => "nftables DNAT",
            Setup::Haproxy => "HAProxy mode tcp",
        }
    }

    fn address(self) -> SocketAddr {
        let ip = match self {
            Setup::Direct => crate::topology::real_ip(0),
            Setup::Lbd | Setup::LbdOneReal => VIP,
            Setup::Nftables => NFT_IP,
            Setup::Haproxy => HAPROXY_IP,
        };
        let port = match self {
            Setup::LbdOneReal => LBD_ONE_REAL_PORT,
            _ => 80,
        };
        SocketAddr::V4(SocketAddrV4::new(ip, port))
    }
}

/// Measures the setups and returns the section of the report.
pub fn run() -> Vec<Section> {
    if !require_root("the connection-rate bench") {
        return Vec::new();
    }
    let network = Network::build();
    for setup in SETUPS {
        network.check_serves(setup);
        // Warms caches, ARP and the servers' accept queues; its figures are not kept.
        network.wrk(setup, WARM_UP);
    }
    let mut samples: Vec<(Setup, Vec<Measurement>)> =
        SETUPS.iter().map(|&setup| (setup, Vec::new())).collect();
    for round in 0..ROUNDS {
        for offset in 0..SETUPS.len() {
            let index = (round + offset) % SETUPS.len();
            let measurement = network.wrk(SETUPS[index], SAMPLE);
            samples[index].1.push(measurement);
        }
    }
    vec![Section {
        title: "New TCP connections per second".into(),
        method: method(),
        rows: rows(&samples),
    }]
}

fn method() -> String {
    format!(
        "wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -H 'Connection: close' --latency, {ROUNDS} \
         rounds of {} s per setup in rotation, in namespaces: a client, the balancer and {} reals \
         on one bridge, all sharing the machine's {} CPUs. Every real runs nginx (one process). \
         lbd: a DR service (rr, XDP native), and a second one with real1 alone. nftables: \
         DNAT `numgen inc mod {}` to the reals with conntrack, replies routed back through \
         the balancer. HAProxy: mode tcp, roundrobin, nbthread 1, maxconn 4096. Latency is \
         wrk's: from the request's first byte to the response's last, the handshake not \
         included. CPU figures come from /proc (softirq is mostly the kernel's packet path; \
         `other` is work outside the bench, on a shared machine); CPU per connection adds the \
         bench's processes and softirq.",
        SAMPLE.as_secs(),
        REALS.len(),
        cpus(),
        REALS.len(),
    )
}

fn rows(samples: &[(Setup, Vec<Measurement>)]) -> Vec<Row> {
    let of = |setup: Setup| {
        &samples
            .iter()
            .find(|(candidate, _)| *candidate == setup)
            .expect("every setup was measured")
            .1
    };
    let series = |setup: Setup, value: Quantity| Samples(of(setup).iter().map(value).collect());
    let lbd = of(Setup::Lbd);
    let references = [
        (Setup::Direct, 0.95),
        (Setup::Nftables, 1.15),
        (Setup::Haproxy, 1.5),
    ];
    let mut rows = Vec::new();
    for (reference, bound) in references {
        rows.push(
            Row::against(
                format!("new TCP connections/s, vs {}", reference.name()),
                "conn/s",
                series(Setup::Lbd, |m| m.connections_per_s),
                reference.name(),
                series(reference, |m| m.connections_per_s),
                Some(Target::AtLeast(bound)),
            )
            .note(format!(
                "{} {}",
                load_note(Setup::Lbd, lbd),
                load_note(reference, of(reference))
            )),
        );
    }
    rows.push(
        Row::against(
            "new TCP connections/s, lbd in front of real1 alone, vs direct to real1",
            "conn/s",
            series(Setup::LbdOneReal, |m| m.connections_per_s),
            Setup::Direct.name(),
            series(Setup::Direct, |m| m.connections_per_s),
            None,
        )
        .note(format!(
            "The balancer's path alone, without spreading over three servers. {}",
            load_note(Setup::LbdOneReal, of(Setup::LbdOneReal))
        )),
    );
    // Less sensitive than the rates to whatever else the machine runs: what each connection
    // cost the client, servers, balancer and kernel together.
    for (reference, _) in references {
        rows.push(Row::against(
            format!("CPU per connection (all sides), vs {}", reference.name()),
            "µs",
            series(Setup::Lbd, Measurement::cpu_us_per_connection),
            reference.name(),
            series(reference, Measurement::cpu_us_per_connection),
            None,
        ));
    }
    rows.push(Row::against(
        "CPU per connection (all sides), lbd in front of real1 alone, vs direct to real1",
        "µs",
        series(Setup::LbdOneReal, Measurement::cpu_us_per_connection),
        Setup::Direct.name(),
        series(Setup::Direct, Measurement::cpu_us_per_connection),
        None,
    ));
    let percentiles: [(&str, Quantity); 2] = [("p50", |m| m.p50_ms), ("p99", |m| m.p99_ms)];
    for (percentile, value) in percentiles {
        for (reference, _) in references {
            rows.push(Row::against(
                format!("latency {percentile}, vs {}", reference.name()),
                "ms",
                series(Setup::Lbd, value),
                reference.name(),
                series(reference, value),
                None,
            ));
        }
    }
    rows
}

/// Where the CPUs went while `setup` was measured (medians over its samples), which side was
/// the bottleneck, and wrk's errors if there were any.
fn load_note(setup: Setup, measurements: &[Measurement]) -> String {
    let median = |value: fn(&CpuUse) -> f64| {
        Samples(measurements.iter().map(|m| value(&m.cpu)).collect()).median()
    };
    let load = Load {
        busy: median(|cpu| cpu.busy),
        softirq: median(|cpu| cpu.softirq),
        wrk: median(|cpu| cpu.wrk),
        servers: median(|cpu| cpu.servers),
        busiest_server: median(|cpu| cpu.busiest_server),
        haproxy: median(|cpu| cpu.haproxy),
        lbd: median(|cpu| cpu.lbd),
    };
    let mut note = format!(
        "{}: {:.2}/{} CPUs busy (softirq {:.2}, wrk {:.2}, nginx {:.2}",
        setup.name(),
        load.busy,
        cpus(),
        load.softirq,
        load.wrk,
        load.servers,
    );
    if setup == Setup::Haproxy {
        let _ = write!(note, ", haproxy {:.2}", load.haproxy);
    }
    if matches!(setup, Setup::Lbd | Setup::LbdOneReal) {
        let _ = write!(note, ", lbd daemon {:.2}", load.lbd);
    }
    let _ = write!(
        note,
        ", other {:.2}) → {}",
        load.other(),
        load.bottleneck(setup)
    );
    let errors: u64 = measurements.iter().map(|m| m.errors).sum();
    if errors > 0 {
        let _ = write!(note, "; {errors} wrk errors");
    }
    note.push('.');
    note
}

/// CPUs used during a setup's samples (medians), by what.
struct Load {
    busy: f64,
    /// The kernel's packet work (veth, bridge, XDP, forwarding, conntrack) mostly lands here.
    softirq: f64,
    wrk: f64,
    servers: f64,
    busiest_server: f64,
    haproxy: f64,
    lbd: f64,
}

impl Load {
    /// What neither the bench's processes nor softirq used: other work on the machine.
    fn other(&self) -> f64 {
        (self.busy - self.softirq - self.wrk - self.servers - self.haproxy - self.lbd).max(0.0)
    }

    /// The side that limited the setup: a single-threaded process that used a whole CPU, or
    /// else the machine when every CPU was busy, naming the largest share.
    fn bottleneck(&self, setup: Setup) -> String {
        const SATURATED: f64 = 0.9;
        // More than this of other work and the machine was not the bench's alone.
        const SHARED: f64 = 0.25;
        if self.wrk >= SATURATED {
            return "client-bound (wrk's one thread)".into();
        }
        if setup == Setup::Haproxy && self.haproxy >= SATURATED {
            return "balancer-bound (HAProxy's one thread)".into();
        }
        if self.busiest_server >= SATURATED {
            return "server-bound (an nginx process)".into();
        }
        if self.busy < SATURATED * cpus() as f64 {
            return "no CPU saturated (latency-bound: wrk's connections in flight)".into();
        }
        if self.other() >= SHARED {
            return format!(
                "CPU-bound, on a machine shared with other work ({:.2} CPUs)",
                self.other()
            );
        }
        let shares = [
            ("the kernel's packet path (softirq)", self.softirq),
            ("the client (wrk)", self.wrk),
            ("the servers (nginx)", self.servers),
            ("HAProxy", self.haproxy),
        ];
        let (largest, _) = shares
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("four shares");
        format!(
            "CPU-bound: client, balancer and reals share every CPU; the largest share is {largest}"
        )
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One figure of a [`Measurement`].
type Quantity = fn(&Measurement) -> f64;

/// What one wrk run measured.
#[derive(Clone, Debug)]
struct Measurement {
    connections_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Socket errors and non-2xx answers.
    errors: u64,
    cpu: CpuUse,
}

impl Measurement {
    fn cpu_us_per_connection(&self) -> f64 {
        self.cpu.bench() / self.connections_per_s * 1e6
    }
}
