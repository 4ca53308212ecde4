//! The soak (`lb-soak`, `cargo xtask soak`): lbd under steady load with connection churn for a
//! while, sampled every few seconds, with a verdict.
//!
//! The load: a new short connection (one `GET`) at a steady rate, and long-lived connections
//! each answering a `GET` every second, through the DR topology (three reals). Each sample
//! reads the flow table's occupancy (`lbadm status`'s map fill), lbd's resident memory, open
//! descriptors and threads (/proc), and the service's new-connection counter.
//!
//! Verdict:
//! - **The flow table follows the client**: at every sample after [`WARM_UP`], the table's
//!   occupancy lies within the range the client's own connections imply (see
//!   [`expected_flows`]): a leaked flow pushes it above, a flow lost early below. Not "last
//!   third against first" as for the rest: on a shared machine the client's pace varies (50
//!   to 120 connections a second over 5 s in two runs), and the table follows it, as it should.
//! - **Flat**: lbd's memory, descriptors and threads in the last third of the samples against
//!   the first third (after the warm-up), within the tolerances of [`Tolerances`] (each says
//!   why it is what it is). A leak grows with time: over a run it shows as a last third
//!   above the first, whatever the noise.
//! - **Counters consistent**: lbd's new connections (the service's `conns`) equal the
//!   connections the client opened — exactly: every SYN crosses the balancer, a SYN it
//!   retransmits belongs to the flow its first one opened, and a client never reuses a
//!   4-tuple within its 60 s TIME_WAIT, by when the flow (FIN_WAIT, 5 s here) has expired.
//!   The reals' counters add up to the service's.

use std::{
    collections::VecDeque,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{DrTopology, VIP, chaos::process::Footprint, http::HttpClient, lbd::Lbd};

/// FIN_WAIT timeout of the soak's config: short, so the table's occupancy settles within
/// seconds (rate × about 5-7 s), not IPVS's 120 s.
const TCP_FIN_TIMEOUT_S: u64 = 5;
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub duration: Duration,
    pub sample_every: Duration,
    /// New short connections per second.
    pub churn_per_second: u32,
    pub long_lived: usize,
    /// Namespace prefix (`<prefix>client`, …); the lbd instance is `<prefix>lbd`.
    pub prefix: String,
}

impl SoakOptions {
    /// `lb-soak`'s defaults for a run of `duration`: 100 new connections a second, 50
    /// long-lived, a sample every 5 s (every 3 s below two minutes).
    pub fn for_duration(duration: Duration, prefix: &str) -> SoakOptions {
        SoakOptions {
            duration,
            sample_every: if duration < Duration::from_secs(120) {
                Duration::from_secs(3)
            } else {
                Duration::from_secs(5)
            },
            churn_per_second: 100,
            long_lived: 50,
            prefix: prefix.to_owned(),
        }
    }
}

/// How far the last third may be from the first.
pub struct Tolerances;

impl Tolerances {
    /// Largest RSS of the last third at most 10 % (and at least 4 MiB) above the first
    /// third's: the allocator keeps freed memory in its arenas, and a listing's reply comes
    /// and goes; a leak does not stop at a bound.
    pub const RSS_FRACTION: f64 = 0.10;
    pub const RSS_MIN_KIB: u64 = 4 * 1024;
    /// Largest descriptor count of the last third at most 2 above the first third's: the
    /// admin connections of a sample in flight.
    pub const FDS: u64 = 2;
    /// Largest thread count of the last third at most 4 above the first third's: tokio's
    /// blocking pool starts threads for admin requests and keeps them 10 s idle.
    pub const THREADS: u64 = 4;
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub elapsed: Duration,
    /// Flows in lbd's table (`lbadm status`).
    pub flows: u64,
    /// The range the client's connections imply (see [`expected_flows`]).
    pub expected_flows: (u64, u64),
    pub footprint: Footprint,
    /// Connections the client opened so far (short and long-lived).
    pub client_connections: u64,
    /// New connections lbd counted on the service so far.
    pub lbd_connections: u64,
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub what: &'static str,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct SoakReport {
    pub options: SoakOptions,
    pub samples: Vec<Sample>,
    /// Connections the client opened (SYNs that went out: connected, refused or timed out).
    pub client_connections: u64,
    /// Of those, the short connections whose `GET` failed, and long-lived that broke.
    pub client_failures: u64,
    pub lbd_connections: u64,
    pub lbd_real_connections: u64,
    pub verdicts: Vec<Verdict>,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|verdict| verdict.passed)
    }

    /// The samples as a Markdown table.
    pub fn table(&self) -> String {
        let mut text = format!("{}\n", SoakReport::table_head());
        for sample in &self.samples {
            let _ = writeln!(text, "{}", sample_row(sample));
        }
        text
    }

    /// One line per verdict, then the totals.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for verdict in &self.verdicts {
            let _ = writeln!(
                text,
                "{} {}: {}",
                if verdict.passed { "ok  " } else { "FAIL" },
                verdict.what,
                verdict.detail
            );
        }
        let _ = writeln!(
            text,
            "{} connections by the client ({} failed or broke), {} counted by lbd over {:?}",
            self.client_connections,
            self.client_failures,
            self.lbd_connections,
            self.options.duration
        );
        text
    }
}

