//! One virtual router at work: the state machine wired to its socket, its interface, the
//! data plane's VIP gate, the hooks and the board.
//!
//! On becoming master: the virtual addresses are added, the program starts forwarding their
//! services, and each address is announced (keepalived's defaults: 5 gratuitous ARPs or
//! unsolicited neighbour advertisements at once, 5 more 5 s later). On leaving master: the
//! program stops forwarding them first, then the addresses go. A router that starts removes
//! the addresses a crashed predecessor left.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::{
    sync::watch,
    time::{Instant, sleep_until},
};

use super::{
    Board,
    board::{count_ignored, epoch_seconds},
    gate::VipGate,
    host::{Host, Link},
    machine::{self, Action, Machine, Params, State},
    packet::{self, Advert, MULTICAST_V4, MULTICAST_V6},
    socket::{AdvertSocket, FrameSocket, Received},
};
use crate::config::ha::{InitialState, VrrpInstanceConfig};

/// Announcements per burst, and the pause before the second burst (keepalived's
/// `garp_master_repeat` and `garp_master_delay`).
const ANNOUNCEMENTS: usize = 5;
const SECOND_BURST_AFTER: Duration = Duration::from_secs(5);
/// How often tracked interfaces and services are looked at.
const TRACK_EVERY: Duration = Duration::from_millis(100);

/// What a router is told from outside while it runs.
pub struct RouterInputs {
    /// `true` while this node lacks a full copy of the master's flows: it must not preempt.
    pub hold: watch::Receiver<bool>,
    /// The reconciler's snapshot: whether a service on this router's addresses has no real
    /// that can take new flows (for `track_services`).
    pub desired: Arc<arc_swap::ArcSwap<crate::reconcile::Desired>>,
    /// Becomes `true` when lbd stops.
    pub stop: watch::Receiver<bool>,
}

pub struct Router {
    index: usize,
    config: VrrpInstanceConfig,
    board: Arc<Board>,
    gate: Arc<VipGate>,
    host: Host,
    inputs: RouterInputs,
    epoch: Instant,
}

/// The router's interface and sockets, once it started.
struct Wire {
    link: Link,
    source: IpAddr,
    adverts: AdvertSocket,
    frames: FrameSocket,
    destinations: Vec<IpAddr>,
}

