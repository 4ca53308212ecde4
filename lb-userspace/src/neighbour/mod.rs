//! Interface and neighbour-table access over rtnetlink: how lbd learns each real's MAC.
//!
//! In direct routing the balancer only rewrites the destination MAC, so every real must sit on
//! a directly connected segment and all we need from it is its MAC address. We never send ARP
//! or neighbour solicitations ourselves: [`Neighbours::trigger_resolution`] asks the kernel to
//! resolve an address (the `NTF_USE` request Cilium uses), and [`Neighbours::resolved`] reads
//! the kernel's table back, so operator-configured `PERMANENT` entries are honoured and
//! `ip neigh` shows exactly what we see.
//!
//! Packets we forward with XDP never pass through the kernel's neighbour code, so nothing
//! confirms or refreshes these entries on our behalf: REACHABLE decays to STALE and stays
//! there. The caller re-triggers periodically; on a STALE entry that makes the kernel probe
//! it again (STALE → DELAY → PROBE → REACHABLE, or FAILED and gone from `resolved`).
//!
//! Events, not polling: [`events`] subscribes to the kernel's neighbour notifications, so a
//! MAC change or a real going FAILED reaches lbd as it happens; a periodic dump
//! ([`Neighbours::observations`]) only resynchronises after lost notifications.
//!
//! # Layout
//!
//! - this file: the netlink handle: interfaces (and the VLAN interfaces on them), neighbour
//!   entries, resolution requests, XDP attachment state;
//! - [`events`]: the subscription to neighbour notifications;
//! - `link.rs`: what link and address messages say (pure);
//! - [`prefix`]: which interface a real is reached through (pure);
//! - [`route`]: what a route lookup (`RTM_GETROUTE`) answers: output interface, gateway,
//!   preferred source (pure).

pub mod events;
mod link;
mod prefix;
pub mod route;

use std::{collections::HashMap, net::IpAddr};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::AddressMessage,
    link::{LinkAttribute, LinkMessage},
    neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};

pub(crate) use link::{link_mac, local_address};
use link::{link_mtu, link_name, link_parent, link_vlan};
pub use prefix::{interface_for, prefix_contains};
pub use route::{Route, RouteAnswerError, Routes};

use crate::config::MAX_INTERFACE_NAME_LEN;

/// `NUD_VALID` from `include/net/neighbour.h`: the states in which an entry has a usable
/// link-layer address (`PERMANENT | NOARP | REACHABLE | PROBE | STALE | DELAY`).
const NUD_VALID: u16 = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08;
/// States the operator owns; `NTF_USE` would demote them (see `trigger_resolution`).
const NUD_ADMIN: u16 = 0x80 | 0x40;

