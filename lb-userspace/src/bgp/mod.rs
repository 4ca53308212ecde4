//! Scale-out: this node announces its VIPs over BGP through BIRD, so that routers spread VIP
//! traffic over a fleet of balancers by ECMP (every balancer picks the same real for a flow:
//! Maglev, see README's "Scale-out").
//!
//! lbd speaks no BGP itself. It writes a BIRD configuration (`bird_config.rs`: router id,
//! sessions, a host route per VIP announced) that BIRD includes, and tells BIRD to read it
//! again (`configure` over BIRD's control socket, `bird_socket.rs`). Which VIPs are announced
//! is a pure function of the desired state and the drain flag (`announce.rs`): a VIP with at
//! least one healthy real, on a node that is not drained and not stopping.
//!
//! The [`Speaker`] is one task: every [`CHECK_EVERY`] (and at once on a drain) it works out
//! the verdicts, rewrites the file when they changed, and has BIRD take it, retrying while
//! BIRD is unreachable or refuses; every [`POLL_EVERY`] it reads the sessions' states. The
//! [`BgpBoard`] holds what `lbadm status` and the metrics show and takes drain requests.
//! A drain is written into the file (a comment line), so a restarted lbd stays drained.

pub mod announce;
pub mod bird_config;
pub mod bird_socket;
#[cfg(test)]
mod tests;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use tokio::sync::{oneshot, watch};

use crate::{
    admin::{BgpNeighborStatus, BgpStatus, BgpVipStatus},
    config::bgp::BgpConfig,
    reconcile::Desired,
};
use announce::{VipVerdict, verdicts};
use bird_socket::BirdSocket;

/// How often the verdicts are worked out again (health changes reach BGP within this).
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often the sessions' states are read from BIRD, and how soon a failed `configure` is
/// tried again.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a drain request waits for BIRD to take the withdrawal.
const DRAIN_WAIT: Duration = Duration::from_secs(8);
/// How long a stopping lbd gives BIRD to take the withdrawal of everything.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// A drain request: the flag, and a count that tells requests apart (so each gets the
/// outcome of its own `configure`).
#[derive(Debug, Clone, Copy, Default)]
struct Drain {
    drained: bool,
    generation: u64,
}

/// The outcome of the `configure` that followed a drain request.
#[derive(Debug, Clone)]
struct Applied {
    generation: u64,
    /// `Err`: why BIRD has not taken it.
    result: Result<(), String>,
}

/// What `lbadm status`, the metrics and the drain verbs see of the speaker.
pub struct BgpBoard {
    status: Mutex<BgpStatus>,
    drain: watch::Sender<Drain>,
    applied: watch::Sender<Applied>,
}

impl BgpBoard {
    pub fn snapshot(&self) -> BgpStatus {
        self.status.lock().expect("bgp board poisoned").clone()
    }

    /// `lbadm drain-node` (`true`) or `undrain-node` (`false`): returns once BIRD has taken
    /// the change, or says why it has not (lbd keeps trying).
    pub async fn set_drained(&self, drained: bool) -> Result<String, String> {
        let mut generation = 0;
        self.drain.send_modify(|drain| {
            drain.drained = drained;
            drain.generation += 1;
            generation = drain.generation;
        });
        let mut applied = self.applied.subscribe();
        let waited = tokio::time::timeout(
            DRAIN_WAIT,
            applied.wait_for(|applied| applied.generation >= generation),
        )
        .await;
        let what = if drained { "drained" } else { "undrained" };
        // Requests that come together are handled as one, the last one winning.
        let current = *self.drain.borrow();
        if current.generation != generation && current.drained != drained {
            let later = if current.drained {
                "drain-node"
            } else {
                "undrain-node"
            };
            return Err(format!(
                "node not {what}: a later {later} came before BIRD was told, and stands"
            ));
        }
        let outcome = match waited {
            Ok(Ok(applied)) => applied.result.clone(),
            Ok(Err(_)) => Err("lbd is stopping".to_owned()),
            Err(_) => Err(format!(
                "BIRD did not take it within {}s",
                DRAIN_WAIT.as_secs()
            )),
        };
        let status = self.snapshot();
        let announced = status.vips.iter().filter(|vip| vip.announced).count();
        match outcome {
            Ok(()) => Ok(format!(
                "node {what}: {announced} of {} VIPs announced through BIRD",
                status.vips.len()
            )),
            Err(error) => Err(format!(
                "node {what} in lbd, but BIRD has not taken it: {error} (lbd keeps trying; \
                 `lbadm status` shows when it has)"
            )),
        }
    }
}

