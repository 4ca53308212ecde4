//! The daemon side of the admin socket.
//!
//! Requests are answered from the published snapshot of the desired state and the data
//! plane's reader, never by asking the writer, so a listing (which walks the whole flow table)
//! neither waits for map writes nor holds them up. The walk runs on a blocking thread, off the
//! runtime's timers; at most [`MAX_CONCURRENT_WALKS`] run at once, so a burst of listings
//! cannot take every core.

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::Semaphore,
};

use super::{
    CheckStatus, InterfaceStatus, LastCheck, MapFill, RealStatus, Reply, Request, Status,
    admission::{Admission, REPLY_DEADLINE, Refusal},
    listing::{connections, listing},
    rates::{RateBoard, RateKey},
};
use crate::{
    config::{Limits, socket_text},
    daemon::ControlHandle,
    dataplane::{DataplaneError, DataplaneReader, capture::Capturer},
    health::{HealthBoard, RealHealth},
    reconcile::{Desired, describe_reachability, health_key_of},
};

const MAX_CONCURRENT_WALKS: usize = 2;

/// What the admin socket answers from.
pub struct AdminContext {
    pub instance: String,
    pub flow_table_size: u32,
    pub desired: Arc<ArcSwap<Desired>>,
    pub reader: Arc<dyn DataplaneReader>,
    /// Where the program is attached, as the kernel reported it at the last attach.
    interfaces: ArcSwap<Vec<InterfaceStatus>>,
    /// Where changes go; unset while the daemon starts (and in tests that take none).
    pub control: std::sync::OnceLock<ControlHandle>,
    /// The health checks' verdicts and last results; unset until the checks start.
    pub health: std::sync::OnceLock<Arc<HealthBoard>>,
    /// Map sizes, for `status`'s fill levels; unset with a data plane of no known size.
    pub limits: std::sync::OnceLock<Limits>,
    /// Rates of every service and real, moved by the daemon's estimator task.
    pub rates: RateBoard,
    /// The VRRP routers' states; unset without `vrrp` in the config.
    pub vrrp: std::sync::OnceLock<Arc<crate::vrrp::Board>>,
    /// Connection sync's progress; unset without `sync` in the config.
    pub sync: std::sync::OnceLock<Arc<crate::sync::SyncBoard>>,
    /// BGP announcements; unset without `bgp` in the config.
    pub bgp: std::sync::OnceLock<Arc<crate::bgp::BgpBoard>>,
    /// Captures for `lbadm dump`; unset until the program is loaded (and in tests that take
    /// none).
    capturer: std::sync::OnceLock<Arc<dyn Capturer>>,
    walks: Semaphore,
    /// Bounds on connections, request rate, size and time.
    admission: Admission,
}

impl AdminContext {
    pub fn new(
        instance: String,
        flow_table_size: u32,
        desired: Arc<ArcSwap<Desired>>,
        reader: Arc<dyn DataplaneReader>,
        interfaces: Vec<InterfaceStatus>,
    ) -> Self {
        Self {
            instance,
            flow_table_size,
            desired,
            reader,
            interfaces: ArcSwap::from_pointee(interfaces),
            control: std::sync::OnceLock::new(),
            health: std::sync::OnceLock::new(),
            limits: std::sync::OnceLock::new(),
            rates: RateBoard::default(),
            vrrp: std::sync::OnceLock::new(),
            sync: std::sync::OnceLock::new(),
            bgp: std::sync::OnceLock::new(),
            capturer: std::sync::OnceLock::new(),
            walks: Semaphore::new(MAX_CONCURRENT_WALKS),
            admission: Admission::default(),
        }
    }

    pub fn interfaces(&self) -> Arc<Vec<InterfaceStatus>> {
        self.interfaces.load_full()
    }

    pub fn set_interfaces(&self, interfaces: Vec<InterfaceStatus>) {
        self.interfaces.store(Arc::new(interfaces));
    }

    /// Where `lbadm dump` captures from; set once.
    pub fn set_capturer(&self, capturer: Arc<dyn Capturer>) {
        let _ = self.capturer.set(capturer);
    }

    pub fn capturer(&self) -> Option<&Arc<dyn Capturer>> {
        self.capturer.get()
    }

