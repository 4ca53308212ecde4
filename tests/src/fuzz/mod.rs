//! Data-path fuzzing: millions of generated frames through the real program
//! (`BPF_PROG_TEST_RUN`, [`Balancer`]), each checked against an independent model.
//!
//! This room owns the fuzzer: the frame families ([`generate`]), the model's own reading of a
//! frame ([`classify`]) and of what the program must do with it given the config and the
//! flows so far ([`model`]), the exact rewrite each forwarding method must produce
//! ([`rewrite`]), and the per-frame property checks ([`check`]). It calls the harness
//! ([`crate::fixture`], [`crate::packet`], [`crate::pcap`]) and nothing of the program's code.
//!
//! Properties, on every frame: never `XDP_ABORTED`; the verdict and counted reason (read per
//! frame from the `lbadm dump` capture ring) are the model's; a passed frame leaves byte for
//! byte as it came; a forwarded frame goes to the very real the model names (a known flow's,
//! a datagram's, a persistent client's, or the scheduler's answer predicted from the tables
//! lbd wrote, round-robin cursors seeded by the run), is counted under it, equals the exact
//! rewrite for that real and method, and keeps valid checksums valid. The only drops allowed
//! are those the model predicts (`drop_no_real`), and full NAT's refusal when no local port is
//! free toward the chosen real, which the model accepts only when it finds none either (with
//! this config it never happens).
//!
//! Epochs: every [`EPOCH_FRAMES`] frames the flow, reply and fragment tables are emptied, in
//! the program and the model alike, so the flow table never fills and no flow lives long
//! enough to expire (the model has no clock). Persistence entries and hashing answers stay.
//!
//! Reproducing: the run is a function of its seed. The first failure stops the run with the
//! seed, the frame's index and family, the frame in hex, the verdict, a field-level diff, and
//! a pcap of input and output under the target directory.

mod check;
mod classify;
mod config;
mod generate;
mod model;
mod rewrite;
mod rng;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::IpAddr,
    os::fd::AsFd as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use lb_common::{
    Flow, FlowKey, FragmentKey, FragmentOwner, MAP_FRAGMENTS, Reason, Reply,
    capture::CAPTURE_SNAP_LEN,
};
use lb_userspace::dataplane::{batch, capture::CaptureFilter};

use crate::{fixture::Balancer, pcap::write_pcap};
pub use generate::Family;
use model::{Expect, Model};

/// Frames between two emptyings of the flow tables (see the module's doc).
pub const EPOCH_FRAMES: u64 = 8192;
const CAPTURE_SESSION: u32 = 0xf022;

/// The seed from `LB_FUZZ_SEED`, else from the clock.
pub fn seed_from_env() -> u64 {
    match std::env::var("LB_FUZZ_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("LB_FUZZ_SEED={text}: {e}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    }
}

/// A finished run's figures.
pub struct Report {
    pub seed: u64,
    pub frames: u64,
    pub elapsed: Duration,
    pub families: BTreeMap<Family, u64>,
    /// By verdict and reason, e.g. `XDP_PASS pass_truncated`.
    pub verdicts: BTreeMap<String, u64>,
    /// Frames sent to reals, by forwarding method and kind of datagram.
    pub methods: BTreeMap<String, u64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "seed {}: {} frames in {:.1} s ({:.0} frames/s), every one as the model expects",
            self.seed,
            self.frames,
            seconds,
            self.frames as f64 / seconds
        )?;
        writeln!(f, "by family:")?;
        for (family, count) in &self.families {
            writeln!(f, "  {:<16} {count:>10}", format!("{family:?}"))?;
        }
        writeln!(f, "by verdict:")?;
        for (verdict, count) in &self.verdicts {
            writeln!(f, "  {verdict:<44} {count:>10}")?;
        }
        writeln!(f, "sent to reals, by method and datagram:")?;
        for (method, count) in &self.methods {
            writeln!(f, "  {method:<44} {count:>10}")?;
        }
        Ok(())
    }
}

