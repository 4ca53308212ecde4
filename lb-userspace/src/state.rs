//! The control plane's picture of what the data plane must hold, and the writes that put it
//! there.
//!
//! [`State`] joins the config with what the host tells us (each real's interface and MAC) and
//! owns the id allocation. Flows in the kernel's flow table refer to reals by id, so ids must
//! outlive the daemon: [`State::adopt`] takes over the ids a previous daemon left in pinned
//! maps, matching services by VIP:port/protocol and reals by address and port.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use lb_common::{
    FAMILY_IPV4, FAMILY_IPV6, FORWARD_DR, Interface, PROTO_TCP, PROTO_UDP, REAL_AVAILABLE, Real,
    Service, ServiceKey,
};

use crate::{
    config::{Config, Forward, Limits, Protocol, RealConfig, ServiceConfig},
    dataplane::{Dataplane, DataplaneError},
    neighbour::{InterfaceInfo, interface_for},
    schedule::{self, Candidate, ScheduleError},
};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "real {real} of service {service} is not on a subnet of any XDP interface ({interfaces}): \
         direct routing needs the real on the same L2 segment"
    )]
    RealNotConnected {
        service: String,
        real: IpAddr,
        interfaces: String,
    },
    #[error("service {service}: {source}")]
    Schedule {
        service: String,
        source: ScheduleError,
    },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

/// A real as the control plane knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RealState {
    pub id: u32,
    pub config: RealConfig,
    /// Interface the real is reached through.
    pub ifindex: u32,
    /// From the neighbour table; `None` until resolved.
    pub mac: Option<[u8; 6]>,
}

