//! What differs between the running config and a new one: interfaces added and removed,
//! settings that cannot change live, and the change in words for the log.

use crate::config::{self, Config, InterfaceConfig};

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
    // A virtual router changed live would change the election under the peer's feet; a
    // restart leaves it cleanly (a priority-0 advert) and joins again.
    if running.vrrp != new.vrrp {
        return Err(
            "vrrp cannot change while lbd runs; restart lbd to change it (its peer \
                    takes the addresses over meanwhile: a restart sends a priority-0 advert)"
                .to_owned(),
        );
    }
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
