//! The one writer: a thread that owns the [`Desired`] state and the [`Dataplane`] writer,
//! applies each input, and publishes a snapshot for readers.
//!
//! A thread, not a task: map writes are system calls, and reusing a map entry waits for an
//! RCU grace period (milliseconds; see `dataplane`), none of which may stall the runtime's
//! timers. Inputs that queue up while it works are applied together.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use arc_swap::ArcSwap;
use lb_common::ServiceKey;
use tokio::sync::{mpsc, oneshot};

use super::{Desired, Dirty, Existing, HealthChange, ReconcileError};
use crate::{dataplane::Dataplane, neighbour::Observation};

/// What can change the desired state.
#[derive(Debug)]
pub enum Input {
    /// What the neighbour table says about some addresses (notifications, or a dump).
    Neighbours(Vec<Observation>),
    /// Health checks' verdicts that changed.
    Health(Vec<HealthChange>),
    /// A new desired state (a reload, an admin edit) takes over.
    Replace(Box<Replacement>),
    /// VRRP: the VIPs this node is not to forward now (those of routers not master here).
    Standby {
        vips: BTreeSet<IpAddr>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Zero the counters of one service and its reals, or of every service (`None`).
    ZeroCounters {
        service: Option<ServiceKey>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// A new desired state, placed but without ids, and what the neighbour tables said about its
/// next hops just before.
#[derive(Debug)]
pub struct Replacement {
    pub desired: Desired,
    pub observations: Vec<Observation>,
    /// Told whether the maps now hold the new state; on an error they still hold the old one
    /// or, if a write failed half-way, lbd goes on writing the new one.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// How long a write that failed waits before it is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct Reconciler {
    desired: Desired,
    dataplane: Box<dyn Dataplane>,
    published: Arc<ArcSwap<Desired>>,
    /// What a failed write pass left unwritten: tried again with the next pass.
    unwritten: Dirty,
    /// A replacement's writes failed half-way: the state it replaced is written again whole.
    rewrite_all: bool,
    /// Real ids a replacement retired, with the count of completed flow-sweep passes then:
    /// not handed out again (while others are free) until two more passes completed, the
    /// second of which started after the retirement and so removed every flow of theirs. A
    /// flow of a retired real never lands on a new one.
    recently_retired: HashMap<u32, u64>,
    /// Passes the flow sweep completed (it counts them; nothing does with a fake data plane,
    /// where retired ids then stay last in line).
    sweep_passes: Arc<AtomicU64>,
}

impl Reconciler {
    /// Takes over `desired` and writes all of it (what a previous daemon left included).
    pub fn start(
        mut desired: Desired,
        mut dataplane: Box<dyn Dataplane>,
    ) -> Result<Self, ReconcileError> {
        desired.apply(dataplane.as_mut())?;
        let published = Arc::new(ArcSwap::from_pointee(desired.clone()));
        Ok(Self {
            desired,
            dataplane,
            published,
            unwritten: Dirty::default(),
            rewrite_all: false,
            recently_retired: HashMap::new(),
            sweep_passes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The counter the flow sweep bumps after each pass (see `recently_retired`).
    pub fn sweep_passes(&self) -> Arc<AtomicU64> {
        self.sweep_passes.clone()
    }

    /// The snapshot readers load; replaced whole after every change.
    pub fn published(&self) -> Arc<ArcSwap<Desired>> {
        self.published.clone()
    }

    /// Applies a batch of inputs in order: observations and verdicts change the state and
    /// are written together in one pass; a replacement or a zeroing first writes what came
    /// before it. An error never drops the inputs after it: each is still handled, and each
    /// request is answered. The first write error is returned (the caller retries after a
    /// pause; what was not written is kept for that pass).
    pub fn handle(&mut self, inputs: Vec<Input>) -> Result<(), ReconcileError> {
        let mut failure = None;
        if self.rewrite_all {
            let desired = self.desired.clone();
            if let Err(error) = self.replace(desired, &[]) {
                failure = Some(error);
            }
        }
        let mut dirty = std::mem::take(&mut self.unwritten);
        for input in inputs {
            match input {
                Input::Neighbours(batch) => dirty.merge(self.desired.observe_all(&batch)),
                Input::Health(changes) => dirty.merge(self.desired.set_health(&changes)),
                Input::Replace(replacement) => {
                    if let Err(error) = self.write(std::mem::take(&mut dirty)) {
                        failure.get_or_insert(error);
                    }
                    let Replacement {
                        desired,
                        observations,
                        done,
                    } = *replacement;
                    let rewriting_before = self.rewrite_all;
                    let result = self.replace(desired, &observations);
                    // Only this replacement's own writes can have failed half-way: a refusal
                    // (nothing written) leaves `rewrite_all` as it was.
                    let half_written = self.rewrite_all
                        && (!rewriting_before || result.as_ref().is_err_and(is_write_error));
                    let answer = match &result {
                        Ok(()) => Ok(()),
                        Err(error) if half_written => Err(format!(
                            "writing the data plane failed half-way ({error}); lbd goes back \
                             to the running config"
                        )),
                        Err(error) => Err(error.to_string()),
                    };
                    let _ = done.send(answer);
                    match result {
                        // Everything is written now: what failed before is moot.
                        Ok(()) => failure = None,
                        Err(error) if half_written => {
                            failure.get_or_insert(error);
                        }
                        Err(_) => {}
                    }
                }
                Input::Standby { vips, done } => {
                    if let Err(error) = self.write(std::mem::take(&mut dirty)) {
                        failure.get_or_insert(error);
                    }
                    let result = self.desired.set_standby(self.dataplane.as_mut(), vips);
                    self.published.store(Arc::new(self.desired.clone()));
                    let _ = done.send(result.as_ref().map_err(ToString::to_string).copied());
                    if let Err(error) = result {
                        // Written again whole on the next pass.
                        self.rewrite_all = true;
                        failure.get_or_insert(error);
                    }
                }
                Input::ZeroCounters { service, done } => {
                    if let Err(error) = self.write(std::mem::take(&mut dirty)) {
                        failure.get_or_insert(error);
                    }
                    let result = self.zero_counters(service);
                    let _ = done.send(result.map_err(|error| error.to_string()));
                }
            }
        }
        if let Err(error) = self.write(dirty) {
            failure.get_or_insert(error);
        }
        failure.map_or(Ok(()), Err)
    }

    /// One write pass for what the state changes touched.
    fn write(&mut self, dirty: Dirty) -> Result<(), ReconcileError> {
        if dirty.is_empty() {
            return Ok(());
        }
        log::info!("{}", describe_change(&self.desired, &dirty));
        let result = self.desired.apply_dirty(self.dataplane.as_mut(), &dirty);
        // Published even after a failed write: readers see what lbd wants, and the log says
        // what did not reach the maps (yet: it is written again with the next pass).
        self.published.store(Arc::new(self.desired.clone()));
        if result.is_err() {
            self.unwritten.merge(dirty);
        }
        result
    }

    /// `desired` takes over: ids from what the maps hold (as on a restart, keeping ids
    /// retired moments ago out of use until the sweep has removed their flows), MACs,
    /// neighbour states and health verdicts from the current state, then `observations` for
    /// next hops the current state has no MAC for (for the others, what the reconciler heard
    /// since the survey is fresher). Every schedule is computed before anything is written,
    /// so a service whose schedule cannot be built refuses the whole change with the maps
    /// untouched. The writes go in [`Desired::apply`]'s order, so no packet sees a half-made
    /// state and every flow whose real is still there keeps it. A write that fails half-way
    /// sends lbd back to the state it ran before, rewritten whole on the next pass.
    fn replace(
        &mut self,
        mut desired: Desired,
        observations: &[Observation],
    ) -> Result<(), ReconcileError> {
        let passes = self.sweep_passes.load(Ordering::Acquire);
        self.recently_retired
            .retain(|_, retired_at| passes < *retired_at + 2);
        let mut existing = Existing::read(self.dataplane.as_ref())?;
        existing.recently_retired = self.recently_retired.keys().copied().collect();
        let before: HashSet<u32> = existing.reals.iter().map(|(id, _)| *id).collect();
        desired.adopt(&existing);
        desired.carry_over(&self.desired);
        let known = self.desired.resolved_next_hops();
        let fresh: Vec<Observation> = observations
            .iter()
            .filter(|observation| !known.contains(&(observation.ifindex, observation.addr)))
            .copied()
            .collect();
        desired.observe_all(&fresh);
        for service in &desired.services {
            desired.ring(service)?;
        }
        let previous = std::mem::replace(&mut self.desired, desired);
        let result = self.desired.apply(self.dataplane.as_mut());
        match &result {
            Ok(()) => {
                self.rewrite_all = false;
                self.unwritten = Dirty::default();
                let kept: HashSet<u32> = self.desired.real_ids().collect();
                for id in before.difference(&kept) {
                    self.recently_retired.insert(*id, passes);
                }
            }
            Err(_) => {
                self.desired = previous;
                self.rewrite_all = true;
            }
        }
        self.published.store(Arc::new(self.desired.clone()));
        result
    }

    fn zero_counters(&mut self, service: Option<ServiceKey>) -> Result<(), ReconcileError> {
        let services = self
            .desired
            .services
            .iter()
            .filter(|desired| service.is_none_or(|key| desired.key == key));
        for desired in services {
            self.dataplane.zero_service_counters(desired.id)?;
            for real in &desired.reals {
                self.dataplane.zero_real_counters(real.id)?;
            }
        }
        Ok(())
    }

    /// Runs on a thread of its own until every sender of `inputs` is gone.
    pub fn spawn(mut self, mut inputs: mpsc::Receiver<Input>) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("lbd-reconcile".into())
            .spawn(move || {
                while let Some(input) = inputs.blocking_recv() {
                    let mut batch = vec![input];
                    loop {
                        while let Ok(more) = inputs.try_recv() {
                            batch.push(more);
                        }
                        match self.handle(std::mem::take(&mut batch)) {
                            Ok(()) => break,
                            Err(error) => {
                                log::error!(
                                    "writing the data plane: {error}; trying again in \
                                     {RETRY_AFTER_FAILURE:?}"
                                );
                                std::thread::sleep(RETRY_AFTER_FAILURE);
                                if inputs.is_closed() && inputs.is_empty() {
                                    return;
                                }
                            }
                        }
                    }
                }
            })
            .expect("spawning the reconcile thread")
    }
}

/// Whether `error` came from writing the maps (not from building the new state).
fn is_write_error(error: &ReconcileError) -> bool {
    matches!(error, ReconcileError::Dataplane(_))
}

/// One log line: which reals changed, and how.
fn describe_change(desired: &Desired, dirty: &Dirty) -> String {
    let mut parts = Vec::new();
    for service in &desired.services {
        for real in &service.reals {
            if !dirty.reals.contains(&(service.id, real.id)) {
                continue;
            }
            let mac = real
                .mac
                .map_or_else(|| "no MAC".to_owned(), |mac| crate::admin::format_mac(&mac));
            parts.push(format!(
                "{} real {}: {mac}, {}",
                service.config.name(),
                real.config.address,
                super::describe_reachability(real)
            ));
        }
    }
    format!("neighbours: {}", parts.join("; "))
}
