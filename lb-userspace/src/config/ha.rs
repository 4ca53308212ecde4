//! The high-availability keys: `vrrp` (virtual routers shared with a peer, keepalived style)
//! and `sync` (connection sync with that peer).

use std::{net::IpAddr, path::PathBuf, time::Duration};

/// One virtual router (key `vrrp: [...]`), keepalived's `vrrp_instance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstanceConfig {
    /// Unique among the instances; hooks and `lbadm status` name the instance by it.
    pub name: String,
    /// Where adverts are sent and received and the virtual addresses are added.
    pub interface: String,
    /// 1..=255; unique per interface and address family.
    pub vrid: u8,
    /// 1..=255; 255 means this node owns the addresses (it is master whenever it runs).
    pub priority: u8,
    /// Whole centiseconds, 10 ms to 40.95 s (VRRPv3's 12-bit Max Adver Int); default 1 s.
    pub advert_interval: Duration,
    /// Default true, as keepalived's.
    pub preempt: bool,
    /// Default 0.
    pub preempt_delay: Duration,
    /// Default backup.
    pub initial_state: InitialState,
    /// Empty: multicast (224.0.0.18 or ff02::12). Otherwise adverts go to these, and only
    /// adverts from these are heard.
    pub unicast_peers: Vec<IpAddr>,
    /// Key `source_address` (keepalived's `unicast_src_ip` / `mcast_src_ip`): the address
    /// adverts come from, one of the interface's. `None`: lbd picks one (see the router).
    pub source_address: Option<IpAddr>,
    /// Non-empty, one address family (a VRRPv3 router carries one).
    pub virtual_addresses: Vec<VirtualAddress>,
    pub track_interfaces: Vec<TrackInterface>,
    /// Key `track_services: {weight: W}`: while a service on one of this router's virtual
    /// addresses has no real that can take new flows, the priority moves by `W` (negative);
    /// 0 means the router goes to FAULT instead. `None`: services do not count.
    pub track_services: Option<i32>,
    /// Key `sync_group` (keepalived's `vrrp_sync_group`): routers of one group fault
    /// together: while one is in FAULT for a reason of its own (an interface down, tracking,
    /// its interface missing), every other is too. `None`: the router is alone.
    pub sync_group: Option<String>,
    pub hooks: Hooks,
}

impl VrrpInstanceConfig {
    /// Whether the router's addresses are IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_addresses
            .first()
            .is_some_and(|address| address.address.is_ipv6())
    }
}

/// A virtual address and the prefix it is added with (`192.0.2.10/32`; without a prefix, a
/// host route's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualAddress {
    pub address: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// `track_interfaces` entry: `eth1`, or `{name: eth1, weight: -20}`. Weight 0 (the default,
/// as keepalived's): the link going down sends the router to FAULT; otherwise the priority
/// moves by the weight while it is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    pub name: String,
    pub weight: i32,
}

/// `initial_state`: where a router starts (keepalived's `state`). `master` claims the role at
/// once, as an address owner does; `backup` waits for the master down interval first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Backup,
    Master,
}

/// `hooks`: programs run on each transition, keepalived's `notify_master`, `notify_backup`,
/// `notify_fault` and `notify_stop`. Each is a command line (split on whitespace, no shell);
/// lbd appends keepalived's `notify` arguments: `INSTANCE`, the instance's name, the new
/// state (`MASTER`, `BACKUP`, `FAULT`, `STOP`) and the priority.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub on_master: Option<Vec<String>>,
    pub on_backup: Option<Vec<String>>,
    pub on_fault: Option<Vec<String>>,
    pub on_stop: Option<Vec<String>>,
}

impl Hooks {
    /// Every program named, for the start-up check that each exists.
    pub fn programs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        [
            &self.on_master,
            &self.on_backup,
            &self.on_fault,
            &self.on_stop,
        ]
        .into_iter()
        .flatten()
        .filter_map(|command| command.first().map(PathBuf::from))
    }
}

/// Key `sync`: connection sync with the VRRP peer. Each node listens on `port` and, while it
/// is not master, fetches the master's flows from `peer:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    pub peer: IpAddr,
    /// Default 8849.
    pub port: u16,
}

pub const DEFAULT_SYNC_PORT: u16 = 8849;
pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(1);
