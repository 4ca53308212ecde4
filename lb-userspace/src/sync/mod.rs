//! Connection sync with the VRRP peer: the master streams its flow table to the backup, so
//! that a takeover (or a fail-back) keeps every established connection on its real.
//!
//! - `wire.rs`: the stream's frames, flows named by VIP:port/protocol and real address:port;
//! - `names.rs`: ids ↔ names on each node;
//! - `master.rs`: the sending side: a bulk copy when the backup connects, then every
//!   [`SCAN_EVERY`] (longer for a table that takes long to walk, up to 3 s) the flows that
//!   are new, changed state or real, or need refreshing;
//! - `backup.rs`: the receiving side: connects while this node is not master, merges what
//!   comes into the flow table (through the [`MergeGate`], never while a router of this
//!   node forwards), and says when it holds a full copy.
//!
//! What is sent is each flow's state and how long it has been idle; the backup's copies
//! expire by the backup's own timeouts. So both nodes need the same `timeouts`: the master
//! re-sends a flow that has seen packets for a third of its state's timeout (10 s at most)
//! by its own settings, and a backup with shorter ones would let copies lapse. Deletions
//! are not sent: a flow the master's sweep removes lapses on the backup when its copy
//! expires (a closing flow's last state, sent within a scan, makes that prompt).
//!
//! Sync assumes the pair's routers move together, one node master of them all (there are no
//! sync groups; they move together because both nodes see the same failures). A node is
//! master for sync when any of its routers is: it sends when asked, and does not fetch. So a
//! node master of one router and backup of another neither sends nor fetches (its peer,
//! master of the other, does not ask either), and no flow crosses until the routers agree
//! again.
//!
//! A node that is not master holds back from preempting (the VRRP routers' `hold`) until it
//! has a full copy from the current master, so a fail-back moves no connection. It still
//! takes over at once when the master goes silent or stops: there is no copy to wait for.
//!
//! Memory is bounded: the master keeps, per flow, a digest of its key and what it last sent,
//! about 40 bytes with the hash map's overhead (bounded by the flow table's size), and
//! streams the bulk copy a few batches at a time; a backup that reads slowly slows the
//! sender, it never makes it queue. A connection that fails ends its walk of the table
//! cheaply, and [`Sync::stop`] ends the connections with the tasks.

mod backup;
mod master;
mod names;
pub mod wire;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    admin::SyncStatus, config::ha::SyncConfig, dataplane::DataplaneReader, reconcile::Desired, vrrp,
};

/// How often the master looks for changed flows: this often, or three times as long as the
/// last walk of the table took, whichever is longer (a walk of a large table is not free),
/// but never more than 3 s apart (flows in CLOSE last 10 s).
pub const SCAN_EVERY: Duration = Duration::from_millis(500);

/// Keeps the backup's merges out of a flow table the program writes: once a router of this
/// node is master, its program updates the flows of its VIPs, and a copy merged then would
/// overwrite fresher state (and miscount the connections). A router stops the merges before
/// its node forwards ([`MergeGate::serving`]) and lets them resume after it stopped
/// ([`MergeGate::standing_by`]); merges hold the gate for a few hundred flows at a time, so
/// stopping them waits for at most that.
#[derive(Default)]
pub struct MergeGate {
    /// Routers of this node that are master (or becoming it).
    serving: Mutex<usize>,
}

impl MergeGate {
    /// A router is about to forward: merges stop (waiting for one in flight).
    pub fn serving(&self) {
        *self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
    }

    /// A router no longer forwards.
    pub fn standing_by(&self) {
        let mut serving = self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *serving = serving.saturating_sub(1);
    }

    /// Runs `merge` unless a router forwards; `None` if one does.
    pub fn merge<T>(&self, merge: impl FnOnce() -> T) -> Option<T> {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (*serving == 0).then(merge)
    }

    /// Whether a router forwards (so nothing would be merged).
    fn shut(&self) -> bool {
        *self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            > 0
    }
}

/// Sync's progress, for `lbadm status` and the metrics.
#[derive(Default)]
pub struct SyncBoard {
    status: Mutex<SyncStatus>,
}

impl SyncBoard {
    pub fn snapshot(&self) -> SyncStatus {
        self.status.lock().expect("sync board lock").clone()
    }

    /// Replaces the status whole (tests).
    #[cfg(test)]
    pub fn set(&self, status: SyncStatus) {
        *self.status.lock().expect("sync board lock") = status;
    }

    fn update(&self, change: impl FnOnce(&mut SyncStatus)) {
        change(&mut self.status.lock().expect("sync board lock"));
    }
}

/// What both sides share.
struct Shared {
    peer: IpAddr,
    port: u16,
    reader: Arc<dyn DataplaneReader>,
    desired: Arc<arc_swap::ArcSwap<Desired>>,
    routers: Arc<vrrp::Board>,
    board: Arc<SyncBoard>,
    /// `true` while this node lacks a full copy of the master's flows.
    hold: watch::Sender<bool>,
    /// Shut while a router of this node forwards: the backup's merges wait on it.
    merges: Arc<MergeGate>,
}

impl Shared {
    /// Whether this node is master (of any router: a pair's routers move together).
    fn is_master(&self) -> bool {
        self.routers
            .snapshot()
            .iter()
            .any(|router| router.state == "MASTER")
    }
}

