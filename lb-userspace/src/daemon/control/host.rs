//! Where the control task learns about the host when it places reals: interfaces, VLANs,
//! routes and neighbour tables, over rtnetlink (or fixed answers in tests).

use std::net::IpAddr;

use crate::{
    config::Config,
    daemon::neighbours::{resolve, survey},
    neighbour::{InterfaceInfo, NeighbourError, Neighbours, Observation, Routes},
    reconcile::Desired,
};

/// Where lbd learns about the host when it places reals.
pub enum Host {
    /// The kernel, over rtnetlink.
    Netlink(Neighbours),
    /// Fixed answers (tests with a fake data plane): interfaces, routes, and the MACs the
    /// neighbour tables would hold.
    Fixed {
        interfaces: Vec<InterfaceInfo>,
        routes: Routes,
        macs: Vec<(u32, IpAddr, [u8; 6])>,
    },
}

impl Host {
    /// The interfaces the program runs on (then the VLANs on them) and the routes to the
    /// reals that may be routed.
    pub async fn placement(
        &self,
        config: &Config,
    ) -> Result<(Vec<InterfaceInfo>, Routes), NeighbourError> {
        match self {
            Host::Netlink(neighbours) => {
                let mut interfaces = Vec::with_capacity(config.interfaces.len());
                for interface in &config.interfaces {
                    interfaces.push(neighbours.interface(&interface.name).await?);
                }
                let vlans = neighbours.vlans_on(&interfaces).await?;
                interfaces.extend(vlans);
                let routes = routes(neighbours, config).await?;
                Ok((interfaces, routes))
            }
            Host::Fixed {
                interfaces, routes, ..
            } => Ok((interfaces.clone(), routes.clone())),
        }
    }

    /// What the neighbour tables say about `desired`'s next hops, and those to probe.
    pub(super) async fn survey(
        &self,
        desired: &Desired,
    ) -> Result<(Vec<Observation>, Vec<(u32, IpAddr)>), NeighbourError> {
        match self {
            Host::Netlink(neighbours) => {
                let survey = survey(neighbours, desired).await?;
                Ok((survey.observations, survey.to_probe))
            }
            Host::Fixed { macs, .. } => Ok((
                macs.iter()
                    .map(|&(ifindex, addr, mac)| Observation {
                        ifindex,
                        addr,
                        state: crate::neighbour::NeighbourStatus::Usable { mac, stale: false },
                    })
                    .collect(),
                Vec::new(),
            )),
        }
    }

    pub(super) async fn probe(&self, next_hops: Vec<(u32, IpAddr)>) {
        if let Host::Netlink(neighbours) = self {
            resolve(neighbours, next_hops).await;
        }
    }
}

/// The kernel's route to every real that may sit behind a router (all but `dr` reals, which
/// must be on a connected segment): its next hop and the balancer's own address toward it.
/// One lookup per address; read again with every change.
async fn routes(neighbours: &Neighbours, config: &Config) -> Result<Routes, NeighbourError> {
    let mut routes = Routes::new();
    let routed = config
        .services
        .iter()
        .flat_map(|service| {
            service
                .reals
                .iter()
                .map(|real| (real.address, real.forward))
        })
        .chain(config.services.iter().filter_map(|service| {
            service
                .sorry_server
                .map(|sorry| (sorry.address, service.forward))
        }))
        .filter(|(_, forward)| !forward.needs_connected_real())
        .map(|(address, _)| address)
        // Collected: an iterator of closures held across an await makes the future not Send.
        .collect::<Vec<IpAddr>>();
    for address in routed {
        if let std::collections::hash_map::Entry::Vacant(slot) = routes.entry(address) {
            let route = neighbours.route(address).await?;
            log::debug!("route to real {address}: {route:?}");
            slot.insert(route);
        }
    }
    Ok(routes)
}
