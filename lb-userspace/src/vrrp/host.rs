//! What a virtual router asks of the host over rtnetlink: its interface (index, MAC, whether
//! it is up, its own addresses) and the virtual addresses added and removed.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::{LinkFlags, LinkMessage},
};

use crate::{
    config::ha::VirtualAddress,
    neighbour::{link_mac, local_address},
};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("opening a netlink route socket: {0}")]
    Socket(std::io::Error),
    #[error("interface {name}: {source}")]
    Link {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {name} does not exist")]
    NoSuchInterface { name: String },
    #[error("interface {name} has no Ethernet MAC")]
    NoMac { name: String },
    #[error("adding {address} to {interface}: {source}")]
    Add {
        address: VirtualAddress,
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("removing {address} from {interface}: {source}")]
    Remove {
        address: IpAddr,
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("listing the addresses of {interface}: {source}")]
    Addresses {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// An interface as a router sees it (whether it is up is the tracker's: `link_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: [u8; 6],
}

/// A netlink route socket of the namespace it was opened in.
pub struct Host {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Host {
    pub fn new() -> Result<Self, HostError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(HostError::Socket)?;
        Ok(Self {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// An Ethernet interface: index and MAC.
    pub async fn link(&self, name: &str) -> Result<Link, HostError> {
        let link = self
            .find_link(name)
            .await?
            .ok_or_else(|| HostError::NoSuchInterface {
                name: name.to_owned(),
            })?;
        let mac = link_mac(&link).ok_or_else(|| HostError::NoMac {
            name: name.to_owned(),
        })?;
        Ok(Link {
            index: link.header.index,
            mac,
        })
    }

    /// Whether a link is up (`None`: no such interface), for links of any kind (a tracked
    /// tunnel or WireGuard link has no Ethernet MAC). Also its index, which changes when the
    /// interface is deleted and created again.
    pub async fn link_state(&self, name: &str) -> Result<Option<(u32, bool)>, HostError> {
        Ok(self
            .find_link(name)
            .await?
            .map(|link| (link.header.index, is_up(&link))))
    }

    async fn find_link(&self, name: &str) -> Result<Option<LinkMessage>, HostError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await;
        match found {
            Err(source) if errno(&source) == Some(libc::ENODEV) => Ok(None),
            found => found.map_err(|source| HostError::Link {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// The interface's addresses that can source packets (not tentative, deprecated or
    /// failed), with their prefix lengths, in the kernel's order.
    pub async fn addresses(
        &self,
        interface: &str,
        index: u32,
    ) -> Result<Vec<(IpAddr, u8)>, HostError> {
        let unusable = AddressFlags::Tentative | AddressFlags::Deprecated | AddressFlags::Dadfailed;
        Ok(self
            .address_messages(interface, index)
            .await?
            .iter()
            .filter(|message| {
                let flags = message
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        AddressAttribute::Flags(flags) => Some(*flags),
                        _ => None,
                    })
                    .unwrap_or_else(|| {
                        AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()))
                    });
                !flags.intersects(unusable)
            })
            .filter_map(|message| Some((local_address(message)?, message.header.prefix_len)))
            .collect())
    }

    async fn address_messages(
        &self,
        interface: &str,
        index: u32,
    ) -> Result<Vec<AddressMessage>, HostError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| HostError::Addresses {
                interface: interface.to_owned(),
                source,
            })
    }

    /// Adds a virtual address (already there: nothing to do). IPv6 ones skip duplicate
    /// address detection, as keepalived's do: the address is shared by design, and DAD would
    /// keep it unusable for a second.
    pub async fn add(
        &self,
        interface: &str,
        index: u32,
        address: VirtualAddress,
    ) -> Result<(), HostError> {
        let mut request = self
            .handle
            .address()
            .add(index, address.address, address.prefix)
            .replace();
        if address.address.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await.map_err(|source| HostError::Add {
            address,
            interface: interface.to_owned(),
            source,
        })
    }

    /// Removes `address` from the interface if it has it; returns whether it had.
    pub async fn remove(
        &self,
        interface: &str,
        index: u32,
        address: IpAddr,
    ) -> Result<bool, HostError> {
        let messages = self.address_messages(interface, index).await?;
        let mut removed = false;
        for message in messages {
            if local_address(&message) != Some(address) {
                continue;
            }
            match self.handle.address().del(message).execute().await {
                Ok(()) => removed = true,
                // Gone meanwhile.
                Err(source) if errno(&source) == Some(libc::EADDRNOTAVAIL) => {}
                Err(source) => {
                    return Err(HostError::Remove {
                        address,
                        interface: interface.to_owned(),
                        source,
                    });
                }
            }
        }
        Ok(removed)
    }
}

/// Administratively up with a carrier.
fn is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up) && link.header.flags.contains(LinkFlags::Running)
}

fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}
