//! The admin socket: what lbadm may ask the daemon, and the daemon's answers.
//!
//! One JSON object per line each way, one request per connection. The socket is created with
//! mode 0600: whoever can use it controls the data plane.

use std::{
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use lb_common::{Counters, PROTO_TCP};
use serde::{Deserialize, Serialize};

use crate::{
    dataplane::{Dataplane, DataplaneError},
    state::State,
};

/// Longest request line the daemon reads; anything longer is refused.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// A flow counts as a connection while seen within its protocol's timeout (LVS's defaults,
/// `ipvsadm --set 900 120 300`, until the `timeouts` key arrives).
const TCP_FLOW_TIMEOUT: Duration = Duration::from_secs(900);
const UDP_FLOW_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Services, reals and counters (`ipvsadm -L -n --stats`).
    List,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Listing(Listing),
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub instance: String,
    /// Size of the flow table (`limits.flows`), shown where ipvsadm shows its hash size.
    pub flow_table_size: u32,
    pub services: Vec<ServiceListing>,
    /// Packets and bytes per verdict reason, all services together.
    pub reasons: Vec<ReasonCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceListing {
    pub protocol: String,
    pub vip: IpAddr,
    pub port: u16,
    pub scheduler: String,
    pub forward: String,
    pub stats: Stats,
    pub reals: Vec<RealListing>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealListing {
    pub address: IpAddr,
    pub port: u16,
    pub forward: String,
    pub weight: u32,
    /// Flows on this real seen within their protocol's timeout.
    pub active_conn: u64,
    /// Always 0 until TCP state tracking tells established from closing flows.
    pub inactive_conn: u64,
    /// `None` while the neighbour table has no entry for the real.
    pub mac: Option<String>,
    /// Takes packets (MAC known; later: health check passing).
    pub available: bool,
    pub stats: Stats,
}

/// ipvsadm's `--stats` columns. With direct routing replies bypass the balancer, so the
/// `out_*` counters stay 0, as they do in LVS-DR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl From<Counters> for Stats {
    fn from(counters: Counters) -> Self {
        Self {
            conns: counters.new_flows,
            in_packets: counters.packets,
            in_bytes: counters.bytes,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The daemon's answer to `request`.
pub fn handle(
    request: &Request,
    instance: &str,
    flow_table_size: u32,
    state: &State,
    dataplane: &dyn Dataplane,
) -> Reply {
    match request {
        Request::List => match listing(instance, flow_table_size, state, dataplane) {
            Ok(listing) => Reply::Listing(listing),
            Err(error) => Reply::Error {
                message: error.to_string(),
            },
        },
    }
}

fn listing(
    instance: &str,
    flow_table_size: u32,
    state: &State,
    dataplane: &dyn Dataplane,
) -> Result<Listing, DataplaneError> {
    let active = active_flows_per_real(dataplane)?;
    let mut services = Vec::with_capacity(state.services.len());
    for service in &state.services {
        let mut reals = Vec::with_capacity(service.reals.len());
        for real in &service.reals {
            reals.push(RealListing {
                address: real.config.address,
                port: real.config.port,
                forward: real.config.forward.name().to_owned(),
                weight: real.config.weight,
                active_conn: active.get(real.id as usize).copied().unwrap_or(0),
                inactive_conn: 0,
                mac: real.mac.map(|mac| format_mac(&mac)),
                available: real.available(),
                stats: dataplane.real_counters(real.id)?.into(),
            });
        }
        services.push(ServiceListing {
            protocol: service.config.protocol.name().to_owned(),
            vip: service.config.vip,
            port: service.config.port,
            scheduler: service.config.scheduler.name().to_owned(),
            forward: service.config.forward.name().to_owned(),
            stats: dataplane.service_counters(service.id)?.into(),
            reals,
        });
    }
    let reasons = dataplane
        .reason_counters()?
        .into_iter()
        .map(|(reason, counters)| ReasonCount {
            reason: reason.name().to_owned(),
            packets: counters.packets,
            bytes: counters.bytes,
        })
        .collect();
    Ok(Listing {
        instance: instance.to_owned(),
        flow_table_size,
        services,
        reasons,
    })
}

/// Live flows per real id (index = id).
fn active_flows_per_real(dataplane: &dyn Dataplane) -> Result<Vec<u64>, DataplaneError> {
    let now = monotonic_now_ns();
    let mut counts: Vec<u64> = Vec::new();
    dataplane.for_each_flow(&mut |key, flow| {
        let timeout = if key.protocol == PROTO_TCP {
            TCP_FLOW_TIMEOUT
        } else {
            UDP_FLOW_TIMEOUT
        };
        if now.saturating_sub(flow.last_seen_ns) <= timeout.as_nanos() as u64 {
            let id = flow.real_id as usize;
            if counts.len() <= id {
                counts.resize(id + 1, 0);
            }
            counts[id] += 1;
        }
    })?;
    Ok(counts)
}

/// The clock of `bpf_ktime_get_ns()`, which `Flow::last_seen_ns` is read against.
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach lbd at {path}: {source} (is lbd running? is --socket right?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to lbd at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lbd at {path} sent a reply this lbadm does not understand: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("lbd: {0}")]
    Daemon(String),
}

/// Sends one request to the daemon at `socket` and waits (bounded) for its reply.
pub fn request(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    let io_error = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_error)?;
    let mut line = serde_json::to_string(request).expect("requests always serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_error)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(io_error)?;
    let reply: Reply = serde_json::from_str(&reply).map_err(|source| ClientError::Decode {
        path: socket.to_path_buf(),
        source,
    })?;
    match reply {
        Reply::Error { message } => Err(ClientError::Daemon(message)),
        reply => Ok(reply),
    }
}
