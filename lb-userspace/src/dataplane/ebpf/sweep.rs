//! The flow table's garbage collector: removes flows that have expired or whose real can no
//! longer take them, and takes them out of their real's connection counts.
//!
//! The program forgets such a flow itself when its next packet comes; the sweep is for the
//! flows no packet comes for, so that they leave the counts (and the table) within a sweep
//! of expiring. The rule that keeps counts exact: a flow leaves the table only by a delete,
//! and whoever's delete succeeds counts it out. Here the delete is a lookup-and-delete, so
//! the sweep counts out exactly the entry it removed, in the state that entry was in; had
//! the flow come alive again meanwhile (a new connection on the same 5-tuple), it is put back.
//!
//! Under pressure (from when the table is at least [`PRESSURE_FILL_PERCENT`] full until it is
//! below [`PRESSURE_END_PERCENT`], as a SYN flood leaves it: the table is a plain hash, which never evicts a live flow for a new one), flows still
//! in `SYN_RECV` expire after [`SYN_RECV_UNDER_PRESSURE`] instead of their state's 60 s, as
//! IPVS's `secure_tcp` defence shortens them. A real handshake ends within a round trip, and
//! a client whose SYN went unanswered sends it again (which refreshes the flow), so mostly
//! half-open flows nobody follows up leave early: the table frees within seconds of a flood's
//! end instead of a minute. The price, as with `secure_tcp`: a handshake whose SYN-ACK comes
//! more than 5 s after the client's last SYN loses its flow, and the client's ACK then meets
//! none.
//!
//! Then the NAT replies table (`LB_REPLIES_V1`): a reply entry lives as long as its client's
//! flow, and the program does not see most flows go (the sweep removes them). After the flow
//! walk, the replies are walked; an entry whose flow is gone, or now goes to another real, is
//! an orphan, and is deleted when the next sweep finds it an orphan still, unchanged, and its
//! flow still absent. Two sweeps, because the program claims a new flow's reply entry just
//! before it records the flow: an entry seen in that instant looks orphaned once, never
//! twice.

use std::{collections::HashMap, os::fd::AsFd, time::Duration};

use aya::maps::{Array, MapData};
use lb_common::{
    FORWARD_FULLNAT, FORWARD_NAT, Flow, FlowKey, MAP_FLOWS, MAP_REPLIES, MAP_SETTINGS,
    REAL_AVAILABLE, Real, Reply, Settings, conntrack::STATE_SYN_RECV,
};

use super::{
    batch, element,
    published::{Conns, Reals},
};
use crate::dataplane::{DataplaneError, map_err};

/// How full the flow table is when half-open flows start to expire early.
pub const PRESSURE_FILL_PERCENT: u64 = 75;
/// How full it must be no longer for the pressure to end: lower than where it starts, so a
/// table hovering at the mark does not switch every second.
pub const PRESSURE_END_PERCENT: u64 = 65;
/// How long a `SYN_RECV` flow lives under pressure.
pub const SYN_RECV_UNDER_PRESSURE: Duration = Duration::from_secs(5);

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Flows seen, and removed.
    pub flows: u64,
    pub removed: u64,
    /// Whether the table was under pressure, and the half-open flows removed early for it
    /// (counted in `removed` too).
    pub pressure: bool,
    pub removed_half_open: u64,
    /// How long the flow walk (and its deletes) took.
    pub flows_time: Duration,
    /// NAT reply entries seen, and removed because their flow was gone.
    pub replies: u64,
    pub replies_removed: u64,
    pub replies_time: Duration,
}

/// Handles of its own on the maps a sweep needs.
pub struct Sweeper {
    pub(super) flows: MapData,
    /// The flow table's size (`limits.flows`).
    pub(super) flow_capacity: u64,
    /// Whether the last sweep found the table under pressure (see [`under_pressure`]).
    pub(super) pressure: std::sync::atomic::AtomicBool,
    /// `None` when the object has no replies map (a program without NAT).
    pub(super) replies: Option<MapData>,
    pub(super) conns: std::sync::Arc<Conns>,
    pub(super) reals: Reals,
    pub(super) settings: Array<MapData, Settings>,
    /// Reply entries the last sweep found orphaned (see the module's doc).
    pub(super) orphans: std::sync::Mutex<HashMap<FlowKey, Reply>>,
}

