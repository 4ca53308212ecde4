//! The converted config and its YAML text: keys in SPEC.md's order, a comment naming where
//! each service and each VRRP instance came from.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    time::Duration,
};

use super::escape_controls;
use crate::config::{
    Forward, HttpCheck, OnFailure, Protocol, Scheduler, Tunnel, duration_text,
    ha::{TrackInterface, VirtualAddress},
};

/// Our config, as far as keepalived's says it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Converted {
    /// The keepalived file it came from, for the header.
    pub(super) source: String,
    pub(super) instance: String,
    /// Where the instance name came from, or why it is made up.
    pub(super) instance_comment: String,
    pub(super) interfaces: Vec<String>,
    pub(super) interfaces_comment: String,
    pub(super) services: Vec<Service>,
    pub(super) timeouts: Timeouts,
    /// Map sizes beyond lbd's defaults that the services need.
    pub(super) limits: Limits,
    pub(super) vrrp: Vec<Vrrp>,
    pub(super) sync: Option<Sync>,
}

/// `None`: lbd's default is enough.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Limits {
    pub(super) services: Option<u32>,
    pub(super) reals: Option<u32>,
    pub(super) table_slots: Option<u32>,
}

/// Seconds; `None`: the kernel's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Timeouts {
    pub(super) tcp: Option<u32>,
    pub(super) tcp_fin: Option<u32>,
    pub(super) udp: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Service {
    /// `keepalived.conf:12: virtual_server 192.0.2.10 80`, and the defaults spelled out.
    pub(super) comment: String,
    pub(super) vip: IpAddr,
    pub(super) port: u16,
    pub(super) protocol: Protocol,
    pub(super) scheduler: Scheduler,
    pub(super) forward: Forward,
    /// `Some` for a service with tunnelled reals.
    pub(super) tunnel: Option<Tunnel>,
    pub(super) gue_port: Option<u16>,
    pub(super) sorry_server: Option<SocketAddr>,
    /// Seconds.
    pub(super) persistence: Option<u32>,
    /// Prefix length.
    pub(super) persistence_netmask: Option<u8>,
    pub(super) health_check: Option<Check>,
    pub(super) on_failure: OnFailure,
    pub(super) reals: Vec<Real>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Check {
    pub(super) kind: CheckKind,
    /// `None`: the real's port.
    pub(super) port: Option<u16>,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) rise: u32,
    pub(super) fall: u32,
    pub(super) source: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CheckKind {
    Tcp,
    Http {
        path: String,
        expect_status: RangeInclusive<u16>,
        host: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Real {
    pub(super) address: IpAddr,
    pub(super) port: u16,
    pub(super) weight: u32,
    /// `Some` when it differs from the service's.
    pub(super) forward: Option<Forward>,
}

/// One `vrrp_instance`, an entry of `vrrp:`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Vrrp {
    /// Where it came from, and what the conversion changed.
    pub(super) comment: String,
    pub(super) name: String,
    pub(super) interface: String,
    pub(super) vrid: u8,
    /// `None`: lbd's default, keepalived's.
    pub(super) priority: Option<u8>,
    pub(super) advert_interval: Option<Duration>,
    pub(super) preempt: bool,
    pub(super) preempt_delay: Option<Duration>,
    /// `master` or `backup`.
    pub(super) initial_state: Option<&'static str>,
    pub(super) unicast_peers: Vec<IpAddr>,
    pub(super) source_address: Option<IpAddr>,
    /// Never empty, one family.
    pub(super) virtual_addresses: Vec<VirtualAddress>,
    /// With lbd's weights.
    pub(super) track_interfaces: Vec<TrackInterface>,
    pub(super) sync_group: Option<String>,
    /// `on_master`, `on_backup`, `on_fault`, `on_stop` → the command.
    pub(super) hooks: Vec<(&'static str, String)>,
}

/// `sync:`, with the VRRP peer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sync {
    pub(super) comment: String,
    pub(super) peer: IpAddr,
}

/// The config as YAML text.
pub(super) fn render(config: &Converted) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        "",
        &format!(
            "Converted from {} by lbadm import-keepalived.\nWhat it could not convert is \
             listed on stderr; review both before use.",
            config.source
        ),
    );
    comment(&mut out, "", &config.instance_comment);
    let _ = writeln!(out, "instance: {}", scalar(&config.instance));
    comment(&mut out, "", &config.interfaces_comment);
    out.push_str("interfaces:\n");
    for name in &config.interfaces {
        let _ = writeln!(out, "  - name: {}", scalar(name));
    }
    if config.services.is_empty() {
        out.push_str("services: []\n");
    } else {
        out.push_str("services:\n");
    }
    for service in &config.services {
        render_service(&mut out, service);
    }
    let timeouts = &config.timeouts;
    let timeouts = [
        ("tcp", timeouts.tcp),
        ("tcp_fin", timeouts.tcp_fin),
        ("udp", timeouts.udp),
    ];
    if timeouts.iter().any(|(_, seconds)| seconds.is_some()) {
        out.push_str("timeouts:\n");
        for (name, seconds) in timeouts {
            if let Some(seconds) = seconds {
                let _ = writeln!(out, "  {name}: {seconds}s");
            }
        }
    }
    let limits = [
        ("services", config.limits.services),
        ("reals", config.limits.reals),
        ("table_slots", config.limits.table_slots),
    ];
    if limits.iter().any(|(_, limit)| limit.is_some()) {
        out.push_str(
            "# limits: lbd's map sizes, raised from its defaults to hold these services\nlimits:\n",
        );
        for (name, limit) in limits {
            if let Some(limit) = limit {
                let _ = writeln!(out, "  {name}: {limit}");
            }
        }
    }
    if !config.vrrp.is_empty() {
        comment(
            &mut out,
            "",
            "vrrp: keepalived's vrrp_instances. lbd speaks VRRPv3 (RFC 5798), which keepalived\n\
             speaks with `vrrp_version 3` only (its default is VRRPv2): a keepalived peer needs\n\
             it to hear this node.",
        );
        if config
            .vrrp
            .iter()
            .any(|instance| !instance.hooks.is_empty())
        {
            comment(
                &mut out,
                "",
                "lbd runs each hook with INSTANCE, the instance's name, the new state and the\n\
                 priority appended: the arguments keepalived gives notify.",
            );
        }
        out.push_str("vrrp:\n");
        for instance in &config.vrrp {
            render_vrrp(&mut out, instance);
        }
    }
    if let Some(sync) = &config.sync {
        comment(&mut out, "", &sync.comment);
        out.push_str("sync:\n");
        let _ = writeln!(out, "  peer: {}", scalar(&sync.peer.to_string()));
    }
    out
}

