//! `lbadm status`: the daemon, where its program is attached and how, how full its maps are,
//! and every real with its health check's last result.

use std::{fmt::Write as _, time::SystemTime};

use crate::{
    admin::{BgpStatus, CheckStatus, Status},
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
                "  {}addresses {}; adverts every {}0 ms: {} sent, {} received, ignored: {}{}",
                router
                    .sync_group
                    .as_ref()
                    .map(|group| format!("sync group {group}; "))
                    .unwrap_or_default(),
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
             received ({} not matched here, {} not held: table full, {} without their NAT \
             reply entry), {} batches lost, {} pending, lag {} ms{}",
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
            sync.flows_unmatched,
            sync.flows_not_held,
            sync.flows_without_reply,
            sync.batches_lost,
            sync.pending,
            sync.lag_ms,
            sync.last_error
                .as_ref()
                .map(|error| format!("; last error: {error}"))
                .unwrap_or_default()
        );
    }
    if let Some(bgp) = &status.bgp {
        bgp_text(&mut out, bgp, now_s);
    }
    out
}

/// The BGP block: the node's state, BIRD's, each session's and each VIP's route.
fn bgp_text(out: &mut String, bgp: &BgpStatus, now_s: u64) {
    let _ = writeln!(
        out,
        "\nBGP AS {}, router id {}: {}",
        bgp.local_as,
        bgp.router_id,
        if bgp.drained {
            "DRAINED (lbadm undrain-node announces again)"
        } else {
            "in service"
        }
    );
    let bird = if bgp.bird_up_to_date {
        match bgp.configured_at {
            Some(at) => format!("took {} {}s ago", bgp.bird_config, now_s.saturating_sub(at)),
            None => format!("took {}", bgp.bird_config),
        }
    } else {
        format!(
            "NOT UP TO DATE with {}: {}",
            bgp.bird_config,
            bgp.bird_error.as_deref().unwrap_or("not asked yet")
        )
    };
    let _ = writeln!(
        out,
        "  BIRD {}: {bird}; {} configure failures",
        bgp.bird_socket, bgp.configure_failures
    );
    let _ = writeln!(
        out,
        "  {:<40} {:<10} {:<12} Info",
        "Neighbour", "AS", "State"
    );
    for neighbor in &bgp.neighbors {
        let row = format!(
            "  {:<40} {:<10} {:<12} {}",
            neighbor.address, neighbor.remote_as, neighbor.state, neighbor.info
        );
        // A row without info would end in the state column's padding.
        let _ = writeln!(out, "{}", row.trim_end());
    }
    let _ = writeln!(out, "  {:<40} Route", "VIP");
    for vip in &bgp.vips {
        let route = match &vip.withheld {
            None => "announced".to_owned(),
            Some(why) => format!("withdrawn: {why}"),
        };
        let _ = writeln!(out, "  {:<40} {route}", vip.prefix);
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admin::{BgpNeighborStatus, BgpVipStatus, RouterStatus, SyncStatus};

    fn status() -> Status {
        Status {
            instance: "lb1".into(),
            version: "0.1.0".into(),
            flow_table_size: 1000,
            services: 1,
            reals: 0,
            interfaces: Vec::new(),
            maps: Vec::new(),
            reals_health: Vec::new(),
            vrrp: vec![
                RouterStatus {
                    name: "VI_1".into(),
                    interface: "eth0".into(),
                    vrid: 51,
                    state: "MASTER".into(),
                    priority: 150,
                    configured_priority: 150,
                    advert_interval_cs: 10,
                    master: Some("192.0.2.2".parse().unwrap()),
                    address: Some("192.0.2.2".parse().unwrap()),
                    virtual_addresses: vec!["192.0.2.100/32".into()],
                    last_transition_at: Some(1_000),
                    last_transition: Some("BACKUP -> MASTER".into()),
                    last_reason: Some("no advert for 0.361s (master down interval)".into()),
                    transitions: 2,
                    adverts_sent: 40,
                    adverts_not_sent: 0,
                    adverts_received: 3,
                    adverts_ignored: vec![("ttl".into(), 2)],
                    hold: None,
                    sync_group: Some("VG_1".into()),
                },
                RouterStatus {
                    name: "VI_6".into(),
                    interface: "eth0".into(),
                    vrid: 52,
                    state: "BACKUP".into(),
                    priority: 90,
                    configured_priority: 150,
                    advert_interval_cs: 100,
                    master: Some("fe80::3".parse().unwrap()),
                    address: Some("fe80::2".parse().unwrap()),
                    virtual_addresses: vec!["2001:db8::100/128".into()],
                    hold: Some("waiting for a full copy of the master's flows".into()),
                    ..RouterStatus::default()
                },
            ],
            sync: Some(SyncStatus {
                peer: "192.0.2.3:8849".into(),
                role: "sending to 192.0.2.3".into(),
                complete: true,
                flows_sent: 200,
                batches_sent: 3,
                lag_ms: 501,
                ..SyncStatus::default()
            }),
            bgp: None,
        }
    }

    #[test]
    fn routers_and_sync_read_as_a_table() {
        let text = status_at(
            &status(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_030),
        );
        let expected = "
VRRP             Interface        VRID State   Prio  Master                    Last transition
VI_1             eth0             51   MASTER  150   192.0.2.2 (this)          BACKUP -> MASTER 30s ago: no advert for 0.361s (master down interval)
  sync group VG_1; addresses 192.0.2.100/32; adverts every 100 ms: 40 sent, 3 received, ignored: ttl 2
VI_6             eth0             52   BACKUP  90/150 fe80::3                   -
  addresses 2001:db8::100/128; adverts every 1000 ms: 0 sent, 0 received, ignored: none; not preempting: waiting for a full copy of the master's flows

Sync with 192.0.2.3:8849: sending to 192.0.2.3, copy complete; 200 flows in 3 batches sent, 0 flows in 0 batches received (0 not matched here, 0 not held: table full, 0 without their NAT reply entry), 0 batches lost, 0 pending, lag 501 ms
";
        assert!(text.ends_with(expected), "got:\n{text}");
    }

    #[test]
    fn bgp_reads_as_sessions_and_routes() {
        let mut status = status();
        status.vrrp.clear();
        status.sync = None;
        status.bgp = Some(BgpStatus {
            local_as: 64512,
            router_id: "198.51.100.11".into(),
            drained: false,
            bird_socket: "/run/bird/bird.ctl".into(),
            bird_config: "/run/lb/lb1.bird.conf".into(),
            bird_up_to_date: true,
            bird_error: None,
            configured_at: Some(1_000),
            configure_failures: 1,
            vips: vec![
                BgpVipStatus {
                    prefix: "192.0.2.10/32".into(),
                    announced: true,
                    withheld: None,
                },
                BgpVipStatus {
                    prefix: "192.0.2.20/32".into(),
                    announced: false,
                    withheld: Some("no healthy real".into()),
                },
            ],
            neighbors: vec![
                BgpNeighborStatus {
                    address: "198.51.100.1".into(),
                    remote_as: 64500,
                    protocol: "lbd_peer1".into(),
                    state: "Established".into(),
                    info: String::new(),
                },
                BgpNeighborStatus {
                    address: "198.51.100.2".into(),
                    remote_as: 64500,
                    protocol: "lbd_peer2".into(),
                    state: "Active".into(),
                    info: "Socket: Connection refused".into(),
                },
            ],
        });
        let text = status_at(&status, SystemTime::UNIX_EPOCH + Duration::from_secs(1_030));
        let expected = "
BGP AS 64512, router id 198.51.100.11: in service
  BIRD /run/bird/bird.ctl: took /run/lb/lb1.bird.conf 30s ago; 1 configure failures
  Neighbour                                AS         State        Info
  198.51.100.1                             64500      Established
  198.51.100.2                             64500      Active       Socket: Connection refused
  VIP                                      Route
  192.0.2.10/32                            announced
  192.0.2.20/32                            withdrawn: no healthy real
";
        assert!(text.ends_with(expected), "got:\n{text}");

        let bgp = status.bgp.as_mut().unwrap();
        bgp.drained = true;
        bgp.bird_up_to_date = false;
        bgp.bird_error =
            Some("cannot reach BIRD at /run/bird/bird.ctl: No such file or directory".into());
        let text = status_at(&status, SystemTime::UNIX_EPOCH + Duration::from_secs(1_030));
        assert!(
            text.contains("DRAINED (lbadm undrain-node announces again)"),
            "{text}"
        );
        assert!(
            text.contains("NOT UP TO DATE with /run/lb/lb1.bird.conf: cannot reach BIRD"),
            "{text}"
        );
    }
}
