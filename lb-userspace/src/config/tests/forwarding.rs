//! Config tests for the forwarding keys: `forward` (per service and per real), `tunnel`,
//! `gue_port`, `snat_pool` and `tunnel_source`, with the port and family rules of each method.

use std::net::Ipv6Addr;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn every_method_parses_per_service_and_per_real() {
    let config = parse_ok(&minimal_with_service(
        "    forward: tun\n",
        "      - {address: 10.0.0.12, forward: nat}\n      - {address: 10.0.0.13, forward: fullnat}\n      - {address: 10.0.0.14, forward: dr}\n",
    ));
    let service = &config.services[0];
    assert_eq!(service.forward, Forward::Tun);
    let methods: Vec<Forward> = service.reals.iter().map(|real| real.forward).collect();
    assert_eq!(
        methods,
        [Forward::Tun, Forward::Nat, Forward::Fullnat, Forward::Dr]
    );
    // The defaults of the keys that go with them.
    assert_eq!(service.tunnel, Tunnel::Ipip);
    assert_eq!(service.gue_port, DEFAULT_GUE_PORT);
    assert!(service.snat_pool.is_empty() && service.tunnel_source.is_empty());
    // Without `forward`, a service and its reals route directly.
    let config = parse_ok(&minimal_with_service("", ""));
    assert_eq!(config.services[0].reals[0].forward, Forward::Dr);
}

#[test]
fn an_unknown_method_lists_the_four() {
    let message = error_of(&minimal_with_service("", "        forward: masq\n"));
    assert_mentions(
        &message,
        &[
            "demo.yaml:9:18:",
            "services[0].reals[0].forward",
            "unknown forwarding method \"masq\"",
            "dr, tun, nat, fullnat",
        ],
    );
}

#[test]
fn dr_and_tun_cannot_change_the_port_but_nat_and_fullnat_may() {
    for method in ["dr", "tun"] {
        let message = error_of(&minimal_with_service(
            &format!("    forward: {method}\n"),
            "        port: 8080\n",
        ));
        assert_mentions(
            &message,
            &[
                "demo.yaml:10:15:",
                "services[0].reals[0].port",
                "dr and tun cannot change the port",
                "8080",
            ],
        );
    }
    for method in ["nat", "fullnat"] {
        let config = parse_ok(&minimal_with_service(
            "",
            &format!("        port: 8080\n        forward: {method}\n"),
        ));
        assert_eq!(config.services[0].port, 80);
        assert_eq!(config.services[0].reals[0].port, 8080);
    }
    // A NAT real cannot take "every port" on a one-port service...
    let message = error_of(&minimal_with_service(
        "    forward: nat\n",
        "        port: 0\n",
    ));
    assert_mentions(
        &message,
        &["services[0].reals[0].port", "port 0 means every port"],
    );
    // ...nor map an all-ports service's ports to one.
    let text = minimal_with_service("    forward: nat\n", "        port: 8080\n")
        .replace("port: 80\n    protocol", "port: 0\n    protocol");
    assert_mentions(
        &error_of(&text),
        &["services[0].reals[0].port", "port 0 (all ports)"],
    );
}

#[test]
fn only_tun_reals_may_be_of_the_other_family() {
    // 6in4 and 4in6.
    let config = parse_ok(&minimal_with_service(
        "",
        "        forward: tun\n      - {address: 2001:db8::12, forward: tun}\n",
    ));
    assert_eq!(config.services[0].reals[1].address, ip("2001:db8::12"));
    let text = minimal_with_service("    forward: tun\n", "")
        .replace("192.0.2.10", "2001:db8::10")
        .replace("10.0.0.11", "198.51.100.11");
    parse_ok(&text);

    for method in ["nat", "fullnat", "dr"] {
        let text = minimal_with_service("", &format!("        forward: {method}\n"))
            .replace("10.0.0.11", "2001:db8::11");
        assert_mentions(
            &error_of(&text),
            &[
                "demo.yaml:8:18:",
                "services[0].reals[0].address",
                "2001:db8::11",
                "VIP's address family",
                &format!("({method})"),
                "only tun",
            ],
        );
    }
}

#[test]
fn tunnel_and_gue_port() {
    let config = parse_ok(&minimal_with_service(
        "    forward: tun\n    tunnel: gue\n",
        "",
    ));
    assert_eq!(config.services[0].tunnel, Tunnel::Gue);
    assert_eq!(config.services[0].gue_port, 6080);
    let config = parse_ok(&minimal_with_service(
        "    forward: tun\n    tunnel: gue\n    gue_port: 5555\n",
        "",
    ));
    assert_eq!(config.services[0].gue_port, 5555);
    // Lenient: a tunnel type on a service without tunnelled reals is kept, unused.
    let config = parse_ok(&minimal_with_service("    tunnel: gue\n", ""));
    assert_eq!(config.services[0].tunnel, Tunnel::Gue);

    let message = error_of(&minimal_with_service(
        "    forward: tun\n    gue_port: 5555\n",
        "",
    ));
    assert_mentions(
        &message,
        &[
            "demo.yaml:8:5:",
            "services[0].gue_port",
            "only means something with `tunnel: gue`",
            "ipip",
        ],
    );
    let message = error_of(&minimal_with_service(
        "    tunnel: gue\n    gue_port: 0\n",
        "",
    ));
    assert_mentions(
        &message,
        &["demo.yaml:8:15:", "services[0].gue_port", "other than 0"],
    );
    let message = error_of(&minimal_with_service(
        "    tunnel: gue\n    gue_port: 70000\n",
        "",
    ));
    assert_mentions(&message, &["services[0].gue_port", "out of range"]);
    let message = error_of(&minimal_with_service("    tunnel: vxlan\n", ""));
    assert_mentions(
        &message,
        &[
            "demo.yaml:7:13:",
            "services[0].tunnel",
            "unknown tunnel \"vxlan\"",
            "ipip, gue",
        ],
    );
}

