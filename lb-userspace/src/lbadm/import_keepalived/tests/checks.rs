//! keepalived's checkers → `health_check`: `rise: 1`, `fall: retry + 1`,
//! `interval: delay_loop`, `timeout: connect_timeout`, each inherited checker → real →
//! virtual server → keepalived's default; one check per service.

use std::time::Duration;

use super::*;
use crate::config::{CheckKind, HealthCheckConfig, HttpCheck, OnFailure};

fn check_of(converted: &Converted) -> HealthCheckConfig {
    converted.config.services[0]
        .health_check
        .clone()
        .unwrap_or_else(|| panic!("no health_check in\n{}", converted.yaml))
}

#[test]
fn keepalived_defaults_check_every_60s_and_take_a_real_out_after_two_failures() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        TCP_CHECK {
        }
    }
}
",
    );
    let check = check_of(&converted);
    assert_eq!(check.kind, CheckKind::Tcp);
    assert_eq!(
        check.interval,
        Duration::from_secs(60),
        "delay_loop's default"
    );
    assert_eq!(
        check.timeout,
        Duration::from_secs(5),
        "connect_timeout's default"
    );
    assert_eq!((check.rise, check.fall), (1, 2), "retry's default is 1");
    assert_eq!(converted.listed, [], "nothing written is left out");
}

#[test]
fn timing_is_inherited_checker_then_real_then_virtual_server() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    delay_loop 9
    retry 4
    connect_timeout 1.5
    real_server 10.0.0.11 80 {
        connect_timeout 2
        TCP_CHECK {
            delay_loop 3
        }
    }
}
",
    );
    let check = check_of(&converted);
    assert_eq!(
        check.interval,
        Duration::from_secs(3),
        "the checker's delay_loop"
    );
    assert_eq!(
        check.timeout,
        Duration::from_secs(2),
        "the real's connect_timeout"
    );
    assert_eq!(
        check.fall, 5,
        "the virtual server's retry 4, plus the first failure"
    );
    assert_eq!(check.rise, 1);
    assert_eq!(converted.listed, []);
}

#[test]
fn a_delay_before_retry_other_than_delay_loop_is_listed_once_where_written() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    delay_loop 10
    delay_before_retry 1
    real_server 10.0.0.11 80 {
        TCP_CHECK {
            retry 3
        }
    }
    real_server 10.0.0.12 80 {
        TCP_CHECK {
            retry 3
        }
    }
}
",
    );
    assert_eq!(lines(&converted), [(5, "delay_before_retry")]);
    let reason = reason(&converted, 5, "delay_before_retry");
    assert!(reason.contains("after 4 failed checks, 40s"), "{reason}");
    assert!(reason.contains("about 10s + 3 × 1s"), "{reason}");
}

#[test]
fn values_beyond_lbds_bounds_are_clamped_and_listed() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        TCP_CHECK {
            delay_loop 0.05
            connect_timeout 1
            retry 500
        }
    }
}
",
    );
    let check = check_of(&converted);
    assert_eq!(check.interval, Duration::from_millis(100));
    assert_eq!(check.timeout, Duration::from_millis(100));
    assert_eq!(check.fall, 100);
    assert_eq!(
        lines(&converted),
        [(6, "delay_loop"), (7, "connect_timeout"), (8, "retry")]
    );
}

#[test]
fn reals_whose_checks_differ_get_the_first_reals_check_and_are_listed() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        TCP_CHECK {
            connect_port 8080
        }
    }
    real_server 10.0.0.12 80 {
        TCP_CHECK {
            connect_port 8080
        }
    }
    real_server 10.0.0.13 80 {
        TCP_CHECK {
            connect_port 9090
            bind_port 5000
        }
    }
    real_server 10.0.0.14 80 {
    }
}
",
    );
    assert_eq!(check_of(&converted).port, Some(8080));
    // The third real's check is listed whole (its bind_port with it); the fourth has none.
    assert_eq!(lines(&converted), [(15, "TCP_CHECK"), (20, "real_server")]);
    let differs = reason(&converted, 15, "TCP_CHECK");
    assert!(
        differs.contains(
            "differs from the service's check (TCP_CHECK at keepalived.conf:5): port 9090, not 8080"
        ),
        "{differs}"
    );
    let unchecked = reason(&converted, 20, "real_server");
    assert!(unchecked.contains("has no checker"), "{unchecked}");
}

