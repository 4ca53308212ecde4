//! The control plane's picture of what the data plane must hold, and the writes that put it
//! there.
//!
//! [`State`] joins the config with what the host tells us (each real's interface and MAC) and
//! owns the id allocation: ids are stable for as long as a service or real exists, because
//! flows in the kernel's flow table refer to reals by id.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{
    FAMILY_IPV4, FAMILY_IPV6, FORWARD_DR, Interface, PROTO_TCP, PROTO_UDP, REAL_AVAILABLE, Real,
    Service, ServiceKey,
};

use crate::{
    config::{Config, Forward, Protocol, RealConfig, ServiceConfig},
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
}

impl State {
    /// Ids are assigned in config order, from 1.
    pub fn new(config: &Config, interfaces: Vec<InterfaceInfo>) -> Result<Self, StateError> {
        let mut next_real_id = 1;
        let mut services = Vec::with_capacity(config.services.len());
        for (index, service) in config.services.iter().enumerate() {
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
                    id: next_real_id,
                    config: real.clone(),
                    ifindex: interface.index,
                    mac: None,
                });
                next_real_id += 1;
            }
            services.push(ServiceState {
                id: index as u32 + 1,
                key: service_key(service),
                config: service.clone(),
                reals,
            });
        }
        Ok(Self {
            services,
            interfaces,
        })
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

    /// Writes everything to the data plane.
    pub fn apply(&self, dataplane: &mut dyn Dataplane) -> Result<(), StateError> {
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
        self.apply_services(dataplane, &all)
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