    /// `lbadm status`: attachments, map fill levels, and every real with its last check.
    /// Reads each real's connection counts (not the flow table), so it runs as a walk.
    fn status(&self, desired: &Desired) -> Status {
        let health = self
            .health
            .get()
            .map(|board| board.snapshot())
            .unwrap_or_default();
        let mut reals_health = Vec::new();
        let mut live_flows = 0;
        for service in &desired.services {
            let config = &service.config;
            let name = format!(
                "{} {}",
                config.protocol.name().to_uppercase(),
                socket_text(config.vip, config.port)
            );
            for real in &service.reals {
                // A count that cannot be read leaves the rest of the status worth having.
                if let Ok(connections) = self.reader.connections(real.id) {
                    live_flows += connections.active + connections.inactive;
                }
                let check = (config.health_check.is_some() && !real.sorry).then(|| {
                    check_status(
                        real.healthy,
                        health.get(&health_key_of(config, &real.config)),
                    )
                });
                reals_health.push(RealStatus {
                    service: name.clone(),
                    address: real.config.address,
                    port: real.config.port,
                    weight: real.config.weight,
                    sorry_server: real.sorry,
                    available: real.schedulable(),
                    neighbour: describe_reachability(real).to_owned(),
                    check,
                });
            }
        }
        // Sorry servers are not counted as reals (as in the metrics).
        let reals = reals_health
            .iter()
            .filter(|real| !real.sorry_server)
            .count();
        let mut maps = vec![MapFill {
            name: "flows".into(),
            used: live_flows,
            capacity: u64::from(self.flow_table_size),
        }];
        if let Some(limits) = self.limits.get() {
            // Id 0 means none in both arrays, so one slot is never used.
            maps.push(MapFill {
                name: "services".into(),
                used: desired.services.len() as u64,
                capacity: u64::from(limits.services.saturating_sub(1)),
            });
            maps.push(MapFill {
                name: "reals".into(),
                used: desired.services.iter().map(|s| s.reals.len() as u64).sum(),
                capacity: u64::from(limits.reals.saturating_sub(1)),
            });
        }
        Status {
            instance: self.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            flow_table_size: self.flow_table_size,
            services: desired.services.len(),
            reals,
            interfaces: self.interfaces().to_vec(),
            maps,
            reals_health,
            vrrp: self
                .vrrp
                .get()
                .map(|board| board.snapshot())
                .unwrap_or_default(),
            sync: self.sync.get().map(|board| board.snapshot()),
            bgp: self.bgp.get().map(|board| board.snapshot()),
        }
    }
}

/// A checked real's standing: the reconciler's verdict, with the board's last result (a
/// real whose first check has not finished has none).
fn check_status(up: bool, health: Option<&RealHealth>) -> CheckStatus {
    let Some(health) = health else {
        return CheckStatus {
            up,
            last: None,
            checks: 0,
            failures: 0,
            transitions: 0,
        };
    };
    CheckStatus {
        up,
        last: health.last.as_ref().map(|last| LastCheck {
            ok: last.ok,
            detail: last.detail.clone(),
            at_unix_s: last
                .at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            latency_ms: last.latency.as_millis() as u64,
        }),
        checks: health.checks,
        failures: health.failures,
        transitions: health.transitions,
    }
}

/// Reads one request from `stream` and writes the answer, within the bounds of
/// [`super::admission`].
pub async fn serve_connection(stream: UnixStream, context: Arc<AdminContext>) -> io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let refuse = |refusal: Refusal| {
        reply_line(&Reply::Error {
            message: refusal.to_string(),
        })
    };
    let _ticket = match context.admission.admit() {
        Ok(ticket) => ticket,
        Err(refusal) => return writer.write_all(refuse(refusal).as_bytes()).await,
    };
    let mut reader = BufReader::new(reader);
    let text = match context.admission.read_line(&mut reader).await {
        Err(refusal) => refuse(refusal),
        Ok(line) => {
            let request = super::protocol::decode_request(&line.text);
            // The line's share of the byte budget goes back before the answer (a dump lasts).
            drop(line);
            match request {
                // Answered with a line per packet, for as long as the client stays.
                Ok(Request::Dump(request)) => {
                    return super::dump::serve(request, reader, &mut writer, &context).await;
                }
                Ok(request) => answer(request, &context).await,
                Err(error) => reply_line(&Reply::Error {
                    message: format!("bad request: {error}"),
                }),
            }
        }
    };
    tokio::time::timeout(REPLY_DEADLINE, writer.write_all(text.as_bytes()))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read no reply within {REPLY_DEADLINE:?}"),
            )
        })?
}

/// A reply as the line sent back.
fn reply_line(reply: &Reply) -> String {
    let mut text = serde_json::to_string(reply).expect("replies always serialize");
    text.push('\n');
    text
}

