//! The rest of the mapping: keepalived's defaults, methods and tunnels, ports lbd cannot
//! change, sorry servers, persistence, what lbd has no service for, interfaces and names.

use std::{net::IpAddr, time::Duration};

use super::*;
use crate::config::{Forward, PersistenceConfig, Protocol, Scheduler, SorryServer, Tunnel};

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn keepalived_defaults_are_spelled_out() {
    let converted = convert(
        "virtual_server 192.0.2.10 53 {
    real_server 10.0.0.11 53 {
    }
}
",
    );
    let service = &converted.config.services[0];
    // keepalived 2.x: no protocol is UDP, no lvs_sched wlc, no lvs_method NAT.
    assert_eq!(
        (service.protocol, service.scheduler, service.forward),
        (Protocol::Udp, Scheduler::Wlc, Forward::Nat)
    );
    assert!(
        converted.yaml.contains(
            "  # keepalived's defaults, spelled out: protocol udp, scheduler wlc, forward nat\n"
        ),
        "{}",
        converted.yaml
    );
    assert_eq!(converted.config.instance, "lb", "no router_id");
}

#[test]
fn dr_reals_keep_the_service_port_and_a_real_may_have_its_own_method() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method NAT
    real_server 10.0.0.11 8080 {
    }
    real_server 10.0.0.12 8080 {
        lvs_method DR
        weight 0
    }
    real_server 10.0.0.13 {
        lvs_method TUN type gre
    }
}
",
    );
    let service = &converted.config.services[0];
    let reals: Vec<(IpAddr, u16, u32, Forward)> = service
        .reals
        .iter()
        .map(|real| (real.address, real.port, real.weight, real.forward))
        .collect();
    assert_eq!(
        reals,
        [
            (address("10.0.0.11"), 8080, 1, Forward::Nat),
            (address("10.0.0.12"), 80, 0, Forward::Dr),
            (address("10.0.0.13"), 80, 1, Forward::Tun),
        ]
    );
    assert_eq!(service.tunnel, Tunnel::Ipip);
    assert_eq!(lines(&converted), [(6, "real_server"), (11, "lvs_method")]);
    assert!(reason(&converted, 6, "real_server").contains("port 8080"));
    assert!(reason(&converted, 11, "lvs_method").contains("type gre"));
}

#[test]
fn gue_tunnels_and_their_port_are_per_service() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method TUN type gue port 5555
    real_server 10.0.0.11 80 {
    }
    real_server 2001:db8::11 80 {
        lvs_method TUN type gue port 6666
    }
}
",
    );
    let service = &converted.config.services[0];
    assert_eq!((service.tunnel, service.gue_port), (Tunnel::Gue, 5555));
    assert_eq!(service.reals.len(), 2, "tun carries IPv4 to an IPv6 real");
    assert_eq!(lines(&converted), [(7, "lvs_method")]);
}

#[test]
fn sorry_server_persistence_and_ipv6() {
    let converted = convert(
        "virtual_server 2001:db8::10 443 {
    protocol TCP
    lvs_method DR
    persistence_timeout
    persistence_granularity 64
    sorry_server 2001:db8::99
    real_server 2001:db8::11 443 {
    }
}
",
    );
    let service = &converted.config.services[0];
    assert_eq!(
        service.persistence,
        Some(PersistenceConfig {
            timeout: Duration::from_secs(360),
            prefix: 64
        }),
        "persistence_timeout without a value is keepalived's 360 s"
    );
    assert_eq!(
        service.sorry_server,
        Some(SorryServer {
            address: address("2001:db8::99"),
            port: 443
        }),
        "the service's port"
    );
    assert!(
        converted
            .yaml
            .contains("sorry_server: \"[2001:db8::99]:443\"\n")
    );
    assert_eq!(converted.listed, []);
}

#[test]
fn what_lbd_has_no_service_for_is_listed_whole() {
    let converted = convert(
        "virtual_server_group WEB {
    192.0.2.10 80
}
virtual_server group WEB {
    real_server 10.0.0.11 80 {
    }
}
virtual_server fwmark 7 {
    real_server 10.0.0.11 80 {
    }
}
virtual_server 192.0.2.10 5060 {
    protocol SCTP
    real_server 10.0.0.11 5060 {
    }
}
virtual_server 192.0.2.10 80 {
    lvs_sched lblc
    protocol TCP
    real_server 10.0.0.11 80 {
    }
    real_server 10.0.0.11 80 {
    }
    real_server 2001:db8::11 80 {
    }
}
virtual_server 192.0.2.10 80 {
    protocol TCP
    real_server 10.0.0.12 80 {
    }
}
",
    );
    assert_eq!(
        lines(&converted),
        [
            (1, "virtual_server_group"),
            (4, "virtual_server"),
            (8, "virtual_server"),
            (12, "virtual_server"),
            (18, "lvs_sched"),
            (22, "real_server"),
            (24, "real_server"),
            (27, "virtual_server"),
        ]
    );
    let services = &converted.config.services;
    assert_eq!(services.len(), 1);
    assert_eq!(
        services[0].scheduler,
        Scheduler::Wlc,
        "lblc falls back to wlc"
    );
    assert_eq!(services[0].reals.len(), 1);
    assert!(reason(&converted, 27, "virtual_server").contains("same address, port and protocol"));
}

