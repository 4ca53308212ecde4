//! Ids ↔ names: the master writes its flows with names, the backup finds its own ids for
//! them. Both sides read the reconciler's snapshot of their own node.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{Flow, FlowKey};

use super::wire::FlowRecord;
use crate::reconcile::{Desired, address_bytes, address_from_bytes};

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
}

/// A service's id, and its reals' ids by address and port.
type ServiceIds = (u32, HashMap<(IpAddr, u16), u32>);

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
                        .map(|real| ((real.config.address, real.config.port), real.id))
                        .collect();
                    (
                        (service.key.protocol, config.vip, config.port),
                        (service.id, reals),
                    )
                })
                .collect(),
        }
    }

    /// The flow table entry for a record, on this node's ids and clock.
    pub fn flow(&self, record: &FlowRecord, now_ns: u64) -> Result<(FlowKey, Flow), Unmatched> {
        let (service_id, reals) = self
            .services
            .get(&(record.protocol, record.vip, record.service_port))
            .ok_or(Unmatched::Service)?;
        let real_id = *reals
            .get(&(record.real, record.real_port))
            .ok_or(Unmatched::Real)?;
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
        for (protocol, port, real) in [(6, 80, "192.0.2.12"), (17, 5353, "192.0.2.13")] {
            let (service_id, real_id) = id_of(&master, real);
            let flow = Flow {
                real_id,
                service_id,
                last_seen_ns: 10_000_000_000,
                state: 2,
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
            assert_eq!(backup_flow.state, 2);
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
}
