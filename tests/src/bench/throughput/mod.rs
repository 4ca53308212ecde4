//! Packets per second through namespaces: an in-kernel generator → a balancer → a sink,
//! lbd against the MAC-swap ceiling on the same path (one arm: `XDP_TX`; two arms: a
//! redirect toward the sink), and UDP against nftables DNAT; then what a packet costs in
//! CPU: the kernel's accounting of the balancer program, and the whole machine's kernel
//! time per million packets.
//!
//! Every balancer gets a path of its own, built alike ([`path`]), and samples alternate
//! between lbd's path and its reference's, a second or so each, for several rounds: each
//! ratio comes from neighbouring samples. The generator ([`traffic`]) runs on every CPU; a
//! frame goes from generator to balancer to sink on the CPU that generated it (veth hands
//! XDP frames on through the same CPU's softirq), so a path's speed is the CPU time its
//! three programs take per frame, and the generator is never far ahead of the rest.

mod path;
mod traffic;

use std::{net::SocketAddrV4, time::Duration};

use path::{Arms, BALANCER_IN_MAC, CLIENT_IP, GENERATOR_MAC, Links, PORT, Path, VIP};
use traffic::{Measured, send, send_once};

use super::{
    Row, Samples, Section, Target,
    baselines::{Baselines, GENERATOR_FRAME_LEN},
};
use crate::packet::Frame;

const ROUNDS: usize = 5;
const SAMPLE: Duration = Duration::from_millis(1500);
/// Rounds of the CPU-accounting part (statistics on, which slows every program a little).
const ACCOUNTING_ROUNDS: usize = 3;
const ACCOUNTING_SAMPLE: Duration = Duration::from_secs(1);
const MANY_FLOWS: u32 = 1024;
/// lbd forwards at least this fraction of the MAC-swap ceiling's packets/s.
const CEILING_TARGET: f64 = 0.9;
/// lbd forwards at least this many times nftables DNAT's UDP packets/s.
const NFTABLES_TARGET: f64 = 2.5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
}

/// One row of the throughput table: which paths, what traffic.
struct Case {
    arms: Arms,
    flows: u32,
    kind: Kind,
    /// The stateless DR program in lbd's place: what the least a balancer does reaches of the
    /// ceiling on this path, which bounds what lbd can.
    stateless: bool,
}

impl Case {
    fn name(&self) -> String {
        if self.stateless {
            return format!("stateless DR in lbd's place, {}", self.traffic());
        }
        self.traffic()
    }

    fn traffic(&self) -> String {
        let arms = match self.arms {
            Arms::One => "one arm (XDP_TX)",
            Arms::Two => "two arms (redirect)",
        };
        let kind = match self.kind {
            Kind::Tcp => "TCP",
            Kind::Udp => "UDP",
        };
        let flows = match self.flows {
            1 => "1 flow".to_owned(),
            n => format!("{n} flows"),
        };
        format!("{kind}, {arms}, {flows}")
    }

    fn reference(&self) -> &'static str {
        match (self.kind, self.arms) {
            (Kind::Udp, _) => "nftables DNAT",
            (Kind::Tcp, Arms::One) => "MAC swap + XDP_TX",
            (Kind::Tcp, Arms::Two) => "MAC swap + redirect",
        }
    }
}

/// The five paths, each built alike; their namespaces go when this is dropped.
struct Paths {
    stateless_one: Path,
    lbd_one: Path,
    lbd_two: Path,
    swap_one: Path,
    swap_two: Path,
    nftables: Path,
}

impl Paths {
    fn build(prefix: &str, queues: usize, baselines: &mut Baselines) -> Paths {
        let lbd_one = Links::build(prefix, "l1", Arms::One, queues, baselines)
            .with_lbd(&format!("{prefix}l1"));
        let lbd_two = Links::build(prefix, "l2", Arms::Two, queues, baselines)
            .with_lbd(&format!("{prefix}l2"));
        let swap_one =
            Links::build(prefix, "m1", Arms::One, queues, baselines).with_mac_swap(baselines);
        let swap_two =
            Links::build(prefix, "m2", Arms::Two, queues, baselines).with_mac_swap(baselines);
        let stateless_one =
            Links::build(prefix, "s1", Arms::One, queues, baselines).with_stateless_dr(baselines);
        let rules = std::env::temp_dir().join(format!("{prefix}nft.conf"));
        let nftables = Links::build(prefix, "n2", Arms::Two, queues, baselines)
            .with_nftables(baselines, &rules);
        Paths {
            stateless_one,
            lbd_one,
            lbd_two,
            swap_one,
            swap_two,
            nftables,
        }
    }