/// Errors from interface and neighbour-table access. Each names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    #[error("the netlink connection needs a tokio runtime, and none is running on this thread")]
    NoRuntime,
    #[error("cannot open a netlink route socket")]
    Socket(#[source] std::io::Error),
    #[error("no interface named {name:?}")]
    NoSuchInterface { name: String },
    #[error("interface {name:?} (ifindex {index}) has no Ethernet MAC address")]
    NoMac { name: String, index: u32 },
    #[error("cannot look up interface {name:?}")]
    Link {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot list interfaces")]
    Links(#[source] rtnetlink::Error),
    #[error("cannot list the addresses of {scope}")]
    Addresses {
        /// `interface "eth0" (ifindex 2)`, or `all interfaces`.
        scope: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot dump the neighbour table of ifindex {ifindex}")]
    Dump {
        ifindex: u32,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot look up neighbour {addr} on ifindex {ifindex}")]
    Lookup {
        ifindex: u32,
        addr: IpAddr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot ask the kernel to resolve {addr} on ifindex {ifindex}")]
    Resolve {
        ifindex: u32,
        addr: IpAddr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("no route to real {addr} (as `ip route get {addr}` would say)")]
    NoRoute {
        addr: IpAddr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("the route to real {addr} is no way to reach it")]
    BadRoute {
        addr: IpAddr,
        #[source]
        source: RouteAnswerError,
    },
}

/// An interface as the balancer needs it: where to send from and which prefixes it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// The addresses assigned to it, each with its prefix length (IPv4 first, kernel order).
    pub prefixes: Vec<(IpAddr, u8)>,
    pub mtu: u32,
    /// Set for a VLAN interface stacked on an interface the program runs on.
    pub vlan: Option<Vlan>,
    /// The interface the program runs on that frames to this one's neighbours leave through:
    /// its own index, or a VLAN's parent.
    pub egress: u32,
}

/// An 802.1Q or 802.1ad VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vlan {
    pub id: u16,
    /// The tag's EtherType (`ETH_P_8021Q` or `ETH_P_8021AD`).
    pub protocol: u16,
}

/// An address assigned to this host, and the interface it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    pub addr: IpAddr,
    pub ifindex: u32,
    /// The interface's name (empty if the link went away between the two dumps).
    pub interface: String,
    /// Whether the interface is a loopback (`IFF_LOOPBACK`), where LVS reals keep VIPs.
    pub loopback: bool,
}

/// How the kernel says an XDP program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpAttachment {
    /// `native`, `generic`, `offload`, or `multiple`.
    pub mode: &'static str,
    /// The program id (for `multiple`, the native one's, else the generic one's).
    pub program_id: u32,
}

/// What a neighbour entry says about a real, from a notification or a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub state: NeighbourStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourStatus {
    /// The kernel has a usable MAC (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP).
    /// `stale` (STALE): unconfirmed; asking the kernel to resolve it makes it probe.
    Usable { mac: [u8; 6], stale: bool },
    /// INCOMPLETE: the kernel is asking and has no answer yet.
    Incomplete,
    /// FAILED: nobody answered the kernel's probes.
    Failed,
    /// The entry is gone (`RTM_DELNEIGH`), or in a state with nothing to say (NONE).
    Unknown,
}

