//! [`EbpfReader`]: what the program counts and remembers, read through handles of the
//! reader's own (per-CPU counters summed over CPUs, connection counts, the flow table).

use std::os::fd::AsFd;

use aya::maps::{MapData, PerCpuArray};
use lb_common::{
    ConnCounts, Counters, Flow, FlowKey, MAP_FLOWS, MAP_REAL_OUT_STATS, MAP_REAL_STATS,
    MAP_REASON_STATS, MAP_REPLIES, MAP_SERVICE_OUT_STATS, MAP_SERVICE_STATS, OutCounters, Reason,
    Reply,
};

use super::{EbpfReader, batch, element, map_err};
use crate::dataplane::{DataplaneError, DataplaneReader, ReplyMerge};

/// Inserts, lookups and replaces a merge tries while the sweep keeps removing its entry.
const MERGE_ATTEMPTS: usize = 3;

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

fn sum_out_cpus(
    map: &PerCpuArray<MapData, OutCounters>,
    index: u32,
    name: &'static str,
) -> Result<OutCounters, DataplaneError> {
    let per_cpu = map.get(&index, 0).map_err(map_err(name))?;
    let mut total = OutCounters::default();
    for counters in per_cpu.iter() {
        total.add(counters);
    }
    Ok(total)
}

impl DataplaneReader for EbpfReader {
    fn service_counters(&self, service_id: u32) -> Result<Counters, DataplaneError> {
        sum_cpus(&self.service_stats, service_id, MAP_SERVICE_STATS)
    }

    fn real_counters(&self, real_id: u32) -> Result<Counters, DataplaneError> {
        sum_cpus(&self.real_stats, real_id, MAP_REAL_STATS)
    }

    fn service_out_counters(&self, service_id: u32) -> Result<OutCounters, DataplaneError> {
        sum_out_cpus(&self.service_out_stats, service_id, MAP_SERVICE_OUT_STATS)
    }

    fn real_out_counters(&self, real_id: u32) -> Result<OutCounters, DataplaneError> {
        sum_out_cpus(&self.real_out_stats, real_id, MAP_REAL_OUT_STATS)
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

    fn connections(&self, real_id: u32) -> Result<ConnCounts, DataplaneError> {
        self.conns.get(real_id)
    }

    fn for_each_flow(&self, visit: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError> {
        batch::for_each::<FlowKey, Flow>(self.flows.fd().as_fd(), visit).map_err(|source| {
            DataplaneError::Syscall {
                map: MAP_FLOWS,
                call: "BPF_MAP_LOOKUP_BATCH",
                source,
            }
        })
    }

    fn merge_flow(&self, key: &FlowKey, flow: &Flow) -> Result<bool, DataplaneError> {
        let fd = self.flows.fd().as_fd();
        let failed = |call: &'static str| {
            move |source| DataplaneError::Syscall {
                map: MAP_FLOWS,
                call,
                source,
            }
        };
        let state = flow.state as u8;
        // The sweep may remove the entry between two steps: the merge then starts over
        // from the insert, a few times at most.
        for _ in 0..MERGE_ATTEMPTS {
            // Most copies are of flows the table lacks (a bulk copy): one insert. Counted
            // first, as the program does: a sweep removing it at once counts it out.
            self.conns.add(flow.real_id, state, 1)?;
            match element::insert_new(fd, key, flow) {
                Ok(true) => return Ok(true),
                Ok(false) => self.conns.add(flow.real_id, state, -1)?,
                Err(error) if error.raw_os_error() == Some(libc::E2BIG) => {
                    self.conns.add(flow.real_id, state, -1)?;
                    return Ok(false);
                }
                Err(source) => {
                    self.conns.add(flow.real_id, state, -1)?;
                    return Err(failed("BPF_MAP_UPDATE_ELEM")(source));
                }
            }
            // The table has it: the copy's real, state and time, unless it is older.
            let Some(old) =
                element::lookup::<FlowKey, Flow>(fd, key).map_err(failed("BPF_MAP_LOOKUP_ELEM"))?
            else {
                // Swept meanwhile: insert it.
                continue;
            };
            let same = old.real_id == flow.real_id && old.state == flow.state;
            if same && old.last_seen_ns >= flow.last_seen_ns {
                return Ok(true);
            }
            // Whoever removes a flow counts it out (see the sweep): if the sweep took the
            // old entry first, nothing was replaced, and the flow is inserted afresh.
            if element::replace_existing(fd, key, flow).map_err(failed("BPF_MAP_UPDATE_ELEM"))? {
                if !same {
                    self.conns.add(old.real_id, old.state as u8, -1)?;
                    self.conns.add(flow.real_id, state, 1)?;
                }
                return Ok(true);
            }
        }
        // Swept out under every attempt: the flow is expiring here as fast as it comes, and
        // the master's next copy of it (a refresh, or a change) brings it back.
        Ok(true)
    }

    fn reply(&self, key: &FlowKey) -> Result<Option<Reply>, DataplaneError> {
        let Some(replies) = &self.replies else {
            return Ok(None);
        };
        element::lookup(replies.fd().as_fd(), key).map_err(|source| DataplaneError::Syscall {
            map: MAP_REPLIES,
            call: "BPF_MAP_LOOKUP_ELEM",
            source,
        })
    }

    fn merge_reply(
        &self,
        key: &FlowKey,
        reply: &Reply,
        may_replace: &dyn Fn(&Reply) -> bool,
    ) -> Result<ReplyMerge, DataplaneError> {
        let Some(replies) = &self.replies else {
            return Err(DataplaneError::MissingMap { map: MAP_REPLIES });
        };
        let fd = replies.fd().as_fd();
        let failed = |call: &'static str| {
            move |source| DataplaneError::Syscall {
                map: MAP_REPLIES,
                call,
                source,
            }
        };
        // The sweep removes the entry if its flow is not in the table by its next two
        // walks: the flow was merged first. It may also remove the held entry between two
        // steps: then the insert is tried again, a few times at most.
        for _ in 0..MERGE_ATTEMPTS {
            match element::insert_new(fd, key, reply) {
                Ok(true) => return Ok(ReplyMerge::Written),
                Ok(false) => {}
                Err(error) if error.raw_os_error() == Some(libc::E2BIG) => {
                    return Ok(ReplyMerge::TableFull);
                }
                Err(source) => return Err(failed("BPF_MAP_UPDATE_ELEM")(source)),
            }
            let Some(held) = element::lookup::<FlowKey, Reply>(fd, key)
                .map_err(failed("BPF_MAP_LOOKUP_ELEM"))?
            else {
                continue;
            };
            if held == *reply {
                return Ok(ReplyMerge::Written);
            }
            if !may_replace(&held) {
                return Ok(ReplyMerge::HeldByAnother);
            }
            if element::replace_existing(fd, key, reply).map_err(failed("BPF_MAP_UPDATE_ELEM"))? {
                return Ok(ReplyMerge::Written);
            }
        }
        // The key's entry came and went under every attempt (the sweep, the program): the
        // copy has none here.
        Ok(ReplyMerge::Unsettled)
    }
}

impl EbpfReader {
    /// The flow table's handle, e.g. for filling it in tests (`batch::update`).
    pub fn flows(&self) -> &MapData {
        &self.flows
    }

    /// Adds to a real's connection counts, as the program and the sweep do (for migrating
    /// flows from an earlier layout, and for tests).
    pub fn add_connection(
        &self,
        real_id: u32,
        state: u8,
        delta: i64,
    ) -> Result<(), DataplaneError> {
        self.conns.add(real_id, state, delta)
    }
}
