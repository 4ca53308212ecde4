//! What lbd costs as the configuration and the flow table grow: the Maglev table for 1,000
//! reals, 4,000 services parsed, validated and written to the maps, the flow table's memory
//! per entry (the kernel's own accounting), lbd's flow sweep over 1M flows, and lbd's
//! resident memory idle and at 1M flows.

use std::{fmt::Write as _, os::fd::AsFd as _, os::fd::AsRawFd as _, time::Instant};

use lb_userspace::{
    config,
    dataplane::batch,
    reconcile::Desired,
    schedule::maglev::{self, DEFAULT_TABLE_SIZE, MaglevReal},
};

use super::{Row, Samples, Section};
use crate::{
    DrTopology, VIP,
    conntrack::established_flows,
    fixture::{Balancer, connected_routes, loopback, real_mac_for},
    lbd::Lbd,
};

const ROUNDS: usize = 5;
const SERVICES: u32 = 4_000;
const MILLION: u32 = 1_000_000;

pub fn run() -> Vec<Section> {
    eprintln!("bench: scale");
    let mut rows = vec![maglev_build(), services_applied()];
    rows.extend(flow_table());
    rows.extend(resident_memory());
    vec![Section {
        title: "Scale".into(),
        method: "Wall-clock times of the release build (config parsing uses a second thread \
                 for its source map, as lbd's does); memory as the kernel \
                 accounts it (the flow map's `memlock` in fdinfo) and lbd's VmRSS."
            .into(),
        rows,
    }]
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

fn within(value: f64, bound: f64, unit: &str) -> String {
    if value <= bound {
        format!("target < {bound} {unit}: met")
    } else {
        format!("target < {bound} {unit}: MISSED")
    }
}

fn maglev_build() -> Row {
    let keys: Vec<[u8; 18]> = (0..1000u32)
        .map(|i| {
            let mut key = [0u8; 18];
            key[..4].copy_from_slice(&[198, 51, (i >> 8) as u8, i as u8]);
            key[16..].copy_from_slice(&80u16.to_be_bytes());
            key
        })
        .collect();
    let reals: Vec<MaglevReal> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| MaglevReal {
            key,
            weight: 1 + (i as u32 % 10),
            id: i as u32 + 1,
        })
        .collect();
    let mut samples = Samples::default();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let table = maglev::table(&reals, DEFAULT_TABLE_SIZE);
        samples.push(millis(started));
        assert_eq!(table.len(), DEFAULT_TABLE_SIZE as usize);
    }
    let note = within(samples.median(), 50.0, "ms");
    Row::alone(
        "Maglev table: 1,000 reals (weights 1–10), 65,537 slots",
        "ms",
        samples,
    )
    .note(note)
}

/// 4,000 services of two reals each: the config parsed and validated, the desired state
/// built, and written to the maps of a freshly loaded program (the work of a start or of a
/// reload that adds them all).
fn services_applied() -> Row {
    let mut yaml = String::from("instance: bench-scale\ninterfaces: [{name: lo}]\nservices:\n");
    for i in 0..SERVICES {
        let vip = format!("192.0.2.{}", 100 + i / 1000);
        let _ = writeln!(
            yaml,
            "  - {{vip: {vip}, port: {}, protocol: tcp, reals: [{{address: 198.51.100.{}}}, {{address: 198.51.100.{}}}]}}",
            1000 + i % 1000,
            1 + i % 200,
            201 + i % 50
        );
    }
    yaml.push_str("limits: {flows: 65536, services: 4096, reals: 8192}\n");
    let (mut total, mut parsed_in, mut written_in) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..3 {
        let mut balancer = Balancer::load(
            "instance: bench-scale\ninterfaces: [{name: lo}]\nservices: []\n\
             limits: {flows: 65536, services: 4096, reals: 8192}\n",
        );
        // What `Balancer::reload` does (on maps holding nothing to adopt), timed step by step.
        let started = Instant::now();
        let parsed = config::parse(&yaml, "bench.yaml").unwrap_or_else(|e| panic!("{e}"));
        parsed_in.push(millis(started));
        let interfaces = vec![loopback()];
        let routes = connected_routes(&parsed, &interfaces);
        let mut state =
            Desired::new(&parsed, interfaces, &routes).unwrap_or_else(|e| panic!("{e}"));
        for (ifindex, addr) in state.next_hops() {
            state.set_neighbours(
                ifindex,
                &std::collections::HashMap::from([(addr, real_mac_for(addr))]),
            );
        }
        balancer.state = state;
        let writing = Instant::now();
        balancer.apply();
        written_in.push(millis(writing));
        total.push(millis(started));
    }
    let note = format!(
        "{}; of which parsing and validating the YAML {:.0} ms, writing the maps {:.0} ms, \
         the rest building the desired state",
        within(total.median() / 1e3, 1.0, "s"),
        parsed_in.median(),
        written_in.median()
    );
    Row::alone(
        "4,000 services (8,000 reals): parsed, validated, written",
        "ms",
        total,
    )
    .note(note)
}

