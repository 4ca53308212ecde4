//! The receiving side: while this node is not master, it connects to the peer, takes the
//! bulk copy and the changes after it, and merges them into its own flow table.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpStream;

use crate::dataplane::{DataplaneError, DataplaneReader, ReplyMerge};

use super::{
    AbortOnDrop, MergeGate, Shared,
    names::{Copied, Ids, Unmatched},
    read_message,
    wire::{self, FlowRecord, Message},
    write_message,
};

/// Between attempts to reach the peer.
const RETRY_EVERY: Duration = Duration::from_millis(500);
const CONNECT_WITHIN: Duration = Duration::from_secs(1);
/// A master sends something after each walk of its table (a batch, or a heartbeat when
/// nothing changed), and walks at most 3 s apart: frames come at least every walk plus 3 s.
/// A walk of a million flows takes about 10 s in a debug build; this long without a frame
/// and the connection is given up.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How often the receiving side looks whether this node became master.
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// Flows merged per pass through the merge gate: what a router about to forward may wait
/// for (a system call or two each).
const MERGE_CHUNK: usize = 256;

pub(super) async fn fetch(shared: Arc<Shared>) {
    let peer = SocketAddr::new(shared.peer, shared.port);
    loop {
        if shared.is_master() || shared.merges.shut() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let result = match tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(peer)).await {
            Ok(Ok(stream)) => receive_from(stream, &shared).await,
            Ok(Err(error)) => Err(format!("connecting to {peer}: {error}")),
            Err(_) => Err(format!("connecting to {peer}: no answer")),
        };
        // Whatever ended the stream, the copy is no longer known to be complete.
        shared.hold.send_replace(true);
        shared.board.update(|status| {
            if status.role.starts_with("receiving") {
                status.role = "idle".into();
            }
            status.complete = false;
            if let Err(error) = &result {
                status.last_error = Some(error.clone());
            }
        });
        if let Err(error) = result {
            log::debug!("sync: {error}");
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn receive_from(mut stream: TcpStream, shared: &Shared) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let hello = Message::Hello {
        features: wire::FEATURES,
    };
    write_message(&mut stream, &hello, wire::FEATURES).await?;
    // Frames are read by a task of their own: a read cut short (to look at the VRRP state)
    // would lose the bytes it had, and the stream's framing with them.
    let (frames, mut incoming) = tokio::sync::mpsc::channel(4);
    let (mut reading, _writing) = stream.into_split();
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_message(&mut reading).await;
            let failed = frame.is_err();
            if frames.send(frame).await.is_err() || failed {
                return;
            }
        }
    });
    let _stop_reading = AbortOnDrop(reader);
    let mut expected = 1u64;
    let mut ids = (shared.desired.load_full(), None::<Arc<Ids>>);
    let mut received_at = std::time::Instant::now();
    // A full flow table is said once per stream; the flows it cannot hold are counted.
    let mut warned_full = false;
    let mut warned_without_reply = false;
    // Records of the bulk copy this node has no flow for, told when the copy is done.
    let mut bulk_done = false;
    let (mut bulk_unmatched, mut bulk_invalid) = (0u64, 0u64);
    loop {
        if shared.is_master() || shared.merges.shut() {
            return Ok(());
        }
        let message = match tokio::time::timeout(LOOK_EVERY, incoming.recv()).await {
            Ok(Some(message)) => message?,
            Ok(None) => return Err("the connection's reader stopped".into()),
            Err(_) if received_at.elapsed() < SILENCE_LIMIT => continue,
            Err(_) => return Err(format!("nothing from the master for {SILENCE_LIMIT:?}")),
        };
        received_at = std::time::Instant::now();
        let sequence = match &message {
            Message::NotMaster => return Ok(()),
            Message::Hello { .. } => return Err("the peer sent a hello".into()),
            Message::Flows { sequence, .. }
            | Message::BulkDone { sequence, .. }
            | Message::Heartbeat { sequence } => *sequence,
        };
        if sequence != expected {
            shared.board.update(|status| {
                status.batches_lost += sequence.saturating_sub(expected).max(1);
            });
            return Err(format!(
                "batch {sequence} came where {expected} was due: starting over"
            ));
        }
        expected += 1;
        shared.board.update(|status| {
            status.role = format!("receiving from {}", shared.peer);
            status.lag_ms = 0;
        });
        match message {
            Message::Flows { flows, .. } => {
                let current = shared.desired.load_full();
                if ids.1.is_none() || !Arc::ptr_eq(&ids.0, &current) {
                    ids = (current.clone(), Some(Arc::new(Ids::new(&current))));
                }
                let table = ids.1.clone().expect("just built");
                let applied =
                    apply(shared.reader.clone(), shared.merges.clone(), table, flows).await?;
                shared.board.update(|status| {
                    status.flows_received += applied.received;
                    status.flows_unmatched += applied.unmatched + applied.invalid;
                    status.flows_not_held += applied.not_held;
                    status.flows_without_reply += applied.without_reply;
                    status.batches_received += 1;
                });
                if !bulk_done {
                    bulk_unmatched += applied.unmatched;
                    bulk_invalid += applied.invalid;
                }
                if applied.stopped {
                    // A router of this node forwards: the node is master now.
                    return Ok(());
                }
                if applied.not_held > 0 && !warned_full {
                    warned_full = true;
                    log::warn!(
                        "sync: the flow table is full: {} of {}'s flows could not be held \
                         (raise limits.flows); more are counted in flows_not_held, not logged",
                        applied.not_held,
                        shared.peer
                    );
                }
                if applied.without_reply > 0 && !warned_without_reply {
                    warned_without_reply = true;
                    log::warn!(
                        "sync: {} NAT or full-NAT flows from {} came without their way back \
                         (an older lbd sends none) or found their reply entry held by a flow \
                         this node forwards: their replies break if this node takes over; more \
                         are counted in flows_without_reply, not logged",
                        applied.without_reply,
                        shared.peer
                    );
                }
                if applied.unmatched > 0 {
                    log::debug!(
                        "sync: {} flows name a service, real or interface this node does not have",
                        applied.unmatched
                    );
                }
                if applied.invalid > 0 {
                    log::debug!(
                        "sync: {} flows refused: their state, port or full-NAT fields do not \
                         fit the service and real here",
                        applied.invalid
                    );
                }
            }
            Message::BulkDone { flows, .. } => {
                bulk_done = true;
                log::info!(
                    "sync: holding a full copy of {}'s flows ({flows} at the start of the copy)",
                    shared.peer
                );
                // The copy is as full as this node's config allows: holding back longer
                // would not make it fuller.
                if let Some(differences) = differences(bulk_unmatched, bulk_invalid) {
                    log::warn!("sync: of {}'s bulk copy, {differences}", shared.peer);
                }
                shared.board.update(|status| status.complete = true);
                shared.hold.send_replace(false);
            }
            _ => {}
        }
    }
}

