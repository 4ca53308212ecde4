//! [`HealthMonitor`]: checks a set of reals, each on its own schedule, with bounded
//! resources: one tokio task per real, asleep between checks, and a semaphore shared by all
//! that bounds the probes in flight, so thousands of reals need neither threads nor bursts.

use std::{
    collections::{HashMap, hash_map::RandomState},
    hash::BuildHasher,
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinHandle,
    time::{Instant, Interval, MissedTickBehavior},
};

use super::{
    CheckReport, HealthBoard, HealthKey,
    checker::RiseFall,
    probe::{NetworkProbe, Probe},
};
use crate::config::{CheckKind, HealthCheckConfig};

/// Probes in flight at once, over all reals, unless told otherwise: enough for thousands of
/// reals at a second's interval, few enough that a burst of timeouts holds little.
pub const DEFAULT_MAX_CONCURRENT_PROBES: usize = 256;

/// One real to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: HealthKey,
    /// Where checks connect: the real's address.
    pub address: IpAddr,
    /// Where checks connect: the check's `port`, or the real's.
    pub port: u16,
    pub check: HealthCheckConfig,
    /// The state before the first check: up (keepalived's default, see
    /// [`RiseFall`](super::RiseFall)) or down (its `alpha`).
    pub start_up: bool,
}

impl Target {
    /// The real `key` checked by `check`: on its address, at the check's port or its own.
    pub fn new(key: HealthKey, check: HealthCheckConfig, start_up: bool) -> Self {
        Target {
            key,
            address: key.address,
            port: check.port.unwrap_or(key.port),
            check,
            start_up,
        }
    }

    /// Whether `other` checks the same way, so that a running check of `self` can go on.
    fn checks_like(&self, other: &Target) -> bool {
        (self.address, self.port, &self.check) == (other.address, other.port, &other.check)
    }
}

/// A real went down or came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub key: HealthKey,
    pub up: bool,
    /// The check that decided it.
    pub report: CheckReport,
}

/// Checks reals and reports what it finds: every result on the [`HealthBoard`], and each
/// change of state (after `rise`/`fall` consecutive results) as a [`Transition`].
///
/// A new target is up or down as its `start_up` says, with no `Transition` for that; a
/// target dropped by [`set_targets`](Self::set_targets) may still have a `Transition` on its
/// way (the receiver ignores keys it no longer has).
pub struct HealthMonitor<P: Probe = NetworkProbe> {
    shared: Arc<Shared<P>>,
    running: HashMap<HealthKey, RunningTarget>,
}

/// What every target's task uses.
struct Shared<P> {
    probe: P,
    board: Arc<HealthBoard>,
    transitions: mpsc::Sender<Transition>,
    probes_in_flight: Semaphore,
}

struct RunningTarget {
    target: Target,
    /// Hands the task a changed target, which it then checks keeping its state.
    changes: watch::Sender<Target>,
    task: JoinHandle<()>,
}

impl HealthMonitor<NetworkProbe> {
    /// A monitor that checks over the network, at most [`DEFAULT_MAX_CONCURRENT_PROBES`]
    /// probes at once; it checks nothing until given targets.
    pub fn new(board: Arc<HealthBoard>, transitions: mpsc::Sender<Transition>) -> Self {
        HealthMonitor::with_probe(
            NetworkProbe,
            DEFAULT_MAX_CONCURRENT_PROBES,
            board,
            transitions,
        )
    }
}

impl<P: Probe> HealthMonitor<P> {
    /// A monitor that checks with `probe`, at most `max_concurrent_probes` (at least one) at
    /// once.
    pub fn with_probe(
        probe: P,
        max_concurrent_probes: usize,
        board: Arc<HealthBoard>,
        transitions: mpsc::Sender<Transition>,
    ) -> Self {
        HealthMonitor {
            shared: Arc::new(Shared {
                probe,
                board,
                transitions,
                probes_in_flight: Semaphore::new(max_concurrent_probes.max(1)),
            }),
            running: HashMap::new(),
        }
    }

