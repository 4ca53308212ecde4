//! What the kernel's routing table says about reaching a real: the `RTM_GETROUTE` request
//! ([`Neighbours::route`]) and the pure reading of its answer.
//!
//! Tunnel and NAT reals need not share a segment with the balancer: their packets go to the
//! next hop the kernel would use (the real itself on a connected segment, else a gateway),
//! and leave from the address the kernel would choose as source (`RTA_PREFSRC`), which is
//! the default outer source of tunnels and local address of full NAT.

use std::{collections::HashMap, net::IpAddr};

use netlink_packet_route::{
    RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType, RouteVia},
};
use rtnetlink::packet_core::{NLM_F_REQUEST, NetlinkMessage};

use super::{NeighbourError, Neighbours, family, interface_name};

impl Neighbours {
    /// How the kernel would send a packet to `addr`: output interface, gateway, preferred
    /// source. A single `RTM_GETROUTE` lookup (not a dump), as `ip route get ADDRESS`.
    pub async fn route(&self, addr: IpAddr) -> Result<Route, NeighbourError> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(addr);
        message.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        message.header.table = RouteHeader::RT_TABLE_UNSPEC;
        message
            .attributes
            .push(RouteAttribute::Destination(addr.into()));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(message));
        request.header.flags = NLM_F_REQUEST;
        let replies = self
            .exchange(request)
            .await
            .map_err(|source| NeighbourError::NoRoute { addr, source })?;
        let answer = replies
            .iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(answer) => Some(answer),
                _ => None,
            })
            .ok_or(NeighbourError::BadRoute {
                addr,
                source: RouteAnswerError::NoInterface,
            })?;
        let mut route =
            read_route(answer).map_err(|source| NeighbourError::BadRoute { addr, source })?;
        route.interface = interface_name(route.ifindex);
        Ok(route)
    }
}

/// The kernel's answer for one destination (`ip route get ADDRESS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The output interface.
    pub ifindex: u32,
    /// Its name, for messages (`ifindex N` when the kernel would not say).
    pub interface: String,
    /// The gateway, when the destination is not on a connected segment.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would use toward the destination.
    pub prefsrc: Option<IpAddr>,
}

/// Routes to reals, by the real's address: what `Desired::new` places tunnel and NAT reals
/// with. Empty means "connected segments only" (fixtures, and configs with only `dr`).
pub type Routes = HashMap<IpAddr, Route>;

/// Why a route answer is no way to reach a real.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteAnswerError {
    #[error("the kernel's route is of type {0:?}, not a unicast route")]
    NotUnicast(RouteType),
    #[error("the kernel's route names no output interface")]
    NoInterface,
}

/// Reads an `RTM_NEWROUTE` answer to a lookup; `interface` is filled in by the caller.
pub(super) fn read_route(message: &RouteMessage) -> Result<Route, RouteAnswerError> {
    if message.header.kind != RouteType::Unicast {
        return Err(RouteAnswerError::NotUnicast(message.header.kind));
    }
    let mut route = Route {
        ifindex: 0,
        interface: String::new(),
        gateway: None,
        prefsrc: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Oif(index) => route.ifindex = *index,
            RouteAttribute::Gateway(address) => route.gateway = ip_of(address),
            // A gateway of the other family (`via inet6 fe80::1` for an IPv4 route, as
            // BGP-unnumbered fabrics have): its MAC serves the real all the same.
            RouteAttribute::Via(RouteVia::Inet(v4)) => route.gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => route.gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::PrefSource(address) => route.prefsrc = ip_of(address),
            _ => {}
        }
    }
    if route.ifindex == 0 {
        return Err(RouteAnswerError::NoInterface);
    }
    Ok(route)
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netlink_packet_route::AddressFamily;

    use super::*;

    fn answer(kind: RouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.kind = kind;
        message.attributes = attributes;
        message
    }

    #[test]
    fn a_gateway_route_names_interface_gateway_and_source() {
        let route = read_route(&answer(
            RouteType::Unicast,
            vec![
                RouteAttribute::Destination(Ipv4Addr::new(198, 51, 100, 7).into()),
                RouteAttribute::Oif(4),
                RouteAttribute::Gateway(Ipv4Addr::new(192, 0, 2, 1).into()),
                RouteAttribute::PrefSource(Ipv4Addr::new(192, 0, 2, 2).into()),
            ],
        ));
        assert_eq!(
            route,
            Ok(Route {
                ifindex: 4,
                interface: String::new(),
                gateway: Some(IpAddr::from([192, 0, 2, 1])),
                prefsrc: Some(IpAddr::from([192, 0, 2, 2])),
            })
        );
    }

    #[test]
    fn a_gateway_of_the_other_family_is_the_next_hop() {
        let gateway = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let route = read_route(&answer(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(4),
                RouteAttribute::Via(RouteVia::Inet6(gateway)),
                RouteAttribute::PrefSource(Ipv4Addr::new(192, 0, 2, 2).into()),
            ],
        ))
        .unwrap();
        assert_eq!(route.gateway, Some(IpAddr::V6(gateway)));
    }

    #[test]
    fn a_connected_route_has_no_gateway() {
        let source = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
        let route = read_route(&answer(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(2),
                RouteAttribute::PrefSource(source.into()),
            ],
        ))
        .unwrap();
        assert_eq!(
            (route.ifindex, route.gateway, route.prefsrc),
            (2, None, Some(IpAddr::V6(source)))
        );
    }

    #[test]
    fn local_routes_and_answers_without_interface_are_refused() {
        assert_eq!(
            read_route(&answer(RouteType::Local, vec![RouteAttribute::Oif(1)])),
            Err(RouteAnswerError::NotUnicast(RouteType::Local))
        );
        assert_eq!(
            read_route(&answer(RouteType::Unicast, vec![])),
            Err(RouteAnswerError::NoInterface)
        );
    }
}