    /// lbd's path for `case` and its reference's.
    fn pair(&self, case: &Case) -> (&Path, &Path) {
        if case.stateless {
            return (&self.stateless_one, &self.swap_one);
        }
        match (case.kind, case.arms) {
            (Kind::Udp, _) => (&self.lbd_two, &self.nftables),
            (Kind::Tcp, Arms::One) => (&self.lbd_one, &self.swap_one),
            (Kind::Tcp, Arms::Two) => (&self.lbd_two, &self.swap_two),
        }
    }
}

/// The generator's frames: minimum-size, from the client to the VIP's port.
struct Frames {
    syn: Vec<u8>,
    ack: Vec<u8>,
    udp: Vec<u8>,
}

impl Frames {
    fn new() -> Frames {
        let client = SocketAddrV4::new(CLIENT_IP, 10_000);
        let vip = SocketAddrV4::new(VIP, PORT);
        let tcp = Frame::tcp(client, vip)
            .src_mac(GENERATOR_MAC)
            .dst_mac(BALANCER_IN_MAC)
            .payload(&[0; 6]);
        // UDP without a checksum: the generator rewrites the source port, and the nftables
        // path hands the packet to the kernel stack, which would check it.
        let udp = Frame::udp(client, vip)
            .src_mac(GENERATOR_MAC)
            .dst_mac(BALANCER_IN_MAC)
            .payload(&[0; 18])
            .l4_checksum(0);
        let frames = Frames {
            syn: tcp.clone().syn().build(),
            ack: tcp.ack().build(),
            udp: udp.build(),
        };
        for frame in [&frames.syn, &frames.ack, &frames.udp] {
            assert_eq!(frame.len(), GENERATOR_FRAME_LEN);
        }
        frames
    }

    fn of(&self, kind: Kind) -> &[u8] {
        match kind {
            Kind::Tcp => &self.ack,
            Kind::Udp => &self.udp,
        }
    }
}

/// Everything a sample needs.
struct Bench {
    baselines: Baselines,
    frames: Frames,
    cpus: Vec<usize>,
}

impl Bench {
    /// One sample of `case` on `path`. lbd's TCP flows are opened first (a SYN on each
    /// port): lbd places a segment without SYN only on a flow it knows.
    fn sample(
        &mut self,
        case: &Case,
        path: &Path,
        duration: Duration,
        program: Option<u32>,
    ) -> Measured {
        if case.kind == Kind::Tcp && matches!(path.balancer, path::Balancer::Lbd(_)) {
            send_once(
                &mut self.baselines,
                path,
                &self.frames.syn,
                MANY_FLOWS,
                4 * MANY_FLOWS,
            );
        }
        let frame = self.frames.of(case.kind).to_vec();
        send(
            &mut self.baselines,
            path,
            &frame,
            case.flows,
            &self.cpus,
            duration,
            program,
        )
    }
}

