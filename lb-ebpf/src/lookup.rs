//! Destination → virtual service.

use lb_common::{FlowKey, Service, ServiceKey};

use crate::maps::SERVICES;

/// The service for this destination: an exact VIP:port match first, then the VIP's all-ports
/// service (port 0), as ipvsadm's port-0 services behave.
#[inline(always)]
pub fn service(flow: &FlowKey) -> Option<Service> {
    let mut key = ServiceKey {
        vip: flow.dst,
        port_be: flow.dst_port_be,
        protocol: flow.protocol,
        family: flow.family,
    };
    if let Some(service) = unsafe { SERVICES.get(&key) } {
        return Some(*service);
    }
    key.port_be = 0;
    unsafe { SERVICES.get(&key) }.copied()
}
