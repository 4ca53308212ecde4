//! testdata/keepalived.conf: a DR web service with TCP checks and a sorry server, a NAT
//! service with HTTP checks on other ports, and through `include conf.d/*.conf` a GUE
//! tunnel service with script checks and an IPv6 service whose reals are included again,
//! relative to the including file; two vrrp_instances, one multicast with hooks, one with a
//! unicast peer, a fractional advert_int and an address of the other family.

use std::{net::IpAddr, time::Duration};

use super::*;
use crate::config::{
    CheckKind, Forward, HealthCheckConfig, HttpCheck, OnFailure, PersistenceConfig, Protocol,
    RealConfig, Scheduler, ServiceConfig, SorryServer, Tunnel,
    ha::{Hooks, InitialState, TrackInterface, VirtualAddress, VrrpInstanceConfig},
};

pub(super) fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/lbadm/import_keepalived/testdata/keepalived.conf")
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn real(text: &str, port: u16, weight: u32, forward: Forward) -> RealConfig {
    RealConfig {
        address: address(text),
        port,
        weight,
        forward,
    }
}

fn tcp_check(port: Option<u16>, interval: u64, timeout: u64, fall: u32) -> HealthCheckConfig {
    HealthCheckConfig {
        kind: CheckKind::Tcp,
        port,
        interval: Duration::from_secs(interval),
        timeout: Duration::from_secs(timeout),
        rise: 1,
        fall,
        source: None,
    }
}

fn service(converted: &Converted, vip: &str, port: u16) -> ServiceConfig {
    let vip = address(vip);
    converted
        .config
        .services
        .iter()
        .find(|service| (service.vip, service.port) == (vip, port))
        .unwrap_or_else(|| panic!("no service {vip} {port} in\n{}", converted.yaml))
        .clone()
}

#[test]
fn the_config_validates_with_the_services_reals_and_checks_of_keepalived_conf() {
    let converted = convert_file(&fixture_path(), &ImportOptions::default());
    let config = &converted.config;
    assert_eq!(config.instance, "lb1-example-com");
    let interfaces: Vec<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        interfaces,
        ["eth0", "eth1"],
        "the vrrp_instances' interfaces"
    );
    assert_eq!(config.timeouts.tcp, Duration::from_secs(900));
    assert_eq!(config.timeouts.tcp_fin, Duration::from_secs(120));
    assert_eq!(config.timeouts.udp, Duration::from_secs(300));
    assert_eq!(config.services.len(), 4);

    let web = service(&converted, "192.0.2.10", 80);
    assert_eq!(
        (web.protocol, web.scheduler, web.forward),
        (Protocol::Tcp, Scheduler::Wrr, Forward::Dr)
    );
    assert_eq!(
        web.persistence,
        Some(PersistenceConfig {
            timeout: Duration::from_secs(300),
            prefix: 24
        })
    );
    assert_eq!(
        web.sorry_server,
        Some(SorryServer {
            address: address("10.0.0.99"),
            port: 80
        })
    );
    // retry 2 → fall 3; connect_timeout 3 → timeout; delay_loop 6 → interval.
    assert_eq!(web.health_check, Some(tcp_check(None, 6, 3, 3)));
    assert_eq!(web.on_failure, OnFailure::Inhibit);
    assert_eq!(
        web.reals,
        [
            real("10.0.0.11", 80, 3, Forward::Dr),
            real("10.0.0.12", 80, 1, Forward::Dr)
        ]
    );

    let app = service(&converted, "192.0.2.20", 80);
    assert_eq!(
        (app.protocol, app.scheduler, app.forward),
        (Protocol::Tcp, Scheduler::Wlc, Forward::Nat)
    );
    assert_eq!(
        app.health_check,
        Some(HealthCheckConfig {
            kind: CheckKind::Http(HttpCheck {
                path: "/healthz".into(),
                expect_status: 200..=200,
                host: None,
                expect_body: None,
            }),
            // nb_get_retry 3 (and retry 3) → fall 4.
            ..tcp_check(None, 10, 2, 4)
        })
    );
    assert_eq!(app.on_failure, OnFailure::Remove);
    assert_eq!(
        app.reals,
        [
            real("10.0.1.11", 8080, 1, Forward::Nat),
            real("10.0.1.12", 8081, 2, Forward::Nat)
        ]
    );
    assert_eq!(app.sorry_server, None);
    assert_eq!(app.persistence, None);

    let dns = service(&converted, "198.51.100.53", 53);
    assert_eq!(
        (dns.protocol, dns.scheduler, dns.forward),
        (Protocol::Udp, Scheduler::Sh, Forward::Tun)
    );
    assert_eq!((dns.tunnel, dns.gue_port), (Tunnel::Gue, 6080));
    assert_eq!(
        dns.health_check, None,
        "MISC_CHECK is listed, not converted"
    );
    assert_eq!(
        dns.reals,
        [
            real("203.0.113.11", 53, 1, Forward::Tun),
            real("203.0.113.12", 53, 1, Forward::Tun)
        ]
    );

    let ipv6 = service(&converted, "2001:db8::10", 80);
    assert_eq!(
        (ipv6.protocol, ipv6.scheduler, ipv6.forward),
        (Protocol::Tcp, Scheduler::Mh, Forward::Dr)
    );
    // The default connect_timeout (5 s) is cut to the interval.
    assert_eq!(ipv6.health_check, Some(tcp_check(Some(8080), 3, 3, 2)));
    assert_eq!(
        ipv6.reals,
        [
            real("2001:db8:1::11", 80, 1, Forward::Dr),
            real("2001:db8:1::12", 80, 1, Forward::Dr)
        ]
    );
}