impl Router {
    pub fn new(
        index: usize,
        config: VrrpInstanceConfig,
        board: Arc<Board>,
        gate: Arc<VipGate>,
        host: Host,
        inputs: RouterInputs,
    ) -> Self {
        Self {
            index,
            config,
            board,
            gate,
            host,
            inputs,
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Opens the router's sockets on its interface, removing addresses a predecessor left.
    pub async fn prepare(&self) -> Result<(), String> {
        let name = &self.config.interface;
        let link = self
            .host
            .link(name)
            .await
            .map_err(|error| error.to_string())?;
        for address in &self.config.virtual_addresses {
            match self.host.remove(name, link.index, address.address).await {
                Ok(true) => log::info!(
                    "vrrp {}: removed {} from {name}, left by an earlier run",
                    self.config.name,
                    address.address
                ),
                Ok(false) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }

    async fn wire(&self) -> Result<Wire, String> {
        let name = &self.config.interface;
        let link = self
            .host
            .link(name)
            .await
            .map_err(|error| error.to_string())?;
        let source = self.source_address(link.index).await?;
        let multicast = self.config.unicast_peers.is_empty();
        let ipv6 = self.config.is_ipv6();
        let adverts = AdvertSocket::open(name, link.index, ipv6, multicast)
            .map_err(|error| format!("VRRP socket on {name}: {error}"))?;
        let frames = FrameSocket::open(link.index)
            .map_err(|error| format!("packet socket on {name}: {error}"))?;
        let destinations = if multicast {
            vec![if ipv6 {
                IpAddr::V6(MULTICAST_V6)
            } else {
                IpAddr::V4(MULTICAST_V4)
            }]
        } else {
            self.config.unicast_peers.clone()
        };
        Ok(Wire {
            link,
            source,
            adverts,
            frames,
            destinations,
        })
    }

    /// The address adverts come from: the interface's first address of the router's family
    /// that is not a virtual one; for IPv6 multicast, its link-local address (RFC 5798
    /// §5.1.2.1), for IPv6 unicast a global one (peers check the source against their list).
    async fn source_address(&self, index: u32) -> Result<IpAddr, String> {
        let name = &self.config.interface;
        let ipv6 = self.config.is_ipv6();
        let link_local_wanted = ipv6 && self.config.unicast_peers.is_empty();
        let addresses = self
            .host
            .addresses(name, index)
            .await
            .map_err(|error| error.to_string())?;
        addresses
            .into_iter()
            .filter(|address| address.is_ipv6() == ipv6)
            .filter(|address| {
                !self
                    .config
                    .virtual_addresses
                    .iter()
                    .any(|virtual_address| virtual_address.address == *address)
            })
            .find(|address| match address {
                IpAddr::V6(v6) => v6.is_unicast_link_local() == link_local_wanted,
                IpAddr::V4(_) => true,
            })
            .ok_or_else(|| {
                format!(
                    "{name} has no {} address to send adverts from",
                    match (ipv6, link_local_wanted) {
                        (false, _) => "IPv4",
                        (true, true) => "IPv6 link-local",
                        (true, false) => "global IPv6",
                    }
                )
            })
    }

    fn params(&self, primary_address: IpAddr) -> Params {
        Params {
            vrid: self.config.vrid,
            priority: self.config.priority,
            advert_interval: self.config.advert_interval,
            preempt: self.config.preempt,
            preempt_delay: self.config.preempt_delay,
            initial_state: match self.config.initial_state {
                InitialState::Backup => machine::InitialState::Backup,
                InitialState::Master => machine::InitialState::Master,
            },
            primary_address,
        }
    }

    /// Runs until `inputs.stop`; then leaves (a master sends a priority-0 advert and gives
    /// the addresses up).
    pub async fn run(self) {
        let mut stop = self.inputs.stop.clone();
        let wire = loop {
            match self.wire().await {
                Ok(wire) => break wire,
                Err(error) => {
                    log::error!("vrrp {}: {error}; trying again in 1s", self.config.name);
                    self.board.update(self.index, |status| {
                        status.state = "FAULT".into();
                        status.last_reason = Some(error.clone());
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stopped(&mut stop) => return,
                    }
                }
            }
        };
        log::info!(
            "vrrp {}: vrid {} on {} from {}, priority {}, adverts every {:?} to {}",
            self.config.name,
            self.config.vrid,
            self.config.interface,
            wire.source,
            self.config.priority,
            self.config.advert_interval,
            wire.destinations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.board.update(self.index, |status| {
            status.address = Some(wire.source);
        });
        let mut machine = Machine::new(self.params(wire.source));
        let mut held = self.inputs.hold.clone();
        let hold = *held.borrow_and_update();
        let mut actions = machine.set_preempt_hold(self.now(), hold);
        actions.extend(machine.start(self.now()));
        let mut second_burst: Option<Instant> = None;
        let mut tracked = Tracked::default();
        let mut track_ticks = tokio::time::interval(TRACK_EVERY);
        track_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.perform(&wire, &mut machine, actions, &mut second_burst)
                .await;
            self.publish(&machine);
            let deadline = machine
                .next_deadline()
                .map(|at| self.epoch + at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let burst_at =
                second_burst.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            actions = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                _ = sleep_until(deadline) => machine.poll(self.now()),
                received = wire.adverts.receive() => match received {
                    Ok(received) => self.heard(&wire, &mut machine, received),
                    Err(error) => {
                        log::warn!("vrrp {}: receiving: {error}", self.config.name);
                        Vec::new()
                    }
                },
                _ = sleep_until(burst_at) => {
                    second_burst = None;
                    if machine.state() == State::Master {
                        self.announce(&wire);
                    }
                    Vec::new()
                }
                _ = track_ticks.tick() => self.track(&mut machine, &mut tracked).await,
                Ok(()) = held.changed() => {
                    let hold = *held.borrow_and_update();
                    machine.set_preempt_hold(self.now(), hold)
                }
            };
        }
        let actions = machine.shutdown(self.now());
        self.perform(&wire, &mut machine, actions, &mut second_burst)
            .await;
        self.publish(&machine);
    }

    /// An advert off the wire: validated as RFC 5798 §7.1 says, then handed to the machine.
    /// Anything invalid is counted under its reason and changes nothing.
    fn heard(&self, wire: &Wire, machine: &mut Machine, received: Received) -> Vec<Action> {
        let parsed = match received.source {
            IpAddr::V4(_) => packet::parse_ipv4_packet(&received.bytes)
                .map(|(source, _, advert)| (IpAddr::V4(source), advert)),
            IpAddr::V6(source) => packet::check_hop_limit(received.hop_limit.unwrap_or(0))
                .and_then(|()| {
                    let destination = received
                        .destination
                        .map_or(IpAddr::V6(MULTICAST_V6), IpAddr::V6);
                    Advert::parse(&received.bytes, IpAddr::V6(source), destination)
                })
                .map(|advert| (IpAddr::V6(source), advert)),
        };
        let (source, advert) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                self.ignore(error.kind(), || {
                    format!("{error} (from {})", received.source)
                });
                return Vec::new();
            }
        };
        if source == wire.source {
            return Vec::new();
        }
        if advert.vrid != self.config.vrid {
            // Another router on the segment: normal, counted apart from errors.
            self.board
                .update(self.index, |status| count_ignored(status, "other_vrid"));
            return Vec::new();
        }
        if !self.config.unicast_peers.is_empty() && !self.config.unicast_peers.contains(&source) {
            self.ignore("unknown_peer", || {
                format!("advert from {source}, which is not among unicast_peers")
            });
            return Vec::new();
        }
        let mut ours: Vec<IpAddr> = self
            .config
            .virtual_addresses
            .iter()
            .map(|address| address.address)
            .collect();
        let mut theirs = advert.addresses.clone();
        ours.sort();
        theirs.sort();
        if ours != theirs {
            // RFC 5798 §7.1: log it, and go on (the peers disagree on the addresses, not on
            // who is master).
            log::debug!(
                "vrrp {}: {source} advertises addresses {theirs:?}, ours are {ours:?}",
                self.config.name
            );
        }
        self.board
            .update(self.index, |status| status.adverts_received += 1);
        let interval = Duration::from_millis(u64::from(advert.max_advert_interval_cs) * 10);
        machine.receive(self.now(), source, advert.priority, interval)
    }

    fn ignore(&self, kind: &str, describe: impl FnOnce() -> String) {
        let mut first = false;
        self.board.update(self.index, |status| {
            first = !status
                .adverts_ignored
                .iter()
                .any(|(known, _)| known == kind);
            count_ignored(status, kind);
        });
        // Every kind is logged once at warning level; repeats would flood the log.
        if first {
            log::warn!(
                "vrrp {}: ignored an advert: {}",
                self.config.name,
                describe()
            );
        } else {
            log::debug!(
                "vrrp {}: ignored an advert: {}",
                self.config.name,
                describe()
            );
        }
    }

    async fn perform(
        &self,
        wire: &Wire,
        machine: &mut Machine,
        actions: Vec<Action>,
        second_burst: &mut Option<Instant>,
    ) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(wire, priority),
                Action::Reannounce { peer } => {
                    log::info!(
                        "vrrp {}: {peer} also claims master with a lower priority; announcing \
                         the addresses again",
                        self.config.name
                    );
                    self.announce(wire);
                }
                Action::Transition { from, to, reason } => {
                    log::info!("vrrp {}: {from} -> {to}: {reason}", self.config.name);
                    if from == State::Master {
                        *second_burst = None;
                        self.leave_master(wire).await;
                    }
                    if to == State::Master {
                        self.enter_master(wire).await;
                        *second_burst = Some(Instant::now() + SECOND_BURST_AFTER);
                    }
                    let reason = reason.to_string();
                    self.board.update(self.index, |status| {
                        status.transitions += 1;
                        status.last_transition = Some(format!("{from} -> {to}"));
                        status.last_reason = Some(reason);
                        status.last_transition_at = Some(epoch_seconds(SystemTime::now()));
                    });
                    super::hooks::run(&self.config, to, machine.priority());
                }
            }
        }
    }

