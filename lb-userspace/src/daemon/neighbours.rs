//! The neighbour watch: keeps every real's MAC and reachability current from the kernel's
//! neighbour table, and keeps the kernel probing the reals.
//!
//! What is watched is each real's next hop: the real itself on a connected segment, the
//! router to it otherwise (tunnel and NAT reals), so reals behind one router share its entry.
//!
//! - Notifications (`neighbour::events`) about a next hop go to the reconciler as they
//!   arrive. An entry turning STALE (unconfirmed: the program's traffic never confirms
//!   it) is answered by asking the kernel to resolve it, which makes the kernel probe it
//!   (STALE → DELAY → PROBE → REACHABLE, or FAILED). So a real that stops answering goes
//!   FAILED, and out of the data plane, within the kernel's `base_reachable_time` plus
//!   `delay_first_probe_time` plus its probes (about 40 s by default; sysctls under
//!   `net.ipv4.neigh.IFACE` and `net.ipv6.neigh.IFACE` shorten it).
//! - Every second, reals without a usable entry (never resolved, FAILED, INCOMPLETE) are
//!   asked for again, so a real that comes back is seen.
//! - Every [`RESYNC`], and whenever the kernel says notifications were lost, the tables are
//!   dumped and replayed: a safety net, not the mechanism.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::{
    neighbour::{
        NeighbourError, NeighbourStatus, Neighbours, Observation,
        events::{NeighbourEvents, Notification},
    },
    reconcile::{Desired, Input},
};

const RETRY: Duration = Duration::from_secs(1);
const RESYNC: Duration = Duration::from_secs(30);

pub struct NeighbourWatch {
    pub neighbours: Neighbours,
    /// `None` after the subscription broke, until it is renewed (tried every [`RETRY`]).
    pub events: Option<NeighbourEvents>,
}

impl NeighbourWatch {
    /// Dumps the tables of every interface a next hop sits on and sends what they say about
    /// next hops; then asks the kernel to probe every next hop whose entry is STALE (no
    /// notification will come for it until someone asks) or missing (garbage-collected while
    /// lbd was down, or its notifications lost).
    pub async fn resync(
        &self,
        desired: &Desired,
        inputs: &mpsc::Sender<Input>,
    ) -> Result<(), NeighbourError> {
        let survey = survey(&self.neighbours, desired).await?;
        if !survey.observations.is_empty() {
            let _ = inputs.send(Input::Neighbours(survey.observations)).await;
        }
        resolve(&self.neighbours, survey.to_probe).await;
        Ok(())
    }

    async fn resolve(&self, addresses: impl IntoIterator<Item = (u32, IpAddr)>) {
        resolve(&self.neighbours, addresses).await;
    }
    /// Runs until aborted.
    pub async fn run(mut self, desired: Arc<ArcSwap<Desired>>, inputs: mpsc::Sender<Input>) {
        let mut retry = tokio::time::interval(RETRY);
        let mut resync = tokio::time::interval(RESYNC);
        // The first tick of each is immediate: start from a full picture.
        loop {
            tokio::select! {
                notification = next_notification(&mut self.events) => match notification {
                    Some(Notification::Neighbour(observation)) => {
                        self.notified(observation, &desired, &inputs).await;
                    }
                    Some(Notification::Lost) => {
                        log::warn!("neighbour notifications were lost; re-reading the tables");
                        resync.reset_immediately();
                    }
                    None => {
                        log::error!(
                            "the neighbour notification socket closed; resubscribing every {RETRY:?}"
                        );
                        self.events = None;
                    }
                },
                _ = retry.tick() => {
                    if self.events.is_none() {
                        match NeighbourEvents::subscribe() {
                            Ok(events) => {
                                log::info!("resubscribed to neighbour notifications");
                                self.events = Some(events);
                                resync.reset_immediately();
                            }
                            Err(error) => log::warn!("resubscribing: {error}"),
                        }
                    }
                    let unresolved = desired.load().unresolved();
                    self.resolve(unresolved).await;
                }
                _ = resync.tick() => {
                    let snapshot = desired.load_full();
                    if let Err(error) = self.resync(&snapshot, &inputs).await {
                        log::warn!("re-reading the neighbour tables: {error}");
                    }
                }
            }
        }
    }

    async fn notified(
        &self,
        observation: Observation,
        desired: &ArcSwap<Desired>,
        inputs: &mpsc::Sender<Input>,
    ) {
        if !desired
            .load()
            .has_next_hop(observation.ifindex, observation.addr)
        {
            return;
        }
        log::debug!("neighbour {observation:?}");
        // STALE: make the kernel probe it. Deleted: recreate it, to keep hearing about it.
        let ask = matches!(
            observation.state,
            NeighbourStatus::Usable { stale: true, .. } | NeighbourStatus::Unknown
        );
        let _ = inputs.send(Input::Neighbours(vec![observation])).await;
        if ask {
            self.resolve([(observation.ifindex, observation.addr)])
                .await;
        }
    }
}

/// What the neighbour tables say about a desired state's next hops.
pub struct Survey {
    pub observations: Vec<Observation>,
    /// Next hops missing from the tables or STALE: the kernel must be asked to probe them.
    pub to_probe: Vec<(u32, IpAddr)>,
}

/// Dumps the tables of every interface a next hop of `desired` sits on, once each.
pub async fn survey(neighbours: &Neighbours, desired: &Desired) -> Result<Survey, NeighbourError> {
    let next_hops = desired.next_hops();
    let ifindexes: BTreeSet<u32> = next_hops.iter().map(|(ifindex, _)| *ifindex).collect();
    // What the tables say about each next hop, looked up once per address.
    let mut state_of: HashMap<(u32, IpAddr), NeighbourStatus> = next_hops
        .iter()
        .map(|&next_hop| (next_hop, NeighbourStatus::Unknown))
        .collect();
    let mut observations = Vec::new();
    for ifindex in ifindexes {
        for observation in neighbours.observations(ifindex).await? {
            if let Some(state) = state_of.get_mut(&(observation.ifindex, observation.addr)) {
                *state = observation.state;
                observations.push(observation);
            }
        }
    }
    let to_probe = next_hops
        .into_iter()
        .filter(|next_hop| {
            matches!(
                state_of[next_hop],
                NeighbourStatus::Usable { stale: true, .. } | NeighbourStatus::Unknown
            )
        })
        .collect();
    Ok(Survey {
        observations,
        to_probe,
    })
}

/// Asks the kernel to resolve these addresses; one refusal does not stop the others.
pub async fn resolve(neighbours: &Neighbours, addresses: impl IntoIterator<Item = (u32, IpAddr)>) {
    for (ifindex, addr) in addresses {
        if let Err(error) = neighbours.trigger_resolution(ifindex, addr).await {
            log::warn!("{error}");
        }
    }
}

/// The next notification, or never while there is no subscription.
async fn next_notification(events: &mut Option<NeighbourEvents>) -> Option<Notification> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}
