//! The one writer: a thread that owns the [`Desired`] state and the [`Dataplane`] writer,
//! applies each input, and publishes a snapshot for readers.
//!
//! A thread, not a task: map writes are system calls, and reusing a map entry waits for an
//! RCU grace period (milliseconds; see `dataplane`), none of which may stall the runtime's
//! timers. Inputs that queue up while it works are applied together.

use std::{sync::Arc, thread::JoinHandle, time::Duration};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::{Desired, Dirty, ReconcileError};
use crate::{dataplane::Dataplane, neighbour::Observation};

/// What can change the desired state.
#[derive(Debug, Clone)]
pub enum Input {
    /// What the neighbour table says about some addresses (notifications, or a dump).
    Neighbours(Vec<Observation>),
}

/// How long a write that failed waits before it is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct Reconciler {
    desired: Desired,
    dataplane: Box<dyn Dataplane>,
    published: Arc<ArcSwap<Desired>>,
    /// What a failed write pass left unwritten: tried again with the next pass.
    unwritten: Dirty,
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
        })
    }

    /// The snapshot readers load; replaced whole after every change.
    pub fn published(&self) -> Arc<ArcSwap<Desired>> {
        self.published.clone()
    }

    /// Applies a batch of inputs: state first, then one write pass for all they touched.
    pub fn handle(&mut self, inputs: Vec<Input>) -> Result<(), ReconcileError> {
        let mut dirty = std::mem::take(&mut self.unwritten);
        let mut observations = Vec::new();
        for input in inputs {
            match input {
                Input::Neighbours(batch) => observations.extend(batch),
            }
        }
        dirty.merge(self.desired.observe_all(&observations));
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
