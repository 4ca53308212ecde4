//! Ids ↔ names: the master writes its flows with names, the backup finds its own ids for
//! them. Both sides read the reconciler's snapshot of their own node.
//!
//! A NAT or full-NAT flow also has a reply entry (the program's `LB_REPLIES_V1`): the master
//! sends its way back with the interface and the local address named, and the backup writes
//! the entry anew under its own ids, ifindex and local source, keyed as its program would
//! have keyed it.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use lb_common::{
    Flow, FlowKey, MAX_LOCAL_SOURCES, PROTO_TCP, PROTO_UDP, Reply, VLAN_TAGGED,
    conntrack::{STATE_CLOSE, STATE_SYN_RECV, STATE_UDP},
};

use super::wire::{FlowRecord, InterfaceName, WayBack};
use crate::reconcile::{Desired, DesiredReal, address_bytes, address_from_bytes};

/// A service by what names it on both nodes: protocol, VIP and port.
type ServiceName = (u8, IpAddr, u16);

/// `ETH_P_8021Q` and `ETH_P_8021AD`: the tags the program reads.
const VLAN_PROTOCOLS: [u16; 2] = [0x8100, 0x88a8];

/// Where a NAT or full-NAT real's replies are found: the key `nat::claim` (lb-ebpf) gives a
/// flow's reply entry is the real's address and port (the client's destination port for a
/// real without one) to the client's address and port, or for full NAT to the flow's local
/// source and port.
#[derive(Debug, Clone)]
struct ReplyAddressing {
    addr: [u8; 16],
    port_be: u16,
    /// Full NAT: the local addresses its flows come from, in the program's order.
    full_nat_sources: Option<Vec<IpAddr>>,
}

impl ReplyAddressing {
    /// `None` for a real that is neither NAT nor full NAT (its flows have no replies entry).
    fn of(real: &DesiredReal) -> Option<Self> {
        let forward = real.config.forward;
        if !forward.translates_replies() {
            return None;
        }
        let full_nat = forward == crate::config::Forward::Fullnat;
        Some(Self {
            addr: address_bytes(real.config.address).0,
            port_be: real.config.port.to_be(),
            full_nat_sources: full_nat.then(|| {
                real.sources
                    .iter()
                    .take(MAX_LOCAL_SOURCES)
                    .copied()
                    .collect()
            }),
        })
    }

    /// Full NAT: the local address of a flow from local source `index`.
    fn local_address(&self, index: u8) -> Option<IpAddr> {
        self.full_nat_sources
            .as_ref()?
            .get(usize::from(index))
            .copied()
    }

    /// The key of `flow`'s reply entry; `None` for a full-NAT flow from a local source the
    /// real does not have.
    fn reply_key(&self, key: &FlowKey, flow: &Flow) -> Option<FlowKey> {
        let (dst, dst_port_be) = match &self.full_nat_sources {
            None => (key.src, key.src_port_be),
            Some(_) => (
                address_bytes(self.local_address(flow.local_source)?).0,
                flow.local_port_be,
            ),
        };
        Some(FlowKey {
            src: self.addr,
            dst,
            src_port_be: if self.port_be != 0 {
                self.port_be
            } else {
                key.dst_port_be
            },
            dst_port_be,
            protocol: key.protocol,
            family: key.family,
            _pad: [0; 2],
        })
    }
}

/// The interfaces the program runs on (not the VLANs on them): the client's packets come in
/// on one.
fn program_interfaces(desired: &Desired) -> impl Iterator<Item = (u32, InterfaceName)> + '_ {
    desired
        .interfaces
        .iter()
        .filter(|interface| interface.vlan.is_none())
        .filter_map(|interface| Some((interface.index, InterfaceName::new(&interface.name)?)))
}

/// A real of the master, by name, and how its flows' replies are found.
struct NamedReal {
    address: IpAddr,
    port: u16,
    replies: Option<ReplyAddressing>,
}

/// The master's side: ids → names.
pub struct Names {
    services: HashMap<u32, ServiceName>,
    reals: HashMap<u32, NamedReal>,
    /// [`program_interfaces`] by ifindex.
    interfaces: HashMap<u32, InterfaceName>,
}

impl Names {
    pub fn new(desired: &Desired) -> Self {
        let mut services = HashMap::new();
        let mut reals = HashMap::new();
        for service in &desired.services {
            let config = &service.config;
            services.insert(service.id, (service.key.protocol, config.vip, config.port));
            for real in &service.reals {
                let named = NamedReal {
                    address: real.config.address,
                    port: real.config.port,
                    replies: ReplyAddressing::of(real),
                };
                reals.insert(real.id, named);
            }
        }
        Self {
            services,
            reals,
            interfaces: program_interfaces(desired).collect(),
        }
    }