/// The running speaker.
pub struct Speaker {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Speaker {
    /// Starts announcing. A file left drained by the previous lbd keeps the node drained.
    pub fn start(
        config: BgpConfig,
        instance: &str,
        desired: Arc<ArcSwap<Desired>>,
    ) -> (Speaker, Arc<BgpBoard>) {
        let drained = std::fs::read_to_string(&config.bird_config)
            .is_ok_and(|text| text.lines().any(|line| line == bird_config::DRAINED_MARK));
        if drained {
            log::warn!(
                "bgp: starting drained, as the last lbd left {} (lbadm undrain-node announces)",
                config.bird_config.display()
            );
        }
        let vips: Vec<_> = desired
            .load()
            .services
            .iter()
            .map(|s| s.config.vip)
            .collect();
        for orphan in config
            .vips
            .iter()
            .filter(|vip| !vips.contains(&vip.address))
        {
            log::warn!(
                "bgp: bgp.vips names {}, which no service has: its attributes wait for one",
                orphan.address
            );
        }
        let (drain, drain_requests) = watch::channel(Drain {
            drained,
            generation: 0,
        });
        let (applied, _) = watch::channel(Applied {
            generation: 0,
            result: Ok(()),
        });
        let board = Arc::new(BgpBoard {
            status: Mutex::new(BgpStatus {
                local_as: config.local_as,
                router_id: config.router_id.to_string(),
                drained,
                bird_socket: config.bird_socket.display().to_string(),
                bird_config: config.bird_config.display().to_string(),
                // `unknown` until BIRD is first asked.
                neighbors: neighbor_statuses(&config, &bird_config::Names::of(instance), &[]),
                ..BgpStatus::default()
            }),
            drain,
            applied,
        });
        // The file exists before lbd says it is ready, so a BIRD ordered after lbd finds it.
        let verdicts = verdicts(&desired.load(), drained, false);
        let text = bird_config::render(&config, instance, &verdicts, drained);
        let written = match write_replacing(&config.bird_config, &text) {
            Ok(()) => Some(text),
            // The driver tries again, and says why.
            Err(_) => None,
        };
        let driver = Driver {
            names: bird_config::Names::of(instance),
            bird: BirdSocket::new(config.bird_socket.clone()),
            config,
            instance: instance.to_owned(),
            desired,
            board: board.clone(),
            written,
            bird_up_to_date: false,
            retry_at: Instant::now(),
            poll_at: Instant::now(),
            generation: 0,
            last_verdicts: Vec::new(),
            last_error: None,
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(driver.run(drain_requests, stopped));
        (Speaker { stop, task }, board)
    }

    /// Withdraws every VIP (BIRD given a few seconds to take it), then stops.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Driver {
    config: BgpConfig,
    instance: String,
    desired: Arc<ArcSwap<Desired>>,
    names: bird_config::Names,
    bird: BirdSocket,
    board: Arc<BgpBoard>,
    /// The file's text as last written.
    written: Option<String>,
    /// Whether BIRD took `written`.
    bird_up_to_date: bool,
    retry_at: Instant,
    poll_at: Instant,
    /// The last drain request handled.
    generation: u64,
    last_verdicts: Vec<VipVerdict>,
    /// The last error logged, so that a BIRD down for an hour is one line, not 3,600.
    last_error: Option<String>,
}

impl Driver {
    async fn run(mut self, mut drain: watch::Receiver<Drain>, mut stop: oneshot::Receiver<()>) {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                biased;
                _ = &mut stop => true,
                changed = drain.changed() => changed.is_err(),
                _ = ticks.tick() => false,
            };
            let request = *drain.borrow_and_update();
            if stopping {
                let withdrawn = tokio::time::timeout(STOP_WAIT, self.step(request, true)).await;
                if withdrawn.is_err() || !self.bird_up_to_date {
                    let why = match withdrawn {
                        Err(_) => format!("BIRD did not answer within {}s", STOP_WAIT.as_secs()),
                        Ok(()) => self.last_error.clone().unwrap_or_default(),
                    };
                    log::warn!(
                        "bgp: stopping without BIRD taking the withdrawal of this node's VIPs \
                         ({why}); BIRD reads {} when it next configures",
                        self.config.bird_config.display()
                    );
                } else {
                    log::info!("bgp: every VIP withdrawn (lbd stopping)");
                }
                return;
            }
            self.step(request, false).await;
        }
    }

