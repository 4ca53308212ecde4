//! The maps, declared once. Names, key and value types are in `lb_common::maps`, whose table
//! says who writes and who reads each. Sizes given here are defaults; the loader resizes the
//! ones the config's `limits` key governs.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use lb_common::{
    Counters, DEFAULT_MAX_FLOWS, DEFAULT_MAX_REALS, DEFAULT_MAX_SERVICES, Flow, FlowKey, Interface,
    MAX_INTERFACES, REASON_SLOTS, RING_SLOTS, Real, Service, ServiceKey,
};

#[map(name = "LB_SERVICES_V1")]
pub static SERVICES: HashMap<ServiceKey, Service> = HashMap::pinned(DEFAULT_MAX_SERVICES, 0);

#[map(name = "LB_REALS_V1")]
pub static REALS: Array<Real> = Array::pinned(DEFAULT_MAX_REALS, 0);

#[map(name = "LB_RING_V1")]
pub static RING: Array<u32> = Array::pinned(DEFAULT_MAX_SERVICES * RING_SLOTS, 0);

#[map(name = "LB_FLOWS_V1")]
pub static FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::pinned(DEFAULT_MAX_FLOWS, 0);

#[map(name = "LB_IFACES_V1")]
pub static INTERFACES: HashMap<u32, Interface> = HashMap::pinned(MAX_INTERFACES, 0);

#[map(name = "LB_RR_POS_V1")]
pub static RR_CURSOR: PerCpuArray<u32> = PerCpuArray::pinned(DEFAULT_MAX_SERVICES, 0);

#[map(name = "LB_STAT_SVC_V1")]
pub static SERVICE_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(DEFAULT_MAX_SERVICES, 0);

#[map(name = "LB_STAT_REAL_V1")]
pub static REAL_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(DEFAULT_MAX_REALS, 0);

#[map(name = "LB_STAT_RSN_V1")]
pub static REASON_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(REASON_SLOTS, 0);
