//! Destination → virtual service.

use lb_common::{FlowKey, SETTINGS_NO_ALL_PORTS_SERVICE, Service, ServiceKey};

use crate::maps::{FRAGMENT_SERVICES, SERVICES, SETTINGS};

/// The service for this destination: an exact VIP:port match first, then the VIP's all-ports
/// service (port 0), as ipvsadm's port-0 services behave. The second lookup is skipped when
/// lbd says no service is an all-ports one: traffic that is not ours would otherwise pay for
/// two hash lookups (a fifth of what passing it costs).
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
    if matches!(SETTINGS.get(0), Some(settings) if settings.flags & SETTINGS_NO_ALL_PORTS_SERVICE != 0)
    {
        return None;
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