/// A netlink route socket in the namespace it was opened in.
pub struct Neighbours {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Neighbours {
    /// Opens a netlink route socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime.
    pub fn new() -> Result<Self, NeighbourError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| NeighbourError::NoRuntime)?;
        // The socket is bound to the namespace of the thread that creates it, whichever
        // thread later polls the connection.
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().map_err(NeighbourError::Socket)?;
        let connection = runtime.spawn(connection);
        Ok(Self { handle, connection })
    }

    /// Looks up an interface by name: index, MAC, addresses.
    pub async fn interface(&self, name: &str) -> Result<InterfaceInfo, NeighbourError> {
        let missing = || NeighbourError::NoSuchInterface {
            name: name.to_owned(),
        };
        // The kernel rejects such names with EINVAL, which would hide what is wrong.
        if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN {
            return Err(missing());
        }
        let link = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await
            .map_err(|source| match errno(&source) {
                Some(libc::ENODEV) => missing(),
                _ => NeighbourError::Link {
                    name: name.to_owned(),
                    source,
                },
            })?
            .ok_or_else(missing)?;
        let index = link.header.index;
        let mac = link_mac(&link).ok_or_else(|| NeighbourError::NoMac {
            name: name.to_owned(),
            index,
        })?;
        let prefixes = self.prefixes(name, index).await?;
        Ok(InterfaceInfo {
            name: name.to_owned(),
            index,
            mac,
            prefixes,
            mtu: link_mtu(&link),
            vlan: None,
            egress: index,
        })
    }

    /// The VLAN interfaces stacked directly on `parents` (802.1Q or 802.1ad), each with its
    /// addresses and its parent as egress: reals on their subnets are reached through them.
    pub async fn vlans_on(
        &self,
        parents: &[InterfaceInfo],
    ) -> Result<Vec<InterfaceInfo>, NeighbourError> {
        let links = self.links().await?;
        let mut vlans = Vec::new();
        for link in &links {
            let (Some(parent), Some(vlan)) = (link_parent(link), link_vlan(link)) else {
                continue;
            };
            if !parents.iter().any(|p| p.index == parent) {
                continue;
            }
            let (Some(name), Some(mac)) = (link_name(link), link_mac(link)) else {
                continue;
            };
            let index = link.header.index;
            let prefixes = self.prefixes(&name, index).await?;
            vlans.push(InterfaceInfo {
                name,
                index,
                mac,
                prefixes,
                mtu: link_mtu(link),
                vlan: Some(vlan),
                egress: parent,
            });
        }
        Ok(vlans)
    }

    /// Every link of the namespace.
    async fn links(&self) -> Result<Vec<LinkMessage>, NeighbourError> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(NeighbourError::Links)
    }

    /// The addresses of one interface, each with its prefix length.
    async fn prefixes(&self, name: &str, index: u32) -> Result<Vec<(IpAddr, u8)>, NeighbourError> {
        Ok(self
            .addresses(Some(index))
            .await
            .map_err(|source| NeighbourError::Addresses {
                scope: format!("interface {name:?} (ifindex {index})"),
                source,
            })?
            .into_iter()
            .map(|(_, prefix)| prefix)
            .collect())
    }

    /// How an XDP program is attached to `ifindex`, if one is.
    pub async fn xdp_attachment(
        &self,
        ifindex: u32,
    ) -> Result<Option<XdpAttachment>, NeighbourError> {
        use netlink_packet_route::link::{LinkXdp, XdpAttached};
        let link = self
            .handle
            .link()
            .get()
            .match_index(ifindex)
            .execute()
            .try_next()
            .await
            .map_err(|source| NeighbourError::Link {
                name: format!("ifindex {ifindex}"),
                source,
            })?;
        let Some(link) = link else {
            return Ok(None);
        };
        let Some(xdp) = link
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::Xdp(xdp) => Some(xdp),
                _ => None,
            })
        else {
            return Ok(None);
        };
        let mut attached = None;
        let (mut any, mut native, mut generic) = (0, 0, 0);
        for nla in xdp {
            match nla {
                LinkXdp::Attached(mode) => attached = Some(*mode),
                LinkXdp::ProgId(id) => any = *id,
                LinkXdp::DrvProgId(id) => native = *id,
                LinkXdp::SkbProgId(id) => generic = *id,
                _ => {}
            }
        }
        let (mode, program_id) = match attached {
            None | Some(XdpAttached::None) => return Ok(None),
            Some(XdpAttached::Driver) => ("native", any),
            Some(XdpAttached::SocketBuffer) => ("generic", any),
            Some(XdpAttached::Hardware) => ("offload", any),
            Some(_) => ("multiple", if native != 0 { native } else { generic }),
        };
        Ok(Some(XdpAttachment { mode, program_id }))
    }

    /// Every interface with an Ethernet MAC, with its addresses: the candidates for
    /// [`interface_for`] when the configuration does not name the interface.
    pub async fn interfaces(&self) -> Result<Vec<InterfaceInfo>, NeighbourError> {
        let links = self.links().await?;
        let mut interfaces: Vec<InterfaceInfo> = links
            .iter()
            .filter_map(|link| {
                Some(InterfaceInfo {
                    name: link_name(link)?,
                    index: link.header.index,
                    mac: link_mac(link)?,
                    prefixes: Vec::new(),
                    mtu: link_mtu(link),
                    vlan: None,
                    egress: link.header.index,
                })
            })
            .collect();
        let addresses = self
            .addresses(None)
            .await
            .map_err(|source| NeighbourError::Addresses {
                scope: "all interfaces".to_owned(),
                source,
            })?;
        for (index, prefix) in addresses {
            if let Some(interface) = interfaces.iter_mut().find(|i| i.index == index) {
                interface.prefixes.push(prefix);
            }
        }
        Ok(interfaces)
    }

    /// Every IPv4 and IPv6 address of the namespace, on every interface, with the
    /// interface's name and whether it is a loopback: one link dump and one address dump.
    pub async fn host_addresses(&self) -> Result<Vec<HostAddress>, NeighbourError> {
        use netlink_packet_route::link::LinkFlags;
        let links: HashMap<u32, (String, bool)> = self
            .links()
            .await?
            .iter()
            .map(|link| {
                let name = link_name(link).unwrap_or_default();
                let loopback = link.header.flags.contains(LinkFlags::Loopback);
                (link.header.index, (name, loopback))
            })
            .collect();
        let addresses = self
            .addresses(None)
            .await
            .map_err(|source| NeighbourError::Addresses {
                scope: "all interfaces".to_owned(),
                source,
            })?;
        Ok(addresses
            .into_iter()
            .map(|(ifindex, (addr, _))| {
                let (interface, loopback) = links.get(&ifindex).cloned().unwrap_or_default();
                HostAddress {
                    addr,
                    ifindex,
                    interface,
                    loopback,
                }
            })
            .collect())
    }

    /// All usable neighbour entries on `ifindex`, IPv4 and IPv6: those in a valid state
    /// (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP) with a 6-byte unicast lladdr.
    ///
    /// STALE means unconfirmed, not wrong: see the module docs on re-triggering.
    pub async fn resolved(&self, ifindex: u32) -> Result<HashMap<IpAddr, [u8; 6]>, NeighbourError> {
        Ok(self
            .observations(ifindex)
            .await?
            .into_iter()
            .filter_map(|observation| match observation.state {
                NeighbourStatus::Usable { mac, .. } => Some((observation.addr, mac)),
                _ => None,
            })
            .collect())
    }

    /// What every entry of `ifindex`'s neighbour table says, IPv4 and IPv6.
    pub async fn observations(&self, ifindex: u32) -> Result<Vec<Observation>, NeighbourError> {
        let mut request = self.handle.neighbours().get();
        // NDA_IFINDEX filters the dump in the kernel (strict checking or not); we filter
        // again below because an old kernel may ignore it.
        request
            .message_mut()
            .attributes
            .push(NeighbourAttribute::IfIndex(ifindex));
        let entries: Vec<NeighbourMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(|source| NeighbourError::Dump { ifindex, source })?;
        Ok(entries
            .iter()
            .filter(|entry| entry.header.ifindex == ifindex)
            .filter_map(observe)
            .collect())
    }

    /// Asks the kernel to resolve `addr` on `ifindex`: the kernel sends the ARP request or
    /// neighbour solicitation itself and the answer shows up in [`Self::resolved`].
    ///
    /// This is `RTM_NEWNEIGH` with `NLM_F_CREATE` and `NTF_USE`, as Cilium does. In
    /// `neigh_add` (net/core/neighbour.c) `NLM_F_CREATE` makes a missing entry (in state
    /// NONE, eligible for garbage collection because we do not ask for PERMANENT), then
    /// `__neigh_update` with `NEIGH_UPDATE_F_USE` ignores the state we send and
    /// `neigh_event_send` starts resolution: NONE or FAILED → INCOMPLETE (probe now), STALE →
    /// DELAY; REACHABLE, DELAY, PROBE and INCOMPLETE are left alone. Without `NLM_F_EXCL` an
    /// existing entry is not an error. On 6.18 the ARP request and the neighbour
    /// solicitation were captured in the peer's namespace.
    ///
    /// `NTF_USE` strips `NUD_PERMANENT` from an existing entry (deliberately, since Linux
    /// 5.16: "net, neigh: Enable state migration between `NUD_PERMANENT` and `NTF_USE`"), so an
    /// operator's static entry would turn into a dynamic one, and on 6.18 its MAC is lost
    /// and it fails if nobody answers. We therefore look the entry up first and leave
    /// PERMANENT and NOARP entries alone; an entry made static between the two requests is
    /// not protected.
    pub async fn trigger_resolution(
        &self,
        ifindex: u32,
        addr: IpAddr,
    ) -> Result<(), NeighbourError> {
        let existing =
            self.entry(ifindex, addr)
                .await
                .map_err(|source| NeighbourError::Lookup {
                    ifindex,
                    addr,
                    source,
                })?;
        if let Some(entry) = existing
            && u16::from(entry.header.state) & NUD_ADMIN != 0
        {
            log::debug!(
                "neighbour {addr} on ifindex {ifindex} is {}: not asking the kernel to resolve it",
                entry.header.state
            );
            return Ok(());
        }

        let mut message = NeighbourMessage::default();
        message.header.family = family(addr);
        message.header.ifindex = ifindex;
        message.header.state = NeighbourState::None;
        message.header.flags = NeighbourFlags::Use;
        message
            .attributes
            .push(NeighbourAttribute::Destination(addr.into()));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
        self.exchange(request)
            .await
            .map(drop)
            .map_err(|source| NeighbourError::Resolve {
                ifindex,
                addr,
                source,
            })
    }

    /// The kernel's entry for `addr` on `ifindex` (a single `RTM_GETNEIGH`, not a dump).
    async fn entry(
        &self,
        ifindex: u32,
        addr: IpAddr,
    ) -> Result<Option<NeighbourMessage>, rtnetlink::Error> {
        let mut message = NeighbourMessage::default();
        message.header.family = family(addr);
        message.header.ifindex = ifindex;
        message
            .attributes
            .push(NeighbourAttribute::Destination(addr.into()));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(message));
        request.header.flags = NLM_F_REQUEST;
        match self.exchange(request).await {
            Ok(replies) => Ok(replies.into_iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewNeighbour(entry) => Some(entry),
                _ => None,
            })),
            Err(error) if errno(&error) == Some(libc::ENOENT) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Sends one request and collects its replies; a NACK becomes an error.
    async fn exchange(
        &self,
        request: NetlinkMessage<RouteNetlinkMessage>,
    ) -> Result<Vec<RouteNetlinkMessage>, rtnetlink::Error> {
        let mut replies = self.handle.clone().request(request)?;
        let mut messages = Vec::new();
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(message) => messages.push(message),
                NetlinkPayload::Error(error) if error.code.is_some() => {
                    return Err(rtnetlink::Error::NetlinkError(error));
                }
                // ACK, DONE, NOOP.
                _ => {}
            }
        }
        Ok(messages)
    }

    /// `(ifindex, (address, prefix length))` of every IPv4/IPv6 address, optionally of one
    /// interface.
    async fn addresses(
        &self,
        index: Option<u32>,
    ) -> Result<Vec<(u32, (IpAddr, u8))>, rtnetlink::Error> {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
        }
        let messages: Vec<AddressMessage> = request.execute().try_collect().await?;
        Ok(messages
            .iter()
            .filter_map(|message| {
                Some((
                    message.header.index,
                    (local_address(message)?, message.header.prefix_len),
                ))
            })
            .collect())
    }
}

