//! Config tests for `metrics: {listen: ADDR:PORT}`.

use super::*;

const BASE: &str = "instance: a\ninterfaces: [{name: eth0}]\n";

#[test]
fn metrics_listen_takes_an_address_of_either_family() {
    let config = parse_ok(&format!("{BASE}metrics:\n  listen: 127.0.0.1:9105\n"));
    assert_eq!(
        config.metrics_listen,
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9105)))
    );
    let config = parse_ok(&format!("{BASE}metrics: {{listen: \"[::]:9105\"}}\n"));
    assert_eq!(config.metrics_listen, Some("[::]:9105".parse().unwrap()));
    assert_eq!(parse_ok(BASE).metrics_listen, None);
}

#[test]
fn bad_metrics_listen_names_key_and_line() {
    for (value, expected) in [
        ("localhost:9105", "invalid address \"localhost:9105\""),
        ("127.0.0.1", "invalid address \"127.0.0.1\""),
        ("127.0.0.1:65536", "invalid address"),
        ("\"::1:9105\"", "[::1]:9105"),
        ("127.0.0.1:0", "the port must not be 0"),
    ] {
        let message = error_of(&format!("{BASE}metrics:\n  listen: {value}\n"));
        assert_mentions(&message, &["demo.yaml:4:11:", "metrics.listen", expected]);
    }
}

#[test]
fn metrics_without_listen_is_an_error_not_silence() {
    let message = error_of(&format!("{BASE}metrics: {{}}\n"));
    assert_mentions(
        &message,
        &["metrics.listen", "required key is missing", "ADDR:PORT"],
    );
    let message = error_of(&format!("{BASE}metrics:\n"));
    assert_mentions(&message, &["demo.yaml:3:", "metrics", "needs a value"]);
}

#[test]
fn unknown_key_under_metrics_is_rejected() {
    let message = error_of(&format!(
        "{BASE}metrics:\n  listen: 127.0.0.1:9105\n  path: /stats\n"
    ));
    assert_mentions(&message, &["demo.yaml:5:3:", "metrics.path", "unknown key"]);
}
