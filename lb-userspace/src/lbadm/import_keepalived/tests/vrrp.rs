//! `vrrp_instance` → `vrrp:` and the LVS sync daemon → `sync:`: what converts with
//! keepalived's meaning, and what is listed (an instance lbd would refuse among it).

use std::{net::IpAddr, time::Duration};

use super::*;
use crate::config::ha::{Hooks, SyncConfig, TrackInterface, VrrpInstanceConfig};

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn track(name: &str, weight: i32) -> TrackInterface {
    TrackInterface {
        name: name.into(),
        weight,
    }
}

fn command(words: &[&str]) -> Option<Vec<String>> {
    Some(words.iter().map(|word| word.to_string()).collect())
}

/// The converted instance named `name`.
#[track_caller]
fn instance<'c>(converted: &'c Converted, name: &str) -> &'c VrrpInstanceConfig {
    converted
        .config
        .vrrp
        .iter()
        .find(|instance| instance.name == name)
        .unwrap_or_else(|| panic!("no vrrp instance {name} in\n{}", converted.yaml))
}

#[test]
fn track_weights_keep_keepalived_priorities_up_and_down() {
    let converted = convert(
        "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.1
    }
    track_interface {
        eth1 weight -20
        eth2 weight 10
        eth3
        eth4 weight 300
        eth5 weight 5 reverse
        eth6 speed 10
        eth1
        eth7 weight -254
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 2
    priority 250
    virtual_ipaddress {
        192.0.2.2
    }
    track_interface {
        eth1 weight 10
        eth2 weight -10
    }
}
vrrp_instance VI_OWNER {
    interface eth0
    virtual_router_id 3
    priority 255
    virtual_ipaddress {
        192.0.2.3
    }
    track_interface {
        eth1 weight 10
    }
}
",
    );
    // keepalived: 110 with every link up, 100 with eth2 down; 90 with eth1 down.
    let first = instance(&converted, "VI_1");
    assert_eq!(first.priority, 110);
    assert_eq!(
        first.track_interfaces,
        [
            track("eth1", -20),
            track("eth2", -10),
            track("eth3", 0),
            track("eth4", 0),
            track("eth7", -253)
        ]
    );
    assert!(
        converted.yaml.contains(
            "  # priority 110: keepalived's 100 plus the weights it adds while a link is up \
             (eth2 10);\n  # lbd moves the priority while a link is down, so those weights are \
             negated\n"
        ),
        "{}",
        converted.yaml
    );
    assert!(
        converted.yaml.contains(
            "track_interfaces: [{name: eth1, weight: -20}, {name: eth2, weight: \
                       -10}, eth3, eth4, {name: eth7, weight: -253}]\n"
        ),
        "{}",
        converted.yaml
    );
    assert!(reason(&converted, 11, "eth4").contains("keepalived tracks eth4 with weight 0"));
    assert!(reason(&converted, 12, "eth5").starts_with("reverse: "));
    assert!(reason(&converted, 13, "eth6").contains("unknown option \"speed\""));
    assert!(reason(&converted, 14, "eth1").contains("tracked twice"));

    // 250 + 10 is beyond 254: the positive weight is listed, the negative one kept.
    let second = instance(&converted, "VI_2");
    assert_eq!(
        (second.priority, second.track_interfaces.as_slice()),
        (250, [track("eth2", -10)].as_slice())
    );
    assert!(reason(&converted, 26, "eth1").contains("would start at 250 plus the positive"));

    // An owner's priority never moves: a weight there does nothing (and lbd refuses it).
    let owner = instance(&converted, "VI_OWNER");
    assert_eq!(
        (owner.priority, owner.track_interfaces.as_slice()),
        (255, [].as_slice())
    );
    assert!(reason(&converted, 38, "eth1").contains("never applies"));
    assert_eq!(
        lines(&converted),
        [
            (11, "eth4"),
            (12, "eth5"),
            (13, "eth6"),
            (14, "eth1"),
            (26, "eth1"),
            (38, "eth1")
        ]
    );
}

