//! `lbadm -S`: ipvsadm `-S`, the running services as `-A`/`-a` rules that `lbadm -R` reads
//! back to the same state.
//!
//! Lines follow ipvsadm's (`-A -t 192.0.2.10:80 -s wrr -p 300`, `-a -t 192.0.2.10:80 -r
//! 192.0.2.11:80 -g -w 1`), with lbd's own options after ipvsadm's where a service has
//! something ipvsadm cannot say (`--forward fullnat`, `--check '{type: tcp}'`, …). Services
//! and reals keep the config's order rather than ipvsadm's sorted one: the order of reals is
//! part of a Maglev table, so a restore must not change it. Values with spaces are quoted as a
//! shell would read them, so the rules also work as `lbadm` command lines.

use std::{fmt::Write as _, net::IpAddr};

use crate::config::{
    CheckKind, Config, DEFAULT_GUE_PORT, Forward, HealthCheckConfig, HttpCheck, OnFailure,
    RealConfig, ServiceConfig, Tunnel, duration_text, netmask_text, socket_text,
};

/// The rules of every service of `config`.
pub fn rules(config: &Config) -> String {
    let mut out = String::new();
    for service in &config.services {
        let name = format!(
            "{} {}",
            if service.protocol == crate::config::Protocol::Tcp {
                "-t"
            } else {
                "-u"
            },
            socket_text(service.vip, service.port)
        );
        let _ = write!(out, "-A {name} -s {}", service.scheduler.name());
        if let Some(persistence) = service.persistence {
            let _ = write!(out, " -p {}", persistence.timeout.as_secs());
            if let Some(mask) = netmask_text(service.vip, persistence.prefix) {
                let _ = write!(out, " -M {mask}");
            }
        }
        out.push_str(&extras(service));
        out.push('\n');
        for real in &service.reals {
            let _ = writeln!(
                out,
                "-a {name} -r {} {} -w {}",
                socket_text(real.address, real.port),
                method(real),
                real.weight
            );
        }
    }
    out
}

/// ipvsadm's switch for a real's method; full NAT has none, so ours.
fn method(real: &RealConfig) -> &'static str {
    match real.forward {
        Forward::Dr => "-g",
        Forward::Tun => "-i",
        Forward::Nat => "-m",
        Forward::Fullnat => "--forward fullnat",
    }
}

/// lbd's options for whatever of `service` is not its default.
fn extras(service: &ServiceConfig) -> String {
    let mut out = String::new();
    if service.forward != Forward::Dr {
        let _ = write!(out, " --forward {}", service.forward.name());
    }
    if service.tunnel != Tunnel::Ipip {
        let _ = write!(out, " --tunnel {}", service.tunnel.name());
    }
    if service.gue_port != DEFAULT_GUE_PORT {
        let _ = write!(out, " --gue-port {}", service.gue_port);
    }
    for (addresses, option) in [
        (&service.snat_pool, "--snat-pool"),
        (&service.tunnel_source, "--tunnel-source"),
    ] {
        if !addresses.is_empty() {
            let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
            let _ = write!(out, " {option} {}", list.join(","));
        }
    }
    if service.mh_table_size != crate::schedule::maglev::DEFAULT_TABLE_SIZE {
        let _ = write!(out, " --mh-table-size {}", service.mh_table_size);
    }
    if let Some(check) = &service.health_check {
        let _ = write!(out, " --check {}", shell_quote(&check_yaml(check)));
    }
    if service.on_failure != OnFailure::Remove {
        let _ = write!(out, " --on-failure {}", service.on_failure.name());
    }
    if let Some(sorry) = service.sorry_server {
        let _ = write!(
            out,
            " --sorry-server {}",
            socket_text(sorry.address, sorry.port)
        );
    }
    out
}

