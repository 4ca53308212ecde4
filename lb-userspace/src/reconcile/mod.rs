//! Desired state → map writes: what the data plane must hold, and the one task that writes it.
//!
//! [`Desired`] joins the config with what the host tells us (each real's interface and next
//! hop, the next hop's MAC and neighbour state, the balancer's own address toward the real)
//! and owns the id allocation. [`Reconciler`] owns a `Desired` and the
//! [`Dataplane`] writer; it alone writes the maps, on a thread of its own, fed by a channel
//! ([`Input`]: neighbour observations today; reloads, health and admin edits later). After
//! each change it publishes a snapshot of the `Desired` for readers (admin, metrics), who
//! never wait for it.
//!
//! # Layout
//!
//! - this file: the types, and how neighbour observations change a real;
//! - `ids.rs`: id allocation, and adopting the ids a previous daemon left in pinned maps;
//! - `apply.rs`: the writes, in an order that never shows the program a half-made state;
//! - `reconciler.rs`: the writer task.

mod apply;
mod change;
mod ids;
mod reconciler;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

pub use apply::sorry_in_use;
pub use change::{HealthChange, health_key_of};
pub use ids::Existing;
use lb_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP, ServiceKey};
pub use reconciler::{Input, Reconciler, Replacement};

use crate::{
    config::{Config, Forward, Limits, OnFailure, Protocol, RealConfig, ServiceConfig, Timeouts},
    dataplane::DataplaneError,
    neighbour::{
        InterfaceInfo, NeighbourStatus, Observation, Routes, interface_for, prefix_contains,
    },
    schedule::ScheduleError,
};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(
        "real {real} of {service} is not on a subnet of any XDP interface or VLAN on one \
         ({interfaces}): direct routing needs the real on the same L2 segment"
    )]
    RealNotConnected {
        service: String,
        real: IpAddr,
        interfaces: String,
    },
    #[error(
        "real {real} of {service} ({forward}) is not on a subnet of any XDP interface or VLAN \
         on one ({interfaces}), and no route to it is known"
    )]
    RealUnroutable {
        service: String,
        real: IpAddr,
        forward: Forward,
        interfaces: String,
    },
    #[error(
        "real {real} of {service} ({forward}): the route to it ({route}) leaves through \
         {interface}, which is not an XDP interface or a VLAN on one ({interfaces}); the \
         program can only send out of those"
    )]
    RouteNotXdp {
        service: String,
        real: IpAddr,
        forward: Forward,
        route: String,
        interface: String,
        interfaces: String,
    },
    #[error(
        "real {real} of {service} ({forward}): no {family} {what} (the balancer has no {family} \
         address toward it, other than a VIP or, toward a routed real, a link-local one); set \
         {key}"
    )]
    NoLocalAddress {
        service: String,
        real: IpAddr,
        forward: Forward,
        family: &'static str,
        what: &'static str,
        key: &'static str,
    },
    #[error("{service}: {source}")]
    Schedule {
        service: String,
        source: ScheduleError,
    },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

/// What the kernel's neighbour table last said about a real that has a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Usable entry (or none seen yet, with the MAC a previous daemon left).
    Reachable,
    /// INCOMPLETE: the kernel is asking again (after the entry was deleted, or FAILED). The
    /// real takes no new flows; its flows stay, as a live real's entry can be recreated
    /// (flush, link flap, garbage collection) and answered within milliseconds.
    Probing,
    /// FAILED: nobody answers. The real takes no packets: its flows are rescheduled, as for a
    /// removed real.
    Failed,
}

