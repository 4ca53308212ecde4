//! The map inventory: one name, one key type and one value type per map.
//!
//! | map | key → value | written by | read by |
//! | --- | --- | --- | --- |
//! | [`MAP_SERVICES`] | [`ServiceKey`] → [`Service`] | lbd | XDP |
//! | [`MAP_SCHEDULES`] | service id → [`Schedule`] (mmapable; see there) | lbd | XDP |
//! | [`MAP_REALS`] | real id → [`RealSlots`] (mmapable; see there) | lbd | XDP |
//! | [`MAP_TABLES`] | slot → real id (every service's schedule tables, where [`Schedule`] says) | lbd | XDP |
//! | [`MAP_PERSISTENCE`] | [`PersistenceKey`] → [`Persistence`] (LRU) | XDP | XDP |
//! | [`MAP_FLOWS`] | [`FlowKey`] → [`Flow`] (hash; lbd sweeps expired flows) | XDP, lbd (sweep) | XDP, lbd (`-Lnc`) |
//! | [`MAP_CONNS`] | real id → [`crate::ConnCounts`] (mmapable, atomic adds) | XDP, lbd (sweep) | XDP, lbd |
//! | [`MAP_SETTINGS`] | 0 → [`crate::Settings`] (timeouts, flags) | lbd | XDP |
//! | [`MAP_EGRESS`] | real id → [`Egress`] (tunnel and full-NAT details; hash, not preallocated) | lbd | XDP |
//! | [`MAP_REPLIES`] | [`FlowKey`] of a reply as the real sends it → [`Reply`] (NAT, full NAT) | XDP, lbd (sweep) | XDP |
//! | [`MAP_ICMP_BUDGET`] | 0 → [`IcmpBudget`] (per CPU) | XDP | XDP |
//! | [`MAP_FORWARD_PROGRAMS`] | `FORWARD_STAGES` index → program (tail calls) | lbd (loader) | XDP |
//! | [`MAP_FORWARD_SCRATCH`] | 0 → [`Handoff`] (per CPU) | XDP (balancer) | XDP (forwarding programs) |
//! | [`MAP_REPLY_SCRATCH`] | 0 → [`ReplyClaim`] (per CPU, scratch, not pinned) | XDP | XDP |
//! | [`MAP_FRAGMENTS`] | [`FragmentKey`] → [`FragmentOwner`] (LRU) | XDP | XDP |
//! | [`MAP_FRAGMENT_SERVICES`] | [`ServiceKey`] with port 0 → [`Service`] | lbd | XDP |
//! | [`MAP_INTERFACES`] | ifindex of a real's L2 interface → [`Interface`] | lbd | XDP |
//! | [`MAP_TX_PORTS`] | ifindex → ifindex (devmap) | lbd | XDP (`XDP_REDIRECT`) |
//! | [`MAP_RR_CURSOR`] | service id → u32 (per CPU) | XDP | XDP |
//! | [`MAP_SERVICE_STATS`] | service id → [`Counters`] (per CPU) | XDP | lbd |
//! | [`MAP_REAL_STATS`] | real id → [`Counters`] (per CPU) | XDP | lbd |
//! | [`MAP_REASON_STATS`] | [`crate::Reason`] → [`Counters`] (per CPU) | XDP | lbd |
//! | [`MAP_SERVICE_OUT_STATS`] | service id → [`OutCounters`] (per CPU; NAT replies) | XDP | lbd |
//! | [`MAP_REAL_OUT_STATS`] | real id → [`OutCounters`] (per CPU; NAT replies) | XDP | lbd |
//! | [`crate::capture::MAP_CAPTURE`] | 0 → [`crate::capture::Capture`] (session, filter, expiry; the program's `.bss.capture` global) | lbd | XDP |
//! | [`crate::capture::MAP_CAPTURE_RING`] | ring buffer of [`crate::capture::CaptureRecord`] | XDP | lbd (`lbadm dump`) |
//! | [`crate::decap::MAP_DECAP_ADDRS`] | [`crate::decap::DecapAddrKey`] → flags (local address, VIP) | `lbd decap` | `lb_decap` |
//! | [`crate::decap::MAP_DECAP_CONFIG`] | 0 → [`crate::decap::DecapConfig`] (GUE port) | `lbd decap` | `lb_decap` |
//!
//! | [`MAP_SERVICE_IDS`] | [`ServiceKey`] → service id (frozen; lbd only) | lbd | lbd (restart) |
//! | [`MAP_REAL_IDS`] | [`RealIdKey`] → [`RealIdentity`] (frozen; lbd only) | lbd | lbd (restart) |
//!
//! The decapsulation program's two maps (see [`crate::decap`]) are not in [`ALL_MAPS`]: the
//! balancer never pins them, and `lbd decap` leaves them unpinned.
//!
//! Names stay within the kernel's 15-character object name limit. Sizes marked "limits" are set
//! by the loader from the config's `limits` key; the others are fixed here.

