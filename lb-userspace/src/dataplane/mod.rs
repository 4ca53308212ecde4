//! What the control plane writes to and reads from the data plane.
//!
//! Two seams, one per direction:
//! - [`Dataplane`]: the maps lbd writes (services, reals, rings, interfaces), owned by the one
//!   task that reconciles the desired state (`reconcile`). Every write is safe for a program
//!   reading concurrently: an entry is seen whole, old or new.
//! - [`DataplaneReader`]: what the program writes and lbd only reads (counters, the flow
//!   table), for the admin socket and metrics. Readers have their own map handles and never
//!   wait for the writer.
//!
//! [`EbpfDataplane`]/[`EbpfReader`] implement them over the XDP program's maps (`ebpf/`), and
//! [`FakeDataplane`]/[`FakeReader`] in memory (`fake.rs`), so the control logic is tested
//! without root. [`loader`] loads the program, sizes and pins its maps and attaches it.
//! [`capture`] is a third seam, for `lbadm dump`: captures of what the program does.

pub mod capture;
mod ebpf;
mod fake;
pub mod loader;

use aya::maps::MapError;
pub use ebpf::{
    CaptureMaps, EbpfDataplane, EbpfReader, MapHandles, PRESSURE_END_PERCENT,
    PRESSURE_FILL_PERCENT, SYN_RECV_UNDER_PRESSURE, SweepReport, Sweeper, batch, insert_new,
    is_gone, is_stale_half_open, lookup_and_delete, under_pressure,
};
pub use fake::{FakeDataplane, FakeReader};
use lb_common::{
    ConnCounts, Counters, Egress, Flow, FlowKey, Interface, MAX_TABLE_SLOTS, OutCounters, Real,
    Reason, Reply, Service, ServiceKey, Settings,
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
    #[error(
        "schedule of service {service_id} has {len} slots, more than its capacity {capacity} \
         (at most {MAX_TABLE_SLOTS})"
    )]
    TableTooLong {
        service_id: u32,
        len: usize,
        capacity: u32,
    },
    #[error(
        "no room for service {service_id}'s schedule table ({needed} slots) in {map}: \
         {free} slots free, the largest run {largest}; raise limits.table_slots"
    )]
    TablesFull {
        map: &'static str,
        service_id: u32,
        needed: u32,
        free: u32,
        largest: u32,
    },
    #[error("index {index} is outside map {map} ({len} entries)")]
    OutOfRange {
        map: &'static str,
        index: u32,
        len: u32,
    },
    #[error("map {map}: {call}: {source}")]
    Syscall {
        map: &'static str,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The maps lbd writes, as the control plane sees them. Ids are allocated by the caller; id 0
/// is never used.
pub trait Dataplane: Send {
    /// Where frames to reals on `ifindex` (an attached interface or a VLAN on one) go, and
    /// with which source MAC and tag.
    fn set_interface(&mut self, ifindex: u32, interface: Interface) -> Result<(), DataplaneError>;
    /// Lets the program redirect frames out of `ifindex` (an interface it is attached to).
    fn set_tx_port(&mut self, ifindex: u32) -> Result<(), DataplaneError>;
    /// The service entry the program sees now, if any.
    fn service(&self, key: &ServiceKey) -> Result<Option<Service>, DataplaneError>;
    /// Writes the service entry, if it differs from the one the program has.
    fn set_service(&mut self, key: ServiceKey, service: Service) -> Result<(), DataplaneError>;
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError>;
    /// A standby service (its VIP belongs to a VRRP router that is not master): its id is
    /// recorded as [`Dataplane::set_service`] records it, so a restart keeps it, but its entry
    /// leaves the program's map, so its packets pass to the kernel stack.
    fn hide_service(&mut self, key: ServiceKey, service: Service) -> Result<(), DataplaneError>;
    /// Names the service (by a key with port 0) whose schedule places non-first fragments of
    /// its VIP and protocol that came before their first fragment; written if it differs.
    fn set_fragment_service(
        &mut self,
        key: ServiceKey,
        service: Service,
    ) -> Result<(), DataplaneError>;
    fn remove_fragment_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError>;
    /// Every fragment service entry, e.g. those a previous daemon left in pinned maps.
    fn fragment_services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError>;
    /// Publishes a real's entry; the program sees the old entry or this one, never a mix.
    /// Writing `Real::default()` retires the id: flows still pointing to it get rescheduled.
    /// Writing the entry the program already has changes nothing.
    fn set_real(&mut self, id: u32, real: Real) -> Result<(), DataplaneError>;
    /// Gives the service a new schedule table: written into the half not in use (placed in
    /// the tables map with room for `capacity` slots), then switched to in one step, so the
    /// program reads the old table or the new one, never a mix.
    fn set_schedule(
        &mut self,
        service_id: u32,
        table: &[u32],
        capacity: u32,
    ) -> Result<(), DataplaneError>;
    /// Gives back the table space of a service that is gone (its entry already removed).
    fn remove_schedule(&mut self, service_id: u32) -> Result<(), DataplaneError>;
    /// Every service id whose schedule holds table space, e.g. what a previous daemon left.
    fn scheduled_services(&self) -> Result<Vec<u32>, DataplaneError>;
    /// Every service entry, e.g. those a previous daemon left in pinned maps.
    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError>;
    /// Every real id in use (entry not `Real::default()`), with its current entry.
    fn reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError>;
    /// Prepares a service id for a new meaning: zeroes its counters and starts each CPU's
    /// scheduling cursor at a random slot.
    fn init_service(&mut self, service_id: u32) -> Result<(), DataplaneError>;
    /// Prepares a real id for a new meaning: zeroes its counters.
    fn init_real(&mut self, real_id: u32) -> Result<(), DataplaneError>;
    /// `ipvsadm -Z`: zeroes a service's packet, byte and new-flow counters, incoming and
    /// outgoing (not its connection counts, which are live state).
    fn zero_service_counters(&mut self, service_id: u32) -> Result<(), DataplaneError>;
    /// `ipvsadm -Z` for a real, as for a service.
    fn zero_real_counters(&mut self, real_id: u32) -> Result<(), DataplaneError>;
    /// The runtime knobs (flow timeouts, flags); written if they differ.
    fn set_settings(&mut self, settings: Settings) -> Result<(), DataplaneError>;
    /// What a tunnel or full-NAT real needs beyond its entry (sources, tunnel type); written
    /// if it differs, before the real entry that needs it. The program sees the old entry or
    /// this one, never a mix.
    fn set_egress(&mut self, real_id: u32, egress: Egress) -> Result<(), DataplaneError>;
    /// Removes a real's egress entry (a missing one is already removed).
    fn remove_egress(&mut self, real_id: u32) -> Result<(), DataplaneError>;
    /// Every real id with an egress entry, e.g. those a previous daemon left.
    fn egress_ids(&self) -> Result<Vec<u32>, DataplaneError> {
        Ok(self.egresses()?.into_iter().map(|(id, _)| id).collect())
    }
    /// Every egress entry, by real id.
    fn egresses(&self) -> Result<Vec<(u32, Egress)>, DataplaneError>;
}

/// What [`DataplaneReader::merge_reply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMerge {
    Written,
    /// The replies table is full.
    TableFull,
    /// The key is held by an entry `may_replace` refused.
    HeldByAnother,
    /// The key's entry kept changing under the attempts: nothing was written.
    Unsettled,
}

