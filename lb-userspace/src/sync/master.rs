//! The sending side: the backup connects, gets a bulk copy of the flow table, then every
//! [`SCAN_EVERY`] (up to [`PAUSE_AT_MOST`] apart for a large table) what changed.

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::{BuildHasher, Hash},
    sync::Arc,
    time::{Duration, Instant},
};

use lb_common::{Flow, FlowKey, Settings};
use tokio::{net::TcpStream, sync::mpsc};

use super::{
    AbortOnDrop, SCAN_EVERY, Shared,
    names::Names,
    read_message,
    wire::{self, FlowRecord, MAX_BATCH, Message},
    write_message,
};

/// A flow the backup was sent is sent again when it has seen packets for this long since
/// (its state unchanged), or for a third of its state's timeout if that is shorter, so the
/// backup's copy does not expire while the master's is alive (see [`needs_sending`]).
const REFRESH_AFTER: Duration = Duration::from_secs(10);
/// The longest pause between two scans, however long a walk takes: a flow that moves to
/// CLOSE (10 s) must reach the backup in that state before the master's sweep removes it,
/// and a refresh (after a third of the timeout) before the backup's copy expires.
const PAUSE_AT_MOST: Duration = Duration::from_secs(3);
/// How long the backup has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);
/// Batches the table walk may run ahead of the socket.
const BATCHES_AHEAD: usize = 4;

/// What the backup was last sent of a flow, keyed by a digest of its key. With the key and
/// the hash map's overhead, about 40 bytes per flow (up to twice that just after the map
/// grows).
#[derive(Clone, Copy)]
struct Sent {
    real_id: u32,
    state: u32,
    last_seen_ns: u64,
    /// The scan that last saw it: entries no scan sees any more are dropped.
    scan: u32,
}

pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    // The stream to the backup, if any: it ends when a new one starts, and with `serve`
    // (aborted by `Sync::stop`).
    let mut current: Option<AbortOnDrop> = None;
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                log::warn!("sync: accepting: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if from.ip() != shared.peer {
            log::warn!(
                "sync: refused a connection from {from}: only the peer {} may sync",
                shared.peer
            );
            continue;
        }
        // One backup at a time: a new connection is the backup starting over.
        drop(current.take());
        let shared = shared.clone();
        current = Some(AbortOnDrop(tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if let Err(error) = stream_to(stream, &shared).await {
                log::info!("sync: stream to {}: {error}", shared.peer);
                shared
                    .board
                    .update(|status| status.last_error = Some(error));
            }
            shared.board.update(|status| {
                if status.role.starts_with("sending") {
                    status.role = "idle".into();
                }
            });
        })));
    }
}

/// The stream to the backup: frames go with the features both ends know, numbered from 1.
struct Outgoing {
    stream: TcpStream,
    features: u8,
    sequence: u64,
}

impl Outgoing {
    /// Sends the message `numbered` makes of the next sequence number.
    async fn send(&mut self, numbered: impl FnOnce(u64) -> Message) -> Result<(), String> {
        self.sequence += 1;
        write_message(&mut self.stream, &numbered(self.sequence), self.features).await
    }
}