pub const MAP_SERVICES: &str = "LB_SERVICES_V2";
/// V2: each ring half has its own place in [`MAP_TABLES`] (V1 had a fixed stride per service).
pub const MAP_SCHEDULES: &str = "LB_SCHEDULES_V2";
pub const MAP_REALS: &str = "LB_REALS_V2";
/// Every service's schedule tables (rings, Maglev tables, least-connection member lists), of
/// whatever length each needs, placed by lbd.
pub const MAP_TABLES: &str = "LB_TABLES_V1";
/// Which real a client (address under the service's netmask) sticks to, for persistent
/// services.
pub const MAP_PERSISTENCE: &str = "LB_PERSIST_V1";
/// V2: a plain hash (V1 was an LRU, which evicts silently), with the flow's state.
pub const MAP_FLOWS: &str = "LB_FLOWS_V2";
/// Each real's active and inactive connections.
pub const MAP_CONNS: &str = "LB_CONNS_V1";
/// Runtime knobs (flow timeouts, flags). V2: flags added.
pub const MAP_SETTINGS: &str = "LB_SETTINGS_V2";
/// What a tunnel or full-NAT real needs beyond its [`Real`] entry.
pub const MAP_EGRESS: &str = "LB_EGRESS_V1";
/// Replies of NAT and full-NAT flows, as the real sends them: what to translate them back to.
pub const MAP_REPLIES: &str = "LB_REPLIES_V1";
/// The forwarding programs the balancer tail-calls, by index in [`FORWARD_STAGES`]. Pinned
/// like the rest: a program array's entries are cleared when its last user reference goes.
/// Its version goes with [`MAP_FORWARD_SCRATCH`]'s (see there).
pub const MAP_FORWARD_PROGRAMS: &str = "LB_FWD_PROGS_V1";
/// What the balancer hands the forwarding program it tail-calls ([`Handoff`], per CPU).
/// Pinned: a restarted lbd fills the adopted program array with its new programs while the
/// old balancer still runs, and the two must share this map. A new [`Handoff`] layout renames
/// both maps, so an old balancer never hands a new program a layout it does not know.
pub const MAP_FORWARD_SCRATCH: &str = "LB_FWD_SCR_V1";
/// The forwarding programs, by their index in [`MAP_FORWARD_PROGRAMS`] (`forward::STAGE_*` in
/// lb-ebpf).
pub const FORWARD_STAGES: [&str; 3] = ["lb_tunnel", "lb_nat", "lb_reply"];
/// Tokens for ICMP "packet too big" answers (rate limit).
pub const MAP_ICMP_BUDGET: &str = "LB_ICMP_TOKENS_V1";
/// Which real each fragmented datagram in flight goes to.
/// V2: the first fragment's ports, for a NAT reply's later fragments.
pub const MAP_FRAGMENTS: &str = "LB_FRAGS_V2";
/// Per (VIP, protocol): the service whose schedule places a non-first fragment that arrived
/// before its first fragment (whose ports it cannot know). lbd writes the VIP's service with
/// the lowest port, which is the all-ports service when there is one.
pub const MAP_FRAGMENT_SERVICES: &str = "LB_FRAG_SVC_V1";
pub const MAP_INTERFACES: &str = "LB_IFACES_V2";
pub const MAP_TX_PORTS: &str = "LB_TX_PORTS_V1";
pub const MAP_RR_CURSOR: &str = "LB_RR_POS_V1";
pub const MAP_SERVICE_STATS: &str = "LB_STAT_SVC_V1";
pub const MAP_REAL_STATS: &str = "LB_STAT_REAL_V1";
pub const MAP_REASON_STATS: &str = "LB_STAT_RSN_V1";
/// What the balancer sends back for a service and for a real: the NAT and full-NAT replies it
/// translates (ipvsadm's OutPkts and OutBytes). Direct-routing and tunnel replies never pass
/// the balancer, so theirs stay 0, as in LVS-DR. Maps of their own rather than fields of
/// [`MAP_SERVICE_STATS`]: those keep their layout, and so their name and their counts.
pub const MAP_SERVICE_OUT_STATS: &str = "LB_OUT_SVC_V1";
pub const MAP_REAL_OUT_STATS: &str = "LB_OUT_REAL_V1";

