//! The writes that put a [`Desired`] into the data plane, in an order that never lets the
//! program see a half-made state.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use lb_common::{
    Egress, FORWARD_FULLNAT, FORWARD_NAT, Interface, MAX_LOCAL_SOURCES, REAL_AVAILABLE,
    REAL_FAILED_CHECK, REAL_TAKES_NEW_FLOWS, Real, SETTINGS_TRANSLATES_REPLIES, Service,
    ServiceKey,
};

use super::{Desired, DesiredReal, DesiredService, Dirty, ReconcileError, address_bytes};
use crate::{
    config::{Forward, Tunnel},
    dataplane::Dataplane,
    schedule::{self, Candidate},
};

impl Desired {
    /// Writes everything: first what [`Desired::adopt`] found gone (services removed before
    /// anything else, so no new flow goes there), then the settings and the interfaces, then
    /// every service, then the reals no ring names any more are retired, which sends their
    /// remaining flows elsewhere, and last the egress entries no real needs any more (a real
    /// retired, or no longer tunnelled or full-NATed). Fragment services that are not wanted
    /// as they are go first (they name service ids, which a removed service may hand to a new
    /// one) and come back last.
    pub fn apply(&mut self, dataplane: &mut dyn Dataplane) -> Result<(), ReconcileError> {
        let pending = std::mem::take(&mut self.pending);
        let fragment_services = self.fragment_services();
        for (key, entry) in dataplane.fragment_services()? {
            // An entry naming a service of its own VIP stays until it is overwritten below;
            // one for a VIP no longer served, or naming a service id that is gone or given to
            // another VIP, goes before anything else.
            let names_own_service = self
                .services
                .iter()
                .any(|service| service.id == entry.id && fragment_key(service) == key);
            if !fragment_services.contains_key(&key) || !names_own_service {
                dataplane.remove_fragment_service(&key)?;
            }
        }
        for key in &pending.removed_services {
            dataplane.remove_service(key)?;
        }
        // The table space of every service id no service has now (removed ones, and any a
        // daemon stopped half-way left): a reused id keeps its space, which its new table
        // reuses or moves.
        for id in dataplane.scheduled_services()? {
            if !self.services.iter().any(|service| service.id == id) {
                dataplane.remove_schedule(id)?;
            }
        }
        for &id in &pending.fresh_service_ids {
            dataplane.init_service(id)?;
        }
        for &id in &pending.fresh_real_ids {
            dataplane.init_real(id)?;
        }
        // Replies of NAT reals a previous daemon left are still looked for until those reals
        // are retired below; the settings are written as this config wants them after that.
        let mut settings = self.settings();
        let translated_before = dataplane.reals()?.iter().any(|(_, real)| {
            real.flags & REAL_AVAILABLE != 0
                && matches!(real.forward, FORWARD_NAT | FORWARD_FULLNAT)
        });
        if translated_before {
            settings.flags |= SETTINGS_TRANSLATES_REPLIES;
        }
        dataplane.set_settings(settings)?;
        for interface in &self.interfaces {
            if interface.vlan.is_none() {
                dataplane.set_tx_port(interface.index)?;
            }
            let (vlan_tci_be, vlan_proto_be) = match interface.vlan {
                Some(vlan) => (vlan.id.to_be(), vlan.protocol.to_be()),
                None => (0, 0),
            };
            dataplane.set_interface(
                interface.index,
                Interface {
                    mac: interface.mac,
                    vlan_tci_be,
                    vlan_proto_be,
                    mtu: u16::try_from(interface.mtu).unwrap_or(u16::MAX),
                    egress_ifindex: interface.egress,
                },
            )?;
        }
        let all: BTreeSet<u32> = self.services.iter().map(|service| service.id).collect();
        self.apply_services(dataplane, &all)?;
        for (key, entry) in fragment_services {
            dataplane.set_fragment_service(key, entry)?;
        }
        for &id in &pending.retired_reals {
            dataplane.set_real(id, Real::default())?;
        }
        let needed: BTreeSet<u32> = self
            .services
            .iter()
            .flat_map(|service| {
                service
                    .reals
                    .iter()
                    .filter(move |real| egress_entry(service, real).is_some())
            })
            .map(|real| real.id)
            .collect();
        for id in dataplane.egress_ids()? {
            if !needed.contains(&id) {
                dataplane.remove_egress(id)?;
            }
        }
        if translated_before {
            dataplane.set_settings(self.settings())?;
        }
        Ok(())
    }

