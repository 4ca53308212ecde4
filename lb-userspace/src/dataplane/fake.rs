//! In-memory data planes for tests of the control logic: [`FakeDataplane`] records what the
//! reconciler writes, [`FakeReader`] holds what a test wants the admin socket to read.

use std::collections::HashMap;

use lb_common::{
    ConnCounts, Counters, Egress, Flow, FlowKey, Interface, MAX_TABLE_SLOTS, OutCounters, Real,
    Reason, Service, ServiceKey, Settings,
};

use super::{Dataplane, DataplaneError, DataplaneReader};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FakeDataplane {
    pub interfaces: HashMap<u32, Interface>,
    pub tx_ports: Vec<u32>,
    pub services: HashMap<ServiceKey, Service>,
    pub fragment_services: HashMap<ServiceKey, Service>,
    /// Standby services: ids kept, entries out of the program's map.
    pub hidden_services: HashMap<ServiceKey, Service>,
    pub reals: HashMap<u32, Real>,
    /// Real entries published so far (unchanged ones are not): tests check that an update
    /// writes only what changed.
    pub real_writes: usize,
    /// Service id → its schedule (both halves, as the map holds them).
    pub schedules: HashMap<u32, FakeSchedule>,
    /// Ring slots written so far.
    pub ring_writes: usize,
    /// Ids prepared for a new meaning, in order.
    pub initialised_services: Vec<u32>,
    pub initialised_reals: Vec<u32>,
    /// The settings entry, once written.
    pub settings: Option<Settings>,
    /// Real id → its egress entry (tunnel and full-NAT reals).
    pub egress: HashMap<u32, Egress>,
    /// Every write that changed something, in order (`real 2`, `schedule 1`, `service 1`):
    /// tests check the order that keeps the program from seeing a half-made state.
    pub writes: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FakeSchedule {
    pub generation: u32,
    pub halves: [Vec<u32>; 2],
}

impl FakeDataplane {
    /// The ring as the kernel would walk it now.
    pub fn active_ring(&self, key: &ServiceKey) -> Vec<u32> {
        let Some(service) = self.services.get(key) else {
            return Vec::new();
        };
        self.schedules
            .get(&service.id)
            .map(|schedule| schedule.halves[(schedule.generation & 1) as usize].clone())
            .unwrap_or_default()
    }
}

impl Dataplane for FakeDataplane {
    fn set_interface(&mut self, ifindex: u32, interface: Interface) -> Result<(), DataplaneError> {
        self.interfaces.insert(ifindex, interface);
        Ok(())
    }

    fn set_tx_port(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        if !self.tx_ports.contains(&ifindex) {
            self.tx_ports.push(ifindex);
        }
        Ok(())
    }

    fn service(&self, key: &ServiceKey) -> Result<Option<Service>, DataplaneError> {
        Ok(self.services.get(key).copied())
    }

    fn set_service(&mut self, key: ServiceKey, service: Service) -> Result<(), DataplaneError> {
        self.hidden_services.remove(&key);
        if self.services.insert(key, service) != Some(service) {
            self.writes.push(format!("service {}", service.id));
        }
        Ok(())
    }

    fn hide_service(&mut self, key: ServiceKey, service: Service) -> Result<(), DataplaneError> {
        self.hidden_services.insert(key, service);
        if self.services.remove(&key).is_some() {
            self.writes.push(format!("hide service {}", service.id));
        }
        Ok(())
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.hidden_services.remove(key);
        if let Some(service) = self.services.remove(key) {
            self.writes.push(format!("remove service {}", service.id));
        }
        Ok(())
    }

    fn set_fragment_service(
        &mut self,
        key: ServiceKey,
        service: Service,
    ) -> Result<(), DataplaneError> {
        if self.fragment_services.insert(key, service) != Some(service) {
            self.writes.push(format!("fragment service {}", service.id));
        }
        Ok(())
    }

    fn remove_fragment_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        if let Some(service) = self.fragment_services.remove(key) {
            self.writes
                .push(format!("remove fragment service {}", service.id));
        }
        Ok(())
    }

    fn fragment_services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        Ok(self
            .fragment_services
            .iter()
            .map(|(key, service)| (*key, *service))
            .collect())
    }

    fn set_real(&mut self, id: u32, real: Real) -> Result<(), DataplaneError> {
        if self.reals.get(&id).copied().unwrap_or_default() != real {
            self.real_writes += 1;
            self.reals.insert(id, real);
            self.writes.push(format!("real {id}"));
        }
        Ok(())
    }

    fn set_schedule(
        &mut self,
        service_id: u32,
        ring: &[u32],
        capacity: u32,
    ) -> Result<(), DataplaneError> {
        if ring.len() > capacity as usize || capacity > MAX_TABLE_SLOTS {
            return Err(DataplaneError::TableTooLong {
                service_id,
                len: ring.len(),
                capacity,
            });
        }
        self.ring_writes += ring.len();
        let schedule = self.schedules.entry(service_id).or_default();
        schedule.generation = schedule.generation.wrapping_add(1);
        schedule.halves[(schedule.generation & 1) as usize] = ring.to_vec();
        self.writes.push(format!("schedule {service_id}"));
        Ok(())
    }

    fn scheduled_services(&self) -> Result<Vec<u32>, DataplaneError> {
        Ok(self.schedules.keys().copied().collect())
    }

    fn remove_schedule(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        if self.schedules.remove(&service_id).is_some() {
            self.writes.push(format!("remove schedule {service_id}"));
        }
        Ok(())
    }

    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        Ok(self
            .services
            .iter()
            .chain(&self.hidden_services)
            .map(|(key, service)| (*key, *service))
            .collect())
    }

    fn reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError> {
        let mut reals: Vec<(u32, Real)> = self
            .reals
            .iter()
            .filter(|(_, real)| **real != Real::default())
            .map(|(id, real)| (*id, *real))
            .collect();
        reals.sort_by_key(|(id, _)| *id);
        Ok(reals)
    }

    fn init_service(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        self.initialised_services.push(service_id);
        Ok(())
    }

    fn init_real(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        self.initialised_reals.push(real_id);
        Ok(())
    }

    fn zero_service_counters(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        self.writes.push(format!("zero service {service_id}"));
        Ok(())
    }

    fn zero_real_counters(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        self.writes.push(format!("zero real {real_id}"));
        Ok(())
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), DataplaneError> {
        if self.settings != Some(settings) {
            self.settings = Some(settings);
            self.writes.push("settings".to_owned());
        }
        Ok(())
    }

    fn set_egress(&mut self, real_id: u32, egress: Egress) -> Result<(), DataplaneError> {
        if self.egress.insert(real_id, egress) != Some(egress) {
            self.writes.push(format!("egress {real_id}"));
        }
        Ok(())
    }

    fn remove_egress(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        if self.egress.remove(&real_id).is_some() {
            self.writes.push(format!("remove egress {real_id}"));
        }
        Ok(())
    }

    fn egresses(&self) -> Result<Vec<(u32, Egress)>, DataplaneError> {
        let mut entries: Vec<(u32, Egress)> = self
            .egress
            .iter()
            .map(|(id, egress)| (*id, *egress))
            .collect();
        entries.sort_unstable_by_key(|(id, _)| *id);
        Ok(entries)
    }
}