    async fn step(&mut self, request: Drain, stopping: bool) {
        let verdicts = verdicts(&self.desired.load(), request.drained, stopping);
        self.log_changes(&verdicts);
        let text = bird_config::render(&self.config, &self.instance, &verdicts, request.drained);
        if self.written.as_ref() != Some(&text) {
            // An fsync on a disk must not hold up one of the runtime's two workers.
            let (path, contents) = (self.config.bird_config.clone(), text.clone());
            let written =
                tokio::task::spawn_blocking(move || write_replacing(&path, &contents)).await;
            let written = written.unwrap_or_else(|error| Err(std::io::Error::other(error)));
            match written {
                Ok(()) => {
                    self.written = Some(text);
                    self.bird_up_to_date = false;
                }
                Err(error) => {
                    // What the file holds is unknown now: BIRD is not asked to read it until
                    // a write succeeds (tried again at every check).
                    self.written = None;
                    self.bird_up_to_date = false;
                    let error = format!("writing {}: {error}", self.config.bird_config.display());
                    self.failed(error);
                }
            }
        }
        let now = Instant::now();
        let new_request = request.generation != self.generation;
        if self.written.is_some()
            && !self.bird_up_to_date
            && (now >= self.retry_at || new_request || stopping)
        {
            match self.bird.configure().await {
                Ok(said) => {
                    log::debug!("bgp: BIRD reconfigured: {said}");
                    if self.last_error.take().is_some() {
                        log::info!("bgp: BIRD took {}", self.config.bird_config.display());
                    }
                    self.bird_up_to_date = true;
                    let mut status = self.board.status.lock().expect("bgp board poisoned");
                    status.configured_at = Some(unix_seconds());
                    status.bird_error = None;
                }
                Err(error) => {
                    self.board
                        .status
                        .lock()
                        .expect("bgp board poisoned")
                        .configure_failures += 1;
                    self.failed(error.to_string());
                    self.retry_at = now + POLL_EVERY;
                }
            }
        }
        self.publish(&verdicts, request);
        if new_request {
            self.generation = request.generation;
            let result = if self.bird_up_to_date {
                Ok(())
            } else {
                Err(self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "BIRD has not answered yet".to_owned()))
            };
            self.board.applied.send_replace(Applied {
                generation: request.generation,
                result,
            });
        }
        self.last_verdicts = verdicts;
        // After the drain's answer: a BIRD slow to list its protocols does not delay it.
        if !stopping && now >= self.poll_at {
            self.poll_at = now + POLL_EVERY;
            self.poll_sessions().await;
            self.board
                .status
                .lock()
                .expect("bgp board poisoned")
                .bird_up_to_date = self.bird_up_to_date;
        }
    }

    /// Records an error, logging it when it is new.
    fn failed(&mut self, error: String) {
        if self.last_error.as_ref() != Some(&error) {
            log::warn!("bgp: {error} (retrying every {}s)", POLL_EVERY.as_secs());
        }
        self.board
            .status
            .lock()
            .expect("bgp board poisoned")
            .bird_error = Some(error.clone());
        self.last_error = Some(error);
    }

    async fn poll_sessions(&mut self) {
        let rows = match self.bird.protocols().await {
            Ok(rows) => rows,
            Err(error) => {
                // A BIRD that went away may come back with another file: have it read ours.
                self.bird_up_to_date = false;
                self.failed(error.to_string());
                Vec::new()
            }
        };
        // `configure` succeeds on a bird.conf that does not include lbd's file: BIRD then
        // announces nothing, which must not pass for "took it".
        if self.bird_up_to_date && !rows.iter().any(|row| row.name == self.names.routes(false)) {
            self.bird_up_to_date = false;
            self.failed(format!(
                "BIRD took its configuration, but it has no protocol {} of lbd's: bird.conf \
                 must include {} (`include \"{}\";` on a line of its own)",
                self.names.routes(false),
                self.config.bird_config.display(),
                self.config.bird_config.display()
            ));
        }
        let neighbors = neighbor_statuses(&self.config, &self.names, &rows);
        let mut status = self.board.status.lock().expect("bgp board poisoned");
        for (before, now) in status.neighbors.iter().zip(&neighbors) {
            let established = |neighbor: &BgpNeighborStatus| neighbor.state == "Established";
            if established(before) != established(now) && now.state != "unknown" {
                log::info!(
                    "bgp: session with {} (AS {}): {} → {} {}",
                    now.address,
                    now.remote_as,
                    before.state,
                    now.state,
                    now.info
                );
            }
        }
        status.neighbors = neighbors;
    }

    fn publish(&self, verdicts: &[VipVerdict], request: Drain) {
        let mut status = self.board.status.lock().expect("bgp board poisoned");
        status.drained = request.drained;
        status.bird_up_to_date = self.bird_up_to_date;
        if self.bird_up_to_date {
            status.bird_error = None;
        }
        status.vips = verdicts
            .iter()
            .map(|verdict| BgpVipStatus {
                prefix: format!(
                    "{}/{}",
                    verdict.vip,
                    if verdict.vip.is_ipv6() { 128 } else { 32 }
                ),
                announced: verdict.announced(),
                withheld: verdict.withheld.map(|withheld| withheld.to_string()),
            })
            .collect();
    }

    fn log_changes(&self, verdicts: &[VipVerdict]) {
        for verdict in verdicts {
            let before = self
                .last_verdicts
                .iter()
                .find(|earlier| earlier.vip == verdict.vip);
            if before.map(|before| before.withheld) == Some(verdict.withheld) {
                continue;
            }
            match verdict.withheld {
                None => log::info!("bgp: announcing {}", verdict.vip),
                // A VIP never announced is not news at start-up.
                Some(why) if before.is_some_and(VipVerdict::announced) => {
                    log::info!("bgp: withdrawing {} ({why})", verdict.vip)
                }
                Some(why) => log::debug!("bgp: not announcing {} ({why})", verdict.vip),
            }
        }
    }
}