/// Every map, in the order above; the loader sizes and pins them by these names.
pub const ALL_MAPS: [&str; 25] = [
    MAP_FORWARD_PROGRAMS,
    MAP_FORWARD_SCRATCH,
    MAP_SERVICES,
    MAP_SCHEDULES,
    MAP_REALS,
    MAP_TABLES,
    MAP_PERSISTENCE,
    MAP_FLOWS,
    MAP_CONNS,
    MAP_SETTINGS,
    MAP_EGRESS,
    MAP_REPLIES,
    MAP_ICMP_BUDGET,
    MAP_FRAGMENTS,
    MAP_FRAGMENT_SERVICES,
    MAP_INTERFACES,
    MAP_TX_PORTS,
    MAP_RR_CURSOR,
    MAP_SERVICE_STATS,
    MAP_REAL_STATS,
    MAP_REASON_STATS,
    MAP_SERVICE_OUT_STATS,
    MAP_REAL_OUT_STATS,
    crate::capture::MAP_CAPTURE,
    crate::capture::MAP_CAPTURE_RING,
];

/// Names of maps that earlier versions pinned and this one no longer uses: the loader removes
/// their pins when it adopts an instance, once the new program has replaced the old one.
pub const RETIRED_MAPS: [&str; 8] = [
    "LB_SETTINGS_V1",
    "LB_FRAGS_V1",
    "LB_SERVICES_V1",
    "LB_REALS_V1",
    "LB_IFACES_V1",
    PREVIOUS_MAP_FLOWS,
    "LB_SCHEDULES_V1",
    "LB_RING_V1",
];

/// Which id each service has, for a restarted (or upgraded) lbd: flows name services and reals
/// by id, so ids must survive any change of the other maps' layouts. This map and
/// [`MAP_REAL_IDS`] hold nothing else, their layouts never change (their names say `V1`
/// forever), and the program never reads them: a new version whose service or real entries
/// changed shape (new map names) still finds every id here, as Katran keeps its VIP → id
/// map apart from the VIPs' details. lbd creates and pins them itself; they are not in the
/// program's object, so not in [`ALL_MAPS`].
pub const MAP_SERVICE_IDS: &str = "LB_IDS_SVC_V1";
/// Which id each real has (see [`MAP_SERVICE_IDS`]).
pub const MAP_REAL_IDS: &str = "LB_IDS_REAL_V1";

/// A real as its identity: its service's id, address and port. Frozen (see
/// [`MAP_SERVICE_IDS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RealIdKey {
    pub service_id: u32,
    /// Network byte order, as [`ServiceKey::vip`].
    pub addr: [u8; 16],
    pub port_be: u16,
    pub family: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<RealIdKey>() == 24);

