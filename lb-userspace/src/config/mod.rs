//! The daemon's YAML config file → a validated, typed [`Config`].
//!
//! Parsing happens in two steps, like the rest of the house: serde fills raw structs
//! (`#[serde(deny_unknown_fields)]`, every key optional) and [`Validator`] turns them into the
//! typed [`Config`], applying defaults and checking everything serde cannot: ranges, address
//! families, duplicates, map limits.
//!
//! Every error is one line, `FILE:LINE:COLUMN: KEY.PATH: what is wrong`: the source map
//! (`source_map.rs`) turns error positions into key paths and key paths into positions. Raw
//! keys are optional so that a missing key is reported by the validator with its path, rather
//! than by serde wherever the parser happened to be.
//!
//! # Layout
//!
//! - this file: the typed [`Config`] and the words of its enums (`wrr`, `dr`, …);
//! - `parse.rs`: text (or a file, or a runtime document) → a validated config;
//! - `ha.rs`: the typed `vrrp` and `sync` keys;
//! - `bgp.rs`: the typed `bgp` key;
//! - `raw.rs`: the serde structs, the file's shape;
//! - `source_map.rs`: key paths ↔ line and column;
//! - `validate/`: raw → typed, one file per section (`interfaces`, `limits`, `metrics`,
//!   `services`, `health`, `timeouts`, `vrrp`, `bgp`).

pub mod bgp;
mod duration;
pub mod edit;
pub mod ha;
mod parse;
mod raw;
mod source_map;
#[cfg(test)]
mod tests;
mod validate;

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
};

pub use duration::duration_text;
pub(crate) use parse::read_yaml;
pub use parse::{
    Document, RUNTIME_SOURCE, from_document, load, load_with_document, parse, parse_with_document,
};

/// Where the admin socket lives when the config does not say.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/lb/lbd.sock";
/// Where pid files go by default.
pub const DEFAULT_RUN_DIR: &str = "/run/lb";
/// The bpffs directory under which each instance pins its maps (`<root>/<instance>`).
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/lb";

/// Longest instance name; it becomes a path component (pin dir), so keep it short and plain.
const MAX_INSTANCE_NAME_LEN: usize = 32;
/// Linux `IFNAMSIZ` (16) minus the terminating NUL.
pub const MAX_INTERFACE_NAME_LEN: usize = 15;
/// `sizeof(sockaddr_un.sun_path)` (108) minus the terminating NUL.
const MAX_UNIX_SOCKET_PATH_LEN: usize = 107;
/// Weights are 16-bit like ipvsadm's, which keeps the ring scaling in `schedule.rs` simple.
const MAX_WEIGHT: u32 = 65535;

/// The validated configuration of one `lbd` instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[A-Za-z0-9_-]{1,32}`; names the pin directory, so several daemons can share a host.
    pub instance: String,
    /// Non-empty, unique names.
    pub interfaces: Vec<InterfaceConfig>,
    /// Key `admin: {socket: PATH}`; default [`DEFAULT_ADMIN_SOCKET`].
    pub admin_socket: PathBuf,
    /// Key `admin: {group: NAME|GID}`: the group that may use the admin socket too (mode
    /// 0660); without it only root may (0600).
    pub admin_group: Option<u32>,
    /// Key `pin_dir`; default `<DEFAULT_PIN_ROOT>/<instance>`.
    pub pin_dir: PathBuf,
    /// Key `pid_file`; default `<DEFAULT_RUN_DIR>/<instance>.pid`. Locked while lbd runs, so
    /// two daemons never drive one instance.
    pub pid_file: PathBuf,
    /// May be empty; in file order (service ids follow it).
    pub services: Vec<ServiceConfig>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// Key `metrics: {listen: ADDR:PORT}`: where `/metrics` and the status page are served;
    /// `None` (no `metrics` key): nothing listens.
    pub metrics_listen: Option<SocketAddr>,
    /// Key `vrrp`: the virtual routers shared with a peer; empty: every VIP is always served.
    pub vrrp: Vec<ha::VrrpInstanceConfig>,
    /// Key `sync`: connection sync with the VRRP peer.
    pub sync: Option<ha::SyncConfig>,
    /// Key `bgp`: VIPs announced over BGP through BIRD (scale-out).
    pub bgp: Option<bgp::BgpConfig>,
}

