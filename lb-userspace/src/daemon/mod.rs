//! The daemon: its tasks, wired together.
//!
//! - the reconciler (`reconcile`): a thread that alone writes the maps, fed by a channel;
//! - the neighbour watch (`neighbours.rs`): kernel neighbour notifications → reconciler;
//! - the admin server: answers from the published snapshot and the data plane's reader;
//! - the control task (`control.rs`): live reconfiguration, from SIGHUP and the admin socket;
//! - signals (`signals.rs`): SIGTERM/SIGINT stop, SIGHUP reloads the config;
//! - the rate estimator (`estimate_rates`): counters → `--rate`'s estimates every two seconds;
//! - the flow sweep (`sweep.rs`): a thread removing expired flows from the table and the
//!   connection counts;
//! - the VRRP routers (`vrrp`) and connection sync (`sync`), when configured;
//! - the BGP speaker (`bgp`), when configured: the VIPs announced through BIRD;
//! - least privilege (`privileges.rs`): after start-up, only the capabilities those use.
//!
//! [`run`] takes everything from outside (the parts, the listener, the shutdown signal), so
//! tests start a daemon on a temporary socket with a fake data plane; [`start`] (in
//! `start.rs`) loads, adopts and attaches for real and returns a [`Started`] daemon, which
//! tests drive in-process and [`serve`] (what `lbd` runs) runs until a signal stops it.

mod control;
mod links;
mod neighbours;
mod notify;
mod pidfile;
pub mod privileges;
mod signals;
mod start;
mod sweep;

use std::{future::Future, sync::Arc, thread::JoinHandle};

use tokio::{net::UnixListener, sync::mpsc};

pub use control::{Control, ControlHandle, Host, Outcome, describe_difference};
pub use links::Links;
pub use pidfile::{PidFile, PidFileError};
pub use start::{DaemonError, INITIAL_RESOLUTION, Started, check_summary, serve, start};

use crate::{
    admin::{self, AdminContext},
    dataplane::{Dataplane, DataplaneReader},
    reconcile::{Desired, Input, ReconcileError, Reconciler},
};

/// Inputs that may wait for the reconciler before senders slow down.
const INPUT_QUEUE: usize = 1024;

/// A daemon's running parts.
pub struct Daemon {
    context: Arc<AdminContext>,
    /// Dropping the last sender stops the reconciler.
    inputs: mpsc::Sender<Input>,
    reconciler: JoinHandle<()>,
    /// The neighbour watch, when MACs come from the host (not with a fake data plane).
    watch: Option<Task>,
    /// The loaded program, when there is one: links not pinned live as long as it. Shared
    /// with the control task, which attaches it to interfaces a change adds.
    program: Option<Arc<std::sync::Mutex<aya::Ebpf>>>,
    /// The flow sweep, when there is a program (not with a fake data plane).
    sweep: Option<sweep::SweepThread>,
    /// The control task, once started.
    control: Option<Task>,
    /// The metrics and status page server, when `metrics.listen` is set.
    metrics: Option<Task>,
    /// Bumped by the flow sweep after each pass; the reconciler reads it.
    sweep_passes: Arc<std::sync::atomic::AtomicU64>,
    /// The VRRP routers, when the config has some.
    vrrp: Option<crate::vrrp::Vrrp>,
    /// Connection sync, when configured.
    sync: Option<crate::sync::Sync>,
    /// BGP announcements through BIRD, when configured.
    bgp: Option<crate::bgp::Speaker>,
}

impl Daemon {
    /// Writes `desired` to `dataplane` and starts the reconciler. `reader` reads what the
    /// program counts.
    pub fn new(
        instance: &str,
        flow_table_size: u32,
        desired: Desired,
        dataplane: Box<dyn Dataplane>,
        reader: Arc<dyn DataplaneReader>,
    ) -> Result<Self, ReconcileError> {
        let reconciler = Reconciler::start(desired, dataplane)?;
        let sweep_passes = reconciler.sweep_passes();
        let context = Arc::new(AdminContext::new(
            instance.to_owned(),
            flow_table_size,
            reconciler.published(),
            reader,
            Vec::new(),
        ));
        let (inputs, receiver) = mpsc::channel(INPUT_QUEUE);
        Ok(Self {
            context,
            inputs,
            reconciler: reconciler.spawn(receiver),
            watch: None,
            program: None,
            sweep: None,
            control: None,
            metrics: None,
            sweep_passes,
            vrrp: None,
            sync: None,
            bgp: None,
        })
    }

    /// Starts taking changes (reloads, admin edits) through `control`.
    pub fn start_control(&mut self, control: Control) -> ControlHandle {
        let (handle, task) = control.spawn();
        self.control = Some(Task(Some(task)));
        let _ = self.context.control.set(handle.clone());
        handle
    }

    /// Where the reconciler takes its inputs.
    pub fn inputs(&self) -> mpsc::Sender<Input> {
        self.inputs.clone()
    }

    /// The snapshot of the desired state the reconciler publishes.
    pub fn desired(&self) -> Arc<Desired> {
        self.context.desired.load_full()
    }

    /// Serves `/metrics` and the status page on `listener` until the daemon stops.
    pub fn serve_metrics(
        &mut self,
        listener: tokio::net::TcpListener,
        pages: Arc<crate::metrics::Pages>,
    ) {
        let task = tokio::spawn(crate::metrics::serve(
            listener,
            pages,
            std::future::pending(),
        ));
        self.metrics = Some(Task(Some(task)));
    }