/// A real's id, and what decides whether its flows may go on to it as reconfigured (its
/// method, and for full NAT a digest of its local addresses). Frozen (see
/// [`MAP_SERVICE_IDS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealIdentity {
    pub id: u32,
    /// `FORWARD_*`.
    pub forward: u8,
    pub _pad: [u8; 3],
    /// FNV-1a of the full-NAT local addresses, in order; 0 for other methods.
    pub sources_digest: u64,
}
const _: () = assert!(core::mem::size_of::<RealIdentity>() == 16);

/// The flow table of the previous layout (an LRU of [`PreviousFlow`]): a restarted lbd copies
/// its flows into [`MAP_FLOWS`], so an upgrade keeps every connection.
pub const PREVIOUS_MAP_FLOWS: &str = "LB_FLOWS_V1";

/// Slots of a round-robin ring (rr, wrr, and sh's weighted table). A weighted schedule longer
/// than this is scaled down in userspace (see `schedule/` in lb-userspace), keeping the weight
/// ratios approximately.
pub const RING_SLOTS: u32 = 1024;

/// The longest table a service may have (a Maglev table of the largest prime size allowed).
pub const MAX_TABLE_SLOTS: u32 = 131071;

/// Reals a least-connection service (lc, wlc) compares per new flow: the program walks them
/// all, as IPVS does, so the walk is bounded.
pub const MAX_LEAST_CONN_REALS: u32 = 256;

/// Default map sizes, overridable by `limits` in the config.
pub const DEFAULT_MAX_SERVICES: u32 = 4096;
pub const DEFAULT_MAX_REALS: u32 = 65536;
pub const DEFAULT_MAX_FLOWS: u32 = 1_000_000;
/// Slots of [`MAP_TABLES`] (4 bytes each): room for both halves of 4,096 rings, or of 64
/// Maglev tables of 65,537.
pub const DEFAULT_TABLE_SLOTS: u32 = 8 * 1024 * 1024;
/// Fragmented datagrams remembered at once. An entry only has to outlive the few
/// milliseconds between a datagram's fragments, so a small LRU covers a high fragment rate.
pub const MAX_FRAGMENTED_DATAGRAMS: u32 = 16384;
/// Interfaces an instance can attach to; fixed because it is tiny.
pub const MAX_INTERFACES: u32 = 64;
/// L2 interfaces reals can sit on: the attached ones and the VLAN interfaces stacked on them.
pub const MAX_L2_INTERFACES: u32 = 4096;
/// Slots in the per-reason counter array; reason numbers stay below this.
pub const REASON_SLOTS: u32 = 32;

/// A virtual service: VIP, port and protocol. `port_be == 0` is an all-ports service.
///
/// Keys are aligned beyond what their fields need so that the program copies and compares
/// them a word at a time instead of two bytes at a time; size and offsets stay the same, so
/// the layout, and the map's name, do not change.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Network byte order; IPv4 uses the first four bytes, the rest are zero.
    pub vip: [u8; 16],
    pub port_be: u16,
    pub protocol: u8,
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 20);
const _: () = assert!(core::mem::align_of::<ServiceKey>() == 4);

/// [`Service::scheduler`]: how a new flow picks its real from the service's table.
/// Walk the ring with a per-CPU cursor: `rr` and `wrr` (0, so entries written before the field
/// existed keep their meaning).
pub const SCHED_RING: u8 = 0;
/// `sh`: a hash of the client's address over the weighted ring.
pub const SCHED_SOURCE_HASH: u8 = 1;
/// `mh`: a hash of the 5-tuple over the Maglev table.
pub const SCHED_MAGLEV: u8 = 2;
/// `lc`: the table is (real id, weight) pairs; the least `active × 256 + inactive` wins.
pub const SCHED_LEAST_CONN: u8 = 3;
/// `wlc`: as `lc`, the least of that overhead divided by the weight.
pub const SCHED_WEIGHTED_LEAST_CONN: u8 = 4;