/// What a bulk copy's refused records say, if any were: the two nodes' configs differ, and
/// those connections would break on a takeover.
fn differences(unmatched: u64, invalid: u64) -> Option<String> {
    let mut parts = Vec::new();
    if unmatched > 0 {
        parts.push(format!(
            "{unmatched} flows name a service, real or interface this node does not have"
        ));
    }
    if invalid > 0 {
        parts.push(format!(
            "{invalid} flows do not fit their service and real here (state, port or full-NAT \
             fields)"
        ));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "{}: the two nodes' configs differ, and these connections would break on a \
             takeover",
            parts.join(" and ")
        )
    })
}

#[derive(Default)]
struct Applied {
    received: u64,
    /// Records naming a service, real or interface this node lacks.
    unmatched: u64,
    /// Records refused as no flow the program would write ([`Unmatched::Invalid`]).
    invalid: u64,
    /// Flows (or their reply entries) the tables had no room for.
    not_held: u64,
    /// NAT and full-NAT flows merged without their reply entry: the master sent no way
    /// back (an older lbd, or its entry had gone), or an entry of this node's own program
    /// holds the key.
    without_reply: u64,
    /// A router of this node started forwarding: the rest of the batch was not merged.
    stopped: bool,
}

/// Merges a batch into the flow table, on a blocking thread (a system call per flow), a
/// chunk at a time through the merge gate: a router about to forward waits for one chunk at
/// most, and the merges stop with it.
async fn apply(
    reader: Arc<dyn DataplaneReader>,
    merges: Arc<MergeGate>,
    ids: Arc<Ids>,
    flows: Vec<FlowRecord>,
) -> Result<Applied, String> {
    tokio::task::spawn_blocking(move || {
        let now_ns = reader.now_ns();
        let mut applied = Applied {
            received: flows.len() as u64,
            ..Applied::default()
        };
        for chunk in flows.chunks(MERGE_CHUNK) {
            let merged = merges.merge(|| {
                for record in chunk {
                    match ids.flow(record, now_ns) {
                        Ok(copied) => {
                            match merge_copy(reader.as_ref(), &ids, &copied)
                                .map_err(|error| error.to_string())?
                            {
                                Merged::Whole => {}
                                // Ending the stream would only bring the same flows again.
                                Merged::TableFull => applied.not_held += 1,
                                Merged::WithoutReply => applied.without_reply += 1,
                            }
                        }
                        Err(Unmatched::Service | Unmatched::Real | Unmatched::Interface) => {
                            applied.unmatched += 1
                        }
                        Err(Unmatched::Invalid) => applied.invalid += 1,
                    }
                }
                Ok::<(), String>(())
            });
            match merged {
                Some(result) => result?,
                None => {
                    applied.stopped = true;
                    break;
                }
            }
        }
        Ok(applied)
    })
    .await
    .map_err(|error| format!("merging flows: {error}"))?
}

