//! What keepalived accepts and lbd bounds (reals per schedule, timeouts, map sizes) is
//! converted within lbd's bounds and listed: the import never ends in YAML lbd refuses.

use std::{fmt::Write as _, time::Duration};

use super::*;

/// A virtual server with `count` reals (10.0.x.y), each with `weight`.
fn service(vip: &str, scheduler: &str, count: usize, weight: u32) -> String {
    let mut text = format!(
        "virtual_server {vip} 80 {{\n    protocol TCP\n    lvs_method DR\n    lvs_sched {scheduler}\n"
    );
    for index in 0..count {
        let _ = write!(
            text,
            "    real_server 10.{}.{}.{} 80 {{\n        weight {weight}\n    }}\n",
            index / 65536,
            index / 256 % 256,
            index % 256
        );
    }
    text.push_str("}\n");
    text
}

#[test]
fn reals_beyond_what_a_schedule_holds_are_drained_and_listed() {
    let mut text = service("192.0.2.10", "wlc", 300, 1);
    text.push_str(&service("192.0.2.20", "rr", 1100, 2));
    // Drained reals do not count.
    text.push_str(&service("192.0.2.30", "lc", 300, 0));
    let converted = convert(&text);
    let weighted: Vec<usize> = converted
        .config
        .services
        .iter()
        .map(|service| service.reals.iter().filter(|real| real.weight > 0).count())
        .collect();
    assert_eq!(weighted, [256, 1024, 0]);
    assert_eq!(converted.listed.len(), (300 - 256) + (1100 - 1024));
    let first = &converted.unconverted[0];
    assert_eq!(first.directive, "real_server");
    assert!(
        first
            .reason
            .starts_with("lbd's wlc compares at most 256 reals"),
        "{first}"
    );
}

#[test]
fn each_lvs_timeout_is_read_alone_and_one_beyond_31_days_left_out() {
    let converted = convert(
        "global_defs {\n    lvs_timeouts tcp 900 sctp 5 udp 30\n    lvs_timeouts tcpfin 2678401\n}\n",
    );
    let timeouts = &converted.config.timeouts;
    assert_eq!(
        (timeouts.tcp, timeouts.udp),
        (Duration::from_secs(900), Duration::from_secs(30))
    );
    assert_eq!(timeouts.tcp_fin, crate::config::Timeouts::default().tcp_fin);
    assert_eq!(
        lines(&converted),
        [
            (2, "lvs_timeouts"),
            (2, "lvs_timeouts"),
            (3, "lvs_timeouts")
        ]
    );
}

#[test]
fn map_sizes_are_raised_where_the_services_need_it() {
    // Each mh service takes two Maglev tables of 65537 slots: 64 fill lbd's default.
    let text: String = (0..64)
        .map(|index| service(&format!("192.0.2.{}", index + 1), "mh", 1, 1))
        .collect();
    let converted = convert(&text);
    assert_eq!(converted.config.services.len(), 64);
    assert_eq!(converted.config.limits.table_slots, 64 * 2 * 65537 + 1);
    assert!(
        converted
            .yaml
            .contains("\nlimits:\n  table_slots: 8388737\n")
    );
    assert_eq!(converted.listed, []);
}
