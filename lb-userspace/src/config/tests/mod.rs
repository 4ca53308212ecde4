//! Config parsing and validation: every error names file, line and key path.

use std::{collections::HashMap, net::Ipv4Addr};

use super::*;
use crate::{
    dataplane::FakeDataplane,
    neighbour::{InterfaceInfo, Routes},
    reconcile::Desired,
};

/// BGP announcements through BIRD.
mod bgp;
/// Forwarding methods and the keys that go with them.
mod forwarding;
/// VRRP routers and connection sync.
mod ha;
/// Health checks, `on_failure` and the sorry server.
mod health;
/// The metrics listener.
mod metrics;
/// Flow timeouts, persistence and scheduler options.
mod scheduling;

/// Parses `text`, expecting an error; returns its one-line message.
fn error_of(text: &str) -> String {
    match parse(text, "demo.yaml") {
        Ok(config) => panic!("expected an error, got {config:#?}\nfor config:\n{text}"),
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.contains('\n'),
                "error is not one line: {message:?}"
            );
            assert!(
                message.starts_with("demo.yaml"),
                "error does not name the file: {message}"
            );
            message
        }
    }
}

#[track_caller]
fn assert_mentions(message: &str, expected: &[&str]) {
    for fragment in expected {
        assert!(
            message.contains(fragment),
            "error {message:?} should contain {fragment:?}"
        );
    }
}

/// Parses `text`, expecting success, and applies the config to the in-memory data plane:
/// whatever `lbd --check` accepts, the reconciler must be able to write.
fn parse_ok(text: &str) -> Config {
    let config = parse(text, "demo.yaml")
        .unwrap_or_else(|error| panic!("config should parse: {error}\n{text}"));
    apply_to_fake(&config);
    config
}

/// Writes `config` to a [`FakeDataplane`] as lbd would at start-up, with one interface on
/// every address (and an address of each family of its own, the default local address of
/// tunnel and full-NAT reals), so that placement (which depends on the host) cannot fail.
fn apply_to_fake(config: &Config) {
    let everywhere = InterfaceInfo {
        name: "eth0".into(),
        index: 2,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 0),
            (IpAddr::V6("2001:db8::2".parse().unwrap()), 0),
        ],
        mtu: 1500,
        vlan: None,
        egress: 2,
    };
    let mut desired = Desired::new(config, vec![everywhere], &Routes::new())
        .unwrap_or_else(|error| panic!("accepted config cannot be placed: {error}"));
    let all: HashMap<IpAddr, [u8; 6]> = desired
        .next_hops()
        .into_iter()
        .map(|(_, addr)| (addr, [2, 0, 0, 0, 0, 3]))
        .collect();
    desired.set_neighbours(2, &all);
    desired
        .apply(&mut FakeDataplane::default())
        .unwrap_or_else(|error| panic!("accepted config cannot be applied: {error}"));
}

#[test]
fn check_and_apply_agree_on_the_largest_schedule() {
    let service = |weighted: usize, drained: usize| {
        let mut text = String::from(
            "instance: big\ninterfaces: [{name: eth0}]\nlimits: {reals: 4096}\nservices:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    reals:\n",
        );
        for index in 0..weighted + drained {
            let weight = if index < weighted { 1 + index % 7 } else { 0 };
            let address = Ipv4Addr::from(0x0a00_0000 + index as u32 + 1);
            text.push_str(&format!(
                "      - {{address: {address}, weight: {weight}}}\n"
            ));
        }
        text
    };
    // 1,024 weighted reals fill a schedule; drained ones take no slot.
    parse_ok(&service(1024, 100));
    let message = error_of(&service(1025, 0));
    assert_mentions(
        &message,
        &[
            "services[0].reals",
            "1025 reals with a non-zero weight",
            "at most 1024",
        ],
    );
}

/// One interface; the service starts on line 4, `service_extra` on line 7, the first real on
/// line 8 (with `service_extra` empty), `real_extra` from line 9. Tests splice keys in.
fn minimal_with_service(service_extra: &str, real_extra: &str) -> String {
    format!(
        "instance: lb1\n\
             interfaces: [{{name: eth0}}]\n\
             services:\n\
             \x20 - vip: 192.0.2.10\n\
             \x20   port: 80\n\
             \x20   protocol: tcp\n{service_extra}\
             \x20   reals:\n\
             \x20     - address: 10.0.0.11\n{real_extra}"
    )
}

