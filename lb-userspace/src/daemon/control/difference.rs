//! What differs between the running config and a new one: interfaces added and removed,
//! settings that cannot change live, and the change in words for the log.

use crate::config::{self, Config, InterfaceConfig, ha::VrrpInstanceConfig};

/// The interfaces `new` adds to `running`'s, and the names of those it removes. One kept
/// with another `xdp_mode` is refused: reattaching in another mode would stop traffic on it.
pub(super) fn interface_changes(
    running: &Config,
    new: &Config,
) -> Result<(Vec<InterfaceConfig>, Vec<String>), String> {
    for interface in &new.interfaces {
        if let Some(old) = running
            .interfaces
            .iter()
            .find(|old| old.name == interface.name)
            && old.xdp_mode != interface.xdp_mode
        {
            return Err(format!(
                "interface {}: xdp_mode cannot change while lbd runs ({} → {}); restart lbd to \
                 change it",
                interface.name,
                old.xdp_mode.name(),
                interface.xdp_mode.name()
            ));
        }
    }
    let added = new
        .interfaces
        .iter()
        .filter(|interface| {
            !running
                .interfaces
                .iter()
                .any(|old| old.name == interface.name)
        })
        .cloned()
        .collect();
    let removed = running
        .interfaces
        .iter()
        .filter(|old| {
            !new.interfaces
                .iter()
                .any(|interface| interface.name == old.name)
        })
        .map(|old| old.name.clone())
        .collect();
    Ok((added, removed))
}

/// What cannot change while lbd runs: each needs a restart (`lbd` adopts the pinned maps,
/// so a restart keeps forwarding).
pub(super) fn fixed_settings_unchanged(running: &Config, new: &Config) -> Result<(), String> {
    let changed = |what: &str, old: String, new: String| {
        Err(format!(
            "{what} cannot change while lbd runs ({old} → {new}); restart lbd to change it \
             (forwarding continues across a restart)"
        ))
    };
    if running.instance != new.instance {
        return changed("instance", running.instance.clone(), new.instance.clone());
    }
    if running.limits != new.limits {
        return changed(
            "limits (map sizes)",
            format!("{:?}", running.limits),
            format!("{:?}", new.limits),
        );
    }
    if running.pin_dir != new.pin_dir {
        return changed(
            "pin_dir",
            running.pin_dir.display().to_string(),
            new.pin_dir.display().to_string(),
        );
    }
    if running.metrics_listen != new.metrics_listen {
        let text = |listen: Option<std::net::SocketAddr>| {
            listen.map_or_else(|| "none".to_owned(), |address| address.to_string())
        };
        return changed(
            "metrics.listen",
            text(running.metrics_listen),
            text(new.metrics_listen),
        );
    }
    if running.pid_file != new.pid_file {
        return changed(
            "pid_file",
            running.pid_file.display().to_string(),
            new.pid_file.display().to_string(),
        );
    }
    routers_change_live(&running.vrrp, &new.vrrp)?;
    if running.sync != new.sync {
        return changed(
            "sync",
            format!("{:?}", running.sync),
            format!("{:?}", new.sync),
        );
    }
    // BIRD's sessions are set up from it; a restart withdraws the VIPs and announces them
    // again, which the fleet's Maglev tables make harmless.
    if running.bgp != new.bgp {
        return Err(
            "bgp cannot change while lbd runs; restart lbd to change it (its VIPs are \
             withdrawn at the stop and announced again at the start; the other balancers \
             carry the traffic meanwhile)"
                .to_owned(),
        );
    }
    if running.admin_group != new.admin_group {
        let text =
            |group: Option<u32>| group.map_or_else(|| "none".to_owned(), |gid| gid.to_string());
        return changed(
            "admin.group",
            text(running.admin_group),
            text(new.admin_group),
        );
    }
    if running.admin_socket != new.admin_socket {
        return changed(
            "admin.socket",
            running.admin_socket.display().to_string(),
            new.admin_socket.display().to_string(),
        );
    }
    Ok(())
}

