//! The flow table's garbage collector: removes flows that have expired or whose real can no
//! longer take them, and takes them out of their real's connection counts.
//!
//! The program forgets such a flow itself when its next packet comes; the sweep is for the
//! flows no packet comes for, so that they leave the counts (and the table) within a sweep
//! of expiring. The rule that keeps counts exact: a flow leaves the table only by a delete,
//! and whoever's delete succeeds counts it out. Here the delete is a lookup-and-delete, so
//! the sweep counts out exactly the entry it removed, in the state that entry was in; had
//! the flow come alive again meanwhile (a new connection on the same 5-tuple), it is put back.

use std::os::fd::AsFd;

use aya::maps::{Array, MapData};
use lb_common::{Flow, FlowKey, MAP_FLOWS, MAP_SETTINGS, REAL_AVAILABLE, Real, Settings};

use super::{
    batch, element,
    published::{Conns, Reals},
};
use crate::dataplane::{DataplaneError, map_err};

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub flows: u64,
    pub removed: u64,
}

/// Handles of its own on the maps a sweep needs.
pub struct Sweeper {
    pub(super) flows: MapData,
    pub(super) conns: std::sync::Arc<Conns>,
    pub(super) reals: Reals,
    pub(super) settings: Array<MapData, Settings>,
}

/// Whether a flow is gone at `now_ns`: idle past its state's timeout (as the program counts
/// it, see `Settings::expires_after_ns`), or its real (`real`, the entry of its real id now)
/// no longer one that may take it.
pub fn is_gone(flow: &Flow, now_ns: u64, settings: &Settings, real: &Real) -> bool {
    let real_lost = real.flags & REAL_AVAILABLE == 0 || real.service_id != flow.service_id;
    let idle = now_ns.saturating_sub(flow.last_seen_ns);
    real_lost || idle > settings.expires_after_ns(flow.state as u8)
}

impl Sweeper {
    /// One pass over the table.
    pub fn sweep(&self, now_ns: u64) -> Result<SweepReport, DataplaneError> {
        let settings = self.settings.get(&0, 0).map_err(map_err(MAP_SETTINGS))?;
        let mut report = SweepReport::default();
        let mut candidates: Vec<FlowKey> = Vec::new();
        batch::for_each::<FlowKey, Flow>(self.flows.fd().as_fd(), |key, flow| {
            report.flows += 1;
            if is_gone(flow, now_ns, &settings, &self.real(flow.real_id)) {
                candidates.push(*key);
            }
        })
        .map_err(|source| syscall("BPF_MAP_LOOKUP_BATCH", source))?;
        let flows = self.flows.fd().as_fd();
        for key in candidates {
            let Some(flow) = element::lookup_and_delete::<FlowKey, Flow>(flows, &key)
                .map_err(|source| syscall("BPF_MAP_LOOKUP_AND_DELETE_ELEM", source))?
            else {
                // The program forgot it first, and counted it out.
                continue;
            };
            if !is_gone(&flow, now_ns, &settings, &self.real(flow.real_id)) {
                let restored = element::insert_new(flows, &key, &flow)
                    .map_err(|source| syscall("BPF_MAP_UPDATE_ELEM", source))?;
                if restored {
                    continue;
                }
                // A packet recorded the flow anew in the moment it was out (and counted
                // that one): the entry taken is gone for good.
            }
            // A real id outside the counts (never written by this lbd) has no count to lower.
            let _ = self.conns.add(flow.real_id, flow.state as u8, -1);
            report.removed += 1;
        }
        Ok(report)
    }

    /// The real's entry now; an id outside the map (a flow no real of this lbd could have
    /// made) reads as no real, so its flow is removed rather than stopping every sweep.
    fn real(&self, real_id: u32) -> Real {
        self.reals.get(real_id).unwrap_or_default()
    }
}

fn syscall(call: &'static str, source: std::io::Error) -> DataplaneError {
    DataplaneError::Syscall {
        map: MAP_FLOWS,
        call,
        source,
    }
}

#[cfg(test)]
mod tests {
    use lb_common::conntrack::{STATE_ESTABLISHED, STATE_FIN_WAIT};

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn real(service_id: u32, flags: u32) -> Real {
        Real {
            service_id,
            flags,
            ..Real::default()
        }
    }

    fn flow(state: u8, last_seen_s: u64) -> Flow {
        Flow {
            real_id: 3,
            service_id: 1,
            last_seen_ns: last_seen_s * SECOND,
            state: u32::from(state),
            ..Flow::default()
        }
    }

    #[test]
    fn a_flow_is_gone_after_its_state_timeout_or_with_its_real() {
        let mut settings = Settings::default();
        settings.timeouts_s[STATE_FIN_WAIT as usize] = 2;
        let up = real(1, REAL_AVAILABLE);
        let now = 1000 * SECOND;
        // 900 s, plus the second last_seen may lag the flow's last packet.
        assert!(!is_gone(&flow(STATE_ESTABLISHED, 99), now, &settings, &up));
        assert!(is_gone(&flow(STATE_ESTABLISHED, 98), now, &settings, &up));
        assert!(!is_gone(&flow(STATE_FIN_WAIT, 997), now, &settings, &up));
        assert!(is_gone(&flow(STATE_FIN_WAIT, 996), now, &settings, &up));
        // Failed (not available), retired (default entry) or given to another service.
        for lost in [real(1, 0), Real::default(), real(2, REAL_AVAILABLE)] {
            assert!(is_gone(
                &flow(STATE_ESTABLISHED, 999),
                now,
                &settings,
                &lost
            ));
        }
    }
}
