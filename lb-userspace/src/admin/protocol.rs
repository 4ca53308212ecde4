//! Requests and replies on the admin socket (JSON lines).

use std::net::{IpAddr, SocketAddr};

use lb_common::{Counters, OutCounters};
use serde::{Deserialize, Serialize};

pub use crate::config::edit::{Edit, ServiceRef};

/// Longest request line the daemon reads; anything longer is refused. A restore of a full
/// table (`lbadm -R` of 65,536 reals, about 140 bytes each) fits.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Services, reals and counters (`ipvsadm -L -n --stats`). Walks the flow table.
    List,
    /// Where the program runs and how (`lbadm status`). Never touches the flow table.
    Status,
    /// Every live flow (`ipvsadm -L -n -c`). Walks the flow table.
    Connections,
    /// A change to the running config (`ipvsadm -A -E -D -a -e -d -C --set`): applied at
    /// once, kept until the next reload reads the file again.
    Change(Edit),
    /// Several changes made as one (`ipvsadm -R`): each is made on the config the ones before
    /// it left, and the result is applied only if every one of them is valid.
    Changes { edits: Vec<Edit> },
    /// The running config, as a JSON document with the file's keys (`ipvsadm -S` prints rules
    /// from it).
    Config,
    /// `ipvsadm -Z`: zero the counters of one service (and its reals), or of all.
    ZeroCounters {
        #[serde(default)]
        service: Option<ServiceRef>,
    },
    /// Read the config file again and apply it, as SIGHUP does.
    Reload,
    /// `lbadm drain-node`: withdraw every VIP of this node from BGP (scale-out), until
    /// [`Request::UndrainNode`]. Kept across restarts of lbd.
    DrainNode,
    /// `lbadm undrain-node`: announce the VIPs again (those with a healthy real).
    UndrainNode,
    /// `lbadm dump`: packets as the program handles them, with what it did to each. The
    /// daemon answers [`Reply::Capturing`] once armed, then a [`Reply::Packet`] per packet,
    /// then [`Reply::Done`] after `count` packets; closing the connection ends it sooner.
    Dump(DumpRequest),
}

/// A request line as the admin socket reads it (JSON, its newline included or not). The
/// server's one decoder: the parser fuzz target (`lb-userspace/fuzz`) calls it too.
pub fn decode_request(line: &str) -> Result<Request, serde_json::Error> {
    serde_json::from_str(line)
}

/// What `lbadm dump` captures; everything the program finishes when neither is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpRequest {
    /// Only packets counted under this service (to its reals, and its NAT replies).
    #[serde(default)]
    pub service: Option<ServiceRef>,
    /// Only packets counted under this real (of `service`, if given).
    #[serde(default)]
    pub real: Option<RealRef>,
    /// Stop after this many packets; unlimited without.
    #[serde(default)]
    pub count: Option<u64>,
}

/// A real, as `-r RIP[:PORT]` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealRef {
    pub address: IpAddr,
    /// Any port of the address when absent.
    #[serde(default)]
    pub port: Option<u16>,
}

impl std::fmt::Display for RealRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", crate::config::socket_text(self.address, port)),
            None => write!(f, "{}", self.address),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "one reply per request, written out at once: a status's size costs nothing"
)]
pub enum Reply {
    Listing(Listing),
    Status(Status),
    Connections(ConnectionListing),
    /// The running config: the file's, with the admin changes made since.
    Config {
        document: serde_json::Value,
    },
    /// A change was applied; `message` says what changed.
    Done {
        message: String,
    },
    Error {
        message: String,
    },
    /// A dump is armed; `message` says what it captures.
    Capturing {
        message: String,
    },
    /// One packet of a dump.
    Packet(Box<DumpedPacket>),
}

/// A packet as the program finished it (`lbadm dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedPacket {
    /// When the program recorded it: nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The interface it arrived on.
    pub interface: String,
    /// Where it left, if it did (`tx`: the same interface; `redirect`: another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_interface: Option<String>,
    /// `pass`, `drop`, `tx`, `redirect` (or `aborted`).
    pub action: String,
    /// The verdict reason it was counted under (`forwarded_tx`, `pass_no_service`, …).
    pub reason: String,
    /// The service it was counted under (`TCP 192.0.2.10:80`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The real it was counted under (`192.0.2.11:80`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<String>,
    /// The whole frame's length as it left the program.
    pub frame_len: u32,
    /// For packets a forwarding program rewrote (NAT, full NAT, tunnel, NAT replies): the
    /// packet's protocol, source and destination as it arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<DumpedFlow>,
    /// The frame's first bytes as it left the program (at most `snap_len`), base64.
    pub data: String,
}