fn sample_row(sample: &Sample) -> String {
    format!(
        "| {:>4} s | {} | {}-{} | {:.1} | {} | {} | {} | {} |",
        sample.elapsed.as_secs(),
        sample.flows,
        sample.expected_flows.0,
        sample.expected_flows.1,
        sample.footprint.rss_kib as f64 / 1024.0,
        sample.footprint.fds,
        sample.footprint.threads,
        sample.client_connections,
        sample.lbd_connections
    )
}

/// Counts shared between the load's threads and the sampler.
#[derive(Default)]
struct ClientCounts {
    connections: AtomicU64,
    failures: AtomicU64,
    /// When each recent short connection was opened, oldest first (pruned by the sampler).
    opened: Mutex<VecDeque<Instant>>,
}

/// How long lbd's flow count may lag the table: it is the last sweep's (every second, plus
/// the sweep's own time on a busy machine).
const COUNT_LAG: Duration = Duration::from_secs(2);
/// How long a closed connection's flow may outlive its FIN_WAIT timeout: the 1 s granularity
/// of its last-seen time and the 1 s between sweeps.
const EXPIRY_SLACK: Duration = Duration::from_secs(2);

/// The range of flows lbd may count at `now`, given when the client opened its short
/// connections (each closed within milliseconds) and `long_lived` open ones. At least: those
/// opened early enough for the count to include them and recently enough not to have
/// expired, `(now - FIN_WAIT, now - COUNT_LAG]`. At most: any that might still be there,
/// `(now - FIN_WAIT - EXPIRY_SLACK - COUNT_LAG, now]`.
pub fn expected_flows(opened: &VecDeque<Instant>, long_lived: u64, now: Instant) -> (u64, u64) {
    let fin_wait = Duration::from_secs(TCP_FIN_TIMEOUT_S);
    let count = |from: Option<Instant>, until: Option<Instant>| {
        opened
            .iter()
            .filter(|at| {
                from.is_none_or(|from| **at > from) && until.is_some_and(|until| **at <= until)
            })
            .count() as u64
    };
    let low = count(now.checked_sub(fin_wait), now.checked_sub(COUNT_LAG));
    let high = count(
        now.checked_sub(fin_wait + EXPIRY_SLACK + COUNT_LAG),
        Some(now),
    );
    (long_lived + low, long_lived + high)
}

/// Runs the soak; prints each sample as it is taken (a table row). Stops early, with what it
/// has, when `interrupted` is set. Panics if the topology or lbd cannot be set up.
pub fn run(options: &SoakOptions, interrupted: &AtomicBool) -> SoakReport {
    let topology = DrTopology::build(&options.prefix, &["real1", "real2", "real3"]);
    topology.attach_pass_program();
    let _servers = topology.serve_http();
    let lbd = Lbd::start(
        &topology.lb,
        &format!("{}lbd", options.prefix),
        &format!(
            "interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: {VIP}
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {{address: 192.0.2.11}}
      - {{address: 192.0.2.12}}
      - {{address: 192.0.2.13}}
timeouts: {{tcp_fin: {TCP_FIN_TIMEOUT_S}s}}
limits: {{flows: 262144, services: 16, reals: 64}}
"
        ),
    );
    let pid = lbd.pid().expect("lbd runs");
    let counted_before = lbd.listing().services[0].stats.conns;

    let counts = Arc::new(ClientCounts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&topology, options, &counts, &stop);

    println!("{}", SoakReport::table_head());
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = started + options.sample_every;
    while next <= started + options.duration && !interrupted.load(Ordering::SeqCst) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += options.sample_every;
        let status = lbd.status();
        let listing = lbd.listing();
        let now = Instant::now();
        let expected = {
            let mut opened = counts.opened.lock().unwrap_or_else(|e| e.into_inner());
            let horizon = Duration::from_secs(TCP_FIN_TIMEOUT_S) + EXPIRY_SLACK + COUNT_LAG;
            while opened
                .front()
                .is_some_and(|at| now.duration_since(*at) > horizon)
            {
                opened.pop_front();
            }
            expected_flows(&opened, options.long_lived as u64, now)
        };
        let sample = Sample {
            elapsed: started.elapsed(),
            expected_flows: expected,
            flows: status
                .maps
                .iter()
                .find(|map| map.name == "flows")
                .map_or(0, |map| map.used),
            footprint: Footprint::of(pid),
            client_connections: counts.connections.load(Ordering::SeqCst),
            lbd_connections: listing.services[0].stats.conns - counted_before,
        };
        println!("{}", sample_row(&sample));
        samples.push(sample);
    }
    stop.store(true, Ordering::SeqCst);
    for thread in load {
        thread.join().expect("a load thread panicked");
    }
    let listing = lbd.listing();
    let lbd_connections = listing.services[0].stats.conns - counted_before;
    let lbd_real_connections = listing.services[0]
        .reals
        .iter()
        .map(|real| real.stats.conns)
        .sum::<u64>();
    let client_connections = counts.connections.load(Ordering::SeqCst);
    let client_failures = counts.failures.load(Ordering::SeqCst);
    let verdicts = verdicts(
        &samples,
        client_connections,
        lbd_connections,
        lbd_real_connections,
    );
    SoakReport {
        options: options.clone(),
        samples,
        client_connections,
        client_failures,
        lbd_connections,
        lbd_real_connections,
        verdicts,
    }
}