/// A virtual service's entry. Written when the service appears and rewritten only when what
/// it holds changes (never for a new schedule, which is [`Schedule`]'s), since rewriting a
/// hash-map entry recycles its memory (see `readers.rs` in lb-userspace).
///
/// The scheduler and persistence fields took padding bytes that were zero, which reads as a
/// ring-walking service without persistence: the layout, and the map's name, stay.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index into the stats, cursor, schedule and table maps; never 0.
    pub id: u32,
    /// None defined yet.
    pub flags: u32,
    /// Default forwarding method of the service's reals (`FORWARD_*`).
    pub forward: u8,
    /// `SCHED_*`.
    pub scheduler: u8,
    /// Persistence: how many leading bits of the client's address identify it (ipvsadm `-M`).
    pub persistence_prefix: u8,
    pub _pad: u8,
    /// Persistence: how long a client stays with its real after its last flow was seen, in
    /// seconds; 0 = no persistence.
    pub persistence_s: u32,
}
const _: () = assert!(core::mem::size_of::<Service>() == 16);

/// Where one half of a service's schedule lies in [`MAP_TABLES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableRange {
    /// First slot.
    pub base: u32,
    /// Slots in use (`0` = no real can take new flows).
    pub len: u32,
    /// Slots lbd reserved there (`len` may grow up to this without moving).
    pub capacity: u32,
}

/// Which half of a service's schedule is in use (`generation & 1`), and where each half lies.
///
/// The same protocol as [`RealSlots`]: lbd writes the half not in use (its table slots, then
/// its range), then bumps the generation with one aligned store through its mmap of the map;
/// the program reads the generation once, then the range of the half it names.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    pub generation: u32,
    pub _pad: u32,
    pub halves: [TableRange; 2],
}
const _: () = assert!(core::mem::size_of::<Schedule>() == 32);

impl Schedule {
    /// The ring half a reader uses now.
    #[inline(always)]
    pub const fn current_half(generation: u32) -> usize {
        (generation & 1) as usize
    }
}

/// [`Real::flags`]: the real may receive packets (healthy, and its MAC is resolved).
pub const REAL_AVAILABLE: u32 = 1;
/// [`Real::flags`]: the real may take new flows (available, its neighbour not being probed,
/// weight above 0). A persistence entry naming a real without it is not followed.
pub const REAL_TAKES_NEW_FLOWS: u32 = 2;
/// [`Real::flags`]: the real's last health verdict was down. The program ignores it; a
/// restarted lbd reads it, so a real that was down stays out until its checks pass.
pub const REAL_FAILED_CHECK: u32 = 4;

/// A real server of one service. The same address in two services is two reals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Real {
    /// Network byte order, as [`ServiceKey::vip`].
    pub addr: [u8; 16],
    /// The real's MAC address, resolved by lbd from the kernel's neighbour table.
    pub mac: [u8; 6],
    pub port_be: u16,
    /// Interface the real is reached through; also the key of its source MAC in
    /// [`MAP_INTERFACES`].
    pub ifindex: u32,
    /// Owning service, so a restarted daemon can rebuild its id allocation from the map.
    pub service_id: u32,
    pub flags: u32,
    /// `FORWARD_*`.
    pub forward: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Real>() == 40);

/// A real's entry as the program reads it: two copies and the number of the current one.
///
/// Array updates are copied in place, so a program reading an entry while it is rewritten
/// could see half an old MAC and half a new one. Instead, lbd writes a change into the copy
/// not in use and then bumps [`RealSlots::generation`] with one aligned 4-byte store (the map
/// is mmapped, so the store is lbd's own, not the kernel's `memcpy`); the program reads the
/// generation once and then only `slots[generation & 1]`, a dependent load. Before lbd
/// rewrites a copy that was current, it waits for an RCU grace period, after which no program
/// run that saw it current is still running (XDP runs inside RCU read-side sections). A
/// reader therefore sees the old entry or the new one, never a mix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealSlots {
    pub generation: u32,
    pub _pad: u32,
    pub slots: [Real; 2],
}
const _: () = assert!(core::mem::size_of::<RealSlots>() == 88);

impl RealSlots {
    /// The copy a reader uses now.
    #[inline(always)]
    pub const fn current_slot(generation: u32) -> usize {
        (generation & 1) as usize
    }
}

