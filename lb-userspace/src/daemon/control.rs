//! Live reconfiguration: the one path by which a new config (a SIGHUP reload, or an edit over
//! the admin socket) reaches the data plane.
//!
//! The control task holds the config that runs (the file's, plus admin edits since it was
//! last read) and takes one change at a time:
//! 1. the new config is validated whole (a reload: the file; an edit: the running config
//!    with the edit made, checked as the file is);
//! 2. what cannot change while lbd runs (instance, map sizes, the socket, pin, pid file and
//!    metrics addresses, an interface's XDP mode) is compared, and a change of it refused;
//!    an added interface gets the program (before the new state is written), a removed one
//!    loses it (after);
//! 3. every real is placed (interfaces and routes are read again), and the neighbour tables
//!    are read for the reals' next hops;
//! 4. the reconciler takes the new desired state over ([`Input::Replace`]): ids from the
//!    maps, so every flow whose real stays keeps it; schedules computed before anything is
//!    written; writes in an order that never shows the program a half-made state.
//!
//! Any refusal leaves everything as it was, and says why in one line.

use std::{collections::HashSet, net::IpAddr, path::PathBuf, sync::Arc, time::Instant};

use tokio::sync::{mpsc, oneshot};

use super::{
    Links,
    neighbours::{resolve, survey},
};
use crate::{
    config::{
        self, Config, Document, InterfaceConfig,
        edit::{Edit, ServiceRef},
    },
    health::{HealthBoard, HealthKey, HealthMonitor, Target, Transition},
    neighbour::{InterfaceInfo, NeighbourError, Neighbours, Observation, Routes},
    reconcile::{Desired, HealthChange, Input, Replacement, health_key_of, service_key},
};

/// Requests that wait for the control task before senders wait.
const REQUEST_QUEUE: usize = 64;

/// Where lbd learns about the host when it places reals.
pub enum Host {
    /// The kernel, over rtnetlink.
    Netlink(Neighbours),
    /// Fixed answers (tests with a fake data plane): interfaces, routes, and the MACs the
    /// neighbour tables would hold.
    Fixed {
        interfaces: Vec<InterfaceInfo>,
        routes: Routes,
        macs: Vec<(u32, IpAddr, [u8; 6])>,
    },
}

impl Host {
    /// The interfaces the program runs on (then the VLANs on them) and the routes to the
    /// reals that may be routed.
    pub async fn placement(
        &self,
        config: &Config,
    ) -> Result<(Vec<InterfaceInfo>, Routes), NeighbourError> {
        match self {
            Host::Netlink(neighbours) => {
                let mut interfaces = Vec::with_capacity(config.interfaces.len());
                for interface in &config.interfaces {
                    interfaces.push(neighbours.interface(&interface.name).await?);
                }
                let vlans = neighbours.vlans_on(&interfaces).await?;
                interfaces.extend(vlans);
                let routes = routes(neighbours, config).await?;
                Ok((interfaces, routes))
            }
            Host::Fixed {
                interfaces, routes, ..
            } => Ok((interfaces.clone(), routes.clone())),
        }
    }

    /// What the neighbour tables say about `desired`'s next hops, and those to probe.
    async fn survey(
        &self,
        desired: &Desired,
    ) -> Result<(Vec<Observation>, Vec<(u32, IpAddr)>), NeighbourError> {
        match self {
            Host::Netlink(neighbours) => {
                let survey = survey(neighbours, desired).await?;
                Ok((survey.observations, survey.to_probe))
            }
            Host::Fixed { macs, .. } => Ok((
                macs.iter()
                    .map(|&(ifindex, addr, mac)| Observation {
                        ifindex,
                        addr,
                        state: crate::neighbour::NeighbourStatus::Usable { mac, stale: false },
                    })
                    .collect(),
                Vec::new(),
            )),
        }
    }

    async fn probe(&self, next_hops: Vec<(u32, IpAddr)>) {
        if let Host::Netlink(neighbours) = self {
            resolve(neighbours, next_hops).await;
        }
    }
}