async fn stream_to(mut stream: TcpStream, shared: &Shared) -> Result<(), String> {
    let features = match tokio::time::timeout(HELLO_WITHIN, read_message(&mut stream)).await {
        Ok(Ok(Message::Hello { features })) => features & wire::FEATURES,
        Ok(Ok(other)) => return Err(format!("expected a hello, got {other:?}")),
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err("no hello".into()),
    };
    if !shared.is_master() {
        write_message(&mut stream, &Message::NotMaster, features).await?;
        return Ok(());
    }
    if features & wire::FEATURE_WAY_BACK == 0 {
        log::warn!(
            "sync: {} is an older lbd: NAT and full-NAT flows go without their way back, and \
             break if it takes over, until it is upgraded",
            shared.peer
        );
    }
    let mut outgoing = Outgoing {
        stream,
        features,
        sequence: 0,
    };
    shared.board.update(|status| {
        status.role = format!("sending to {}", shared.peer);
        status.complete = false;
    });
    let hasher = std::collections::hash_map::RandomState::new();
    let mut sent: HashMap<u64, Sent> = HashMap::new();
    let mut scan = 0u32;

    // The bulk copy: every flow, streamed from a blocking walk a few batches ahead.
    let started = Instant::now();
    let count = send_changes(&mut outgoing, shared, &hasher, &mut sent, scan, true).await?;
    outgoing
        .send(|sequence| Message::BulkDone {
            sequence,
            flows: count,
        })
        .await?;
    log::info!(
        "sync: sent a bulk copy of {count} flows to {} in {:?}",
        shared.peer,
        started.elapsed()
    );
    shared.board.update(|status| status.complete = true);

    let mut pause = SCAN_EVERY;
    loop {
        tokio::time::sleep(pause).await;
        if !shared.is_master() {
            return Ok(());
        }
        scan = scan.wrapping_add(1);
        let started = Instant::now();
        let changed = send_changes(&mut outgoing, shared, &hasher, &mut sent, scan, false).await?;
        sent.retain(|_, entry| entry.scan == scan);
        if changed == 0 {
            outgoing
                .send(|sequence| Message::Heartbeat { sequence })
                .await?;
        }
        let took = started.elapsed();
        // A large table takes a while to walk: the walks take at most a quarter of a core,
        // unless that would leave more than PAUSE_AT_MOST between them.
        pause = SCAN_EVERY.max(took * 3).min(PAUSE_AT_MOST);
        shared.board.update(|status| {
            status.lag_ms = (pause + took).as_millis() as u64;
            status.pending = 0;
        });
    }
}

/// Walks the flow table and sends what the backup lacks (everything, for the bulk copy);
/// returns how many flows went. `sent` moves into the walk (a blocking thread) and back: a
/// flow is recorded as sent when its batch is queued, and should the connection fail, the
/// record goes with it.
async fn send_changes(
    outgoing: &mut Outgoing,
    shared: &Shared,
    hasher: &std::collections::hash_map::RandomState,
    sent: &mut HashMap<u64, Sent>,
    scan: u32,
    bulk: bool,
) -> Result<u64, String> {
    let (batches, mut incoming) = mpsc::channel::<Vec<FlowRecord>>(BATCHES_AHEAD);
    let reader = shared.reader.clone();
    let desired = shared.desired.load();
    let names = Names::new(&desired);
    let settings = desired.timeouts.settings();
    drop(desired);
    let mut known = std::mem::take(sent);
    let hasher = hasher.clone();
    let walk = tokio::task::spawn_blocking(move || {
        let now_ns = reader.now_ns();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // The connection failed (the receiver is gone): the walk cannot be stopped, but it
        // does nothing more per entry, and what was sent goes with the connection.
        let mut cancelled = false;
        let mut unreadable_said = false;
        let result = reader.for_each_flow(&mut |key: &FlowKey, flow: &Flow| {
            if cancelled {
                return;
            }
            let digest = digest_of(&hasher, key);
            let Some(record) = visit(&mut known, digest, flow, scan, bulk, &settings, || {
                // A reply entry that cannot be read: the flow waits for the next walk (not
                // taken for sent), said once per walk.
                names
                    .record(key, flow, now_ns, |reply_key| reader.reply(reply_key))
                    .unwrap_or_else(|error| {
                        if !unreadable_said {
                            unreadable_said = true;
                            log::warn!("sync: reading a flow's reply entry: {error}");
                        }
                        None
                    })
            }) else {
                return;
            };
            batch.push(record);
            if batch.len() == MAX_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                if batches.blocking_send(full).is_err() {
                    cancelled = true;
                    known = HashMap::new();
                    batch = Vec::new();
                }
            }
        });
        if cancelled {
            return Err("the connection failed during the walk".to_owned());
        }
        if !batch.is_empty() {
            let _ = batches.blocking_send(batch);
        }
        result.map(|()| known).map_err(|error| error.to_string())
    });
    let mut count = 0u64;
    while let Some(flows) = incoming.recv().await {
        let sent_now = flows.len() as u64;
        shared.board.update(|status| status.pending = sent_now);
        outgoing
            .send(|sequence| Message::Flows { sequence, flows })
            .await?;
        count += sent_now;
        shared.board.update(|status| {
            status.flows_sent += sent_now;
            status.batches_sent += 1;
            status.pending = 0;
        });
    }
    *sent = walk
        .await
        .map_err(|error| format!("flow table walk: {error}"))??;
    Ok(count)
}