#[test]
fn full_config_parses_with_defaults_applied() {
    let text = "\
instance: lb1
interfaces:
  - name: eth0
    xdp_mode: native
  - name: veth-lb1
admin:
  socket: /run/lb/lb1.sock
pin_dir: /sys/fs/bpf/test/lb1
services:
  - vip: 192.0.2.10
    port: 80
    protocol: tcp
    scheduler: rr
    forward: dr
    reals:
      - address: 10.0.0.11
        port: 80
        weight: 3
        forward: dr
      - address: 10.0.0.12
      - {address: 10.0.0.13, weight: 0}
  - vip: 192.0.2.10
    port: 0
    protocol: udp
    reals: []
  - vip: 192.0.2.11
    port: 53
    protocol: udp
limits: {flows: 1000, services: 16, reals: 64}
metrics:
  listen: 127.0.0.1:9105
";
    let real = |last_octet: u8, weight: u32| RealConfig {
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
        port: 80,
        weight,
        forward: Forward::Dr,
    };
    let expected = Config {
        instance: "lb1".into(),
        interfaces: vec![
            InterfaceConfig {
                name: "eth0".into(),
                xdp_mode: XdpMode::Native,
            },
            InterfaceConfig {
                name: "veth-lb1".into(),
                xdp_mode: XdpMode::Auto,
            },
        ],
        admin_socket: PathBuf::from("/run/lb/lb1.sock"),
        admin_group: None,
        pin_dir: PathBuf::from("/sys/fs/bpf/test/lb1"),
        pid_file: PathBuf::from("/run/lb/lb1.pid"),
        services: vec![
            ServiceConfig {
                vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                port: 80,
                protocol: Protocol::Tcp,
                scheduler: Scheduler::Rr,
                forward: Forward::Dr,
                tunnel: Tunnel::Ipip,
                gue_port: DEFAULT_GUE_PORT,
                snat_pool: vec![],
                tunnel_source: vec![],
                persistence: None,
                mh_table_size: 65537,
                health_check: None,
                on_failure: crate::config::OnFailure::Remove,
                sorry_server: None,
                reals: vec![real(11, 3), real(12, 1), real(13, 0)],
            },
            ServiceConfig {
                vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                port: 0,
                protocol: Protocol::Udp,
                scheduler: Scheduler::Wrr,
                forward: Forward::Dr,
                tunnel: Tunnel::Ipip,
                gue_port: DEFAULT_GUE_PORT,
                snat_pool: vec![],
                tunnel_source: vec![],
                persistence: None,
                mh_table_size: 65537,
                health_check: None,
                on_failure: crate::config::OnFailure::Remove,
                sorry_server: None,
                reals: vec![],
            },
            ServiceConfig {
                vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
                port: 53,
                protocol: Protocol::Udp,
                scheduler: Scheduler::Wrr,
                forward: Forward::Dr,
                tunnel: Tunnel::Ipip,
                gue_port: DEFAULT_GUE_PORT,
                snat_pool: vec![],
                tunnel_source: vec![],
                persistence: None,
                mh_table_size: 65537,
                health_check: None,
                on_failure: crate::config::OnFailure::Remove,
                sorry_server: None,
                reals: vec![],
            },
        ],
        limits: Limits {
            flows: 1000,
            table_slots: lb_common::DEFAULT_TABLE_SLOTS,
            services: 16,
            reals: 64,
        },
        timeouts: Timeouts::default(),
        metrics_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9105))),
        vrrp: Vec::new(),
        sync: None,
        bgp: None,
    };
    assert_eq!(parse_ok(text), expected);
}

