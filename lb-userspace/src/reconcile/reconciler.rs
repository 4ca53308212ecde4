//! The one writer: a thread that owns the [`Desired`] state and the [`Dataplane`] writer,
//! applies each input, and publishes a snapshot for readers.
//!
//! A thread, not a task: map writes are system calls, and reusing a map entry waits for an
//! RCU grace period (milliseconds; see `dataplane`), none of which may stall the runtime's
//! timers. Inputs that queue up while it works are applied together.

use std::{sync::Arc, thread::JoinHandle, time::Duration};

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
    /// A replacement's writes failed half-way: the whole state is written again.
    rewrite_all: bool,
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
        })
    }

    /// The snapshot readers load; replaced whole after every change.
    pub fn published(&self) -> Arc<ArcSwap<Desired>> {
        self.published.clone()
    }

    /// Applies a batch of inputs in order: observations and verdicts change the state and
    /// are written together in one pass; a replacement or a zeroing first writes what came
    /// before it.
    pub fn handle(&mut self, inputs: Vec<Input>) -> Result<(), ReconcileError> {
        if std::mem::take(&mut self.rewrite_all) {
            let desired = self.desired.clone();
            self.replace(desired, &[])?;
        }
        let mut dirty = std::mem::take(&mut self.unwritten);
        for input in inputs {
            match input {
                Input::Neighbours(batch) => dirty.merge(self.desired.observe_all(&batch)),
                Input::Health(changes) => dirty.merge(self.desired.set_health(&changes)),
                Input::Replace(replacement) => {
                    self.write(std::mem::take(&mut dirty))?;
                    let Replacement {
                        desired,
                        observations,
                        done,
                    } = *replacement;
                    let result = self.replace(desired, &observations);
                    let _ = done.send(result.as_ref().map_err(ToString::to_string).copied());
                    result?;
                }
                Input::ZeroCounters { service, done } => {
                    self.write(std::mem::take(&mut dirty))?;
                    let result = self.zero_counters(service);
                    let _ = done.send(result.as_ref().map_err(ToString::to_string).copied());
                    result?;
                }
            }
        }
        self.write(dirty)
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
            self.unwritten = dirty;
        }
        result
    }

    /// `desired` takes over: ids from what the maps hold (as on a restart), MACs, neighbour
    /// states and health verdicts from the current state, then `observations` (fresher), then
    /// every schedule is computed before anything is written, so a service whose schedule
    /// cannot be built refuses the whole change with the maps untouched. The writes go in
    /// [`Desired::apply`]'s order, so no packet sees a half-made state and every flow whose
    /// real is still there keeps it.
    fn replace(
        &mut self,
        mut desired: Desired,
        observations: &[Observation],
    ) -> Result<(), ReconcileError> {
        let existing = Existing::read(self.dataplane.as_ref())?;
        desired.adopt(&existing);
        desired.carry_over(&self.desired);
        desired.observe_all(observations);
        for service in &desired.services {
            desired.ring(service)?;
        }
        let result = desired.apply(self.dataplane.as_mut());
        self.desired = desired;
        self.published.store(Arc::new(self.desired.clone()));
        if result.is_err() {
            self.rewrite_all = true;
        }
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
