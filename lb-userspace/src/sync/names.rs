//! Ids ↔ names: the master writes its flows with names, the backup finds its own ids for
//! them. Both sides read the reconciler's snapshot of their own node.
//!
//! A NAT or full-NAT flow also has a reply entry (the program's `LB_REPLIES_V1`): the master
//! sends its way back with the interface named, and the backup writes the entry anew under
//! its own ids and ifindex, keyed as its program would have keyed it.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{
    Flow, FlowKey, MAX_LOCAL_SOURCES, PROTO_TCP, PROTO_UDP, Reply,
    conntrack::{STATE_CLOSE, STATE_SYN_RECV, STATE_UDP},
};

use super::wire::{FlowRecord, InterfaceName, WayBack};
use crate::{
    config::Forward,
    reconcile::{Desired, DesiredReal, address_bytes, address_from_bytes},
};

/// A service by what names it on both nodes: protocol, VIP and port.
type ServiceName = (u8, IpAddr, u16);

/// Where a NAT or full-NAT real's replies are found: the key `nat::claim` (lb-ebpf) gives a
/// flow's reply entry is the real's address and port (the client's destination port for a
/// real without one) to the client's address and port, or for full NAT to the flow's local
/// source and port.
#[derive(Debug, Clone)]
struct ReplyAddressing {
    addr: [u8; 16],
    port_be: u16,
    /// Full NAT: the local addresses its flows come from, in the program's order.
    full_nat_sources: Option<Vec<[u8; 16]>>,
}

impl ReplyAddressing {
    /// `None` for a real that is neither NAT nor full NAT (its flows have no replies entry).
    fn of(real: &DesiredReal) -> Option<Self> {
        let full_nat_sources = match real.config.forward {
            Forward::Nat => None,
            Forward::Fullnat => Some(
                real.sources
                    .iter()
                    .take(MAX_LOCAL_SOURCES)
                    .map(|source| address_bytes(*source).0)
                    .collect(),
            ),
            _ => return None,
        };
        Some(Self {
            addr: address_bytes(real.config.address).0,
            port_be: real.config.port.to_be(),
            full_nat_sources,
        })
    }

