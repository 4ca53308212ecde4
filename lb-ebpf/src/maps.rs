//! The maps, declared once. Names, key and value types are in `lb_common::maps`, whose table
//! says who writes and who reads each.
//!
//! Sizes here are small placeholders: the loader always sets the real ones (from the config's
//! `limits`), so loading the object for a test or for `xdp_pass` alone costs little memory.
//! Nothing is pinned by declaration; the loader pins each map under the instance's directory.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use lb_common::{
    ConnCounts, Counters, Egress, Flow, FlowKey, FragmentKey, FragmentOwner, Handoff, IcmpBudget,
    Interface, MAX_FRAGMENTED_DATAGRAMS, MAX_INTERFACES, MAX_L2_INTERFACES, OutCounters,
    Persistence, PersistenceKey, REASON_SLOTS, RealSlots, Reply, ReplyClaim, Schedule, Service,
    ServiceKey, Settings,
    capture::{CAPTURE_RING_BYTES, Capture},
};

const PLACEHOLDER_SERVICES: u32 = 16;
const PLACEHOLDER_REALS: u32 = 256;
const PLACEHOLDER_FLOWS: u32 = 1024;
const PLACEHOLDER_TABLE_SLOTS: u32 = 4096;

#[map(name = "LB_SERVICES_V2")]
pub static SERVICES: HashMap<ServiceKey, Service> =
    HashMap::with_max_entries(PLACEHOLDER_SERVICES, 0);

/// Mmapable: lbd switches a service to its new schedule with its own aligned store.
#[map(name = "LB_SCHEDULES_V2")]
pub static SCHEDULES: Array<Schedule> =
    Array::with_max_entries(PLACEHOLDER_SERVICES, BPF_F_MMAPABLE);

/// Mmapable: lbd publishes a new copy of a real with its own aligned store (see `RealSlots`).
#[map(name = "LB_REALS_V2")]
pub static REALS: Array<RealSlots> = Array::with_max_entries(PLACEHOLDER_REALS, BPF_F_MMAPABLE);

#[map(name = "LB_TABLES_V1")]
pub static TABLES: Array<u32> = Array::with_max_entries(PLACEHOLDER_TABLE_SLOTS, 0);

#[map(name = "LB_PERSIST_V1")]
pub static PERSISTENCE: LruHashMap<PersistenceKey, Persistence> =
    LruHashMap::with_max_entries(PLACEHOLDER_FLOWS, 0);

/// A plain hash, not an LRU: a flow leaves it only through a delete whose caller (the program
/// or lbd's sweep) then takes it out of `CONNS`, so the counts stay true.
#[map(name = "LB_FLOWS_V2")]
pub static FLOWS: HashMap<FlowKey, Flow> = HashMap::with_max_entries(PLACEHOLDER_FLOWS, 0);

/// Mmapable: lbd's sweep decrements counts with atomic operations on the same memory.
#[map(name = "LB_CONNS_V1")]
pub static CONNS: Array<ConnCounts> = Array::with_max_entries(PLACEHOLDER_REALS, BPF_F_MMAPABLE);

#[map(name = "LB_SETTINGS_V2")]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map(name = "LB_FRAGS_V2")]
pub static FRAGMENTS: LruHashMap<FragmentKey, FragmentOwner> =
    LruHashMap::with_max_entries(MAX_FRAGMENTED_DATAGRAMS, 0);

#[map(name = "LB_FRAG_SVC_V1")]
pub static FRAGMENT_SERVICES: HashMap<ServiceKey, Service> =
    HashMap::with_max_entries(PLACEHOLDER_SERVICES, 0);

#[map(name = "LB_IFACES_V2")]
pub static INTERFACES: HashMap<u32, Interface> = HashMap::with_max_entries(MAX_L2_INTERFACES, 0);

#[map(name = "LB_TX_PORTS_V1")]
pub static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_INTERFACES, 0);

#[map(name = "LB_RR_POS_V1")]
pub static RR_CURSOR: PerCpuArray<u32> = PerCpuArray::with_max_entries(PLACEHOLDER_SERVICES, 0);

#[map(name = "LB_STAT_SVC_V1")]
pub static SERVICE_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(PLACEHOLDER_SERVICES, 0);

#[map(name = "LB_STAT_REAL_V1")]
pub static REAL_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(PLACEHOLDER_REALS, 0);

#[map(name = "LB_STAT_RSN_V1")]
pub static REASON_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(REASON_SLOTS, 0);

/// NAT replies, by the service and real of their flow (ipvsadm's Out columns).
#[map(name = "LB_OUT_SVC_V1")]
pub static SERVICE_OUT_STATS: PerCpuArray<OutCounters> =
    PerCpuArray::with_max_entries(PLACEHOLDER_SERVICES, 0);

#[map(name = "LB_OUT_REAL_V1")]
pub static REAL_OUT_STATS: PerCpuArray<OutCounters> =
    PerCpuArray::with_max_entries(PLACEHOLDER_REALS, 0);

/// `lbadm dump`'s switch and filter (see `capture`): not a map the program looks up but a
/// global in a section of its own ([`lb_common::capture::CAPTURE_SECTION`]), read in place
/// with one load. aya makes the section an array of one entry, which lbd pins as
/// `LB_CAPTURE_V1`. Only read through raw pointers, volatile where it must not be cached.
#[unsafe(link_section = ".bss.capture")]
pub static mut CAPTURE: Capture = Capture::OFF;

#[map(name = "LB_CAP_RING_V1")]
pub static CAPTURE_RING: RingBuf = RingBuf::with_byte_size(CAPTURE_RING_BYTES, 0);

/// Not preallocated: an update replaces the element and frees the old one after an RCU grace
/// period, so the program never reads an entry half rewritten (see `Egress`).
#[map(name = "LB_EGRESS_V1")]
pub static EGRESS: HashMap<u32, Egress> =
    HashMap::with_max_entries(PLACEHOLDER_REALS, BPF_F_NO_PREALLOC);

/// Sized like the flow table: each NAT or full-NAT flow has one reply entry.
#[map(name = "LB_REPLIES_V1")]
pub static REPLIES: HashMap<FlowKey, Reply> = HashMap::with_max_entries(PLACEHOLDER_FLOWS, 0);

#[map(name = "LB_ICMP_TOKENS_V1")]
pub static ICMP_BUDGET: PerCpuArray<IcmpBudget> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "LB_REPLY_SCR")]
pub static REPLY_SCRATCH: PerCpuArray<ReplyClaim> = PerCpuArray::with_max_entries(1, 0);

/// The forwarding programs other than direct routing, by `forward::STAGE_*`; filled by the
/// loader each time it loads the programs. Pinned, with the scratch below (see `forward`).
#[map(name = "LB_FWD_PROGS_V1")]
pub static FORWARD_PROGRAMS: ProgramArray = ProgramArray::with_max_entries(4, 0);

/// What the balancer hands a forwarding program (`lb_common::Handoff`).
#[map(name = "LB_FWD_SCR_V1")]
pub static FORWARD_SCRATCH: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);