/// What [`merge_copy`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Merged {
    /// The flow, and its reply entry if it has one.
    Whole,
    /// The flow or its reply entry: no room.
    TableFull,
    /// A NAT or full-NAT flow without its reply entry (see [`Applied::without_reply`]).
    WithoutReply,
}

/// Merges a flow, then its reply entry, which replaces an entry the key holds only where
/// [`Ids::may_replace`] says so.
pub(super) fn merge_copy(
    reader: &dyn DataplaneReader,
    ids: &Ids,
    copied: &Copied,
) -> Result<Merged, DataplaneError> {
    if !reader.merge_flow(&copied.key, &copied.flow)? {
        return Ok(Merged::TableFull);
    }
    let Some((key, reply)) = &copied.reply else {
        return Ok(if copied.lacks_way_back {
            Merged::WithoutReply
        } else {
            Merged::Whole
        });
    };
    Ok(
        match reader.merge_reply(key, reply, &|held| ids.may_replace(held, reply))? {
            ReplyMerge::Written => Merged::Whole,
            ReplyMerge::TableFull => Merged::TableFull,
            ReplyMerge::HeldByAnother | ReplyMerge::Unsettled => Merged::WithoutReply,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use lb_common::{ConnCounts, Counters, Flow, FlowKey, OutCounters, Reason, Reply};

    use super::*;
    use crate::{
        dataplane::DataplaneError,
        sync::testing::{desired, tcp_record},
    };

    /// A flow table of `capacity` entries that notes merges made outside the gate.
    struct Table {
        gate: Arc<MergeGate>,
        capacity: usize,
        flows: Mutex<HashMap<FlowKey, Flow>>,
        replies: Mutex<HashMap<FlowKey, Reply>>,
        merged_outside_the_gate: AtomicUsize,
    }

    impl Table {
        fn new(gate: &Arc<MergeGate>, capacity: usize) -> Arc<Self> {
            Arc::new(Self {
                gate: gate.clone(),
                capacity,
                flows: Mutex::default(),
                replies: Mutex::default(),
                merged_outside_the_gate: AtomicUsize::new(0),
            })
        }

        fn len(&self) -> usize {
            self.flows.lock().unwrap().len()
        }
    }

    impl DataplaneReader for Table {
        fn service_counters(&self, _: u32) -> Result<Counters, DataplaneError> {
            unreachable!("sync reads no counters")
        }
        fn real_counters(&self, _: u32) -> Result<Counters, DataplaneError> {
            unreachable!("sync reads no counters")
        }
        fn service_out_counters(&self, _: u32) -> Result<OutCounters, DataplaneError> {
            unreachable!("sync reads no counters")
        }
        fn real_out_counters(&self, _: u32) -> Result<OutCounters, DataplaneError> {
            unreachable!("sync reads no counters")
        }
        fn reason_counters(&self) -> Result<Vec<(Reason, Counters)>, DataplaneError> {
            unreachable!("sync reads no counters")
        }
        fn connections(&self, _: u32) -> Result<ConnCounts, DataplaneError> {
            unreachable!("sync reads no counters")
        }
        fn for_each_flow(&self, _: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError> {
            unreachable!("a backup does not walk")
        }
        fn merge_flow(&self, key: &FlowKey, flow: &Flow) -> Result<bool, DataplaneError> {
            // The gate's lock is held while a merge runs.
            if self.gate.serving.try_lock().is_ok() {
                self.merged_outside_the_gate.fetch_add(1, Ordering::Relaxed);
            }
            let mut flows = self.flows.lock().unwrap();
            if !flows.contains_key(key) && flows.len() == self.capacity {
                return Ok(false);
            }
            flows.insert(*key, *flow);
            Ok(true)
        }
        fn reply(&self, _: &FlowKey) -> Result<Option<Reply>, DataplaneError> {
            unreachable!("a backup reads no reply entry")
        }
        fn merge_reply(
            &self,
            key: &FlowKey,
            reply: &Reply,
            may_replace: &dyn Fn(&Reply) -> bool,
        ) -> Result<ReplyMerge, DataplaneError> {
            if self.gate.serving.try_lock().is_ok() {
                self.merged_outside_the_gate.fetch_add(1, Ordering::Relaxed);
            }
            let mut replies = self.replies.lock().unwrap();
            if let Some(held) = replies.get(key)
                && !may_replace(held)
            {
                return Ok(ReplyMerge::HeldByAnother);
            }
            replies.insert(*key, *reply);
            Ok(ReplyMerge::Written)
        }
    }

    const BACKUP: &str = "
instance: b
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}
";

    /// `count` established flows of the one service, from distinct client ports.
    fn records(count: u16) -> Vec<FlowRecord> {
        (1..=count)
            .map(|client_port| FlowRecord {
                client_port,
                ..tcp_record()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_is_merged_inside_the_gate() {
        let gate = Arc::new(MergeGate::default());
        let table = Table::new(&gate, 10_000);
        let ids = Arc::new(Ids::new(&desired(BACKUP)));
        let applied = apply(
            table.clone(),
            gate,
            ids,
            records(3 * MERGE_CHUNK as u16 + 1),
        )
        .await
        .expect("applies");
        assert!(!applied.stopped);
        assert_eq!(applied.received, 3 * MERGE_CHUNK as u64 + 1);
        assert_eq!(table.len(), 3 * MERGE_CHUNK + 1);
        assert_eq!(table.merged_outside_the_gate.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn nothing_is_merged_while_a_router_forwards() {
        let gate = Arc::new(MergeGate::default());
        gate.serving();
        let table = Table::new(&gate, 10_000);
        let ids = Arc::new(Ids::new(&desired(BACKUP)));
        let applied = apply(table.clone(), gate, ids, records(10))
            .await
            .expect("applies");
        assert!(applied.stopped, "the stream must end: this node is master");
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn records_that_fit_nothing_here_are_counted_not_merged() {
        let gate = Arc::new(MergeGate::default());
        let table = Table::new(&gate, 10_000);
        let ids = Arc::new(Ids::new(&desired(BACKUP)));
        let mut flows = records(4);
        // A TCP flow in the UDP state, and one on a real this node lacks.
        flows[1].state = lb_common::conntrack::STATE_UDP;
        flows[2].real = "192.0.2.99".parse().unwrap();
        let applied = apply(table.clone(), gate, ids, flows)
            .await
            .expect("applies");
        assert_eq!((applied.invalid, applied.unmatched), (1, 1));
        assert_eq!(table.len(), 2);
    }

    #[tokio::test]
    async fn a_full_table_counts_the_flows_it_cannot_hold_and_goes_on() {
        let gate = Arc::new(MergeGate::default());
        let table = Table::new(&gate, 3);
        let ids = Arc::new(Ids::new(&desired(BACKUP)));
        let applied = apply(table.clone(), gate, ids, records(5))
            .await
            .expect("a full table is no error");
        assert_eq!(applied.not_held, 2);
        assert!(!applied.stopped);
        assert_eq!(table.len(), 3);
    }

    #[tokio::test]
    async fn a_nat_flow_is_merged_with_its_reply_entry() {
        let gate = Arc::new(MergeGate::default());
        let table = Table::new(&gate, 10_000);
        let nat = desired(
            "
instance: b
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11, forward: nat}]}
",
        );
        let ids = Arc::new(Ids::new(&nat));
        let way_back = wire::WayBack {
            interface: wire::InterfaceName::new("eth0").unwrap(),
            client_mac: [2, 0, 0, 0, 0, 0x42],
            vlan_proto: 0,
            vlan: 0,
            local: None,
        };
        let mut flows = records(3);
        flows[0].way_back = Some(way_back);
        // From an older master: the flow alone.
        flows[1].way_back = None;
        // Through an interface this node's program does not run on: nothing.
        flows[2].way_back = Some(wire::WayBack {
            interface: wire::InterfaceName::new("eth9").unwrap(),
            ..way_back
        });
        let applied = apply(table.clone(), gate, ids, flows)
            .await
            .expect("applies");
        assert_eq!((applied.unmatched, applied.invalid), (1, 0));
        assert_eq!(applied.without_reply, 1, "the older master's");
        assert_eq!(table.len(), 2);
        let replies = table.replies.lock().unwrap();
        assert_eq!(replies.len(), 1);
        let reply = replies.values().next().unwrap();
        assert_eq!(
            u16::from_be(reply.flow.src_port_be),
            1,
            "the first record's"
        );
        assert_eq!(
            (reply.client_mac, reply.ingress_ifindex),
            ([2, 0, 0, 0, 0, 0x42], 7)
        );
        assert_eq!(table.merged_outside_the_gate.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_bulk_copy_with_refused_records_says_the_configs_differ() {
        assert_eq!(differences(0, 0), None);
        assert_eq!(
            differences(3, 0).as_deref(),
            Some(
                "3 flows name a service, real or interface this node does not have: the two nodes' \
                 configs differ, and these connections would break on a takeover"
            )
        );
        let both = differences(3, 2).expect("told");
        assert!(both.starts_with("3 flows name a service"), "{both}");
        assert!(both.contains(" and 2 flows do not fit"), "{both}");
    }
}