impl RealState {
    /// Can it receive packets now? Health checks will add to this.
    pub fn available(&self) -> bool {
        self.mac.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceState {
    pub id: u32,
    pub key: ServiceKey,
    pub config: ServiceConfig,
    pub reals: Vec<RealState>,
}

impl ServiceState {
    /// `TCP 192.0.2.10:80`, as ipvsadm names a service.
    pub fn name(&self) -> String {
        service_name(&self.config)
    }
}

pub fn service_name(config: &ServiceConfig) -> String {
    format!(
        "{} {}",
        config.protocol.name().to_uppercase(),
        socket_text(config.vip, config.port)
    )
}

/// `addr:port`, with brackets for IPv6 (as ipvsadm prints it).
pub fn socket_text(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// Everything the data plane must hold for one config.
#[derive(Debug, Clone)]
pub struct State {
    pub services: Vec<ServiceState>,
    pub interfaces: Vec<InterfaceInfo>,
    /// Ids stay below these (the id-indexed maps' sizes).
    limits: Limits,
    /// Done once, by the next [`State::apply`]: entries a previous daemon left that this
    /// config no longer has, and ids whose counters must start from zero.
    pending: Pending,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Pending {
    removed_services: Vec<ServiceKey>,
    retired_reals: Vec<u32>,
    fresh_service_ids: Vec<u32>,
    fresh_real_ids: Vec<u32>,
}

/// What a previous daemon left in the (pinned) maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Existing {
    pub services: Vec<(ServiceKey, Service)>,
    pub reals: Vec<(u32, Real)>,
}

impl Existing {
    pub fn read(dataplane: &dyn Dataplane) -> Result<Self, DataplaneError> {
        Ok(Self {
            services: dataplane.services()?,
            reals: dataplane.reals()?,
        })
    }
}

impl State {
    /// Places every real on an interface and gives ids as to an empty data plane: in config
    /// order, from 1.
    pub fn new(config: &Config, interfaces: Vec<InterfaceInfo>) -> Result<Self, StateError> {
        let mut services = Vec::with_capacity(config.services.len());
        for service in &config.services {
            let mut reals = Vec::with_capacity(service.reals.len());
            for real in &service.reals {
                let interface = interface_for(real.address, &interfaces).ok_or_else(|| {
                    StateError::RealNotConnected {
                        service: service_name(service),
                        real: real.address,
                        interfaces: describe(&interfaces),
                    }
                })?;
                reals.push(RealState {
                    id: 0,
                    config: real.clone(),
                    ifindex: interface.index,
                    mac: None,
                });
            }
            services.push(ServiceState {
                id: 0,
                key: service_key(service),
                config: service.clone(),
                reals,
            });
        }
        let mut state = Self {
            services,
            interfaces,
            limits: config.limits,
            pending: Pending::default(),
        };
        state.adopt(&Existing::default());
        Ok(state)
    }

    /// Re-gives ids so that what `existing` holds keeps its meaning: a service keeps its id if
    /// its VIP:port/protocol is still configured, a real if its service, address and port are.
    /// New services and reals take ids nobody used (falling back to retired ones only when
    /// the id space is full), so an old flow never lands on a stranger. The next
    /// [`State::apply`] removes what is gone and zeroes the counters of new ids.
    pub fn adopt(&mut self, existing: &Existing) {
        let old_services: HashMap<ServiceKey, u32> = existing
            .services
            .iter()
            .map(|(key, service)| (*key, service.id))
            .collect();
        let old_reals: HashMap<(u32, [u8; 16], u16), (u32, Real)> = existing
            .reals
            .iter()
            .map(|(id, real)| ((real.service_id, real.addr, real.port_be), (*id, *real)))
            .collect();
        let mut pending = Pending::default();

        let kept_services: HashSet<u32> = self
            .services
            .iter()
            .filter_map(|service| old_services.get(&service.key).copied())
            .collect();
        let mut service_ids = IdAllocator::new(
            kept_services,
            old_services.values().copied().collect(),
            self.limits.services,
        );
        for service in &mut self.services {
            service.id = match old_services.get(&service.key) {
                Some(&id) => id,
                None => {
                    let id = service_ids.fresh();
                    pending.fresh_service_ids.push(id);
                    id
                }
            };
        }

        let real_key = |service: &ServiceState, real: &RealState| {
            let (addr, _) = address_bytes(real.config.address);
            (service.id, addr, real.config.port.to_be())
        };
        let kept_reals: HashSet<u32> = self
            .services
            .iter()
            .flat_map(|service| service.reals.iter().map(move |real| (service, real)))
            .filter_map(|(service, real)| {
                old_reals.get(&real_key(service, real)).map(|(id, _)| *id)
            })
            .collect();
        let mut real_ids = IdAllocator::new(
            kept_reals,
            existing.reals.iter().map(|(id, _)| *id).collect(),
            self.limits.reals,
        );
        for service_index in 0..self.services.len() {
            for real_index in 0..self.services[service_index].reals.len() {
                let key = real_key(
                    &self.services[service_index],
                    &self.services[service_index].reals[real_index],
                );
                let real = &mut self.services[service_index].reals[real_index];
                let id = match old_reals.get(&key) {
                    // The previous daemon's MAC carries over, so that adopting writes back the
                    // entries the program is using instead of taking reals out until their
                    // MACs are read again. The neighbour refresh corrects it if it changed.
                    Some(&(id, old)) => {
                        if old.flags & REAL_AVAILABLE != 0 && old.ifindex == real.ifindex {
                            real.mac = Some(old.mac);
                        }
                        id
                    }
                    None => {
                        let id = real_ids.fresh();
                        pending.fresh_real_ids.push(id);
                        id
                    }
                };
                real.id = id;
            }
        }

        let configured: HashSet<ServiceKey> = self.services.iter().map(|s| s.key).collect();
        pending.removed_services = existing
            .services
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| !configured.contains(key))
            .collect();
        // An id handed out again above is not retired: it already has its new meaning.
        let assigned: HashSet<u32> = self
            .services
            .iter()
            .flat_map(|s| &s.reals)
            .map(|real| real.id)
            .collect();
        pending.retired_reals = existing
            .reals
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !assigned.contains(id))
            .collect();
        self.pending = pending;
    }

    /// Records the usable neighbour entries of `ifindex`. Returns the ids of the services
    /// whose reals changed: those, and only those, need [`State::apply_services`].
    pub fn set_neighbours(
        &mut self,
        ifindex: u32,
        resolved: &HashMap<IpAddr, [u8; 6]>,
    ) -> Vec<u32> {
        let mut changed = Vec::new();
        for service in &mut self.services {
            let mut service_changed = false;
            for real in service
                .reals
                .iter_mut()
                .filter(|real| real.ifindex == ifindex)
            {
                let mac = resolved.get(&real.config.address).copied();
                // A real that drops out of the table keeps its last MAC: the kernel forgets
                // idle entries (gc), which says nothing about the real. A new MAC is taken at
                // once.
                if mac.is_some() && mac != real.mac {
                    real.mac = mac;
                    service_changed = true;
                }
            }
            if service_changed {
                changed.push(service.id);
            }
        }
        changed
    }

    /// Reals whose MAC is not known yet: (ifindex, address), without duplicates.
    pub fn unresolved(&self) -> Vec<(u32, IpAddr)> {
        self.addresses_of(|real| real.mac.is_none())
    }

    /// Every (ifindex, address) of a real, for keeping the neighbour entries fresh.
    pub fn real_addresses(&self) -> Vec<(u32, IpAddr)> {
        self.addresses_of(|_| true)
    }

    /// (ifindex, address) of the reals `wanted` keeps, each once: an address may serve
    /// several services.
    fn addresses_of(&self, wanted: impl Fn(&RealState) -> bool) -> Vec<(u32, IpAddr)> {
        let mut addresses: Vec<(u32, IpAddr)> = self
            .services
            .iter()
            .flat_map(|service| &service.reals)
            .filter(|real| wanted(real))
            .map(|real| (real.ifindex, real.config.address))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// Writes everything to the data plane: first what [`State::adopt`] found gone (services
    /// removed before anything else, so no new flow goes there), then every service, then the
    /// reals no ring names any more are retired, which sends their remaining flows elsewhere.
    pub fn apply(&mut self, dataplane: &mut dyn Dataplane) -> Result<(), StateError> {
        let pending = std::mem::take(&mut self.pending);
        for key in &pending.removed_services {
            dataplane.remove_service(key)?;
        }
        for &id in &pending.fresh_service_ids {
            dataplane.reset_service_counters(id)?;
        }
        for &id in &pending.fresh_real_ids {
            dataplane.reset_real_counters(id)?;
        }
        for interface in &self.interfaces {
            dataplane.set_interface(
                interface.index,
                Interface {
                    mac: interface.mac,
                    _pad: [0; 2],
                },
            )?;
        }
        let all: Vec<u32> = self.services.iter().map(|service| service.id).collect();
        self.apply_services(dataplane, &all)?;
        for &id in &pending.retired_reals {
            dataplane.set_real(id, Real::default())?;
        }
        Ok(())
    }

    /// Writes the services with these ids, their reals and their schedules.
    ///
    /// The order never lets the program see a half-made state: reals first (a ring slot never
    /// names a real not written yet), then the new schedule into the ring half not in use,
    /// then the service entry, whose single update switches length and half together.
    pub fn apply_services(
        &self,
        dataplane: &mut dyn Dataplane,
        ids: &[u32],
    ) -> Result<(), StateError> {
        for service in self.services.iter().filter(|s| ids.contains(&s.id)) {
            for real in &service.reals {
                dataplane.set_real(real.id, real_entry(service, real))?;
            }
            let ring = self.ring(service)?;
            // The half in use is read from the map, not remembered: after a restart it is
            // whatever the previous daemon left.
            let half = match dataplane.service(&service.key)? {
                Some(current) => current.ring_half ^ 1,
                None => 0,
            };
            dataplane.set_ring(service.id, half, &ring)?;
            dataplane.set_service(
                service.key,
                Service {
                    id: service.id,
                    ring_len: ring.len() as u32,
                    flags: 0,
                    forward: forward_code(service.config.forward),
                    ring_half: half,
                    _pad: [0; 2],
                },
            )?;
        }
        Ok(())
    }

    /// The service's schedule over the reals that can take new flows now.
    pub fn ring(&self, service: &ServiceState) -> Result<Vec<u32>, StateError> {
        let candidates: Vec<Candidate> = service
            .reals
            .iter()
            .filter(|real| real.available())
            .map(|real| Candidate {
                real_id: real.id,
                weight: real.config.weight,
            })
            .collect();
        schedule::ring(service.config.scheduler, &candidates).map_err(|source| {
            StateError::Schedule {
                service: service.name(),
                source,
            }
        })
    }
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

/// Hands out ids in `1..limit` that are not `taken`, preferring ids never `used` before, and
/// ids a previous daemon retired only when no other is left.
struct IdAllocator {
    taken: HashSet<u32>,
    used: HashSet<u32>,
    limit: u32,
    /// Below these, every id is already known to be unavailable (the sets only grow).
    never_used_from: u32,
    retired_from: u32,
}

impl IdAllocator {
    fn new(taken: HashSet<u32>, used: HashSet<u32>, limit: u32) -> Self {
        Self {
            taken,
            used,
            limit,
            never_used_from: 1,
            retired_from: 1,
        }
    }

    fn fresh(&mut self) -> u32 {
        let never_used = (self.never_used_from..self.limit)
            .find(|id| !self.taken.contains(id) && !self.used.contains(id));
        let id = match never_used {
            Some(id) => {
                self.never_used_from = id + 1;
                id
            }
            None => {
                let id = (self.retired_from..self.limit)
                    .find(|id| !self.taken.contains(id))
                    .expect("config validation keeps the count of ids below the limit");
                self.retired_from = id + 1;
                id
            }
        };
        self.taken.insert(id);
        id
    }
}

/// The map key of a service.
pub fn service_key(service: &ServiceConfig) -> ServiceKey {
    let (vip, family) = address_bytes(service.vip);
    ServiceKey {
        vip,
        port_be: service.port.to_be(),
        protocol: match service.protocol {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        family,
    }
}

fn real_entry(service: &ServiceState, real: &RealState) -> Real {
    let (addr, family) = address_bytes(real.config.address);
    Real {
        addr,
        mac: real.mac.unwrap_or_default(),
        port_be: real.config.port.to_be(),
        ifindex: real.ifindex,
        service_id: service.id,
        flags: if real.available() { REAL_AVAILABLE } else { 0 },
        forward: forward_code(real.config.forward),
        family,
        _pad: [0; 2],
    }
}

fn forward_code(forward: Forward) -> u8 {
    match forward {
        Forward::Dr => FORWARD_DR,
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{config, dataplane::FakeDataplane};

    const CONFIG: &str = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.13, weight: 0}
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    scheduler: rr
    reals:
      - {address: 192.0.2.11}
";

    fn eth0() -> InterfaceInfo {
        InterfaceInfo {
            name: "eth0".into(),
            index: 7,
            mac: [2, 0, 0, 0, 0, 2],
            prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
        }
    }

    fn state() -> State {
        let config = config::parse(CONFIG, "test.yaml").expect("test config parses");
        State::new(&config, vec![eth0()]).expect("state builds")
    }

    fn mac(last: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, last]
    }

    fn neighbours(entries: &[(u8, u8)]) -> HashMap<IpAddr, [u8; 6]> {
        entries
            .iter()
            .map(|&(host, last)| (IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)), mac(last)))
            .collect()
    }

    #[test]
    fn ids_start_at_one_and_follow_config_order() {
        let state = state();
        let ids: Vec<(u32, Vec<u32>)> = state
            .services
            .iter()
            .map(|s| (s.id, s.reals.iter().map(|r| r.id).collect()))
            .collect();
        assert_eq!(ids, vec![(1, vec![1, 2, 3]), (2, vec![4])]);
    }

    #[test]
    fn unresolved_reals_take_no_flows_until_their_mac_is_known() {
        let mut state = state();
        let mut dataplane = FakeDataplane::default();
        state.apply(&mut dataplane).unwrap();
        let web = state.services[0].key;
        assert_eq!(dataplane.services[&web].ring_len, 0);
        assert_eq!(dataplane.reals[&1].flags & REAL_AVAILABLE, 0);
        assert_eq!(state.unresolved().len(), 3, "192.0.2.11 counted once");

        let changed = state.set_neighbours(7, &neighbours(&[(11, 0x11), (12, 0x12)]));
        assert_eq!(changed, vec![1, 2], "192.0.2.11 serves both services");
        state.apply_services(&mut dataplane, &changed).unwrap();
        let ring = dataplane.active_ring(&web);
        assert_eq!(ring.iter().filter(|&&id| id == 1).count(), 1);
        assert_eq!(ring.iter().filter(|&&id| id == 2).count(), 2);
        assert_eq!(dataplane.reals[&2].mac, mac(0x12));
        assert_eq!(dataplane.reals[&2].flags & REAL_AVAILABLE, REAL_AVAILABLE);
        assert_eq!(dataplane.reals[&2].ifindex, 7);
        assert_eq!(dataplane.interfaces[&7].mac, eth0().mac);
    }

    #[test]
    fn drained_real_stays_available_for_its_flows_but_not_in_the_ring() {
        let mut state = state();
        let mut dataplane = FakeDataplane::default();
        state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
        state.apply(&mut dataplane).unwrap();
        assert_eq!(dataplane.reals[&3].flags & REAL_AVAILABLE, REAL_AVAILABLE);
        assert!(!dataplane.active_ring(&state.services[0].key).contains(&3));
    }

    #[test]
    fn neighbour_updates_report_the_services_they_change() {
        let mut state = state();
        assert_eq!(state.set_neighbours(7, &neighbours(&[(11, 1)])), vec![1, 2]);
        let none: Vec<u32> = Vec::new();
        assert_eq!(
            state.set_neighbours(7, &neighbours(&[(11, 1)])),
            none,
            "same MAC"
        );
        assert_eq!(
            state.set_neighbours(7, &HashMap::new()),
            none,
            "entry gone: keep last MAC"
        );
        assert_eq!(
            state.set_neighbours(7, &neighbours(&[(12, 2)])),
            vec![1],
            "only the web service"
        );
        assert_eq!(
            state.set_neighbours(7, &neighbours(&[(11, 9)])),
            vec![1, 2],
            "new MAC is taken"
        );
        assert_eq!(
            state.set_neighbours(8, &neighbours(&[(13, 1)])),
            none,
            "other interface"
        );
        assert_eq!(state.services[0].reals[0].mac, Some(mac(9)));
        assert_eq!(
            state.services[1].reals[0].mac,
            Some(mac(9)),
            "same address, other service"
        );
    }

    #[test]
    fn a_new_schedule_goes_to_the_other_ring_half_and_only_where_it_changed() {
        let mut state = state();
        let mut dataplane = FakeDataplane::default();
        state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2)]));
        state.apply(&mut dataplane).unwrap();
        let web = state.services[0].key;
        let dns = state.services[1].key;
        assert_eq!(dataplane.services[&web].ring_half, 0);
        let dns_before = dataplane.services[&dns];

        // 192.0.2.13 (weight 0) resolves: only the web service is rewritten, into half 1.
        let changed = state.set_neighbours(7, &neighbours(&[(13, 3)]));
        let writes_before = dataplane.ring_writes;
        state.apply_services(&mut dataplane, &changed).unwrap();
        assert_eq!(dataplane.services[&web].ring_half, 1);
        assert_eq!(
            dataplane.ring_writes - writes_before,
            3,
            "one web ring of 1+2 slots"
        );
        assert_eq!(dataplane.services[&dns], dns_before, "dns untouched");
        let old_half = &dataplane.rings[&(1, 0)];
        assert_eq!(
            old_half.len(),
            3,
            "the previous schedule stays intact in half 0"
        );
        assert_eq!(dataplane.active_ring(&web).len(), 3);

        // And back to half 0 on the next change.
        state.apply_services(&mut dataplane, &[1]).unwrap();
        assert_eq!(dataplane.services[&web].ring_half, 0);
    }

    /// The state after a restart: `config` adopting what `dataplane` holds.
    fn restarted(config: &str, dataplane: &FakeDataplane) -> State {
        let config = config::parse(config, "test.yaml").expect("config parses");
        let mut state = State::new(&config, vec![eth0()]).expect("state builds");
        state.adopt(&Existing::read(dataplane).unwrap());
        state
    }

    fn real_ids(state: &State, service: usize) -> Vec<(IpAddr, u32)> {
        state.services[service]
            .reals
            .iter()
            .map(|r| (r.config.address, r.id))
            .collect()
    }

    fn addr(host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))
    }

    #[test]
    fn a_restart_with_the_same_config_keeps_every_id_and_counter() {
        let mut first = state();
        let mut dataplane = FakeDataplane::default();
        first.apply(&mut dataplane).unwrap();
        dataplane.real_stats.insert(
            2,
            lb_common::Counters {
                packets: 7,
                bytes: 70,
                new_flows: 1,
            },
        );

        let mut second = restarted(CONFIG, &dataplane);
        assert_eq!(second.services, first.services);
        assert_eq!(
            second.pending,
            Pending::default(),
            "nothing to remove, retire or zero"
        );
        second.apply(&mut dataplane).unwrap();
        assert_eq!(
            dataplane.real_stats[&2].packets, 7,
            "counters survive a restart"
        );
    }

    #[test]
    fn adopting_writes_back_the_real_entries_the_program_uses() {
        let mut first = state();
        let mut dataplane = FakeDataplane::default();
        first.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
        first.apply(&mut dataplane).unwrap();
        let before = dataplane.clone();

        let mut second = restarted(CONFIG, &dataplane);
        assert!(second.unresolved().is_empty(), "MACs carried over");
        second.apply(&mut dataplane).unwrap();
        assert_eq!(
            dataplane.reals, before.reals,
            "no real taken out, not even briefly"
        );
        let web = first.services[0].key;
        assert_eq!(dataplane.active_ring(&web), before.active_ring(&web));
    }

    #[test]
    fn a_restart_with_a_changed_config_keeps_ids_by_address_and_retires_the_rest() {
        let mut first = state();
        let mut dataplane = FakeDataplane::default();
        first.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
        first.apply(&mut dataplane).unwrap();
        // web: 11 → 1, 12 → 2, 13 → 3; dns: 11 → 4.
        dataplane.real_stats.insert(
            5,
            lb_common::Counters {
                packets: 99,
                bytes: 1,
                new_flows: 1,
            },
        );

        // A real added in front, one removed, the dns service gone, a new service.
        let changed = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 123
    protocol: udp
    reals: [{address: 192.0.2.15}]
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals:
      - {address: 192.0.2.14}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.11}
