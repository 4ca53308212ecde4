//! What the control plane writes to and reads from the data plane.
//!
//! [`Dataplane`] is the seam: [`EbpfDataplane`] implements it over the XDP program's maps, and
//! [`FakeDataplane`] in memory, so the control logic (`state`) is tested without root.

use std::collections::HashMap;

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues};
use lb_common::{
    Counters, Flow, FlowKey, Interface, MAP_FLOWS, MAP_INTERFACES, MAP_REAL_STATS, MAP_REALS,
    MAP_REASON_STATS, MAP_RING, MAP_SERVICE_STATS, MAP_SERVICES, RING_SLOTS, Real, Reason, Service,
    ServiceKey, ring_index,
};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {map} is missing from the program")]
    MissingMap { map: &'static str },
    #[error("schedule of service {service_id} has {len} slots, more than {RING_SLOTS}")]
    RingTooLong { service_id: u32, len: usize },
}

/// The data plane as the control plane sees it. Ids are allocated by the caller; id 0 is never
/// used. Writes are single-entry updates, each atomic for the XDP program.
pub trait Dataplane {
    /// Source MAC for frames leaving `ifindex`.
    fn set_interface(&mut self, ifindex: u32, interface: Interface) -> Result<(), DataplaneError>;
    /// The service entry the program sees now, if any.
    fn service(&self, key: &ServiceKey) -> Result<Option<Service>, DataplaneError>;
    fn set_service(&mut self, key: ServiceKey, service: Service) -> Result<(), DataplaneError>;
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError>;
    /// Writing `Real::default()` retires the id: flows still pointing to it get rescheduled.
    fn set_real(&mut self, id: u32, real: Real) -> Result<(), DataplaneError>;
    /// The first `ring.len()` slots of the service's schedule.
    /// The first `ring.len()` slots of one half (0 or 1) of the service's schedule ring.
    fn set_ring(&mut self, service_id: u32, half: u8, ring: &[u32]) -> Result<(), DataplaneError>;
    /// Counters summed over CPUs.
    fn service_counters(&self, service_id: u32) -> Result<Counters, DataplaneError>;
    fn real_counters(&self, real_id: u32) -> Result<Counters, DataplaneError>;
    fn reason_counters(&self) -> Result<Vec<(Reason, Counters)>, DataplaneError>;
    /// Visits every entry of the flow table. Entries come and go while it runs (the program
    /// keeps inserting); each one visited is consistent.
    fn for_each_flow(&self, visit: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError>;
    /// Every service entry, e.g. those a previous daemon left in pinned maps.
    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError>;
    /// Every real id in use (entry not `Real::default()`), with its entry.
    fn reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError>;
    /// Zeroes the counters of a service and a real id, before an id is given a new meaning.
    fn reset_service_counters(&mut self, service_id: u32) -> Result<(), DataplaneError>;
    fn reset_real_counters(&mut self, real_id: u32) -> Result<(), DataplaneError>;
}

/// The XDP program's maps.
pub struct EbpfDataplane {
    services: BpfHashMap<MapData, ServiceKey, Service>,
    reals: Array<MapData, Real>,
    ring: Array<MapData, u32>,
    interfaces: BpfHashMap<MapData, u32, Interface>,
    service_stats: PerCpuArray<MapData, Counters>,
    real_stats: PerCpuArray<MapData, Counters>,
    reason_stats: PerCpuArray<MapData, Counters>,
    flows: BpfHashMap<MapData, FlowKey, Flow>,
}

impl EbpfDataplane {
    /// Takes the maps it needs out of a loaded program.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self {
            services: typed(ebpf, MAP_SERVICES)?,
            reals: typed(ebpf, MAP_REALS)?,
            ring: typed(ebpf, MAP_RING)?,
            interfaces: typed(ebpf, MAP_INTERFACES)?,
            service_stats: typed(ebpf, MAP_SERVICE_STATS)?,
            real_stats: typed(ebpf, MAP_REAL_STATS)?,
            reason_stats: typed(ebpf, MAP_REASON_STATS)?,
            flows: typed(ebpf, MAP_FLOWS)?,
        })
    }
}

fn typed<T: TryFrom<Map, Error = MapError>>(
    ebpf: &mut aya::Ebpf,
    map: &'static str,
) -> Result<T, DataplaneError> {
    let raw = ebpf
        .take_map(map)
        .ok_or(DataplaneError::MissingMap { map })?;
    T::try_from(raw).map_err(|source| DataplaneError::Map { map, source })
}

fn zero(
    map: &mut PerCpuArray<MapData, Counters>,
    index: u32,
    name: &'static str,
) -> Result<(), DataplaneError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| DataplaneError::Map {
        map: name,
        source: MapError::IoError(source),
    })?;
    let zeros = PerCpuValues::try_from(vec![Counters::default(); cpus]).map_err(|source| {
        DataplaneError::Map {
            map: name,
            source: MapError::IoError(source),
        }
    })?;
    map.set(index, zeros, 0).map_err(map_err(name))
}