/// A 5-tuple, as a dumped packet arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedFlow {
    /// `tcp`, `udp` or the protocol number.
    pub protocol: String,
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub instance: String,
    /// Size of the flow table (`limits.flows`), shown where ipvsadm shows its hash size.
    pub flow_table_size: u32,
    pub services: Vec<ServiceListing>,
    /// Packets and bytes per verdict reason, all services together.
    pub reasons: Vec<ReasonCount>,
    /// Flow timeouts in seconds (`ipvsadm -L --timeout`).
    #[serde(default)]
    pub timeouts: TimeoutListing,
}

/// `timeouts` in whole seconds, as ipvsadm shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutListing {
    pub tcp: u64,
    pub tcp_fin: u64,
    pub udp: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceListing {
    pub protocol: String,
    pub vip: IpAddr,
    pub port: u16,
    pub scheduler: String,
    /// `persistence` in seconds, if the service has it.
    #[serde(default)]
    pub persistent_s: Option<u64>,
    /// The persistence netmask as ipvsadm shows it (dotted for IPv4, a prefix length for
    /// IPv6), when it is not the whole address.
    #[serde(default)]
    pub netmask: Option<String>,
    pub forward: String,
    /// The most bytes encapsulation adds to its packets (the largest over its `tun` reals:
    /// IPIP 20 or 40, GUE 28 or 48 by the outer family); 0 without tunnelled reals.
    #[serde(default)]
    pub mtu_overhead: u32,
    /// `remove` or `inhibit`: what a failed health check does to a real.
    #[serde(default = "default_on_failure")]
    pub on_failure: String,
    pub stats: Stats,
    /// Per-second rates, estimated as IPVS does (see `admin::rates`).
    #[serde(default)]
    pub rate: Rates,
    pub reals: Vec<RealListing>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealListing {
    pub address: IpAddr,
    pub port: u16,
    pub forward: String,
    pub weight: u32,
    /// Established TCP connections on this real.
    pub active_conn: u64,
    /// Its other flows: TCP connections opening or closing, UDP flows.
    pub inactive_conn: u64,
    /// Whose MAC frames to the real carry: the real itself, or the router to it (`tun`,
    /// `nat`, `fullnat` reals off the balancer's segments).
    #[serde(default)]
    pub next_hop: Option<IpAddr>,
    /// Tunnel: the outer source address; full NAT: the local addresses its flows come from.
    #[serde(default)]
    pub sources: Vec<IpAddr>,
    /// The next hop's MAC; `None` while the neighbour table has never had an entry for it.
    pub mac: Option<String>,
    /// Takes packets of its flows (MAC known, neighbour not FAILED; later: health check).
    pub available: bool,
    /// `unresolved`, `reachable`, `probing (no new flows)` or `failed (no packets)`.
    pub neighbour: String,
    /// The health check's verdict: `None` when the service has no check.
    #[serde(default)]
    pub healthy: Option<bool>,
    pub stats: Stats,
    #[serde(default)]
    pub rate: Rates,
    /// The service's `sorry_server`, listed as a real; lbadm shows it (as ipvsadm shows
    /// keepalived's) only while it stands in for the reals.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sorry_server: bool,
    /// A sorry server taking the service's new flows now, no real being able to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standing_in: bool,
}

/// ipvsadm's `--stats` columns. In: what clients sent (to the service, to the real). Out:
/// what the balancer sent back, the NAT and full-NAT replies it translates; direct-routing
/// and tunnel replies bypass the balancer, so theirs stay 0, as in LVS-DR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl Stats {
    pub fn new(incoming: Counters, outgoing: OutCounters) -> Self {
        Self {
            conns: incoming.new_flows,
            in_packets: incoming.packets,
            in_bytes: incoming.bytes,
            out_packets: outgoing.packets,
            out_bytes: outgoing.bytes,
        }
    }
}

fn default_on_failure() -> String {
    "remove".to_owned()
}

