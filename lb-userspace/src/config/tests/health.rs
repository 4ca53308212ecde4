//! Config tests for `health_check`, `on_failure` and `sorry_server`: the defaults, and an
//! error naming key and line for every rule.

use std::time::Duration;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The service of [`minimal_with_service`] with `service_extra`, parsed.
fn service_with(service_extra: &str) -> ServiceConfig {
    parse_ok(&minimal_with_service(service_extra, ""))
        .services
        .remove(0)
}

/// Expects each `(service_extra, fragments)` to fail with a message holding the fragments.
#[track_caller]
fn assert_service_errors(cases: &[(&str, &[&str])]) {
    for (service_extra, expected) in cases {
        assert_mentions(
            &error_of(&minimal_with_service(service_extra, "")),
            expected,
        );
    }
}

#[test]
fn tcp_check_gets_the_defaults() {
    let service = service_with("    health_check: {type: tcp}\n");
    assert_eq!(
        service.health_check,
        Some(HealthCheckConfig {
            kind: CheckKind::Tcp,
            port: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            source: None,
        })
    );
    assert_eq!(service.on_failure, OnFailure::Remove);
    assert_eq!(service.sorry_server, None);

    // Without the key: no check, reals always up.
    let service = service_with("");
    assert_eq!(service.health_check, None);
    assert_eq!(service.on_failure, OnFailure::Remove);
}