/// Whether a flow is gone at `now_ns`: idle past its state's timeout (as the program counts
/// it, see `Settings::expires_after_ns`), or its real (`real`, the entry of its real id now)
/// no longer one that may take it.
pub fn is_gone(flow: &Flow, now_ns: u64, settings: &Settings, real: &Real) -> bool {
    let real_lost = real.flags & REAL_AVAILABLE == 0 || real.service_id != flow.service_id;
    real_lost || idle_ns(flow, now_ns) > settings.expires_after_ns(flow.state as u8)
}

/// Whether a table of `capacity` holding `flows` is under pressure, given whether it `was`.
pub fn under_pressure(was: bool, flows: u64, capacity: u64) -> bool {
    let percent = |mark: u64| flows * 100 >= capacity * mark;
    percent(PRESSURE_FILL_PERCENT) || was && percent(PRESSURE_END_PERCENT)
}

/// Whether a flow is a half-open one that goes early under pressure.
pub fn is_stale_half_open(flow: &Flow, now_ns: u64) -> bool {
    flow.state == u32::from(STATE_SYN_RECV)
        && idle_ns(flow, now_ns) > SYN_RECV_UNDER_PRESSURE.as_nanos() as u64
}

fn idle_ns(flow: &Flow, now_ns: u64) -> u64 {
    now_ns.saturating_sub(flow.last_seen_ns)
}

impl Sweeper {
    /// One pass over the flow table, then one over the replies table.
    pub fn sweep(&self, now_ns: u64) -> Result<SweepReport, DataplaneError> {
        let started = std::time::Instant::now();
        let mut report = SweepReport::default();
        let nat_flows = self.sweep_flows(now_ns, &mut report)?;
        report.flows_time = started.elapsed();
        let started = std::time::Instant::now();
        self.sweep_replies(&nat_flows, &mut report)?;
        report.replies_time = started.elapsed();
        Ok(report)
    }