    /// What the admin socket answers from.
    pub fn context(&self) -> Arc<AdminContext> {
        self.context.clone()
    }

    /// Starts the VRRP routers and connection sync. Until a router is master here, the
    /// program forwards none of its VIPs (the desired state starts with them on standby).
    /// `settings` carries the routers' settings as reloads change them.
    pub async fn start_high_availability(
        &mut self,
        routers: &[crate::config::ha::VrrpInstanceConfig],
        settings: tokio::sync::watch::Receiver<Vec<crate::config::ha::VrrpInstanceConfig>>,
        sync: Option<crate::config::ha::SyncConfig>,
    ) -> Result<(), String> {
        if routers.is_empty() {
            return Ok(());
        }
        // With sync, a node holds back from preempting until it has the master's flows.
        let (hold, held) = tokio::sync::watch::channel(sync.is_some());
        // Sync's merges stop while a router of this node forwards.
        let merges = sync.map(|_| Arc::new(crate::sync::MergeGate::default()));
        let (vrrp, board) = crate::vrrp::Vrrp::start(
            routers,
            settings,
            self.inputs(),
            self.context.desired.clone(),
            held,
            merges.clone(),
        )?;
        let _ = self.context.vrrp.set(board.clone());
        self.vrrp = Some(vrrp);
        if let Some(sync) = sync {
            let started = crate::sync::Sync::start(
                sync,
                self.context.reader.clone(),
                self.context.desired.clone(),
                board,
                hold,
                merges.expect("a merge gate exists with sync"),
            )
            .await;
            let (sync, sync_board) = match started {
                Ok(started) => started,
                Err(error) => {
                    // The routers leave as they would at a stop (an owner may be master).
                    if let Some(vrrp) = self.vrrp.take() {
                        vrrp.stop().await;
                    }
                    return Err(error.to_string());
                }
            };
            let _ = self.context.sync.set(sync_board);
            self.sync = Some(sync);
        }
        Ok(())
    }

    /// Starts announcing this node's VIPs through BIRD.
    pub fn start_bgp(&mut self, config: crate::config::bgp::BgpConfig, instance: &str) {
        let (speaker, board) =
            crate::bgp::Speaker::start(config, instance, self.context.desired.clone());
        let _ = self.context.bgp.set(board);
        self.bgp = Some(speaker);
    }
}

/// Moves the rate estimates (`admin::rates`) by a reading of the counters every
/// [`admin::ESTIMATE_EVERY`], on a blocking thread: the reads are one system call per service
/// and real.
async fn estimate_rates(context: Arc<AdminContext>) {
    let mut ticks = tokio::time::interval(admin::ESTIMATE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let context = context.clone();
        let sampled = tokio::task::spawn_blocking(move || {
            let desired = context.desired.load_full();
            admin::sample_rates(
                &desired,
                context.reader.as_ref(),
                &context.rates,
                std::time::Instant::now(),
            )
        })
        .await;
        if let Ok(Err(error)) = sampled {
            log::warn!("rate estimator: {error}");
        }
    }
}

/// A task that is aborted when dropped, so that a daemon dropped before it runs (a start-up
/// that failed half-way) leaves nothing running.
struct Task(Option<tokio::task::JoinHandle<()>>);

impl Task {
    async fn stop(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Serves the admin socket until `shutdown` completes, then stops the daemon's tasks. The
/// XDP program is not touched: it keeps forwarding.
pub async fn run(daemon: Daemon, listener: UnixListener, shutdown: impl Future<Output = ()>) {
    let Daemon {
        context,
        inputs,
        reconciler,
        watch,
        program,
        sweep,
        control,
        metrics,
        sweep_passes: _,
        vrrp,
        sync,
        bgp,
    } = daemon;
    let rates = Task(Some(tokio::spawn(estimate_rates(context.clone()))));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let context = context.clone();
                    tokio::spawn(async move {
                        if let Err(error) = admin::serve_connection(stream, context).await {
                            log::warn!("admin connection: {error}");
                        }
                    });
                }
                Err(error) => {
                    log::warn!("admin socket accept: {error}");
                    // Out of file descriptors, say: accepting again at once would spin.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    // First the routers are told (the VIPs withdrawn over BGP) while this node still forwards,
    // so the flows they move elsewhere meet no gap.
    if let Some(bgp) = bgp {
        bgp.stop().await;
    }
    // Then the peer is told (a priority-0 advert) and this node stops forwarding its VIPs,
    // while the reconciler still runs.
    if let Some(vrrp) = vrrp {
        vrrp.stop().await;
    }
    if let Some(sync) = sync {
        sync.stop().await;
    }
    // A dump running is ended (its client gets its last line), its capture off.
    if let Some(capturer) = context.capturer() {
        capturer.stop();
    }
    // A change being applied is cut short between its steps; the reconciler finishes
    // whatever write it has begun.
    if let Some(control) = control {
        control.stop().await;
    }
    if let Some(metrics) = metrics {
        metrics.stop().await;
    }
    rates.stop().await;
    if let Some(watch) = watch {
        watch.stop().await;
    }
    if let Some(sweep) = sweep {
        let _ = tokio::task::spawn_blocking(move || sweep.stop()).await;
    }
    drop(inputs);
    // The reconciler finishes what it is writing, then sees the channel closed.
    let _ = tokio::task::spawn_blocking(move || reconciler.join()).await;
    drop(program);
}