/// The flow map's memory per entry, and the sweep over a full table.
fn flow_table() -> Vec<Row> {
    let balancer = Balancer::load(
        "instance: bench-flows\ninterfaces: [{name: lo}]\nservices:\n  - {vip: 192.0.2.100, \
         port: 80, protocol: tcp, reals: [{address: 192.0.2.11}, {address: 192.0.2.12}, \
         {address: 192.0.2.13}]}\nlimits: {flows: 1000000, services: 16, reals: 64}\n",
    );
    let table = balancer.reader.flows();
    let (keys, flows) = established_flows(MILLION, VIP, 3, lb_userspace::admin::monotonic_now_ns());
    batch::update(table.fd().as_fd(), &keys, &flows).expect("filling the flow table");
    // A preallocated hash accounts every element from the start: per entry of a full table.
    let fdinfo = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        table.fd().as_fd().as_raw_fd()
    ))
    .expect("reading the flow map's fdinfo");
    let memlock: f64 = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no memlock in the flow map's fdinfo:\n{fdinfo}"));
    let per_entry = memlock / f64::from(MILLION);
    let key_and_value =
        std::mem::size_of::<lb_common::FlowKey>() + std::mem::size_of::<lb_common::Flow>();
    let memory = Row::alone(
        "flow table memory per entry (kernel's accounting)",
        "B",
        Samples(vec![per_entry]),
    )
    .note(format!(
        "aim ≤ 64 B: {}. Key {} B + value {} B = {key_and_value} B; the rest is the hash \
         map's element header and bucket array, preallocated for every entry.",
        if per_entry <= 64.0 { "met" } else { "MISSED" },
        std::mem::size_of::<lb_common::FlowKey>(),
        std::mem::size_of::<lb_common::Flow>()
    ));

    let mut sweep = Samples::default();
    for _ in 0..3 {
        let started = Instant::now();
        let report = balancer
            .sweeper
            .sweep(lb_userspace::admin::monotonic_now_ns())
            .expect("sweeping the flow table");
        sweep.push(millis(started));
        assert_eq!(report.flows, u64::from(MILLION), "flows the sweep saw");
    }
    vec![
        memory,
        Row::alone("lbd's flow sweep over 1M flows, none expired", "ms", sweep)
            .note("lbd walks the table every second, off the packet path"),
    ]
}

/// lbd's resident memory idle and with 1M established flows (after two sweeps over them).
fn resident_memory() -> Vec<Row> {
    let prefix = format!("lbbs-{}-", std::process::id());
    let topology = DrTopology::build(&prefix, &["r1"]);
    topology.attach_pass_program();
    let lbd = Lbd::start(
        &topology.lb,
        &format!("lbbs-{}", std::process::id()),
        "interfaces:\n  - name: eth0\n    xdp_mode: native\nservices:\n  - {vip: 192.0.2.100, \
         port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}\n\
         limits: {flows: 1048576, services: 16, reals: 64}\n",
    );
    let pid = lbd.pid().expect("lbd is running");
    let rss = || crate::chaos::process::Footprint::of(pid).rss_kib as f64 / 1024.0;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let idle = rss();
    let (keys, flows) = established_flows(MILLION, VIP, 1, lb_userspace::admin::monotonic_now_ns());
    let table = aya::maps::MapData::from_pin(lbd.pin_dir().join(lb_common::MAP_FLOWS))
        .expect("lbd's pinned flow table");
    batch::update(table.fd().as_fd(), &keys, &flows).expect("filling lbd's flow table");
    // Two sweeps (one a second), and a listing of the connection counts.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = lbd.lbadm(&["-L", "-n", "--stats"]);
    let full = rss();
    vec![
        Row::alone("lbd resident memory, idle", "MiB", Samples(vec![idle])),
        Row::alone("lbd resident memory, 1M flows", "MiB", Samples(vec![full])).note(
            "the flows themselves live in the kernel's map (see the memory per entry); lbd \
             holds no per-flow state unless it is a sync master",
        ),
    ]
}