#[test]
fn advert_int_converts_when_it_is_whole_centiseconds_else_is_listed() {
    let mut text = String::new();
    for (vrid, interval) in ["0.1", "0.05", "2", "0.055", "41", "fast"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "vrrp_instance VI_{vrid} {{\n    interface eth0\n    virtual_router_id {}\n    \
             advert_int {interval}\n    virtual_ipaddress {{\n        192.0.2.{}\n    }}\n}}\n",
            vrid + 1,
            vrid + 1
        ));
    }
    let converted = convert(&text);
    let intervals: Vec<Duration> = converted
        .config
        .vrrp
        .iter()
        .map(|instance| instance.advert_interval)
        .collect();
    let millis = Duration::from_millis;
    assert_eq!(
        intervals,
        [
            millis(100),
            millis(50),
            millis(2000),
            millis(1000),
            millis(1000),
            millis(1000)
        ],
        "the listed ones get the default"
    );
    assert!(converted.yaml.contains("    advert_interval: 50ms\n"));
    // Each instance is 8 lines; advert_int is the 4th.
    assert_eq!(
        reason(&converted, 28, "advert_int"),
        "0.055s falls between two centiseconds, VRRPv3's unit; keepalived rounds it, lbd takes \
         it exact: write 0.05 or 0.06; the instance gets the default, 1s, as in keepalived"
    );
    assert!(reason(&converted, 36, "advert_int").contains("outside VRRPv3's 0.01s to 40.95s"));
    assert!(reason(&converted, 44, "advert_int").contains("not a number of seconds"));
    assert_eq!(
        lines(&converted),
        [(28, "advert_int"), (36, "advert_int"), (44, "advert_int")]
    );
}

#[test]
fn notify_becomes_each_hook_that_no_notify_state_sets() {
    let converted = convert(
        "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.1
    }
    notify \"/usr/local/bin/notify.sh\"
    notify_master \"/usr/local/bin/master.sh  now\" keepalived_script
    notify_master /usr/local/bin/other.sh
    notify_backup notify-backup.sh
    notify_fault \"/usr/local/bin/fault.sh 'two words'\"
}
",
    );
    let hooks = &instance(&converted, "VI_1").hooks;
    assert_eq!(
        *hooks,
        Hooks {
            on_master: command(&["/usr/local/bin/master.sh", "now"]),
            on_backup: command(&["/usr/local/bin/notify.sh"]),
            on_fault: command(&["/usr/local/bin/notify.sh"]),
            on_stop: command(&["/usr/local/bin/notify.sh"]),
        },
        "notify fills the hooks whose notify_STATE is not converted"
    );
    assert!(
        converted
            .yaml
            .contains("# lbd runs each hook with INSTANCE, the instance's name, the new state")
    );
    assert_eq!(
        lines(&converted),
        [
            (7, "notify"),
            (8, "notify_master"),
            (9, "notify_master"),
            (10, "notify_backup"),
            (11, "notify_fault")
        ]
    );
    assert!(reason(&converted, 7, "notify").starts_with(
        "keepalived runs notify as well as notify_master on that state; lbd runs one hook"
    ));
    assert!(
        reason(&converted, 8, "notify_master")
            .starts_with("keepalived_script: lbd runs hooks as the user it runs as")
    );
    assert!(reason(&converted, 9, "notify_master").contains("set twice"));
    assert!(
        reason(&converted, 10, "notify_backup")
            .starts_with("\"notify-backup.sh\" is not an absolute path")
    );
    assert!(reason(&converted, 11, "notify_fault").contains("quotes and backslashes"));
}

#[test]
fn an_instance_carries_the_family_of_its_first_address() {
    let converted = convert(
        "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    unicast_peer {
        2001:db8::2
        192.0.2.2
        2001:db8::2
    }
    virtual_ipaddress {
        192.0.2.10
        2001:db8::10/64
        fe80::1
    }
}
",
    );
    let only = instance(&converted, "VI_1");
    assert_eq!(only.unicast_peers, [address("2001:db8::2")]);
    assert_eq!(only.virtual_addresses[0].to_string(), "2001:db8::10/64");
    assert_eq!(only.virtual_addresses.len(), 1);
    assert_eq!(
        lines(&converted),
        [
            (6, "192.0.2.2"),
            (7, "2001:db8::2"),
            (10, "192.0.2.10"),
            (12, "fe80::1")
        ]
    );
    assert!(reason(&converted, 10, "192.0.2.10").contains(
        "is not of the instance's family (IPv6): a VRRP router carries one family, and \
         keepalived ignores it too"
    ));
    assert!(reason(&converted, 12, "fe80::1").contains("link-local"));
}

