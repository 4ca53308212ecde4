//! Config tests for `vrrp` and `sync`.

use std::{net::IpAddr, time::Duration};

use super::*;
use crate::config::ha::{InitialState, TrackInterface, VirtualAddress};

const BASE: &str = "instance: a\ninterfaces: [{name: eth0}]\nservices:\n  - {vip: 192.0.2.10, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}\n";

/// A router for VI_1 on eth0 with `body`, vrid 51 unless `body` names one.
fn router(body: &str) -> String {
    let vrid = if body.contains("vrid:") {
        ""
    } else {
        "    vrid: 51\n"
    };
    format!("{BASE}vrrp:\n  - name: VI_1\n    interface: eth0\n{vrid}{body}")
}

#[test]
fn a_router_takes_keepalived_defaults() {
    let config = parse_ok(&router("    virtual_addresses: [192.0.2.10]\n"));
    let router = &config.vrrp[0];
    assert_eq!(router.priority, 100);
    assert_eq!(router.advert_interval, Duration::from_secs(1));
    assert!(router.preempt);
    assert_eq!(router.preempt_delay, Duration::ZERO);
    assert_eq!(router.initial_state, InitialState::Backup);
    assert!(router.unicast_peers.is_empty());
    assert_eq!(
        router.virtual_addresses,
        vec![VirtualAddress {
            address: "192.0.2.10".parse().unwrap(),
            prefix: 32
        }]
    );
    assert_eq!(config.sync, None);
}