/// Whether `new` changes the running routers only where they change live: their election
/// settings (priority, advert interval, preempt and its delay), tracking and hooks. What
/// makes a router another one (its name, interface, vrid, addresses, peers, source address,
/// start state, owning its addresses or not, its sync group) and routers added, removed or
/// reordered need a restart: a restart leaves cleanly (a priority-0 advert, the peer takes
/// over) and joins again. (The unicast peers decide the adverts' source, picked once.)
pub(super) fn routers_change_live(
    running: &[VrrpInstanceConfig],
    new: &[VrrpInstanceConfig],
) -> Result<(), String> {
    let restart = |what: String| {
        Err(format!(
            "{what} cannot change while lbd runs; restart lbd to change it (its peer takes the \
             addresses over meanwhile: a restart sends a priority-0 advert)"
        ))
    };
    let names = |routers: &[VrrpInstanceConfig]| {
        routers
            .iter()
            .map(|router| router.name.clone())
            .collect::<Vec<_>>()
    };
    if names(running) != names(new) {
        let text = |names: Vec<String>| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        let mut sorted = (names(running), names(new));
        sorted.0.sort();
        sorted.1.sort();
        let what = if sorted.0 == sorted.1 {
            "the order of the vrrp routers"
        } else {
            "the vrrp routers"
        };
        return restart(format!(
            "{what} ({} → {})",
            text(names(running)),
            text(names(new))
        ));
    }
    for (old, new) in running.iter().zip(new) {
        let fixed = [
            ("interface", old.interface != new.interface),
            ("vrid", old.vrid != new.vrid),
            (
                "virtual_addresses",
                old.virtual_addresses != new.virtual_addresses,
            ),
            ("unicast_peers", old.unicast_peers != new.unicast_peers),
            ("source_address", old.source_address != new.source_address),
            ("initial_state", old.initial_state != new.initial_state),
            (
                "priority 255 (the address owner)",
                (old.priority == 255) != (new.priority == 255),
            ),
            ("sync_group", old.sync_group != new.sync_group),
        ];
        if let Some((what, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return restart(format!("vrrp {}: {what}", old.name));
        }
    }
    Ok(())
}

/// At most this many changes are named in one log line; the rest are counted.
const NAMED_CHANGES: usize = 12;

/// What differs between two configs, in words: services and reals added, removed or
/// changed, and timeouts. `no change` when nothing does.
pub fn describe_difference(old: &Config, new: &Config) -> String {
    let mut changes = Vec::new();
    let same_service = |a: &config::ServiceConfig, b: &config::ServiceConfig| {
        (a.protocol, a.vip, a.port) == (b.protocol, b.vip, b.port)
    };
    for service in &new.services {
        let Some(before) = old.services.iter().find(|s| same_service(s, service)) else {
            changes.push(format!("added {}", service.name()));
            continue;
        };
        let settings = |s: &config::ServiceConfig| config::ServiceConfig {
            reals: Vec::new(),
            ..s.clone()
        };
        if settings(before) != settings(service) {
            changes.push(format!("changed {}", service.name()));
        }
        for real in &service.reals {
            let text = config::socket_text(real.address, real.port);
            match before
                .reals
                .iter()
                .find(|r| (r.address, r.port) == (real.address, real.port))
            {
                None => changes.push(format!("added real {text} to {}", service.name())),
                Some(was) if was.weight != real.weight && was.forward == real.forward => changes
                    .push(format!(
                        "weight of {text} in {}: {} → {}",
                        service.name(),
                        was.weight,
                        real.weight
                    )),
                Some(was) if was != real => {
                    changes.push(format!("changed real {text} of {}", service.name()));
                }
                Some(_) => {}
            }
        }
        for real in &before.reals {
            if !service
                .reals
                .iter()
                .any(|r| (r.address, r.port) == (real.address, real.port))
            {
                changes.push(format!(
                    "removed real {} from {}",
                    config::socket_text(real.address, real.port),
                    service.name()
                ));
            }
        }
    }
    for service in &old.services {
        if !new.services.iter().any(|s| same_service(s, service)) {
            changes.push(format!("removed {}", service.name()));
        }
    }
    if old.timeouts != new.timeouts {
        changes.push("changed timeouts".to_owned());
    }
    for (before, router) in old.vrrp.iter().zip(&new.vrrp) {
        if before.priority != router.priority {
            changes.push(format!(
                "priority of vrrp {}: {} → {}",
                router.name, before.priority, router.priority
            ));
        }
        let priority_aside = |r: &config::ha::VrrpInstanceConfig| config::ha::VrrpInstanceConfig {
            priority: 0,
            ..r.clone()
        };
        if priority_aside(before) != priority_aside(router) {
            changes.push(format!("changed vrrp {}", router.name));
        }
    }
    if changes.is_empty() {
        return "no change".to_owned();
    }
    let more = changes.len().saturating_sub(NAMED_CHANGES);
    changes.truncate(NAMED_CHANGES);
    let mut text = changes.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routers(text: &str) -> Vec<VrrpInstanceConfig> {
        let config = config::parse(
            &format!("instance: a\ninterfaces: [{{name: eth0}}, {{name: eth1}}]\nvrrp:\n{text}"),
            "test.yaml",
        )
        .expect("parses");
        config.vrrp
    }

    const VI_1: &str = "  - {name: VI_1, interface: eth0, vrid: 51, priority: 150, virtual_addresses: [192.0.2.10], unicast_peers: [192.0.2.3]}\n";

    #[test]
    fn election_tracking_hooks_and_peers_change_live() {
        let running = routers(VI_1);
        for live in [
            VI_1.replace("priority: 150", "priority: 50"),
            VI_1.replace(
                "vrid: 51,",
                "vrid: 51, advert_interval: 100ms, preempt: false, preempt_delay: 5s,",
            ),
            VI_1.replace(
                "vrid: 51,",
                "vrid: 51, track_interfaces: [eth1], hooks: {on_master: /bin/true},",
            ),
        ] {
            assert_eq!(
                routers_change_live(&running, &routers(&live)),
                Ok(()),
                "{live}"
            );
        }
    }

    #[test]
    fn what_makes_another_router_needs_a_restart() {
        let running = routers(VI_1);
        for (changed, named) in [
            (
                VI_1.replace("interface: eth0", "interface: eth1"),
                "vrrp VI_1: interface",
            ),
            (VI_1.replace("vrid: 51", "vrid: 52"), "vrrp VI_1: vrid"),
            (
                VI_1.replace("[192.0.2.10]", "[192.0.2.11]"),
                "vrrp VI_1: virtual_addresses",
            ),
            (
                VI_1.replace(", unicast_peers: [192.0.2.3]", ""),
                "vrrp VI_1: unicast_peers",
            ),
            (
                VI_1.replace("[192.0.2.3]", "[192.0.2.3, 192.0.2.4]"),
                "vrrp VI_1: unicast_peers",
            ),
            (String::new(), "the vrrp routers (VI_1 → none)"),
            (
                VI_1.replace("vrid: 51,", "vrid: 51, source_address: 192.0.2.2,"),
                "vrrp VI_1: source_address",
            ),
            (
                VI_1.replace("vrid: 51,", "vrid: 51, initial_state: master,"),
                "vrrp VI_1: initial_state",
            ),
            (
                VI_1.replace("priority: 150", "priority: 255"),
                "vrrp VI_1: priority 255 (the address owner)",
            ),
            (
                VI_1.replace("name: VI_1", "name: VI_9"),
                "the vrrp routers (VI_1 → VI_9)",
            ),
            (
                format!(
                    "{VI_1}  - {{name: VI_2, interface: eth1, vrid: 52, virtual_addresses: [198.51.100.1]}}\n"
                ),
                "the vrrp routers (VI_1 → VI_1, VI_2)",
            ),
        ] {
            let error = routers_change_live(&running, &routers(&changed)).unwrap_err();
            assert!(error.starts_with(named), "{error}");
            assert!(error.contains("restart lbd to change it"), "{error}");
        }
    }

    #[test]
    fn reordered_routers_are_refused_as_such() {
        let two = "  - {name: VI_1, interface: eth0, vrid: 51, virtual_addresses: [192.0.2.10]}\n  - {name: VI_2, interface: eth1, vrid: 52, virtual_addresses: [198.51.100.1]}\n";
        let swapped = "  - {name: VI_2, interface: eth1, vrid: 52, virtual_addresses: [198.51.100.1]}\n  - {name: VI_1, interface: eth0, vrid: 51, virtual_addresses: [192.0.2.10]}\n";
        let error = routers_change_live(&routers(two), &routers(swapped)).unwrap_err();
        assert!(
            error.starts_with("the order of the vrrp routers (VI_1, VI_2 → VI_2, VI_1)"),
            "{error}"
        );
    }
}