/// Loads the balancer with every service kind (needs root) and runs `frames` frames of
/// `seed` through it. `Err`: the first failing frame, described.
pub fn run(frames: u64, seed: u64) -> Result<Report, String> {
    crate::fixture::pin_to_current_cpu();
    let services = config::services();
    let mut balancer =
        Balancer::load_with_interfaces(&config::yaml(&services), config::interfaces());
    balancer
        .capture
        .arm(
            CAPTURE_SESSION,
            CaptureFilter::default(),
            lb_userspace::admin::monotonic_now_ns() + 86_400_000_000_000,
        )
        .unwrap_or_else(|e| panic!("arming the capture: {e}"));
    let real_ids: HashMap<IpAddr, u32> = balancer
        .state
        .services
        .iter()
        .flat_map(|service| &service.reals)
        .map(|real| (real.config.address, real.id))
        .collect();
    let rings = seeded_rings(&mut balancer, &services, &real_ids, seed);
    let tables = tables(&balancer, &services, &real_ids);
    let mut model = Model::new(services, real_ids, rings, tables);
    let mut generator = generate::Generator::new(seed);
    let mut families = BTreeMap::new();
    let mut verdicts = BTreeMap::new();
    let mut methods = BTreeMap::new();
    let start = Instant::now();
    for index in 0..frames {
        if index % EPOCH_FRAMES == 0 && index > 0 {
            empty_tables(&balancer);
            model.clear_epoch();
            generator.forget_pending();
        }
        let (family, frame) = generator.next(&model);
        let datagram = classify::classify(&frame);
        let expect = match &datagram {
            Ok(d) => model.expect(d),
            Err(reason) => Expect::Pass(*reason),
        };
        let outcome = balancer.run(&frame);
        let (reason, counted_real) = captured(&mut balancer);
        let seen = check::Seen {
            action: outcome.action,
            reason,
            counted_real,
            output: &outcome.frame,
        };
        match check::check(&model, &frame, datagram.as_ref().ok(), &expect, &seen) {
            Ok(placed) => {
                if let (Expect::ToReal(to_real), Some(placed), Ok(d)) =
                    (&expect, &placed, &datagram)
                {
                    model.commit(&frame, d, to_real, placed.real, placed.local_port);
                }
                if let Ok(d) = &datagram {
                    model.commit_reply_fragment(d);
                }
            }
            Err(problem) => {
                return Err(failure(
                    seed, index, family, &frame, &expect, &seen, &problem,
                ));
            }
        }
        if let (Expect::ToReal(to_real), Ok(d)) = (&expect, &datagram) {
            let method = format!("{:?} {:?}", model.services[to_real.service].mode, d.kind);
            *methods.entry(method).or_insert(0) += 1;
        }
        *families.entry(family).or_insert(0) += 1;
        let verdict = format!(
            "{} {}",
            check::action_name(outcome.action),
            reason.map_or("?", Reason::name)
        );
        *verdicts.entry(verdict).or_insert(0) += 1;
    }
    balancer
        .capture
        .disarm()
        .unwrap_or_else(|e| panic!("disarming: {e}"));
    Ok(Report {
        seed,
        frames,
        elapsed: start.elapsed(),
        families,
        verdicts,
        methods,
    })
}

/// Each service's table as the program reads it, as indexes of the service's reals.
fn tables(
    balancer: &Balancer,
    services: &[config::ServiceSpec],
    real_ids: &HashMap<IpAddr, u32>,
) -> HashMap<usize, Vec<usize>> {
    services
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let id = lbd_service(balancer, spec).id;
            let table = balancer
                .dataplane
                .schedule(id)
                .unwrap_or_else(|e| panic!("the table of {}: {e}", spec.name()));
            (index, real_indexes(spec, &table, real_ids))
        })
        .collect()
}

/// lbd's service for `spec`.
fn lbd_service(
    balancer: &Balancer,
    spec: &config::ServiceSpec,
) -> lb_userspace::reconcile::DesiredService {
    balancer
        .state
        .services
        .iter()
        .find(|desired| {
            desired.config.vip == spec.vip
                && desired.config.port == spec.port
                && desired.key.protocol == spec.protocol
        })
        .unwrap_or_else(|| panic!("lbd has no service {}", spec.name()))
        .clone()
}