/// The name of interface `index` in this namespace, or `ifindex N` when it has none.
fn interface_name(index: u32) -> String {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes at most.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        return format!("ifindex {index}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `name`.
    unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// What a neighbour entry (`RTM_NEWNEIGH`) says; `None` if it names no IP address.
pub(crate) fn observe(entry: &NeighbourMessage) -> Option<Observation> {
    let addr = entry
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::Destination(destination) => ip_of(destination),
            _ => None,
        })?;
    let state = match usable(entry) {
        Some((_, mac)) => NeighbourStatus::Usable {
            mac,
            stale: entry.header.state == NeighbourState::Stale,
        },
        None => match entry.header.state {
            NeighbourState::Incomplete => NeighbourStatus::Incomplete,
            NeighbourState::Failed => NeighbourStatus::Failed,
            _ => NeighbourStatus::Unknown,
        },
    };
    Some(Observation {
        ifindex: entry.header.ifindex,
        addr,
        state,
    })
}

/// The entry's `(address, MAC)` if the kernel considers its link-layer address valid.
fn usable(entry: &NeighbourMessage) -> Option<(IpAddr, [u8; 6])> {
    if u16::from(entry.header.state) & NUD_VALID == 0 {
        return None;
    }
    let mut addr = None;
    let mut mac = None;
    for attribute in &entry.attributes {
        match attribute {
            NeighbourAttribute::Destination(destination) => addr = ip_of(destination),
            NeighbourAttribute::LinkLayerAddress(lladdr) => {
                mac = <[u8; 6]>::try_from(lladdr.as_slice()).ok()
            }
            _ => {}
        }
    }
    // Only a unicast MAC can be a real's. This drops the NOARP entries the kernel keeps for
    // multicast and broadcast destinations (ff02::16 → 33:33:00:00:00:16) and the all-zero
    // address of MAC-less devices.
    Some((addr?, mac.filter(|mac| is_unicast_mac(*mac))?))
}