/// The kernel's route to every real that may sit behind a router (all but `dr` reals, which
/// must be on a connected segment): its next hop and the balancer's own address toward it.
/// One lookup per address; read again with every change.
pub async fn routes(neighbours: &Neighbours, config: &Config) -> Result<Routes, NeighbourError> {
    let mut routes = Routes::new();
    let routed = config
        .services
        .iter()
        .flat_map(|service| {
            service
                .reals
                .iter()
                .map(|real| (real.address, real.forward))
        })
        .chain(config.services.iter().filter_map(|service| {
            service
                .sorry_server
                .map(|sorry| (sorry.address, service.forward))
        }))
        .filter(|(_, forward)| !forward.needs_connected_real())
        .map(|(address, _)| address)
        // Collected: an iterator of closures held across an await makes the future not Send.
        .collect::<Vec<IpAddr>>();
    for address in routed {
        if let std::collections::hash_map::Entry::Vacant(slot) = routes.entry(address) {
            let route = neighbours.route(address).await?;
            log::debug!("route to real {address}: {route:?}");
            slot.insert(route);
        }
    }
    Ok(routes)
}

/// What a change request gets back: what changed, or why nothing did.
pub type Outcome = Result<String, String>;

enum Request {
    Reload(oneshot::Sender<Outcome>),
    Edit(Edit, oneshot::Sender<Outcome>),
    Zero(Option<ServiceRef>, oneshot::Sender<Outcome>),
}

/// How the admin socket and the signal handler ask for changes.
#[derive(Clone)]
pub struct ControlHandle(mpsc::Sender<Request>);

impl ControlHandle {
    /// Reads the config file again and applies it (SIGHUP).
    pub async fn reload(&self) -> Outcome {
        self.ask(Request::Reload).await
    }

    /// Applies an admin edit to the running config.
    pub async fn edit(&self, edit: Edit) -> Outcome {
        self.ask(|done| Request::Edit(edit, done)).await
    }

    /// Zeroes the counters of a service and its reals, or of every service.
    pub async fn zero_counters(&self, service: Option<ServiceRef>) -> Outcome {
        self.ask(|done| Request::Zero(service, done)).await
    }

    async fn ask(&self, request: impl FnOnce(oneshot::Sender<Outcome>) -> Request) -> Outcome {
        let (done, answer) = oneshot::channel();
        self.0
            .send(request(done))
            .await
            .map_err(|_| "lbd is stopping".to_owned())?;
        answer.await.map_err(|_| "lbd is stopping".to_owned())?
    }
}

/// The control task's state.
pub struct Control {
    /// The config file (`None`: nothing to reload, as in tests).
    pub config_path: Option<PathBuf>,
    /// The config as last read from the file.
    pub loaded: Config,
    /// What runs: `loaded` with the admin edits made since.
    pub running: Config,
    pub document: Document,
    pub host: Host,
    pub inputs: mpsc::Sender<Input>,
    /// Checks the reals of every service with a `health_check`; follows every change.
    pub health: HealthMonitor,
    /// The program's attachments, for changes that add or remove an interface (`None` with a
    /// fake data plane: such changes are refused).
    pub links: Option<Links>,
}

impl Control {
    /// A control task for `config` (read from `config_path`, as `document`), whose health
    /// checks report on `board` and, through the reconciler's `inputs`, to the data plane.
    /// The checks start from `running`'s verdicts: a real a previous daemon knew down stays
    /// down until it passes `rise` checks.
    pub fn new(
        config_path: Option<PathBuf>,
        config: Config,
        document: Document,
        host: Host,
        inputs: mpsc::Sender<Input>,
        board: Arc<HealthBoard>,
        running: &Desired,
    ) -> Self {
        let (transitions, heard) = mpsc::channel(TRANSITION_QUEUE);
        tokio::spawn(forward_transitions(heard, inputs.clone()));
        let mut health = HealthMonitor::new(board, transitions);
        let down = running.failed_checks();
        health.set_targets(health_targets(&config, &down));
        Self {
            config_path,
            loaded: config.clone(),
            running: config,
            document,
            host,
            inputs,
            health,
            links: None,
        }
    }
}