/// ipvsadm's `--rate` columns: connections, packets and bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The daemon and where its program runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub instance: String,
    pub version: String,
    pub flow_table_size: u32,
    pub services: usize,
    pub reals: usize,
    pub interfaces: Vec<InterfaceStatus>,
    /// How full the maps whose size the config sets are.
    #[serde(default)]
    pub maps: Vec<MapFill>,
    /// Every real (sorry servers included), with its health check's last result.
    #[serde(default)]
    pub reals_health: Vec<RealStatus>,
    /// Every VRRP router of the config.
    #[serde(default)]
    pub vrrp: Vec<RouterStatus>,
    /// Connection sync with the peer, when configured.
    #[serde(default)]
    pub sync: Option<SyncStatus>,
    /// BGP announcements through BIRD, when configured.
    #[serde(default)]
    pub bgp: Option<BgpStatus>,
}

/// BGP announcements through BIRD as `lbadm status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    pub local_as: u32,
    pub router_id: String,
    /// `lbadm drain-node` is in force.
    pub drained: bool,
    pub bird_socket: String,
    /// The file lbd writes and BIRD includes.
    pub bird_config: String,
    /// Whether BIRD took the last version of the file (its `configure` succeeded); while it
    /// has not, BIRD announces what it last took, or nothing if it is down.
    pub bird_up_to_date: bool,
    /// Why BIRD has not taken it (unreachable, refused the file, …).
    pub bird_error: Option<String>,
    /// Seconds since the Unix epoch of BIRD's last successful `configure`.
    pub configured_at: Option<u64>,
    /// `configure`s that failed since lbd started.
    pub configure_failures: u64,
    pub vips: Vec<BgpVipStatus>,
    pub neighbors: Vec<BgpNeighborStatus>,
}

/// One VIP's route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpVipStatus {
    /// `192.0.2.10/32`.
    pub prefix: String,
    pub announced: bool,
    /// Why it is withdrawn (`no healthy real`, `node drained`, …).
    pub withheld: Option<String>,
}

/// One BGP session as BIRD last reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpNeighborStatus {
    pub address: String,
    pub remote_as: u32,
    /// BIRD's name for the session (`lbd_peer1`).
    pub protocol: String,
    /// `Established`, `Active`, `Connect`, … or `unknown` while BIRD does not answer.
    pub state: String,
    /// The rest of BIRD's info column (`Socket: Connection refused`).
    pub info: String,
}

/// A VRRP router as `lbadm status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
    /// What it advertises now (after track weights), and what the config says.
    pub priority: u8,
    pub configured_priority: u8,
    /// Centiseconds.
    pub advert_interval_cs: u16,
    /// Who is master: this node's address when it is, the last advert's sender otherwise.
    pub master: Option<IpAddr>,
    /// Its own address (adverts' source, and the tie-break).
    pub address: Option<IpAddr>,
    pub virtual_addresses: Vec<String>,
    /// Seconds since the Unix epoch.
    pub last_transition_at: Option<u64>,
    /// `BACKUP -> MASTER`.
    pub last_transition: Option<String>,
    pub last_reason: Option<String>,
    pub transitions: u64,
    pub adverts_sent: u64,
    /// Adverts the socket refused to send (the interface down, the source address gone).
    #[serde(default)]
    pub adverts_not_sent: u64,
    pub adverts_received: u64,
    /// Adverts ignored, by why (`ttl`, `checksum`, `unknown_peer`, …).
    pub adverts_ignored: Vec<(String, u64)>,
    /// Why it holds back from preempting, if it does (`waiting for a full sync copy`).
    pub hold: Option<String>,
    /// The sync group it faults with, if any.
    #[serde(default)]
    pub sync_group: Option<String>,
}

/// Connection sync as `lbadm status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub peer: String,
    /// `sending to PEER`, `receiving from PEER`, `connecting`, `idle`.
    pub role: String,
    /// Whether this node holds a full copy of the master's flows (a backup), or has sent one.
    pub complete: bool,
    pub flows_sent: u64,
    pub flows_received: u64,
    pub batches_sent: u64,
    pub batches_received: u64,
    pub batches_lost: u64,
    /// Flows received that this node has no flow for: their service or real is not here,
    /// or the record does not fit them (a backup; the two nodes' configs differ).
    #[serde(default)]
    pub flows_unmatched: u64,
    /// Flows received that this node's flow table had no room for (a backup: raise
    /// `limits.flows`).
    #[serde(default)]
    pub flows_not_held: u64,
    /// A backup's NAT and full-NAT flows merged without their reply entry (the master sent
    /// no way back, or this node's own flow holds the entry's key): they break on a takeover.
    #[serde(default)]
    pub flows_without_reply: u64,
    /// Changes found but not sent yet (the master), or received but not applied (a backup).
    pub pending: u64,
    /// How old the oldest change not yet applied at the peer is, in milliseconds.
    pub lag_ms: u64,
    pub last_error: Option<String>,
}