/// What the program counts and remembers, read without disturbing the writer.
pub trait DataplaneReader: Send + Sync {
    /// Counters summed over CPUs.
    fn service_counters(&self, service_id: u32) -> Result<Counters, DataplaneError>;
    fn real_counters(&self, real_id: u32) -> Result<Counters, DataplaneError>;
    /// What the balancer sent back for a service or a real (NAT replies), summed over CPUs.
    fn service_out_counters(&self, service_id: u32) -> Result<OutCounters, DataplaneError>;
    fn real_out_counters(&self, real_id: u32) -> Result<OutCounters, DataplaneError>;
    fn reason_counters(&self) -> Result<Vec<(Reason, Counters)>, DataplaneError>;
    /// The real's active (established) and inactive (every other state) connections.
    fn connections(&self, real_id: u32) -> Result<ConnCounts, DataplaneError>;
    /// Visits every entry of the flow table, a batch at a time. Entries come and go while it
    /// runs (the program keeps inserting); each one visited is consistent.
    fn for_each_flow(&self, visit: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError>;
    /// Connection sync, on a backup: records a flow the master has. One the table lacks is
    /// added and counted in its real's connections; one it has takes the copy's real, state
    /// and time (and the counts follow), unless the copy is older. An entry the sweep
    /// removes meanwhile is inserted afresh (a few times at most: a flow swept out under
    /// every attempt is left to the master's next copy). `Ok(false)` when the table is full.
    fn merge_flow(&self, key: &FlowKey, flow: &Flow) -> Result<bool, DataplaneError>;
    /// A NAT or full-NAT flow's reply entry, by the key the program gave it (the real's
    /// reply as it sends it); `None` if there is none.
    fn reply(&self, key: &FlowKey) -> Result<Option<Reply>, DataplaneError>;
    /// Connection sync, on a backup: writes a NAT or full-NAT flow's reply entry as the
    /// master's program has it, replacing an entry the key holds only if `may_replace` says
    /// so of it.
    fn merge_reply(
        &self,
        key: &FlowKey,
        reply: &Reply,
        may_replace: &dyn Fn(&Reply) -> bool,
    ) -> Result<ReplyMerge, DataplaneError>;
    /// The clock flows' `last_seen_ns` are on: CLOCK_MONOTONIC (the program reads it as of
    /// its last timer tick, `bpf_ktime_get_coarse_ns`).
    fn now_ns(&self) -> u64 {
        crate::admin::monotonic_now_ns()
    }
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}