fn is_unicast_mac(mac: [u8; 6]) -> bool {
    mac != [0; 6] && mac[0] & 0x01 == 0
}

fn ip_of(destination: &netlink_packet_route::neighbour::NeighbourAddress) -> Option<IpAddr> {
    use netlink_packet_route::neighbour::NeighbourAddress;
    match destination {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The positive errno of a netlink NACK.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// lbd shares one `Neighbours` between tasks on a multi-threaded runtime.
    #[test]
    fn neighbours_and_its_futures_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<Neighbours>();
        // Type-checked, never run: building these futures needs a socket.
        let _ = |neighbours: &Neighbours| {
            send(&neighbours.interface("eth0"));
            send(&neighbours.interfaces());
            send(&neighbours.resolved(2));
            send(&neighbours.trigger_resolution(2, IpAddr::from([192, 0, 2, 2])));
            send(&neighbours.route(IpAddr::from([192, 0, 2, 2])));
        };
    }

    #[test]
    fn usable_entries_need_a_valid_state_and_a_real_mac() {
        let entry = |state, lladdr: &[u8]| {
            let mut message = NeighbourMessage::default();
            message.header.family = AddressFamily::Inet;
            message.header.state = state;
            message.attributes.push(NeighbourAttribute::Destination(
                Ipv4Addr::new(192, 0, 2, 2).into(),
            ));
            if !lladdr.is_empty() {
                message
                    .attributes
                    .push(NeighbourAttribute::LinkLayerAddress(lladdr.to_vec()));
            }
            message
        };
        let mac = [2, 0, 0, 0, 0, 2];
        let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
            NeighbourState::Noarp,
        ] {
            assert_eq!(usable(&entry(state, &mac)), Some((addr, mac)), "{state}");
        }
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::None,
        ] {
            assert_eq!(usable(&entry(state, &mac)), None, "{state}");
        }
        assert_eq!(usable(&entry(NeighbourState::Reachable, &[])), None);
        assert_eq!(
            usable(&entry(NeighbourState::Reachable, &[1, 2, 3, 4])),
            None
        );
        assert_eq!(usable(&entry(NeighbourState::Noarp, &[0; 6])), None);
        // Multicast (IPv6 ff02::16 → 33:33:…) and broadcast lladdrs of NOARP entries.
        assert_eq!(
            usable(&entry(NeighbourState::Noarp, &[0x33, 0x33, 0, 0, 0, 0x16])),
            None
        );
        assert_eq!(usable(&entry(NeighbourState::Noarp, &[0xff; 6])), None);
    }

    #[test]
    fn observations_say_what_the_entry_says() {
        let entry = |state| {
            let mut message = NeighbourMessage::default();
            message.header.ifindex = 3;
            message.header.state = state;
            message.attributes.push(NeighbourAttribute::Destination(
                Ipv4Addr::new(192, 0, 2, 2).into(),
            ));
            message
                .attributes
                .push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 2]));
            observe(&message).map(|observation| observation.state)
        };
        let mac = [2, 0, 0, 0, 0, 2];
        assert_eq!(
            entry(NeighbourState::Reachable),
            Some(NeighbourStatus::Usable { mac, stale: false })
        );
        assert_eq!(
            entry(NeighbourState::Stale),
            Some(NeighbourStatus::Usable { mac, stale: true })
        );
        assert_eq!(entry(NeighbourState::Failed), Some(NeighbourStatus::Failed));
        assert_eq!(
            entry(NeighbourState::Incomplete),
            Some(NeighbourStatus::Incomplete)
        );
        assert_eq!(entry(NeighbourState::None), Some(NeighbourStatus::Unknown));
    }
}