fn render_service(out: &mut String, service: &Service) {
    comment(out, "  ", &service.comment);
    let _ = writeln!(out, "  - vip: {}", scalar(&service.vip.to_string()));
    let mut key = |key: &str, value: String| {
        let _ = writeln!(out, "    {key}: {value}");
    };
    key("port", service.port.to_string());
    key("protocol", service.protocol.name().into());
    key("scheduler", service.scheduler.name().into());
    key("forward", service.forward.name().into());
    if let Some(tunnel) = service.tunnel {
        key("tunnel", tunnel.name().into());
    }
    if let Some(port) = service.gue_port {
        key("gue_port", port.to_string());
    }
    if let Some(sorry) = service.sorry_server {
        key("sorry_server", scalar(&sorry.to_string()));
    }
    if let Some(seconds) = service.persistence {
        key("persistence", format!("{seconds}s"));
    }
    if let Some(prefix) = service.persistence_netmask {
        key("persistence_netmask", prefix.to_string());
    }
    if let Some(check) = &service.health_check {
        render_check(out, check);
    }
    if service.on_failure != OnFailure::Remove {
        let _ = writeln!(out, "    on_failure: {}", service.on_failure.name());
    }
    if service.reals.is_empty() {
        out.push_str("    reals: []\n");
        return;
    }
    out.push_str("    reals:\n");
    for real in &service.reals {
        let _ = writeln!(
            out,
            "      - address: {}",
            scalar(&real.address.to_string())
        );
        let _ = writeln!(out, "        port: {}", real.port);
        if real.weight != 1 {
            let _ = writeln!(out, "        weight: {}", real.weight);
        }
        if let Some(forward) = real.forward {
            let _ = writeln!(out, "        forward: {}", forward.name());
        }
    }
}

fn render_check(out: &mut String, check: &Check) {
    out.push_str("    health_check:\n");
    let mut key = |key: &str, value: String| {
        let _ = writeln!(out, "      {key}: {value}");
    };
    key(
        "type",
        match check.kind {
            CheckKind::Tcp => "tcp".into(),
            CheckKind::Http { .. } => "http".into(),
        },
    );
    if let Some(port) = check.port {
        key("port", port.to_string());
    }
    if let CheckKind::Http {
        path,
        expect_status,
        host,
    } = &check.kind
    {
        key("path", scalar(path));
        if *expect_status != HttpCheck::DEFAULT_EXPECT_STATUS {
            key("expect_status", status_text(expect_status));
        }
        if let Some(host) = host {
            key("host", scalar(host));
        }
    }
    key("interval", duration_text(check.interval));
    key("timeout", duration_text(check.timeout));
    key("rise", check.rise.to_string());
    key("fall", check.fall.to_string());
    if let Some(source) = check.source {
        key("source", scalar(&source.to_string()));
    }
}