/// One entry of a walk: the flow's record if the backup needs it (every flow, for the bulk
/// copy), with `known` updated to say it was sent. A flow that cannot be named (its service
/// or real is not in this node's snapshot yet, or any more) is not sent, and not recorded as
/// sent: the next scan tries it again.
fn visit(
    known: &mut HashMap<u64, Sent>,
    digest: u64,
    flow: &Flow,
    scan: u32,
    bulk: bool,
    settings: &Settings,
    name: impl FnOnce() -> Option<FlowRecord>,
) -> Option<FlowRecord> {
    let now_sent = Sent {
        real_id: flow.real_id,
        state: flow.state,
        last_seen_ns: flow.last_seen_ns,
        scan,
    };
    match known.entry(digest) {
        Entry::Occupied(mut occupied) => {
            let sent = occupied.get_mut();
            // Seen by this scan: it stays, sent or not.
            sent.scan = scan;
            if !bulk && !needs_sending(Some(sent), flow, settings) {
                return None;
            }
            let record = name()?;
            *sent = now_sent;
            Some(record)
        }
        Entry::Vacant(vacant) => {
            let record = name()?;
            vacant.insert(now_sent);
            Some(record)
        }
    }
}

/// Whether a flow must go to the backup: new to it, moved to another real or state, or
/// alive long enough since it was last sent that the backup's copy would age: it has seen
/// packets for `min(REFRESH_AFTER, timeout / 3)` since, the timeout of its state in
/// `settings` (this node's; the backup expires its copies by its own, so both nodes need
/// the same `timeouts`). A third leaves the refresh the rest of the timeout to reach the
/// backup: a scan's pause ([`PAUSE_AT_MOST`]) and walk.
fn needs_sending(sent: Option<&Sent>, flow: &Flow, settings: &Settings) -> bool {
    match sent {
        None => true,
        Some(sent) => {
            let refresh_after_ns =
                (REFRESH_AFTER.as_nanos() as u64).min(settings.timeout_ns(flow.state as u8) / 3);
            sent.real_id != flow.real_id
                || sent.state != flow.state
                || flow.last_seen_ns > sent.last_seen_ns + refresh_after_ns
        }
    }
}