/// One map's fill level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFill {
    /// `flows`, `services` or `reals` (the `limits` key that sizes it).
    pub name: String,
    pub used: u64,
    pub capacity: u64,
}

/// A real as `lbadm status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealStatus {
    /// `TCP 192.0.2.10:80`.
    pub service: String,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sorry_server: bool,
    /// Can take new flows now (its check and neighbour permitting; its weight says how many).
    pub available: bool,
    /// `unresolved`, `reachable`, `probing (no new flows)` or `failed (no packets)`.
    pub neighbour: String,
    /// `None` when the service has no health check.
    pub check: Option<CheckStatus>,
}

/// A real's health check, as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStatus {
    pub up: bool,
    /// The last check's result, when one has finished.
    pub last: Option<LastCheck>,
    pub checks: u64,
    pub failures: u64,
    pub transitions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCheck {
    pub ok: bool,
    /// `connected`, `HTTP 200`, `connect: Connection refused`, …
    pub detail: String,
    /// When it started, in seconds since the Unix epoch.
    pub at_unix_s: u64,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub ifindex: u32,
    /// `xdp_mode` in the config: native, generic or auto.
    pub requested_mode: String,
    /// What the kernel reports after attaching: native, generic, offload, multiple; `None`
    /// if nothing is attached (or it could not be read).
    pub attached_mode: Option<String>,
    pub program_id: Option<u32>,
    pub mtu: u32,
}

/// `lbadm -L -n -c`: the flow table's live flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionListing {
    pub instance: String,
    pub connections: Vec<Connection>,
}

/// One flow, as `ipvsadm -Lnc` shows a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Seconds until the flow expires if no packet comes.
    pub expire_s: u64,
    /// `SYN_RECV`, `ESTABLISHED`, `FIN_WAIT`, `TIME_WAIT`, `CLOSE` or `UDP`.
    pub state: String,
    pub source: IpAddr,
    pub source_port: u16,
    pub virtual_address: IpAddr,
    pub virtual_port: u16,
    pub destination: IpAddr,
    pub destination_port: u16,
    /// Full NAT: the balancer's address and port the real sees the connection come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The requests README.md shows for changes over the socket, as an operator types them.
    #[test]
    fn the_readmes_change_requests_parse() {
        let service = r#"{"protocol": "tcp", "vip": "192.0.2.10", "port": 80}"#;
        let lines = [
            r#"{"request": "change", "edit": "add_service", "service": {"vip": "192.0.2.20", "port": 443, "protocol": "tcp", "scheduler": "mh"}}"#.to_owned(),
            format!(r#"{{"request": "change", "edit": "add_real", "service": {service}, "real": {{"address": "192.0.2.14", "weight": 2}}}}"#),
            format!(r#"{{"request": "change", "edit": "edit_real", "service": {service}, "address": "192.0.2.14", "port": 80, "set": {{"weight": 0}}}}"#),
            format!(r#"{{"request": "change", "edit": "edit_service", "service": {service}, "set": {{"scheduler": "wlc"}}}}"#),
            format!(r#"{{"request": "change", "edit": "delete_real", "service": {service}, "address": "192.0.2.14", "port": 80}}"#),
            format!(r#"{{"request": "change", "edit": "delete_service", "service": {service}}}"#),
            r#"{"request": "change", "edit": "set_timeouts", "set": {"tcp": "600s"}}"#.to_owned(),
            r#"{"request": "change", "edit": "clear"}"#.to_owned(),
            format!(r#"{{"request": "zero_counters", "service": {service}}}"#),
            r#"{"request": "zero_counters"}"#.to_owned(),
            r#"{"request": "reload"}"#.to_owned(),
        ];
        for line in &lines {
            let request: Request =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}"));
            // And back: lbadm's client sends what the daemon reads.
            let again: Request =
                serde_json::from_str(&serde_json::to_string(&request).unwrap()).unwrap();
            assert_eq!(again, request, "{line}");
        }
    }
}