/// Visits every entry of a hash map that the program may change meanwhile.
fn visit_entries<K: aya::Pod, V: aya::Pod>(
    map: &BpfHashMap<MapData, K, V>,
    name: &'static str,
    mut visit: impl FnMut(K, V),
) -> Result<(), DataplaneError> {
    for entry in map.iter() {
        match entry {
            Ok((key, value)) => visit(key, value),
            // Deleted or evicted between listing its key and reading it.
            Err(MapError::KeyNotFound) => continue,
            Err(source) => return Err(DataplaneError::Map { map: name, source }),
        }
    }
    Ok(())
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

fn sum_cpus(
    map: &PerCpuArray<MapData, Counters>,
    index: u32,
    name: &'static str,
) -> Result<Counters, DataplaneError> {
    let per_cpu = map.get(&index, 0).map_err(map_err(name))?;
    let mut total = Counters::default();
    for counters in per_cpu.iter() {
        total.add(counters);
    }
    Ok(total)
}

impl Dataplane for EbpfDataplane {
    fn set_interface(&mut self, ifindex: u32, interface: Interface) -> Result<(), DataplaneError> {
        self.interfaces
            .insert(ifindex, interface, 0)
            .map_err(map_err(MAP_INTERFACES))
    }

    fn service(&self, key: &ServiceKey) -> Result<Option<Service>, DataplaneError> {
        match self.services.get(key, 0) {
            Ok(service) => Ok(Some(service)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(DataplaneError::Map {
                map: MAP_SERVICES,
                source,
            }),
        }
    }

    fn set_service(&mut self, key: ServiceKey, service: Service) -> Result<(), DataplaneError> {
        self.services
            .insert(key, service, 0)
            .map_err(map_err(MAP_SERVICES))
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        match self.services.remove(key) {
            Err(MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(source) => Err(DataplaneError::Map {
                map: MAP_SERVICES,
                source,
            }),
        }
    }

    fn set_real(&mut self, id: u32, real: Real) -> Result<(), DataplaneError> {
        self.reals.set(id, real, 0).map_err(map_err(MAP_REALS))
    }

    fn set_ring(&mut self, service_id: u32, half: u8, ring: &[u32]) -> Result<(), DataplaneError> {
        if ring.len() > RING_SLOTS as usize {
            return Err(DataplaneError::RingTooLong {
                service_id,
                len: ring.len(),
            });
        }
        for (slot, &real_id) in ring.iter().enumerate() {
            self.ring
                .set(ring_index(service_id, half, slot as u32), real_id, 0)
                .map_err(map_err(MAP_RING))?;
        }
        Ok(())
    }

    fn service_counters(&self, service_id: u32) -> Result<Counters, DataplaneError> {
        sum_cpus(&self.service_stats, service_id, MAP_SERVICE_STATS)
    }

    fn real_counters(&self, real_id: u32) -> Result<Counters, DataplaneError> {
        sum_cpus(&self.real_stats, real_id, MAP_REAL_STATS)
    }

    fn reason_counters(&self) -> Result<Vec<(Reason, Counters)>, DataplaneError> {
        Reason::ALL
            .iter()
            .map(|&reason| {
                Ok((
                    reason,
                    sum_cpus(&self.reason_stats, reason.index(), MAP_REASON_STATS)?,
                ))
            })
            .collect()
    }

    fn for_each_flow(&self, visit: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError> {
        visit_entries(&self.flows, MAP_FLOWS, |key, flow| visit(&key, &flow))
    }

    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        let mut services = Vec::new();
        visit_entries(&self.services, MAP_SERVICES, |key, service| {
            services.push((key, service))
        })?;
        Ok(services)
    }

    fn reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError> {
        let mut reals = Vec::new();
        for (id, entry) in self.reals.iter().enumerate() {
            let real = entry.map_err(map_err(MAP_REALS))?;
            if real != Real::default() {
                reals.push((id as u32, real));
            }
        }
        Ok(reals)
    }

    fn reset_service_counters(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        zero(&mut self.service_stats, service_id, MAP_SERVICE_STATS)
    }

    fn reset_real_counters(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        zero(&mut self.real_stats, real_id, MAP_REAL_STATS)
    }
}

/// An in-memory data plane for tests of the control logic.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FakeDataplane {
    pub interfaces: HashMap<u32, Interface>,
    pub services: HashMap<ServiceKey, Service>,
    pub reals: HashMap<u32, Real>,
    /// (service id, ring half) → slots.
    pub rings: HashMap<(u32, u8), Vec<u32>>,
    /// Ring slots written so far: tests check that an update writes only what changed.
    pub ring_writes: usize,
    pub service_stats: HashMap<u32, Counters>,
    pub real_stats: HashMap<u32, Counters>,
    pub flows: HashMap<FlowKey, Flow>,
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
        self.reals.insert(id, real);
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

    fn reset_service_counters(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        self.service_stats.remove(&service_id);
        Ok(())
    }

    fn reset_real_counters(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        self.real_stats.remove(&real_id);
        Ok(())
    }
}
