//! VRRPv3 (RFC 5798): an active/standby pair shares the VIPs, keepalived style.
//!
//! - `packet.rs`: adverts parsed and emitted byte for byte (checksums with the pseudo-header),
//!   and the gratuitous ARP / unsolicited neighbour advertisement frames a new master sends;
//! - `machine.rs`: the RFC's state machine, pure, on a clock and a network it is handed (tests
//!   run it on fake ones, without root);
//! - `socket.rs`: the raw VRRP socket and the packet socket for announcements;
//! - `host.rs`: the interface's state and the virtual addresses, over rtnetlink;
//! - `router/`: one router at work, wiring the machine to all of that (the effects of its
//!   role and its tracking on tasks of their own, so adverts never wait on them);
//! - `gate.rs`: which VIPs the program forwards (those of routers that are master here);
//! - `hooks.rs`: the notify programs;
//! - `board.rs`: the routers' states, for `lbadm status` and the metrics.
//!
//! [`Vrrp::start`] runs a task per router, on a thread of their own at a raised priority;
//! [`Vrrp::stop`] makes each leave gracefully (a master sends a priority-0 advert, so its
//! backup takes over at once).

mod board;
mod gate;
mod group;
mod hooks;
pub mod host;
pub mod machine;
pub mod packet;
mod router;
pub mod socket;

use std::sync::Arc;

pub use board::Board;
use tokio::sync::{mpsc, watch};

use crate::{
    admin::RouterStatus,
    config::ha::VrrpInstanceConfig,
    reconcile::{Desired, Input},
};

/// The routers, running.
pub struct Vrrp {
    stop: watch::Sender<bool>,
    tasks: Vec<(VrrpInstanceConfig, tokio::task::JoinHandle<()>)>,
    /// The routers' own thread. Adverts must keep their schedule when the daemon's runtime is
    /// busy (a bulk sync, a listing of a large table) or the machine is loaded: on a thread of
    /// their own, niced up, they do not queue behind the daemon's tasks, as keepalived's VRRP
    /// process does not queue behind its checkers. Shut down in `stop` (or on drop).
    runtime: Option<tokio::runtime::Runtime>,
}

/// The routers' thread's niceness (keepalived runs its VRRP process at a raised priority too);
/// best effort: without CAP_SYS_NICE it stays at the daemon's.
const ROUTER_NICENESS: libc::c_int = -10;

/// How long the stopping routers may take to leave (advert, addresses, the reconciler).
const LEAVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