#[test]
fn the_same_check_on_different_real_ports_is_one_check() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method NAT
    real_server 10.0.0.11 8080 {
        TCP_CHECK {
            connect_port 8080
        }
    }
    real_server 10.0.0.12 8081 {
        TCP_CHECK {
            connect_port 8081
        }
    }
}
",
    );
    assert_eq!(check_of(&converted).port, None, "each real's own port");
    assert_eq!(converted.listed, []);
}

#[test]
fn a_second_checker_and_checks_lbd_lacks_are_listed_with_their_consequence() {
    let converted = convert(
        "virtual_server 192.0.2.10 443 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 443 {
        SSL_GET {
            url {
                path /
            }
        }
        TCP_CHECK {
        }
        TCP_CHECK {
            connect_port 8443
        }
    }
    real_server 10.0.0.12 443 {
        TCP_CHECK {
        }
    }
}
",
    );
    assert_eq!(check_of(&converted).kind, CheckKind::Tcp);
    assert_eq!(lines(&converted), [(5, "SSL_GET"), (12, "TCP_CHECK")]);
    let ssl = reason(&converted, 5, "SSL_GET");
    assert!(ssl.starts_with("lbd has no TLS (HTTPS) checks"), "{ssl}");
    assert!(
        ssl.contains("checked with the service's (TCP_CHECK at keepalived.conf:10)"),
        "{ssl}"
    );
    let second = reason(&converted, 12, "TCP_CHECK");
    assert!(second.contains("a second checker"), "{second}");
}

#[test]
fn http_get_takes_the_first_url_and_lists_what_it_cannot_check() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    virtualhost www.example.com
    real_server 10.0.0.11 80 {
        HTTP_GET {
            url {
                path /status?full=1
                status_code 200-204 205-299
                digest 9b3a0c85a887a256d6939da88aabd8cd
            }
            url {
                path /other
            }
            http_protocol 1.0
        }
    }
}
",
    );
    assert_eq!(
        check_of(&converted).kind,
        CheckKind::Http(HttpCheck {
            path: "/status?full=1".into(),
            expect_status: 200..=299,
            host: Some("www.example.com".into()),
            expect_body: None,
        })
    );
    assert_eq!(
        lines(&converted),
        [(10, "digest"), (12, "url"), (15, "http_protocol")]
    );
}

#[test]
fn status_codes_that_are_not_one_range_keep_the_first() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        HTTP_GET {
            url {
                path /
                status_code 200 301
            }
        }
    }
}
",
    );
    let CheckKind::Http(http) = check_of(&converted).kind else {
        panic!("not http");
    };
    assert_eq!(http.expect_status, 200..=200);
    assert_eq!(lines(&converted), [(8, "status_code")]);
}

#[test]
fn inhibit_on_failure_is_per_service() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        inhibit_on_failure
        TCP_CHECK {
        }
    }
    real_server 10.0.0.12 80 {
        TCP_CHECK {
        }
    }
}
",
    );
    assert_eq!(converted.config.services[0].on_failure, OnFailure::Inhibit);
    assert_eq!(lines(&converted), [(9, "real_server")]);
}

#[test]
fn without_a_converted_check_inhibit_on_failure_is_listed() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    inhibit_on_failure
    real_server 10.0.0.11 80 {
        MISC_CHECK {
            misc_path /bin/true
        }
    }
}
",
    );
    assert_eq!(converted.config.services[0].health_check, None);
    assert_eq!(
        lines(&converted),
        [(4, "inhibit_on_failure"), (6, "MISC_CHECK")]
    );
}

#[test]
fn bindto_becomes_the_source_when_every_real_can_be_reached_from_it() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method TUN
    real_server 10.0.0.11 80 {
        TCP_CHECK {
            bindto 10.0.0.2
        }
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method TUN
    real_server 10.0.0.11 80 {
        TCP_CHECK {
            bindto 10.0.0.2
        }
    }
    real_server 2001:db8::11 80 {
        TCP_CHECK {
            bindto 2001:db8::2
        }
    }
}
",
    );
    let services = &converted.config.services;
    let source = |index: usize| services[index].health_check.as_ref().unwrap().source;
    assert_eq!(source(0), Some("10.0.0.2".parse().unwrap()));
    assert_eq!(source(1), None, "no one address reaches both families");
    assert_eq!(lines(&converted), [(15, "bindto"), (20, "bindto")]);
}

