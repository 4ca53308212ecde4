//! [`EbpfDataplane`] and [`EbpfReader`]: the traits over the XDP program's maps.
//!
//! The writer and the reader hold separate handles (duplicated file descriptors) on the maps
//! they share, so the admin socket reads counters and walks the flow table without ever
//! waiting for the task that writes.

pub mod batch;
mod capture;
mod element;
mod identities;
mod published;
mod reader;
mod readers;
mod sweep;
pub(crate) mod syscall;

use std::{hash::BuildHasher, ops::Range, os::fd::AsFd, sync::Arc};

use aya::maps::{
    Array, DevMapHash, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues,
};
pub use capture::{CaptureMaps, EbpfCapturer, LEASE, turn_off_left_capture};
pub use element::{insert_new, lookup_and_delete};
use identities::Identities;
use lb_common::{
    Counters, Egress, FORWARD_FULLNAT, Interface, MAP_CONNS, MAP_EGRESS, MAP_FLOWS,
    MAP_FRAGMENT_SERVICES, MAP_INTERFACES, MAP_REAL_OUT_STATS, MAP_REAL_STATS, MAP_REALS,
    MAP_REASON_STATS, MAP_REPLIES, MAP_RR_CURSOR, MAP_SCHEDULES, MAP_SERVICE_OUT_STATS,
    MAP_SERVICE_STATS, MAP_SERVICES, MAP_SETTINGS, MAP_TABLES, MAP_TX_PORTS, MAX_TABLE_SLOTS,
    OutCounters, Real, Service, ServiceKey, Settings, TableRange,
};
use published::{Conns, Reals, Schedules};
use readers::Readers;
pub use sweep::{
    PRESSURE_END_PERCENT, PRESSURE_FILL_PERCENT, SYN_RECV_UNDER_PRESSURE, SweepReport, Sweeper,
    is_gone, is_stale_half_open, under_pressure,
};

use super::{Dataplane, DataplaneError, map_err};
use crate::schedule::space::TableSpace;

/// The maps lbd writes.
pub struct EbpfDataplane {
    services: BpfHashMap<MapData, ServiceKey, Service>,
    fragment_services: BpfHashMap<MapData, ServiceKey, Service>,
    schedules: Schedules,
    reals: Reals,
    tables: MapData,
    /// Which slots of the tables map hold which service's halves.
    space: TableSpace,
    /// Table space of removed services, free again once a grace period has passed since (the
    /// count of grace periods when it was given up, the slots).
    quarantine: Vec<(u64, Range<u32>)>,
    interfaces: BpfHashMap<MapData, u32, Interface>,
    tx_ports: DevMapHash<MapData>,
    rr_cursor: PerCpuArray<MapData, u32>,
    service_stats: PerCpuArray<MapData, Counters>,
    real_stats: PerCpuArray<MapData, Counters>,
    service_out_stats: PerCpuArray<MapData, OutCounters>,
    real_out_stats: PerCpuArray<MapData, OutCounters>,
    settings: Array<MapData, Settings>,
    /// Not preallocated (see `Egress`): replacing or deleting an entry frees the old one only
    /// after a grace period, so these writes need none of `readers`' care. `None` when the
    /// object has no such map (a program that cannot tunnel or full-NAT): only reals that need
    /// an entry fail then.
    egress: Option<BpfHashMap<MapData, u32, Egress>>,
    /// Which id each service and real has, apart from their entries (see `identities.rs`).
    identities: Identities,
    readers: Readers,
}

/// The maps the program writes, for reading.
pub struct EbpfReader {
    service_stats: PerCpuArray<MapData, Counters>,
    real_stats: PerCpuArray<MapData, Counters>,
    service_out_stats: PerCpuArray<MapData, OutCounters>,
    real_out_stats: PerCpuArray<MapData, OutCounters>,
    reason_stats: PerCpuArray<MapData, Counters>,
    flows: MapData,
    /// `None` when the object has no replies map (a program without NAT).
    replies: Option<MapData>,
    conns: Arc<Conns>,
}

/// The four sides of a loaded program's maps: the writer, the reader, the flow sweep and the
/// capture (`lbadm dump`).
pub struct MapHandles {
    pub dataplane: EbpfDataplane,
    pub reader: EbpfReader,
    pub sweeper: Sweeper,
    pub capture: CaptureMaps,
}