/// A health check as the config's `health_check` in YAML flow style, defaults left out.
pub fn check_yaml(check: &HealthCheckConfig) -> String {
    let mut keys: Vec<String> = Vec::new();
    match &check.kind {
        CheckKind::None => keys.push("type: none".into()),
        CheckKind::Tcp => keys.push("type: tcp".into()),
        CheckKind::Http(http) => {
            keys.push("type: http".into());
            if http.path != HttpCheck::DEFAULT_PATH {
                keys.push(format!("path: {}", yaml_string(&http.path)));
            }
            if http.expect_status != HttpCheck::DEFAULT_EXPECT_STATUS {
                let (low, high) = (http.expect_status.start(), http.expect_status.end());
                keys.push(if low == high {
                    format!("expect_status: {low}")
                } else {
                    format!("expect_status: {low}-{high}")
                });
            }
            if let Some(host) = &http.host {
                keys.push(format!("host: {}", yaml_string(host)));
            }
            if let Some(body) = &http.expect_body {
                keys.push(format!("expect_body: {}", yaml_string(body)));
            }
        }
    }
    if let Some(port) = check.port {
        keys.push(format!("port: {port}"));
    }
    if check.interval != HealthCheckConfig::DEFAULT_INTERVAL {
        keys.push(format!("interval: {}", duration_text(check.interval)));
    }
    if check.timeout != HealthCheckConfig::DEFAULT_TIMEOUT {
        keys.push(format!("timeout: {}", duration_text(check.timeout)));
    }
    if check.rise != HealthCheckConfig::DEFAULT_RISE {
        keys.push(format!("rise: {}", check.rise));
    }
    if check.fall != HealthCheckConfig::DEFAULT_FALL {
        keys.push(format!("fall: {}", check.fall));
    }
    if let Some(source) = check.source {
        keys.push(format!("source: {}", yaml_string(&source.to_string())));
    }
    format!("{{{}}}", keys.join(", "))
}

/// A YAML double-quoted string (JSON's escapes are YAML's).
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// `text` as one shell word: as it is when it needs no quoting, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:,=@%+[]".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, lbadm::restore};

    const IPVSADM_ONLY: &str = "
instance: t
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, scheduler: wrr, persistence: 300s,
     persistence_netmask: 255.255.255.0,
     reals: [{address: 192.0.2.11, weight: 3}, {address: 192.0.2.12, weight: 2}]}
  - {vip: 192.0.2.100, port: 53, protocol: udp, scheduler: rr,
     reals: [{address: 192.0.2.13, port: 5353, forward: nat}]}
  - {vip: '2001:db8::100', port: 443, protocol: tcp, scheduler: mh, persistence: 600s,
     persistence_netmask: 64, reals: [{address: '2001:db8::11'}]}
";

    /// Everything ipvsadm cannot say, and a real overriding its service's method.
    const WITH_EXTRAS: &str = "
instance: t
interfaces: [{name: eth0}]
timeouts: {tcp: 600s}
services:
  - vip: 192.0.2.10
    port: 80
    protocol: tcp
    scheduler: mh
    mh_table_size: 251
    forward: tun
    tunnel: gue
    gue_port: 7000
    tunnel_source: [192.0.2.2]
    on_failure: inhibit
    sorry_server: 192.0.2.99:80
    health_check: {type: http, path: /health%20z, expect_status: 204, host: \"it's.example\",
                   expect_body: \"ok, \\\"fine\\\"\", interval: 500ms, rise: 1, fall: 2}
    reals:
      - {address: 192.0.2.11, weight: 0}
      - {address: 192.0.2.12, forward: fullnat, port: 8080}
      - {address: '2001:db8::12'}
    snat_pool: [192.0.2.3, 192.0.2.4]
  - {vip: 192.0.2.10, port: 0, protocol: udp, persistence: 60s,
     health_check: {type: tcp, port: 22}, reals: [{address: 192.0.2.11, forward: dr}]}
";

    #[test]
    fn rules_are_ipvsadms() {
        let config = config::parse(IPVSADM_ONLY, "test.yaml").unwrap();
        let golden = include_str!("table/golden/save.txt");
        assert_eq!(rules(&config), golden, "\n{}", rules(&config));
    }

    /// `-S`, then `-C` and `-R` of its output on an empty table, gives the same services.
    #[test]
    fn restoring_saved_rules_gives_the_same_services() {
        for text in [IPVSADM_ONLY, WITH_EXTRAS] {
            let (config, _) = config::parse_with_document(text, "test.yaml").unwrap();
            let saved = rules(&config);
            let edits = restore::edits(&saved).unwrap_or_else(|error| panic!("{error}\n{saved}"));
            let (_, mut document) = config::parse_with_document(
                "instance: t\ninterfaces: [{name: eth0}]\n",
                "empty.yaml",
            )
            .unwrap();
            for (_, edit) in &edits {
                edit.apply(&mut document).unwrap();
            }
            let running =
                config::from_document(&document).unwrap_or_else(|error| panic!("{error}\n{saved}"));
            assert_eq!(running.services, config.services, "\n{saved}");
            assert_eq!(rules(&running), saved);
        }
    }
}
