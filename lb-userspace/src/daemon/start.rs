//! What `lbd --config FILE` does: start (or adopt) the data plane ([`start`]), then run until
//! a signal stops it ([`serve`]).
//!
//! Start-up order:
//! 1. signal handlers (a SIGHUP must never kill lbd; [`serve`] only), the config, the pid
//!    file's lock; a capture a killed lbd left armed turned off;
//! 2. the interfaces, and the VLAN interfaces on them; the routes to tunnel and NAT reals;
//! 3. the desired state, placing each real on an interface and a next hop; the admin socket
//!    and the metrics listener;
//! 4. the program and its maps, adopting pinned ones and the ids they hold;
//! 5. the reconciler writes everything; the neighbour watch starts;
//! 6. up to [`INITIAL_RESOLUTION`] for the reals' MACs, so the first packets find complete
//!    schedules;
//! 7. attach, or swap the program into the pinned links; retire maps of earlier layouts;
//! 8. the metrics server, the control task and its health checks;
//! 9. the VRRP routers (after removing virtual addresses a crashed predecessor left) and
//!    connection sync;
//! 10. ([`serve`] only) every capability the running daemon does not use is dropped
//!     ([`super::privileges`]).
//!
//! A first start that fails removes what it pinned. A restart adopts what is pinned and never
//! removes it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Control, ControlHandle, Daemon, Host, Links,
    neighbours::NeighbourWatch,
    notify,
    privileges::{self, CapabilitySet, PrivilegeError},
    signals::Signals,
    sweep,
};
use crate::{
    admin::{SocketError, bind_admin_socket},
    config::{self, Config, ConfigError},
    dataplane::{
        capture::{EbpfCapturer, turn_off_left_capture},
        loader::{self, LoadError, Loaded},
    },
    health::HealthBoard,
    metrics::{self, Pages},
    neighbour::{InterfaceInfo, NeighbourError, Neighbours, events::NeighbourEvents},
    reconcile::{Desired, Existing, ReconcileError},
};

/// How long start-up waits for the reals' MACs before attaching anyway.
pub const INITIAL_RESOLUTION: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Neighbour(#[from] NeighbourError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("starting the flow sweep thread: {0}")]
    Sweep(std::io::Error),
    #[error(transparent)]
    PidFile(#[from] super::PidFileError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error("{0}")]
    HighAvailability(String),
    #[error("dropping capabilities after start-up: {0}")]
    Privileges(#[from] PrivilegeError),
}

/// Runs the daemon for the config at `config_path` until SIGTERM or SIGINT.
pub async fn serve(config_path: PathBuf) -> Result<(), DaemonError> {
    // First: a SIGHUP (`systemctl reload`) at any moment of the start must not kill lbd.
    let signals = Signals::install().map_err(DaemonError::Signals)?;
    let started = start(config_path).await?;
    let kept = CapabilitySet::after_start(!started.config.vrrp.is_empty());
    match privileges::keep_only(kept) {
        Ok(kept) => log::info!("started; capabilities kept: {kept}"),
        Err(error) => {
            // Stopped as at SIGTERM: the program keeps forwarding, a fixed lbd adopts it.
            started.run(std::future::ready(())).await;
            return Err(DaemonError::Privileges(error));
        }
    }
    let control = started.control();
    notify::ready();
    started.run(signals.stopped(control)).await;
    Ok(())
}

/// A daemon that has started: the program forwards, the admin socket answers and changes
/// are taken. What `lbd` runs, and what tests drive in-process (start, reload through
/// [`Started::control`], stop, start again).
pub struct Started {
    daemon: Daemon,
    listener: tokio::net::UnixListener,
    control: ControlHandle,
    config: Config,
    pid_file: super::PidFile,
}

impl Started {
    /// Where reloads and admin edits go.
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }

    /// Serves until `shutdown` completes, then stops every task; the program keeps
    /// forwarding from its pinned maps.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let Started {
            daemon,
            listener,
            control: _,
            config,
            pid_file,
        } = self;
        super::run(daemon, listener, shutdown).await;
        notify::stopping();
        let _ = std::fs::remove_file(&config.admin_socket);
        drop(pid_file);
        log::info!(
            "stopped; the XDP program keeps forwarding from {} (`lbd --teardown --config FILE` \
             detaches it)",
            config.pin_dir.display()
        );
    }
}