#[test]
fn http_check_gets_the_defaults() {
    let service = service_with("    health_check: {type: http}\n");
    let check = service.health_check.unwrap();
    assert_eq!(
        check.kind,
        CheckKind::Http(HttpCheck {
            path: "/".into(),
            expect_status: 200..=299,
            host: None,
            expect_body: None,
        })
    );
    assert_eq!(
        (check.interval, check.timeout),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!((check.rise, check.fall, check.port), (2, 3, None));
}

#[test]
fn every_key_parses() {
    let service = service_with(
        "    health_check:
      type: http
      port: 8080
      path: /healthz?full=1
      expect_status: 204
      host: www.example.com
      expect_body: ok
      interval: 500ms
      timeout: 300ms
      rise: 1
      fall: 5
      source: 10.0.0.2
    on_failure: inhibit
    sorry_server: 10.0.0.99:80
",
    );
    assert_eq!(
        service.health_check,
        Some(HealthCheckConfig {
            kind: CheckKind::Http(HttpCheck {
                path: "/healthz?full=1".into(),
                expect_status: 204..=204,
                host: Some("www.example.com".into()),
                expect_body: Some("ok".into()),
            }),
            port: Some(8080),
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(300),
            rise: 1,
            fall: 5,
            source: Some(ip("10.0.0.2")),
        })
    );
    assert_eq!(service.on_failure, OnFailure::Inhibit);
    assert_eq!(
        service.sorry_server,
        Some(SorryServer {
            address: ip("10.0.0.99"),
            port: 80
        })
    );
}

#[test]
fn expect_status_takes_a_code_or_a_range() {
    for (written, expected) in [
        ("200", 200..=200),
        ("\"200\"", 200..=200),
        ("200-399", 200..=399),
        ("\"301 - 302\"", 301..=302),
        ("100-599", 100..=599),
    ] {
        let service = service_with(&format!(
            "    health_check: {{type: http, expect_status: {written}}}\n"
        ));
        let Some(CheckKind::Http(http)) = service.health_check.map(|check| check.kind) else {
            panic!("{written}: not an HTTP check");
        };
        assert_eq!(http.expect_status, expected, "{written}");
    }
}

#[test]
fn type_none_means_no_check_but_its_keys_are_still_checked() {
    let service =
        service_with("    health_check: {type: none, interval: 5s}\n    on_failure: inhibit\n");
    assert_eq!(service.health_check, None);
    assert_eq!(service.on_failure, OnFailure::Inhibit);

    assert_service_errors(&[(
        "    health_check: {type: none, interval: 5}\n",
        &[
            "demo.yaml:7:42:",
            "services[0].health_check.interval: invalid duration",
        ],
    )]);
}

#[test]
fn a_short_interval_shortens_the_default_timeout() {
    let service = service_with("    health_check: {type: tcp, interval: 300ms}\n");
    let check = service.health_check.unwrap();
    assert_eq!(check.interval, Duration::from_millis(300));
    assert_eq!(check.timeout, Duration::from_millis(300));
}

#[test]
fn a_port_zero_service_needs_the_check_port() {
    let text = minimal_with_service("    health_check: {type: tcp, port: 8080}\n", "")
        .replace("port: 80\n", "port: 0\n");
    assert_eq!(
        parse_ok(&text).services[0]
            .health_check
            .as_ref()
            .unwrap()
            .port,
        Some(8080)
    );
    let text = minimal_with_service("    health_check: {type: tcp}\n", "")
        .replace("port: 80\n", "port: 0\n");
    assert_mentions(
        &error_of(&text),
        &[
            "demo.yaml:7:19:",
            "services[0].health_check.port: required key is missing",
            "port 0 (all ports)",
        ],
    );
}

#[test]
fn check_type_is_required_and_known() {
    assert_service_errors(&[
        (
            "    health_check:\n",
            &[
                "demo.yaml:7:",
                "services[0].health_check: needs a value",
                "remove the key",
            ],
        ),
        (
            "    health_check: {interval: 1s}\n",
            &[
                "demo.yaml:7:19:",
                "services[0].health_check.type: required key is missing",
            ],
        ),
        (
            "    health_check: {type: udp}\n",
            &[
                "demo.yaml:7:26:",
                "services[0].health_check.type: unknown check type \"udp\"",
                "tcp, http, none",
            ],
        ),
        (
            "    health_check: {type: tcp, retries: 3}\n",
            &[
                "demo.yaml:7:",
                "services[0].health_check.retries: unknown key",
                "interval",
            ],
        ),
    ]);
}

#[test]
fn http_keys_need_an_http_check() {
    for check_type in ["tcp", "none"] {
        for (key, value) in [
            ("path", "/x"),
            ("expect_status", "200"),
            ("host", "a"),
            ("expect_body", "ok"),
        ] {
            let message = error_of(&minimal_with_service(
                &format!("    health_check:\n      type: {check_type}\n      {key}: {value}\n"),
                "",
            ));
            assert_mentions(
                &message,
                &[
                    "demo.yaml:9:7:",
                    &format!(
                        "services[0].health_check.{key}: only means something with `type: http`"
                    ),
                    &format!("(this check is {check_type})"),
                ],
            );
        }
    }
}

#[test]
fn http_values_are_checked() {
    let http = |extra: &str| format!("    health_check:\n      type: http\n      {extra}\n");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            http("path: healthz"),
            vec![
                "demo.yaml:9:13:",
                "health_check.path: \"healthz\" must start with `/`",
            ],
        ),
        (
            http("path: \"/a b\""),
            vec![
                "demo.yaml:9:13:",
                "health_check.path",
                "space or control character",
            ],
        ),
        (
            http("path: \"/a\\tb\""),
            vec!["health_check.path", "space or control character"],
        ),
        (
            http("expect_status: 99"),
            vec![
                "demo.yaml:9:22:",
                "health_check.expect_status: status 99 is out of range 100..=599",
            ],
        ),
        (
            http("expect_status: 600"),
            vec!["health_check.expect_status: status 600 is out of range"],
        ),
        (
            http("expect_status: 200-600"),
            vec!["health_check.expect_status: status 600 is out of range"],
        ),
        (
            http("expect_status: 300-200"),
            vec!["demo.yaml:9:22:", "range 300-200 is backwards"],
        ),
        (
            http("expect_status: 2xx"),
            vec![
                "health_check.expect_status: invalid status \"2xx\"",
                "200-299",
            ],
        ),
        (
            http("expect_status: [200]"),
            vec![
                "demo.yaml:9:7:",
                "health_check.expect_status: invalid type: sequence, expected a status code (200) or a range (200-299)",
            ],
        ),
        (
            http("host: \"a b\""),
            vec![
                "demo.yaml:9:13:",
                "health_check.host: \"a b\" is not a host name",
            ],
        ),
        (
            http("host: \"\""),
            vec!["health_check.host: \"\" is not a host name"],
        ),
        (
            http("expect_body: \"\""),
            vec!["demo.yaml:9:20:", "health_check.expect_body: is empty"],
        ),
    ];
    for (extra, expected) in &cases {
        assert_mentions(&error_of(&minimal_with_service(extra, "")), expected);
    }
}

