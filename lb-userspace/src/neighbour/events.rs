//! The kernel's neighbour notifications (`RTNLGRP_NEIGH`, what `ip monitor neigh` shows): every
//! entry created, changed (REACHABLE → STALE → … → FAILED) or deleted, as it happens.
//!
//! Notifications can be lost when the socket's buffer overflows; the monitor then reports
//! [`Notification::Lost`] and the caller re-reads the tables.
//!
//! An entry deleted by hand (`ip neigh del`, `ip neigh flush`) is first reported FAILED, then
//! deleted, back to back. That FAILED says nothing about the real (it would answer the next
//! probe), so a FAILED is held for [`DELETION_FOLLOWS`]: followed by the entry's deletion, only
//! the deletion is reported. Rarely the kernel's garbage collection deletes a FAILED entry
//! within that time too; the deletion then makes lbd resolve the real again, and a real that
//! truly stopped answering is reported FAILED after those probes (seconds later), not lost.

use std::time::Duration;

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{
    MulticastGroup,
    packet_core::{NetlinkMessage, NetlinkPayload},
};

use super::{NeighbourError, NeighbourStatus, Observation, observe};

/// How long a FAILED waits for the deletion of its entry: both are sent by one kernel call;
/// a real that stopped answering took the kernel seconds of probes to call FAILED already.
pub const DELETION_FOLLOWS: Duration = Duration::from_millis(50);

#[derive(Debug, PartialEq, Eq)]
pub enum Notification {
    Neighbour(Observation),
    /// Some notifications were dropped: resynchronise from a dump.
    Lost,
}

/// A netlink socket subscribed to neighbour notifications, in the namespace it was opened in.
pub struct NeighbourEvents {
    messages: futures::channel::mpsc::UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    connection: tokio::task::JoinHandle<()>,
    /// A FAILED waiting (until the instant) for its entry's deletion. Kept here, not in a
    /// local, so that [`NeighbourEvents::next`] stays cancel-safe.
    failed: Option<(Observation, tokio::time::Instant)>,
    /// A notification read while waiting, not yet reported.
    read_ahead: Option<Notification>,
}

impl Drop for NeighbourEvents {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl NeighbourEvents {
    /// Subscribes; the connection task runs on the current tokio runtime.
    pub fn subscribe() -> Result<Self, NeighbourError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| NeighbourError::NoRuntime)?;
        let (connection, _handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh])
                .map_err(NeighbourError::Socket)?;
        Ok(Self::new(messages, runtime.spawn(connection)))
    }

    fn new(
        messages: futures::channel::mpsc::UnboundedReceiver<(
            NetlinkMessage<RouteNetlinkMessage>,
            rtnetlink::sys::SocketAddr,
        )>,
        connection: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            messages,
            connection,
            failed: None,
            read_ahead: None,
        }
    }

    /// The next notification; `None` if the socket closed. Cancel-safe: a notification read
    /// is kept until it is returned.
    pub async fn next(&mut self) -> Option<Notification> {
        loop {
            if let Some((failed, until)) = self.failed {
                let follow = tokio::time::timeout_at(until, self.read()).await;
                self.failed = None;
                match follow {
                    Ok(Some(Notification::Neighbour(next)))
                        if next.state == NeighbourStatus::Unknown
                            && (next.ifindex, next.addr) == (failed.ifindex, failed.addr) =>
                    {
                        return Some(Notification::Neighbour(next));
                    }
                    Ok(Some(other)) => self.read_ahead = Some(other),
                    // Closed: the next call says so.
                    Ok(None) | Err(_) => {}
                }
                return Some(Notification::Neighbour(failed));
            }
            let notification = match self.read_ahead.take() {
                Some(notification) => notification,
                None => self.read().await?,
            };
            match notification {
                Notification::Neighbour(observation)
                    if observation.state == NeighbourStatus::Failed =>
                {
                    let until = tokio::time::Instant::now() + DELETION_FOLLOWS;
                    self.failed = Some((observation, until));
                }
                other => return Some(other),
            }
        }
    }

    /// The next notification as the kernel sent it.
    async fn read(&mut self) -> Option<Notification> {
        loop {
            let (message, _) = self.messages.next().await?;
            match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(entry)) => {
                    if let Some(observation) = observe(&entry) {
                        return Some(Notification::Neighbour(observation));
                    }
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(entry)) => {
                    if let Some(mut observation) = observe(&entry) {
                        observation.state = NeighbourStatus::Unknown;
                        return Some(Notification::Neighbour(observation));
                    }
                }
                NetlinkPayload::Overrun(_) => return Some(Notification::Lost),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};

    use super::*;

    const REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);

    fn message(state: NeighbourState, deleted: bool) -> NetlinkMessage<RouteNetlinkMessage> {
        let mut entry = NeighbourMessage::default();
        entry.header.ifindex = 3;
        entry.header.state = state;
        entry
            .attributes
            .push(NeighbourAttribute::Destination(REAL.into()));
        let inner = if deleted {
            RouteNetlinkMessage::DelNeighbour(entry)
        } else {
            RouteNetlinkMessage::NewNeighbour(entry)
        };
        NetlinkMessage::from(inner)
    }

    fn observed(state: NeighbourStatus) -> Option<Notification> {
        Some(Notification::Neighbour(Observation {
            ifindex: 3,
            addr: IpAddr::V4(REAL),
            state,
        }))
    }

    /// Events fed `messages`, the channel left open.
    fn events(
        messages: &[NetlinkMessage<RouteNetlinkMessage>],
    ) -> (
        NeighbourEvents,
        futures::channel::mpsc::UnboundedSender<(
            NetlinkMessage<RouteNetlinkMessage>,
            rtnetlink::sys::SocketAddr,
        )>,
    ) {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        for message in messages {
            sender
                .unbounded_send((message.clone(), rtnetlink::sys::SocketAddr::new(0, 0)))
                .unwrap();
        }
        (
            NeighbourEvents::new(receiver, tokio::spawn(async {})),
            sender,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_deletions_failed_is_not_reported_and_a_real_failure_is() {
        // `ip neigh del`: FAILED then deleted: only the deletion.
        let (mut deleted, _open) = events(&[
            message(NeighbourState::Failed, false),
            message(NeighbourState::Failed, true),
        ]);
        assert_eq!(deleted.next().await, observed(NeighbourStatus::Unknown));
        let nothing_more = tokio::time::timeout(Duration::from_secs(1), deleted.next()).await;
        assert!(nothing_more.is_err(), "{nothing_more:?}");

        // Probes unanswered: FAILED, nothing after it within the wait.
        let (mut failed, _open) = events(&[message(NeighbourState::Failed, false)]);
        let started = tokio::time::Instant::now();
        assert_eq!(failed.next().await, observed(NeighbourStatus::Failed));
        assert_eq!(started.elapsed(), DELETION_FOLLOWS);

        // FAILED then something else: both, in order.
        let (mut then_probe, _open) = events(&[
            message(NeighbourState::Failed, false),
            message(NeighbourState::Incomplete, false),
        ]);
        assert_eq!(then_probe.next().await, observed(NeighbourStatus::Failed));
        assert_eq!(
            then_probe.next().await,
            observed(NeighbourStatus::Incomplete)
        );
    }
}