#[test]
fn every_directive_left_out_is_listed_with_its_file_and_line() {
    let converted = convert_file(&fixture_path(), &ImportOptions::default());
    let expected = [
        ("keepalived.conf", 4, "notification_email"),
        ("keepalived.conf", 7, "notification_email_from"),
        ("keepalived.conf", 8, "smtp_server"),
        ("keepalived.conf", 19, "authentication"),
        ("keepalived.conf", 24, "192.0.2.10/24"),
        ("keepalived.conf", 48, "2001:db8::10"),
        ("keepalived.conf", 69, "delay_before_retry"),
        ("keepalived.conf", 77, "delay_before_retry"),
        ("conf.d/10-dns.conf", 9, "MISC_CHECK"),
        ("conf.d/10-dns.conf", 15, "MISC_CHECK"),
        ("conf.d/20-ipv6.conf", 7, "quorum"),
    ]
    .map(|(file, line, directive)| (file.to_owned(), line, directive.to_owned()));
    assert_eq!(converted.listed, expected);

    let other_family = &converted.unconverted[5];
    assert_eq!(
        other_family.to_string(),
        format!(
            "{}:48: 2001:db8::10: not converted: 2001:db8::10 is not of the instance's family \
             (IPv4): a VRRP router carries one family, and keepalived ignores it too; for it \
             to move with the master, add an instance of its family by hand (it may have the \
             same vrid)",
            fixture_path().display()
        )
    );
    assert!(
        converted.unconverted[6]
            .reason
            .contains("after 3 failed checks, 18s"),
        "{}",
        converted.unconverted[6]
    );
    assert!(
        converted.unconverted[9]
            .reason
            .contains("its reals are always up"),
        "{}",
        converted.unconverted[9]
    );
}