#[test]
fn timing_and_thresholds_are_in_range() {
    let tcp = |extra: &str| format!("    health_check:\n      type: tcp\n      {extra}\n");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            tcp("interval: 50ms"),
            vec![
                "demo.yaml:9:17:",
                "health_check.interval: 50ms is out of range: between 100ms and 3600s",
            ],
        ),
        (
            tcp("interval: 2h"),
            vec!["health_check.interval: 7200s is out of range"],
        ),
        (
            tcp("interval: 2"),
            vec!["health_check.interval: invalid duration \"2\""],
        ),
        (
            tcp("timeout: 0ms"),
            vec![
                "demo.yaml:9:16:",
                "health_check.timeout: must be longer than 0ms",
            ],
        ),
        (
            tcp("timeout: 3s"),
            vec![
                "demo.yaml:9:16:",
                "health_check.timeout: 3s is longer than the interval (2s)",
            ],
        ),
        (
            tcp("rise: 0"),
            vec![
                "demo.yaml:9:13:",
                "health_check.rise: 0 is out of range 1..=100",
            ],
        ),
        (
            tcp("fall: 101"),
            vec![
                "demo.yaml:9:13:",
                "health_check.fall: 101 is out of range 1..=100",
            ],
        ),
        (
            tcp("fall: -1"),
            vec!["health_check.fall: -1 is out of range"],
        ),
        (
            tcp("port: 0"),
            vec![
                "demo.yaml:9:13:",
                "health_check.port: port 0 is out of range 1..=65535",
            ],
        ),
        (
            tcp("port: 65536"),
            vec!["health_check.port: port 65536 is out of range 1..=65535"],
        ),
    ];
    for (extra, expected) in &cases {
        assert_mentions(&error_of(&minimal_with_service(extra, "")), expected);
    }
    // The timeout may equal the interval.
    service_with("    health_check: {type: tcp, interval: 1s, timeout: 1s}\n");
}

#[test]
fn check_source_is_a_unicast_address_of_the_reals_family_and_not_a_vip() {
    let source =
        |address: &str| format!("    health_check:\n      type: tcp\n      source: {address}\n");
    for (address, expected) in [
        (
            "224.0.0.1",
            vec![
                "demo.yaml:9:15:",
                "health_check.source: 224.0.0.1 is a multicast address",
            ],
        ),
        (
            "10.0.0.300",
            vec!["health_check.source: invalid IP address"],
        ),
        (
            "2001:db8::2",
            vec![
                "demo.yaml:9:15:",
                "health_check.source: 2001:db8::2 is IPv6 but the VIP 192.0.2.10 is IPv4",
            ],
        ),
        (
            "192.0.2.10",
            vec![
                "demo.yaml:9:15:",
                "health_check.source: 192.0.2.10 is the VIP of services[0]",
            ],
        ),
    ] {
        assert_mentions(
            &error_of(&minimal_with_service(&source(address), "")),
            &expected,
        );
    }

    // The VIP of another service is refused too.
    let text = format!(
        "{}  - {{vip: 192.0.2.20, port: 80, protocol: tcp}}\n",
        minimal_with_service(&source("192.0.2.20"), "")
    );
    assert_mentions(
        &error_of(&text),
        &[
            "demo.yaml:9:15:",
            "services[0].health_check.source: 192.0.2.20 is the VIP of services[1]",
        ],
    );

    // A tunnel service checks each real in its own family: the source must fit all of them.
    let text = minimal_with_service(
        &format!("    forward: tun\n{}", source("2001:db8::2")),
        "      - address: 2001:db8::12\n",
    )
    .replace("10.0.0.11", "2001:db8::11");
    assert_eq!(
        parse_ok(&text).services[0]
            .health_check
            .as_ref()
            .unwrap()
            .source,
        Some(ip("2001:db8::2"))
    );
    let text = minimal_with_service(
        &format!("    forward: tun\n{}", source("2001:db8::2")),
        "      - address: 2001:db8::12\n",
    );
    assert_mentions(
        &error_of(&text),
        &[
            "demo.yaml:10:15:",
            "health_check.source: 2001:db8::2 is IPv6 but reals[0] (10.0.0.11) is IPv4",
        ],
    );
}

