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
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
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
    let mut names = Names::new(&context.desired);
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
                // Recorded by a program run that read the capture's entry as it changed (lbd
                // writes it whole, the program may read it half-way): under another filter.
                Some(packet) if !takes(filter, &packet) => {}
                Some(packet) => {
                    let line = names.describe(&packet, &context.desired);
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

/// Whether `filter` takes a packet the program recorded.
fn takes(filter: CaptureFilter, packet: &CapturedPacket) -> bool {
    (filter.service_id == 0 || filter.service_id == packet.service_id)
        && (filter.real_id == 0 || filter.real_id == packet.real_id)
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
                .find(|service| wanted.names(&service.config))
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

/// Names of interfaces, services and reals by id, from the desired state, and the clock's
/// offset. An id they do not know is looked for again once a newer snapshot is published (a
/// change made while the dump runs), never again in the same one.
struct Names {
    interfaces: HashMap<u32, String>,
    services: HashMap<u32, String>,
    reals: HashMap<u32, String>,
    /// The snapshot last read.
    read_from: Arc<Desired>,
    /// How many snapshots were read.
    reads: usize,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds, when the dump started.
    realtime_offset_ns: i128,
}

impl Names {
    fn new(desired: &ArcSwap<Desired>) -> Self {
        let snapshot = desired.load_full();
        let mut names = Self {
            interfaces: HashMap::new(),
            services: HashMap::new(),
            reals: HashMap::new(),
            read_from: snapshot.clone(),
            reads: 0,
            realtime_offset_ns: i128::from(realtime_now_ns()) - i128::from(monotonic_now_ns()),
        };
        names.read(snapshot);
        names
    }

    fn read(&mut self, desired: Arc<Desired>) {
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
        self.read_from = desired;
        self.reads += 1;
    }

    fn describe(&mut self, packet: &CapturedPacket, desired: &ArcSwap<Desired>) -> DumpedPacket {
        let unknown = |id: u32, known: &HashMap<u32, String>| id != 0 && !known.contains_key(&id);
        if unknown(packet.service_id, &self.services)
            || unknown(packet.real_id, &self.reals)
            || unknown(packet.ingress_ifindex, &self.interfaces)
            || unknown(packet.egress_ifindex, &self.interfaces)
        {
            let published = desired.load();
            if !Arc::ptr_eq(&published, &self.read_from) {
                self.read(arc_swap::Guard::into_inner(published));
            }
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::neighbour::{InterfaceInfo, Routes};

    const ONE_SERVICE: &str = "
instance: names
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}
";

    fn desired(text: &str) -> Arc<Desired> {
        let config = crate::config::parse(text, "names.yaml").unwrap();
        let eth0 = InterfaceInfo {
            name: "eth0".into(),
            index: 3,
            mac: [2, 0, 0, 0, 0, 2],
            prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
            mtu: 1500,
            vlan: None,
            egress: 3,
        };
        Arc::new(Desired::new(&config, vec![eth0], &Routes::new()).unwrap())
    }

    fn packet_of(service_id: u32) -> CapturedPacket {
        CapturedPacket {
            action: 3,
            reason: Reason::ForwardedTx.index(),
            service_id,
            real_id: 0,
            ingress_ifindex: 3,
            egress_ifindex: 3,
            frame_len: 0,
            monotonic_ns: 0,
            original: None,
            data: Vec::new(),
        }
    }

    #[test]
    fn an_unknown_id_is_looked_for_once_per_published_snapshot() {
        let published = ArcSwap::new(desired(ONE_SERVICE));
        let mut names = Names::new(&published);
        let udp = packet_of(2);
        for _ in 0..3 {
            let line = names.describe(&udp, &published);
            assert_eq!(line.service.as_deref(), Some("service #2"));
        }
        assert_eq!(names.reads, 1, "read once, at the start");

        // A change publishes a snapshot that names it.
        let two = format!(
            "{ONE_SERVICE}  - {{vip: 192.0.2.100, port: 53, protocol: udp, reals: [{{address: \
             192.0.2.11}}]}}\n"
        );
        published.store(desired(&two));
        for _ in 0..3 {
            let line = names.describe(&udp, &published);
            assert_eq!(line.service.as_deref(), Some("UDP 192.0.2.100:53"));
        }
        assert_eq!(names.reads, 2);
    }

    #[test]
    fn a_filter_takes_the_packets_of_its_service_and_real() {
        let mut packet = packet_of(1);
        packet.real_id = 2;
        let filter = |service_id, real_id| CaptureFilter {
            service_id,
            real_id,
        };
        for (service_id, real_id, taken) in [
            (0, 0, true),
            (1, 0, true),
            (1, 2, true),
            (0, 2, true),
            (2, 0, false),
            (1, 3, false),
            (0, 3, false),
        ] {
            assert_eq!(
                takes(filter(service_id, real_id), &packet),
                taken,
                "{service_id} {real_id}"
            );
        }
    }
}