/// The answer's line. Answers that walk maps are built and serialized on a blocking thread:
/// a million flows make a large reply.
async fn answer(request: Request, context: &Arc<AdminContext>) -> String {
    match request {
        // Not a walk: it reads one count per real, and operators reach for it when walks
        // are busy.
        Request::Status => {
            let context = context.clone();
            let status = tokio::task::spawn_blocking(move || {
                let desired = context.desired.load_full();
                context.status(&desired)
            })
            .await;
            reply_line(&match status {
                Ok(status) => Reply::Status(status),
                Err(error) => Reply::Error {
                    message: format!("status failed: {error}"),
                },
            })
        }
        Request::List => {
            walk(context, |context, desired| {
                listing(context, desired).map(Reply::Listing)
            })
            .await
        }
        Request::Connections => {
            walk(context, |context, desired| {
                connections(&context.instance, desired, context.reader.as_ref())
                    .map(Reply::Connections)
            })
            .await
        }
        Request::Change(edit) => {
            changed(
                context,
                |control| async move { control.edit(vec![edit]).await },
            )
            .await
        }
        Request::Changes { edits } => {
            changed(context, |control| async move { control.edit(edits).await }).await
        }
        Request::Config => {
            let Some(control) = context.control.get().cloned() else {
                return reply_line(&Reply::Error {
                    message: "this daemon has no config yet (it is starting)".into(),
                });
            };
            reply_line(&match control.document().await {
                Ok(document) => Reply::Config { document },
                Err(message) => Reply::Error { message },
            })
        }
        Request::Reload => changed(context, |control| async move { control.reload().await }).await,
        Request::DrainNode | Request::UndrainNode => {
            let Some(board) = context.bgp.get() else {
                return reply_line(&Reply::Error {
                    message: "this node announces nothing to drain: its config has no `bgp` key"
                        .into(),
                });
            };
            let drained = matches!(request, Request::DrainNode);
            reply_line(&match board.set_drained(drained).await {
                Ok(message) => Reply::Done { message },
                Err(message) => Reply::Error { message },
            })
        }
        Request::Dump(_) => reply_line(&Reply::Error {
            message: "a dump is answered by serve_connection".into(),
        }),
        Request::ZeroCounters { service } => {
            let answer = changed(context, |control| async move {
                control.zero_counters(service).await
            })
            .await;
            // Zeroed counters restart their rates, as IPVS's do.
            let zeroed = service.map(|named| {
                crate::reconcile::service_key_of(named.protocol, named.vip, named.port)
            });
            context.rates.forget(|key| match (key, zeroed) {
                (_, None) => true,
                (RateKey::Service(service), Some(zeroed)) => *service == zeroed,
                (RateKey::Real(real), Some(zeroed)) => real.service == zeroed,
            });
            answer
        }
    }
}

/// A change, made by the control task; the answer says what changed or why nothing did.
async fn changed<F>(context: &AdminContext, change: impl FnOnce(ControlHandle) -> F) -> String
where
    F: std::future::Future<Output = Result<String, String>>,
{
    let Some(control) = context.control.get().cloned() else {
        return reply_line(&Reply::Error {
            message: "this daemon takes no changes yet (it is starting)".into(),
        });
    };
    reply_line(&match change(control).await {
        Ok(message) => Reply::Done { message },
        Err(message) => Reply::Error { message },
    })
}

/// Runs an answer that reads the data plane's maps on a blocking thread, at most
/// [`MAX_CONCURRENT_WALKS`] at once.
async fn walk(
    context: &Arc<AdminContext>,
    answer: impl FnOnce(&AdminContext, &Desired) -> Result<Reply, DataplaneError> + Send + 'static,
) -> String {
    let Ok(_permit) = context.walks.acquire().await else {
        return reply_line(&Reply::Error {
            message: "lbd is stopping".into(),
        });
    };
    let context = context.clone();
    let walked = tokio::task::spawn_blocking(move || {
        let desired = context.desired.load_full();
        reply_line(&match answer(&context, &desired) {
            Ok(reply) => reply,
            Err(error) => Reply::Error {
                message: error.to_string(),
            },
        })
    })
    .await;
    walked.unwrap_or_else(|error| {
        reply_line(&Reply::Error {
            message: format!("listing failed: {error}"),
        })
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("admin socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("admin socket {0} is in use by a running lbd")]
    InUse(PathBuf),
}

/// Binds the admin socket, replacing a stale socket file but never one a live daemon still
/// answers on. Mode 0600 (root only); with `group`, then given to that group and opened to it
/// (0660). The file is created 0600, never with a wider mode: no one else can connect before
/// the mode is set.
pub fn bind_admin_socket(path: &Path, group: Option<u32>) -> Result<UnixListener, SocketError> {
    let error = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(error)?;
        log::warn!(
            "removed {}, an admin socket nobody answers on (left by a daemon that was killed \
             or crashed)",
            path.display()
        );
    }
    let listener = bind_owner_only(path).map_err(error)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(error)?;
    }
    listener.set_nonblocking(true).map_err(error)?;
    UnixListener::from_std(listener).map_err(error)
}

/// A listening Unix socket at `path` whose file is created with mode 0600. Linux gives a
/// socket's file the mode of the socket itself (less the umask), so the mode is set on the
/// socket before `bind`; the process's umask, which other threads share, is left alone.
fn bind_owner_only(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    };
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (unnamed) address.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= address.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a path a Unix socket can have",
        ));
    }
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, from) in address.sun_path.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    // SAFETY: socket has no memory preconditions; a non-negative result is a new descriptor,
    // owned from here on.
    let socket = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let fd = socket.as_raw_fd();
    // SAFETY: fchmod, bind and listen on a descriptor we own, with an address that lives
    // across the call and the length of its type.
    unsafe {
        if libc::fchmod(fd, 0o600) != 0
            || libc::bind(
                fd,
                (&address as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) != 0
            || libc::listen(fd, libc::SOMAXCONN) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(socket.into())
}