#[test]
fn an_instance_lbd_would_refuse_is_listed_whole() {
    let converted = convert(
        "vrrp_instance NO_VRID {
    interface eth0
    virtual_ipaddress {
        192.0.2.1
    }
}
vrrp_instance NOTHING {
}
vrrp_instance VI-1 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.1
        192.0.2.2
    }
}
vrrp_instance VI.1 {
    interface eth1
    virtual_router_id 2
    virtual_ipaddress {
        192.0.2.3
    }
}
vrrp_instance SAME_ROUTER {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.4
    }
}
vrrp_instance SHARED {
    interface eth0
    virtual_router_id 3
    virtual_ipaddress {
        192.0.2.1
        192.0.2.5
    }
}
vrrp_instance ONLY_SHARED {
    interface eth0
    virtual_router_id 4
    virtual_ipaddress {
        192.0.2.2
    }
}
vrrp_instance VI_6 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        2001:db8::1
    }
}
",
    );
    let names: Vec<&str> = converted
        .config
        .vrrp
        .iter()
        .map(|instance| instance.name.as_str())
        .collect();
    assert_eq!(names, ["VI-1", "SHARED", "VI_6"], "VI_6 is IPv6");
    assert_eq!(
        instance(&converted, "SHARED").virtual_addresses[0].to_string(),
        "192.0.2.5/32"
    );
    assert_eq!(
        lines(&converted),
        [
            (1, "vrrp_instance"),
            (7, "vrrp_instance"),
            (17, "vrrp_instance"),
            (24, "vrrp_instance"),
            (35, "192.0.2.1"),
            (39, "vrrp_instance"),
            (43, "192.0.2.2")
        ]
    );
    assert!(
        reason(&converted, 1, "vrrp_instance").ends_with("this instance has no virtual_router_id")
    );
    assert!(
        reason(&converted, 7, "vrrp_instance")
            .ends_with("this instance has no interface, no virtual_router_id, no virtual address")
    );
    assert_eq!(
        reason(&converted, 17, "vrrp_instance"),
        "its name, as lbd writes it, is VI-1, as is the instance's at keepalived.conf:9"
    );
    assert_eq!(
        reason(&converted, 24, "vrrp_instance"),
        "vrid 1 on eth0 for IPv4 is also the instance's at keepalived.conf:9; lbd has one \
         router per interface, vrid and family"
    );
    assert!(
        reason(&converted, 35, "192.0.2.1")
            .starts_with("192.0.2.1 is also a virtual address of vrrp_instance VI-1")
    );
    assert!(reason(&converted, 39, "vrrp_instance").contains("each of its virtual addresses"));
}

#[test]
fn the_sync_daemon_syncs_with_the_one_unicast_peer() {
    let converted = convert(
        "global_defs {
    lvs_sync_daemon eth1 VI_1 id 5
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    unicast_peer {
        10.0.0.3
    }
    virtual_ipaddress {
        192.0.2.1
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 2
    lvs_sync_daemon_interface eth1
    virtual_ipaddress {
        192.0.2.2
    }
}
",
    );
    assert_eq!(
        converted.config.sync,
        Some(SyncConfig {
            peer: address("10.0.0.3"),
            port: 8849
        })
    );
    assert!(
        converted.yaml.contains(
            "# sync: for keepalived's lvs_sync_daemon at keepalived.conf:2 (IPVS's sync \
             daemon);\n# lbd syncs connections with the VRRP peer, 10.0.0.3 (vrrp_instance \
             VI_1's unicast\n# peer), which must run lbd too\nsync:\n  peer: 10.0.0.3\n"
        ),
        "{}",
        converted.yaml
    );
    assert_eq!(
        lines(&converted),
        [(2, "lvs_sync_daemon"), (17, "lvs_sync_daemon_interface")]
    );
    assert!(reason(&converted, 2, "lvs_sync_daemon").starts_with("id 5: settings of IPVS's"));
    assert!(reason(&converted, 17, "lvs_sync_daemon_interface").contains("one sync daemon"));

    // Multicast: no peer address to sync with.
    let converted = convert(
        "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    lvs_sync_daemon_interface eth1
    virtual_ipaddress {
        192.0.2.1
    }
}
",
    );
    assert_eq!(converted.config.sync, None);
    assert_eq!(
        reason(&converted, 4, "lvs_sync_daemon_interface"),
        "lbd syncs with the VRRP peer's address, and vrrp_instance VI_1 multicasts: add \
         `sync: {peer: ADDR}` with the peer's address by hand"
    );
}

#[test]
fn what_lbd_has_no_key_for_is_listed_with_why() {
    let converted = convert(
        "global_defs {
    vrrp_version 3
    vrrp_garp_master_delay 1
}
vrrp_sync_group G {
    group {
        VI_1
    }
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    version 3
    unicast_src_ip 192.0.2.250
    authentication {
        auth_type PASS
    }
    virtual_ipaddress {
        192.0.2.1
    }
}
",
    );
    assert_eq!(converted.config.vrrp.len(), 1);
    assert_eq!(
        lines(&converted),
        [
            (3, "vrrp_garp_master_delay"),
            (5, "vrrp_sync_group"),
            (15, "authentication")
        ],
        "version 3 is lbd's, and so is unicast_src_ip"
    );
    assert!(
        reason(&converted, 5, "vrrp_sync_group").starts_with("fewer than two of its instances")
    );
    assert_eq!(
        converted.config.vrrp[0].source_address,
        Some("192.0.2.250".parse().unwrap())
    );
}