/// A real as the control plane knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredReal {
    pub id: u32,
    pub config: RealConfig,
    /// The L2 interface the real is reached through (an attached one or a VLAN on one).
    pub ifindex: u32,
    /// Whose MAC frames to the real carry: the real itself on a connected segment, else the
    /// gateway of the kernel's route to it. Reals behind one router share its neighbour
    /// entry, and so its MAC and reachability.
    pub next_hop: IpAddr,
    /// The balancer's own address toward the real (the route's preferred source, or the
    /// interface's address): the default of `sources`. `None` for `dr` reals, which need
    /// none.
    pub local: Option<IpAddr>,
    /// Tunnel: the outer source address (one). Full NAT: the local addresses its flows come
    /// from (`snat_pool`, or `local`). Empty for the other methods.
    pub sources: Vec<IpAddr>,
    /// The next hop's MAC, from the neighbour table; `None` until first resolved. A real
    /// whose entry goes away keeps its last MAC.
    pub mac: Option<[u8; 6]>,
    pub reachability: Reachability,
    /// What the service's health check says (always true without one).
    pub healthy: bool,
    /// What a failed health check does to it (the service's `on_failure`).
    pub on_failure: OnFailure,
    /// The service's `sorry_server`: scheduled only while no real of the service can take
    /// new flows.
    pub sorry: bool,
}

impl DesiredReal {
    /// May it receive packets (of its flows)? Not once its neighbour entry FAILED, nor after
    /// a failed health check that removes it; an inhibited real keeps its flows.
    pub fn available(&self) -> bool {
        let health_allows = self.healthy || self.on_failure == OnFailure::Inhibit;
        self.mac.is_some() && self.reachability != Reachability::Failed && health_allows
    }

    /// May it be given new flows (if its weight allows)?
    pub fn schedulable(&self) -> bool {
        self.available() && self.reachability == Reachability::Reachable && self.healthy
    }

    /// Takes in what the neighbour table says about the real's next hop.
    fn observe(&mut self, state: NeighbourStatus) {
        match state {
            NeighbourStatus::Usable { mac, .. } => {
                self.mac = Some(mac);
                self.reachability = Reachability::Reachable;
            }
            // Nothing known yet to be lost.
            NeighbourStatus::Incomplete if self.mac.is_none() => {}
            // Probing after FAILED is still failed until something answers.
            NeighbourStatus::Incomplete => {
                if self.reachability == Reachability::Reachable {
                    self.reachability = Reachability::Probing;
                }
            }
            NeighbourStatus::Failed => self.reachability = Reachability::Failed,
            // An entry deleted or emptied says nothing about the real: the kernel forgets idle
            // entries. It keeps its MAC and state.
            NeighbourStatus::Unknown => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredService {
    pub id: u32,
    pub key: ServiceKey,
    pub config: ServiceConfig,
    pub reals: Vec<DesiredReal>,
}

/// Everything the data plane must hold for one config.
#[derive(Debug, Clone)]
pub struct Desired {
    pub services: Vec<DesiredService>,
    /// The interfaces the program runs on, then the VLAN interfaces on them.
    pub interfaces: Vec<InterfaceInfo>,
    /// Ids stay below these (the id-indexed maps' sizes).
    limits: Limits,
    /// Flow timeouts, written to the program's settings.
    pub timeouts: Timeouts,
    /// VIPs of VRRP routers that are not master here: their services are written whole but
    /// hidden from the program (see [`crate::dataplane::Dataplane::hide_service`]), so this
    /// node forwards none of their packets. A node starts with every router's VIPs here.
    pub standby: BTreeSet<IpAddr>,
    /// Done once, by the next full apply: entries a previous daemon left that this config no
    /// longer has, and ids that need preparing for a new meaning.
    pending: ids::Pending,
}

/// What a change touched: the real entries and the schedules to rewrite.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// (service id, real id) of entries to publish.
    pub reals: BTreeSet<(u32, u32)>,
    /// Services whose schedule changed.
    pub rings: BTreeSet<u32>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.reals.is_empty() && self.rings.is_empty()
    }

    pub fn merge(&mut self, other: Dirty) {
        self.reals.extend(other.reals);
        self.rings.extend(other.rings);
    }
}

impl Desired {
    /// Places every real on an interface and gives ids as to an empty data plane: in config
    /// order, from 1.
    ///
    /// A `dr` real must be on a connected segment of `interfaces`. The others may also be
    /// reached through a router: `routes` holds the kernel's route to each of them (the
    /// caller looks them up; see `neighbour::Neighbours::route`). A real on a connected
    /// segment is its own next hop; one elsewhere has its route's gateway, and the route
    /// must leave through one of `interfaces`. Tunnel and full-NAT reals take their default
    /// local address from the route's preferred source, else from the interface's own
    /// addresses. With `routes` empty, only connected reals can be placed.
    pub fn new(
        config: &Config,
        interfaces: Vec<InterfaceInfo>,
        routes: &Routes,
    ) -> Result<Self, ReconcileError> {
        let mut services = Vec::with_capacity(config.services.len());
        let vips: Vec<IpAddr> = config.services.iter().map(|service| service.vip).collect();
        for service in &config.services {
            let mut reals = Vec::with_capacity(service.reals.len());
            let sorry = service.sorry_server.map(|sorry| RealConfig {
                address: sorry.address,
                port: sorry.port,
                weight: 1,
                forward: service.forward,
            });
            let members = service.reals.iter().map(|real| (real, false));
            for (real, is_sorry) in members.chain(sorry.as_ref().map(|real| (real, true))) {
                let placement = place(service, real, &interfaces, routes, &vips)?;
                reals.push(DesiredReal {
                    id: 0,
                    config: real.clone(),
                    ifindex: placement.ifindex,
                    next_hop: placement.next_hop,
                    sources: sources(service, real, placement.local)?,
                    local: placement.local,
                    mac: None,
                    reachability: Reachability::Reachable,
                    healthy: true,
                    on_failure: service.on_failure,
                    sorry: is_sorry,
                });
            }
            services.push(DesiredService {
                id: 0,
                key: service_key(service),
                config: service.clone(),
                reals,
            });
        }
        let mut desired = Self {
            services,
            interfaces,
            limits: config.limits,
            timeouts: config.timeouts,
            standby: config
                .vrrp
                .iter()
                .flat_map(|router| &router.virtual_addresses)
                .map(|virtual_address| virtual_address.address)
                .collect(),
            pending: ids::Pending::default(),
        };
        desired.adopt(&Existing::default());
        Ok(desired)
    }

