//! Ids, and what they mean across restarts.
//!
//! Flows in the kernel's flow table refer to reals by id, so ids must outlive the daemon:
//! [`Desired::adopt`] takes over the ids a previous daemon left in pinned maps, matching
//! services by VIP:port/protocol and reals by service, address and port.

use std::collections::{HashMap, HashSet};

use lb_common::{
    Egress, FORWARD_DR, FORWARD_FULLNAT, FORWARD_TUN, REAL_AVAILABLE, REAL_FAILED_CHECK, Real,
    Service, ServiceKey,
};

use super::{Desired, DesiredReal, DesiredService, address_bytes};
use crate::dataplane::{Dataplane, DataplaneError};

/// What the next full apply must do once: remove what a previous daemon left and this config
/// no longer has, and prepare ids given a new meaning.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Pending {
    /// Services a previous daemon left that this config no longer has.
    pub(super) removed_services: Vec<ServiceKey>,
    pub(super) retired_reals: Vec<u32>,
    pub(super) fresh_service_ids: Vec<u32>,
    pub(super) fresh_real_ids: Vec<u32>,
}

/// What a previous daemon left in the (pinned) maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Existing {
    pub services: Vec<(ServiceKey, Service)>,
    pub reals: Vec<(u32, Real)>,
    /// Tunnel and full-NAT reals' egress entries, by real id.
    pub egress: Vec<(u32, Egress)>,
    /// Real ids retired moments ago, whose flows may still be in the flow table: given to a
    /// new real only when no other id is left.
    pub recently_retired: Vec<u32>,
}

impl Existing {
    pub fn read(dataplane: &dyn Dataplane) -> Result<Self, DataplaneError> {
        Ok(Self {
            services: dataplane.services()?,
            reals: dataplane.reals()?,
            egress: dataplane.egresses()?,
            recently_retired: Vec::new(),
        })
    }
}

/// Whether the flows a previous daemon recorded for a real (entry `old`, egress entry
/// `old_egress`) can go on to it as now configured (`new`), so it keeps its id.
///
/// Not across a change between delivering the client's packet as sent (dr, tun) and
/// translating it (nat, fullnat), nor between NAT and full NAT: a flow's packets would change
/// addresses mid-connection, and a flow recorded without a local port would be sent from
/// port 0. Nor for a full-NAT real whose local addresses changed: its flows name theirs by
/// index. Such a real takes a new id; its old flows go, as a removed real's do.
fn keeps_its_flows(old: &Real, old_egress: Option<&Egress>, new: &DesiredReal) -> bool {
    let delivers_as_sent = |method: u8| matches!(method, 0 | FORWARD_DR | FORWARD_TUN);
    let old_method = old.forward;
    let new_method = new.config.forward.code();
    let same_kind =
        old_method == new_method || (delivers_as_sent(old_method) && delivers_as_sent(new_method));
    if !same_kind {
        return false;
    }
    if new_method != FORWARD_FULLNAT {
        return true;
    }
    let Some(old_egress) = old_egress else {
        return false;
    };
    let count = (old_egress.source_count as usize).min(old_egress.sources.len());
    let old_sources = &old_egress.sources[..count];
    old_sources.len() == new.sources.len()
        && old_sources
            .iter()
            .zip(&new.sources)
            .all(|(old, new)| *old == address_bytes(*new).0)
}

impl Desired {
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
        let old_egress: HashMap<u32, Egress> = existing.egress.iter().copied().collect();
        let old_reals: HashMap<(u32, [u8; 16], u16), (u32, Real)> = existing
            .reals
            .iter()
            .map(|(id, real)| ((real.service_id, real.addr, real.port_be), (*id, *real)))
            .collect();
        // The previous id of a real, if its flows may go on to it.
        let kept_id = |key: &(u32, [u8; 16], u16), real: &DesiredReal| {
            old_reals
                .get(key)
                .copied()
                .filter(|(id, old)| keeps_its_flows(old, old_egress.get(id), real))
        };
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

        let real_key = |service: &DesiredService, real: &DesiredReal| {
            let (addr, _) = address_bytes(real.config.address);
            (service.id, addr, real.config.port.to_be())
        };
        let kept_reals: HashSet<u32> = self
            .services
            .iter()
            .flat_map(|service| service.reals.iter().map(move |real| (service, real)))
            .filter_map(|(service, real)| kept_id(&real_key(service, real), real).map(|(id, _)| id))
            .collect();
        let mut real_ids = IdAllocator::new(
            kept_reals,
            existing
                .reals
                .iter()
                .map(|(id, _)| *id)
                .chain(existing.recently_retired.iter().copied())
                .collect(),
            self.limits.reals,
        );
        for service_index in 0..self.services.len() {
            for real_index in 0..self.services[service_index].reals.len() {
                let key = real_key(
                    &self.services[service_index],
                    &self.services[service_index].reals[real_index],
                );
                let kept = kept_id(&key, &self.services[service_index].reals[real_index]);
                let checked = self.services[service_index].config.health_check.is_some();
                let real = &mut self.services[service_index].reals[real_index];
                let id = match kept {
                    // The previous daemon's MAC carries over, so that adopting writes back the
                    // entries the program is using instead of taking reals out until their
                    // MACs are read again. Not across a change of method: the MAC may be a
                    // router's now, or no longer. The neighbour refresh corrects it if it
                    // changed.
                    Some((id, old)) => {
                        // A verdict of down outlives the daemon (a restart must not send new
                        // flows to a real it knew dead until its checks pass again).
                        if old.flags & REAL_FAILED_CHECK != 0 && checked && !real.sorry {
                            real.healthy = false;
                        }
                        if old.flags & REAL_AVAILABLE != 0
                            && old.ifindex == real.ifindex
                            && old.forward == real.config.forward.code()
                        {
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