#[test]
fn the_source_address_is_taken_where_lbd_can_send_from_it() {
    let instance = |source: &str, peers: &str, addresses: &str| {
        convert(&format!(
            "vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 1
    {source}
    {peers}
    virtual_ipaddress {{
        {addresses}
    }}
}}
"
        ))
    };
    let taken = |converted: &Converted| converted.config.vrrp[0].source_address;
    // IPv6 multicast: the link-local address.
    let converted = instance("mcast_src_ip fe80::2", "", "2001:db8::1");
    assert_eq!(taken(&converted), Some("fe80::2".parse().unwrap()));
    // mcast_src_ip is the same setting.
    let converted = instance("mcast_src_ip 192.0.2.4", "", "192.0.2.1");
    assert_eq!(taken(&converted), Some("192.0.2.4".parse().unwrap()));
    assert!(
        converted
            .yaml
            .contains("    source_address: 192.0.2.4\n    virtual_addresses: [192.0.2.1/32]\n"),
        "{}",
        converted.yaml
    );
    let converted = instance(
        "unicast_src_ip 2001:db8::2",
        "unicast_peer {\n        2001:db8::3\n    }",
        "2001:db8::1",
    );
    assert_eq!(taken(&converted), Some("2001:db8::2".parse().unwrap()));
    for (source, peers, addresses, why) in [
        (
            "unicast_src_ip 2001:db8::2",
            "",
            "192.0.2.1",
            "not of the instance's family",
        ),
        (
            "unicast_src_ip 192.0.2.1",
            "",
            "192.0.2.1",
            "is a virtual address",
        ),
        (
            "mcast_src_ip 2001:db8::2",
            "",
            "2001:db8::1",
            "not link-local",
        ),
        (
            "unicast_src_ip 192.0.2",
            "",
            "192.0.2.1",
            "not an IP address",
        ),
    ] {
        let converted = instance(source, peers, addresses);
        assert_eq!(taken(&converted), None, "{source}");
        assert!(
            reason(&converted, 4, source.split(' ').next().unwrap()).contains(why),
            "{source}: {:?}",
            lines(&converted)
        );
    }
}

#[test]
fn a_sync_group_gives_its_converted_members_their_sync_group() {
    let converted = convert(
        "vrrp_sync_group VG_1 {
    group {
        VI_EXT
        VI_INT
        VI_MISSING
    }
    notify_master /usr/local/bin/notify
}
vrrp_instance VI_EXT {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.10
    }
}
vrrp_instance VI_INT {
    interface eth1
    virtual_router_id 52
    virtual_ipaddress {
        198.51.100.1
    }
}
",
    );
    for name in ["VI_EXT", "VI_INT"] {
        assert_eq!(
            instance(&converted, name).sync_group.as_deref(),
            Some("VG_1"),
            "{name}"
        );
    }
    assert_eq!(lines(&converted), [(5, "VI_MISSING"), (7, "notify_master")]);
    assert!(reason(&converted, 7, "notify_master").contains("each router's hooks"));
    assert!(
        converted.yaml.contains("    sync_group: VG_1\n"),
        "{}",
        converted.yaml
    );
    assert!(
        converted.yaml.contains("its routers\n  # fault together"),
        "{}",
        converted.yaml
    );
}

#[test]
fn the_last_source_address_counts_and_a_later_instances_address_is_no_source() {
    let converted = convert(
        "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    mcast_src_ip 192.0.2.4
    unicast_src_ip 192.0.2.5
    virtual_ipaddress {
        192.0.2.1
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 2
    unicast_src_ip 192.0.2.6
    virtual_ipaddress {
        192.0.2.2
    }
}
vrrp_instance VI_3 {
    interface eth0
    virtual_router_id 3
    virtual_ipaddress {
        192.0.2.6
    }
}
",
    );
    // keepalived takes the last of one instance's two.
    assert_eq!(
        instance(&converted, "VI_1").source_address,
        Some("192.0.2.5".parse().unwrap())
    );
    assert!(reason(&converted, 4, "mcast_src_ip").contains("the last one counts"));
    // VI_3 carries VI_2's source: the generated config must still pass lbd's checks.
    assert_eq!(instance(&converted, "VI_2").source_address, None);
    assert!(
        reason(&converted, 13, "unicast_src_ip").contains("virtual address of vrrp_instance VI_3")
    );
    crate::config::parse(&converted.yaml, "converted.yaml").expect("lbd takes the conversion");
}
