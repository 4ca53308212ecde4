//! Which VIPs this node announces, and why the others are withheld. Pure: the desired state
//! and the drain flag in, one verdict per VIP out.

use std::{collections::BTreeMap, net::IpAddr};

use crate::reconcile::Desired;

/// One VIP and what this node does with its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipVerdict {
    pub vip: IpAddr,
    /// `None`: announced. Otherwise why it is withheld.
    pub withheld: Option<Withheld>,
}

impl VipVerdict {
    pub fn announced(&self) -> bool {
        self.withheld.is_none()
    }
}

/// Why a VIP's route is withdrawn (or never announced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// `lbadm drain-node`: the operator takes this node out of the fleet.
    Drained,
    /// lbd is stopping: a stopped lbd runs no health checks, so it vouches for nothing.
    Stopping,
    /// No service of the VIP has a real that takes new flows (healthy, weight above 0).
    NoHealthyReal,
    /// A VRRP router carrying the VIP is not master here, so the program does not forward it.
    VrrpStandby,
}

impl std::fmt::Display for Withheld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Withheld::Drained => "node drained",
            Withheld::Stopping => "lbd stopping",
            Withheld::NoHealthyReal => "no healthy real",
            Withheld::VrrpStandby => "VRRP backup here",
        })
    }
}

/// Every VIP of the desired state, in address order. A VIP is announced when this node runs,
/// is not drained, forwards it, and at least one of its services has a real that takes new
/// flows (keepalived's quorum of 1: alive reals' weights sum to at least 1). A sorry server
/// does not count: in a fleet, the other balancers' reals are better than this one's apology.
pub fn verdicts(desired: &Desired, drained: bool, stopping: bool) -> Vec<VipVerdict> {
    let mut has_healthy_real: BTreeMap<IpAddr, bool> = BTreeMap::new();
    for service in &desired.services {
        let healthy = service
            .reals
            .iter()
            .any(|real| !real.sorry && real.schedulable() && real.config.weight > 0);
        *has_healthy_real.entry(service.config.vip).or_default() |= healthy;
    }
    has_healthy_real
        .into_iter()
        .map(|(vip, healthy)| {
            // A VIP of a family no neighbour carries is refused by the config's validation
            // (edits from lbadm included); its route would go nowhere.
            let withheld = if stopping {
                Some(Withheld::Stopping)
            } else if drained {
                Some(Withheld::Drained)
            } else if desired.standby.contains(&vip) {
                Some(Withheld::VrrpStandby)
            } else if !healthy {
                Some(Withheld::NoHealthyReal)
            } else {
                None
            };
            VipVerdict { vip, withheld }
        })
        .collect()
}
