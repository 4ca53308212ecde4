//! What a router's role does to the host, on a task of its own so that the router keeps
//! sending adverts while netlink and the reconciler answer: the program's forwarding of the
//! router's VIPs, the virtual addresses, and their announcements.
//!
//! The rule it keeps: an address on the interface means its services are forwarded. Becoming
//! master, forwarding starts, then the addresses are added, then announced; leaving, the
//! addresses go, then forwarding stops. (An address held while its services are hidden would
//! make the kernel reset the clients' connections.) Every second it also repairs what
//! someone else changed: an address removed while master, or added while not.

use std::{net::IpAddr, sync::Arc, time::Duration};

use tokio::{
    sync::watch,
    time::{Instant, sleep_until},
};

use crate::{
    config::ha::VrrpInstanceConfig,
    sync::MergeGate,
    vrrp::{
        gate::VipGate,
        host::{Host, Link},
        packet,
        socket::FrameSocket,
    },
};

/// Announcements per burst, and the pause before the second burst (keepalived's
/// `garp_master_repeat` and `garp_master_delay`).
const ANNOUNCEMENTS: usize = 5;
const SECOND_BURST_AFTER: Duration = Duration::from_secs(5);
/// How often the addresses are compared with the role.
const REPAIR_EVERY: Duration = Duration::from_secs(1);
/// Failed repairs in a row after which the netlink socket is opened again.
const REOPEN_AFTER_FAILURES: u32 = 3;

/// What the router wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Role {
    pub master: bool,
    /// Bumped for each announcement asked for beyond the one on becoming master.
    pub announcements: u64,
}

pub struct Effects {
    pub config: VrrpInstanceConfig,
    pub host: Host,
    pub gate: Arc<VipGate>,
    pub merges: Option<Arc<MergeGate>>,
    pub frames: FrameSocket,
    pub link: Link,
}