/// Each neighbour's session as BIRD's `show protocols` rows give it; `unknown` without a row.
fn neighbor_statuses(
    config: &BgpConfig,
    names: &bird_config::Names,
    rows: &[bird_socket::ProtocolRow],
) -> Vec<BgpNeighborStatus> {
    config
        .neighbors
        .iter()
        .enumerate()
        .map(|(index, neighbor)| {
            let protocol = names.session(index);
            let row = rows.iter().find(|row| row.name == protocol);
            let (state, info) = match row {
                Some(row) => {
                    let mut words = row.info.splitn(2, ' ');
                    let state = words.next().filter(|word| !word.is_empty());
                    (
                        state.unwrap_or(row.state.as_str()).to_owned(),
                        words.next().unwrap_or("").trim().to_owned(),
                    )
                }
                None => ("unknown".to_owned(), String::new()),
            };
            BgpNeighborStatus {
                address: neighbor.address.to_string(),
                remote_as: neighbor.remote_as,
                protocol,
                state,
                info,
            }
        })
        .collect()
}

/// `lbd --teardown`: the program is about to stop forwarding, so BIRD must stop announcing
/// (after a killed lbd, the last file still lists the VIPs). Rewrites the file with no route,
/// keeping a drain, and has BIRD take it. `Ok(false)`: BIRD is not running (it announces
/// nothing, and reads the file when it starts).
pub async fn withdraw_all(config: &BgpConfig, instance: &str) -> Result<bool, String> {
    let drained = std::fs::read_to_string(&config.bird_config)
        .is_ok_and(|text| text.lines().any(|line| line == bird_config::DRAINED_MARK));
    let text = bird_config::render(config, instance, &[], drained);
    write_replacing(&config.bird_config, &text)
        .map_err(|error| format!("writing {}: {error}", config.bird_config.display()))?;
    match BirdSocket::new(config.bird_socket.clone())
        .configure()
        .await
    {
        Ok(_) => Ok(true),
        Err(bird_socket::BirdError::Unreachable { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(false)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Writes `text` to `path` through a temporary file renamed over it, so that BIRD never
/// reads half a file. The directory is made if missing (`/run/lb` after a reboot).
fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    // Hidden and per process, so that no include glob of the operator's reads it half
    // written, and `lbd --teardown` never shares it with a running lbd.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    // BIRD may run as a user of its own (Debian's `bird`): it must be able to read the file.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