/// Runs the throughput part: builds the paths (namespaces `lbtp-<pid>-…`), samples them and
/// removes everything. Needs root.
pub fn run() -> Vec<Section> {
    let prefix = format!("lbtp-{}-", std::process::id());
    crate::netns::remove_leftovers(&prefix);
    let mut baselines = Baselines::load();
    eprintln!("throughput: building the paths");
    let load_before = load_average();
    let cpus = super::host::allowed_cpus();
    let paths = Paths::build(&prefix, cpus.len(), &mut baselines);
    let mut bench = Bench {
        baselines,
        frames: Frames::new(),
        cpus,
    };
    let mut cases = vec![
        Case {
            arms: Arms::One,
            flows: 1,
            kind: Kind::Tcp,
            stateless: false,
        },
        Case {
            arms: Arms::One,
            flows: MANY_FLOWS,
            kind: Kind::Tcp,
            stateless: false,
        },
        Case {
            arms: Arms::Two,
            flows: 1,
            kind: Kind::Tcp,
            stateless: false,
        },
        Case {
            arms: Arms::Two,
            flows: MANY_FLOWS,
            kind: Kind::Tcp,
            stateless: false,
        },
        Case {
            arms: Arms::Two,
            flows: 1,
            kind: Kind::Udp,
            stateless: false,
        },
        Case {
            arms: Arms::Two,
            flows: MANY_FLOWS,
            kind: Kind::Udp,
            stateless: false,
        },
    ];

    cases.push(Case {
        arms: Arms::One,
        flows: MANY_FLOWS,
        kind: Kind::Tcp,
        stateless: true,
    });

    // A short first pass: flows made, pages allocated, caches warm.
    for case in &cases {
        let (lbd, reference) = paths.pair(case);
        bench.sample(case, lbd, Duration::from_millis(300), None);
        bench.sample(case, reference, Duration::from_millis(300), None);
    }

    let mut measured: Vec<(Vec<Measured>, Vec<Measured>)> =
        cases.iter().map(|_| Default::default()).collect();
    for round in 0..ROUNDS {
        for (case, (lbd_samples, reference_samples)) in cases.iter().zip(&mut measured) {
            let (lbd, reference) = paths.pair(case);
            let ours = bench.sample(case, lbd, SAMPLE, None);
            let theirs = bench.sample(case, reference, SAMPLE, None);
            eprintln!(
                "throughput round {}/{ROUNDS}: {}: lbd {:.2} Mpps, {} {:.2} Mpps",
                round + 1,
                case.name(),
                ours.mpps(),
                case.reference(),
                theirs.mpps()
            );
            lbd_samples.push(ours);
            reference_samples.push(theirs);
        }
    }

    let accounting = account(&mut bench, &paths);
    let load_after = load_average();
    let threads = bench.cpus.len();
    let rows = cases
        .iter()
        .zip(&measured)
        .map(|(case, (ours, theirs))| {
            // The accounting rows come one per arm count, one arm first.
            let program = (case.kind == Kind::Tcp && !case.stateless).then(|| {
                let row = &accounting[usize::from(case.arms == Arms::Two)];
                let reference = row
                    .compared
                    .as_ref()
                    .expect("accounting rows have a reference");
                (row.lbd.median(), reference.samples.median())
            });
            throughput_row(case, ours, theirs, threads, program)
        })
        .collect();
    let udp_many = cases
        .iter()
        .position(|case| case.kind == Kind::Udp && case.flows == MANY_FLOWS)
        .expect("a UDP case with many flows");
    let (ours, theirs) = &measured[udp_many];
    let mut cpu_rows = vec![path_cpu_row(ours, theirs), machine_cpu_row(ours, theirs)];
    cpu_rows.extend(accounting);
    drop(paths);
    vec![
        Section {
            title: "Throughput through namespaces".to_owned(),
            method: format!(
                "An in-kernel generator (BPF_PROG_TEST_RUN live frames, batch 64, {threads} \
                 thread(s), one pinned per CPU) sends 60-byte frames to the VIP from a rotating \
                 source port over a veth to the balancer's namespace; the balancer sends them \
                 back (one arm) or on over a second veth (two arms) to a sink program that counts \
                 and drops them. lbd (the release binary, DR, 4 reals) and its reference each \
                 run on a path of their own built alike; {ROUNDS} rounds of {:.1} s samples \
                 alternating lbd, reference. Load average before and after: {load_before} / \
                 {load_after} (other work on the machine takes CPU from both sides alike).",
                SAMPLE.as_secs_f64()
            ),
            rows,
        },
        Section {
            title: "Balancer CPU time per million packets".to_owned(),
            method: format!(
                "Path: the generator threads' CPU time over the UDP samples above, per million \
                 packets delivered. Whole machine: system + irq + softirq time of all CPUs from \
                 /proc/stat over the same samples. Program: the kernel's own \
                 accounting of the balancer's XDP program (BPF_ENABLE_STATS run time ÷ run count, \
                 on only while measuring), {ACCOUNTING_ROUNDS} rounds of {:.0} s, TCP with \
                 {MANY_FLOWS} flows.",
                ACCOUNTING_SAMPLE.as_secs_f64()
            ),
            rows: cpu_rows,
        },
    ]
}

/// The balancer programs' own run time per packet, lbd's against the MAC-swap ceiling's, one
/// row per arm count. Statistics stay on only while the returned file is open.
fn account(bench: &mut Bench, paths: &Paths) -> Vec<Row> {
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .unwrap_or_else(|e| panic!("enabling BPF run-time statistics: {e}"));
    let rows = [Arms::One, Arms::Two]
        .into_iter()
        .map(|arms| {
            let case = Case {
                arms,
                flows: MANY_FLOWS,
                kind: Kind::Tcp,
                stateless: false,
            };
            let (lbd, reference) = paths.pair(&case);
            let (lbd_id, reference_id) =
                (lbd.balancer_program_id(), reference.balancer_program_id());
            let mut ours = Samples::default();
            let mut theirs = Samples::default();
            for _ in 0..ACCOUNTING_ROUNDS {
                let sample = bench.sample(&case, lbd, ACCOUNTING_SAMPLE, Some(lbd_id));
                ours.push(sample.program_per_million().unwrap_or(f64::NAN));
                let sample = bench.sample(&case, reference, ACCOUNTING_SAMPLE, Some(reference_id));
                theirs.push(sample.program_per_million().unwrap_or(f64::NAN));
            }
            eprintln!(
                "throughput: program time, {}: lbd {:.1} ns/packet, {} {:.1}",
                case.name(),
                ours.median(),
                case.reference(),
                theirs.median()
            );
            Row::against(
                format!("XDP program, {}", case.name()),
                "CPU ms/Mpkt",
                ours,
                case.reference(),
                theirs,
                None,
            )
            .note(
                "the kernel's accounting of the balancer program alone (run time ÷ runs; \
                 ms per million packets = ns per packet), including the two clock reads the \
                 accounting adds to each run (a MAC swap is a few instructions, so its figure \
                 is mostly that overhead); neither driver nor veth nor the other programs",
            )
        })
        .collect();
    drop(stats);
    rows
}