    /// Per VIP and protocol (a service key with port 0), the service whose schedule places
    /// non-first fragments that came before their first fragment: the one with the lowest
    /// port among those with a real that can take new flows (the all-ports service when it
    /// is one of them), else the one with the lowest port. Any fixed choice keeps a
    /// datagram's fragments together; this one is easy to state, and does not drop fragments
    /// while another service of the VIP could take them.
    pub fn fragment_services(&self) -> HashMap<ServiceKey, Service> {
        let mut chosen: HashMap<ServiceKey, &DesiredService> = HashMap::new();
        let rank = |service: &DesiredService| (!schedulable(service), service.config.port);
        for service in self.services.iter().filter(|service| self.serves(service)) {
            let slot = chosen.entry(fragment_key(service)).or_insert(service);
            if rank(service) < rank(slot) {
                *slot = service;
            }
        }
        chosen
            .into_iter()
            .map(|(key, service)| (key, service_entry(service)))
            .collect()
    }

    /// Writes what a change touched, in the order [`Desired::apply_services`] explains: real
    /// entries that may take packets, the schedules, then real entries that may not.
    pub fn apply_dirty(
        &self,
        dataplane: &mut dyn Dataplane,
        dirty: &Dirty,
    ) -> Result<(), ReconcileError> {
        let touched = |available: bool| {
            self.services.iter().flat_map(move |service| {
                service
                    .reals
                    .iter()
                    .filter(move |real| {
                        real.available() == available
                            && dirty.reals.contains(&(service.id, real.id))
                    })
                    .map(move |real| (service, real))
            })
        };
        for (service, real) in touched(true) {
            write_real(dataplane, service, real)?;
        }
        self.apply_services(dataplane, &dirty.rings)?;
        // A schedule that emptied or filled may change which service places early fragments.
        let touched_vips: BTreeSet<([u8; 16], u8, u8)> = self
            .services
            .iter()
            .filter(|service| dirty.rings.contains(&service.id))
            .map(|service| vip_of(&fragment_key(service)))
            .collect();
        for (key, entry) in self.fragment_services() {
            if touched_vips.contains(&vip_of(&key)) {
                dataplane.set_fragment_service(key, entry)?;
            }
        }
        for (service, real) in touched(false) {
            write_real(dataplane, service, real)?;
        }
        Ok(())
    }

    /// Makes `standby` the VIPs whose services the program does not forward, and writes that:
    /// the services of VIPs leaving standby get their entries (and fragment entries) back,
    /// those of VIPs entering it lose them. Their reals and schedules stay written (the
    /// flows connection sync copies here point at them).
    pub fn set_standby(
        &mut self,
        dataplane: &mut dyn Dataplane,
        standby: BTreeSet<IpAddr>,
    ) -> Result<(), ReconcileError> {
        let changed: BTreeSet<IpAddr> = self
            .standby
            .symmetric_difference(&standby)
            .copied()
            .collect();
        self.standby = standby;
        let ids: BTreeSet<u32> = self
            .services
            .iter()
            .filter(|service| changed.contains(&service.config.vip))
            .map(|service| service.id)
            .collect();
        let wanted = self.fragment_services();
        // Fragment entries first when going to standby (they name the services), last when
        // coming back (after the services they name).
        let touched_keys: std::collections::HashSet<ServiceKey> = self
            .services
            .iter()
            .filter(|service| ids.contains(&service.id))
            .map(fragment_key)
            .collect();
        for key in &touched_keys {
            if !wanted.contains_key(key) {
                dataplane.remove_fragment_service(key)?;
            }
        }
        self.apply_services(dataplane, &ids)?;
        for key in &touched_keys {
            if let Some(entry) = wanted.get(key) {
                dataplane.set_fragment_service(*key, *entry)?;
            }
        }
        Ok(())
    }

    /// Writes the services with these ids, their reals and their schedules.
    ///
    /// Reals that may take packets first (a ring slot never names a real not written yet),
    /// then the new schedule (written into the ring half not in use, then switched to), then
    /// the service entry (so a new service appears with its schedule complete), and last the
    /// reals that may not take packets (so the schedule no longer names them when they go: a
    /// new flow is never sent to a slot whose real just left). A real's egress entry is
    /// written before its real entry. Entries that did not change are not rewritten.
    pub fn apply_services(
        &self,
        dataplane: &mut dyn Dataplane,
        ids: &BTreeSet<u32>,
    ) -> Result<(), ReconcileError> {
        for service in self.services.iter().filter(|s| ids.contains(&s.id)) {
            for real in service.reals.iter().filter(|real| real.available()) {
                write_real(dataplane, service, real)?;
            }
            dataplane.set_schedule(
                service.id,
                &self.ring(service)?,
                schedule::capacity(&service.config),
            )?;
            if self.serves(service) {
                dataplane.set_service(service.key, service_entry(service))?;
            } else {
                dataplane.hide_service(service.key, service_entry(service))?;
            }
            for real in service.reals.iter().filter(|real| !real.available()) {
                write_real(dataplane, service, real)?;
            }
        }
        Ok(())
    }