";
        let mut second = restarted(changed, &dataplane);
        let web = &second.services[1];
        assert_eq!(web.id, 1, "the web service keeps its id");
        assert_eq!(
            second.services[0].id, 3,
            "a new service takes an id never used"
        );
        assert_eq!(
            real_ids(&second, 1),
            vec![(addr(14), 6), (addr(12), 2), (addr(11), 1)],
            "kept reals keep their ids; the new one takes one never used"
        );
        assert_eq!(
            real_ids(&second, 0),
            vec![(addr(15), 5)],
            "config order: this one first"
        );

        second.apply(&mut dataplane).unwrap();
        let dns = ServiceKey {
            port_be: 53u16.to_be(),
            protocol: PROTO_UDP,
            ..dataplane_key(&dataplane, 1)
        };
        assert!(
            !dataplane.services.contains_key(&dns),
            "removed service is gone"
        );
        assert_eq!(dataplane.reals[&3], Real::default(), "192.0.2.13 retired");
        assert_eq!(dataplane.reals[&4], Real::default(), "dns's real retired");
        assert_eq!(&dataplane.reals[&6].addr[..4], &[192, 0, 2, 14]);
        assert!(
            !dataplane.real_stats.contains_key(&5),
            "a new id starts from zero"
        );
        assert_eq!(dataplane.reals[&1].mac, mac(1), "a kept real keeps its MAC");
        assert_eq!(
            dataplane.reals[&1].flags, REAL_AVAILABLE,
            "and stays available"
        );
        assert_eq!(dataplane.reals[&6].flags, 0, "a new real waits for its MAC");
    }

    /// The key of the service with this id in the fake data plane.
    fn dataplane_key(dataplane: &FakeDataplane, id: u32) -> ServiceKey {
        *dataplane
            .services
            .iter()
            .find(|(_, s)| s.id == id)
            .expect("service")
            .0
    }

    #[test]
    fn retired_ids_are_reused_only_when_no_other_is_left() {
        let small = |reals: &str| {
            format!(
                "instance: t\ninterfaces: [{{name: eth0}}]\nlimits: {{services: 4, reals: 4}}\n\
                 services:\n  - {{vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{reals}]}}\n"
            )
        };
        let config = config::parse(
            &small("{address: 192.0.2.11}, {address: 192.0.2.12}"),
            "t.yaml",
        )
        .unwrap();
        let mut first = State::new(&config, vec![eth0()]).unwrap();
        let mut dataplane = FakeDataplane::default();
        first.apply(&mut dataplane).unwrap();

        // Ids 1 and 2 are retired, 3 was never used: 3 first, then 1.
        let mut second = restarted(
            &small("{address: 192.0.2.13}, {address: 192.0.2.14}"),
            &dataplane,
        );
        assert_eq!(real_ids(&second, 0), vec![(addr(13), 3), (addr(14), 1)]);
        assert_eq!(
            second.pending.retired_reals,
            vec![2],
            "id 1 has a new meaning, not retired"
        );
        second.apply(&mut dataplane).unwrap();
        assert_eq!(&dataplane.reals[&1].addr[..4], &[192, 0, 2, 14]);
        assert_eq!(dataplane.reals[&2], Real::default());
    }

    #[test]
    fn service_keys_are_in_network_byte_order() {
        let key = state().services[0].key;
        assert_eq!(&key.vip[..4], &[192, 0, 2, 100]);
        assert_eq!(key.vip[4..], [0; 12]);
        assert_eq!(key.port_be.to_ne_bytes(), [0, 80]);
        assert_eq!((key.protocol, key.family), (PROTO_TCP, FAMILY_IPV4));
    }

    #[test]
    fn a_real_off_every_interface_subnet_is_an_error() {
        let config =
            config::parse(&CONFIG.replace("192.0.2.12", "203.0.113.12"), "test.yaml").unwrap();
        let error = State::new(&config, vec![eth0()]).unwrap_err().to_string();
        assert!(error.contains("203.0.113.12"), "{error}");
        assert!(error.contains("eth0: 192.0.2.2/24"), "{error}");
    }
}