    /// The flow as a record, `Ok(None)` when its service or real is not (or no longer)
    /// known. A NAT or full-NAT flow goes with its way back, read from its reply entry by
    /// `reply` (without one when the entry is missing or no longer the flow's); a reply
    /// entry that cannot be read is an error, so that the flow is not taken for sent.
    pub fn record<E>(
        &self,
        key: &FlowKey,
        flow: &Flow,
        now_ns: u64,
        reply: impl FnOnce(&FlowKey) -> Result<Option<Reply>, E>,
    ) -> Result<Option<FlowRecord>, E> {
        let Some(&(protocol, vip, service_port)) = self.services.get(&flow.service_id) else {
            return Ok(None);
        };
        let Some(real) = self.reals.get(&flow.real_id) else {
            return Ok(None);
        };
        let way_back = match &real.replies {
            Some(addressing) => match addressing.reply_key(key, flow) {
                Some(reply_key) => reply(&reply_key)?
                    .filter(|reply| reply.flow == *key && reply.real_id == flow.real_id)
                    .and_then(|reply| {
                        Some(WayBack {
                            interface: *self.interfaces.get(&reply.ingress_ifindex)?,
                            client_mac: reply.client_mac,
                            vlan_proto: u16::from_be(reply.vlan_proto_be),
                            vlan: reply.vlan,
                            local: addressing.local_address(flow.local_source),
                        })
                    }),
                None => None,
            },
            None => None,
        };
        let idle_ms = now_ns.saturating_sub(flow.last_seen_ns) / 1_000_000;
        Ok(Some(FlowRecord {
            protocol,
            client: address_from_bytes(&key.src, key.family),
            client_port: u16::from_be(key.src_port_be),
            vip,
            vip_port: u16::from_be(key.dst_port_be),
            service_port,
            real: real.address,
            real_port: real.port,
            state: flow.state as u8,
            idle_ms: u32::try_from(idle_ms).unwrap_or(u32::MAX),
            local_port: u16::from_be(flow.local_port_be),
            local_source: flow.local_source,
            way_back,
        }))
    }
}

/// Why a record has no flow here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// This node has no such service.
    Service,
    /// The service has no such real here.
    Real,
    /// Its way back names an interface this node's program does not run on.
    Interface,
    /// The record cannot be a flow of this service and real: a state its protocol does not
    /// have, a port that is not the service's, full-NAT fields where this node's real is
    /// not full NAT (or a local address or source it lacks), or a way back where this
    /// node's real is neither NAT nor full NAT, or with a tag the program does not read. A
    /// corrupt record, or nodes whose configs differ.
    Invalid,
}

/// A real of this node, as a record's fields are checked against it.
#[derive(Debug, Clone)]
struct RealIds {
    id: u32,
    /// NAT and full NAT: how its flows' reply entries are keyed.
    replies: Option<ReplyAddressing>,
}

impl RealIds {
    /// Full NAT: how many local sources its flows may come from; `None` for other methods.
    fn full_nat_sources(&self) -> Option<usize> {
        self.replies
            .as_ref()?
            .full_nat_sources
            .as_ref()
            .map(Vec::len)
    }
}

/// A service's id, and its reals by address and port.
type ServiceIds = (u32, HashMap<(IpAddr, u16), RealIds>);

/// What a record becomes on this node: a flow table entry, and for a NAT or full-NAT flow
/// that came with its way back, its reply entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub key: FlowKey,
    pub flow: Flow,
    /// The reply entry's key and value.
    pub reply: Option<(FlowKey, Reply)>,
    /// A NAT or full-NAT flow without a reply entry here: it came without its way back (from
    /// an older lbd, or its master's entry had gone), or with a client MAC that is no
    /// unicast one.
    pub lacks_way_back: bool,
}

/// The backup's side: names → ids.
pub struct Ids {
    services: HashMap<ServiceName, ServiceIds>,
    /// [`program_interfaces`] by name.
    interfaces: HashMap<InterfaceName, u32>,
    /// VIPs of this node's routers that are not master here (see [`Desired::standby`]).
    standby: BTreeSet<IpAddr>,
}

impl Ids {
    pub fn new(desired: &Desired) -> Self {
        let services = desired
            .services
            .iter()
            .map(|service| {
                let config = &service.config;
                let reals = service
                    .reals
                    .iter()
                    .map(|real| {
                        let ids = RealIds {
                            id: real.id,
                            replies: ReplyAddressing::of(real),
                        };
                        ((real.config.address, real.config.port), ids)
                    })
                    .collect();
                (
                    (service.key.protocol, config.vip, config.port),
                    (service.id, reals),
                )
            })
            .collect();
        Self {
            services,
            interfaces: program_interfaces(desired)
                .map(|(index, name)| (name, index))
                .collect(),
            standby: desired.standby.clone(),
        }
    }

