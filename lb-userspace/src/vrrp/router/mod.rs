//! One virtual router at work: the state machine wired to its socket, its timers and its
//! inputs. The loop itself never waits on netlink or on the reconciler, so adverts keep
//! their schedule whatever else is slow:
//! - `effects.rs` (a task of its own) does what the role means for the host: the program's
//!   forwarding of the VIPs, the virtual addresses and their announcements;
//! - `tracker.rs` (a task of its own) watches the tracked interfaces and services.

mod effects;
mod tracker;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
pub use effects::remove_left_addresses;
use effects::{Effects, Role};
use tokio::{
    sync::watch,
    time::{Instant, sleep_until},
};
use tracker::Tracked;

use super::{
    Board,
    board::{count_ignored, epoch_seconds},
    gate::VipGate,
    group::{MemberFaults, SyncGroup},
    host::{Host, Link},
    machine::{self, Action, Machine, Params, State},
    packet::{self, Advert, MULTICAST_V4, MULTICAST_V6},
    socket::{AdvertSocket, FrameSocket, Received},
};
use crate::{
    config::ha::{InitialState, VrrpInstanceConfig},
    reconcile::Desired,
    sync::MergeGate,
};

/// Adverts read at most from the socket before a timer is acted on: those that came while
/// the loop was busy count first (a backup must not time out a master whose advert waits).
const QUEUED_ADVERTS: usize = 64;
/// How long the router waits for the tracker's first verdict before starting without it.
const FIRST_VERDICT_WITHIN: Duration = Duration::from_secs(2);

/// What a router is given from outside.
pub struct RouterInputs {
    /// `true` while this node lacks a full copy of the master's flows: it must not preempt.
    pub hold: watch::Receiver<bool>,
    /// The reconciler's snapshot, for `track_services`.
    pub desired: Arc<ArcSwap<Desired>>,
    /// Becomes `true` when lbd stops.
    pub stop: watch::Receiver<bool>,
    /// Connection sync's merges, stopped while this node forwards.
    pub merges: Option<Arc<MergeGate>>,
    /// Every router's virtual addresses: none is an advert's source.
    pub all_virtual: Arc<BTreeSet<IpAddr>>,
    /// The router's sync group, if it is in one: its own faults go there, and it takes the
    /// others'.
    pub group: Option<Arc<SyncGroup>>,
    /// Every router's settings as reloads change them: this one follows its own (only what
    /// changes live differs: see `daemon::control`).
    pub settings: watch::Receiver<Vec<VrrpInstanceConfig>>,
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

/// The router's interface and socket, once it started.
struct Wire {
    link: Link,
    source: IpAddr,
    adverts: AdvertSocket,
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

    /// The interface, the addresses a predecessor left removed, the sockets.
    async fn wire(&self) -> Result<(Wire, FrameSocket), String> {
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
        Ok((
            Wire {
                link,
                source,
                adverts,
                destinations,
            },
            frames,
        ))
    }