#[test]
fn interfaces_come_from_the_caller_else_vrrp_else_a_listed_guess() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "keepalived.conf",
        "vrrp_instance VI_1 {
    interface bond0
}
",
    );
    let given = ImportOptions {
        interfaces: vec!["ens1".into(), "ens2".into()],
    };
    let names = |converted: &Converted| -> Vec<String> {
        converted
            .config
            .interfaces
            .iter()
            .map(|i| i.name.clone())
            .collect()
    };
    assert_eq!(names(&convert_file(&path, &given)), ["ens1", "ens2"]);
    assert_eq!(
        names(&convert_file(&path, &ImportOptions::default())),
        ["bond0"]
    );

    let path = scratch.write("plain.conf", "global_defs {\n    router_id lb2\n}\n");
    let guessed = convert_file(&path, &ImportOptions::default());
    assert_eq!(names(&guessed), ["eth0"]);
    assert_eq!(guessed.config.instance, "lb2");
    assert_eq!(
        guessed.listed,
        [("plain.conf".to_owned(), 0, "interfaces".to_owned())]
    );
    let note = guessed.unconverted[0].to_string();
    assert!(
        note.ends_with(
            "plain.conf: interfaces: not converted: keepalived.conf names no interface \
             for lbd (no vrrp_instance) and none was given; the YAML guesses eth0: check it"
        ),
        "{note}"
    );
}