/// How long an idle flow lives, per state (key `timeouts`, `ipvsadm --set tcp tcpfin udp`);
/// whole seconds, at least one. IPVS's other states keep its fixed timeouts (SYN_RECV 60 s,
/// TIME_WAIT 120 s, CLOSE 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// ESTABLISHED.
    pub tcp: std::time::Duration,
    /// FIN_WAIT.
    pub tcp_fin: std::time::Duration,
    pub udp: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        use lb_common::conntrack::{
            DEFAULT_TIMEOUTS_S, STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_UDP,
        };
        let seconds = |state: u8| {
            std::time::Duration::from_secs(u64::from(DEFAULT_TIMEOUTS_S[state as usize]))
        };
        Timeouts {
            tcp: seconds(STATE_ESTABLISHED),
            tcp_fin: seconds(STATE_FIN_WAIT),
            udp: seconds(STATE_UDP),
        }
    }
}

impl Timeouts {
    /// The program's settings entry: these three, IPVS's defaults for the other states.
    pub fn settings(&self) -> lb_common::Settings {
        use lb_common::conntrack::{STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_UDP};
        let mut settings = lb_common::Settings::default();
        settings.timeouts_s[STATE_ESTABLISHED as usize] = self.tcp.as_secs() as u32;
        settings.timeouts_s[STATE_FIN_WAIT as usize] = self.tcp_fin.as_secs() as u32;
        settings.timeouts_s[STATE_UDP as usize] = self.udp.as_secs() as u32;
        settings
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceConfig {
    pub name: String,
    pub xdp_mode: XdpMode,
}

/// How the XDP program is attached (`xdp_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver; fails if the driver has no XDP support.
    Native,
    /// In the generic (skb) hook; works everywhere, slower.
    Generic,
    /// Native if the driver supports it, generic otherwise.
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub vip: IpAddr,
    /// 0 = all ports.
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    /// The service's default; each real carries its own (possibly overridden) method.
    pub forward: Forward,
    /// Key `tunnel`: how packets to the service's `tun` reals are encapsulated.
    pub tunnel: Tunnel,
    /// Key `gue_port`: the reals' UDP port for GUE (`tunnel: gue` only; default
    /// [`DEFAULT_GUE_PORT`]).
    pub gue_port: u16,
    /// Key `snat_pool`: the local addresses full-NAT reals see flows come from, all in the
    /// VIP's family, at most [`lb_common::MAX_LOCAL_SOURCES`]. Empty: each real uses the
    /// balancer's own address toward it (the route's preferred source).
    pub snat_pool: Vec<IpAddr>,
    /// Key `tunnel_source`: the outer source address of tunnelled packets, at most one per
    /// family (a `tun` real uses the one of its own family). Absent for a family: the
    /// balancer's own address toward each real.
    pub tunnel_source: Vec<IpAddr>,
    /// Key `persistence` (and `persistence_netmask`): a client sticks to its real.
    pub persistence: Option<PersistenceConfig>,
    /// Key `mh_table_size`: slots of the Maglev table (`mh` only), a prime.
    pub mh_table_size: u32,
    /// Key `health_check`: how each real is checked; `None`: reals are always up.
    pub health_check: Option<HealthCheckConfig>,
    /// Key `on_failure`: what a failed check does to a real.
    pub on_failure: OnFailure,
    /// Key `sorry_server` (`ADDR:PORT`, `[ADDR]:PORT`): takes the service's new flows while
    /// none of its reals can; forwarded by the service's method.
    pub sorry_server: Option<SorryServer>,
    pub reals: Vec<RealConfig>,
}

/// keepalived's TCP_CHECK and HTTP_GET, per service (key `health_check`). The defaults are
/// HAProxy's (`inter 2s`, `rise 2`, `fall 3`) with a 1 s timeout: a dead real is out after
/// three failed checks, about six seconds, and one lost answer does not take it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub kind: CheckKind,
    /// Key `port`: where the check connects; `None`: the real's own port.
    pub port: Option<u16>,
    /// Time between the starts of two checks of one real.
    pub interval: std::time::Duration,
    /// How long one check may take (connect, request and answer) before it fails.
    pub timeout: std::time::Duration,
    /// Consecutive successes that bring a down real back.
    pub rise: u32,
    /// Consecutive failures that take an up real out.
    pub fall: u32,
    /// Key `source`: the address checks are sent from; `None`: the kernel chooses.
    pub source: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Reals are never checked, always up. The config never yields it: `type: none` gives
    /// `health_check: None`, so that "not checked" has one spelling.
    None,
    /// A TCP connect that completes.
    Tcp,
    /// An HTTP/1.1 GET whose status is in `expect_status` (and whose body holds
    /// `expect_body`, when given).
    Http(HttpCheck),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Key `path`: starts with `/`; default `/`.
    pub path: String,
    /// Key `expect_status`: `200` or a range `200-299`; default `200-299`.
    pub expect_status: std::ops::RangeInclusive<u16>,
    /// Key `host`: the Host header; default the real's address (and port).
    pub host: Option<String>,
    /// Key `expect_body`: a substring the body must hold.
    pub expect_body: Option<String>,
}