/// `200`, or the range quoted (`"200-299"`).
fn status_text(status: &RangeInclusive<u16>) -> String {
    if status.start() == status.end() {
        status.start().to_string()
    } else {
        format!("\"{}-{}\"", status.start(), status.end())
    }
}

fn render_vrrp(out: &mut String, instance: &Vrrp) {
    comment(out, "  ", &instance.comment);
    let _ = writeln!(out, "  - name: {}", scalar(&instance.name));
    let mut key = |key: &str, value: String| {
        let _ = writeln!(out, "    {key}: {value}");
    };
    key("interface", scalar(&instance.interface));
    key("vrid", instance.vrid.to_string());
    if let Some(priority) = instance.priority {
        key("priority", priority.to_string());
    }
    if let Some(interval) = instance.advert_interval {
        key("advert_interval", duration_text(interval));
    }
    key("preempt", instance.preempt.to_string());
    if let Some(delay) = instance.preempt_delay {
        key("preempt_delay", duration_text(delay));
    }
    if let Some(state) = instance.initial_state {
        key("initial_state", state.into());
    }
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    if !instance.unicast_peers.is_empty() {
        let peers = instance.unicast_peers.iter();
        key(
            "unicast_peers",
            list(peers.map(|peer| scalar(&peer.to_string())).collect()),
        );
    }
    if let Some(source) = instance.source_address {
        key("source_address", scalar(&source.to_string()));
    }
    let addresses = instance.virtual_addresses.iter();
    key(
        "virtual_addresses",
        list(
            addresses
                .map(|address| scalar(&address.to_string()))
                .collect(),
        ),
    );
    if !instance.track_interfaces.is_empty() {
        let tracks = instance
            .track_interfaces
            .iter()
            .map(|track| match track.weight {
                0 => scalar(&track.name),
                weight => format!("{{name: {}, weight: {weight}}}", scalar(&track.name)),
            });
        key("track_interfaces", list(tracks.collect()));
    }
    if let Some(group) = &instance.sync_group {
        key("sync_group", scalar(group));
    }
    if !instance.hooks.is_empty() {
        out.push_str("    hooks:\n");
        for (hook, command) in &instance.hooks {
            let _ = writeln!(out, "      {hook}: {}", scalar(command));
        }
    }
}

/// `text` as comment lines, one per line of it, each indented by `indent`; characters that
/// could end a line (of input text: names, file names) are escaped.
fn comment(out: &mut String, indent: &str, text: &str) {
    for line in text.split('\n') {
        let _ = writeln!(out, "{indent}# {}", escape_controls(line));
    }
}

/// `text` as a YAML scalar: plain when that reads back as the same string, else
/// double-quoted, every character YAML would not take printed (controls, line
/// separators) escaped.
pub(super) fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !text.starts_with(['-', '.'])
        && !looks_like_another_type(text);
    if plain {
        return text.to_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                let _ = write!(quoted, "\\u{:04x}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Words and numbers YAML would read as something other than a string.
fn looks_like_another_type(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
    ) || text.parse::<f64>().is_ok()
        || lower.starts_with("0x")
        || lower.starts_with("0o")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_as_strings() {
        assert_eq!(scalar("eth0"), "eth0");
        assert_eq!(scalar("VI_1"), "VI_1");
        assert_eq!(scalar("/usr/local/bin/notify"), "/usr/local/bin/notify");
        assert_eq!(scalar("192.0.2.10/32"), "192.0.2.10/32");
        assert_eq!(scalar("192.0.2.10"), "192.0.2.10");
        assert_eq!(scalar("12"), "\"12\"");
        assert_eq!(scalar("2001:db8::10"), "\"2001:db8::10\"");
        assert_eq!(scalar("/bin/notify \"a\" b"), r#""/bin/notify \"a\" b""#);
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("1e3"), "\"1e3\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("a\rb\u{85}c\u{2028}"), r#""a\rb\u0085c\u2028""#);
        for text in [
            "eth0",
            "192.0.2.10",
            "2001:db8::1",
            "a \"b\" #c",
            "no",
            "12",
            "1e3",
            "a\rb\nc\td\u{1b}e\u{7f}f\u{85}g\u{2028}h\\i",
        ] {
            let yaml = format!("key: {}\n", scalar(text));
            let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
            assert_eq!(value["key"], serde_json::Value::from(text), "{yaml}");
        }
    }
}
