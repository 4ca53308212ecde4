//! The daemon's tasks: keep each real's MAC current, and answer the admin socket.
//!
//! [`run`] takes everything from outside (the data plane, the listener, the shutdown signal),
//! so tests start a daemon on a temporary socket with a fake data plane.

use std::{
    future::Future,
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::{
    admin::{self, MAX_REQUEST_BYTES, Reply, Request},
    config::Config,
    dataplane::Dataplane,
    neighbour::{NeighbourError, Neighbours},
    state::{State, StateError},
};

/// How often the neighbour table is read.
const NEIGHBOUR_POLL: Duration = Duration::from_secs(1);
/// How often the kernel is asked to re-verify every real's entry. The XDP program never uses
/// the kernel's entries, so without this a real whose MAC changes would keep a stale entry.
const NEIGHBOUR_REVALIDATE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("admin socket {path}: {source}")]
    AdminSocket { path: PathBuf, source: io::Error },
    #[error("admin socket {0} is in use by a running lbd")]
    AdminSocketInUse(PathBuf),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Neighbour(#[from] NeighbourError),
}

/// What the tasks share. One lock: every operation on it is short and never awaits.
struct Shared {
    state: State,
    dataplane: Box<dyn Dataplane + Send>,
}

pub struct Daemon {
    config: Config,
    shared: Arc<Mutex<Shared>>,
    /// `None` when MACs are not resolved from the host (tests with a fake data plane).
    neighbours: Option<Neighbours>,
}

impl Daemon {
    pub fn new(
        config: Config,
        state: State,
        dataplane: Box<dyn Dataplane + Send>,
        neighbours: Option<Neighbours>,
    ) -> Self {
        Self {
            config,
            shared: Arc::new(Mutex::new(Shared { state, dataplane })),
            neighbours,
        }
    }

    /// Writes the whole state to the data plane.
    pub fn apply(&self) -> Result<(), StateError> {
        let mut shared = lock(&self.shared);
        let Shared { state, dataplane } = &mut *shared;
        state.apply(dataplane.as_mut())
    }

    /// Asks the kernel to resolve every real and waits, at most `limit`, until all are known,
    /// so that the program is attached with complete schedules. Reals still unknown after
    /// that join as soon as the kernel learns them.
    pub async fn resolve_reals(&self, limit: Duration) -> Result<(), DaemonError> {
        let Some(neighbours) = &self.neighbours else {
            return Ok(());
        };
        let deadline = Instant::now() + limit;
        loop {
            refresh_neighbours(&self.shared, neighbours, false).await?;
            let unresolved = lock(&self.shared).state.unresolved();
            if unresolved.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                for (_, addr) in unresolved {
                    log::warn!(
                        "real {addr}: no MAC yet (no answer to ARP); it takes no traffic until it answers"
                    );
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves the state as consistent as any single write.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs until `shutdown` completes.
pub async fn run(
    daemon: Daemon,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let Daemon {
        config,
        shared,
        neighbours,
    } = daemon;
    let config = Arc::new(config);
    let neighbour_task = neighbours.map(|neighbours| {
        let shared = shared.clone();
        tokio::spawn(async move { keep_neighbours_current(&shared, &neighbours).await })
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    let config = config.clone();
                    tokio::spawn(async move {
                        if let Err(error) = serve_admin(stream, shared, config).await {
                            log::warn!("admin connection: {error}");
                        }
                    });
                }
                Err(error) => log::warn!("admin socket accept: {error}"),
            },
        }
    }
    if let Some(task) = neighbour_task {
        task.abort();
    }
    Ok(())
}

async fn keep_neighbours_current(shared: &Mutex<Shared>, neighbours: &Neighbours) {
    let mut ticker = tokio::time::interval(NEIGHBOUR_POLL);
    let mut last_revalidation = Instant::now();
    loop {
        ticker.tick().await;
        let revalidate = last_revalidation.elapsed() >= NEIGHBOUR_REVALIDATE;
        if revalidate {
            last_revalidation = Instant::now();
        }
        if let Err(error) = refresh_neighbours(shared, neighbours, revalidate).await {
            log::warn!("neighbour refresh: {error}");
        }
    }
}

/// Reads the neighbour table of every interface into the state, writes the data plane when a
/// MAC changed, and asks the kernel to resolve the reals still unknown (or all of them, with
/// `revalidate_all`).
async fn refresh_neighbours(
    shared: &Mutex<Shared>,
    neighbours: &Neighbours,
    revalidate_all: bool,
) -> Result<(), DaemonError> {
    let ifindexes: Vec<u32> = lock(shared)
        .state
        .interfaces
        .iter()
        .map(|interface| interface.index)
        .collect();
    for ifindex in ifindexes {
        let resolved = neighbours.resolved(ifindex).await?;
        let mut guard = lock(shared);
        let Shared { state, dataplane } = &mut *guard;
        let changed = state.set_neighbours(ifindex, &resolved);
        if !changed.is_empty() {
            log::info!(
                "real MACs learned or changed on ifindex {ifindex}: services {changed:?} updated"
            );
            state.apply_services(dataplane.as_mut(), &changed)?;
        }
    }
    let wanted = {
        let guard = lock(shared);
        if revalidate_all {
            guard.state.real_addresses()
        } else {
            guard.state.unresolved()
        }
    };
    // One address the kernel refuses must not keep the others from being resolved.
    for (ifindex, addr) in wanted {
        if let Err(error) = neighbours.trigger_resolution(ifindex, addr).await {
            log::warn!("{error}");
        }
    }
    Ok(())
}

async fn serve_admin(
    stream: UnixStream,
    shared: Arc<Mutex<Shared>>,
    config: Arc<Config>,
) -> io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(reader.take(MAX_REQUEST_BYTES as u64))
        .read_line(&mut line)
        .await?;
    let reply = if read == 0 || !line.ends_with('\n') {
        Reply::Error {
            message: format!("request missing or longer than {MAX_REQUEST_BYTES} bytes"),
        }
    } else {
        match serde_json::from_str::<Request>(&line) {
            // A listing walks the flow table, one syscall per entry: off the runtime's thread,
            // so the neighbour task keeps its pace.
            Ok(request) => tokio::task::spawn_blocking(move || {
                let guard = lock(&shared);
                admin::handle(
                    &request,
                    &config.instance,
                    config.limits.flows,
                    &guard.state,
                    guard.dataplane.as_ref(),
                )
            })
            .await
            .map_err(io::Error::other)?,
            Err(error) => Reply::Error {
                message: format!("bad request: {error}"),
            },
        }
    };
    let mut text = serde_json::to_string(&reply).expect("replies always serialize");
    text.push('\n');
    writer.write_all(text.as_bytes()).await
}

/// Binds the admin socket with mode 0600, replacing a stale socket file but never one a live
/// daemon still answers on.
pub fn bind_admin_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    let error = |source| DaemonError::AdminSocket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::AdminSocketInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(error)?;
    }
    let listener = UnixListener::bind(path).map_err(error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(error)?;
    Ok(listener)
}