#[test]
fn a_dr_reals_check_goes_to_the_port_written_as_keepalived_s_does() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 8080 {
        TCP_CHECK {
        }
    }
    real_server 10.0.0.12 8080 {
        TCP_CHECK {
        }
    }
}
virtual_server 192.0.2.20 0 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.13 8443 {
        TCP_CHECK {
        }
    }
}
",
    );
    let services = &converted.config.services;
    assert_eq!(services[0].reals[0].port, 80, "DR keeps the service's port");
    let port = |index: usize| services[index].health_check.as_ref().unwrap().port;
    assert_eq!(port(0), Some(8080), "keepalived checks the port written");
    assert_eq!(
        port(1),
        Some(8443),
        "an all-ports service's check needs none more"
    );
    assert_eq!(
        lines(&converted),
        [(4, "real_server"), (8, "real_server"), (16, "real_server")]
    );
}

#[test]
fn a_virtual_servers_inhibit_on_failure_inhibits_whatever_its_argument() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    inhibit_on_failure off
    real_server 10.0.0.11 80 {
        TCP_CHECK {
        }
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method DR
    inhibit_on_failure on
    real_server 10.0.0.12 80 {
        inhibit_on_failure off
        TCP_CHECK {
        }
    }
}
",
    );
    let on_failure: Vec<OnFailure> = converted
        .config
        .services
        .iter()
        .map(|service| service.on_failure)
        .collect();
    assert_eq!(
        on_failure,
        [OnFailure::Inhibit, OnFailure::Remove],
        "a real's own argument counts"
    );
    assert_eq!(lines(&converted), [(4, "inhibit_on_failure")]);
}

#[test]
fn every_status_code_line_counts_as_keepalived_ors_them() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        HTTP_GET {
            url {
                path /
                status_code 200
                status_code 99 201-204
            }
        }
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.12 80 {
        HTTP_GET {
            url {
                status_code 301
                path /
                status_code 200 302
            }
        }
    }
}
",
    );
    let expected: Vec<_> = converted
        .config
        .services
        .iter()
        .map(
            |service| match &service.health_check.as_ref().unwrap().kind {
                CheckKind::Http(http) => http.expect_status.clone(),
                _ => panic!("not http"),
            },
        )
        .collect();
    assert_eq!(expected, [200..=204, 301..=302]);
    assert_eq!(lines(&converted), [(9, "status_code"), (20, "status_code")]);
    assert!(reason(&converted, 9, "status_code").starts_with("\"99\" is not a status code"));
    assert!(reason(&converted, 20, "status_code").contains("it expects 301-302"));
}

#[test]
fn a_url_without_a_path_is_dropped_as_keepalived_drops_it_not_the_check() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        HTTP_GET {
            url {
                status_code 200
            }
            url {
                path /healthz
            }
            url {
                path /other
            }
        }
    }
}
",
    );
    let CheckKind::Http(http) = check_of(&converted).kind else {
        panic!("not http");
    };
    assert_eq!(http.path, "/healthz");
    assert_eq!(lines(&converted), [(6, "url"), (12, "url")]);
    assert!(reason(&converted, 6, "url").starts_with("a url without a path"));
}

#[test]
fn retry_0_counts_only_in_a_checker_and_delay_before_retry_0_is_a_time() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    retry 0
    real_server 10.0.0.11 80 {
        retry 0
        TCP_CHECK {
        }
    }
}
virtual_server 192.0.2.20 80 {
    protocol TCP
    lvs_method DR
    delay_before_retry 0
    real_server 10.0.0.12 80 {
        TCP_CHECK {
            retry 0
        }
    }
}
",
    );
    let fall: Vec<u32> = converted
        .config
        .services
        .iter()
        .map(|service| service.health_check.as_ref().unwrap().fall)
        .collect();
    // keepalived ignores retry 0 in a virtual or real server: the default 1 applies.
    assert_eq!(fall, [2, 1]);
    assert_eq!(lines(&converted), [(4, "retry"), (6, "retry")]);
}