impl EbpfDataplane {
    /// Takes the maps out of a loaded program: the writer, a reader and a sweeper, each
    /// with handles of its own.
    /// The handles to `ebpf`'s maps, and the id maps pinned in `pin_dir` (created there if
    /// missing; unpinned without a `pin_dir`).
    pub fn from_ebpf(
        ebpf: &mut aya::Ebpf,
        pin_dir: Option<&std::path::Path>,
    ) -> Result<MapHandles, DataplaneError> {
        let service_stats = take(ebpf, MAP_SERVICE_STATS)?;
        let real_stats = take(ebpf, MAP_REAL_STATS)?;
        let service_out_stats = take(ebpf, MAP_SERVICE_OUT_STATS)?;
        let real_out_stats = take(ebpf, MAP_REAL_OUT_STATS)?;
        let capture = CaptureMaps::take(ebpf)?;
        let flows = map_data(take(ebpf, MAP_FLOWS)?, MAP_FLOWS)?;
        let reals = map_data(take(ebpf, MAP_REALS)?, MAP_REALS)?;
        let settings = map_data(take(ebpf, MAP_SETTINGS)?, MAP_SETTINGS)?;
        let conns = Arc::new(Conns::new(map_data(take(ebpf, MAP_CONNS)?, MAP_CONNS)?)?);
        let schedules = Schedules::new(map_data(take(ebpf, MAP_SCHEDULES)?, MAP_SCHEDULES)?)?;
        let tables = map_data(take(ebpf, MAP_TABLES)?, MAP_TABLES)?;
        let slots = tables.info().map_err(map_err(MAP_TABLES))?.max_entries();
        let space = placed_tables(&schedules, slots)?;
        let flow_capacity = flows.info().map_err(map_err(MAP_FLOWS))?.max_entries();
        let replies = ebpf
            .take_map(MAP_REPLIES)
            .map(|raw| map_data(raw, MAP_REPLIES))
            .transpose()?;
        let reader_replies = replies
            .as_ref()
            .map(|replies| duplicate_data(replies, MAP_REPLIES))
            .transpose()?;
        let sweeper = Sweeper {
            flows: duplicate_data(&flows, MAP_FLOWS)?,
            flow_capacity: u64::from(flow_capacity),
            pressure: Default::default(),
            replies,
            conns: conns.clone(),
            reals: Reals::new(duplicate_data(&reals, MAP_REALS)?)?,
            settings: typed(
                Map::Array(duplicate_data(&settings, MAP_SETTINGS)?),
                MAP_SETTINGS,
            )?,
            orphans: Default::default(),
        };
        let reader = EbpfReader {
            service_stats: typed(
                duplicate(&service_stats, MAP_SERVICE_STATS)?,
                MAP_SERVICE_STATS,
            )?,
            real_stats: typed(duplicate(&real_stats, MAP_REAL_STATS)?, MAP_REAL_STATS)?,
            service_out_stats: typed(
                duplicate(&service_out_stats, MAP_SERVICE_OUT_STATS)?,
                MAP_SERVICE_OUT_STATS,
            )?,
            real_out_stats: typed(
                duplicate(&real_out_stats, MAP_REAL_OUT_STATS)?,
                MAP_REAL_OUT_STATS,
            )?,
            reason_stats: typed(take(ebpf, MAP_REASON_STATS)?, MAP_REASON_STATS)?,
            flows,
            replies: reader_replies,
            conns,
        };
        let services = map_data(take(ebpf, MAP_SERVICES)?, MAP_SERVICES)?;
        let identities = Identities::open(
            pin_dir,
            services
                .info()
                .map_err(map_err(MAP_SERVICES))?
                .max_entries(),
            reals.info().map_err(map_err(MAP_REALS))?.max_entries(),
        )?;
        let services = typed(Map::HashMap(services), MAP_SERVICES)?;
        let writer = Self {
            services,
            fragment_services: typed(take(ebpf, MAP_FRAGMENT_SERVICES)?, MAP_FRAGMENT_SERVICES)?,
            schedules,
            reals: Reals::new(reals)?,
            tables,
            space,
            quarantine: Vec::new(),
            interfaces: typed(take(ebpf, MAP_INTERFACES)?, MAP_INTERFACES)?,
            tx_ports: typed(take(ebpf, MAP_TX_PORTS)?, MAP_TX_PORTS)?,
            rr_cursor: typed(take(ebpf, MAP_RR_CURSOR)?, MAP_RR_CURSOR)?,
            service_stats: typed(service_stats, MAP_SERVICE_STATS)?,
            real_stats: typed(real_stats, MAP_REAL_STATS)?,
            service_out_stats: typed(service_out_stats, MAP_SERVICE_OUT_STATS)?,
            real_out_stats: typed(real_out_stats, MAP_REAL_OUT_STATS)?,
            settings: typed(Map::Array(settings), MAP_SETTINGS)?,
            egress: ebpf
                .take_map(MAP_EGRESS)
                .map(|raw| typed(raw, MAP_EGRESS))
                .transpose()?,
            identities,
            readers: Readers::default(),
        };
        Ok(MapHandles {
            dataplane: writer,
            reader,
            sweeper,
            capture,
        })
    }
}