fn digest_of(hasher: &std::collections::hash_map::RandomState, key: &FlowKey) -> u64 {
    let mut state = hasher.build_hasher();
    key.hash(&mut state);
    std::hash::Hasher::finish(&state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::tcp_record;

    fn flow(real_id: u32, state: u32, last_seen_s: u64) -> Flow {
        Flow {
            real_id,
            state,
            last_seen_ns: last_seen_s * 1_000_000_000,
            ..Flow::default()
        }
    }

    #[test]
    fn a_flow_that_cannot_be_named_is_not_recorded_as_sent() {
        let mut known = HashMap::new();
        let new = flow(1, 2, 100);
        assert_eq!(
            visit(&mut known, 7, &new, 1, false, &Settings::default(), || None),
            None
        );
        assert!(known.is_empty(), "recorded as sent without a name");
        // Named at the next scan: sent then, and only then.
        assert_eq!(
            visit(
                &mut known,
                7,
                &new,
                2,
                false,
                &Settings::default(),
                || Some(tcp_record())
            ),
            Some(tcp_record())
        );
        assert_eq!(
            visit(
                &mut known,
                7,
                &new,
                3,
                false,
                &Settings::default(),
                || panic!("sent twice")
            ),
            None
        );
        assert_eq!(known[&7].scan, 3, "a flow seen stays known");
        // Moved to a real that cannot be named yet: the backup still has the old real, and
        // the move is sent once it can be.
        let moved = flow(2, 2, 100);
        assert_eq!(
            visit(
                &mut known,
                7,
                &moved,
                4,
                false,
                &Settings::default(),
                || None
            ),
            None
        );
        assert_eq!((known[&7].real_id, known[&7].scan), (1, 4));
        assert_eq!(
            visit(
                &mut known,
                7,
                &moved,
                5,
                false,
                &Settings::default(),
                || Some(tcp_record())
            ),
            Some(tcp_record())
        );
        assert_eq!(known[&7].real_id, 2);
    }

    #[test]
    fn the_bulk_copy_sends_every_flow() {
        let mut known = HashMap::new();
        let same = flow(1, 2, 100);
        assert!(
            visit(&mut known, 7, &same, 0, false, &Settings::default(), || {
                Some(tcp_record())
            })
            .is_some()
        );
        assert!(
            visit(&mut known, 7, &same, 1, false, &Settings::default(), || {
                Some(tcp_record())
            })
            .is_none()
        );
        // A digest already known (two keys alike, or a key the walk met twice) goes too.
        assert!(
            visit(
                &mut known,
                7,
                &same,
                2,
                true,
                &Settings::default(),
                || Some(tcp_record())
            )
            .is_some()
        );
    }

    #[test]
    fn short_timeouts_are_refreshed_after_a_third() {
        use lb_common::conntrack::{STATE_CLOSE, STATE_UDP};
        let sent = |state: u8| Sent {
            real_id: 1,
            state: u32::from(state),
            last_seen_ns: 100_000_000_000,
            scan: 0,
        };
        let at = |state: u8, last_seen_ms: u64| Flow {
            real_id: 1,
            state: u32::from(state),
            last_seen_ns: last_seen_ms * 1_000_000,
            ..Flow::default()
        };
        let defaults = Settings::default();
        // CLOSE lasts 10 s: refreshed after 3.33 s.
        let close = sent(STATE_CLOSE);
        assert!(!needs_sending(
            Some(&close),
            &at(STATE_CLOSE, 103_300),
            &defaults
        ));
        assert!(needs_sending(
            Some(&close),
            &at(STATE_CLOSE, 103_400),
            &defaults
        ));
        // A UDP timeout set to 6 s: after 2 s.
        let mut short = Settings::default();
        short.timeouts_s[usize::from(STATE_UDP)] = 6;
        let udp = sent(STATE_UDP);
        assert!(!needs_sending(Some(&udp), &at(STATE_UDP, 102_000), &short));
        assert!(needs_sending(Some(&udp), &at(STATE_UDP, 102_001), &short));
        // The default 300 s: after 10 s, not 100.
        assert!(!needs_sending(
            Some(&udp),
            &at(STATE_UDP, 110_000),
            &defaults
        ));
        assert!(needs_sending(
            Some(&udp),
            &at(STATE_UDP, 110_001),
            &defaults
        ));
    }

    #[test]
    fn only_new_moved_and_aging_flows_are_sent_again() {
        let sent = Sent {
            real_id: 1,
            state: 2,
            last_seen_ns: 100_000_000_000,
            scan: 0,
        };
        assert!(needs_sending(None, &flow(1, 2, 100), &Settings::default()));
        assert!(!needs_sending(
            Some(&sent),
            &flow(1, 2, 100),
            &Settings::default()
        ));
        assert!(
            !needs_sending(Some(&sent), &flow(1, 2, 109), &Settings::default()),
            "refreshed too soon"
        );
        assert!(
            needs_sending(Some(&sent), &flow(1, 2, 111), &Settings::default()),
            "never refreshed"
        );
        assert!(
            needs_sending(Some(&sent), &flow(2, 2, 100), &Settings::default()),
            "moved real"
        );
        assert!(
            needs_sending(Some(&sent), &flow(1, 3, 100), &Settings::default()),
            "changed state"
        );
    }
}
