//! In-memory data planes for tests of the control logic: [`FakeDataplane`] records what the
//! reconciler writes, [`FakeReader`] holds what a test wants the admin socket to read.

use std::collections::HashMap;

use lb_common::{
    Counters, Flow, FlowKey, Interface, RING_SLOTS, Real, Reason, Service, ServiceKey,
};

use super::{Dataplane, DataplaneError, DataplaneReader};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FakeDataplane {
    pub interfaces: HashMap<u32, Interface>,
    pub tx_ports: Vec<u32>,
    pub services: HashMap<ServiceKey, Service>,
    pub reals: HashMap<u32, Real>,
    /// Real entries published so far (unchanged ones are not): tests check that an update
    /// writes only what changed.
    pub real_writes: usize,
    /// (service id, ring half) → slots.
    pub rings: HashMap<(u32, u8), Vec<u32>>,
    /// Ring slots written so far.
    pub ring_writes: usize,
    /// Ids prepared for a new meaning, in order.
    pub initialised_services: Vec<u32>,
    pub initialised_reals: Vec<u32>,
}

impl FakeDataplane {
    /// The ring as the kernel would walk it: the first `ring_len` slots.
    pub fn active_ring(&self, key: &ServiceKey) -> Vec<u32> {
        let Some(service) = self.services.get(key) else {
            return Vec::new();
        };
        let ring = self
            .rings
            .get(&(service.id, service.ring_half))
            .cloned()
            .unwrap_or_default();
        ring.into_iter().take(service.ring_len as usize).collect()
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
        self.services.insert(key, service);
        Ok(())
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.services.remove(key);
        Ok(())
    }

    fn set_real(&mut self, id: u32, real: Real) -> Result<(), DataplaneError> {
        if self.reals.get(&id).copied().unwrap_or_default() != real {
            self.real_writes += 1;
            self.reals.insert(id, real);
        }
        Ok(())
    }

    fn set_ring(&mut self, service_id: u32, half: u8, ring: &[u32]) -> Result<(), DataplaneError> {
        if ring.len() > RING_SLOTS as usize {
            return Err(DataplaneError::RingTooLong {
                service_id,
                len: ring.len(),
            });
        }
        self.ring_writes += ring.len();
        let slots = self.rings.entry((service_id, half)).or_default();
        if slots.len() < ring.len() {
            slots.resize(ring.len(), 0);
        }
        slots[..ring.len()].copy_from_slice(ring);
        Ok(())
    }

    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        Ok(self
            .services
            .iter()
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
}

/// Counters and flows as a test sets them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FakeReader {
    pub service_stats: HashMap<u32, Counters>,
    pub real_stats: HashMap<u32, Counters>,
    pub flows: HashMap<FlowKey, Flow>,
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

    fn reason_counters(&self) -> Result<Vec<(Reason, Counters)>, DataplaneError> {
        Ok(Reason::ALL
            .iter()
            .map(|&reason| (reason, Counters::default()))
            .collect())
    }

    fn for_each_flow(&self, visit: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError> {
        self.flows.iter().for_each(|(key, flow)| visit(key, flow));
        Ok(())
    }
}
