//! The kernel's neighbour notifications (`RTNLGRP_NEIGH`, what `ip monitor neigh` shows): every
//! entry created, changed (REACHABLE → STALE → … → FAILED) or deleted, as it happens.
//!
//! Notifications can be lost when the socket's buffer overflows; the monitor then reports
//! [`Notification::Lost`] and the caller re-reads the tables.

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{
    MulticastGroup,
    packet_core::{NetlinkMessage, NetlinkPayload},
};

use super::{NeighbourError, NeighbourStatus, Observation, observe};

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
        Ok(Self {
            messages,
            connection: runtime.spawn(connection),
        })
    }

    /// The next notification; `None` if the socket closed.
    pub async fn next(&mut self) -> Option<Notification> {
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