/// Health verdicts that may wait for the reconciler.
const TRANSITION_QUEUE: usize = 1024;

/// Hands the monitor's verdicts to the reconciler, as many at a time as have come; ends when
/// the monitor is gone.
async fn forward_transitions(mut heard: mpsc::Receiver<Transition>, inputs: mpsc::Sender<Input>) {
    while let Some(first) = heard.recv().await {
        let mut changes = vec![HealthChange {
            key: first.key,
            up: first.up,
        }];
        while let Ok(more) = heard.try_recv() {
            changes.push(HealthChange {
                key: more.key,
                up: more.up,
            });
        }
        if inputs.send(Input::Health(changes)).await.is_err() {
            return;
        }
    }
}

/// What the health monitor checks for `config`: every real of every service with a check.
/// A real seen for the first time starts up (keepalived's default: it leaves rotation after
/// `fall` failed checks), unless it is one of `down`. The monitor keeps the state of reals it
/// already checks.
fn health_targets(config: &Config, down: &HashSet<HealthKey>) -> Vec<Target> {
    config
        .services
        .iter()
        .filter_map(|service| service.health_check.as_ref().map(|check| (service, check)))
        .flat_map(|(service, check)| {
            service.reals.iter().map(move |real| {
                let key = health_key_of(service, real);
                Target::new(key, check.clone(), !down.contains(&key))
            })
        })
        .collect()
}

impl Control {
    /// Runs the control task until every handle is dropped.
    pub fn spawn(self) -> (ControlHandle, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::channel(REQUEST_QUEUE);
        let task = tokio::spawn(async move {
            let mut control = self;
            while let Some(request) = receiver.recv().await {
                match request {
                    Request::Reload(done) => {
                        let _ = done.send(control.reload().await);
                    }
                    Request::Edit(edit, done) => {
                        let _ = done.send(control.edit(&edit).await);
                    }
                    Request::Zero(service, done) => {
                        let _ = done.send(control.zero_counters(service).await);
                    }
                }
            }
        });
        (ControlHandle(sender), task)
    }

    async fn reload(&mut self) -> Outcome {
        let Some(path) = self.config_path.clone() else {
            return Err("this daemon has no config file to reload".to_owned());
        };
        let started = Instant::now();
        let read = tokio::task::spawn_blocking(move || config::load_with_document(&path))
            .await
            .map_err(|error| format!("reading the config: {error}"))?;
        let (config, document) = match read {
            Ok(read) => read,
            Err(error) => {
                let message = format!("reload refused, nothing changed: {error}");
                log::error!("{message}");
                return Err(message);
            }
        };
        if self.running != self.loaded {
            log::warn!(
                "reload: the file replaces what was changed over the admin socket since it was \
                 last read: {}",
                describe_difference(&self.loaded, &self.running)
            );
        }
        let result = self.apply(config.clone(), document).await;
        match &result {
            Ok(summary) => {
                self.loaded = config;
                log::info!("reload applied in {:?}: {summary}", started.elapsed());
            }
            Err(error) => log::error!("reload refused, nothing changed: {error}"),
        }
        result
    }

    async fn edit(&mut self, edit: &Edit) -> Outcome {
        let document = edit
            .apply(&self.running, &self.document)
            .map_err(|error| error.to_string())?;
        let config = config::from_document(&document).map_err(|error| error.to_string())?;
        let result = self.apply(config, document).await;
        match &result {
            Ok(summary) => log::info!("admin: {}: {summary}", edit.describe()),
            Err(error) => log::warn!("admin: {} refused: {error}", edit.describe()),
        }
        result
    }

    async fn zero_counters(&mut self, service: Option<ServiceRef>) -> Outcome {
        let key = match service {
            Some(named) => {
                let found = self.running.services.iter().find(|s| {
                    (s.protocol, s.vip, s.port) == (named.protocol, named.vip, named.port)
                });
                match found {
                    Some(config) => Some(service_key(config)),
                    None => return Err(format!("no service {named}")),
                }
            }
            None => None,
        };
        let (done, answer) = oneshot::channel();
        self.inputs
            .send(Input::ZeroCounters { service: key, done })
            .await
            .map_err(|_| "lbd is stopping".to_owned())?;
        answer.await.map_err(|_| "lbd is stopping".to_owned())??;
        let what = service.map_or_else(|| "every service".to_owned(), |s| s.to_string());
        log::info!("admin: zeroed the counters of {what}");
        Ok(format!("zeroed the counters of {what}"))
    }