    /// Whether the program is to forward the service's packets: not while its VIP is on
    /// standby.
    pub fn serves(&self, service: &DesiredService) -> bool {
        !self.standby.contains(&service.config.vip)
    }

    /// Records what the neighbour table says about an address; returns what must be
    /// rewritten. A MAC change rewrites only the entries of the reals behind it; a change of
    /// whether a real may take new flows rewrites its service's schedule too.
    pub fn observe(&mut self, observation: &Observation) -> Dirty {
        self.observe_all(std::slice::from_ref(observation))
    }

    /// [`Desired::observe`] for many observations (a table dump's worth), in one pass over the
    /// reals; each real takes the observations about its next hop in their order.
    pub fn observe_all(&mut self, observations: &[Observation]) -> Dirty {
        let mut by_address: HashMap<(u32, IpAddr), Vec<NeighbourStatus>> = HashMap::new();
        for observation in observations {
            by_address
                .entry((observation.ifindex, observation.addr))
                .or_default()
                .push(observation.state);
        }
        let mut dirty = Dirty::default();
        for service in &mut self.services {
            for real in &mut service.reals {
                let Some(states) = by_address.get(&(real.ifindex, real.next_hop)) else {
                    continue;
                };
                let before = real.clone();
                for &state in states {
                    real.observe(state);
                }
                if *real == before {
                    continue;
                }
                dirty.reals.insert((service.id, real.id));
                if real.schedulable() != before.schedulable() {
                    dirty.rings.insert(service.id);
                }
            }
        }
        dirty
    }

    /// Records usable entries for these addresses on `ifindex`, as a table dump would.
    pub fn set_neighbours(&mut self, ifindex: u32, macs: &HashMap<IpAddr, [u8; 6]>) -> Dirty {
        let observations: Vec<Observation> = macs
            .iter()
            .map(|(&addr, &mac)| Observation {
                ifindex,
                addr,
                state: NeighbourStatus::Usable { mac, stale: false },
            })
            .collect();
        self.observe_all(&observations)
    }