/// Counters and flows as a test sets them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FakeReader {
    pub service_stats: HashMap<u32, Counters>,
    pub real_stats: HashMap<u32, Counters>,
    pub service_out_stats: HashMap<u32, OutCounters>,
    pub real_out_stats: HashMap<u32, OutCounters>,
    pub flows: HashMap<FlowKey, Flow>,
    pub connections: HashMap<u32, ConnCounts>,
}

impl DataplaneReader for FakeReader {
    fn service_counters(&self, service_id: u32) -> Result<Counters, DataplaneError> {
        Ok(self
            .service_stats
            .get(&service_id)
            .copied()
            .unwrap_or_default())
    }

    fn real_counters(&self, real_id: u32) -> Result<Counters, DataplaneError> {
        Ok(self.real_stats.get(&real_id).copied().unwrap_or_default())
    }

    fn service_out_counters(&self, service_id: u32) -> Result<OutCounters, DataplaneError> {
        Ok(self
            .service_out_stats
            .get(&service_id)
            .copied()
            .unwrap_or_default())
    }

    fn real_out_counters(&self, real_id: u32) -> Result<OutCounters, DataplaneError> {
        Ok(self
            .real_out_stats
            .get(&real_id)
            .copied()
            .unwrap_or_default())
    }

    fn reason_counters(&self) -> Result<Vec<(Reason, Counters)>, DataplaneError> {
        Ok(Reason::ALL
            .iter()
            .map(|&reason| (reason, Counters::default()))
            .collect())
    }

    fn connections(&self, real_id: u32) -> Result<ConnCounts, DataplaneError> {
        Ok(self.connections.get(&real_id).copied().unwrap_or_default())
    }

    fn for_each_flow(&self, visit: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError> {
        self.flows.iter().for_each(|(key, flow)| visit(key, flow));
        Ok(())
    }

    fn merge_flow(&self, _key: &FlowKey, _flow: &Flow) -> Result<bool, DataplaneError> {
        // A test's flows are what it set: copies from a sync are not kept.
        Ok(true)
    }

    fn reply(&self, _key: &FlowKey) -> Result<Option<lb_common::Reply>, DataplaneError> {
        Ok(None)
    }

    fn merge_reply(
        &self,
        _: &FlowKey,
        _: &lb_common::Reply,
        _: &dyn Fn(&lb_common::Reply) -> bool,
    ) -> Result<super::ReplyMerge, DataplaneError> {
        Ok(super::ReplyMerge::Written)
    }
}