/// What a failed health check does to a real (key `on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Out of the data plane: no new flows, and its flows go (as a removed real's do).
    #[default]
    Remove,
    /// Weight 0 (keepalived's `inhibit_on_failure`): no new flows, its flows carry on.
    Inhibit,
}

impl HealthCheckConfig {
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_FALL: u32 = 3;
}

impl HttpCheck {
    pub const DEFAULT_PATH: &'static str = "/";
    /// Any success, as HAProxy's `http-check expect` default (2xx and 3xx there; a redirect
    /// here more often means a login page than a healthy application).
    pub const DEFAULT_EXPECT_STATUS: std::ops::RangeInclusive<u16> = 200..=299;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SorryServer {
    pub address: IpAddr,
    pub port: u16,
}

/// ipvsadm `-p SECONDS -M NETMASK`: clients whose addresses agree on the first `prefix` bits
/// go to the same real, on every scheduler, until `timeout` passes with no flow of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistenceConfig {
    /// Whole seconds, at least one.
    pub timeout: std::time::Duration,
    /// 0..=32 for IPv4, 0..=128 for IPv6; the full address by default.
    pub prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Round robin, ignoring weights (except that weight 0 still drains).
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections: the fewest `active × 256 + inactive` (weight 0 still drains).
    Lc,
    /// Weighted least connections: the fewest of that per unit of weight.
    Wlc,
    /// Source hashing: the client's address picks the real, weighted.
    Sh,
    /// Maglev hashing: the 5-tuple picks the real from a consistent table, weighted.
    Mh,
}

/// How packets reach a real server (LVS's forwarding methods, plus full NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Direct routing: rewrite the destination MAC, keep the IP header (LVS-DR). The real
    /// must be on a connected segment.
    Dr,
    /// Tunnelling: the client's packet inside an outer IP header (IPIP or GUE) to the real
    /// (LVS-TUN). The real may be anywhere, and of the other family.
    Tun,
    /// Destination NAT: the destination becomes the real's address and port; the real's
    /// replies come back through the balancer, which puts the VIP back (LVS-NAT).
    Nat,
    /// Full NAT: as `nat`, and the source becomes one of the balancer's local addresses
    /// (`snat_pool`), so the replies come back through it whatever the real's routes.
    Fullnat,
}

/// How packets to `tun` reals are encapsulated (`tunnel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// IP in IP (IPv4 or IPv6 outer header; Linux's `ipip`, `ip6tnl`, `sit` decapsulate it).
    Ipip,
    /// GUE variant 1: the inner packet after a UDP header to [`ServiceConfig::gue_port`]
    /// (Linux's `fou` in `gue` mode).
    Gue,
}

/// The UDP port GUE packets go to when `gue_port` is not given (Katran's default).
pub const DEFAULT_GUE_PORT: u16 = 6080;

#[derive(Debug, Clone, PartialEq)]
pub struct RealConfig {
    pub address: IpAddr,
    /// Equal to the service port for `dr` and `tun` (checked); `nat` and `fullnat` may map
    /// it to another.
    pub port: u16,
    /// 0..=65535; 0 drains the real.
    pub weight: u32,
    pub forward: Forward,
}

/// Map sizes (key `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries of the flow table.
    pub flows: u32,
    /// Slots of the schedule tables, shared by all services (each takes twice its table's
    /// length: two halves).
    pub table_slots: u32,
    /// Slots of the service arrays; id 0 means none, so `services - 1` services fit.
    pub services: u32,
    /// Slots of the real arrays; id 0 means none, so `reals - 1` reals fit.
    pub reals: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            flows: lb_common::DEFAULT_MAX_FLOWS,
            table_slots: lb_common::DEFAULT_TABLE_SLOTS,
            services: lb_common::DEFAULT_MAX_SERVICES,
            reals: lb_common::DEFAULT_MAX_REALS,
        }
    }
}