impl Effects {
    /// Follows `role` until its sender goes, then leaves the master role if it holds it.
    pub async fn run(mut self, mut role: watch::Receiver<Role>) {
        let mut failures = 0u32;
        let mut master = false;
        let mut second_burst: Option<Instant> = None;
        let mut repairs = tokio::time::interval(REPAIR_EVERY);
        repairs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let later = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                changed = role.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = sleep_until(second_burst.unwrap_or(later)) => {
                    second_burst = None;
                    if master {
                        self.announce();
                    }
                    continue;
                }
                _ = repairs.tick() => {
                    if self.repair(master).await {
                        failures = 0;
                    } else {
                        failures += 1;
                        if failures == 1 {
                            log::warn!(
                                "vrrp {}: cannot read {}'s addresses over netlink",
                                self.config.name,
                                self.config.interface
                            );
                        }
                        // A netlink connection that hit a socket error stays closed.
                        if failures.is_multiple_of(REOPEN_AFTER_FAILURES) {
                            match Host::new() {
                                Ok(fresh) => self.host = fresh,
                                Err(error) => log::warn!("vrrp {}: {error}", self.config.name),
                            }
                        }
                    }
                    continue;
                }
            }
            let wanted = *role.borrow_and_update();
            if wanted.master && !master {
                if self.enter(&role).await {
                    master = true;
                    second_burst = Some(Instant::now() + SECOND_BURST_AFTER);
                }
            } else if !wanted.master && master {
                self.leave().await;
                master = false;
                second_burst = None;
            } else if master {
                // An announcement asked for, or a role lost and regained meanwhile (the peer
                // may have announced in between): either way the network hears us again.
                self.announce();
            }
        }
        if master {
            self.leave().await;
        }
    }

    /// Becomes master; `false` if the role was lost on the way (stopping, preempted), in
    /// which case what was done is undone and nothing is announced: announcing after the
    /// peer took over would draw its traffic here.
    async fn enter(&self, role: &watch::Receiver<Role>) -> bool {
        let name = &self.config.name;
        let still_wanted = || role.borrow().master && role.has_changed().is_ok();
        if let Some(merges) = &self.merges {
            let merges = merges.clone();
            // Waits for a batch of merges in flight (a few hundred flows).
            let _ = tokio::task::spawn_blocking(move || merges.serving()).await;
        }
        if let Err(error) = self.gate.serve(name, true).await {
            log::error!("vrrp {name}: starting to forward the virtual addresses: {error}");
        }
        if !still_wanted() {
            if let Err(error) = self.gate.serve(name, false).await {
                log::error!("vrrp {name}: stopping forwarding the virtual addresses: {error}");
            }
            if let Some(merges) = &self.merges {
                merges.standing_by();
            }
            return false;
        }
        for address in &self.config.virtual_addresses {
            if let Err(error) = self
                .host
                .add(&self.config.interface, self.link.index, *address)
                .await
            {
                log::error!("vrrp {name}: {error}");
            }
        }
        self.announce();
        true
    }

    async fn leave(&self) {
        let name = &self.config.name;
        self.remove_addresses().await;
        if let Err(error) = self.gate.serve(name, false).await {
            log::error!("vrrp {name}: stopping forwarding the virtual addresses: {error}");
        }
        if let Some(merges) = &self.merges {
            merges.standing_by();
        }
    }

    async fn remove_addresses(&self) {
        for address in &self.config.virtual_addresses {
            if let Err(error) = self
                .host
                .remove(&self.config.interface, self.link.index, address.address)
                .await
            {
                log::error!("vrrp {}: {error}", self.config.name);
            }
        }
    }

    /// Puts the addresses back in line with the role. Returns whether netlink answered.
    async fn repair(&self, master: bool) -> bool {
        let name = &self.config.name;
        let present = match self
            .host
            .addresses(&self.config.interface, self.link.index)
            .await
        {
            Ok(present) => present,
            Err(error) => {
                log::debug!("vrrp {name}: checking the addresses: {error}");
                return false;
            }
        };
        for address in &self.config.virtual_addresses {
            let present = present.iter().any(|(held, _)| *held == address.address);
            if master && !present {
                log::warn!(
                    "vrrp {name}: {address} was removed from {} while master: adding it again",
                    self.config.interface
                );
                if let Err(error) = self
                    .host
                    .add(&self.config.interface, self.link.index, *address)
                    .await
                {
                    log::error!("vrrp {name}: {error}");
                }
            } else if !master && present {
                log::warn!(
                    "vrrp {name}: {address} is on {} while not master: removing it",
                    self.config.interface
                );
                if let Err(error) = self
                    .host
                    .remove(&self.config.interface, self.link.index, address.address)
                    .await
                {
                    log::error!("vrrp {name}: {error}");
                }
            }
        }
        true
    }

    /// One burst of gratuitous ARPs / unsolicited neighbour advertisements.
    fn announce(&self) {
        for _ in 0..ANNOUNCEMENTS {
            for address in &self.config.virtual_addresses {
                let frame = match address.address {
                    IpAddr::V4(v4) => packet::gratuitous_arp(self.link.mac, v4),
                    // From the address itself, as keepalived sends them.
                    IpAddr::V6(v6) => packet::unsolicited_neighbour_advert(self.link.mac, v6, v6),
                };
                if let Err(error) = self.frames.send(&frame) {
                    log::debug!(
                        "vrrp {}: announcing {}: {error}",
                        self.config.name,
                        address.address
                    );
                }
            }
        }
    }
}

/// After a router task was cut short: its addresses removed best-effort, through a netlink
/// socket of its own.
pub async fn remove_left_addresses(config: &VrrpInstanceConfig) {
    let Ok(host) = Host::new() else {
        return;
    };
    let Ok(link) = host.link(&config.interface).await else {
        return;
    };
    for address in &config.virtual_addresses {
        let _ = host
            .remove(&config.interface, link.index, address.address)
            .await;
    }
}
