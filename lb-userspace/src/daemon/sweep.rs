//! The flow sweep's thread: every second, removes flows that expired or lost their real, so
//! that they leave the connection counts, and the NAT reply entries of flows that are gone
//! (see `dataplane::Sweeper`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    admin::monotonic_now_ns,
    dataplane::{PRESSURE_END_PERCENT, PRESSURE_FILL_PERCENT, SYN_RECV_UNDER_PRESSURE, Sweeper},
};

/// How often the table is swept: a flow leaves the counts at most about this long after it
/// expires.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A sweep of a very large table takes a while; the pause after it is at least this many
/// times as long, so the sweep never takes more than a fifth of a core.
const PAUSE_PER_SWEEP_TIME: u32 = 4;
/// How often a pause checks whether the daemon is stopping.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The running sweep; [`SweepThread::stop`] ends it.
pub struct SweepThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl SweepThread {
    /// Sweeps until stopped, counting each pass that completed in `passes`.
    pub fn spawn(sweeper: Sweeper, passes: Arc<AtomicU64>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::Builder::new()
            .name("flow-sweep".into())
            .spawn(move || run(&sweeper, &stopping, &passes))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SweepThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(sweeper: &Sweeper, stop: &AtomicBool, passes: &AtomicU64) {
    let mut failing = false;
    let mut pressure = false;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match sweeper.sweep(monotonic_now_ns()) {
            Ok(report) => {
                if report.pressure != pressure {
                    pressure = report.pressure;
                    log_pressure(&report);
                }
                if report.removed > 0 || report.replies_removed > 0 {
                    log::debug!(
                        "flow sweep: removed {} of {} flows ({} half-open under pressure; \
                         {:?}), {} of {} NAT replies ({:?})",
                        report.removed,
                        report.flows,
                        report.removed_half_open,
                        report.flows_time,
                        report.replies_removed,
                        report.replies,
                        report.replies_time
                    );
                }
                failing = false;
                passes.fetch_add(1, Ordering::Release);
            }
            // Logged once per run of failures, not every second.
            Err(error) if !failing => {
                log::warn!("flow sweep: {error}");
                failing = true;
            }
            Err(_) => {}
        }
        let pause = SWEEP_INTERVAL.max(started.elapsed() * PAUSE_PER_SWEEP_TIME);
        let resume = Instant::now() + pause;
        while Instant::now() < resume && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(STOP_CHECK.min(resume - Instant::now()));
        }
    }
}

/// Said when the table starts and stops being under pressure, not every second.
fn log_pressure(report: &crate::dataplane::SweepReport) {
    if report.pressure {
        log::warn!(
            "flow table under pressure ({} flows, at least {PRESSURE_FILL_PERCENT}% full; a \
             SYN flood?): half-open flows now expire after {SYN_RECV_UNDER_PRESSURE:?} ({} \
             removed in this sweep); while it is full, new flows are dropped \
             (drop_flow_table_full) and established ones keep forwarding",
            report.flows,
            report.removed_half_open
        );
    } else {
        log::info!(
            "flow table no longer under pressure ({} flows, below {PRESSURE_END_PERCENT}%): \
             half-open flows expire after their usual timeout again",
            report.flows
        );
    }
}