/// A connection as the client sent it: the key of the flow table. Aligned to 8 bytes (see
/// [`ServiceKey`]).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub protocol: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::align_of::<FlowKey>() == 8);

/// Where a flow goes, its connection state, and when it was last seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub real_id: u32,
    pub service_id: u32,
    /// CLOCK_MONOTONIC as of the program's last timer tick (`bpf_ktime_get_coarse_ns()`).
    /// Refreshed at most once a second, and on every change of state; the flow expires this
    /// long after it (see `Settings`).
    pub last_seen_ns: u64,
    /// `STATE_*` of [`crate::conntrack`]. A whole word, like the rest, so that the program
    /// builds an entry with word stores (a run of zeroed bytes would become a `memset`
    /// call).
    pub state: u32,
    /// Full NAT: the local port the real sees the flow come from (network order); 0 for
    /// other methods.
    pub local_port_be: u16,
    /// Full NAT: which of the real's [`Egress::sources`] the flow comes from.
    pub local_source: u8,
    pub _pad: u8,
    /// Room for what connection sync keeps per flow; zero today.
    pub reserved: u64,
}
const _: () = assert!(core::mem::size_of::<Flow>() == 32);

/// A flow of [`PREVIOUS_MAP_FLOWS`], read once when upgrading.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreviousFlow {
    pub real_id: u32,
    pub service_id: u32,
    pub last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<PreviousFlow>() == 16);

/// A client of a persistent service: its address with the bits beyond the service's
/// persistence prefix cleared.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistenceKey {
    pub client: [u8; 16],
    pub service_id: u32,
    /// A whole word, so the program builds the key with word stores (no padding bytes to zero
    /// one by one, which becomes a `memset` call).
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<PersistenceKey>() == 24);

/// The real a persistent client goes to, and when one of its flows last started or was seen
/// (refreshed at most once a second, like a flow).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persistence {
    pub real_id: u32,
    pub _pad: u32,
    pub last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Persistence>() == 16);

/// A fragmented datagram: its addresses, protocol and IP identification (the 16-bit IPv4 id
/// or the 32-bit id of the IPv6 fragment header), which every fragment of it carries.
/// Aligned to 8 bytes (see [`ServiceKey`]).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// As received (network byte order, widened for IPv4).
    pub id_be: u32,
    pub protocol: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FragmentKey>() == 40);
const _: () = assert!(core::mem::align_of::<FragmentKey>() == 8);

/// [`FragmentOwner::flags`]: written by the datagram's first fragment (the one with ports).
pub const FRAGMENT_FROM_FIRST: u32 = 1;

/// How long a [`FragmentOwner`] is believed, in units of [`fragment_clock`]: about 30 s,
/// the kernel's default reassembly time (`ipfrag_time`). An older entry belongs to a datagram
/// that was never completed (or was, long ago) and says nothing about a new one that happens
/// to reuse the id.
pub const FRAGMENT_LIFETIME: u32 = 28;

/// The coarse clock of [`FragmentOwner::written_at`]: CLOCK_MONOTONIC nanoseconds (the
/// program's `bpf_ktime_get_coarse_ns()`) in units of 2^30 ns (about 1.07 s).
#[inline(always)]
pub const fn fragment_clock(now_ns: u64) -> u32 {
    (now_ns >> 30) as u32
}

/// Where a fragmented datagram's fragments go.
///
/// Written by whichever fragment of the datagram arrives first, and rewritten by the first
/// fragment (the one with ports) when it comes. A first fragment that finds an entry a later
/// fragment wrote ([`FRAGMENT_FROM_FIRST`] clear) knows where the rest of its datagram went;
/// finding one a first fragment wrote, it is a new datagram reusing the id. `real_id` 0 means
/// the datagram is for no service: its fragments pass, like its first one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentOwner {
    pub real_id: u32,
    pub service_id: u32,
    pub flags: u32,
    /// [`fragment_clock`] when written; entries older than [`FRAGMENT_LIFETIME`] are ignored.
    pub written_at: u32,
    /// [`FRAGMENT_REPLY`]: the first fragment's ports (source in the low half, both as
    /// received), which with the later fragments' addresses name the reply entry.
    pub ports: u32,
}
const _: () = assert!(core::mem::size_of::<FragmentOwner>() == 20);