#[test]
fn snat_pool_is_distinct_addresses_of_the_vips_family_at_most_eight() {
    let config = parse_ok(&minimal_with_service(
        "    forward: fullnat\n    snat_pool: [10.0.0.2, 10.0.0.3]\n",
        "",
    ));
    assert_eq!(
        config.services[0].snat_pool,
        vec![ip("10.0.0.2"), ip("10.0.0.3")]
    );
    // Lenient: kept, unused, on a service without full-NAT reals.
    parse_ok(&minimal_with_service("    snat_pool: [10.0.0.2]\n", ""));

    let nine: Vec<String> = (2..11).map(|host| format!("10.0.0.{host}")).collect();
    let message = error_of(&minimal_with_service(
        &format!(
            "    forward: fullnat\n    snat_pool: [{}]\n",
            nine.join(", ")
        ),
        "",
    ));
    assert_mentions(
        &message,
        &[
            "demo.yaml:8:16:",
            "services[0].snat_pool",
            "9 addresses",
            "at most 8",
        ],
    );
    let message = error_of(&minimal_with_service(
        "    forward: fullnat\n    snat_pool: [10.0.0.2, 2001:db8::2]\n",
        "",
    ));
    assert_mentions(
        &message,
        &[
            "demo.yaml:8:27:",
            "services[0].snat_pool[1]",
            "2001:db8::2 is IPv6",
            "VIP's family",
        ],
    );
    let message = error_of(&minimal_with_service(
        "    snat_pool: [10.0.0.2, 10.0.0.2]\n",
        "",
    ));
    assert_mentions(
        &message,
        &["services[0].snat_pool[1]", "listed twice", "snat_pool[0]"],
    );
    let message = error_of(&minimal_with_service("    snat_pool: [10.0.0.300]\n", ""));
    assert_mentions(
        &message,
        &["services[0].snat_pool[0]", "invalid IP address"],
    );
    let message = error_of(&minimal_with_service("    snat_pool: [224.0.0.1]\n", ""));
    assert_mentions(&message, &["services[0].snat_pool[0]", "multicast"]);
    // A VIP (its own, or another service's) is never a local address.
    let message = error_of(&minimal_with_service(
        "    forward: fullnat\n    snat_pool: [10.0.0.2, 192.0.2.10]\n",
        "",
    ));
    assert_mentions(
        &message,
        &[
            "services[0].snat_pool[1]",
            "192.0.2.10 is the VIP of services[0]",
            "balancer's own",
        ],
    );
}

#[test]
fn tunnel_source_has_at_most_one_address_per_family() {
    let config = parse_ok(&minimal_with_service(
        "    forward: tun\n    tunnel_source: [10.0.0.2, 2001:db8::2]\n",
        "      - {address: 2001:db8::12}\n",
    ));
    assert_eq!(
        config.services[0].tunnel_source,
        vec![
            ip("10.0.0.2"),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2))
        ]
    );
    let message = error_of(&minimal_with_service(
        "    forward: tun\n    tunnel_source: [10.0.0.2, 10.0.0.3]\n",
        "",
    ));
    assert_mentions(
        &message,
        &[
            "demo.yaml:8:31:",
            "services[0].tunnel_source[1]",
            "a second IPv4 address",
            "tunnel_source[0]",
        ],
    );
    let message = error_of(&minimal_with_service("    tunnel_source: [::1]\n", ""));
    assert_mentions(&message, &["services[0].tunnel_source[0]", "loopback"]);
}

#[test]
fn mtu_overhead_is_the_largest_over_the_tunnelled_reals() {
    let overhead = |service_extra: &str, real_extra: &str| {
        parse_ok(&minimal_with_service(service_extra, real_extra)).services[0].mtu_overhead()
    };
    assert_eq!(overhead("", ""), 0, "dr adds nothing");
    assert_eq!(overhead("    forward: nat\n", ""), 0, "nor does nat");
    assert_eq!(overhead("    forward: tun\n", ""), 20, "IPIP in IPv4");
    assert_eq!(
        overhead("    forward: tun\n", "      - {address: 2001:db8::12}\n"),
        40,
        "IPIP in IPv6 for one real"
    );
    assert_eq!(overhead("    forward: tun\n    tunnel: gue\n", ""), 28);
    assert_eq!(
        overhead(
            "    forward: tun\n    tunnel: gue\n",
            "      - {address: 2001:db8::12}\n"
        ),
        48
    );
}