#[test]
fn omitted_keys_get_their_defaults() {
    let config = parse_ok("instance: edge-2\ninterfaces:\n  - name: eth1\n");
    assert_eq!(config.admin_socket, PathBuf::from(DEFAULT_ADMIN_SOCKET));
    assert_eq!(config.pin_dir, PathBuf::from("/sys/fs/bpf/lb/edge-2"));
    assert_eq!(config.services, vec![]);
    assert_eq!(
        config.limits,
        Limits {
            flows: lb_common::DEFAULT_MAX_FLOWS,
            table_slots: lb_common::DEFAULT_TABLE_SLOTS,
            services: lb_common::DEFAULT_MAX_SERVICES,
            reals: lb_common::DEFAULT_MAX_REALS,
        }
    );
    assert_eq!(config.interfaces[0].xdp_mode, XdpMode::Auto);
    assert_eq!(config.metrics_listen, None);
}

#[test]
fn real_inherits_service_forward_and_port_zero_service_accepts_port_zero_real() {
    let config = parse_ok(
        "instance: a\ninterfaces: [{name: eth0}]\nservices:\n  - vip: 192.0.2.1\n    \
             port: 0\n    protocol: tcp\n    reals:\n      - {address: 10.0.0.1, port: 0}\n      \
             - {address: 10.0.0.2}\n",
    );
    let reals = &config.services[0].reals;
    assert_eq!((reals[0].port, reals[1].port), (0, 0));
    assert_eq!(reals[1].forward, Forward::Dr);
}

#[test]
fn load_names_the_path_when_the_file_is_missing() {
    let path = std::path::Path::new("/nonexistent/lb-config-test.yaml");
    let message = match load(path) {
        Ok(config) => panic!("loading a missing file succeeded: {config:?}"),
        Err(error) => error.to_string(),
    };
    assert_mentions(
        &message,
        &["/nonexistent/lb-config-test.yaml", "cannot read"],
    );
}

#[test]
fn malformed_yaml_names_the_line() {
    let message = error_of("instance: lb1\ninterfaces:\n  - name: eth0\n   xdp_mode: native\n");
    assert_mentions(&message, &["demo.yaml:4:", "invalid YAML"]);

    let message = error_of("instance: lb1\ninterfaces: [{name: eth0}\n");
    assert_mentions(&message, &["demo.yaml:2:", "invalid YAML"]);
}

#[test]
fn empty_or_non_mapping_document_is_rejected() {
    assert_mentions(&error_of(""), &["empty", "instance"]);
    assert_mentions(
        &error_of("- a\n- b\n"),
        &["demo.yaml:1:1:", "expected a mapping", "a list"],
    );
}

#[test]
fn misspelt_key_is_an_error_naming_key_and_line() {
    let text = minimal_with_service("    helth_check: {type: tcp}\n", "");
    let message = error_of(&text);
    assert_mentions(
        &message,
        &[
            "demo.yaml:7:5:",
            "services[0].helth_check",
            "unknown key",
            "did you mean `health_check`?",
        ],
    );

    let message = error_of("instance: a\ninterfaces: [{name: eth0, xdp: native}]\n");
    assert_mentions(
        &message,
        &["demo.yaml:2:27:", "interfaces[0].xdp: unknown key"],
    );
}

#[test]
fn wrong_value_type_names_key_and_line() {
    let message = error_of(&minimal_with_service("", "        weight: heavy\n"));
    assert_mentions(
        &message,
        &[
            "demo.yaml:9:17:",
            "services[0].reals[0].weight",
            "expected a whole number",
            "\"heavy\"",
        ],
    );

    let message = error_of("instance: [a, b]\ninterfaces: [{name: eth0}]\n");
    assert_mentions(
        &message,
        &[
            "demo.yaml:1:11:",
            "instance: expected a single value",
            "a list",
        ],
    );

    // Through an alias, the error is where the alias is used.
    let message = error_of("instance: &n eth0\ninterfaces: [{name: eth0}]\nlimits:\n  flows: *n\n");
    assert_mentions(
        &message,
        &[
            "demo.yaml:4:10:",
            "limits.flows: expected a whole number",
            "\"eth0\"",
        ],
    );

    let message = error_of("instance: a\ninterfaces: eth0\n");
    assert_mentions(
        &message,
        &["demo.yaml:2:13:", "interfaces: expected a list", "\"eth0\""],
    );
}