    /// The flow table entry for a record, on this node's ids and clock, and its reply entry
    /// if it came with a way back. Nothing the program would not write itself gets in: the
    /// record's state must be one of its protocol's, its port the service's, its full-NAT
    /// fields those of a full-NAT real here (a local port, and one of the real's local
    /// sources: found by address when the way back names it, so the nodes' `snat_pool`
    /// orders may differ) or zero, and a way back only for a NAT or full-NAT real here, with
    /// a tag and MAC the program could have read.
    pub fn flow(&self, record: &FlowRecord, now_ns: u64) -> Result<Copied, Unmatched> {
        let state_fits = match record.protocol {
            PROTO_TCP => (STATE_SYN_RECV..=STATE_CLOSE).contains(&record.state),
            PROTO_UDP => record.state == STATE_UDP,
            _ => false,
        };
        let port_fits = record.service_port == 0 || record.vip_port == record.service_port;
        if !state_fits || !port_fits {
            return Err(Unmatched::Invalid);
        }
        let (service_id, reals) = self
            .services
            .get(&(record.protocol, record.vip, record.service_port))
            .ok_or(Unmatched::Service)?;
        let real = reals
            .get(&(record.real, record.real_port))
            .ok_or(Unmatched::Real)?;
        let local_source = match (&real.replies, &record.way_back) {
            (None, Some(_)) => return Err(Unmatched::Invalid),
            // A full-NAT real: the way back names the local address.
            (Some(addressing), Some(way_back)) if addressing.full_nat_sources.is_some() => {
                let local = way_back.local.ok_or(Unmatched::Invalid)?;
                let sources = addressing.full_nat_sources.as_deref().unwrap_or_default();
                let index = sources
                    .iter()
                    .position(|source| *source == local)
                    .ok_or(Unmatched::Invalid)?;
                u8::try_from(index).map_err(|_| Unmatched::Invalid)?
            }
            (Some(_), Some(way_back)) if way_back.local.is_some() => {
                return Err(Unmatched::Invalid);
            }
            _ => record.local_source,
        };
        let local_fits = match real.full_nat_sources() {
            Some(sources) => record.local_port != 0 && usize::from(local_source) < sources,
            None => record.local_port == 0 && local_source == 0,
        };
        if !local_fits {
            return Err(Unmatched::Invalid);
        }
        let (src, family) = address_bytes(record.client);
        let (dst, _) = address_bytes(record.vip);
        let key = FlowKey {
            src,
            dst,
            src_port_be: record.client_port.to_be(),
            dst_port_be: record.vip_port.to_be(),
            protocol: record.protocol,
            family,
            _pad: [0; 2],
        };
        let flow = Flow {
            real_id: real.id,
            service_id: *service_id,
            last_seen_ns: now_ns.saturating_sub(u64::from(record.idle_ms) * 1_000_000),
            state: u32::from(record.state),
            local_port_be: record.local_port.to_be(),
            local_source,
            _pad: 0,
            reserved: 0,
        };
        let reply = match (&record.way_back, &real.replies) {
            // The program keeps any source MAC, but replies sent to a group or to none reach
            // no client: the flow goes on without its reply entry (counted).
            (Some(way_back), Some(_)) if !is_unicast(way_back.client_mac) => None,
            (Some(way_back), Some(addressing)) => {
                if !tag_fits(way_back) {
                    return Err(Unmatched::Invalid);
                }
                let ingress_ifindex = *self
                    .interfaces
                    .get(&way_back.interface)
                    .ok_or(Unmatched::Interface)?;
                // The local source was found among the real's above.
                let reply_key = addressing
                    .reply_key(&key, &flow)
                    .ok_or(Unmatched::Invalid)?;
                let reply = Reply {
                    flow: key,
                    client_mac: way_back.client_mac,
                    vlan_proto_be: way_back.vlan_proto.to_be(),
                    ingress_ifindex,
                    vlan: way_back.vlan,
                    real_id: real.id,
                    service_id: *service_id,
                };
                Some((reply_key, reply))
            }
            _ => None,
        };
        let lacks_way_back = real.replies.is_some() && reply.is_none();
        Ok(Copied {
            key,
            flow,
            reply,
            lacks_way_back,
        })
    }

    /// Whether a copy's reply entry may replace `held`, the entry under its key: one of the
    /// same client flow, or of a flow this node does not forward (a copy of a router's
    /// flow that is not master here: the master's is the one its program uses now, while
    /// this node's may be an older flow's whose copy has not expired yet). An entry of a
    /// flow this node forwards (a VIP no router carries) is its program's, and stays.
    pub fn may_replace(&self, held: &Reply, copy: &Reply) -> bool {
        held.flow == copy.flow
            || self
                .standby
                .contains(&address_from_bytes(&held.flow.dst, held.flow.family))
    }
}

/// Whether the program could have written this way back's tag: none, or one it reads
/// (802.1Q or 802.1ad, the `VLAN_TAGGED` bit and a TCI).
fn tag_fits(way_back: &WayBack) -> bool {
    match way_back.vlan_proto {
        0 => way_back.vlan == 0,
        protocol => VLAN_PROTOCOLS.contains(&protocol) && way_back.vlan & !0xffff == VLAN_TAGGED,
    }
}

fn is_unicast(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac != [0; 6]
}

#[cfg(test)]
mod tests;
