//! Config tests for the keys that shape scheduling and connection tracking: `timeouts`,
//! `persistence` (with its netmask) and `mh_table_size`.

use super::*;

#[test]
fn timeouts_are_whole_seconds_with_ipvs_defaults() {
    let base = "instance: a\ninterfaces: [{name: eth0}]\n";
    let config = parse_ok(&format!("{base}timeouts: {{tcp: 2m, udp: 30s}}\n"));
    assert_eq!(
        config.timeouts,
        Timeouts {
            tcp: std::time::Duration::from_secs(120),
            tcp_fin: std::time::Duration::from_secs(120),
            udp: std::time::Duration::from_secs(30),
        }
    );
    let settings = config.timeouts.settings();
    assert_eq!(
        settings.timeouts_s[lb_common::conntrack::STATE_ESTABLISHED as usize],
        120
    );
    assert_eq!(
        settings.timeouts_s[lb_common::conntrack::STATE_UDP as usize],
        30
    );
    assert_eq!(
        settings.timeouts_s[lb_common::conntrack::STATE_SYN_RECV as usize],
        60
    );
    assert_eq!(parse_ok(base).timeouts, Timeouts::default());
    assert_eq!(Timeouts::default().tcp, std::time::Duration::from_secs(900));

    for (value, expected) in [
        ("{tcp: 500ms}", "timeouts.tcp: 500ms is out of range"),
        (
            "{tcp_fin: 1500ms}",
            "timeouts.tcp_fin: 1500ms: flow timeouts are whole seconds",
        ),
        ("{udp: 5}", "timeouts.udp"),
        (
            "{udp: 5x}",
            "timeouts.udp: invalid duration \"5x\": unknown unit",
        ),
        ("{tcp: 900s, tcpfin: 2s}", "tcpfin"),
    ] {
        let message = error_of(&format!("{base}timeouts: {value}\n"));
        assert_mentions(&message, &["demo.yaml:3:", expected]);
    }
}

#[test]
fn persistence_takes_a_duration_and_a_netmask() {
    let config = parse_ok(&minimal_with_service("    persistence: 300s\n", ""));
    assert_eq!(
        config.services[0].persistence,
        Some(PersistenceConfig {
            timeout: std::time::Duration::from_secs(300),
            prefix: 32
        })
    );
    for (netmask, prefix) in [("24", 24), ("255.255.0.0", 16), ("0", 0)] {
        let config = parse_ok(&minimal_with_service(
            &format!("    persistence: 5m\n    persistence_netmask: {netmask}\n"),
            "",
        ));
        assert_eq!(
            config.services[0].persistence.unwrap().prefix,
            prefix,
            "{netmask}"
        );
    }
    for (extra, expected) in [
        (
            "    persistence: 300\n",
            "services[0].persistence: invalid duration",
        ),
        ("    persistence: 500ms\n", "whole seconds, at least 1s"),
        (
            "    persistence: 1m\n    persistence_netmask: 33\n",
            "prefix length 33 is out of range 0..=32",
        ),
        (
            "    persistence: 1m\n    persistence_netmask: 255.0.255.0\n",
            "255.0.255.0 is not a netmask",
        ),
        (
            "    persistence_netmask: 24\n",
            "services[0].persistence_netmask: only means something with `persistence`",
        ),
    ] {
        assert_mentions(&error_of(&minimal_with_service(extra, "")), &[expected]);
    }
}

#[test]
fn maglev_table_sizes_are_primes_in_range_and_only_for_mh() {
    let config = parse_ok(&minimal_with_service("    scheduler: mh\n", ""));
    assert_eq!(config.services[0].mh_table_size, 65537);
    let config = parse_ok(&minimal_with_service(
        "    scheduler: mh\n    mh_table_size: 251\n",
        "",
    ));
    assert_eq!(config.services[0].mh_table_size, 251);
    for (extra, expected) in [
        (
            "    scheduler: mh\n    mh_table_size: 1000\n",
            "1000 is not a prime between 251 and 131071",
        ),
        (
            "    scheduler: mh\n    mh_table_size: 131101\n",
            "131101 is not a prime",
        ),
        (
            "    mh_table_size: 251\n",
            "only the mh scheduler has a table size",
        ),
    ] {
        assert_mentions(&error_of(&minimal_with_service(extra, "")), &[expected]);
    }
}