fn take(ebpf: &mut aya::Ebpf, map: &'static str) -> Result<Map, DataplaneError> {
    ebpf.take_map(map).ok_or(DataplaneError::MissingMap { map })
}

fn typed<T: TryFrom<Map, Error = MapError>>(
    raw: Map,
    map: &'static str,
) -> Result<T, DataplaneError> {
    T::try_from(raw).map_err(map_err(map))
}

fn map_data(raw: Map, map: &'static str) -> Result<MapData, DataplaneError> {
    match raw {
        Map::Array(data) | Map::LruHashMap(data) | Map::HashMap(data) => Ok(data),
        _ => Err(DataplaneError::Map {
            map,
            source: MapError::InvalidName {
                name: format!("{map} has an unexpected type"),
            },
        }),
    }
}

/// A second handle on the same per-CPU array.
fn duplicate(raw: &Map, map: &'static str) -> Result<Map, DataplaneError> {
    match raw {
        Map::PerCpuArray(data) => Ok(Map::PerCpuArray(duplicate_data(data, map)?)),
        _ => Err(DataplaneError::Map {
            map,
            source: MapError::InvalidName {
                name: format!("{map} is not a per-CPU array"),
            },
        }),
    }
}

/// The table space the schedules (adopted from pinned maps, or fresh) already use. Slot 0 is
/// never given out: a zeroed range points there.
fn placed_tables(schedules: &Schedules, slots: u32) -> Result<TableSpace, DataplaneError> {
    let mut space = TableSpace::new(slots, 1);
    for (service_id, halves) in schedules.all()? {
        for range in halves.iter().filter(|range| range.capacity > 0) {
            if !space.mark_used(range.base..range.base + range.capacity) {
                return Err(DataplaneError::Syscall {
                    map: MAP_SCHEDULES,
                    call: "reading the placed tables",
                    source: std::io::Error::other(format!(
                        "service {service_id}'s table at {}..{} overlaps another or lies \
                         outside {MAP_TABLES}",
                        range.base,
                        range.base + range.capacity
                    )),
                });
            }
        }
    }
    Ok(space)
}

/// A second handle on the same kernel map, of any type.
fn duplicate_data(data: &MapData, map: &'static str) -> Result<MapData, DataplaneError> {
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| DataplaneError::Syscall {
            map,
            call: "dup",
            source,
        })?;
    MapData::from_fd(fd).map_err(map_err(map))
}

/// One value per possible CPU, as per-CPU maps take them.
fn per_cpu<T: aya::Pod>(
    map: &'static str,
    value: impl Fn(usize) -> T,
) -> Result<PerCpuValues<T>, DataplaneError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| DataplaneError::Syscall {
        map,
        call: "reading the possible CPUs",
        source,
    })?;
    PerCpuValues::try_from((0..cpus).map(value).collect::<Vec<_>>()).map_err(|source| {
        DataplaneError::Syscall {
            map,
            call: "per-CPU values",
            source,
        }
    })
}

