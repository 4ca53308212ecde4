//! The daemon's side of `lbadm dump`: the filter resolved from the desired state, the capture
//! armed, one line per packet streamed back on the same connection, and the capture turned
//! off when `count` packets have gone, the client goes, the client takes no data for
//! [`WRITE_STALL`], or lbd stops.
//!
//! A dump runs on its connection's task and only waits on the capture's packets and the
//! client: the reconciler and other admin requests never wait for it.
//!
//! The client is gone when its socket hangs up (closed, or shut down both ways) or a write
//! fails; the end of what it sends only means it is done writing (`socat` once its stdin
//! ends, a script that shuts its side down), and the dump goes on.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use base64::Engine as _;
use lb_common::{FlowKey, PROTO_TCP, PROTO_UDP, Reason};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::UnixStream,
};

use super::{
    AdminContext, DumpRequest, DumpedFlow, DumpedPacket, Reply, listing::monotonic_now_ns,
};
use crate::{
    config::{Protocol, socket_text},
    dataplane::capture::{CaptureFilter, CapturedPacket},
    reconcile::{Desired, address_from_bytes},
};

/// How long a line may wait for the client to take it before the dump ends: a client that
/// stopped reading (a pager left unscrolled, a suspended lbadm) must not hold the one capture
/// lbd runs, and the program's copies, for good.
pub const WRITE_STALL: Duration = Duration::from_secs(5);
/// How often a dump whose client is done writing looks whether it hung up.
const HANG_UP_CHECK: Duration = Duration::from_secs(1);

/// Runs one dump on its connection: `from_client` is read only to notice it go.
pub async fn serve(
    request: DumpRequest,
    mut from_client: impl AsyncRead + Unpin,
    to_client: &mut (impl AsyncWrite + AsRef<UnixStream> + Unpin),
    context: &AdminContext,
) -> std::io::Result<()> {
    let (filter, what) = match resolve(&context.desired.load(), &request) {
        Ok(resolved) => resolved,
        Err(message) => return send(to_client, &Reply::Error { message }).await,
    };
    let Some(capturer) = context.capturer() else {
        let message = "this lbd has no XDP program to capture from".to_owned();
        return send(to_client, &Reply::Error { message }).await;
    };
    let mut session = match capturer.start(filter) {
        Ok(session) => session,
        Err(error) => {
            let message = error.to_string();
            return send(to_client, &Reply::Error { message }).await;
        }
    };
    log::info!("dump: capturing {what}");
    let capturing = Reply::Capturing {
        message: format!("capturing {what}"),
    };
    if !send_in_time(to_client, &capturing).await? {
        return Ok(());
    }
    let mut names = Names::new(context);
    let count = request.count.unwrap_or(u64::MAX);
    let mut captured = 0u64;
    let mut probe = [0u8; 256];
    let mut client_writes = true;
    let mut hang_up_checks = tokio::time::interval(HANG_UP_CHECK);
    let ended = loop {
        if captured >= count {
            break "";
        }
        tokio::select! {
            packet = session.next() => match packet {
                Some(packet) => {
                    let line = names.describe(&packet, context);
                    if !send_in_time(to_client, &Reply::Packet(Box::new(line))).await? {
                        return Ok(());
                    }
                    captured += 1;
                }
                None => break " (lbd is stopping)",
            },
            read = from_client.read(&mut probe), if client_writes => match read {
                // Done writing, still reading.
                Ok(0) if !hung_up(to_client.as_ref()) => client_writes = false,
                // The client went: the session's drop turns the capture off.
                Ok(0) | Err(_) => {
                    log::info!("dump: client gone after {captured} packets");
                    return Ok(());
                }
                Ok(_) => {}
            },
            _ = hang_up_checks.tick(), if !client_writes => {
                if hung_up(to_client.as_ref()) {
                    log::info!("dump: client gone after {captured} packets");
                    return Ok(());
                }
            }
        }
    };
    // Off before the last line, so a client that starts another capture on reading it is
    // never refused.
    drop(session);
    log::info!("dump: {captured} packets captured{ended}");
    let done = Reply::Done {
        message: format!("{captured} packets captured{ended}"),
    };
    send_in_time(to_client, &done).await.map(|_| ())
}