    /// Steps 2 to 4 of the module's list; on success, `config` runs.
    async fn apply(&mut self, config: Config, document: Document) -> Outcome {
        fixed_settings_unchanged(&self.running, &config)?;
        let (added, removed) = interface_changes(&self.running, &config)?;
        if (!added.is_empty() || !removed.is_empty()) && self.links.is_none() {
            return Err("interfaces cannot change here: this daemon runs no program".to_owned());
        }
        let (interfaces, routes) = self
            .host
            .placement(&config)
            .await
            .map_err(|error| error.to_string())?;
        let desired = Desired::new(&config, interfaces.clone(), &routes)
            .map_err(|error| error.to_string())?;
        let (observations, to_probe) = self
            .host
            .survey(&desired)
            .await
            .map_err(|error| error.to_string())?;
        // An added interface gets the program before anything needs it: VIP traffic arriving
        // there is served from the maps as on the others.
        let mut attached = Vec::new();
        if let Some(links) = &self.links {
            for interface in &added {
                let info = interfaces
                    .iter()
                    .find(|info| info.name == interface.name)
                    .expect("placement read every configured interface");
                match links.attach(interface, info).await {
                    Ok(_) => attached.push(interface.name.clone()),
                    Err(error) => {
                        for name in &attached {
                            links.detach(name);
                        }
                        return Err(error.to_string());
                    }
                }
            }
        }
        let (done, answer) = oneshot::channel();
        let replacement = Replacement {
            desired,
            observations,
            done,
        };
        let replaced = match self
            .inputs
            .send(Input::Replace(Box::new(replacement)))
            .await
        {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err("lbd is stopping".to_owned())),
            Err(_) => Err("lbd is stopping".to_owned()),
        };
        if let Err(error) = replaced {
            if let Some(links) = &self.links {
                for name in &attached {
                    links.detach(name);
                }
            }
            return Err(error);
        }
        // A removed interface keeps the program until no real is placed behind it.
        if let Some(links) = &self.links {
            for name in &removed {
                links.detach(name);
            }
            if !added.is_empty() || !removed.is_empty() {
                let mut statuses = Vec::with_capacity(config.interfaces.len());
                for (interface, info) in config.interfaces.iter().zip(&interfaces) {
                    statuses.push(links.status(interface, info).await);
                }
                links.publish(statuses);
            }
        }
        let summary = describe_difference(&self.running, &config);
        self.health
            .set_targets(health_targets(&config, &HashSet::new()));
        self.running = config;
        self.document = document;
        self.host.probe(to_probe).await;
        Ok(summary)
    }
}

/// The interfaces `new` adds to `running`'s, and the names of those it removes. One kept
/// with another `xdp_mode` is refused: reattaching in another mode would stop traffic on it.
fn interface_changes(
    running: &Config,
    new: &Config,
) -> Result<(Vec<InterfaceConfig>, Vec<String>), String> {
    for interface in &new.interfaces {
        if let Some(old) = running
            .interfaces
            .iter()
            .find(|old| old.name == interface.name)
            && old.xdp_mode != interface.xdp_mode
        {
            return Err(format!(
                "interface {}: xdp_mode cannot change while lbd runs ({} → {}); restart lbd to \
                 change it",
                interface.name,
                old.xdp_mode.name(),
                interface.xdp_mode.name()
            ));
        }
    }
    let added = new
        .interfaces
        .iter()
        .filter(|interface| {
            !running
                .interfaces
                .iter()
                .any(|old| old.name == interface.name)
        })
        .cloned()
        .collect();
    let removed = running
        .interfaces
        .iter()
        .filter(|old| {
            !new.interfaces
                .iter()
                .any(|interface| interface.name == old.name)
        })
        .map(|old| old.name.clone())
        .collect();
    Ok((added, removed))
}