fn zero_counters<T: aya::Pod + Default>(
    map: &mut PerCpuArray<MapData, T>,
    index: u32,
    name: &'static str,
) -> Result<(), DataplaneError> {
    let zeros = per_cpu(name, |_| T::default())?;
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

/// Writes a hash-map entry the program reads, if it changed, by the rule in `readers.rs`:
/// never right after another entry's memory went back to a map, and noting when this write
/// gives one back.
fn write_hash_entry<K: aya::Pod, V: aya::Pod + PartialEq>(
    map: &mut BpfHashMap<MapData, K, V>,
    name: &'static str,
    key: K,
    value: V,
    readers: &mut Readers,
) -> Result<(), DataplaneError> {
    let current = match map.get(&key, 0) {
        Ok(current) => Some(current),
        Err(MapError::KeyNotFound) => None,
        Err(source) => return Err(DataplaneError::Map { map: name, source }),
    };
    if current == Some(value) {
        return Ok(());
    }
    readers.before_hash_write();
    map.insert(key, value, 0).map_err(map_err(name))?;
    if current.is_some() {
        readers.retired_hash_element();
    }
    Ok(())
}

/// Removes a hash-map entry; a missing one is already removed.
fn remove_hash_entry<K: aya::Pod, V: aya::Pod>(
    map: &mut BpfHashMap<MapData, K, V>,
    name: &'static str,
    key: &K,
    readers: &mut Readers,
) -> Result<(), DataplaneError> {
    match map.remove(key) {
        // Already gone (aya reports a missing key as the syscall's ENOENT).
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Ok(()) => {
            readers.retired_hash_element();
            Ok(())
        }
        Err(source) => Err(DataplaneError::Map { map: name, source }),
    }
}

impl Dataplane for EbpfDataplane {
    fn set_interface(&mut self, ifindex: u32, interface: Interface) -> Result<(), DataplaneError> {
        write_hash_entry(
            &mut self.interfaces,
            MAP_INTERFACES,
            ifindex,
            interface,
            &mut self.readers,
        )
    }

    fn set_tx_port(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        // A device map frees its entries after a grace period itself.
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|error| DataplaneError::Syscall {
                map: MAP_TX_PORTS,
                call: "bpf_map_update_elem",
                source: std::io::Error::other(error.to_string()),
            })
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
        // The id first: a restart finds every id the program may have seen.
        self.identities.set_service(key, service.id)?;
        write_hash_entry(
            &mut self.services,
            MAP_SERVICES,
            key,
            service,
            &mut self.readers,
        )
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        remove_hash_entry(&mut self.services, MAP_SERVICES, key, &mut self.readers)?;
        self.identities.remove_service(key)
    }

    fn hide_service(&mut self, key: ServiceKey, service: Service) -> Result<(), DataplaneError> {
        self.identities.set_service(key, service.id)?;
        remove_hash_entry(&mut self.services, MAP_SERVICES, &key, &mut self.readers)
    }

    fn set_fragment_service(
        &mut self,
        key: ServiceKey,
        service: Service,
    ) -> Result<(), DataplaneError> {
        write_hash_entry(
            &mut self.fragment_services,
            MAP_FRAGMENT_SERVICES,
            key,
            service,
            &mut self.readers,
        )
    }

    fn remove_fragment_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        remove_hash_entry(
            &mut self.fragment_services,
            MAP_FRAGMENT_SERVICES,
            key,
            &mut self.readers,
        )
    }

    fn fragment_services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        let mut services = Vec::new();
        visit_entries(
            &self.fragment_services,
            MAP_FRAGMENT_SERVICES,
            |key, service| services.push((key, service)),
        )?;
        Ok(services)
    }

    fn set_real(&mut self, id: u32, real: Real) -> Result<(), DataplaneError> {
        let mut sources = Vec::new();
        if real.forward == FORWARD_FULLNAT
            && let Some(egress) = &self.egress
            && let Ok(entry) = egress.get(&id, 0)
        {
            let count = (entry.source_count as usize).min(entry.sources.len());
            sources.extend_from_slice(&entry.sources[..count]);
        }
        if real == Real::default() {
            self.reals.publish(id, real, &mut self.readers)?;
            self.identities.set_real(id, &real, &sources)
        } else {
            self.identities.set_real(id, &real, &sources)?;
            self.reals.publish(id, real, &mut self.readers)
        }
    }

    fn set_schedule(
        &mut self,
        service_id: u32,
        table: &[u32],
        capacity: u32,
    ) -> Result<(), DataplaneError> {
        if table.len() > capacity as usize || capacity > MAX_TABLE_SLOTS {
            return Err(DataplaneError::TableTooLong {
                service_id,
                len: table.len(),
                capacity,
            });
        }
        self.release_quarantine();
        if !self.quarantine.is_empty() && self.space.largest_free() < capacity {
            // The room a removed service gave up becomes usable after a grace period.
            self.readers.wait_now();
            self.release_quarantine();
        }
        let Self {
            schedules,
            tables,
            space,
            readers,
            ..
        } = self;
        schedules.publish(service_id, readers, |unused| {
            // No program run reads the unused half any more (`publish` waited if needed), so
            // its slots may move.
            let placed = if unused.capacity == capacity {
                unused
            } else {
                if unused.capacity > 0 {
                    space.free(unused.base..unused.base + unused.capacity);
                }
                let slots = space.allocate(capacity).ok_or(DataplaneError::TablesFull {
                    map: MAP_TABLES,
                    service_id,
                    needed: capacity,
                    free: space.free_slots(),
                    largest: space.largest_free(),
                })?;
                TableRange {
                    base: slots.start,
                    len: 0,
                    capacity,
                }
            };
            if !table.is_empty() {
                let slots: Vec<u32> = (placed.base..placed.base + table.len() as u32).collect();
                batch::update(tables.fd().as_fd(), &slots, table).map_err(|source| {
                    DataplaneError::Syscall {
                        map: MAP_TABLES,
                        call: "BPF_MAP_UPDATE_BATCH",
                        source,
                    }
                })?;
            }
            Ok(TableRange {
                len: table.len() as u32,
                ..placed
            })
        })
    }

    fn scheduled_services(&self) -> Result<Vec<u32>, DataplaneError> {
        Ok(self
            .schedules
            .all()?
            .into_iter()
            .filter(|(_, halves)| halves.iter().any(|half| half.capacity > 0))
            .map(|(id, _)| id)
            .collect())
    }

    fn remove_schedule(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        let grace_periods = self.readers.grace_periods();
        for range in self.schedules.clear(service_id)? {
            if range.capacity > 0 {
                self.quarantine
                    .push((grace_periods, range.base..range.base + range.capacity));
            }
        }
        Ok(())
    }

    /// The service entries, and a bare entry (its id) for each service the id map has but
    /// the service map does not: after an upgrade that changed the service entries' layout,
    /// the new map starts empty and the ids come from the id map alone.
    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        let mut services = Vec::new();
        visit_entries(&self.services, MAP_SERVICES, |key, service| {
            services.push((key, service))
        })?;
        for (key, id) in self.identities.services() {
            if !services.iter().any(|(known, _)| *known == key) {
                services.push((
                    key,
                    Service {
                        id,
                        ..Service::default()
                    },
                ));
            }
        }
        Ok(services)
    }

    /// The real entries in use, and for each real the id map has but the real map does not
    /// (see `services`), an entry with what the id map knows: service, address, port and
    /// method, not available (its MAC is read again).
    fn reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError> {
        let mut reals = self.reals.in_use()?;
        for (key, identity) in self.identities.reals() {
            if !reals.iter().any(|(id, _)| *id == identity.id) {
                reals.push((
                    identity.id,
                    Real {
                        addr: key.addr,
                        port_be: key.port_be,
                        service_id: key.service_id,
                        forward: identity.forward,
                        family: key.family,
                        ..Real::default()
                    },
                ));
            }
        }
        Ok(reals)
    }

    fn init_service(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        self.zero_service_counters(service_id)?;
        // Each CPU starts its walk of the schedule somewhere else: with all cursors at 0,
        // every CPU would send its first new flows to the first slots (the heaviest real).
        let random = std::collections::hash_map::RandomState::new();
        let cursors = per_cpu(MAP_RR_CURSOR, |cpu| {
            random.hash_one((service_id, cpu)) as u32
        })?;
        self.rr_cursor
            .set(service_id, cursors, 0)
            .map_err(map_err(MAP_RR_CURSOR))
    }

    fn init_real(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        self.zero_real_counters(real_id)
    }

    fn zero_service_counters(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        zero_counters(&mut self.service_stats, service_id, MAP_SERVICE_STATS)?;
        zero_counters(
            &mut self.service_out_stats,
            service_id,
            MAP_SERVICE_OUT_STATS,
        )
    }

    fn zero_real_counters(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        zero_counters(&mut self.real_stats, real_id, MAP_REAL_STATS)?;
        zero_counters(&mut self.real_out_stats, real_id, MAP_REAL_OUT_STATS)
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), DataplaneError> {
        let current = self.settings.get(&0, 0).map_err(map_err(MAP_SETTINGS))?;
        if current == settings {
            return Ok(());
        }
        // Each field is read on its own by the program: a mix of old and new timeouts during
        // the copy is a valid set.
        self.settings
            .set(0, settings, 0)
            .map_err(map_err(MAP_SETTINGS))
    }

    fn set_egress(&mut self, real_id: u32, egress: Egress) -> Result<(), DataplaneError> {
        let map = self
            .egress
            .as_mut()
            .ok_or(DataplaneError::MissingMap { map: MAP_EGRESS })?;
        match map.get(&real_id, 0) {
            Ok(current) if current == egress => return Ok(()),
            Ok(_) | Err(MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(DataplaneError::Map {
                    map: MAP_EGRESS,
                    source,
                });
            }
        }
        map.insert(real_id, egress, 0).map_err(map_err(MAP_EGRESS))
    }

    fn remove_egress(&mut self, real_id: u32) -> Result<(), DataplaneError> {
        let Some(map) = self.egress.as_mut() else {
            return Ok(());
        };
        match map.remove(&real_id) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(DataplaneError::Map {
                map: MAP_EGRESS,
                source,
            }),
        }
    }

    fn egresses(&self) -> Result<Vec<(u32, Egress)>, DataplaneError> {
        let mut entries = Vec::new();
        if let Some(map) = &self.egress {
            visit_entries(map, MAP_EGRESS, |id, egress| entries.push((id, egress)))?;
        }
        Ok(entries)
    }
}