/// [`FragmentOwner::flags`]: the datagram is a NAT flow's reply, translated back fragment by
/// fragment (the first fragment found its entry in [`MAP_REPLIES`]).
pub const FRAGMENT_REPLY: u32 = 2;

/// An L2 interface reals sit on: an interface the program runs on, or a VLAN interface
/// stacked on one. Keyed by the ifindex the kernel's neighbour table uses for the reals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// Source MAC for frames sent to reals on this interface.
    pub mac: [u8; 6],
    /// The 802.1Q/802.1ad tag frames to these reals carry (VLAN id in the low 12 bits);
    /// 0 = untagged. The program replaces, adds or removes the frame's tag to match.
    pub vlan_tci_be: u16,
    /// `ETH_P_8021Q` or `ETH_P_8021AD` when tagged, 0 otherwise.
    pub vlan_proto_be: u16,
    /// The interface's MTU: a tunnelled packet longer than this is answered with ICMP
    /// "packet too big". 0 = unknown (entries written before the field existed): no check.
    pub mtu: u16,
    /// The interface the program runs on that frames leave through (the VLAN's parent, or
    /// the interface itself).
    pub egress_ifindex: u32,
}
const _: () = assert!(core::mem::size_of::<Interface>() == 16);

/// [`Egress::tunnel`]: IP in IP (protocol 4 for an IPv4 inner packet, 41 for IPv6).
pub const TUNNEL_IPIP: u8 = 1;
/// [`Egress::tunnel`]: GUE variant 1 (RFC draft-ietf-intarea-gue): the inner IP packet right
/// after a UDP header, as Katran sends and Linux's fou (`gue` mode) accepts.
pub const TUNNEL_GUE: u8 = 2;
/// Local addresses a full-NAT real's flows may come from (`snat_pool`).
pub const MAX_LOCAL_SOURCES: usize = 8;
/// Full NAT's local ports: below Linux's default ephemeral range (32768–60999), so the
/// balancer's own connections from the same address never take the same 4-tuple.
pub const LOCAL_PORT_FIRST: u16 = 1024;
pub const LOCAL_PORT_COUNT: u16 = 32768 - 1024;

/// How packets leave for a tunnel or full-NAT real, beyond what its [`Real`] says.
///
/// In a hash map created without preallocation: an update replaces the element and frees the
/// old one only after an RCU grace period, so a program reading it never sees a mix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    /// Tunnel: `sources[0]` is the outer source address. Full NAT: the local addresses the
    /// real sees flows come from (the first `source_count`). The real's family; network order.
    pub sources: [[u8; 16]; MAX_LOCAL_SOURCES],
    pub source_count: u32,
    /// `TUNNEL_*` (tunnel reals only).
    pub tunnel: u8,
    pub _pad: u8,
    /// GUE: the reals' UDP port (network order).
    pub gue_port_be: u16,
}
const _: () = assert!(core::mem::size_of::<Egress>() == 136);

/// [`Reply::vlan`] and [`Handoff::vlan`]: the client's frame had a tag (its TCI in the low 16
/// bits).
pub const VLAN_TAGGED: u32 = 1 << 16;

/// A NAT or full-NAT flow's replies: the client's flow they belong to, and the way back.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The client's flow as the client sent it: the reply leaves from its `dst`:`dst_port`
    /// (the VIP) to its `src`:`src_port`. lbd's sweep removes a reply whose flow is gone.
    pub flow: FlowKey,
    /// Where the client's packets came from: the reply goes back to that MAC, out of that
    /// interface, with that VLAN tag ([`Reply::vlan`]: [`VLAN_TAGGED`] and the TCI, or 0).
    pub client_mac: [u8; 6],
    /// The client's tag protocol (`ETH_P_8021Q` or `ETH_P_8021AD`) when tagged.
    pub vlan_proto_be: u16,
    pub ingress_ifindex: u32,
    pub vlan: u32,
    pub real_id: u32,
    pub service_id: u32,
}
const _: () = assert!(core::mem::size_of::<Reply>() == 64);