/// A word (`wrr`, `tun`, …) that names none of the variants of a config enum. Shared by the
/// config and the CLI, so both explain the same way what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The word is in SPEC.md, but this version does not implement it.
    #[error("{kind} `{name}` is not supported yet (this version has {supported})")]
    NotSupportedYet {
        kind: &'static str,
        name: String,
        supported: String,
    },
    #[error("unknown {kind} {name:?} (expected one of {supported})")]
    Unknown {
        kind: &'static str,
        name: String,
        supported: String,
    },
}

/// Looks `word` up among `all` by [`name`]; `planned` are the SPEC.md words not implemented yet.
fn parse_name<T: Copy>(
    kind: &'static str,
    word: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    planned: &[&str],
) -> Result<T, NameError> {
    if let Some(found) = all
        .iter()
        .copied()
        .find(|candidate| name(*candidate) == word)
    {
        return Ok(found);
    }
    let supported = all
        .iter()
        .map(|candidate| name(*candidate))
        .collect::<Vec<_>>()
        .join(", ");
    if planned.contains(&word) {
        Err(NameError::NotSupportedYet {
            kind,
            name: word.to_owned(),
            supported,
        })
    } else {
        Err(NameError::Unknown {
            kind,
            name: word.to_owned(),
            supported,
        })
    }
}

impl XdpMode {
    pub const ALL: [XdpMode; 3] = [XdpMode::Native, XdpMode::Generic, XdpMode::Auto];

    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        }
    }
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl Scheduler {
    pub const ALL: [Scheduler; 6] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Sh,
        Scheduler::Mh,
    ];
    /// In SPEC.md, not implemented yet.
    const PLANNED: [&str; 0] = [];

    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sh => "sh",
            Scheduler::Mh => "mh",
        }
    }

    /// The program's code for it (`SCHED_*`).
    pub fn code(self) -> u8 {
        match self {
            Scheduler::Rr | Scheduler::Wrr => lb_common::SCHED_RING,
            Scheduler::Lc => lb_common::SCHED_LEAST_CONN,
            Scheduler::Wlc => lb_common::SCHED_WEIGHTED_LEAST_CONN,
            Scheduler::Sh => lb_common::SCHED_SOURCE_HASH,
            Scheduler::Mh => lb_common::SCHED_MAGLEV,
        }
    }
}

impl Forward {
    pub const ALL: [Forward; 4] = [Forward::Dr, Forward::Tun, Forward::Nat, Forward::Fullnat];
    /// In SPEC.md, not implemented yet.
    const PLANNED: [&str; 0] = [];

    pub fn name(self) -> &'static str {
        match self {
            Forward::Dr => "dr",
            Forward::Tun => "tun",
            Forward::Nat => "nat",
            Forward::Fullnat => "fullnat",
        }
    }

    /// The program's code for it (`FORWARD_*`).
    pub fn code(self) -> u8 {
        match self {
            Forward::Dr => lb_common::FORWARD_DR,
            Forward::Tun => lb_common::FORWARD_TUN,
            Forward::Nat => lb_common::FORWARD_NAT,
            Forward::Fullnat => lb_common::FORWARD_FULLNAT,
        }
    }

    /// Whether a real may listen on another port than the service: only when the balancer
    /// rewrites the transport header, which direct routing and tunnelling never do.
    pub fn can_change_port(self) -> bool {
        matches!(self, Forward::Nat | Forward::Fullnat)
    }

    /// Whether the client's packet reaches the real with its own IP header, so that the real
    /// must be in the VIP's family. Only a tunnel wraps it (4in6, 6in4).
    pub fn keeps_family(self) -> bool {
        self != Forward::Tun
    }

    /// Whether the real's replies come back through the balancer to be translated.
    pub fn translates_replies(self) -> bool {
        matches!(self, Forward::Nat | Forward::Fullnat)
    }

    /// Whether the real needs only a MAC rewrite, and so a connected segment.
    pub fn needs_connected_real(self) -> bool {
        self == Forward::Dr
    }
}

impl OnFailure {
    pub const ALL: [OnFailure; 2] = [OnFailure::Remove, OnFailure::Inhibit];

    pub fn name(self) -> &'static str {
        match self {
            OnFailure::Remove => "remove",
            OnFailure::Inhibit => "inhibit",
        }
    }
}

impl Tunnel {
    pub const ALL: [Tunnel; 2] = [Tunnel::Ipip, Tunnel::Gue];