impl Vrrp {
    /// Starts every router of `routers`. Each removes the addresses a predecessor left once
    /// its interface is there (a missing interface is retried, as a FAULT, not fatal).
    /// `hold` is `true` while connection sync has no full copy of the master's flows;
    /// `merges` is sync's, stopped while this node forwards.
    pub fn start(
        routers: &[VrrpInstanceConfig],
        settings: watch::Receiver<Vec<VrrpInstanceConfig>>,
        inputs: mpsc::Sender<Input>,
        desired: Arc<arc_swap::ArcSwap<Desired>>,
        hold: watch::Receiver<bool>,
        merges: Option<Arc<crate::sync::MergeGate>>,
    ) -> Result<(Self, Arc<Board>), String> {
        let board = Arc::new(Board::new(
            routers
                .iter()
                .map(|router| RouterStatus {
                    name: router.name.clone(),
                    interface: router.interface.clone(),
                    vrid: router.vrid,
                    state: "INIT".into(),
                    priority: router.priority,
                    configured_priority: router.priority,
                    advert_interval_cs: (router.advert_interval.as_millis() / 10) as u16,
                    virtual_addresses: router
                        .virtual_addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    sync_group: router.sync_group.clone(),
                    ..RouterStatus::default()
                })
                .collect(),
        ));
        let gate = Arc::new(gate::VipGate::new(routers, inputs));
        let all_virtual: Arc<std::collections::BTreeSet<std::net::IpAddr>> = Arc::new(
            routers
                .iter()
                .flat_map(|router| &router.virtual_addresses)
                .map(|address| address.address)
                .collect(),
        );
        let groups = group::SyncGroup::of(routers);
        warn_of_missing_hooks(routers);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vrrp")
            .on_thread_start(raise_priority)
            .enable_all()
            .build()
            .map_err(|error| format!("starting the VRRP thread: {error}"))?;
        // Its worker raises its priority as it starts: before lbd drops CAP_SYS_NICE at the
        // end of start-up, so wait for it (its first task runs after `on_thread_start`).
        let (started, worker_started) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = started.send(());
        });
        if worker_started
            .recv_timeout(std::time::Duration::from_secs(5))
            .is_err()
        {
            log::warn!("vrrp: the routers' thread did not start within 5 s");
        }
        // The routers' netlink connections (`Host::new`) and their tasks live on that thread.
        let handle = runtime.handle().clone();
        let _on_the_router_thread = handle.enter();
        let (stop, stopped) = watch::channel(false);
        // Held from here on, so that an error below shuts the thread down (`Drop`) instead of
        // dropping a runtime in async code, which panics.
        let mut vrrp = Self {
            stop,
            tasks: Vec::with_capacity(routers.len()),
            runtime: Some(runtime),
        };
        for (index, config) in routers.iter().enumerate() {
            let host = host::Host::new().map_err(|error| error.to_string())?;
            let router = router::Router::new(
                index,
                config.clone(),
                board.clone(),
                gate.clone(),
                host,
                router::RouterInputs {
                    hold: hold.clone(),
                    desired: desired.clone(),
                    stop: stopped.clone(),
                    merges: merges.clone(),
                    all_virtual: all_virtual.clone(),
                    group: config
                        .sync_group
                        .as_ref()
                        .and_then(|name| groups.get(name).cloned()),
                    settings: settings.clone(),
                },
            );
            vrrp.tasks
                .push((config.clone(), handle.spawn(router.run())));
        }
        Ok((vrrp, board))
    }

    /// Every router leaves: masters send a priority-0 advert, remove their addresses and
    /// stop forwarding. A router that has not left by [`LEAVE_WITHIN`] is stopped, and its
    /// addresses are removed anyway.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + LEAVE_WITHIN;
        let tasks = std::mem::take(&mut self.tasks);
        let leaving = tasks.into_iter().map(|(config, task)| async move {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                log::warn!(
                    "vrrp {}: did not leave within {LEAVE_WITHIN:?}; removing its addresses",
                    config.name
                );
                router::remove_left_addresses(&config).await;
            }
        });
        futures::future::join_all(leaving).await;
        // `self` drops here, and the routers' thread with it.
    }
}

impl Drop for Vrrp {
    fn drop(&mut self) {
        // A runtime may not be dropped (which waits for its thread) from async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn raise_priority() {
    // Threads the routers' thread spawns (its blocking pool) inherit its priority already.
    // SAFETY: getpriority and setpriority have no memory preconditions; 0 means the calling
    // thread (on Linux, PRIO_PROCESS with a thread id of 0 is the caller's own thread).
    if unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } <= ROUTER_NICENESS {
        return;
    }
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, ROUTER_NICENESS) } != 0 {
        // Said once: after start-up (no CAP_SYS_NICE) a blocking thread spawned from another
        // thread cannot be raised, and that one runs no adverts.
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let error = std::io::Error::last_os_error();
        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "vrrp: cannot raise the routers' thread to nice {ROUTER_NICENESS} ({error}); \
                 adverts run at the daemon's priority"
            );
        } else {
            log::debug!("vrrp: cannot raise a helper thread to nice {ROUTER_NICENESS} ({error})");
        }
    }
}

/// A hook that is not an executable file fails each time it should run: said at start (as
/// keepalived does), not refused, since it may be installed after lbd.
fn warn_of_missing_hooks(routers: &[VrrpInstanceConfig]) {
    use std::os::unix::fs::PermissionsExt;
    for router in routers {
        for program in router.hooks.programs() {
            let executable = std::fs::metadata(&program)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
            if !executable {
                log::warn!(
                    "vrrp {}: hook {} is not an executable file; it will fail when it runs",
                    router.name,
                    program.display()
                );
            }
        }
    }
}
