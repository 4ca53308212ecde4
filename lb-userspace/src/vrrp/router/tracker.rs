//! What moves a router's priority or sends it to FAULT, looked at every
//! [`TRACK_EVERY`] on a task of its own (netlink answers may wait on the kernel's RTNL lock;
//! the router's advert timer never does).

use std::{collections::HashMap, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::{
    config::ha::VrrpInstanceConfig,
    reconcile::Desired,
    vrrp::host::{Host, HostError},
};

/// How often tracked interfaces and services are looked at.
pub const TRACK_EVERY: Duration = Duration::from_millis(100);
/// Failed netlink queries in a row after which the socket is opened again (a netlink
/// connection that hit a socket error stays closed).
const REOPEN_AFTER_FAILURES: u32 = 20;

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// Why the router must be in FAULT, if it must.
    pub fault: Option<String>,
    /// Its priority after the weights of what is down (an owner keeps 255).
    pub priority: u8,
    /// The router's own interface's index, when it exists: a change means the interface was
    /// created again, and the router's sockets are on the old one.
    pub index: Option<u32>,
}

/// Looks at what the router's `settings` (as reloads change them) track, every
/// [`TRACK_EVERY`], until the router drops `verdicts`.
pub async fn run(
    mut settings: watch::Receiver<VrrpInstanceConfig>,
    desired: Arc<ArcSwap<Desired>>,
    verdicts: watch::Sender<Option<Tracked>>,
) {
    let mut config = settings.borrow().clone();
    let mut host = loop {
        match Host::new() {
            Ok(host) => break host,
            Err(error) => {
                log::error!("vrrp {}: tracking: {error}; trying again", config.name);
                tokio::time::sleep(Duration::from_secs(1)).await;
                if verdicts.is_closed() {
                    return;
                }
            }
        }
    };
    let mut interfaces = tracked_interfaces(&config);
    // The last state seen of each interface (kept through failed queries), and whether its
    // absence was reported.
    let mut up: HashMap<String, bool> = HashMap::new();
    let mut missing_reported: HashMap<String, bool> = HashMap::new();
    let mut absent_once: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut failures = 0u32;
    // Whether `source_address` was on the interface when last looked at (kept through failed
    // queries).
    let mut source_present = true;
    let mut ticks = tokio::time::interval(TRACK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if settings.has_changed().unwrap_or(false) {
            config = settings.borrow_and_update().clone();
            interfaces = tracked_interfaces(&config);
        }
        let mut fault: Option<String> = None;
        let mut priority = i32::from(config.priority);
        let mut index = None;
        for (position, (name, weight)) in interfaces.iter().enumerate() {
            let is_up = match host.link_state(name).await {
                Ok(Some((found, is_up))) => {
                    failures = 0;
                    absent_once.remove(name);
                    if position == 0 {
                        index = Some(found);
                    }
                    missing_reported.remove(name);
                    up.insert(name.clone(), is_up);
                    is_up
                }
                // A closed netlink connection answers "no such link" once before it
                // errs: an interface is missing when two looks in a row say so.
                Ok(None) if !absent_once.insert(name.clone()) => {
                    failures = 0;
                    if !missing_reported.insert(name.clone(), true).unwrap_or(false) {
                        log::warn!("vrrp {}: interface {name} does not exist", config.name);
                    }
                    up.insert(name.clone(), false);
                    false
                }
                Ok(None) => up.get(name).copied().unwrap_or(true),
                Err(error) => {
                    failures += 1;
                    report_failure(&config.name, &error, failures);
                    // A query that failed says nothing about the link: its last state holds.
                    up.get(name).copied().unwrap_or(true)
                }
            };
            if is_up {
                continue;
            }
            let what = if missing_reported.contains_key(name) {
                format!("interface {name} does not exist")
            } else {
                format!("interface {name} down")
            };
            if *weight == 0 {
                fault.get_or_insert(what);
            } else {
                priority += weight;
            }
        }
        // Adverts sent from an address the interface no longer has fail: the peer takes over
        // while this node would go on claiming the role. A FAULT gives the role up.
        if let (Some(source), Some(index)) = (config.source_address, index) {
            match host.addresses(&config.interface, index).await {
                Ok(addresses) => {
                    source_present = addresses.iter().any(|(address, _)| *address == source);
                }
                Err(error) => {
                    failures += 1;
                    report_failure(&config.name, &error, failures);
                }
            }
            if !source_present {
                fault.get_or_insert_with(|| {
                    format!("source_address {source} is not on {}", config.interface)
                });
            }
        }
        if failures >= REOPEN_AFTER_FAILURES {
            match Host::new() {
                Ok(fresh) => {
                    log::warn!("vrrp {}: reopened its netlink socket", config.name);
                    host = fresh;
                    failures = 0;
                }
                Err(error) => log::warn!("vrrp {}: reopening netlink: {error}", config.name),
            }
        }
        if let Some(weight) = config.track_services
            && a_service_is_down(&config, &desired.load())
        {
            if weight == 0 {
                fault.get_or_insert_with(|| "a tracked service has no real up".to_owned());
            } else {
                priority += weight;
            }
        }
        let priority = if config.priority == 255 {
            255
        } else {
            priority.clamp(1, 254) as u8
        };
        let verdict = Tracked {
            fault,
            priority,
            index,
        };
        verdicts.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&verdict);
            if changed {
                *current = Some(verdict);
            }
            changed
        });
        if verdicts.is_closed() {
            return;
        }
    }
}