    fn send_advert(&self, wire: &Wire, priority: u8) {
        let advert = Advert {
            vrid: self.config.vrid,
            priority,
            max_advert_interval_cs: (self.config.advert_interval.as_millis() / 10) as u16,
            addresses: self
                .config
                .virtual_addresses
                .iter()
                .map(|address| address.address)
                .collect(),
        };
        for destination in &wire.destinations {
            let payload = advert.emit(wire.source, *destination);
            match wire.adverts.send(&payload, wire.source, *destination) {
                Ok(()) => self
                    .board
                    .update(self.index, |status| status.adverts_sent += 1),
                Err(error) => log::debug!(
                    "vrrp {}: sending an advert to {destination}: {error}",
                    self.config.name
                ),
            }
        }
    }

    /// Addresses first (so the host answers for them), then the program forwards their
    /// services, then the network is told.
    async fn enter_master(&self, wire: &Wire) {
        for address in &self.config.virtual_addresses {
            if let Err(error) = self
                .host
                .add(&self.config.interface, wire.link.index, *address)
                .await
            {
                log::error!("vrrp {}: {error}", self.config.name);
            }
        }
        if let Err(error) = self.gate.serve(&self.config.name, true).await {
            log::error!(
                "vrrp {}: starting to forward the virtual addresses: {error}",
                self.config.name
            );
        }
        self.announce(wire);
    }