impl EbpfDataplane {
    /// The table the program reads now for a service: the current half, as long as the
    /// schedule says.
    pub fn schedule(&self, service_id: u32) -> Result<Vec<u32>, DataplaneError> {
        let range = self.schedules.current(service_id)?;
        (range.base..range.base + range.len)
            .map(|slot| {
                element::lookup::<u32, u32>(self.tables.fd().as_fd(), &slot)
                    .map(Option::unwrap_or_default)
                    .map_err(|source| DataplaneError::Syscall {
                        map: MAP_TABLES,
                        call: "BPF_MAP_LOOKUP_ELEM",
                        source,
                    })
            })
            .collect()
    }

    /// A real's egress entry as the program reads it (tests, and whoever checks what lbd
    /// wrote).
    pub fn egress(&self, real_id: u32) -> Result<Option<Egress>, DataplaneError> {
        let Some(map) = &self.egress else {
            return Ok(None);
        };
        match map.get(&real_id, 0) {
            Ok(egress) => Ok(Some(egress)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(DataplaneError::Map {
                map: MAP_EGRESS,
                source,
            }),
        }
    }

    /// The settings entry as the program reads it.
    pub fn settings(&self) -> Result<Settings, DataplaneError> {
        self.settings.get(&0, 0).map_err(map_err(MAP_SETTINGS))
    }

    /// Frees the space of removed services once a grace period has passed since.
    fn release_quarantine(&mut self) {
        let now = self.readers.grace_periods();
        let space = &mut self.space;
        self.quarantine.retain(|(given_up_at, range)| {
            if now > *given_up_at {
                space.free(range.clone());
                false
            } else {
                true
            }
        });
    }

    /// Where each CPU is in the service's schedule (index = CPU): the slot its next new flow
    /// takes is this modulo the schedule's length.
    pub fn schedule_cursors(&self, service_id: u32) -> Result<Vec<u32>, DataplaneError> {
        let values = self
            .rr_cursor
            .get(&service_id, 0)
            .map_err(map_err(MAP_RR_CURSOR))?;
        Ok(values.iter().copied().collect())
    }
}
