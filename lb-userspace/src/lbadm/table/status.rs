//! `lbadm status`: the daemon, where its program is attached and how, how full its maps are,
//! and every real with its health check's last result.

use std::{fmt::Write as _, time::SystemTime};

use crate::{
    admin::{CheckStatus, Status},
    config::socket_text,
};

pub fn status(status: &Status) -> String {
    status_at(status, SystemTime::now())
}

/// `status` as seen at `now` (check ages are relative to it).
pub fn status_at(status: &Status, now: SystemTime) -> String {
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let mut out = format!(
        "lbd {} instance {}: {} services, {} reals, flow table size {}\n",
        status.version, status.instance, status.services, status.reals, status.flow_table_size
    );
    out.push_str("\nInterface        XDP mode   Requested  Program  MTU\n");
    for interface in &status.interfaces {
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:<10} {:<8} {}",
            interface.name,
            interface.attached_mode.as_deref().unwrap_or("none"),
            interface.requested_mode,
            interface
                .program_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            interface.mtu
        );
    }
    if !status.maps.is_empty() {
        out.push_str("\nMap              Used       Capacity   Fill\n");
        for map in &status.maps {
            let fill = if map.capacity == 0 {
                0.0
            } else {
                map.used as f64 * 100.0 / map.capacity as f64
            };
            let _ = writeln!(
                out,
                "{:<16} {:<10} {:<10} {fill:.1}%",
                map.name, map.used, map.capacity
            );
        }
    }
    if !status.reals_health.is_empty() {
        out.push_str(
            "\nService                   Real                          Weight State    Check\n",
        );
        for real in &status.reals_health {
            let mut name = socket_text(real.address, real.port);
            if real.sorry_server {
                name.push_str(" (sorry)");
            }
            let state = match (&real.check, real.available) {
                (Some(check), _) if !check.up => "down",
                (_, true) => "up",
                (_, false) => "unusable",
            };
            let _ = writeln!(
                out,
                "{:<25} {:<29} {:<6} {:<8} {}",
                real.service,
                name,
                real.weight,
                state,
                check_text(real.check.as_ref(), now_s, &real.neighbour)
            );
        }
    }
    if !status.vrrp.is_empty() {
        out.push_str(
            "\nVRRP             Interface        VRID State   Prio  Master                    Last transition\n",
        );
        for router in &status.vrrp {
            let priority = if router.priority == router.configured_priority {
                router.priority.to_string()
            } else {
                format!("{}/{}", router.priority, router.configured_priority)
            };
            let master = match router.master {
                Some(master) if Some(master) == router.address => format!("{master} (this)"),
                Some(master) => master.to_string(),
                None => "-".to_owned(),
            };
            let transition = match (&router.last_transition, router.last_transition_at) {
                (Some(transition), Some(at)) => format!(
                    "{transition} {}s ago: {}",
                    now_s.saturating_sub(at),
                    router.last_reason.as_deref().unwrap_or("")
                ),
                _ => router.last_reason.clone().unwrap_or_else(|| "-".to_owned()),
            };
            let _ = writeln!(
                out,
                "{:<16} {:<16} {:<4} {:<7} {:<5} {:<25} {transition}",
                router.name, router.interface, router.vrid, router.state, priority, master
            );
            let ignored: Vec<String> = router
                .adverts_ignored
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect();
            let _ = writeln!(
                out,
                "  addresses {}; adverts every {}0 ms: {} sent, {} received, ignored: {}{}",
                router.virtual_addresses.join(" "),
                router.advert_interval_cs,
                router.adverts_sent,
                router.adverts_received,
                if ignored.is_empty() {
                    "none".to_owned()
                } else {
                    ignored.join(", ")
                },
                router
                    .hold
                    .as_ref()
                    .map(|hold| format!("; not preempting: {hold}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(sync) = &status.sync {
        let _ = writeln!(
            out,
            "\nSync with {}: {}, copy {}; {} flows in {} batches sent, {} flows in {} batches \
             received, {} batches lost, {} pending, lag {} ms{}",
            sync.peer,
            sync.role,
            if sync.complete {
                "complete"
            } else {
                "incomplete"
            },
            sync.flows_sent,
            sync.batches_sent,
            sync.flows_received,
            sync.batches_received,
            sync.batches_lost,
            sync.pending,
            sync.lag_ms,
            sync.last_error
                .as_ref()
                .map(|error| format!("; last error: {error}"))
                .unwrap_or_default()
        );
    }
    out
}

/// `ok 3s ago: connected (1 ms), 120 checks, 2 failed`; `not checked`.
fn check_text(check: Option<&CheckStatus>, now_s: u64, neighbour: &str) -> String {
    let Some(check) = check else {
        return format!("not checked; neighbour {neighbour}");
    };
    let last = match &check.last {
        None => "no check finished yet".to_owned(),
        Some(last) => format!(
            "{} {}s ago: {} ({} ms)",
            if last.ok { "ok" } else { "FAILED" },
            now_s.saturating_sub(last.at_unix_s),
            last.detail,
            last.latency_ms
        ),
    };
    format!(
        "{last}; {} checks, {} failed; neighbour {neighbour}",
        check.checks, check.failures
    )
}