    /// The service's schedule over the reals that can take new flows now; the sorry server
    /// alone when none of them can.
    pub fn ring(&self, service: &DesiredService) -> Result<Vec<u32>, ReconcileError> {
        let candidate = |real: &DesiredReal| Candidate {
            real_id: real.id,
            weight: real.config.weight,
            address: real.config.address,
            port: real.config.port,
        };
        let mut candidates: Vec<Candidate> = service
            .reals
            .iter()
            .filter(|real| !real.sorry && real.schedulable())
            .map(candidate)
            .collect();
        if let Some(sorry) = sorry_in_use(service) {
            candidates = vec![candidate(sorry)];
        }
        schedule::table(&service.config, &candidates).map_err(|source| ReconcileError::Schedule {
            service: service.config.name(),
            source,
        })
    }
}

/// The key of a service's VIP and protocol in the fragment services map.
fn fragment_key(service: &DesiredService) -> ServiceKey {
    ServiceKey {
        port_be: 0,
        ..service.key
    }
}

fn vip_of(key: &ServiceKey) -> ([u8; 16], u8, u8) {
    (key.vip, key.protocol, key.family)
}

/// Whether the service's schedule has a slot: a real that may take new flows, with a weight.
fn schedulable(service: &DesiredService) -> bool {
    service
        .reals
        .iter()
        .any(|real| real.schedulable() && real.config.weight > 0)
}

/// Whether a real of the service, not its sorry server, may take new flows.
fn has_live_real(service: &DesiredService) -> bool {
    service
        .reals
        .iter()
        .any(|real| !real.sorry && real.schedulable() && real.config.weight > 0)
}

/// The service's sorry server when it is the one taking new flows: it can, and no real can.
pub fn sorry_in_use(service: &DesiredService) -> Option<&DesiredReal> {
    service
        .reals
        .iter()
        .find(|real| real.sorry && real.schedulable())
        .filter(|_| !has_live_real(service))
}

/// Writes a real's egress entry if it needs one, then its real entry: the program never
/// finds a tunnel or full-NAT real without what it needs to send to it.
fn write_real(
    dataplane: &mut dyn Dataplane,
    service: &DesiredService,
    real: &DesiredReal,
) -> Result<(), ReconcileError> {
    if let Some(egress) = egress_entry(service, real) {
        dataplane.set_egress(real.id, egress)?;
    }
    dataplane.set_real(real.id, real_entry(service, real))?;
    Ok(())
}

/// What a tunnel or full-NAT real needs beyond its real entry; `None` for the others.
pub fn egress_entry(service: &DesiredService, real: &DesiredReal) -> Option<Egress> {
    let forward = real.config.forward;
    if !matches!(forward, Forward::Tun | Forward::Fullnat) {
        return None;
    }
    let mut egress = Egress::default();
    for (slot, source) in egress.sources.iter_mut().zip(&real.sources) {
        *slot = address_bytes(*source).0;
    }
    egress.source_count = real.sources.len().min(MAX_LOCAL_SOURCES) as u32;
    if forward == Forward::Tun {
        egress.tunnel = service.config.tunnel.code();
        if service.config.tunnel == Tunnel::Gue {
            egress.gue_port_be = service.config.gue_port.to_be();
        }
    }
    Some(egress)
}

fn service_entry(service: &DesiredService) -> Service {
    let (persistence_s, persistence_prefix) = match service.config.persistence {
        Some(persistence) => (persistence.timeout.as_secs() as u32, persistence.prefix),
        None => (0, 0),
    };
    Service {
        id: service.id,
        flags: 0,
        forward: service.config.forward.code(),
        scheduler: service.config.scheduler.code(),
        persistence_prefix,
        _pad: 0,
        persistence_s,
    }
}

pub(super) fn real_entry(service: &DesiredService, real: &DesiredReal) -> Real {
    let (addr, family) = address_bytes(real.config.address);
    Real {
        addr,
        mac: real.mac.unwrap_or_default(),
        port_be: real.config.port.to_be(),
        ifindex: real.ifindex,
        service_id: service.id,
        flags: real_flags(service, real),
        forward: real.config.forward.code(),
        family,
        _pad: [0; 2],
    }
}

fn real_flags(service: &DesiredService, real: &DesiredReal) -> u32 {
    let mut flags = 0;
    if real.available() {
        flags |= REAL_AVAILABLE;
    }
    // A sorry server takes new flows only while it stands in for the reals (a persistent
    // client's entry must not keep sending there once they are back).
    let takes_new_flows = if real.sorry {
        sorry_in_use(service).is_some()
    } else {
        real.schedulable() && real.config.weight > 0
    };
    if takes_new_flows {
        flags |= REAL_TAKES_NEW_FLOWS;
    }
    // A sorry server is never checked.
    if !real.healthy && !real.sorry {
        flags |= REAL_FAILED_CHECK;
    }
    flags
}
