//! `vrrp_instance` → an entry of SPEC.md's `vrrp:` list. This lbd refuses the key (VRRP
//! lands later), so the YAML carries the entries commented out and each instance is listed;
//! its directives that SPEC.md's keys cannot say are listed too.

use std::net::IpAddr;

use super::{
    convert::{self, Notes},
    parse::Directive,
    yaml::Vrrp,
};

/// One `vrrp_instance NAME { … }`.
pub(super) fn instance(notes: &mut Notes, block: &Directive) -> Vrrp {
    notes.skip(
        block,
        "VRRP is not in this version of lbd; the YAML carries it commented out",
    );
    let name = block.value().unwrap_or("VI").to_owned();
    let mut vrrp = Vrrp {
        comment: format!("{}: vrrp_instance {name}", block.at.place()),
        name,
        preempt: true,
        ..Vrrp::default()
    };
    for directive in block.children() {
        let value = directive.value().unwrap_or_default();
        let seconds = || convert::seconds(value);
        match directive.keyword.as_str() {
            "interface" if !value.is_empty() => vrrp.interface = Some(value.to_owned()),
            "virtual_router_id" => match value.parse::<u8>() {
                Ok(vrid) if vrid != 0 => vrrp.vrid = Some(vrid),
                _ => notes.skip(
                    directive,
                    format!("{value:?} is not a router id (1 to 255)"),
                ),
            },
            "priority" => match value.parse::<u8>() {
                Ok(priority) if priority != 0 => vrrp.priority = Some(priority),
                _ => notes.skip(directive, format!("{value:?} is not a priority (1 to 255)")),
            },
            "advert_int" => match seconds() {
                Some(interval) if !interval.is_zero() => vrrp.advert_interval = Some(interval),
                _ => notes.skip(
                    directive,
                    format!("{value:?} is not an interval in seconds"),
                ),
            },
            "nopreempt" => vrrp.preempt = false,
            "preempt" => vrrp.preempt = true,
            "preempt_delay" => match seconds() {
                Some(delay) => vrrp.preempt_delay = Some(delay),
                None => notes.skip(directive, format!("{value:?} is not a time in seconds")),
            },
            "state" => match value.to_ascii_uppercase().as_str() {
                "MASTER" => vrrp.initial_state = Some("master"),
                "BACKUP" => vrrp.initial_state = Some("backup"),
                _ => notes.skip(directive, format!("{value:?} is not MASTER or BACKUP")),
            },
            "unicast_peer" => {
                for peer in directive.children() {
                    match peer.keyword.parse::<IpAddr>() {
                        Ok(address) => vrrp.unicast_peers.push(address),
                        Err(_) => notes.skip(peer, "not an IP address"),
                    }
                    if !peer.args.is_empty() {
                        notes.skip(peer, "options after a peer's address have no vrrp key");
                    }
                }
            }
            "virtual_ipaddress" => {
                for entry in directive.children() {
                    match virtual_address(&entry.keyword) {
                        Some(address) => vrrp.virtual_addresses.push(address),
                        None => notes.skip(entry, "not an IP address with an optional /prefix"),
                    }
                    if !entry.args.is_empty() {
                        notes.skip(
                            entry,
                            format!(
                                "{}: SPEC.md's virtual_addresses have no options (dev, label, \
                                 scope, …)",
                                entry.args.join(" ")
                            ),
                        );
                    }
                }
            }
            "track_interface" => {
                for entry in directive.children() {
                    vrrp.track_interfaces.push(entry.keyword.clone());
                    if !entry.args.is_empty() {
                        notes.skip(
                            entry,
                            "a tracked interface's weight has no vrrp key (a fault is a fault)",
                        );
                    }
                }
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop"
                if !directive.args.is_empty() =>
            {
                let hook = match directive.keyword.as_str() {
                    "notify_master" => "on_master",
                    "notify_backup" => "on_backup",
                    "notify_fault" => "on_fault",
                    _ => "on_stop",
                };
                vrrp.hooks.push((hook, directive.args.join(" ")));
            }
            keyword => notes.skip(directive, reason(keyword)),
        }
    }
    vrrp
}

/// `192.0.2.10` → `192.0.2.10/32`; `2001:db8::1/64` as written.
fn virtual_address(text: &str) -> Option<String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (
            address.parse::<IpAddr>().ok()?,
            Some(prefix.parse::<u8>().ok()?),
        ),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let full = if address.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(full);
    (prefix <= full).then(|| format!("{address}/{prefix}"))
}

fn reason(keyword: &str) -> &'static str {
    match keyword {
        "authentication" => "VRRPv3, which SPEC.md's vrrp speaks, has no authentication",
        "track_script" | "track_process" | "track_file" | "track_bfd" => {
            "lbd runs no trackers to adjust VRRP priorities"
        }
        "unicast_src_ip" | "mcast_src_ip" => {
            "SPEC.md's vrrp has no source address key (adverts go from the interface's address)"
        }
        "notify" | "notify_master_rx_lower_pri" | "notify_deleted" => {
            "SPEC.md's vrrp hooks are on_master, on_backup, on_fault and on_stop"
        }
        "smtp_alert" => "lbd sends no mail",
        "virtual_ipaddress_excluded" => {
            "SPEC.md's vrrp has no addresses left out of adverts; list them in virtual_addresses"
        }
        "virtual_routes" | "virtual_rules" => "lbd does not manage routes or rules with VRRP",
        "version" => "SPEC.md's vrrp speaks VRRPv3 only",
        "use_vmac" | "vmac_xmit_base" => "SPEC.md's vrrp has no virtual MAC",
        "lvs_sync_daemon_interface" => "connection sync (sync:) is not in this version of lbd",
        _ => "SPEC.md's vrrp has no key for it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_addresses_get_a_prefix() {
        assert_eq!(
            virtual_address("192.0.2.10").as_deref(),
            Some("192.0.2.10/32")
        );
        assert_eq!(
            virtual_address("192.0.2.10/24").as_deref(),
            Some("192.0.2.10/24")
        );
        assert_eq!(
            virtual_address("2001:db8::10").as_deref(),
            Some("2001:db8::10/128")
        );
        assert_eq!(virtual_address("192.0.2.10/33"), None);
        assert_eq!(virtual_address("eth0"), None);
    }
}