    /// Replaces the set of checked reals. A target whose key and checks are unchanged keeps
    /// running with its state; one whose checks changed (port, timing, thresholds, …) keeps
    /// its up/down state and counters but starts its schedule and its run of consecutive
    /// results again (a check of the old config still in flight does not count), since a
    /// reload must neither bring back a failed real unchecked nor take out a healthy one. New targets start; gone ones stop and leave the board. Targets with
    /// [`CheckKind::None`] are not checked: they stay up, off the board. Must be called within
    /// a tokio runtime.
    pub fn set_targets(&mut self, targets: Vec<Target>) {
        let mut next: HashMap<HealthKey, RunningTarget> = HashMap::with_capacity(targets.len());
        for target in targets {
            if target.check.kind == CheckKind::None {
                continue;
            }
            let running = match self.running.remove(&target.key) {
                // A task that ended (its probe panicked) is started again.
                Some(mut running) if !running.task.is_finished() => {
                    if !running.target.checks_like(&target) {
                        // Fails only if the task has ended, when nobody is left to tell.
                        let _ = running.changes.send(target.clone());
                    }
                    running.target = target;
                    running
                }
                _ => self.start(target),
            };
            if let Some(duplicate) = next.insert(running.target.key, running) {
                duplicate.task.abort();
            }
        }
        for gone in self.running.values() {
            gone.task.abort();
        }
        self.running = next;
        let running = &self.running;
        self.shared.board.retain(|key| running.contains_key(key));
    }

    /// Stops every check and waits until none runs. The board keeps the last results.
    pub async fn stop(mut self) {
        let running = std::mem::take(&mut self.running);
        for target in running.values() {
            target.task.abort();
        }
        for (_, target) in running {
            // A task ends aborted (or, having lost its sender, by itself): either is fine.
            let _ = target.task.await;
        }
    }

    fn start(&self, target: Target) -> RunningTarget {
        let (rise, fall) = (target.check.rise, target.check.fall);
        // A real still on the board had a task that ended: carry on where it stopped, so that
        // its state stays the one its last transition told.
        let state = match self.shared.board.get(&target.key) {
            Some(health) => RiseFall::resume(rise, fall, &health),
            None => {
                let state = RiseFall::new(rise, fall, target.start_up);
                self.shared.board.set(target.key, state.health(None));
                state
            }
        };
        let (changes, changed) = watch::channel(target.clone());
        let task = tokio::spawn(check_forever(
            target.clone(),
            changed,
            state,
            Arc::clone(&self.shared),
        ));
        RunningTarget {
            target,
            changes,
            task,
        }
    }
}

impl<P: Probe> Drop for HealthMonitor<P> {
    fn drop(&mut self) {
        for target in self.running.values() {
            target.task.abort();
        }
    }
}

/// One target's task: check on schedule, count, publish; take changed targets as they come.
async fn check_forever<P: Probe>(
    mut target: Target,
    mut changed: watch::Receiver<Target>,
    mut state: RiseFall,
    shared: Arc<Shared<P>>,
) {
    let mut schedule = schedule_for(&target);
    loop {
        tokio::select! {
            change = changed.changed() => {
                if change.is_err() {
                    return;
                }
                target = changed.borrow_and_update().clone();
                state.set_thresholds(target.check.rise, target.check.fall);
                schedule = schedule_for(&target);
            }
            _ = schedule.tick() => {
                let report = {
                    let Ok(_permit) = shared.probes_in_flight.acquire().await else {
                        return;
                    };
                    shared.probe.check(&target).await
                };
                // The check was of a port or config a reload has since replaced: it says
                // nothing about the real as now checked. An error means the target is gone,
                // and the next turn ends the task.
                if changed.has_changed().unwrap_or(true) {
                    continue;
                }
                let flipped = state.record(report.ok);
                shared.board.update(&target.key, state.health(Some(report.clone())));
                if flipped {
                    let up = state.is_up();
                    log::info!(
                        "health: {} is {} ({})",
                        target.key,
                        if up { "up" } else { "down" },
                        report.detail
                    );
                    let transition = Transition { key: target.key, up, report };
                    if shared.transitions.send(transition).await.is_err() {
                        log::debug!("health: nobody listens for transitions any more");
                    }
                }
            }
        }
    }
}

/// Ticks every `interval`, the first after a random delay below it, so that reals added
/// together (at start-up, on a reload) are not all checked in the same instant. A tick
/// missed while waiting for a probe slot is not made up for: the next comes an interval
/// after the late one.
fn schedule_for(target: &Target) -> Interval {
    let interval = target.check.interval.max(Duration::from_millis(1));
    let mut schedule = tokio::time::interval_at(
        Instant::now() + first_check_delay(&target.key, interval),
        interval,
    );
    schedule.set_missed_tick_behavior(MissedTickBehavior::Delay);
    schedule
}

/// A random delay in `[0, interval)`. std's `RandomState` is seeded randomly per process
/// and per instance, which is all the randomness spreading needs.
fn first_check_delay(key: &HealthKey, interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(RandomState::new().hash_one(key) % nanos)
}

#[cfg(test)]
mod tests;
