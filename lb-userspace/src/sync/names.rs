//! Ids ↔ names: the master writes its flows with names, the backup finds its own ids for
//! them. Both sides read the reconciler's snapshot of their own node.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{
    Flow, FlowKey, PROTO_TCP, PROTO_UDP,
    conntrack::{STATE_CLOSE, STATE_SYN_RECV, STATE_UDP},
};

use super::wire::FlowRecord;
use crate::{
    config::Forward,
    reconcile::{Desired, address_bytes, address_from_bytes},
};

/// A service by what names it on both nodes: protocol, VIP and port.
type ServiceName = (u8, IpAddr, u16);

/// The master's side: ids → names.
pub struct Names {
    services: HashMap<u32, ServiceName>,
    reals: HashMap<u32, (IpAddr, u16)>,
}

impl Names {
    pub fn new(desired: &Desired) -> Self {
        let mut services = HashMap::new();
        let mut reals = HashMap::new();
        for service in &desired.services {
            let config = &service.config;
            services.insert(service.id, (service.key.protocol, config.vip, config.port));
            for real in &service.reals {
                reals.insert(real.id, (real.config.address, real.config.port));
            }
        }
        Self { services, reals }
    }

    /// The flow as a record, `None` when its service or real is not (or no longer) known.
    pub fn record(&self, key: &FlowKey, flow: &Flow, now_ns: u64) -> Option<FlowRecord> {
        let &(protocol, vip, service_port) = self.services.get(&flow.service_id)?;
        let &(real, real_port) = self.reals.get(&flow.real_id)?;
        let idle_ms = now_ns.saturating_sub(flow.last_seen_ns) / 1_000_000;
        Some(FlowRecord {
            protocol,
            client: address_from_bytes(&key.src, key.family),
            client_port: u16::from_be(key.src_port_be),
            vip,
            vip_port: u16::from_be(key.dst_port_be),
            service_port,
            real,
            real_port,
            state: flow.state as u8,
            idle_ms: u32::try_from(idle_ms).unwrap_or(u32::MAX),
            local_port: u16::from_be(flow.local_port_be),
            local_source: flow.local_source,
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
    /// The record cannot be a flow of this service and real: a state its protocol does not
    /// have, a port that is not the service's, or full-NAT fields where this node's real is
    /// not full NAT (or names a local source it lacks). A corrupt record, or nodes whose
    /// configs differ.
    Invalid,
}

/// A real of this node, as a record's fields are checked against it.
#[derive(Debug, Clone, Copy)]
struct RealIds {
    id: u32,
    /// Full NAT: how many local sources its flows may come from; `None` for other methods.
    full_nat_sources: Option<usize>,
}

/// A service's id, and its reals by address and port.
type ServiceIds = (u32, HashMap<(IpAddr, u16), RealIds>);

/// The backup's side: names → ids.
pub struct Ids {
    services: HashMap<ServiceName, ServiceIds>,
}

impl Ids {
    pub fn new(desired: &Desired) -> Self {
        Self {
            services: desired
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
                                full_nat_sources: (real.config.forward == Forward::Fullnat)
                                    .then_some(real.sources.len()),
                            };
                            ((real.config.address, real.config.port), ids)
                        })
                        .collect();
                    (
                        (service.key.protocol, config.vip, config.port),
                        (service.id, reals),
                    )
                })
                .collect(),
        }
    }

    /// The flow table entry for a record, on this node's ids and clock. Nothing the program
    /// would not write itself gets in: the record's state must be one of its protocol's, its
    /// port the service's, and its full-NAT fields those of a full-NAT real here (a local
    /// port, and one of the real's local sources) or zero.
    pub fn flow(&self, record: &FlowRecord, now_ns: u64) -> Result<(FlowKey, Flow), Unmatched> {
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
        let real = *reals
            .get(&(record.real, record.real_port))
            .ok_or(Unmatched::Real)?;
        let local_fits = match real.full_nat_sources {
            Some(sources) => record.local_port != 0 && usize::from(record.local_source) < sources,
            None => record.local_port == 0 && record.local_source == 0,
        };
        if !local_fits {
            return Err(Unmatched::Invalid);
        }
        let real_id = real.id;
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
            real_id,
            service_id: *service_id,
            last_seen_ns: now_ns.saturating_sub(u64::from(record.idle_ms) * 1_000_000),
            state: u32::from(record.state),
            local_port_be: record.local_port.to_be(),
            local_source: record.local_source,
            _pad: 0,
            reserved: 0,
        };
        Ok((key, flow))
    }
}

#[cfg(test)]
mod tests {
    use lb_common::conntrack::{STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_NONE};

    use super::*;
    use crate::sync::testing::desired;

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
                .record(&key(protocol, port), &flow, 12_500_000_000)
                .expect("named");
            assert_eq!(record.idle_ms, 2500);
            assert_eq!(record.real.to_string(), real);
            let (backup_key, backup_flow) = ids.flow(&record, 100_000_000_000).expect("known");
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
        let record = names.record(&key(6, 80), &flow, 0).expect("named");
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
        assert_eq!(names.record(&key(6, 80), &stale, 0), None);
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
        let (key, _) = ids.flow(&udp, 0).expect("any port");
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
        let (_, flow) = full_nat.flow(&record, 0).expect("taken");
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
}