fn report_failure(router: &str, error: &HostError, failures: u32) {
    if failures == 1 {
        log::warn!("vrrp {router}: tracking: {error} (the last known state holds)");
    } else {
        log::debug!("vrrp {router}: tracking: {error}");
    }
}

/// The router's own interface (its link down is a FAULT), then its tracked ones, each with
/// its weight.
fn tracked_interfaces(config: &VrrpInstanceConfig) -> Vec<(String, i32)> {
    let mut interfaces = vec![(config.interface.clone(), 0)];
    interfaces.extend(
        config
            .track_interfaces
            .iter()
            .map(|tracked| (tracked.name.clone(), tracked.weight)),
    );
    interfaces
}

/// Whether a service on one of the router's addresses has no real that can take new flows.
fn a_service_is_down(config: &VrrpInstanceConfig, desired: &Desired) -> bool {
    desired
        .services
        .iter()
        .filter(|service| {
            config
                .virtual_addresses
                .iter()
                .any(|address| address.address == service.config.vip)
        })
        .any(|service| {
            !service
                .reals
                .iter()
                .any(|real| !real.sorry && real.schedulable() && real.config.weight > 0)
        })
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        net::{IpAddr, Ipv4Addr},
    };

    use super::*;
    use crate::{
        config,
        neighbour::{InterfaceInfo, Routes},
        reconcile::HealthChange,
    };

    const CONFIG: &str = "
instance: t
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}, {address: 192.0.2.12, weight: 0}],
     health_check: {type: tcp}}
  - {vip: 192.0.2.200, port: 80, protocol: tcp, reals: [{address: 192.0.2.13}]}
vrrp:
  - {name: VI_1, interface: eth0, vrid: 51, virtual_addresses: [192.0.2.100], track_services: {weight: -50}}
";

    fn started() -> (VrrpInstanceConfig, Desired) {
        let config = config::parse(CONFIG, "t.yaml").expect("parses");
        let eth0 = InterfaceInfo {
            name: "eth0".into(),
            index: 7,
            mac: [2, 0, 0, 0, 0, 2],
            prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
            mtu: 1500,
            vlan: None,
            egress: 7,
        };
        let desired = Desired::new(&config, vec![eth0], &Routes::new()).expect("builds");
        (config.vrrp[0].clone(), desired)
    }

    #[test]
    fn a_service_on_the_routers_addresses_with_no_real_up_is_down() {
        let (router, mut desired) = started();
        // No MAC yet: nothing can take new flows.
        assert!(a_service_is_down(&router, &desired));
        let macs: HashMap<IpAddr, [u8; 6]> = [11, 12, 13]
            .into_iter()
            .map(|last| {
                (
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
                    [2, 0, 0, 0, 0, last],
                )
            })
            .collect();
        desired.set_neighbours(7, &macs);
        assert!(!a_service_is_down(&router, &desired));
        // Its one weighted real fails its check: the drained one does not count.
        let service = &desired.services[0];
        let change = HealthChange {
            key: crate::reconcile::health_key_of(&service.config, &service.reals[0].config),
            up: false,
        };
        desired.set_health(&[change]);
        assert!(a_service_is_down(&router, &desired));
        // A service on another VIP is not this router's concern.
        let other = VrrpInstanceConfig {
            virtual_addresses: vec![crate::config::ha::VirtualAddress {
                address: "192.0.2.200".parse().unwrap(),
                prefix: 32,
            }],
            ..router
        };
        assert!(!a_service_is_down(&other, &desired));
    }
}