/// The 1-minute load average (/proc/loadavg), as printed there.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn samples(measured: &[Measured], value: impl Fn(&Measured) -> f64) -> Samples {
    Samples(measured.iter().map(value).collect())
}

/// A row of packets/s; `program` is the balancer programs' own time per packet on this
/// case's paths (lbd's, the reference's), when measured.
fn throughput_row(
    case: &Case,
    ours: &[Measured],
    theirs: &[Measured],
    threads: usize,
    program: Option<(f64, f64)>,
) -> Row {
    let target = match case.kind {
        _ if case.stateless => None,
        Kind::Tcp => Some(Target::AtLeast(CEILING_TARGET)),
        Kind::Udp => Some(Target::AtLeast(NFTABLES_TARGET)),
    };
    let ours_ns = samples(ours, Measured::thread_ns_per_packet).median();
    let theirs_ns = samples(theirs, Measured::thread_ns_per_packet).median();
    let ours_lost = samples(ours, Measured::lost).median();
    let theirs_lost = samples(theirs, Measured::lost).median();
    let bottleneck = bottleneck(case, ours_lost, theirs_lost);
    let ours_name = if case.stateless {
        "stateless DR"
    } else {
        "lbd"
    };
    let note = format!(
        "{bottleneck}; the generator threads' CPU time per delivered packet (generator, \
         balancer and sink on {threads} CPU(s)): {ours_name} {ours_ns:.0} ns, reference \
         {theirs_ns:.0} ns; sent but not delivered: {ours_name} {:.1}%, reference {:.1}%",
        ours_lost * 100.0,
        theirs_lost * 100.0
    );
    let note = match program {
        Some((ours_program, theirs_program)) => format!(
            "{note}; the programs alone (kernel accounting, below): lbd {ours_program:.0} ns, \
             reference {theirs_program:.0} ns, a difference of {:.0} ns against {:.0} ns on the \
             whole path",
            ours_program - theirs_program,
            ours_ns - theirs_ns
        ),
        None => note,
    };
    Row::against(
        case.name(),
        "Mpps",
        samples(ours, Measured::mpps),
        case.reference(),
        samples(theirs, Measured::mpps),
        target,
    )
    .note(note)
}

/// What limited a pair, as far as the counts tell.
fn bottleneck(case: &Case, ours_lost: f64, theirs_lost: f64) -> String {
    const LOSS: f64 = 0.01;
    match (ours_lost > LOSS, theirs_lost > LOSS) {
        (false, false) => "no loss: each CPU runs generator, balancer and sink in turn, so the \
                           bottleneck is the CPU, shared by all three"
            .to_owned(),
        (true, false) => "lbd's path drops: frames sent but not delivered (veth ring full or \
                          lbd passing/dropping them)"
            .to_owned(),
        (false, true) if case.kind == Kind::Udp => "the nftables path drops frames (the \
                                                     balancer's backlog or the sink's ring \
                                                     overflows)"
            .to_owned(),
        (false, true) => "the reference's path drops frames".to_owned(),
        (true, true) => "both paths drop frames between generator and sink".to_owned(),
    }
}

fn path_cpu_row(ours: &[Measured], theirs: &[Measured]) -> Row {
    Row::against(
        format!("path, UDP, two arms, {MANY_FLOWS} flows"),
        "CPU ms/Mpkt",
        samples(ours, Measured::thread_ns_per_packet),
        "nftables DNAT",
        samples(theirs, Measured::thread_ns_per_packet),
        None,
    )
    .note(
        "CPU time of the generator threads per packet delivered: each carries its frames \
         through generator, balancer and sink (softirq work done as it re-enables bottom \
         halves is charged to it), so this is the whole path's cost, other processes excluded; \
         work the kernel deferred to ksoftirqd is missing",
    )
}

fn machine_cpu_row(ours: &[Measured], theirs: &[Measured]) -> Row {
    Row::against(
        format!("whole machine, UDP, two arms, {MANY_FLOWS} flows"),
        "CPU ms/Mpkt",
        samples(ours, Measured::kernel_cpu_per_million),
        "nftables DNAT",
        samples(theirs, Measured::kernel_cpu_per_million),
        None,
    )
    .note(
        "system + irq + softirq time of every CPU per million packets delivered: includes the \
         generator and the sink, which run on the same CPUs, and anything else the machine did",
    )
}