/// Real ids as indexes of `spec`'s reals.
fn real_indexes(
    spec: &config::ServiceSpec,
    ids: &[u32],
    real_ids: &HashMap<IpAddr, u32>,
) -> Vec<usize> {
    ids.iter()
        .map(|id| {
            let addr = real_ids
                .iter()
                .find(|(_, real_id)| *real_id == id)
                .map(|(addr, _)| *addr)
                .unwrap_or_else(|| panic!("real id {id} in the table of {}", spec.name()));
            spec.reals
                .iter()
                .position(|real| real.addr == addr)
                .unwrap_or_else(|| panic!("{addr} in the table of {}", spec.name()))
        })
        .collect()
}

/// Sets each round-robin service's cursors to a value of the seed's (lbd draws them at
/// random, which would make a run differ from its reproduction), and returns the schedules the
/// model walks from there.
fn seeded_rings(
    balancer: &mut Balancer,
    services: &[config::ServiceSpec],
    real_ids: &HashMap<IpAddr, u32>,
    seed: u64,
) -> HashMap<usize, model::Ring> {
    let mut cursors = rng::Rng::new(seed ^ 0x5eed_c0de);
    let mut rings = HashMap::new();
    for (index, spec) in services.iter().enumerate() {
        if !matches!(spec.scheduler, "rr" | "wrr") || spec.drained {
            continue;
        }
        let desired = lbd_service(balancer, spec);
        let cursor = cursors.u32();
        balancer.set_schedule_cursors(desired.id, cursor);
        let schedule = balancer
            .state
            .ring(&desired)
            .unwrap_or_else(|e| panic!("the schedule of {}: {e}", spec.name()));
        let reals = real_indexes(spec, &schedule, real_ids);
        rings.insert(index, model::Ring { reals, cursor });
    }
    rings
}

/// The reason and real id of the one record the last frame left in the capture ring.
fn captured(balancer: &mut Balancer) -> (Option<Reason>, u32) {
    let mut seen = (None, 0);
    let mut records = 0;
    while let Some((session, packet)) = balancer.capture.next_record() {
        if session == CAPTURE_SESSION {
            records += 1;
            seen = (Reason::from_index(packet.reason), packet.real_id);
        }
    }
    // Two records for one frame would be a bug of its own; the check then sees no reason.
    if records == 1 { seen } else { (None, 0) }
}

/// Empties the flow table, the NAT reply entries and the fragment records.
fn empty_tables(balancer: &Balancer) {
    empty::<FlowKey, Flow>(balancer.reader.flows(), "flows");
    if let Some(replies) = balancer.sweeper.replies() {
        empty::<FlowKey, Reply>(replies, "replies");
    }
    empty::<FragmentKey, FragmentOwner>(balancer.program_map(MAP_FRAGMENTS), "fragments");
}

fn empty<K: aya::Pod, V: aya::Pod>(map: &aya::maps::MapData, name: &str) {
    let fd = map.fd().as_fd();
    let mut keys = Vec::new();
    batch::for_each::<K, V>(fd, |key, _| keys.push(*key))
        .unwrap_or_else(|e| panic!("reading the {name} table: {e}"));
    batch::delete(fd, &keys).unwrap_or_else(|e| panic!("emptying the {name} table: {e}"));
}

fn failure(
    seed: u64,
    index: u64,
    family: Family,
    frame: &[u8],
    expect: &Expect,
    seen: &check::Seen,
    problem: &str,
) -> String {
    // The workspace's target directory, wherever the run was started from.
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
        .join("lb-fuzz");
    let pcap = dir.join(format!("seed-{seed}-frame-{index}.pcap"));
    write_pcap(&pcap, &[frame, seen.output]);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fuzz failure: seed {seed}, frame {index} (family {family:?}); reproduce with LB_FUZZ_SEED={seed}"
    );
    let _ = writeln!(out, "problem: {problem}");
    let _ = writeln!(out, "expected: {expect:?}");
    let _ = writeln!(
        out,
        "got: {} ({}), {} bytes out",
        check::action_name(seen.action),
        seen.reason.map_or("no capture record", Reason::name),
        seen.output.len()
    );
    let _ = writeln!(out, "frame ({} bytes): {}", frame.len(), hex(frame));
    let _ = writeln!(
        out,
        "output: {}",
        hex(&seen.output[..seen.output.len().min(CAPTURE_SNAP_LEN.max(256))])
    );
    let _ = writeln!(out, "input then output in {}", pcap.display());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
