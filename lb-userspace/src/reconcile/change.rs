//! Changes to a running desired state besides neighbour observations: health check verdicts,
//! and a whole new desired state (a reload, an admin edit) taking over from the current one.

use std::collections::HashMap;

use super::{Desired, Dirty, Reachability, service_key};
use crate::health::HealthKey;

/// A health check's verdict on a real changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthChange {
    pub key: HealthKey,
    pub up: bool,
}

impl Desired {
    /// Records health verdicts; returns what must be rewritten. Verdicts about reals no longer
    /// configured, or of services no longer checked, are ignored (a reload may have changed
    /// them while the check ran).
    pub fn set_health(&mut self, changes: &[HealthChange]) -> Dirty {
        let mut dirty = Dirty::default();
        for change in changes {
            let Some(service) = self.services.iter_mut().find(|service| {
                service.key == change.key.service && service.config.health_check.is_some()
            }) else {
                continue;
            };
            let Some(real) = service.reals.iter_mut().find(|real| {
                !real.sorry
                    && real.config.address == change.key.address
                    && real.config.port == change.key.port
            }) else {
                continue;
            };
            if real.healthy == change.up {
                continue;
            }
            real.healthy = change.up;
            dirty.reals.insert((service.id, real.id));
            dirty.rings.insert(service.id);
        }
        dirty
    }

    /// Takes over what `current` learnt that a config cannot say: each next hop's MAC and
    /// neighbour state, for reals reached the same way (interface and next hop), and each
    /// real's health verdict, for reals of the same service, address and port (a reload never
    /// resurrects a dead real). Ids are not taken from here but from the maps
    /// ([`Desired::adopt`]).
    pub fn carry_over(&mut self, current: &Desired) {
        // Which VIPs VRRP lets this node serve is runtime state, like a real's health.
        self.standby = current.standby.clone();
        // (ifindex, next hop) → (MAC, reachability).
        type NeighbourState = (Option<[u8; 6]>, Reachability);
        let mut neighbours: HashMap<(u32, std::net::IpAddr), NeighbourState> = HashMap::new();
        let mut health: HashMap<HealthKey, bool> = HashMap::new();
        for service in &current.services {
            for real in &service.reals {
                if real.mac.is_some() {
                    neighbours.insert((real.ifindex, real.next_hop), (real.mac, real.reachability));
                }
                if !real.sorry {
                    health.insert(health_key(service.key, real), real.healthy);
                }
            }
        }
        for service in &mut self.services {
            let key = service.key;
            for real in &mut service.reals {
                if let Some(&(mac, reachability)) = neighbours.get(&(real.ifindex, real.next_hop)) {
                    real.mac = mac;
                    real.reachability = reachability;
                }
                if !real.sorry
                    && service.config.health_check.is_some()
                    && let Some(&healthy) = health.get(&health_key(key, real))
                {
                    real.healthy = healthy;
                }
            }
        }
    }

    /// (ifindex, next hop) of every real whose MAC is known.
    pub fn resolved_next_hops(&self) -> std::collections::HashSet<(u32, std::net::IpAddr)> {
        self.services
            .iter()
            .flat_map(|service| &service.reals)
            .filter(|real| real.mac.is_some())
            .map(|real| (real.ifindex, real.next_hop))
            .collect()
    }

    /// Every real id in use.
    pub fn real_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.services
            .iter()
            .flat_map(|service| service.reals.iter().map(|real| real.id))
    }

    /// The reals whose last health verdict was down.
    pub fn failed_checks(&self) -> std::collections::HashSet<HealthKey> {
        self.services
            .iter()
            .flat_map(|service| {
                service
                    .reals
                    .iter()
                    .filter(|real| !real.sorry && !real.healthy)
                    .map(move |real| health_key(service.key, real))
            })
            .collect()
    }
}

fn health_key(service: lb_common::ServiceKey, real: &super::DesiredReal) -> HealthKey {
    HealthKey {
        service,
        address: real.config.address,
        port: real.config.port,
    }
}

/// The health key of a configured real of a configured service.
pub fn health_key_of(
    service: &crate::config::ServiceConfig,
    real: &crate::config::RealConfig,
) -> HealthKey {
    HealthKey {
        service: service_key(service),
        address: real.address,
        port: real.port,
    }
}