#[test]
fn every_key_of_spec_md_parses() {
    let config = parse_ok(&format!(
        "{}sync: {{peer: 192.0.2.3}}\n",
        router(
            "    priority: 150
    advert_interval: 100ms
    preempt: false
    preempt_delay: 5s
    initial_state: master
    unicast_peers: [192.0.2.3]
    virtual_addresses: [192.0.2.10/32, 192.0.2.20/24]
    track_interfaces: [eth1, {name: eth2, weight: -20}]
    track_services: {weight: -50}
    hooks: {on_master: /usr/local/bin/notify master, on_backup: /bin/true, on_fault: /bin/true, on_stop: /bin/true}
"
        )
    ));
    let router = &config.vrrp[0];
    assert_eq!(router.priority, 150);
    assert_eq!(router.advert_interval, Duration::from_millis(100));
    assert!(!router.preempt);
    assert_eq!(router.preempt_delay, Duration::from_secs(5));
    assert_eq!(router.initial_state, InitialState::Master);
    assert_eq!(
        router.unicast_peers,
        vec!["192.0.2.3".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(router.virtual_addresses[1].prefix, 24);
    assert_eq!(
        router.track_interfaces,
        vec![
            TrackInterface {
                name: "eth1".into(),
                weight: 0
            },
            TrackInterface {
                name: "eth2".into(),
                weight: -20
            }
        ]
    );
    assert_eq!(router.track_services, Some(-50));
    assert_eq!(
        router.hooks.on_master,
        Some(vec![
            "/usr/local/bin/notify".to_owned(),
            "master".to_owned()
        ])
    );
    let sync = config.sync.expect("sync");
    assert_eq!(sync.peer, "192.0.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(sync.port, 8849);
}

#[test]
fn bad_routers_name_key_and_line() {
    for (body, place, expected) in [
        (
            "    vrid: 0\n    virtual_addresses: [192.0.2.10]\n",
            "vrrp[0].vrid",
            "vrid 0 is out of range 1..=255",
        ),
        (
            "    priority: 0\n    virtual_addresses: [192.0.2.10]\n",
            "vrrp[0].priority",
            "priority 0 is out of range 1..=255",
        ),
        (
            "    advert_interval: 15ms\n    virtual_addresses: [192.0.2.10]\n",
            "vrrp[0].advert_interval",
            "whole centiseconds",
        ),
        (
            "    advert_interval: 41s\n    virtual_addresses: [192.0.2.10]\n",
            "vrrp[0].advert_interval",
            "10ms to 40.95s",
        ),
        (
            "    virtual_addresses: [192.0.2.10, 2001:db8::10]\n",
            "vrrp[0].virtual_addresses[1]",
            "not of the family",
        ),
        (
            "    virtual_addresses: [192.0.2.10/33]\n",
            "vrrp[0].virtual_addresses[0]",
            "prefix length must be 1 to 32",
        ),
        (
            "    virtual_addresses: []\n",
            "vrrp[0].virtual_addresses",
            "at least one address",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    unicast_peers: [2001:db8::3]\n",
            "vrrp[0].unicast_peers[0]",
            "not of the virtual addresses' family",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    initial_state: primary\n",
            "vrrp[0].initial_state",
            "unknown initial_state \"primary\"",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    hooks: {on_master: notify.sh}\n",
            "vrrp[0].hooks.on_master",
            "not an absolute path",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    track_interfaces: [{name: eth1, weight: 300}]\n",
            "vrrp[0].track_interfaces[0].weight",
            "out of range -254..=254",
        ),
        (
            "    virtual_addresses: [192.0.2.99]\n    track_services: {weight: -10}\n",
            "vrrp[0].track_services",
            "nothing to track",
        ),
        (
            "    priority: 255\n    virtual_addresses: [192.0.2.10]\n    track_interfaces: [{name: eth1, weight: -20}]\n",
            "vrrp[0].track_interfaces[0].weight",
            "address owner",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    advert: 1s\n",
            "vrrp[0].advert",
            "unknown key",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    source_address: 2001:db8::2\n",
            "vrrp[0].source_address",
            "not of the virtual addresses' family",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    source_address: 192.0.2.10\n",
            "vrrp[0].source_address",
            "a virtual address of this router",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    source_address: 224.0.0.18\n",
            "vrrp[0].source_address",
            "cannot be a packet's source",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    source_address: 192.0.2.300\n",
            "vrrp[0].source_address",
            "192.0.2.300",
        ),
        (
            "    virtual_addresses: [2001:db8::10]\n    source_address: 2001:db8::2\n",
            "vrrp[0].source_address",
            "not link-local",
        ),
        (
            "    virtual_addresses: [192.0.2.10]\n    unicast_peers: [192.0.2.3]\n    source_address: 192.0.2.3\n",
            "vrrp[0].source_address",
            "a unicast peer's address",
        ),
        (
            "    virtual_addresses: [2001:db8::10]\n    unicast_peers: [2001:db8::3]\n    source_address: \"::ffff:192.0.2.4\"\n",
            "vrrp[0].source_address",
            "IPv4-mapped",
        ),
    ] {
        let message = error_of(&router(body));
        assert_mentions(&message, &[place, expected]);
    }
    let message = error_of(&router("    priority: 100\n"));
    assert_mentions(
        &message,
        &["vrrp[0].virtual_addresses", "required key is missing"],
    );
}

#[test]
fn routers_must_not_collide() {
    let two = |second: &str| {
        format!(
            "{}  - name: VI_2\n    interface: eth0\n{second}",
            router("    virtual_addresses: [192.0.2.10]\n")
        )
    };
    assert_mentions(
        &error_of(&two("    vrid: 51\n    virtual_addresses: [192.0.2.20]\n")),
        &["vrrp[1].vrid", "vrid 51 on eth0 is used twice for IPv4"],
    );
    // The same vrid for the other family is another router (VRRPv3 keeps them apart).
    parse_ok(&two(
        "    vrid: 51\n    virtual_addresses: [2001:db8::10]\n",
    ));
    assert_mentions(
        &error_of(&two("    vrid: 52\n    virtual_addresses: [192.0.2.10]\n")),
        &[
            "vrrp[1].virtual_addresses[0]",
            "also a virtual address of vrrp[0]",
        ],
    );
    assert_mentions(
        &error_of(&format!(
            "{}  - name: VI_1\n    interface: eth0\n    vrid: 52\n    virtual_addresses: [192.0.2.20]\n",
            router("    virtual_addresses: [192.0.2.10]\n")
        )),
        &["vrrp[1].name", "used twice"],
    );
}

#[test]
fn sync_needs_a_router_and_a_peer() {
    assert_mentions(
        &error_of(&format!("{BASE}sync: {{peer: 192.0.2.3}}\n")),
        &["demo.yaml:5:1:", "sync", "needs a vrrp instance"],
    );
    let with_router = router("    virtual_addresses: [192.0.2.10]\n");
    assert_mentions(
        &error_of(&format!("{with_router}sync: {{port: 9000}}\n")),
        &["sync.peer", "required key is missing"],
    );
    assert_mentions(
        &error_of(&format!(
            "{with_router}sync: {{peer: 192.0.2.3, port: 0}}\n"
        )),
        &["sync.port", "must not be 0"],
    );
    assert_mentions(
        &error_of(&format!("{with_router}sync: {{peer: 224.0.0.18}}\n")),
        &["sync.peer", "multicast"],
    );
}

#[test]
fn the_advert_source_address_is_taken_and_no_router_may_carry_it() {
    let config = parse_ok(&router(
        "    virtual_addresses: [192.0.2.10]\n    source_address: 192.0.2.4\n",
    ));
    assert_eq!(
        config.vrrp[0].source_address,
        Some("192.0.2.4".parse().unwrap())
    );
    // IPv6: link-local for multicast, global for unicast.
    let config = parse_ok(&router(
        "    virtual_addresses: [2001:db8::10]\n    source_address: fe80::2\n",
    ));
    assert_eq!(
        config.vrrp[0].source_address,
        Some("fe80::2".parse().unwrap())
    );
    parse_ok(&router(
        "    virtual_addresses: [2001:db8::10]\n    unicast_peers: [2001:db8::3]\n    source_address: 2001:db8::2\n",
    ));
    // Another router's virtual address, whichever comes first.
    let two = |first: &str, second: &str| {
        format!(
            "{BASE}vrrp:\n  - name: VI_1\n    interface: eth0\n    vrid: 51\n{first}  - name: VI_2\n    interface: eth0\n    vrid: 52\n{second}"
        )
    };
    let message = error_of(&two(
        "    virtual_addresses: [192.0.2.10]\n",
        "    virtual_addresses: [192.0.2.20]\n    source_address: 192.0.2.10\n",
    ));
    assert_mentions(
        &message,
        &["vrrp[1].source_address", "virtual address of vrrp[0]"],
    );
    let message = error_of(&two(
        "    virtual_addresses: [192.0.2.10]\n    source_address: 192.0.2.20\n",
        "    virtual_addresses: [192.0.2.20]\n",
    ));
    assert_mentions(
        &message,
        &["vrrp[1].virtual_addresses[0]", "vrrp[0]'s source_address"],
    );
}

#[test]
fn a_sync_group_needs_two_routers_and_a_valid_name() {
    let two = |first: &str, second: &str| {
        format!(
            "{BASE}vrrp:\n  - name: VI_1\n    interface: eth0\n    vrid: 51\n    virtual_addresses: [192.0.2.10]\n{first}  - name: VI_2\n    interface: eth1\n    vrid: 52\n    virtual_addresses: [198.51.100.1]\n{second}"
        )
    };
    let config = parse_ok(&two("    sync_group: VG\n", "    sync_group: VG\n"));
    assert_eq!(config.vrrp[0].sync_group.as_deref(), Some("VG"));
    assert_eq!(config.vrrp[1].sync_group.as_deref(), Some("VG"));
    assert_eq!(parse_ok(&two("", "")).vrrp[0].sync_group, None);
    let message = error_of(&two("    sync_group: VG\n", "    sync_group: GV\n"));
    assert_mentions(
        &message,
        &[
            "vrrp[0].sync_group",
            "VI_1 is the only router of sync group \"VG\"",
            "misspelt",
        ],
    );
    let message = error_of(&two("    sync_group: V G\n", "    sync_group: V G\n"));
    assert_mentions(&message, &["vrrp[0].sync_group", "invalid group name"]);
}

#[test]
fn a_health_check_may_not_come_from_a_virtual_address() {
    let text = format!(
        "{}vrrp:\n  - {{name: VI_1, interface: eth0, vrid: 51, virtual_addresses: [192.0.2.10, 192.0.2.50]}}\n",
        BASE.replace(
            "reals: [{address: 192.0.2.11}]}",
            "health_check: {type: tcp, source: 192.0.2.50}, reals: [{address: 192.0.2.11}]}"
        )
    );
    let message = error_of(&text);
    assert_mentions(
        &message,
        &[
            "services[0].health_check.source",
            "virtual address of vrrp[0]",
        ],
    );
}