/// Starts (or adopts) the data plane for the config at `config_path`, in the calling
/// thread's network namespace: every step of the module's list.
pub async fn start(config_path: PathBuf) -> Result<Started, DaemonError> {
    let (config, document) = config::load_with_document(&config_path)?;
    // Before anything is touched: another daemon of this instance may be running.
    let pid_file = super::PidFile::lock(&config.pid_file)?;
    // Then, before any step that can fail: a capture (`lbadm dump`) a killed lbd left armed
    // is off even if this start fails.
    if let Err(error) = turn_off_left_capture(&config.pin_dir) {
        log::warn!("{error}");
    }
    let neighbours = Neighbours::new()?;
    // Subscribed before anything is read, so no change falls between a read and the
    // subscription.
    let events = NeighbourEvents::subscribe()?;
    let host = Host::Netlink(Neighbours::new()?);
    let (interfaces, routes) = host.placement(&config).await?;
    let attached = interfaces[..config.interfaces.len()].to_vec();
    let desired = Desired::new(&config, interfaces, &routes)?;
    warn_of_foreign_local_addresses(&neighbours, &config).await;
    let listener = bind_admin_socket(&config.admin_socket, config.admin_group)?;
    // Bound before anything is attached: a port in use stops the start cleanly.
    let metrics_listener = match config.metrics_listen {
        Some(address) => match metrics::bind(address).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                let _ = std::fs::remove_file(&config.admin_socket);
                return Err(error.into());
            }
        },
        None => None,
    };

    let first_start = !config.pin_dir.exists();
    let watch = NeighbourWatch {
        neighbours,
        events: Some(events),
    };
    let (mut daemon, links) = match load_and_attach(&config, &attached, desired, watch).await {
        Ok(started) => started,
        Err(error) => {
            if first_start {
                let _ = loader::unpin_all(&config.pin_dir);
            }
            let _ = std::fs::remove_file(&config.admin_socket);
            return Err(error);
        }
    };
    let board = Arc::new(HealthBoard::default());
    let _ = daemon.context().health.set(board.clone());
    let _ = daemon.context().limits.set(config.limits);
    if let Some(listener) = metrics_listener {
        let pages = Arc::new(Pages::new(daemon.context(), board.clone(), config.limits));
        daemon.serve_metrics(listener, pages);
    }
    let mut control = Control::new(
        Some(config_path),
        config.clone(),
        document,
        host,
        daemon.inputs(),
        board,
        &daemon.desired(),
    );
    control.links = Some(links);
    // The routers follow their settings as reloads change them.
    let (routers, router_settings) = tokio::sync::watch::channel(config.vrrp.clone());
    if !config.vrrp.is_empty() {
        control.routers = Some(routers);
    }
    let control = daemon.start_control(control);
    if let Err(error) = daemon
        .start_high_availability(&config.vrrp, router_settings, config.sync)
        .await
    {
        let _ = std::fs::remove_file(&config.admin_socket);
        return Err(DaemonError::HighAvailability(error));
    }
    if let Some(bgp) = &config.bgp {
        daemon.start_bgp(bgp.clone(), &config.instance);
    }
    log::info!(
        "instance {} serving {} services; admin socket {}",
        config.instance,
        config.services.len(),
        config.admin_socket.display()
    );
    Ok(Started {
        daemon,
        listener,
        control,
        config,
        pid_file,
    })
}