    /// The key of `flow`'s reply entry; `None` for a full-NAT flow from a local source the
    /// real does not have.
    fn reply_key(&self, key: &FlowKey, flow: &Flow) -> Option<FlowKey> {
        let (dst, dst_port_be) = match &self.full_nat_sources {
            None => (key.src, key.src_port_be),
            Some(sources) => (
                *sources.get(usize::from(flow.local_source))?,
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
    /// The interfaces the program runs on, by ifindex: the client's packets come in on one.
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
        let interfaces = desired
            .interfaces
            .iter()
            .filter(|interface| interface.vlan.is_none())
            .filter_map(|interface| Some((interface.index, InterfaceName::new(&interface.name)?)))
            .collect();
        Self {
            services,
            reals,
            interfaces,
        }
    }

    /// The flow as a record, `None` when its service or real is not (or no longer) known. A
    /// NAT or full-NAT flow goes with its way back, read from its reply entry by `reply`
    /// (without one when the entry is missing or no longer the flow's).
    pub fn record(
        &self,
        key: &FlowKey,
        flow: &Flow,
        now_ns: u64,
        reply: impl FnOnce(&FlowKey) -> Option<Reply>,
    ) -> Option<FlowRecord> {
        let &(protocol, vip, service_port) = self.services.get(&flow.service_id)?;
        let real = self.reals.get(&flow.real_id)?;
        let idle_ms = now_ns.saturating_sub(flow.last_seen_ns) / 1_000_000;
        let way_back = real
            .replies
            .as_ref()
            .and_then(|addressing| addressing.reply_key(key, flow))
            .and_then(|reply_key| reply(&reply_key))
            .filter(|reply| reply.flow == *key && reply.real_id == flow.real_id)
            .and_then(|reply| {
                Some(WayBack {
                    interface: *self.interfaces.get(&reply.ingress_ifindex)?,
                    client_mac: reply.client_mac,
                    vlan_proto: u16::from_be(reply.vlan_proto_be),
                    vlan: reply.vlan,
                })
            });
        Some(FlowRecord {
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
        })
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
    /// not full NAT (or names a local source it lacks), or a way back where this node's
    /// real is neither NAT nor full NAT. A corrupt record, or nodes whose configs differ.
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
}

/// The backup's side: names → ids.
pub struct Ids {
    services: HashMap<ServiceName, ServiceIds>,
    /// The interfaces this node's program runs on, by name.
    interfaces: HashMap<InterfaceName, u32>,
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
        let interfaces = desired
            .interfaces
            .iter()
            .filter(|interface| interface.vlan.is_none())
            .filter_map(|interface| Some((InterfaceName::new(&interface.name)?, interface.index)))
            .collect();
        Self {
            services,
            interfaces,
        }
    }

    /// The flow table entry for a record, on this node's ids and clock, and its reply entry
    /// if it came with a way back. Nothing the program would not write itself gets in: the
    /// record's state must be one of its protocol's, its port the service's, its full-NAT
    /// fields those of a full-NAT real here (a local port, and one of the real's local
    /// sources) or zero, and a way back only for a NAT or full-NAT real here.
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
        let local_fits = match real.full_nat_sources() {
            Some(sources) => record.local_port != 0 && usize::from(record.local_source) < sources,
            None => record.local_port == 0 && record.local_source == 0,
        };
        if !local_fits || (record.way_back.is_some() && real.replies.is_none()) {
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
            local_source: record.local_source,
            _pad: 0,
            reserved: 0,
        };
        let reply = match (&record.way_back, &real.replies) {
            (Some(way_back), Some(addressing)) => {
                let ingress_ifindex = *self
                    .interfaces
                    .get(&way_back.interface)
                    .ok_or(Unmatched::Interface)?;
                // The local source was checked against the real's above.
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
        Ok(Copied { key, flow, reply })
    }
}

#[cfg(test)]
mod tests {
    use lb_common::conntrack::{STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_NONE};

    use super::*;
    use crate::sync::testing::{desired, desired_on_ifindex};

    const MASTER: &str = "
instance: a
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}, {address: 192.0.2.12}]}
  - {vip: 192.0.2.100, port: 0, protocol: udp, reals: [{address: 192.0.2.13}]}
";
    /// The same services, in another order, with a service of its own first: every id differs.
    const BACKUP: &str = "
instance: b
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.200, port: 80, protocol: tcp, reals: [{address: 192.0.2.14}]}
  - {vip: 192.0.2.100, port: 0, protocol: udp, reals: [{address: 192.0.2.13}]}
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.12}, {address: 192.0.2.11}]}
";

    fn key(protocol: u8, dst_port: u16) -> FlowKey {
        let (src, family) = address_bytes("203.0.113.9".parse().unwrap());
        let (dst, _) = address_bytes("192.0.2.100".parse().unwrap());
        FlowKey {
            src,
            dst,
            src_port_be: 40000u16.to_be(),
            dst_port_be: dst_port.to_be(),
            protocol,
            family,
            _pad: [0; 2],
        }
    }

    #[test]
    fn a_flow_crosses_by_name_to_the_backups_ids() {
        let master = desired(MASTER);
        let backup = desired(BACKUP);
        let names = Names::new(&master);
        let ids = Ids::new(&backup);
        let id_of = |desired: &Desired, address: &str| {
            desired
                .services
                .iter()
                .flat_map(|service| service.reals.iter().map(move |real| (service.id, real)))
                .find(|(_, real)| real.config.address == address.parse::<IpAddr>().unwrap())
                .map(|(service, real)| (service, real.id))
                .unwrap()
        };
        for (protocol, port, real, state) in [
            (6, 80, "192.0.2.12", STATE_ESTABLISHED),
            (17, 5353, "192.0.2.13", STATE_UDP),
        ] {
            let (service_id, real_id) = id_of(&master, real);
            let flow = Flow {
                real_id,
                service_id,
                last_seen_ns: 10_000_000_000,
                state: u32::from(state),
                ..Flow::default()
            };
            let record = names
                .record(&key(protocol, port), &flow, 12_500_000_000, |_| None)
                .expect("named");
            assert_eq!(record.idle_ms, 2500);
            assert_eq!(record.real.to_string(), real);
            let Copied {
                key: backup_key,
                flow: backup_flow,
                reply,
            } = ids.flow(&record, 100_000_000_000).expect("known");
            assert_eq!(reply, None, "a DR flow has no reply entry");
            assert_eq!(backup_key, key(protocol, port));
            let (service_id, real_id) = id_of(&backup, real);
            assert_eq!(
                (backup_flow.service_id, backup_flow.real_id),
                (service_id, real_id)
            );
            assert_ne!(
                (backup_flow.service_id, backup_flow.real_id),
                (flow.service_id, flow.real_id),
                "the test must cross different ids"
            );
            assert_eq!(backup_flow.last_seen_ns, 97_500_000_000);
            assert_eq!(backup_flow.state, u32::from(state));
        }
    }

    #[test]
    fn names_the_backup_lacks_are_told_apart() {
        let master = desired(MASTER);
        let names = Names::new(&master);
        let service = &master.services[0];
        let flow = Flow {
            real_id: service.reals[0].id,
            service_id: service.id,
            state: u32::from(STATE_ESTABLISHED),
            ..Flow::default()
        };
        let record = names
            .record(&key(6, 80), &flow, 0, |_| None)
            .expect("named");
        let without_service = desired(
            "instance: b\ninterfaces: [{name: eth0}]\nservices:\n  - {vip: 192.0.2.100, port: 81, protocol: tcp, reals: [{address: 192.0.2.11}]}\n",
        );
        assert_eq!(
            Ids::new(&without_service).flow(&record, 0).err(),
            Some(Unmatched::Service)
        );
        let without_real = desired(
            "instance: b\ninterfaces: [{name: eth0}]\nservices:\n  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.12}]}\n",
        );
        assert_eq!(
            Ids::new(&without_real).flow(&record, 0).err(),
            Some(Unmatched::Real)
        );
        // A flow whose ids the master no longer knows is not sent.
        let stale = Flow {
            real_id: 999,
            ..flow
        };
        assert_eq!(names.record(&key(6, 80), &stale, 0, |_| None), None);
    }

    /// A record of a TCP flow to 192.0.2.100:80 on the real 192.0.2.11:80.
    fn tcp_record() -> FlowRecord {
        FlowRecord {
            protocol: PROTO_TCP,
            client: "203.0.113.9".parse().unwrap(),
            client_port: 40000,
            vip: "192.0.2.100".parse().unwrap(),
            vip_port: 80,
            service_port: 80,
            real: "192.0.2.11".parse().unwrap(),
            real_port: 80,
            state: STATE_ESTABLISHED,
            idle_ms: 0,
            local_port: 0,
            local_source: 0,
            way_back: None,
        }
    }

    #[test]
    fn a_state_the_protocol_lacks_is_refused() {
        let ids = Ids::new(&desired(MASTER));
        for state in STATE_SYN_RECV..=STATE_CLOSE {
            let record = FlowRecord {
                state,
                ..tcp_record()
            };
            assert!(ids.flow(&record, 0).is_ok(), "TCP state {state}");
        }
        for state in [STATE_NONE, STATE_UDP, 7, 255] {
            let record = FlowRecord {
                state,
                ..tcp_record()
            };
            assert_eq!(
                ids.flow(&record, 0).err(),
                Some(Unmatched::Invalid),
                "TCP state {state}"
            );
        }
        let udp = FlowRecord {
            protocol: PROTO_UDP,
            vip_port: 5353,
            service_port: 0,
            real: "192.0.2.13".parse().unwrap(),
            real_port: 0,
            state: STATE_UDP,
            ..tcp_record()
        };
        assert!(ids.flow(&udp, 0).is_ok());
        for state in [STATE_NONE, STATE_ESTABLISHED, STATE_FIN_WAIT, 7] {
            let record = FlowRecord { state, ..udp };
            assert_eq!(
                ids.flow(&record, 0).err(),
                Some(Unmatched::Invalid),
                "UDP state {state}"
            );
        }
        let icmp = FlowRecord {
            protocol: 1,
            ..tcp_record()
        };
        assert_eq!(ids.flow(&icmp, 0).err(), Some(Unmatched::Invalid));
    }

    #[test]
    fn a_port_other_than_the_services_is_refused() {
        let ids = Ids::new(&desired(MASTER));
        let other_port = FlowRecord {
            vip_port: 81,
            ..tcp_record()
        };
        assert_eq!(ids.flow(&other_port, 0).err(), Some(Unmatched::Invalid));
        // An all-ports service takes any.
        let udp = FlowRecord {
            protocol: PROTO_UDP,
            vip_port: 5353,
            service_port: 0,
            real: "192.0.2.13".parse().unwrap(),
            real_port: 0,
            state: STATE_UDP,
            ..tcp_record()
        };
        let Copied { key, .. } = ids.flow(&udp, 0).expect("any port");
        assert_eq!(u16::from_be(key.dst_port_be), 5353);
    }

    #[test]
    fn full_nat_fields_are_taken_only_for_a_full_nat_real() {
        // Without full NAT, both fields must be 0.
        let ids = Ids::new(&desired(MASTER));
        for (local_port, local_source) in [(1024, 0), (0, 1), (1024, 1)] {
            let record = FlowRecord {
                local_port,
                local_source,
                ..tcp_record()
            };
            assert_eq!(
                ids.flow(&record, 0).err(),
                Some(Unmatched::Invalid),
                "local {local_port}/{local_source} for a dr real"
            );
        }
        // A full-NAT real with two local sources.
        let full_nat = Ids::new(&desired(
            "
instance: b
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    snat_pool: [192.0.2.3, 192.0.2.4]
    reals: [{address: 192.0.2.11, forward: fullnat}]
",
        ));
        let record = FlowRecord {
            local_port: 1024,
            local_source: 1,
            ..tcp_record()
        };
        let Copied { flow, .. } = full_nat.flow(&record, 0).expect("taken");
        assert_eq!(
            (u16::from_be(flow.local_port_be), flow.local_source),
            (1024, 1)
        );
        for (local_port, local_source) in [(0, 0), (0, 1), (1024, 2)] {
            let record = FlowRecord {
                local_port,
                local_source,
                ..tcp_record()
            };
            assert_eq!(
                full_nat.flow(&record, 0).err(),
                Some(Unmatched::Invalid),
                "local {local_port}/{local_source} for a full-NAT real of two sources"
            );
        }
    }

    /// NAT to port 8080 and full NAT from two local sources, on eth0 at ifindex 7.
    const NAT_MASTER: &str = "