#[test]
fn globals_macros_and_unknown_blocks_are_listed() {
    let converted = convert(
        "$WEB=192.0.2.10
global_defs {
    @lb2 router_id lb2
    lvs_sync_daemon eth1 VI_1
    lvs_timeouts tcp 0 udp 60
    vrrp_garp_master_delay 1
}
vrrp_script chk_web {
    script \"/bin/true\"
}
static_ipaddress {
    192.0.2.1/24 dev eth0
}
include missing/*.conf
",
    );
    assert_eq!(
        lines(&converted),
        [
            (3, "@lb2"),
            (4, "lvs_sync_daemon"),
            (6, "vrrp_garp_master_delay"),
            (8, "vrrp_script"),
            (11, "static_ipaddress"),
            (14, "include"),
        ]
    );
    let timeouts = converted.config.timeouts;
    assert_eq!(timeouts.udp, Duration::from_secs(60));
    assert_eq!(
        timeouts.tcp,
        crate::config::Timeouts::default().tcp,
        "0 keeps the default"
    );
}

#[test]
fn a_sorry_server_that_is_a_vip_is_listed() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method NAT
    sorry_server 192.0.2.20 80
    real_server 10.0.0.11 80 {
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method NAT
    real_server 10.0.0.12 80 {
        TCP_CHECK {
            bindto 192.0.2.10
        }
    }
}
",
    );
    assert_eq!(converted.config.services[0].sorry_server, None);
    assert_eq!(lines(&converted), [(4, "sorry_server"), (13, "bindto")]);
}

#[test]
fn a_mask_or_range_after_an_address_is_dropped_as_keepalived_drops_it() {
    let converted = convert(
        "virtual_server 192.0.2.10/32 80 {
    protocol TCP
    lvs_method TUN
    sorry_server 10.0.0.99/24 80
    real_server 2001:db8::11/128 80 {
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    real_server 10.0.0.12-20 80 {
        TCP_CHECK {
            bindto 10.0.0.1/8
        }
    }
}
",
    );
    let services = &converted.config.services;
    assert_eq!(services[0].vip, address("192.0.2.10"));
    assert_eq!(services[0].reals[0].address, address("2001:db8::11"));
    assert_eq!(
        services[0].sorry_server.map(|sorry| sorry.address),
        Some(address("10.0.0.99"))
    );
    assert_eq!(services[1].reals[0].address, address("10.0.0.12"));
    let source = services[1]
        .health_check
        .as_ref()
        .and_then(|check| check.source);
    assert_eq!(source, Some(address("10.0.0.1")));
    assert_eq!(
        lines(&converted),
        [
            (1, "virtual_server"),
            (4, "sorry_server"),
            (5, "real_server"),
            (10, "real_server"),
            (12, "bindto"),
        ]
    );
    assert!(reason(&converted, 1, "virtual_server").starts_with("/32 after 192.0.2.10"));
    assert!(reason(&converted, 10, "real_server").starts_with("-20 after 10.0.0.12"));
}

#[test]
fn a_sorry_servers_port_follows_the_rules_of_a_reals() {
    let converted = convert(
        "virtual_server 192.0.2.10 0 {
    protocol TCP
    lvs_method NAT
    persistence_timeout 60
    sorry_server 10.0.0.99 8080
    real_server 10.0.0.11 {
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method DR
    sorry_server 10.0.0.99 8080
    real_server 10.0.0.12 80 {
    }
}
",
    );
    let sorry: Vec<Option<SorryServer>> = converted
        .config
        .services
        .iter()
        .map(|service| service.sorry_server)
        .collect();
    let at = |port| {
        Some(SorryServer {
            address: address("10.0.0.99"),
            port,
        })
    };
    assert_eq!(sorry, [at(0), at(80)], "all ports, and dr's service port");
    assert_eq!(
        lines(&converted),
        [(5, "sorry_server"), (12, "sorry_server")]
    );
    assert!(reason(&converted, 5, "sorry_server").contains("the service has all ports (0)"));
    assert!(reason(&converted, 12, "sorry_server").contains("keepalived resets the port"));
}

#[test]
fn a_service_on_all_ports_is_persistent_as_keepalived_makes_it() {
    let converted = convert(
        "virtual_server 192.0.2.10 0 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 {
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method DR
    persistence_timeout 2678401
    real_server 10.0.0.12 80 {
    }
}
",
    );
    let services = &converted.config.services;
    assert_eq!(
        services[0]
            .persistence
            .map(|persistence| persistence.timeout),
        Some(Duration::from_secs(360))
    );
    assert!(
        converted
            .yaml
            .contains("persistence 360s (a service on all ports is persistent)"),
        "{}",
        converted.yaml
    );
    assert_eq!(services[1].persistence, None, "beyond keepalived's 31 days");
    assert_eq!(lines(&converted), [(10, "persistence_timeout")]);
}

#[test]
fn a_virtual_servers_weight_is_the_weight_of_its_reals_without_one() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    weight 3
    real_server 10.0.0.11 80 {
    }
    real_server 10.0.0.12 80 {
        weight 1
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method DR
    weight 0
    weight 70000
    real_server 10.0.0.13 80 {
    }
    real_server 10.0.0.14 80 {
        weight 2147483648
    }
}
",
    );
    let weights: Vec<Vec<u32>> = converted
        .config
        .services
        .iter()
        .map(|service| service.reals.iter().map(|real| real.weight).collect())
        .collect();
    assert_eq!(weights, [vec![3, 1], vec![65535, 65535]]);
    assert_eq!(
        lines(&converted),
        [(14, "weight"), (15, "weight"), (19, "weight")]
    );
    assert!(reason(&converted, 14, "weight").contains("not a weight from 1 to 2147483647"));
    assert!(reason(&converted, 19, "weight").contains("keepalived ignores it too"));
}

#[test]
fn a_bad_tunnel_option_keeps_the_method_as_keepalived_keeps_it() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method TUN type gue
    real_server 10.0.0.11 80 {
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method NAT bogus
    lvs_method TUN type gue port 5555
    real_server 10.0.0.12 80 {
        lvs_method TUN type gue port
    }
}
",
    );
    let services = &converted.config.services;
    assert_eq!(
        (services[0].forward, services[0].tunnel),
        (Forward::Tun, Tunnel::Ipip)
    );
    // The real's bad option leaves it the tunnel it had: the service's.
    assert_eq!(
        (
            services[1].forward,
            services[1].tunnel,
            services[1].gue_port
        ),
        (Forward::Tun, Tunnel::Gue, 5555)
    );
    assert_eq!(
        lines(&converted),
        [(3, "lvs_method"), (9, "lvs_method"), (12, "lvs_method")]
    );
    assert!(
        reason(&converted, 3, "lvs_method").starts_with(
            "a gue tunnel needs a port, and only it has one: keepalived ignores the tunnel \
             options, and keeps the method, tun (tunnel ipip)"
        ),
        "{}",
        reason(&converted, 3, "lvs_method")
    );
}
