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
//!
//! # Layout
//!
//! - this file: the task, its handle, and how a change is applied;
//! - `host.rs`: what the host says (interfaces, routes, neighbour tables) when reals are
//!   placed;
//! - `difference.rs`: what differs between two configs: interfaces, settings that cannot
//!   change live, the change in words.

mod difference;
mod host;

use std::{collections::HashSet, path::PathBuf, sync::Arc, time::Instant};

pub use difference::describe_difference;
use difference::{fixed_settings_unchanged, interface_changes};
pub use host::Host;
use tokio::sync::{mpsc, oneshot};

use super::Links;
use crate::{
    config::{
        self, Config, Document,
        edit::{self, Edit, ServiceRef},
    },
    health::{HealthBoard, HealthKey, HealthMonitor, Target, Transition},
    reconcile::{Desired, HealthChange, Input, Replacement, health_key_of, service_key},
};

/// Requests that wait for the control task before senders wait.
const REQUEST_QUEUE: usize = 64;

/// What a change request gets back: what changed, or why nothing did.
pub type Outcome = Result<String, String>;

enum Request {
    Reload(oneshot::Sender<Outcome>),
    Edit(Vec<Edit>, oneshot::Sender<Outcome>),
    Document(oneshot::Sender<Document>),
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

    /// Applies admin edits to the running config: all of them, or none if one is refused.
    pub async fn edit(&self, edits: Vec<Edit>) -> Outcome {
        self.ask(|done| Request::Edit(edits, done)).await
    }

    /// The running config's document (the file's, with the admin edits made since).
    pub async fn document(&self) -> Result<Document, String> {
        let (done, answer) = oneshot::channel();
        self.0
            .send(Request::Document(done))
            .await
            .map_err(|_| "lbd is stopping".to_owned())?;
        answer.await.map_err(|_| "lbd is stopping".to_owned())
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
    /// The VRRP routers' settings, which the routers follow (`None` without routers).
    pub routers: Option<tokio::sync::watch::Sender<Vec<crate::config::ha::VrrpInstanceConfig>>>,
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
            routers: None,
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
                    Request::Edit(edits, done) => {
                        let _ = done.send(control.edit(&edits).await);
                    }
                    Request::Document(done) => {
                        let _ = done.send(control.document.clone());
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

    /// Makes `edits` one after the other on the running config's document (so a real can be
    /// added to a service added just before), validates the result once, and applies it only
    /// if it is valid: all of them, or none. An error names the edit that failed, when one did.
    async fn edit(&mut self, edits: &[Edit]) -> Outcome {
        let described = match edits {
            [edit] => edit.describe(),
            _ => format!("{} changes", edits.len()),
        };
        let mut document = self.document.clone();
        if let Err((place, error)) = edit::apply_all(edits, &mut document) {
            let error = if edits.len() == 1 {
                error.to_string()
            } else {
                format!(
                    "change {} of {} ({}): {error}; nothing changed",
                    place + 1,
                    edits.len(),
                    edits[place].describe()
                )
            };
            log::warn!("admin: {described} refused: {error}");
            return Err(error);
        }
        let config = match config::from_document(&document) {
            Ok(config) => config,
            Err(error) => {
                let error = if edits.len() == 1 {
                    error.to_string()
                } else {
                    format!("{error}; nothing changed")
                };
                log::warn!("admin: {described} refused: {error}");
                return Err(error);
            }
        };
        let result = self.apply(config, document).await;
        match &result {
            Ok(summary) => log::info!("admin: {described}: {summary}"),
            Err(error) => log::warn!("admin: {described} refused: {error}"),
        }
        result
    }

    async fn zero_counters(&mut self, service: Option<ServiceRef>) -> Outcome {
        let key = match service {
            Some(named) => {
                let found = self.running.services.iter().find(|s| named.names(s));
                match found {
                    Some(config) => Some(service_key(config)),
                    None => return Err(format!("No such service: {named}")),
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
        // The routers take their new settings (only those that change live got here).
        if let Some(routers) = &self.routers {
            routers.send_if_modified(|running| {
                let changed = *running != config.vrrp;
                running.clone_from(&config.vrrp);
                changed
            });
        }
        self.running = config;
        self.document = document;
        self.host.probe(to_probe).await;
        Ok(summary)
    }
}
