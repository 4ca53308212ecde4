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

/// The backup's side: names → ids.
pub struct Ids {
    services: HashMap<ServiceName, (u32, HashMap<(IpAddr, u16), u32>)>,
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