/// What a forwarding program needs of the packet the balancer placed (see
/// [`MAP_FORWARD_SCRATCH`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    pub flow: FlowKey,
    /// The frame's length as received (for the counters).
    pub frame_len: u64,
    pub real: Real,
    /// As the parse found it: [`VLAN_TAGGED`] and the TCI, or 0.
    pub vlan: u32,
    pub real_id: u32,
    pub service_id: u32,
    /// `Reason` number it is counted under.
    pub reason: u32,
    /// Where the TCP/UDP header starts (0: none, a later fragment or an ICMP error).
    pub l4: u16,
    /// Full NAT: the flow's local port and source (see [`Flow`]).
    pub local_port_be: u16,
    pub local_source: u8,
    /// The parse's kind of datagram (whole, first or later fragment, ICMP error).
    pub kind: u8,
    pub new_flow: u8,
    pub _pad: [u8; 5],
}
const _: () = assert!(core::mem::size_of::<Handoff>() == 120);

/// The program's per-CPU scratch space for a reply entry being claimed (a key and value too
/// big for its 512-byte stack beside everything else). Never pinned: it holds nothing between
/// packets.
pub const MAP_REPLY_SCRATCH: &str = "LB_REPLY_SCR";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyClaim {
    pub key: FlowKey,
    pub reply: Reply,
}
const _: () = assert!(core::mem::size_of::<ReplyClaim>() == 104);

/// ICMP "packet too big" answers per second per CPU, and the burst allowed (tokens).
pub const ICMP_TOO_BIG_PER_SECOND: u64 = 1000;
pub const ICMP_TOO_BIG_BURST: u64 = 100;

/// A token bucket (per CPU) for ICMP answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpBudget {
    pub tokens: u64,
    pub refilled_ns: u64,
}
const _: () = assert!(core::mem::size_of::<IcmpBudget>() == 16);

/// Per-CPU counters; userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    /// Bytes of the frames as received, Ethernet header included.
    pub bytes: u64,
    /// Flows scheduled (the "connections" of `ipvsadm --stats`).
    pub new_flows: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 24);

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.new_flows = self.new_flows.wrapping_add(other.new_flows);
    }
}

/// Per-CPU counters of what the balancer sends back (NAT replies); userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutCounters {
    pub packets: u64,
    /// Bytes of the frames as received from the real, Ethernet header included (as
    /// [`Counters::bytes`]).
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<OutCounters>() == 16);

impl OutCounters {
    pub fn add(&mut self, other: &OutCounters) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::Service {}
    unsafe impl aya::Pod for super::Schedule {}
    unsafe impl aya::Pod for super::TableRange {}
    unsafe impl aya::Pod for super::PersistenceKey {}
    unsafe impl aya::Pod for super::Persistence {}
    unsafe impl aya::Pod for super::Real {}
    unsafe impl aya::Pod for super::RealSlots {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::Flow {}
    unsafe impl aya::Pod for super::PreviousFlow {}
    unsafe impl aya::Pod for crate::ConnCounts {}
    unsafe impl aya::Pod for crate::Settings {}
    unsafe impl aya::Pod for super::Interface {}
    unsafe impl aya::Pod for super::FragmentKey {}
    unsafe impl aya::Pod for super::FragmentOwner {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::OutCounters {}
    unsafe impl aya::Pod for super::Egress {}
    unsafe impl aya::Pod for super::Reply {}
    unsafe impl aya::Pod for super::IcmpBudget {}
    unsafe impl aya::Pod for super::Handoff {}
    unsafe impl aya::Pod for super::RealIdKey {}
    unsafe impl aya::Pod for super::RealIdentity {}
}