    /// Next hops of reals the kernel has no usable entry for: (ifindex, address), without
    /// duplicates. These are asked for again and again until they answer.
    pub fn unresolved(&self) -> Vec<(u32, IpAddr)> {
        self.next_hops_of(|real| real.mac.is_none() || real.reachability != Reachability::Reachable)
    }

    /// Every (ifindex, next hop) of a real: the neighbour entries lbd follows.
    pub fn next_hops(&self) -> Vec<(u32, IpAddr)> {
        self.next_hops_of(|_| true)
    }

    /// Whether some real's next hop is (ifindex, address).
    pub fn has_next_hop(&self, ifindex: u32, addr: IpAddr) -> bool {
        self.services
            .iter()
            .flat_map(|service| &service.reals)
            .any(|real| real.ifindex == ifindex && real.next_hop == addr)
    }

    /// (ifindex, next hop) of the reals `wanted` keeps, each once: an address may serve
    /// several services, and a router many reals.
    fn next_hops_of(&self, wanted: impl Fn(&DesiredReal) -> bool) -> Vec<(u32, IpAddr)> {
        let mut addresses: Vec<(u32, IpAddr)> = self
            .services
            .iter()
            .flat_map(|service| &service.reals)
            .filter(|real| wanted(real))
            .map(|real| (real.ifindex, real.next_hop))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// The program's settings: the flow timeouts, whether replies may need translating (some
    /// real is `nat` or `fullnat`), and whether any service is an all-ports one.
    pub fn settings(&self) -> lb_common::Settings {
        let mut settings = self.timeouts.settings();
        // Written before the services (see `apply`): a new all-ports service is looked for
        // from the moment it is there.
        if self.services.iter().all(|service| service.config.port != 0) {
            settings.flags |= lb_common::conntrack::SETTINGS_NO_ALL_PORTS_SERVICE;
        }
        let translates = self
            .services
            .iter()
            .flat_map(|service| &service.reals)
            .any(|real| real.config.forward.translates_replies());
        if translates {
            settings.flags |= lb_common::conntrack::SETTINGS_TRANSLATES_REPLIES;
        }
        settings
    }
}

/// Where a real is reached: interface, next hop, and the balancer's own address toward it.
struct Placement {
    ifindex: u32,
    next_hop: IpAddr,
    local: Option<IpAddr>,
}

/// Places a real by [`Desired::new`]'s rules.
fn place(
    service: &ServiceConfig,
    real: &RealConfig,
    interfaces: &[InterfaceInfo],
    routes: &Routes,
    vips: &[IpAddr],
) -> Result<Placement, ReconcileError> {
    let connected = interface_for(real.address, interfaces);
    let forward = real.forward;
    if forward.needs_connected_real() {
        let interface = connected.ok_or_else(|| ReconcileError::RealNotConnected {
            service: service.name(),
            real: real.address,
            interfaces: describe(interfaces),
        })?;
        return Ok(Placement {
            ifindex: interface.index,
            next_hop: real.address,
            local: None,
        });
    }
    let route = routes.get(&real.address);
    let prefsrc = route
        .and_then(|route| route.prefsrc)
        .filter(|source| source.is_ipv4() == real.address.is_ipv4());
    if let Some(interface) = connected {
        let usable = |local: &IpAddr| usable_local(*local, vips, false);
        return Ok(Placement {
            ifindex: interface.index,
            next_hop: real.address,
            local: prefsrc
                .filter(usable)
                .or_else(|| own_address(interface, real.address, usable)),
        });
    }
    let route = route.ok_or_else(|| ReconcileError::RealUnroutable {
        service: service.name(),
        real: real.address,
        forward,
        interfaces: describe(interfaces),
    })?;
    let interface = interfaces
        .iter()
        .find(|interface| interface.index == route.ifindex)
        .ok_or_else(|| ReconcileError::RouteNotXdp {
            service: service.name(),
            real: real.address,
            forward,
            route: match route.gateway {
                Some(gateway) => format!("via {gateway} dev {}", route.interface),
                None => format!("dev {}", route.interface),
            },
            interface: route.interface.clone(),
            interfaces: describe(interfaces),
        })?;
    let usable = |local: &IpAddr| usable_local(*local, vips, true);
    Ok(Placement {
        ifindex: interface.index,
        next_hop: route.gateway.unwrap_or(real.address),
        local: prefsrc
            .filter(usable)
            .or_else(|| own_address(interface, real.address, usable)),
    })
}

/// Whether the balancer may send a real's packets from `local` when nobody configured it: a
/// VIP never (its replies would be taken for clients' packets), a link-local address only to
/// a real on the segment (`routed`: a router would not forward it). Without a usable one,
/// the real's service must set `tunnel_source` or `snat_pool`.
fn usable_local(local: IpAddr, vips: &[IpAddr], routed: bool) -> bool {
    let link_local = match local {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    let routed_link_local = routed && link_local;
    !vips.contains(&local) && !routed_link_local
}

/// The interface's own address of `toward`'s family that `usable` accepts: one on a prefix
/// holding `toward` if there is one, else the first.
fn own_address(
    interface: &InterfaceInfo,
    toward: IpAddr,
    usable: impl Fn(&IpAddr) -> bool,
) -> Option<IpAddr> {
    let same_family = interface
        .prefixes
        .iter()
        .filter(|(addr, _)| addr.is_ipv4() == toward.is_ipv4() && usable(addr));
    same_family
        .clone()
        .find(|&&(addr, len)| prefix_contains(addr, len, toward))
        .or_else(|| same_family.clone().next())
        .map(|(addr, _)| *addr)
}

/// What a real's packets come from, beyond its own method's needs: the tunnel's outer
/// source, or full NAT's local addresses.
fn sources(
    service: &ServiceConfig,
    real: &RealConfig,
    local: Option<IpAddr>,
) -> Result<Vec<IpAddr>, ReconcileError> {
    let family = |addr: &IpAddr| addr.is_ipv4() == real.address.is_ipv4();
    let (configured, what, key): (Vec<IpAddr>, _, _) = match real.forward {
        Forward::Dr | Forward::Nat => return Ok(Vec::new()),
        Forward::Tun => (
            service
                .tunnel_source
                .iter()
                .copied()
                .filter(family)
                .collect(),
            "outer source address for the tunnel",
            "tunnel_source",
        ),
        Forward::Fullnat => (
            service.snat_pool.iter().copied().filter(family).collect(),
            "local address for full NAT",
            "snat_pool",
        ),
    };
    if !configured.is_empty() {
        return Ok(configured);
    }
    local
        .map(|local| vec![local])
        .ok_or(ReconcileError::NoLocalAddress {
            service: service.name(),
            real: real.address,
            forward: real.forward,
            family: if real.address.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            },
            what,
            key,
        })
}

fn describe(interfaces: &[InterfaceInfo]) -> String {
    interfaces
        .iter()
        .map(|interface| {
            let prefixes: Vec<String> = interface
                .prefixes
                .iter()
                .map(|(addr, len)| format!("{addr}/{len}"))
                .collect();
            format!("{}: {}", interface.name, prefixes.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The map key of a service.
pub fn service_key(service: &ServiceConfig) -> ServiceKey {
    service_key_of(service.protocol, service.vip, service.port)
}

/// The key of the service `protocol` `vip:port`.
pub fn service_key_of(protocol: Protocol, vip: IpAddr, port: u16) -> ServiceKey {
    let (vip, family) = address_bytes(vip);
    ServiceKey {
        vip,
        port_be: port.to_be(),
        protocol: match protocol {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        family,
    }
}

/// Network-order bytes as the maps hold them: IPv4 in the first four bytes.
pub fn address_bytes(addr: IpAddr) -> ([u8; 16], u8) {
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (bytes, FAMILY_IPV4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_IPV6),
    }
}

/// The address map bytes hold: [`address_bytes`] read back.
pub fn address_from_bytes(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

/// How a real stands, in words for logs and listings.
pub fn describe_reachability(real: &DesiredReal) -> &'static str {
    match (real.mac.is_some(), real.reachability) {
        (false, _) => "unresolved",
        (true, Reachability::Reachable) => "reachable",
        (true, Reachability::Probing) => "probing (no new flows)",
        (true, Reachability::Failed) => "failed (no packets)",
    }
}
