//! Destination → virtual service.

use lb_common::{FlowKey, Service, ServiceKey};

use crate::maps::{FRAGMENT_SERVICES, SERVICES};

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

/// The service that places a non-first fragment of `flow`'s VIP and protocol when its
/// datagram's first fragment has not been seen (see `MAP_FRAGMENT_SERVICES`).
#[inline(always)]
pub fn fragment_service(flow: &FlowKey) -> Option<Service> {
    let key = ServiceKey {
        vip: flow.dst,
        port_be: 0,
        protocol: flow.protocol,
        family: flow.family,
    };
    unsafe { FRAGMENT_SERVICES.get(&key) }.copied()
}