/// Whether the client closed its end of `stream`, or shut it down both ways (`POLLHUP`); a
/// client that only shut down its writing (`POLLRDHUP`) still reads.
fn hung_up(stream: &UnixStream) -> bool {
    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        // Hang-ups and errors are reported whatever is asked for.
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Sends `reply`, unless the client takes nothing for [`WRITE_STALL`]: false then (the dump
/// ends, and the session's drop turns the capture off).
async fn send_in_time(
    to_client: &mut (impl AsyncWrite + Unpin),
    reply: &Reply,
) -> std::io::Result<bool> {
    match tokio::time::timeout(WRITE_STALL, send(to_client, reply)).await {
        Ok(sent) => sent.map(|()| true),
        Err(_) => {
            log::warn!(
                "dump: the client took nothing for {} s; capture ended",
                WRITE_STALL.as_secs()
            );
            Ok(false)
        }
    }
}

async fn send(to_client: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).expect("replies always serialize");
    line.push('\n');
    to_client.write_all(line.as_bytes()).await
}

/// The ids `request` names in `desired`, and what the capture takes in words; or the error
/// line, in ipvsadm's words and naming the argument.
pub fn resolve(
    desired: &Desired,
    request: &DumpRequest,
) -> Result<(CaptureFilter, String), String> {
    let mut filter = CaptureFilter::default();
    let services: Vec<_> = match &request.service {
        Some(wanted) => {
            let service = desired
                .services
                .iter()
                .find(|service| {
                    service.config.protocol == wanted.protocol
                        && service.config.vip == wanted.vip
                        && service.config.port == wanted.port
                })
                .ok_or_else(|| {
                    format!(
                        "No such service: {} {}",
                        flag(wanted.protocol),
                        socket_text(wanted.vip, wanted.port)
                    )
                })?;
            filter.service_id = service.id;
            vec![service]
        }
        None => desired.services.iter().collect(),
    };
    let Some(wanted) = &request.real else {
        let what = match &request.service {
            Some(service) => format!("packets of {service}"),
            None => "every packet".to_owned(),
        };
        return Ok((filter, what));
    };
    let matches: Vec<_> = services
        .iter()
        .flat_map(|service| service.reals.iter().map(move |real| (*service, real)))
        .filter(|(_, real)| {
            real.config.address == wanted.address
                && wanted.port.is_none_or(|port| port == real.config.port)
        })
        .collect();
    let within = match &request.service {
        Some(service) => format!(" in {service}"),
        None => String::new(),
    };
    match matches.as_slice() {
        [] => Err(format!("No such destination: -r {wanted}{within}")),
        [(service, real)] => {
            filter.real_id = real.id;
            Ok((
                filter,
                format!(
                    "packets of {} real {}",
                    service.config.name(),
                    socket_text(real.config.address, real.config.port)
                ),
            ))
        }
        several => {
            let listed: Vec<String> = several
                .iter()
                .map(|(service, real)| {
                    format!(
                        "{} in {}",
                        socket_text(real.config.address, real.config.port),
                        service.config.name()
                    )
                })
                .collect();
            Err(format!(
                "-r {wanted} is more than one real ({}): name the service with -t or -u, and \
                 the port",
                listed.join(", ")
            ))
        }
    }
}

fn flag(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
    }
}

/// Names of interfaces, services and reals by id, from the desired state (read again when an
/// id is new to them: a change made while the dump runs), and the clock's offset.
struct Names {
    interfaces: HashMap<u32, String>,
    services: HashMap<u32, String>,
    reals: HashMap<u32, String>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds, when the dump started.
    realtime_offset_ns: i128,
}

impl Names {
    fn new(context: &AdminContext) -> Self {
        let mut names = Self {
            interfaces: HashMap::new(),
            services: HashMap::new(),
            reals: HashMap::new(),
            realtime_offset_ns: i128::from(realtime_now_ns()) - i128::from(monotonic_now_ns()),
        };
        names.read(&context.desired.load());
        names
    }

    fn read(&mut self, desired: &Desired) {
        for interface in &desired.interfaces {
            self.interfaces
                .insert(interface.index, interface.name.clone());
        }
        for service in &desired.services {
            self.services.insert(service.id, service.config.name());
            for real in &service.reals {
                self.reals
                    .insert(real.id, socket_text(real.config.address, real.config.port));
            }
        }
    }

    fn describe(&mut self, packet: &CapturedPacket, context: &AdminContext) -> DumpedPacket {
        let unknown = |id: u32, known: &HashMap<u32, String>| id != 0 && !known.contains_key(&id);
        if unknown(packet.service_id, &self.services)
            || unknown(packet.real_id, &self.reals)
            || unknown(packet.ingress_ifindex, &self.interfaces)
            || unknown(packet.egress_ifindex, &self.interfaces)
        {
            self.read(&context.desired.load());
        }
        let interface = |ifindex: u32| {
            self.interfaces
                .get(&ifindex)
                .cloned()
                .unwrap_or_else(|| format!("if{ifindex}"))
        };
        let named = |id: u32, known: &HashMap<u32, String>, what: &str| {
            (id != 0).then(|| {
                known
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("{what} #{id}"))
            })
        };
        let time_ns = (i128::from(packet.monotonic_ns) + self.realtime_offset_ns).max(0) as u64;
        DumpedPacket {
            time_ns,
            interface: interface(packet.ingress_ifindex),
            egress_interface: (packet.egress_ifindex != 0)
                .then(|| interface(packet.egress_ifindex)),
            action: action_name(packet.action).to_owned(),
            reason: Reason::from_index(packet.reason).map_or_else(
                || format!("reason {}", packet.reason),
                |r| r.name().to_owned(),
            ),
            service: named(packet.service_id, &self.services, "service"),
            real: named(packet.real_id, &self.reals, "real"),
            frame_len: packet.frame_len,
            original: packet.original.as_ref().map(flow),
            data: base64::engine::general_purpose::STANDARD.encode(&packet.data),
        }
    }
}

/// XDP's action names, as lbadm prints them.
pub fn action_name(action: u32) -> &'static str {
    match action {
        0 => "aborted",
        1 => "drop",
        2 => "pass",
        3 => "tx",
        4 => "redirect",
        _ => "unknown",
    }
}

fn flow(key: &FlowKey) -> DumpedFlow {
    let address = |bytes: &[u8; 16]| -> IpAddr { address_from_bytes(bytes, key.family) };
    DumpedFlow {
        protocol: match key.protocol {
            PROTO_TCP => "tcp".to_owned(),
            PROTO_UDP => "udp".to_owned(),
            other => other.to_string(),
        },
        source: SocketAddr::new(address(&key.src), u16::from_be(key.src_port_be)),
        destination: SocketAddr::new(address(&key.dst), u16::from_be(key.dst_port_be)),
    }
}

fn realtime_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