    /// The program stops forwarding first, then the addresses go.
    async fn leave_master(&self, wire: &Wire) {
        if let Err(error) = self.gate.serve(&self.config.name, false).await {
            log::error!(
                "vrrp {}: stopping forwarding the virtual addresses: {error}",
                self.config.name
            );
        }
        for address in &self.config.virtual_addresses {
            if let Err(error) = self
                .host
                .remove(&self.config.interface, wire.link.index, address.address)
                .await
            {
                log::error!("vrrp {}: {error}", self.config.name);
            }
        }
    }

    /// One burst of gratuitous ARPs / unsolicited neighbour advertisements.
    fn announce(&self, wire: &Wire) {
        for _ in 0..ANNOUNCEMENTS {
            for address in &self.config.virtual_addresses {
                let frame = match address.address {
                    IpAddr::V4(v4) => packet::gratuitous_arp(wire.link.mac, v4),
                    // From the address itself, as keepalived sends them.
                    IpAddr::V6(v6) => packet::unsolicited_neighbour_advert(wire.link.mac, v6, v6),
                };
                if let Err(error) = wire.frames.send(&frame) {
                    log::debug!(
                        "vrrp {}: announcing {}: {error}",
                        self.config.name,
                        address.address
                    );
                }
            }
        }
    }

    /// Tracked interfaces and services → FAULT or a lower priority.
    async fn track(&self, machine: &mut Machine, tracked: &mut Tracked) -> Vec<Action> {
        let mut fault: Option<String> = None;
        let mut priority = i32::from(self.config.priority);
        let mut interfaces = vec![(self.config.interface.clone(), 0)];
        interfaces.extend(
            self.config
                .track_interfaces
                .iter()
                .map(|tracked| (tracked.name.clone(), tracked.weight)),
        );
        for (name, weight) in interfaces {
            let up = matches!(self.host.link(&name).await, Ok(link) if link.up);
            if up {
                continue;
            }
            if weight == 0 {
                fault.get_or_insert(format!("interface {name} down"));
            } else {
                priority += weight;
            }
        }
        if let Some(weight) = self.config.track_services
            && self.a_service_is_down()
        {
            if weight == 0 {
                fault.get_or_insert("a tracked service has no real up".to_owned());
            } else {
                priority += weight;
            }
        }
        let mut actions = Vec::new();
        if fault != tracked.fault {
            tracked.fault = fault.clone();
            actions.extend(machine.set_fault(self.now(), fault));
        }
        // An owner keeps 255; anyone else stays within 1..=254.
        let effective = if self.config.priority == 255 {
            255
        } else {
            priority.clamp(1, 254) as u8
        };
        if Some(effective) != tracked.priority {
            tracked.priority = Some(effective);
            actions.extend(machine.set_priority(self.now(), effective));
        }
        actions
    }

    /// Whether a service on one of the router's addresses has no real that can take new
    /// flows.
    fn a_service_is_down(&self) -> bool {
        let desired = self.inputs.desired.load();
        desired
            .services
            .iter()
            .filter(|service| {
                self.config
                    .virtual_addresses
                    .iter()
                    .any(|address| address.address == service.config.vip)
            })
            .any(|service| {
                !service
                    .reals
                    .iter()
                    .any(|real| !real.sorry && real.schedulable() && real.config.weight > 0)
            })
    }

    fn publish(&self, machine: &Machine) {
        let hold = *self.inputs.hold.borrow();
        self.board.update(self.index, |status| {
            status.state = machine.state().to_string();
            status.priority = machine.priority();
            status.master = machine.master_address();
            status.hold = hold.then(|| "waiting for a full copy of the master's flows".to_owned());
        });
    }
}

/// Until lbd stops (the guard `wait_for` returns is not `Send`: it stays in here).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[derive(Default)]
struct Tracked {
    fault: Option<String>,
    priority: Option<u8>,
}