    /// Removes the flows that are gone; returns the real of every NAT and full-NAT flow kept
    /// (the flows reply entries may belong to).
    fn sweep_flows(
        &self,
        now_ns: u64,
        report: &mut SweepReport,
    ) -> Result<HashMap<FlowKey, u32>, DataplaneError> {
        let settings = self.settings.get(&0, 0).map_err(map_err(MAP_SETTINGS))?;
        let replies = self.replies.is_some();
        let mut candidates: Vec<FlowKey> = Vec::new();
        let mut half_open: Vec<FlowKey> = Vec::new();
        let mut nat_flows: HashMap<FlowKey, u32> = HashMap::new();
        batch::for_each::<FlowKey, Flow>(self.flows.fd().as_fd(), |key, flow| {
            report.flows += 1;
            let real = self.real(flow.real_id);
            if is_gone(flow, now_ns, &settings, &real) {
                candidates.push(*key);
                return;
            }
            if is_stale_half_open(flow, now_ns) {
                half_open.push(*key);
            }
            if replies && matches!(real.forward, FORWARD_NAT | FORWARD_FULLNAT) {
                nat_flows.insert(*key, flow.real_id);
            }
        })
        .map_err(|source| syscall("BPF_MAP_LOOKUP_BATCH", source))?;
        let was = self.pressure.load(std::sync::atomic::Ordering::Relaxed);
        report.pressure = under_pressure(was, report.flows, self.flow_capacity);
        self.pressure
            .store(report.pressure, std::sync::atomic::Ordering::Relaxed);
        let expired = candidates.len();
        if report.pressure {
            for key in &half_open {
                // Its reply entry goes with it.
                nat_flows.remove(key);
            }
            candidates.append(&mut half_open);
        }
        let flows = self.flows.fd().as_fd();
        for (index, key) in candidates.into_iter().enumerate() {
            let Some(flow) = element::lookup_and_delete::<FlowKey, Flow>(flows, &key)
                .map_err(|source| syscall("BPF_MAP_LOOKUP_AND_DELETE_ELEM", source))?
            else {
                // The program forgot it first, and counted it out.
                continue;
            };
            let early = index >= expired;
            let gone = is_gone(&flow, now_ns, &settings, &self.real(flow.real_id))
                || early && is_stale_half_open(&flow, now_ns);
            if !gone {
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
            if early {
                report.removed_half_open += 1;
            }
        }
        Ok(nat_flows)
    }

    /// Removes the reply entries whose client flow is not among `nat_flows` (gone, or now
    /// going to another real) in this sweep and the last, unchanged, after checking once more
    /// that their flow is absent.
    fn sweep_replies(
        &self,
        nat_flows: &HashMap<FlowKey, u32>,
        report: &mut SweepReport,
    ) -> Result<(), DataplaneError> {
        let Some(replies) = &self.replies else {
            return Ok(());
        };
        let replies = replies.fd().as_fd();
        let mut orphans: HashMap<FlowKey, Reply> = HashMap::new();
        batch::for_each::<FlowKey, Reply>(replies, |key, reply| {
            report.replies += 1;
            if nat_flows.get(&reply.flow) != Some(&reply.real_id) {
                orphans.insert(*key, *reply);
            }
        })
        .map_err(|source| replies_syscall("BPF_MAP_LOOKUP_BATCH", source))?;
        let mut last = self
            .orphans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let flows = self.flows.fd().as_fd();
        let mut removed = Vec::new();
        for (key, reply) in &orphans {
            if last.get(key) != Some(reply) {
                continue;
            }
            let flow = element::lookup::<FlowKey, Flow>(flows, &reply.flow)
                .map_err(|source| syscall("BPF_MAP_LOOKUP_ELEM", source))?;
            if flow.is_some_and(|flow| flow.real_id == reply.real_id) {
                continue;
            }
            if element::lookup_and_delete::<FlowKey, Reply>(replies, key)
                .map_err(|source| replies_syscall("BPF_MAP_LOOKUP_AND_DELETE_ELEM", source))?
                .is_some()
            {
                report.replies_removed += 1;
            }
            removed.push(*key);
        }
        for key in removed {
            orphans.remove(&key);
        }
        *last = orphans;
        Ok(())
    }

    /// The replies table's handle, e.g. for filling it in tests (`batch::update`); `None`
    /// when the program has none.
    pub fn replies(&self) -> Option<&MapData> {
        self.replies.as_ref()
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

fn replies_syscall(call: &'static str, source: std::io::Error) -> DataplaneError {
    DataplaneError::Syscall {
        map: MAP_REPLIES,
        call,
        source,
    }
}

#[cfg(test)]
mod tests {
    use lb_common::conntrack::{STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_UDP};

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

    #[test]
    fn only_a_half_open_flow_idle_past_the_pressure_timeout_is_stale() {
        let now = 1000 * SECOND;
        let limit = SYN_RECV_UNDER_PRESSURE.as_secs();
        assert!(is_stale_half_open(&flow(STATE_SYN_RECV, 999 - limit), now));
        assert!(!is_stale_half_open(
            &flow(STATE_SYN_RECV, 1000 - limit),
            now
        ));
        for state in [STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_UDP] {
            assert!(!is_stale_half_open(&flow(state, 0), now));
        }
    }

    #[test]
    fn pressure_starts_at_three_quarters_and_ends_below_two_thirds() {
        assert!(!under_pressure(false, 74, 100));
        assert!(under_pressure(false, 75, 100));
        // Once under pressure, it stays until the table is below 65 %.
        assert!(under_pressure(true, 70, 100));
        assert!(under_pressure(true, 65, 100));
        assert!(!under_pressure(true, 64, 100));
        assert!(!under_pressure(false, 70, 100));
    }
}