    pub fn name(self) -> &'static str {
        match self {
            Tunnel::Ipip => "ipip",
            Tunnel::Gue => "gue",
        }
    }

    /// The program's code for it (`TUNNEL_*`).
    pub fn code(self) -> u8 {
        match self {
            Tunnel::Ipip => lb_common::TUNNEL_IPIP,
            Tunnel::Gue => lb_common::TUNNEL_GUE,
        }
    }

    /// Bytes the encapsulation adds in front of the client's packet, for an outer header of
    /// `outer`'s family: an IPv4 (20) or IPv6 (40) header, and for GUE a UDP header (8).
    pub fn overhead(self, outer: IpAddr) -> u32 {
        let ip = if outer.is_ipv4() { 20 } else { 40 };
        match self {
            Tunnel::Ipip => ip,
            Tunnel::Gue => ip + 8,
        }
    }
}

impl FromStr for XdpMode {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name("XDP mode", word, &XdpMode::ALL, XdpMode::name, &[])
    }
}

impl FromStr for Protocol {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name("protocol", word, &Protocol::ALL, Protocol::name, &[])
    }
}

impl FromStr for Scheduler {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name(
            "scheduler",
            word,
            &Scheduler::ALL,
            Scheduler::name,
            &Scheduler::PLANNED,
        )
    }
}

impl FromStr for Tunnel {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name("tunnel", word, &Tunnel::ALL, Tunnel::name, &[])
    }
}

impl FromStr for OnFailure {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name(
            "on_failure action",
            word,
            &OnFailure::ALL,
            OnFailure::name,
            &[],
        )
    }
}

impl FromStr for Forward {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name(
            "forwarding method",
            word,
            &Forward::ALL,
            Forward::name,
            &Forward::PLANNED,
        )
    }
}

macro_rules! display_by_name {
    ($($name_type:ty),*) => {$(
        impl fmt::Display for $name_type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}
display_by_name!(XdpMode, Protocol, Scheduler, Forward, Tunnel, OnFailure);

/// Line and column in the config text, both 1-based; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    fn from_yaml(location: serde_saphyr::Location) -> Option<Position> {
        // serde-saphyr marks an unknown location as line 0.
        (location.line() != 0).then(|| Position {
            line: location.line(),
            column: location.column(),
        })
    }
}

/// The file (as named by the caller) and, when known, the position an error points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub position: Option<Position>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(Position { line, column }) => write!(f, "{}:{line}:{column}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// Why a config was rejected. Each displays as one line naming the file, the position when
/// known, and the key path (`services[0].reals[1].address`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a single well-formed YAML document.
    #[error("{location}: invalid YAML: {message}")]
    Syntax { location: Location, message: String },
    /// Well-formed YAML that is not a valid config: unknown or missing key, wrong type or
    /// value, or keys that contradict each other. `key` is empty for the document itself.
    #[error("{location}: {}{message}", key_prefix(.key))]
    Invalid {
        location: Location,
        key: String,
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// True if `name` is accepted by the kernel as a network interface name (`dev_valid_name`).
pub fn is_valid_interface_name(name: &str) -> bool {
    (1..=MAX_INTERFACE_NAME_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

fn is_valid_instance_name(name: &str) -> bool {
    (1..=MAX_INSTANCE_NAME_LEN).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A persistence netmask as ipvsadm writes it (`mask` in `-L`, `-M` in `-S`): dotted for
/// IPv4, the prefix length for IPv6; `None` for the whole address (ipvsadm then writes none).
pub fn netmask_text(vip: IpAddr, prefix: u8) -> Option<String> {
    match vip {
        IpAddr::V4(_) if prefix < 32 => Some(
            std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
                .to_string(),
        ),
        IpAddr::V6(_) if prefix < 128 => Some(prefix.to_string()),
        _ => None,
    }
}

/// `192.0.2.10:80`, `[2001:db8::1]:80`: an address and port as ipvsadm prints them.
pub fn socket_text(addr: IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

impl ServiceConfig {
    /// `TCP 192.0.2.10:80`, as ipvsadm names a service; every message about a service uses it.
    pub fn name(&self) -> String {
        format!(
            "{} {}",
            self.protocol.name().to_uppercase(),
            socket_text(self.vip, self.port)
        )
    }

    /// The most bytes encapsulation adds to a packet of this service: the largest
    /// [`Tunnel::overhead`] over its `tun` reals (the outer header is in the real's family);
    /// 0 without any. A client packet within this much of a link's MTU no longer fits it
    /// tunnelled.
    pub fn mtu_overhead(&self) -> u32 {
        self.reals
            .iter()
            .filter(|real| real.forward == Forward::Tun)
            .map(|real| self.tunnel.overhead(real.address))
            .max()
            .unwrap_or(0)
    }
}