/// What cannot change while lbd runs: each needs a restart (`lbd` adopts the pinned maps,
/// so a restart keeps forwarding).
fn fixed_settings_unchanged(running: &Config, new: &Config) -> Result<(), String> {
    let changed = |what: &str, old: String, new: String| {
        Err(format!(
            "{what} cannot change while lbd runs ({old} → {new}); restart lbd to change it \
             (forwarding continues across a restart)"
        ))
    };
    if running.instance != new.instance {
        return changed("instance", running.instance.clone(), new.instance.clone());
    }
    if running.limits != new.limits {
        return changed(
            "limits (map sizes)",
            format!("{:?}", running.limits),
            format!("{:?}", new.limits),
        );
    }
    if running.pin_dir != new.pin_dir {
        return changed(
            "pin_dir",
            running.pin_dir.display().to_string(),
            new.pin_dir.display().to_string(),
        );
    }
    if running.metrics_listen != new.metrics_listen {
        let text = |listen: Option<std::net::SocketAddr>| {
            listen.map_or_else(|| "none".to_owned(), |address| address.to_string())
        };
        return changed(
            "metrics.listen",
            text(running.metrics_listen),
            text(new.metrics_listen),
        );
    }
    if running.pid_file != new.pid_file {
        return changed(
            "pid_file",
            running.pid_file.display().to_string(),
            new.pid_file.display().to_string(),
        );
    }
    if running.admin_socket != new.admin_socket {
        return changed(
            "admin.socket",
            running.admin_socket.display().to_string(),
            new.admin_socket.display().to_string(),
        );
    }
    Ok(())
}

/// At most this many changes are named in one log line; the rest are counted.
const NAMED_CHANGES: usize = 12;

/// What differs between two configs, in words: services and reals added, removed or
/// changed, and timeouts. `no change` when nothing does.
pub fn describe_difference(old: &Config, new: &Config) -> String {
    let mut changes = Vec::new();
    let same_service = |a: &config::ServiceConfig, b: &config::ServiceConfig| {
        (a.protocol, a.vip, a.port) == (b.protocol, b.vip, b.port)
    };
    for service in &new.services {
        let Some(before) = old.services.iter().find(|s| same_service(s, service)) else {
            changes.push(format!("added {}", service.name()));
            continue;
        };
        let settings = |s: &config::ServiceConfig| config::ServiceConfig {
            reals: Vec::new(),
            ..s.clone()
        };
        if settings(before) != settings(service) {
            changes.push(format!("changed {}", service.name()));
        }
        for real in &service.reals {
            let text = config::socket_text(real.address, real.port);
            match before
                .reals
                .iter()
                .find(|r| (r.address, r.port) == (real.address, real.port))
            {
                None => changes.push(format!("added real {text} to {}", service.name())),
                Some(was) if was.weight != real.weight && was.forward == real.forward => changes
                    .push(format!(
                        "weight of {text} in {}: {} → {}",
                        service.name(),
                        was.weight,
                        real.weight
                    )),
                Some(was) if was != real => {
                    changes.push(format!("changed real {text} of {}", service.name()));
                }
                Some(_) => {}
            }
        }
        for real in &before.reals {
            if !service
                .reals
                .iter()
                .any(|r| (r.address, r.port) == (real.address, real.port))
            {
                changes.push(format!(
                    "removed real {} from {}",
                    config::socket_text(real.address, real.port),
                    service.name()
                ));
            }
        }
    }
    for service in &old.services {
        if !new.services.iter().any(|s| same_service(s, service)) {
            changes.push(format!("removed {}", service.name()));
        }
    }
    if old.timeouts != new.timeouts {
        changes.push("changed timeouts".to_owned());
    }
    if changes.is_empty() {
        return "no change".to_owned();
    }
    let more = changes.len().saturating_sub(NAMED_CHANGES);
    changes.truncate(NAMED_CHANGES);
    let mut text = changes.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}