#[test]
fn the_yaml_reads_well() {
    let converted = convert_file(&fixture_path(), &ImportOptions::default());
    let yaml = &converted.yaml;
    assert!(
        yaml.starts_with(&format!(
            "# Converted from {} by lbadm import-keepalived.",
            fixture_path().display()
        )),
        "{yaml}"
    );
    // Keys in SPEC.md's order, each service named by where it came from.
    let order = [
        "\ninstance:",
        "\ninterfaces:",
        "\nservices:",
        "\ntimeouts:",
        "\nvrrp:",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|key| {
            yaml.find(key)
                .unwrap_or_else(|| panic!("{key} missing:\n{yaml}"))
        })
        .collect();
    assert!(positions.is_sorted(), "{yaml}");
    assert!(yaml.contains("  # conf.d/10-dns.conf:2: virtual_server 198.51.100.53 53\n"));
    // Reals show their port always, their weight only when it is not 1.
    assert!(
        yaml.contains(
            "      - address: 10.0.0.11\n        port: 80\n        weight: 3\n      - address: \
             10.0.0.12\n        port: 80\n  #"
        ),
        "{yaml}"
    );
    // Each vrrp_instance named by where it came from, in lbd's keys.
    for line in [
        "  # keepalived.conf:34: vrrp_instance VI_DNS",
        "  - name: VI_DNS",
        "    interface: eth1",
        "    vrid: 52",
        "    priority: 100",
        "    advert_interval: 500ms",
        "    preempt: false",
        "    preempt_delay: 5s",
        "    initial_state: backup",
        "    unicast_peers: [198.51.100.3]",
        "    source_address: 198.51.100.2",
        "    virtual_addresses: [198.51.100.53/32]",
        "      on_fault: \"/usr/local/bin/notify fault\"",
        "    virtual_addresses: [192.0.2.10/24, 192.0.2.20/32]",
        "    track_interfaces: [eth1]",
        "      on_master: \"/usr/local/bin/notify master\"",
        "      on_backup: /usr/local/bin/notify-backup",
    ] {
        assert!(
            yaml.contains(&format!("{line}\n")),
            "{line:?} missing:\n{yaml}"
        );
    }
}

#[test]
fn the_vrrp_instances_validate_as_lbd_routers() {
    let converted = convert_file(&fixture_path(), &ImportOptions::default());
    let [web, dns] = converted.config.vrrp.as_slice() else {
        panic!("two instances expected:\n{}", converted.yaml);
    };
    assert_eq!(
        *web,
        VrrpInstanceConfig {
            name: "VI_WEB".into(),
            interface: "eth0".into(),
            vrid: 51,
            priority: 150,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            initial_state: InitialState::Master,
            unicast_peers: vec![],
            source_address: None,
            virtual_addresses: vec![
                VirtualAddress {
                    address: address("192.0.2.10"),
                    prefix: 24
                },
                VirtualAddress {
                    address: address("192.0.2.20"),
                    prefix: 32
                },
            ],
            track_interfaces: vec![TrackInterface {
                name: "eth1".into(),
                weight: 0
            }],
            track_services: None,
            sync_group: None,
            hooks: Hooks {
                on_master: Some(vec!["/usr/local/bin/notify".into(), "master".into()]),
                on_backup: Some(vec!["/usr/local/bin/notify-backup".into()]),
                on_fault: None,
                on_stop: None,
            },
        }
    );
    // advert_int 0.5, nopreempt, preempt_delay 5; the IPv6 address is listed.
    assert_eq!(
        (
            dns.advert_interval,
            dns.preempt,
            dns.preempt_delay,
            dns.initial_state
        ),
        (
            Duration::from_millis(500),
            false,
            Duration::from_secs(5),
            InitialState::Backup
        )
    );
    assert_eq!(dns.unicast_peers, [address("198.51.100.3")]);
    assert_eq!(dns.source_address, Some(address("198.51.100.2")));
    assert_eq!(
        dns.virtual_addresses,
        [VirtualAddress {
            address: address("198.51.100.53"),
            prefix: 32
        }]
    );
    assert_eq!(
        dns.hooks.on_fault,
        Some(vec!["/usr/local/bin/notify".into(), "fault".into()])
    );
    assert_eq!(converted.config.sync, None, "no lvs_sync_daemon");
}