instance: a
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11, port: 8080, forward: nat}, {address: 192.0.2.12, port: 8080, forward: nat}]}
  - vip: 192.0.2.100
    port: 443
    protocol: tcp
    snat_pool: [192.0.2.3, 192.0.2.4]
    reals: [{address: 192.0.2.11, forward: fullnat}]
";
    /// The same, services and reals in another order (other ids), and eth0 at ifindex 9.
    const NAT_BACKUP: &str = "
instance: b
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 443
    protocol: tcp
    snat_pool: [192.0.2.3, 192.0.2.4]
    reals: [{address: 192.0.2.11, forward: fullnat}]
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.12, port: 8080, forward: nat}, {address: 192.0.2.11, port: 8080, forward: nat}]}
";

    /// The service and real ids of `real` in `desired`'s service on `port`.
    fn ids_of(desired: &Desired, port: u16, real: &str) -> (u32, u32) {
        let service = desired
            .services
            .iter()
            .find(|service| service.config.port == port)
            .expect("the service");
        let real = service
            .reals
            .iter()
            .find(|candidate| candidate.config.address == real.parse::<IpAddr>().unwrap())
            .expect("the real");
        (service.id, real.id)
    }

    fn bytes(address: &str) -> [u8; 16] {
        address_bytes(address.parse().unwrap()).0
    }

    /// The reply entry a master's program wrote for `key`'s flow to `real_id`.
    fn master_reply(key: &FlowKey, service_id: u32, real_id: u32) -> Reply {
        Reply {
            flow: *key,
            client_mac: [2, 0, 0, 0, 0, 0x42],
            vlan_proto_be: 0x8100u16.to_be(),
            ingress_ifindex: 7,
            vlan: 0x1_0064,
            real_id,
            service_id,
        }
    }

    #[test]
    fn a_nat_flows_way_back_crosses_to_the_backups_ids_and_interface() {
        let master = desired(NAT_MASTER);
        let backup = desired_on_ifindex(NAT_BACKUP, 9);
        let names = Names::new(&master);
        let ids = Ids::new(&backup);
        let client = key(PROTO_TCP, 80);
        let (service_id, real_id) = ids_of(&master, 80, "192.0.2.12");
        let flow = Flow {
            real_id,
            service_id,
            state: u32::from(STATE_ESTABLISHED),
            ..Flow::default()
        };
        // The program keys the reply as the real sends it: from 192.0.2.12:8080 to the
        // client's address and port.
        let expected_key = FlowKey {
            src: bytes("192.0.2.12"),
            dst: bytes("203.0.113.9"),
            src_port_be: 8080u16.to_be(),
            dst_port_be: 40000u16.to_be(),
            protocol: PROTO_TCP,
            family: client.family,
            _pad: [0; 2],
        };
        let record = names
            .record(&client, &flow, 0, |reply_key| {
                assert_eq!(*reply_key, expected_key);
                Some(master_reply(&client, service_id, real_id))
            })
            .expect("named");
        assert_eq!(
            record.way_back,
            Some(WayBack {
                interface: InterfaceName::new("eth0").unwrap(),
                client_mac: [2, 0, 0, 0, 0, 0x42],
                vlan_proto: 0x8100,
                vlan: 0x1_0064,
            })
        );
        let copied = ids.flow(&record, 0).expect("known");
        let (backup_service, backup_real) = ids_of(&backup, 80, "192.0.2.12");
        assert_ne!((backup_service, backup_real), (service_id, real_id));
        assert_eq!(
            copied.reply,
            Some((
                expected_key,
                Reply {
                    ingress_ifindex: 9,
                    ..master_reply(&client, backup_service, backup_real)
                }
            ))
        );
    }

    #[test]
    fn a_full_nat_flows_reply_is_keyed_by_its_local_source_and_port() {
        let master = desired(NAT_MASTER);
        let backup = desired_on_ifindex(NAT_BACKUP, 9);
        let client = key(PROTO_TCP, 443);
        let (service_id, real_id) = ids_of(&master, 443, "192.0.2.11");
        let flow = Flow {
            real_id,
            service_id,
            state: u32::from(STATE_ESTABLISHED),
            local_port_be: 1500u16.to_be(),
            local_source: 1,
            ..Flow::default()
        };
        // From the real (on the client's destination port: it has none of its own) to the
        // second local source, on the flow's local port.
        let expected_key = FlowKey {
            src: bytes("192.0.2.11"),
            dst: bytes("192.0.2.4"),
            src_port_be: 443u16.to_be(),
            dst_port_be: 1500u16.to_be(),
            protocol: PROTO_TCP,
            family: client.family,
            _pad: [0; 2],
        };
        let record = Names::new(&master)
            .record(&client, &flow, 0, |reply_key| {
                assert_eq!(*reply_key, expected_key);
                Some(master_reply(&client, service_id, real_id))
            })
            .expect("named");
        let copied = Ids::new(&backup).flow(&record, 0).expect("known");
        let (backup_service, backup_real) = ids_of(&backup, 443, "192.0.2.11");
        assert_eq!(
            copied.reply,
            Some((
                expected_key,
                Reply {
                    ingress_ifindex: 9,
                    ..master_reply(&client, backup_service, backup_real)
                }
            ))
        );
    }

    #[test]
    fn a_reply_entry_that_is_not_the_flows_gives_no_way_back() {
        let master = desired(NAT_MASTER);
        let names = Names::new(&master);
        let client = key(PROTO_TCP, 80);
        let (service_id, real_id) = ids_of(&master, 80, "192.0.2.12");
        let flow = Flow {
            real_id,
            service_id,
            state: u32::from(STATE_ESTABLISHED),
            ..Flow::default()
        };
        let other_client = key(PROTO_TCP, 81);
        let (_, other_real) = ids_of(&master, 80, "192.0.2.11");
        for (why, reply) in [
            ("missing", None),
            (
                "another flow's",
                Some(master_reply(&other_client, service_id, real_id)),
            ),
            (
                "to another real",
                Some(master_reply(&client, service_id, other_real)),
            ),
            (
                "in on an interface the program does not run on",
                Some(Reply {
                    ingress_ifindex: 8,
                    ..master_reply(&client, service_id, real_id)
                }),
            ),
        ] {
            let record = names.record(&client, &flow, 0, |_| reply).expect("named");
            assert_eq!(record.way_back, None, "a reply entry {why}");
        }
        // A DR flow's reply entry is not even looked for.
        let dr = desired(MASTER);
        let service = &dr.services[0];
        let dr_flow = Flow {
            real_id: service.reals[0].id,
            service_id: service.id,
            state: u32::from(STATE_ESTABLISHED),
            ..Flow::default()
        };
        let record = Names::new(&dr)
            .record(&client, &dr_flow, 0, |_| {
                panic!("looked for a DR flow's reply")
            })
            .expect("named");
        assert_eq!(record.way_back, None);
    }

    #[test]
    fn a_way_back_the_backup_cannot_use_is_refused_and_none_is_no_reply() {
        let backup = Ids::new(&desired_on_ifindex(NAT_BACKUP, 9));
        let nat_record = FlowRecord {
            vip_port: 80,
            real: "192.0.2.12".parse().unwrap(),
            real_port: 8080,
            way_back: Some(WayBack {
                interface: InterfaceName::new("eth0").unwrap(),
                client_mac: [2, 0, 0, 0, 0, 0x42],
                vlan_proto: 0,
                vlan: 0,
            }),
            ..tcp_record()
        };
        assert!(backup.flow(&nat_record, 0).unwrap().reply.is_some());
        // An interface this node's program does not run on.
        let elsewhere = FlowRecord {
            way_back: Some(WayBack {
                interface: InterfaceName::new("eth1").unwrap(),
                ..nat_record.way_back.unwrap()
            }),
            ..nat_record
        };
        assert_eq!(backup.flow(&elsewhere, 0).err(), Some(Unmatched::Interface));
        // From an older master (no way back): the flow, without a reply entry.
        let without = FlowRecord {
            way_back: None,
            ..nat_record
        };
        assert_eq!(backup.flow(&without, 0).unwrap().reply, None);
        // A way back for a real that is DR here.
        let dr = Ids::new(&desired(MASTER));
        let dr_record = FlowRecord {
            way_back: nat_record.way_back,
            ..tcp_record()
        };
        assert_eq!(dr.flow(&dr_record, 0).err(), Some(Unmatched::Invalid));
    }
}