    /// The address adverts come from: `source_address` if set, once the interface has it;
    /// else one of the interface's usable addresses of the router's family that no router
    /// carries; for IPv6 multicast its link-local address (RFC 5798 §5.1.2.1), for IPv6
    /// unicast a global one (peers check the source against their list). With unicast peers,
    /// one on a peer's subnet if there is one.
    async fn source_address(&self, index: u32) -> Result<IpAddr, String> {
        let name = &self.config.interface;
        let ipv6 = self.config.is_ipv6();
        let link_local_wanted = ipv6 && self.config.unicast_peers.is_empty();
        let addresses = self
            .host
            .addresses(name, index)
            .await
            .map_err(|error| error.to_string())?;
        if let Some(configured) = self.config.source_address {
            // Sending from an address the interface lacks fails (and a peer would not know
            // it): wait for it, as a FAULT, as for a missing interface.
            return if addresses.iter().any(|(address, _)| *address == configured) {
                Ok(configured)
            } else {
                Err(format!(
                    "source_address {configured} is not an address of {name} (yet)"
                ))
            };
        }
        let candidates: Vec<(IpAddr, u8)> = addresses
            .into_iter()
            .filter(|(address, _)| address.is_ipv6() == ipv6)
            .filter(|(address, _)| !self.inputs.all_virtual.contains(address))
            .filter(|(address, _)| match address {
                IpAddr::V6(v6) => v6.is_unicast_link_local() == link_local_wanted,
                IpAddr::V4(_) => true,
            })
            .collect();
        let on_a_peers_subnet = candidates.iter().find(|(address, prefix)| {
            self.config
                .unicast_peers
                .iter()
                .any(|peer| crate::neighbour::prefix_contains(*address, *prefix, *peer))
        });
        on_a_peers_subnet
            .or(candidates.first())
            .map(|(address, _)| *address)
            .ok_or_else(|| {
                format!(
                    "{name} has no usable {} address to send adverts from",
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
    pub async fn run(mut self) {
        let mut stop = self.inputs.stop.clone();
        let mut settings = self.inputs.settings.clone();
        let (wire, frames) = loop {
            match self.wire().await {
                Ok(wired) => break wired,
                Err(error) => {
                    log::error!("vrrp {}: {error}; trying again in 1s", self.config.name);
                    self.report_own_fault(Some(error.clone()));
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
        self.board
            .update(self.index, |status| status.address = Some(wire.source));

        let (role, roles) = watch::channel(Role::default());
        let mut effects = match Host::new() {
            Ok(host) => tokio::spawn(
                Effects {
                    config: self.config.clone(),
                    host,
                    gate: self.gate.clone(),
                    merges: self.inputs.merges.clone(),
                    frames,
                    link: wire.link.clone(),
                }
                .run(roles),
            ),
            Err(error) => {
                // The router cannot run: its group must not take it for healthy.
                log::error!(
                    "vrrp {}: {error}; the router does not run",
                    self.config.name
                );
                self.report_own_fault(Some(error.to_string()));
                self.board.update(self.index, |status| {
                    status.state = "FAULT".into();
                    status.last_reason = Some(error.to_string());
                });
                return;
            }
        };
        let (verdicts, mut tracked) = watch::channel(None);
        let (tracking, tracker_settings) = watch::channel(self.config.clone());
        let tracker = tokio::spawn(tracker::run(
            tracker_settings,
            self.inputs.desired.clone(),
            verdicts,
        ));
        // A router that starts with a fault (an owner whose link is down) must not claim the
        // role for a moment first.
        tokio::select! {
            _ = tokio::time::timeout(FIRST_VERDICT_WITHIN, first_verdict(&mut tracked)) => {}
            () = stopped(&mut stop) => {
                tracker.abort();
                return;
            }
        }

        let mut faults = Faults::default();
        // Without a group, a watch that never changes (its sender kept here).
        let (_no_group, alone) = watch::channel(MemberFaults::new());
        let mut fellows = self
            .inputs
            .group
            .as_ref()
            .map_or(alone, |group| group.watch());
        let mut machine = Machine::new(self.params(wire.source));
        let mut held = self.inputs.hold.clone();
        let hold = *held.borrow_and_update();
        let mut actions = machine.set_preempt_hold(self.now(), hold);
        let first = tracked.borrow_and_update().clone();
        if first.is_none() {
            // Tracking did not speak in time: the router starts without a fault of its own.
            self.report_own_fault(None);
        }
        actions.extend(self.apply_verdict(&wire, &mut machine, first, &mut faults));
        // Nor may it claim the role for a moment while a fellow that has not spoken yet may
        // be faulty: it waits for them, as long as for its own tracking at most.
        tokio::select! {
            _ = tokio::time::timeout(
                FIRST_VERDICT_WITHIN,
                fellows_spoken(&mut fellows, &self.config.name),
            ) => {}
            () = stopped(&mut stop) => {
                tracker.abort();
                return;
            }
        }
        faults.fellows = self.fellows_fault(&mut fellows);
        actions.extend(self.settle_fault(&mut machine, &faults));
        actions.extend(machine.start(self.now()));
        loop {
            self.perform(&wire, &mut machine, actions, &role);
            self.publish(&machine);
            let later = Instant::now() + Duration::from_secs(3600);
            let deadline = machine.next_deadline().map_or(later, |at| self.epoch + at);
            actions = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                _ = sleep_until(deadline) => {
                    let mut actions = self.drain(&wire, &mut machine);
                    actions.extend(machine.poll(self.now()));
                    actions
                }
                Ok(()) = tracked.changed() => {
                    let verdict = tracked.borrow_and_update().clone();
                    let mut actions = self.apply_verdict(&wire, &mut machine, verdict, &mut faults);
                    actions.extend(self.settle_fault(&mut machine, &faults));
                    actions
                }
                Ok(()) = fellows.changed() => {
                    faults.fellows = self.fellows_fault(&mut fellows);
                    self.settle_fault(&mut machine, &faults)
                }
                Ok(()) = held.changed() => {
                    let hold = *held.borrow_and_update();
                    machine.set_preempt_hold(self.now(), hold)
                }
                Ok(()) = settings.changed() => {
                    let mine = settings
                        .borrow_and_update()
                        .iter()
                        .find(|router| router.name == self.config.name)
                        .cloned();
                    match mine {
                        Some(new) if new != self.config => {
                            self.take_settings(new, &wire, &mut machine, &tracking)
                        }
                        _ => Vec::new(),
                    }
                }
                ended = &mut effects, if !faults.effects_ended => {
                    // It never ends while the role sender lives, unless it panicked: this
                    // node then cannot add addresses or forward, and must not claim the role.
                    faults.effects_ended = true;
                    log::error!("vrrp {}: its addresses' task ended: {ended:?}", self.config.name);
                    self.report_own_fault(faults.own());
                    self.settle_fault(&mut machine, &faults)
                }
                received = wire.adverts.receive() => match received {
                    Ok(received) => self.heard(&wire, &mut machine, received),
                    Err(error) => {
                        log::warn!("vrrp {}: receiving: {error}", self.config.name);
                        Vec::new()
                    }
                },
            };
        }
        let actions = machine.shutdown(self.now());
        self.perform(&wire, &mut machine, actions, &role);
        self.publish(&machine);
        tracker.abort();
        // The effects task leaves the master role, if held, once its sender is gone; one that
        // failed left that to us.
        drop(role);
        let failed = faults.effects_ended || effects.await.is_err();
        if failed {
            remove_left_addresses(&self.config).await;
            let _ = self.gate.serve(&self.config.name, false).await;
        }
    }

    /// A reload's settings for this router (only those that change live differ): the
    /// machine's election settings and the tracker's; hooks and the rest are read from
    /// `self.config` as they are used.
    fn take_settings(
        &mut self,
        new: VrrpInstanceConfig,
        wire: &Wire,
        machine: &mut Machine,
        tracking: &watch::Sender<VrrpInstanceConfig>,
    ) -> Vec<Action> {
        let old = &self.config;
        let mut changes = Vec::new();
        if old.priority != new.priority {
            changes.push(format!("priority {} → {}", old.priority, new.priority));
        }
        if old.advert_interval != new.advert_interval {
            changes.push(format!(
                "adverts every {:?} → {:?}",
                old.advert_interval, new.advert_interval
            ));
        }
        if (old.preempt, old.preempt_delay) != (new.preempt, new.preempt_delay) {
            changes.push(format!(
                "preempt {} (delay {:?}) → {} (delay {:?})",
                old.preempt, old.preempt_delay, new.preempt, new.preempt_delay
            ));
        }
        if (&old.track_interfaces, old.track_services)
            != (&new.track_interfaces, new.track_services)
        {
            changes.push("tracking".to_owned());
        }
        if old.hooks != new.hooks {
            changes.push("hooks".to_owned());
            super::warn_of_missing_hooks(std::slice::from_ref(&new));
        }
        log::info!(
            "vrrp {}: new settings: {}",
            self.config.name,
            changes.join(", ")
        );
        self.config = new;
        let actions = match machine.reconfigure(self.params(wire.source)) {
            Ok(actions) => actions,
            // The config's validation allows nothing the machine refuses.
            Err(error) => {
                log::error!("vrrp {}: {error}", self.config.name);
                Vec::new()
            }
        };
        // The configured priority and the weights: its next verdict brings the effective
        // priority.
        tracking.send_replace(self.config.clone());
        let advert_interval_cs = (self.config.advert_interval.as_millis() / 10) as u16;
        let configured_priority = self.config.priority;
        self.board.update(self.index, |status| {
            status.configured_priority = configured_priority;
            status.advert_interval_cs = advert_interval_cs;
        });
        actions
    }

    /// The tracker's verdict: the priority given to the machine, the fault kept in `faults`
    /// (and told to the group) for [`Router::settle_fault`]. An interface created again (a
    /// new index) leaves the router's sockets on the old one: that is a fault until lbd
    /// restarts.
    fn apply_verdict(
        &self,
        wire: &Wire,
        machine: &mut Machine,
        verdict: Option<Tracked>,
        faults: &mut Faults,
    ) -> Vec<Action> {
        let Some(verdict) = verdict else {
            return Vec::new();
        };
        let recreated = verdict
            .index
            .filter(|index| *index != wire.link.index)
            .map(|index| {
                format!(
                    "interface {} was created again (index {} → {index}); restart lbd to use it",
                    self.config.interface, wire.link.index
                )
            });
        faults.tracked = recreated.or(verdict.fault);
        self.report_own_fault(faults.own());
        // The priority first: leaving FAULT computes the timers from it.
        if verdict.priority != machine.priority() {
            machine.set_priority(self.now(), verdict.priority)
        } else {
            Vec::new()
        }
    }

    /// The machine's fault made what `faults` say: its own, else a group fellow's.
    fn settle_fault(&self, machine: &mut Machine, faults: &Faults) -> Vec<Action> {
        let fault = faults.own().or_else(|| faults.fellows.clone());
        if fault.as_deref() == machine.fault() {
            return Vec::new();
        }
        machine.set_fault(self.now(), fault)
    }

    /// Tells the router's sync group, if any, its own fault.
    fn report_own_fault(&self, fault: Option<String>) {
        if let Some(group) = &self.inputs.group {
            group.report(&self.config.name, fault);
        }
    }

    /// The fault the router takes from its group's other members now.
    fn fellows_fault(&self, fellows: &mut watch::Receiver<MemberFaults>) -> Option<String> {
        let faults = fellows.borrow_and_update();
        self.inputs
            .group
            .as_ref()
            .and_then(|group| group.fellows_fault(&faults, &self.config.name))
    }

    /// Adverts that arrived while the loop was busy, handed over before a timer fires.
    fn drain(&self, wire: &Wire, machine: &mut Machine) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..QUEUED_ADVERTS {
            match wire.adverts.try_receive() {
                Ok(Some(received)) => actions.extend(self.heard(wire, machine, received)),
                Ok(None) => break,
                Err(error) => {
                    log::warn!("vrrp {}: receiving: {error}", self.config.name);
                    break;
                }
            }
        }
        actions
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
        let ours: BTreeSet<IpAddr> = self
            .config
            .virtual_addresses
            .iter()
            .map(|address| address.address)
            .collect();
        let theirs: BTreeSet<IpAddr> = advert.addresses.iter().copied().collect();
        if ours != theirs {
            // Another pair using our vrid (every example config uses 51) must not make this
            // one a backup: keepalived drops these too (RFC 9568 §7.1 with erratum 8299).
            self.ignore("address_mismatch", || {
                format!(
                    "advert from {source} for addresses {theirs:?}, ours are {ours:?} (another \
                     router with vrid {}?)",
                    advert.vrid
                )
            });
            return Vec::new();
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

    /// The machine's actions: adverts go out at once; what the role means for the host goes
    /// to the effects task.
    fn perform(
        &self,
        wire: &Wire,
        machine: &mut Machine,
        actions: Vec<Action>,
        role: &watch::Sender<Role>,
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
                    role.send_modify(|role| role.announcements += 1);
                }
                Action::Transition { from, to, reason } => {
                    log::info!("vrrp {}: {from} -> {to}: {reason}", self.config.name);
                    role.send_modify(|role| role.master = to == State::Master);
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
                Err(error) => {
                    let mut first = false;
                    self.board.update(self.index, |status| {
                        first = status.adverts_not_sent == 0;
                        status.adverts_not_sent += 1;
                    });
                    let message = format!(
                        "vrrp {}: sending an advert to {destination} from {}: {error}",
                        self.config.name, wire.source
                    );
                    if first {
                        log::warn!("{message}");
                    } else {
                        log::debug!("{message}");
                    }
                }
            }
        }
    }

    fn publish(&self, machine: &Machine) {
        let hold = *self.inputs.hold.borrow();
        self.board.update(self.index, |status| {
            status.state = machine.state().to_string();
            status.priority = machine.priority();
            status.master = machine.master_address();
            status.hold = (hold && machine.state() != State::Master)
                .then(|| "waiting for a full copy of the master's flows".to_owned());
        });
    }
}

/// Why a router is in FAULT, by source: the machine is in FAULT while any says so.
#[derive(Default)]
struct Faults {
    /// The tracker's (an interface down, a tracked service) or the interface recreated.
    tracked: Option<String>,
    /// The effects task ended (it panicked): this node cannot take the role.
    effects_ended: bool,
    /// A member of the router's sync group is in FAULT for a reason of its own.
    fellows: Option<String>,
}

impl Faults {
    /// The router's own fault, which its sync group takes.
    fn own(&self) -> Option<String> {
        self.effects_ended
            .then(|| "its addresses' task failed".to_owned())
            .or_else(|| self.tracked.clone())
    }
}

/// Until every other member of the router's group has said whether it is faulty (the guard
/// `wait_for` returns stays in here).
async fn fellows_spoken(fellows: &mut watch::Receiver<MemberFaults>, me: &str) {
    let _ = fellows
        .wait_for(|faults| !super::group::fellows_starting(faults, me))
        .await;
}

/// Until the tracker's first verdict (the guard `wait_for` returns stays in here).
async fn first_verdict(tracked: &mut watch::Receiver<Option<Tracked>>) {
    let _ = tracked.wait_for(Option::is_some).await;
}

/// Until lbd stops (the guard `wait_for` returns is not `Send`: it stays in here).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