/// Sync, running.
pub struct Sync {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sync {
    /// Listens on the sync port (refusing anyone but the peer) and starts fetching from the
    /// peer while this node is not master. `hold` starts `true`. `merges` is the gate this
    /// node's VRRP routers shut before they forward: no copy is merged while it is shut.
    pub async fn start(
        config: SyncConfig,
        reader: Arc<dyn DataplaneReader>,
        desired: Arc<arc_swap::ArcSwap<Desired>>,
        routers: Arc<vrrp::Board>,
        hold: watch::Sender<bool>,
        merges: Arc<MergeGate>,
    ) -> Result<(Self, Arc<SyncBoard>), std::io::Error> {
        let board = Arc::new(SyncBoard::default());
        board.update(|status| {
            status.peer = SocketAddr::new(config.peer, config.port).to_string();
            status.role = "idle".into();
        });
        let listen = if config.peer.is_ipv6() {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, config.port))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, config.port))
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("sync: listening on {listen}: {error}"),
                )
            })?;
        let shared = Arc::new(Shared {
            peer: config.peer,
            port: config.port,
            reader,
            desired,
            routers,
            board: board.clone(),
            hold,
            merges,
        });
        let tasks = vec![
            tokio::spawn(master::serve(listener, shared.clone())),
            tokio::spawn(backup::fetch(shared)),
        ];
        Ok((Self { tasks }, board))
    }

    pub async fn stop(self) {
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one frame.
async fn read_message(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<wire::Message, String> {
    use tokio::io::AsyncReadExt;
    let mut prefix = [0u8; 4];
    stream
        .read_exact(&mut prefix)
        .await
        .map_err(|error| format!("reading: {error}"))?;
    let length = wire::frame_length(prefix).map_err(|error| error.to_string())?;
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|error| format!("reading: {error}"))?;
    wire::Message::decode(&body).map_err(|error| error.to_string())
}

/// Writes one frame, for a stream with `features` (see [`wire::Message::encode`]).
async fn write_message(
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    message: &wire::Message,
    features: u8,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(&message.encode(features))
        .await
        .map_err(|error| format!("writing: {error}"))
}

/// Copies every flow of `master`'s table into `backup`'s as the stream carries them: named
/// on the master (with their way back), encoded, decoded, and merged on the backup under its
/// ids (with their reply entries). Returns how many flows were merged whole. For tests of
/// both nodes' programs (`BPF_PROG_TEST_RUN`): lbd itself streams through [`Sync`].
#[doc(hidden)]
pub fn copy_every_flow(
    master: (&Desired, &dyn DataplaneReader),
    backup: (&Desired, &dyn DataplaneReader),
) -> Result<u64, String> {
    let names = names::Names::new(master.0);
    let now_ns = master.1.now_ns();
    let mut flows = Vec::new();
    let mut unreadable = None;
    master
        .1
        .for_each_flow(&mut |key, flow| match names
            .record(key, flow, now_ns, |reply_key| master.1.reply(reply_key))
        {
            Ok(record) => flows.extend(record),
            Err(error) => unreadable = Some(error.to_string()),
        })
        .map_err(|error| error.to_string())?;
    if let Some(error) = unreadable {
        return Err(error);
    }
    let frame = wire::Message::Flows { sequence: 1, flows }.encode(wire::FEATURES);
    let Ok(wire::Message::Flows { flows, .. }) = wire::Message::decode(&frame[4..]) else {
        return Err("a flows frame did not decode as one".into());
    };
    let ids = names::Ids::new(backup.0);
    let mut merged = 0;
    for record in &flows {
        let copied = ids
            .flow(record, backup.1.now_ns())
            .map_err(|unmatched| format!("{record:?}: {unmatched:?}"))?;
        let outcome =
            backup::merge_copy(backup.1, &ids, &copied).map_err(|error| error.to_string())?;
        if outcome == backup::Merged::Whole {
            merged += 1;
        }
    }
    Ok(merged)
}

/// What the sync tests share: a node's desired state from a config's text.
#[cfg(test)]
mod testing {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        config,
        neighbour::{InterfaceInfo, Routes},
    };

    /// A record of an established TCP flow from 203.0.113.9:40000 to 192.0.2.100:80, on
    /// the real 192.0.2.11:80.
    pub fn tcp_record() -> super::wire::FlowRecord {
        super::wire::FlowRecord {
            protocol: lb_common::PROTO_TCP,
            client: "203.0.113.9".parse().unwrap(),
            client_port: 40000,
            vip: "192.0.2.100".parse().unwrap(),
            vip_port: 80,
            service_port: 80,
            real: "192.0.2.11".parse().unwrap(),
            real_port: 80,
            state: lb_common::conntrack::STATE_ESTABLISHED,
            idle_ms: 0,
            local_port: 0,
            local_source: 0,
            way_back: None,
        }
    }

    pub fn desired(text: &str) -> Desired {
        desired_on_ifindex(text, 7)
    }

    /// [`desired`] with eth0 at another ifindex (ifindexes are each node's own).
    pub fn desired_on_ifindex(text: &str, index: u32) -> Desired {
        let config = config::parse(text, "test.yaml").expect("parses");
        let eth0 = InterfaceInfo {
            name: "eth0".into(),
            index,
            mac: [2, 0, 0, 0, 0, 2],
            prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
            mtu: 1500,
            vlan: None,
            egress: index,
        };
        Desired::new(&config, vec![eth0], &Routes::new()).expect("builds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_stop_while_any_router_forwards() {
        let gate = MergeGate::default();
        assert_eq!(gate.merge(|| 1), Some(1));
        gate.serving();
        gate.serving();
        assert_eq!(gate.merge(|| 1), None);
        gate.standing_by();
        assert_eq!(gate.merge(|| 1), None, "another router still forwards");
        gate.standing_by();
        assert_eq!(gate.merge(|| 1), Some(1));
        // A router standing by twice does not open the gate for another that serves.
        gate.standing_by();
        gate.serving();
        assert_eq!(gate.merge(|| 1), None);
    }
}