impl SoakReport {
    fn table_head() -> &'static str {
        "| time | flows | expected | lbd RSS (MiB) | fds | threads | client conns | lbd conns |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|"
    }
}

/// The churn (paced new connections) and the long-lived connections' rounds, on threads in
/// the client's namespace, until `stop` (bounded by the run's duration plus a minute).
fn start_load(
    topology: &DrTopology,
    options: &SoakOptions,
    counts: &Arc<ClientCounts>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let bound = options.duration + Duration::from_secs(60);
    let mut long_lived = crate::ha::LongLived::open(&topology.client, options.long_lived, TIMEOUT)
        .into_connections();
    counts
        .connections
        .fetch_add(long_lived.len() as u64, Ordering::SeqCst);
    let rounds = {
        let (counts, stop) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut broken = vec![false; long_lived.len()];
            while !stop.load(Ordering::SeqCst) && started.elapsed() < bound {
                for (index, (connection, real)) in long_lived.iter_mut().enumerate() {
                    if !broken[index] && connection.get("/").ok().as_ref() != Some(real) {
                        broken[index] = true;
                        counts.failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let churn = {
        let (counts, stop) = (counts.clone(), stop.clone());
        let every = Duration::from_secs(1) / options.churn_per_second.max(1);
        topology.client.spawn_thread(move || {
            let started = Instant::now();
            let mut next = started;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < bound {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                // Behind schedule (a busy machine): catch up at most a second's worth.
                next = (next + every).max(Instant::now() - Duration::from_secs(1));
                // Every attempt sends a SYN the balancer counts, whether it connects or not.
                counts.connections.fetch_add(1, Ordering::SeqCst);
                counts
                    .opened
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back(Instant::now());
                let answered = HttpClient::connect(vip, TIMEOUT)
                    .and_then(|mut connection| connection.get("/"))
                    .is_ok();
                if !answered {
                    counts.failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    vec![rounds, churn]
}

/// How long the table takes to fill: a closed connection's flow leaves it after the FIN_WAIT
/// timeout plus up to 2 s (last-seen granularity, sweep interval). Samples before are shown
/// but not compared.
const WARM_UP: Duration = Duration::from_secs(TCP_FIN_TIMEOUT_S + 3);

/// The samples after [`WARM_UP`] of the first and the last third (the middle one left out,
/// so a slow start or a last sample do not decide alone).
fn thirds(samples: &[Sample]) -> (&[Sample], &[Sample]) {
    let warm = samples
        .iter()
        .position(|sample| sample.elapsed >= WARM_UP)
        .unwrap_or(samples.len());
    let samples = &samples[warm..];
    let third = samples.len() / 3;
    (&samples[..third], &samples[samples.len() - third..])
}

fn verdicts(
    samples: &[Sample],
    client_connections: u64,
    lbd_connections: u64,
    lbd_real_connections: u64,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let (first, last) = thirds(samples);
    if first.is_empty() {
        verdicts.push(Verdict {
            what: "samples",
            passed: false,
            detail: format!("{} samples: too few to compare thirds", samples.len()),
        });
    } else {
        let max =
            |part: &[Sample], value: fn(&Sample) -> u64| part.iter().map(value).max().unwrap_or(0);
        let outside: Vec<String> = samples
            .iter()
            .filter(|sample| sample.elapsed >= WARM_UP)
            .filter(|sample| {
                sample.flows < sample.expected_flows.0 || sample.flows > sample.expected_flows.1
            })
            .map(|sample| {
                format!(
                    "{} at {} s (expected {}-{})",
                    sample.flows,
                    sample.elapsed.as_secs(),
                    sample.expected_flows.0,
                    sample.expected_flows.1
                )
            })
            .collect();
        verdicts.push(Verdict {
            what: "flow table follows the client",
            passed: outside.is_empty(),
            detail: if outside.is_empty() {
                "every sample after the warm-up within the range the client's connections imply"
                    .to_owned()
            } else {
                format!("outside the range: {}", outside.join(", "))
            },
        });
        let rss = |sample: &Sample| sample.footprint.rss_kib;
        let (rss_first, rss_last) = (max(first, rss), max(last, rss));
        let rss_slack =
            ((rss_first as f64 * Tolerances::RSS_FRACTION) as u64).max(Tolerances::RSS_MIN_KIB);
        verdicts.push(Verdict {
            what: "lbd memory flat",
            passed: rss_last <= rss_first + rss_slack,
            detail: format!(
                "largest RSS {rss_first} KiB in the first third, {rss_last} KiB in the last \
                 (at most {rss_slack} KiB more)"
            ),
        });
        for (what, value, slack) in [
            (
                "lbd descriptors flat",
                (|sample: &Sample| sample.footprint.fds) as fn(&Sample) -> u64,
                Tolerances::FDS,
            ),
            (
                "lbd threads flat",
                |sample: &Sample| sample.footprint.threads,
                Tolerances::THREADS,
            ),
        ] {
            let (in_first, in_last) = (max(first, value), max(last, value));
            verdicts.push(Verdict {
                what,
                passed: in_last <= in_first + slack,
                detail: format!(
                    "at most {in_first} in the first third, {in_last} in the last (at most \
                     {slack} more)"
                ),
            });
        }
    }
    verdicts.push(Verdict {
        what: "counters consistent",
        passed: lbd_connections == client_connections && lbd_real_connections == lbd_connections,
        detail: format!(
            "client opened {client_connections}, lbd counted {lbd_connections} on the service \
             and {lbd_real_connections} over its reals (must be equal)"
        ),
    });
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(index: u64, flows: u64, rss_kib: u64) -> Sample {
        Sample {
            elapsed: WARM_UP + Duration::from_secs(index),
            flows,
            expected_flows: (400, 600),
            footprint: Footprint {
                rss_kib,
                fds: 20,
                threads: 10,
            },
            client_connections: 0,
            lbd_connections: 0,
        }
    }

    #[test]
    fn a_growing_table_or_memory_fails_and_a_flat_one_passes() {
        let flat: Vec<_> = (0..9)
            .map(|i| sample(i, 500 + i % 2 * 40, 30_000))
            .collect();
        assert!(verdicts(&flat, 7, 7, 7).iter().all(|v| v.passed));
        let leaking: Vec<_> = (0..9).map(|i| sample(i, 500 + i * 20, 30_000)).collect();
        let failed: Vec<_> = verdicts(&leaking, 7, 7, 7)
            .into_iter()
            .filter(|v| !v.passed)
            .map(|v| v.what)
            .collect();
        assert_eq!(failed, ["flow table follows the client"]);
        let growing: Vec<_> = (0..9).map(|i| sample(i, 500, 30_000 + i * 2000)).collect();
        let failed: Vec<_> = verdicts(&growing, 7, 8, 8)
            .into_iter()
            .filter(|v| !v.passed)
            .map(|v| v.what)
            .collect();
        assert_eq!(failed, ["lbd memory flat", "counters consistent"]);
        // Filling up (and memory settling) during the warm-up is not growth.
        let mut filling = flat.clone();
        for (index, sample) in filling.iter_mut().take(3).enumerate() {
            sample.elapsed = Duration::from_secs(index as u64);
            sample.flows = 100 * index as u64;
            sample.footprint.rss_kib = 10_000;
        }
        filling.extend(flat.iter().take(3).cloned());
        assert!(verdicts(&filling, 7, 7, 7).iter().all(|v| v.passed));
    }

    #[test]
    fn the_expected_range_counts_connections_that_may_still_be_there() {
        let now = Instant::now() + Duration::from_secs(60);
        // One connection a second over the last 20 s, the newest just now.
        let opened: VecDeque<Instant> = (0..20)
            .rev()
            .map(|ago| now - Duration::from_secs(ago))
            .collect();
        // At least those of (now - 5 s, now - 2 s]: 3 (ages 4, 3, 2); at most those of
        // (now - 9 s, now]: 9 (ages 8 to 0); plus 50 long-lived.
        assert_eq!(expected_flows(&opened, 50, now), (53, 59));
    }
}
