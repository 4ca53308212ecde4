//! What link and address messages say: the pure part of reading interfaces over rtnetlink.

use std::net::IpAddr;

use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkMessage},
};

use super::Vlan;

/// The address assigned to this host: `IFA_LOCAL` when present (on point-to-point links
/// `IFA_ADDRESS` is the peer), `IFA_ADDRESS` otherwise, as iproute2 does.
pub(crate) fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let find = |local: bool| {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Local(a) if local => Some(*a),
                AddressAttribute::Address(a) if !local => Some(*a),
                _ => None,
            })
    };
    find(true).or_else(|| find(false))
}

/// The link's MAC; loopback's all-zero address does not count, as it can source nothing.
pub(crate) fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        })
        .filter(|mac| *mac != [0; 6])
}

pub(super) fn link_mtu(link: &LinkMessage) -> u32 {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .unwrap_or(0)
}

/// The link a stacked interface sits on (`IFLA_LINK`).
pub(super) fn link_parent(link: &LinkMessage) -> Option<u32> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Link(parent) if *parent != 0 => Some(*parent),
            _ => None,
        })
}

/// The VLAN of a `vlan` link.
pub(super) fn link_vlan(link: &LinkMessage) -> Option<Vlan> {
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVlan, LinkInfo};
    let info = link
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(info) => Some(info),
            _ => None,
        })?;
    if !info
        .iter()
        .any(|nla| matches!(nla, LinkInfo::Kind(InfoKind::Vlan)))
    {
        return None;
    }
    let data = info.iter().find_map(|nla| match nla {
        LinkInfo::Data(InfoData::Vlan(data)) => Some(data),
        _ => None,
    })?;
    let mut vlan = Vlan {
        id: 0,
        protocol: lb_common::ETH_P_8021Q,
    };
    for nla in data {
        match nla {
            InfoVlan::Id(id) => vlan.id = *id,
            InfoVlan::Protocol(protocol) => vlan.protocol = u16::from(*protocol),
            _ => {}
        }
    }
    (vlan.id != 0).then_some(vlan)
}

pub(super) fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_links_are_recognised_with_their_id_protocol_and_parent() {
        use netlink_packet_route::link::{InfoData, InfoKind, InfoVlan, LinkInfo, VlanProtocol};
        let link = |kind: InfoKind, data: Option<InfoData>| {
            let mut link = LinkMessage::default();
            link.header.index = 7;
            let mut info = vec![LinkInfo::Kind(kind)];
            info.extend(data.map(LinkInfo::Data));
            link.attributes = vec![
                LinkAttribute::IfName("eth0.100".into()),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0, 7]),
                LinkAttribute::Mtu(9000),
                LinkAttribute::Link(2),
                LinkAttribute::LinkInfo(info),
            ];
            link
        };
        let ad = link(
            InfoKind::Vlan,
            Some(InfoData::Vlan(vec![
                InfoVlan::Id(100),
                InfoVlan::Protocol(VlanProtocol::Ieee8021Ad),
            ])),
        );
        assert_eq!(
            link_vlan(&ad),
            Some(Vlan {
                id: 100,
                protocol: lb_common::ETH_P_8021AD
            })
        );
        assert_eq!((link_parent(&ad), link_mtu(&ad)), (Some(2), 9000));
        let q = link(InfoKind::Vlan, Some(InfoData::Vlan(vec![InfoVlan::Id(7)])));
        assert_eq!(link_vlan(&q).map(|v| (v.id, v.protocol)), Some((7, 0x8100)));
        // A veth peer also has a parent link; it is not a VLAN.
        assert_eq!(link_vlan(&link(InfoKind::Veth, None)), None);
    }
}
