//! Traffic through a path: the in-kernel generator (`BPF_PROG_TEST_RUN` in live frame mode,
//! one thread per CPU, each pinned) and what one run of it measured: frames sent and
//! delivered, time, the machine's kernel CPU time and, when the kernel keeps them, the
//! balancer program's own run time and count.

use std::time::{Duration, Instant};

use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions};

use super::path::Path;
use crate::bench::{
    baselines::{Baselines, GENERATOR},
    host,
};

/// Frames per `BPF_PROG_TEST_RUN` call: a few tens of milliseconds at the speeds seen, so a
/// run ends close to its duration.
const FRAMES_PER_CALL: u32 = 1 << 17;
/// Frames the kernel runs through the program before flushing them to the device (its
/// default; the veth ring holds 256).
const BATCH: u32 = 64;
/// Bounds every run whatever the speed: at most this many calls per thread.
const MAX_CALLS: u32 = 2_000;
/// Frames still in flight when the generator stops are counted after this.
const SETTLE: Duration = Duration::from_millis(20);

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    pub generated: u64,
    pub delivered: u64,
    pub elapsed: Duration,
    /// System, IRQ and softirq time of all CPUs (from /proc/stat).
    pub kernel_cpu: Duration,
    /// CPU time of the generator threads, which carry their frames through balancer and sink.
    pub generator_cpu: Duration,
    /// The balancer program's run time and runs, when statistics were on.
    pub program: Option<(Duration, u64)>,
}

impl Measured {
    /// Delivered packets per second, in millions.
    pub fn mpps(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    /// Frames the generator sent that never reached the sink, as a fraction.
    pub fn lost(&self) -> f64 {
        if self.generated == 0 {
            return 0.0;
        }
        self.generated.saturating_sub(self.delivered) as f64 / self.generated as f64
    }

    /// Nanoseconds of the generator threads' CPU time per packet delivered.
    pub fn thread_ns_per_packet(&self) -> f64 {
        self.generator_cpu.as_secs_f64() * 1e9 / self.delivered.max(1) as f64
    }

    /// Milliseconds of kernel CPU (all CPUs) per million packets delivered.
    pub fn kernel_cpu_per_million(&self) -> f64 {
        self.kernel_cpu.as_secs_f64() * 1e3 / (self.delivered as f64 / 1e6)
    }

    /// Milliseconds the balancer program ran per million runs (nanoseconds per packet).
    pub fn program_per_million(&self) -> Option<f64> {
        let (time, runs) = self.program?;
        (runs > 0).then(|| time.as_secs_f64() * 1e3 / (runs as f64 / 1e6))
    }
}

/// Sends `frame` (the generator writes it on every frame, source port rotating over `flows`)
/// from `path`'s generator on one thread per CPU in `cpus` for about `duration`, and
/// measures what arrived. With `program_id`, also the run time the kernel accounted to that
/// program (statistics must be on).
pub fn send(
    baselines: &mut Baselines,
    path: &Path,
    frame: &[u8],
    flows: u32,
    cpus: &[usize],
    duration: Duration,
    program_id: Option<u32>,
) -> Measured {
    baselines.set_generator_frame(frame);
    baselines.set_generator_flows(flows);
    let generated = baselines.generated_frames();
    let delivered = baselines.sink_frames();
    let program = program_id.map(program_stats);
    let kernel_cpu = kernel_cpu_ticks();
    let started = Instant::now();
    let generator_cpu = generate(baselines, path, frame, cpus, duration, FRAMES_PER_CALL);
    let elapsed = started.elapsed();
    std::thread::sleep(SETTLE);
    let kernel_cpu = kernel_cpu_ticks() - kernel_cpu;
    Measured {
        generated: baselines.generated_frames() - generated,
        delivered: baselines.sink_frames() - delivered,
        elapsed,
        generator_cpu,
        kernel_cpu: Duration::from_secs_f64(kernel_cpu as f64 / host::clock_ticks_per_second()),
        program: program.zip(program_id).map(|((time, runs), id)| {
            let (time_after, runs_after) = program_stats(id);
            (time_after - time, runs_after - runs)
        }),
    }
}

/// Sends `frames` frames of `frame` from one thread, rotating over `flows` source ports: a
/// new TCP flow for each port when `frame` is a SYN.
pub fn send_once(baselines: &mut Baselines, path: &Path, frame: &[u8], flows: u32, frames: u32) {
    baselines.set_generator_frame(frame);
    baselines.set_generator_flows(flows);
    generate(
        baselines,
        path,
        frame,
        &host::allowed_cpus()[..1],
        Duration::ZERO,
        frames,
    );
}

/// Runs the generator from `path`'s generator namespace on each CPU of `cpus`, calls of
/// `frames_per_call` frames until `duration` has passed (at least one call each).
fn generate(
    baselines: &mut Baselines,
    path: &Path,
    frame: &[u8],
    cpus: &[usize],
    duration: Duration,
    frames_per_call: u32,
) -> Duration {
    let context = xdp_md(frame.len() as u32, path.generator_ifindex);
    let generator = &*baselines.program(GENERATOR);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let threads = cpus
            .iter()
            .map(|&cpu| {
                let context = &context;
                scope.spawn(move || {
                    path.generator.run(|| {
                        host::pin_to(cpu);
                        let cpu_time = thread_cpu_time();
                        for _ in 0..MAX_CALLS {
                            generator
                                .test_run(TestRunOptions {
                                    data_in: Some(frame),
                                    ctx_in: Some(context),
                                    repeat: frames_per_call,
                                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                                    ..TestRunOptions::default()
                                })
                                .unwrap_or_else(|e| {
                                    panic!("the generator in {}: {e:?}", path.generator.name())
                                });
                            if started.elapsed() >= duration {
                                break;
                            }
                        }
                        thread_cpu_time() - cpu_time
                    })
                })
            })
            .collect::<Vec<_>>();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
            })
            .sum()
    })
}

/// CPU time of the calling thread so far. This kernel's tick accounting charges to the thread
/// the softirq work done when it re-enables bottom halves: the balancer's and the sink's
/// NAPI polls for its frames, unless the kernel deferred them to ksoftirqd.
fn thread_cpu_time() -> Duration {
    // SAFETY: a zeroed timespec is valid; the call fills it.
    let mut time: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) } != 0 {
        panic!("clock_gettime: {}", std::io::Error::last_os_error());
    }
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// A `struct xdp_md` for live frames: the frame starts at 0 without metadata and arrives on
/// queue 0 of `ingress_ifindex`, the device an `XDP_TX` sends it out of.
fn xdp_md(frame_len: u32, ingress_ifindex: u32) -> Vec<u8> {
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    [0, frame_len, 0, ingress_ifindex, 0, 0]
        .iter()
        .flat_map(|field: &u32| field.to_ne_bytes())
        .collect()
}

/// The run time and run count the kernel holds for program `id`.
fn program_stats(id: u32) -> (Duration, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == id)
        .map(|info| (info.run_time(), info.run_count()))
        .unwrap_or_else(|| panic!("no loaded program with id {id}"))
}

/// System + IRQ + softirq ticks of all CPUs so far.
fn kernel_cpu_ticks() -> u64 {
    let ticks = host::cpu_ticks();
    ticks[2] + ticks[5] + ticks[6]
}