#[test]
fn on_failure_needs_a_health_check_and_a_known_word() {
    assert_service_errors(&[
        (
            "    on_failure: inhibit\n",
            &[
                "demo.yaml:7:5:",
                "services[0].on_failure: only means something with a `health_check`",
            ],
        ),
        (
            "    health_check: {type: tcp}\n    on_failure: drop\n",
            &[
                "demo.yaml:8:17:",
                "services[0].on_failure: unknown on_failure action \"drop\"",
                "remove, inhibit",
            ],
        ),
        (
            "    health_check: {type: tcp}\n    on_failure:\n",
            &[
                "demo.yaml:8:",
                "services[0].on_failure: needs a value (remove or inhibit)",
            ],
        ),
    ]);
    for (word, expected) in [
        ("remove", OnFailure::Remove),
        ("inhibit", OnFailure::Inhibit),
    ] {
        let service = service_with(&format!(
            "    health_check: {{type: tcp}}\n    on_failure: {word}\n"
        ));
        assert_eq!(service.on_failure, expected);
        assert_eq!(expected.name().parse::<OnFailure>(), Ok(expected));
    }
}

#[test]
fn sorry_server_is_an_address_and_port_a_real_could_have() {
    let sorry = |text: &str| format!("    sorry_server: {text}\n");
    // A NAT service may map the port; a tunnel service may use either family.
    let service = service_with(&format!("    forward: nat\n{}", sorry("10.0.0.99:8080")));
    assert_eq!(
        service.sorry_server,
        Some(SorryServer {
            address: ip("10.0.0.99"),
            port: 8080
        })
    );
    let service = service_with(&format!(
        "    forward: tun\n{}",
        sorry("\"[2001:db8::99]:80\"")
    ));
    assert_eq!(
        service.sorry_server,
        Some(SorryServer {
            address: ip("2001:db8::99"),
            port: 80
        })
    );
    // IPv6 in brackets, for an IPv6 service.
    let text = minimal_with_service(&sorry("\"[2001:db8::99]:80\""), "")
        .replace("192.0.2.10", "2001:db8::10")
        .replace("10.0.0.11", "2001:db8::11");
    assert_eq!(
        parse_ok(&text).services[0].sorry_server.unwrap().address,
        ip("2001:db8::99")
    );

    assert_service_errors(&[
        (
            &sorry("10.0.0.99"),
            &[
                "demo.yaml:7:19:",
                "services[0].sorry_server: \"10.0.0.99\" has no port",
                "ADDR:PORT",
            ],
        ),
        (
            &sorry("2001:db8::99"),
            &[
                "services[0].sorry_server: \"2001:db8::99\" has no port",
                "[ADDR]:PORT",
            ],
        ),
        (
            &sorry("sorry.example.com:80"),
            &[
                "demo.yaml:7:19:",
                "services[0].sorry_server: invalid address and port",
            ],
        ),
        (
            &sorry("224.0.0.1:80"),
            &["services[0].sorry_server: 224.0.0.1 is a multicast address"],
        ),
        (
            &sorry("\"[2001:db8::99]:80\""),
            &[
                "demo.yaml:7:19:",
                "services[0].sorry_server: 2001:db8::99 is IPv6 but the VIP 192.0.2.10 is IPv4",
                "direct routing",
            ],
        ),
        (
            &sorry("10.0.0.99:8080"),
            &[
                "demo.yaml:7:19:",
                "services[0].sorry_server: dr and tun cannot change the port",
                "sorry server port 8080 differs from service port 80",
                "write its port as 80",
            ],
        ),
        (
            &sorry("10.0.0.11:80"),
            &[
                "demo.yaml:7:19:",
                "services[0].sorry_server: 10.0.0.11:80 is also services[0].reals[0]",
            ],
        ),
        (
            &sorry("192.0.2.10:80"),
            &[
                "demo.yaml:7:19:",
                "services[0].sorry_server: 192.0.2.10 is the VIP of services[0]",
            ],
        ),
        (
            "    sorry_server:\n",
            &["demo.yaml:7:", "services[0].sorry_server: needs a value"],
        ),
    ]);

    // On an all-ports service, the sorry server keeps each packet's port, as reals do.
    let text = minimal_with_service(&sorry("10.0.0.99:80"), "").replace("port: 80\n", "port: 0\n");
    assert_mentions(
        &error_of(&text),
        &[
            "services[0].sorry_server: the service has port 0 (all ports)",
            "write its port as 0",
        ],
    );
    let text = minimal_with_service(&sorry("10.0.0.99:0"), "").replace("port: 80\n", "port: 0\n");
    assert_eq!(parse_ok(&text).services[0].sorry_server.unwrap().port, 0);
}
