//! VRRPv3 (RFC 5798): an active/standby pair shares the VIPs, keepalived style.
//!
//! - `packet.rs`: adverts parsed and emitted byte for byte (checksums with the pseudo-header),
//!   and the gratuitous ARP / unsolicited neighbour advertisement frames a new master sends;
//! - `machine.rs`: the RFC's state machine, pure, on a clock and a network it is handed (tests
//!   run it on fake ones, without root);
//! - `socket.rs`: the raw VRRP socket and the packet socket for announcements;
//! - `host.rs`: the interface's state and the virtual addresses, over rtnetlink;
//! - `router.rs`: one router at work, wiring the machine to all of that;
//! - `gate.rs`: which VIPs the program forwards (those of routers that are master here);
//! - `hooks.rs`: the notify programs;
//! - `board.rs`: the routers' states, for `lbadm status` and the metrics.
//!
//! [`Vrrp::start`] runs a task per router; [`Vrrp::stop`] makes each leave gracefully (a
//! master sends a priority-0 advert, so its backup takes over at once).

mod board;
mod gate;
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
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a stopping router may take to leave (advert, addresses, the reconciler).
const LEAVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

impl Vrrp {
    /// Starts every router of `routers`: each first removes addresses a predecessor left,
    /// then runs. `hold` is `true` while connection sync has no full copy of the master's
    /// flows.
    pub async fn start(
        routers: &[VrrpInstanceConfig],
        inputs: mpsc::Sender<Input>,
        desired: Arc<arc_swap::ArcSwap<Desired>>,
        hold: watch::Receiver<bool>,
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
                    ..RouterStatus::default()
                })
                .collect(),
        ));
        let gate = Arc::new(gate::VipGate::new(routers, inputs));
        let (stop, stopped) = watch::channel(false);
        let mut prepared = Vec::with_capacity(routers.len());
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
                },
            );
            router
                .prepare()
                .await
                .map_err(|error| format!("vrrp {}: {error}", config.name))?;
            prepared.push(router);
        }
        let tasks = prepared
            .into_iter()
            .map(|router| tokio::spawn(router.run()))
            .collect();
        Ok((Self { stop, tasks }, board))
    }

    /// Every router leaves: masters send a priority-0 advert, stop forwarding and remove
    /// their addresses.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(LEAVE_WITHIN, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