async fn load_and_attach(
    config: &Config,
    attached: &[InterfaceInfo],
    mut desired: Desired,
    watch: NeighbourWatch,
) -> Result<(Daemon, Links), DaemonError> {
    let Loaded {
        ebpf,
        dataplane,
        reader,
        sweeper,
        capture,
    } = loader::load(&config.limits, Some(&config.pin_dir))?;
    // A capture left armed was turned off at the start; the capturer checks again.
    let capturer = EbpfCapturer::new(capture).map_err(LoadError::from)?;
    let reader = Arc::new(reader);
    // Flows in pinned maps name reals by id: keep the ids a previous daemon gave.
    let mut existing = Existing::read(&dataplane).map_err(ReconcileError::from)?;
    if existing == Existing::default()
        && let Some((services, reals)) = loader::previous_layout(&config.pin_dir)?
    {
        log::info!(
            "upgrading pinned maps of the previous layout: {} services, {} reals",
            services.len(),
            reals.len()
        );
        existing = Existing {
            services,
            reals,
            ..Existing::default()
        };
    }
    if !existing.services.is_empty() {
        log::info!(
            "adopting pinned maps from {}: {} services, {} reals",
            config.pin_dir.display(),
            existing.services.len(),
            existing.reals.len()
        );
    }
    desired.adopt(&existing);
    let mut daemon = Daemon::new(
        &config.instance,
        config.limits.flows,
        desired,
        Box::new(dataplane),
        reader.clone(),
    )?;
    daemon.context.set_capturer(Arc::new(capturer));

    let snapshot = daemon.context.desired.clone();
    watch.resync(&daemon.desired(), &daemon.inputs).await?;
    daemon.watch = Some(super::Task(Some(tokio::spawn(
        watch.run(snapshot, daemon.inputs()),
    ))));
    wait_for_reals(&daemon, INITIAL_RESOLUTION).await;

    let links = Links::new(
        Arc::new(std::sync::Mutex::new(ebpf)),
        config.pin_dir.clone(),
        daemon.context(),
    )?;
    let mut statuses = Vec::with_capacity(attached.len());
    for (interface, info) in config.interfaces.iter().zip(attached) {
        statuses.push(links.attach(interface, info).await?);
    }
    links.publish(statuses);
    // Links an earlier daemon pinned on interfaces this config no longer has.
    for name in loader::pinned_links(&config.pin_dir) {
        if !config
            .interfaces
            .iter()
            .any(|interface| interface.name == name)
        {
            log::info!("{name} is no longer configured: detaching the program from it");
            links.detach(&name);
        }
    }
    // Flows the program of an earlier layout recorded until it was replaced just now.
    let migrated = loader::migrate_previous_flows(&config.pin_dir, &reader)?;
    if migrated > 0 {
        log::info!("kept {migrated} flows from the flow table of the previous layout");
    }
    loader::remove_retired_pins(&config.pin_dir);
    daemon.sweep = Some(
        sweep::SweepThread::spawn(sweeper, daemon.sweep_passes.clone())
            .map_err(DaemonError::Sweep)?,
    );
    daemon.program = Some(links.program());
    Ok((daemon, links))
}

/// Full NAT's replies come back to its local addresses: one that is not this host's is legal
/// (routed here) but more often a typo that silently black-holes every full-NAT flow, so it
/// is worth a warning.
async fn warn_of_foreign_local_addresses(neighbours: &Neighbours, config: &Config) {
    let host = match neighbours.host_addresses().await {
        Ok(host) => host,
        Err(error) => {
            log::warn!("cannot list this host's addresses to check snat_pool: {error}");
            return;
        }
    };
    for service in &config.services {
        for address in &service.snat_pool {
            if !host.iter().any(|own| own.addr == *address) {
                log::warn!(
                    "{}: snat_pool address {address} is not an address of this host: the \
                     reals' replies to it must be routed here, or its full-NAT flows get no \
                     answer",
                    service.name()
                );
            }
        }
    }
}

/// Waits, at most `limit`, until every real's next hop has a MAC; reals still unknown after
/// that join as soon as the kernel learns them.
async fn wait_for_reals(daemon: &Daemon, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let unresolved = daemon.desired().unresolved();
        if unresolved.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for (_, addr) in unresolved {
                log::warn!(
                    "next hop {addr}: no MAC yet (no answer to ARP/NDP); the reals behind it take no traffic until it answers"
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Used by `lbd --check`: the summary line it prints.
pub fn check_summary(path: &Path, config: &Config) -> String {
    let reals: usize = config.services.iter().map(|s| s.reals.len()).sum();
    let routers = match config.vrrp.len() {
        0 => String::new(),
        1 => ", 1 VRRP router".to_owned(),
        count => format!(", {count} VRRP routers"),
    };
    let sync = config
        .sync
        .map(|sync| format!(", sync with {}", sync.peer))
        .unwrap_or_default();
    let bgp = config
        .bgp
        .as_ref()
        .map(|bgp| {
            let count = bgp.neighbors.len();
            format!(
                ", BGP AS {} with {count} neighbour{}",
                bgp.local_as,
                if count == 1 { "" } else { "s" }
            )
        })
        .unwrap_or_default();
    format!(
        "{}: ok (instance {}, {} services, {reals} reals{routers}{sync}{bgp})",
        path.display(),
        config.instance,
        config.services.len()
    )
}