#[test]
fn duplicate_yaml_key_is_rejected() {
    let message = error_of("instance: a\ninstance: b\ninterfaces: [{name: eth0}]\n");
    assert_mentions(&message, &["demo.yaml:2:1:", "duplicate"]);
}

#[test]
fn bad_real_address_names_the_key_path_and_line() {
    let real_extra = "      - address: 10.0.0.12\n      - address: 10.0.0.300\n";
    let message = error_of(&minimal_with_service("", real_extra));
    assert_eq!(
        message,
        "demo.yaml:10:18: services[0].reals[2].address: invalid IP address \"10.0.0.300\""
    );
}

#[test]
fn special_addresses_are_rejected() {
    for (vip, problem) in [
        ("0.0.0.0", "unspecified"),
        ("224.0.0.18", "multicast"),
        ("255.255.255.255", "broadcast"),
    ] {
        let text = minimal_with_service("", "").replace("192.0.2.10", vip);
        assert_mentions(
            &error_of(&text),
            &["demo.yaml:4:10:", "services[0].vip", problem],
        );
    }
    let text = minimal_with_service("", "").replace("10.0.0.11", "239.1.1.1");
    assert_mentions(
        &error_of(&text),
        &["services[0].reals[0].address", "multicast"],
    );
}

#[test]
fn ipv6_service_with_ipv6_reals_parses() {
    let text = minimal_with_service("", "")
        .replace("192.0.2.10", "2001:db8::10")
        .replace("10.0.0.11", "2001:db8::11");
    let config = parse_ok(&text);
    let service = &config.services[0];
    assert_eq!(service.vip, "2001:db8::10".parse::<IpAddr>().unwrap());
    assert_eq!(service.name(), "TCP [2001:db8::10]:80");
    assert_eq!(
        service.reals[0].address,
        "2001:db8::11".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn addresses_that_name_no_host_are_refused() {
    for (vip, problem) in [
        ("::1", "loopback"),
        ("127.0.0.1", "loopback"),
        ("fe80::10", "link-local"),
        ("::ffff:192.0.2.10", "IPv4-mapped"),
    ] {
        let text = minimal_with_service("", "").replace("192.0.2.10", vip);
        assert_mentions(&error_of(&text), &["services[0].vip", vip, problem]);
    }
}

#[test]
fn real_of_the_other_family_names_both_addresses() {
    let text = minimal_with_service("", "").replace("10.0.0.11", "2001:db8::11");
    assert_mentions(
        &error_of(&text),
        &[
            "demo.yaml:8:18:",
            "services[0].reals[0].address",
            "2001:db8::11",
            "192.0.2.10",
            "IPv6",
            "IPv4",
            "direct routing",
        ],
    );
}

#[test]
fn duplicate_service_names_both_indices() {
    let text = "instance: a\ninterfaces: [{name: eth0}]\nservices:\n\
                    \x20 - {vip: 192.0.2.1, port: 80, protocol: tcp}\n\
                    \x20 - {vip: 192.0.2.1, port: 80, protocol: udp}\n\
                    \x20 - {vip: 192.0.2.1, port: 80, protocol: tcp, scheduler: rr}\n";
    assert_mentions(
        &error_of(text),
        &[
            "demo.yaml:6:5:",
            "services[2]: duplicate service",
            "services[0]",
            "TCP 192.0.2.1:80",
        ],
    );
}

#[test]
fn duplicate_real_names_both_indices() {
    let real_extra = "      - address: 10.0.0.12\n      - address: 10.0.0.11\n        weight: 2\n";
    assert_mentions(
        &error_of(&minimal_with_service("", real_extra)),
        &[
            "demo.yaml:10:",
            "services[0].reals[2]: duplicate real",
            "reals[0]",
            "10.0.0.11:80",
        ],
    );
}

#[test]
fn every_scheduler_parses_and_an_unknown_one_lists_them() {
    for scheduler in ["rr", "wrr", "lc", "wlc", "sh", "mh"] {
        let config = parse_ok(&minimal_with_service(
            &format!("    scheduler: {scheduler}\n"),
            "",
        ));
        assert_eq!(config.services[0].scheduler.name(), scheduler);
    }
    let message = error_of(&minimal_with_service("    scheduler: fastest\n", ""));
    assert_mentions(
        &message,
        &[
            "demo.yaml:7:16:",
            "services[0].scheduler",
            "unknown scheduler \"fastest\"",
            "rr, wrr, lc, wlc, sh, mh",
        ],
    );
}

#[test]
fn weight_out_of_range() {
    for weight in ["65536", "-1"] {
        let message = error_of(&minimal_with_service(
            "",
            &format!("        weight: {weight}\n"),
        ));
        assert_mentions(
            &message,
            &[
                "demo.yaml:9:17:",
                "services[0].reals[0].weight",
                "out of range",
            ],
        );
    }
}

#[test]
fn direct_routing_cannot_change_the_port() {
    let message = error_of(&minimal_with_service("", "        port: 8080\n"));
    assert_mentions(
        &message,
        &[
            "demo.yaml:9:15:",
            "services[0].reals[0].port",
            "cannot change the port",
            "8080",
            "80",
        ],
    );

    let text = minimal_with_service("", "        port: 80\n")
        .replace("port: 80\n    protocol", "port: 0\n    protocol");
    assert_mentions(
        &error_of(&text),
        &["services[0].reals[0].port", "port 0 (all ports)"],
    );
}

#[test]
fn service_port_is_required_and_in_range() {
    let text = minimal_with_service("", "").replace("    port: 80\n", "");
    assert_mentions(
        &error_of(&text),
        &[
            "demo.yaml:4:5:",
            "services[0].port: required key is missing",
        ],
    );

    let text = minimal_with_service("", "").replace("port: 80", "port: 65536");
    assert_mentions(
        &error_of(&text),
        &["demo.yaml:5:11:", "services[0].port", "out of range"],
    );

    let text = minimal_with_service("", "").replace("    protocol: tcp\n", "");
    assert_mentions(
        &error_of(&text),
        &["services[0].protocol: required key is missing"],
    );

    let text = minimal_with_service("", "").replace("protocol: tcp", "protocol: sctp");
    assert_mentions(
        &error_of(&text),
        &["services[0].protocol", "unknown protocol \"sctp\""],
    );
}

#[test]
fn interfaces_must_be_present_non_empty_unique_and_valid() {
    assert_mentions(
        &error_of("instance: a\n"),
        &["demo.yaml: interfaces: required key is missing"],
    );
    assert_mentions(
        &error_of("instance: a\ninterfaces: []\n"),
        &["demo.yaml:2:13: interfaces:", "at least one"],
    );
    assert_mentions(
        &error_of("instance: a\ninterfaces:\n  - name: eth0\n  - name: eth0\n"),
        &[
            "demo.yaml:4:11:",
            "interfaces[1].name",
            "listed twice",
            "interfaces[0]",
        ],
    );
    for bad_name in ["eth0/1", "a-very-long-name-x", "\"eth 0\""] {
        let text = format!("instance: a\ninterfaces:\n  - name: {bad_name}\n");
        assert_mentions(
            &error_of(&text),
            &[
                "demo.yaml:3:11:",
                "interfaces[0].name",
                "invalid interface name",
            ],
        );
    }
    assert_mentions(
        &error_of("instance: a\ninterfaces:\n  - {name: eth0, xdp_mode: fast}\n"),
        &[
            "interfaces[0].xdp_mode",
            "unknown XDP mode \"fast\"",
            "native, generic, auto",
        ],
    );
}

#[test]
fn bad_instance_name() {
    for bad_name in [
        "\"lb 1\"",
        "../etc",
        "a23456789012345678901234567890123",
        "\"\"",
    ] {
        let text = format!("instance: {bad_name}\ninterfaces: [{{name: eth0}}]\n");
        assert_mentions(
            &error_of(&text),
            &["demo.yaml:1:11: instance: invalid instance name"],
        );
    }
    assert_mentions(
        &error_of("instance:\ninterfaces: [{name: eth0}]\n"),
        &["instance: needs a value"],
    );
}

#[test]
fn limits_are_checked_against_ids_and_the_tables() {
    let base = minimal_with_service("", "      - address: 10.0.0.12\n");
    let message = error_of(&format!("{base}limits: {{services: 0}}\n"));
    assert_mentions(
        &message,
        &["demo.yaml:10:20:", "limits.services", "at least 1"],
    );

    // One service needs two slots: id 0 is reserved.
    let message = error_of(&format!("{base}limits: {{services: 1}}\n"));
    assert_mentions(
        &message,
        &[
            "demo.yaml:3:1:",
            "services:",
            "service ids start at 1",
            "raise limits.services",
        ],
    );
    parse_ok(&format!("{base}limits: {{services: 2, reals: 3}}\n"));
    let message = error_of(&format!("{base}limits: {{reals: 2}}\n"));
    assert_mentions(
        &message,
        &["2 reals", "limits.reals = 2", "raise limits.reals"],
    );

    // Two halves of 1024 slots for the wrr service, and slot 0 reserved.
    let message = error_of(&format!("{base}limits: {{table_slots: 2048}}\n"));
    assert_mentions(
        &message,
        &["services:", "need 2048 slots", "limits.table_slots = 2048"],
    );
    parse_ok(&format!("{base}limits: {{table_slots: 2049}}\n"));

    let message = error_of(&format!("{base}limits: {{flows: 4294967296}}\n"));
    assert_mentions(&message, &["limits.flows", "4294967296"]);
}

#[test]
fn admin_socket_path_must_fit_a_unix_socket() {
    let long = format!("/run/{}.sock", "x".repeat(120));
    let text = format!("instance: a\ninterfaces: [{{name: eth0}}]\nadmin: {{socket: {long}}}\n");
    assert_mentions(
        &error_of(&text),
        &["demo.yaml:3:17:", "admin.socket", "at most 107"],
    );
}

#[test]
fn admin_group_is_a_known_group_name_or_a_number() {
    let base = "instance: a\ninterfaces: [{name: eth0}]\n";
    assert_eq!(parse_ok(base).admin_group, None);
    let by_number = parse_ok(&format!("{base}admin: {{group: 4242}}\n"));
    assert_eq!(by_number.admin_group, Some(4242));
    // Every host has root's group.
    let by_name = parse_ok(&format!("{base}admin: {{group: root}}\n"));
    assert_eq!(by_name.admin_group, Some(0));
    assert_mentions(
        &error_of(&format!("{base}admin: {{group: -5}}\n")),
        &["demo.yaml:3", "admin.group", "group id -5 is out of range"],
    );
    assert_mentions(
        &error_of(&format!("{base}admin: {{group: [1]}}\n")),
        &[
            "demo.yaml:3",
            "admin.group",
            "a group name (lbadmin) or id (4242)",
        ],
    );
    assert_mentions(
        &error_of(&format!("{base}admin: {{group: no-such-group-here}}\n")),
        &[
            "demo.yaml:3",
            "admin.group",
            "no group named \"no-such-group-here\"",
        ],
    );
}

#[test]
fn names_round_trip_through_from_str() {
    for protocol in Protocol::ALL {
        assert_eq!(protocol.name().parse::<Protocol>(), Ok(protocol));
    }
    for scheduler in Scheduler::ALL {
        assert_eq!(scheduler.name().parse::<Scheduler>(), Ok(scheduler));
    }
    for forward in Forward::ALL {
        assert_eq!(forward.name().parse::<Forward>(), Ok(forward));
    }
    for mode in XdpMode::ALL {
        assert_eq!(mode.name().parse::<XdpMode>(), Ok(mode));
    }
    for tunnel in Tunnel::ALL {
        assert_eq!(tunnel.name().parse::<Tunnel>(), Ok(tunnel));
    }
    assert_eq!(
        Forward::ALL.map(Forward::name),
        ["dr", "tun", "nat", "fullnat"]
    );
}

/// The YAML parser's own default stops at 250,000 nodes, less than a table at `limits`
/// (65,536 reals of a few keys each) takes, and so less than `lbadm -R` of a full table sends.
#[test]
fn a_document_as_large_as_a_full_table_reads() {
    let mut text = String::from("[");
    for _ in 0..255_000 {
        text.push_str("1,");
    }
    text.push_str("1]");
    let read: Result<serde_json::Value, _> = super::read_yaml(&text);
    assert_eq!(read.unwrap().as_array().unwrap().len(), 255_001);
}
