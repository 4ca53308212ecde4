//! `lbadm -A -t|-u VIP:PORT [-s SCHED] [-p [SECONDS]] [-M NETMASK] [lbd's options]`: ipvsadm
//! `-A`, add a virtual service. The scheduler defaults to wlc, as ipvsadm's does.

use serde_json::{Map, Value};

use super::{
    Failure,
    command::{ServiceExtras, ServiceRule},
};
use crate::config::edit::Edit;

/// ipvsadm's default scheduler.
pub const DEFAULT_SCHEDULER: &str = "wlc";

pub fn edit(rule: &ServiceRule) -> Result<Edit, Failure> {
    let mut service = Map::new();
    let named = rule.service;
    service.insert("vip".into(), Value::String(named.vip.to_string()));
    service.insert("port".into(), Value::from(named.port));
    service.insert(
        "protocol".into(),
        Value::String(named.protocol.name().into()),
    );
    service.insert(
        "scheduler".into(),
        Value::String(
            rule.scheduler
                .as_deref()
                .unwrap_or(DEFAULT_SCHEDULER)
                .into(),
        ),
    );
    for (key, value) in ipvsadm_keys(rule)? {
        if !value.is_null() {
            service.insert(key.into(), value);
        }
    }
    for (key, value) in extra_keys(&rule.extra)? {
        if !value.is_null() {
            service.insert(key.into(), value);
        }
    }
    Ok(Edit::AddService { service })
}

/// `-p` and `-M` as config keys; `null` where not given. As with ipvsadm, a netmask without
/// persistence means nothing, and is left out.
pub fn ipvsadm_keys(rule: &ServiceRule) -> Result<Vec<(&'static str, Value)>, Failure> {
    let persistence = rule
        .persistent_s
        .map_or(Value::Null, |seconds| Value::String(format!("{seconds}s")));
    let netmask = match (&rule.netmask, rule.persistent_s) {
        (None, _) | (_, None) => Value::Null,
        // IPv6 takes a prefix length, as ipvsadm's -M does; IPv4 a dotted mask, or a prefix
        // length (which ipvsadm would misread).
        (Some(text), Some(_)) => match (text.parse::<u8>(), rule.service.vip.is_ipv6()) {
            (Ok(prefix), true) if (1..=128).contains(&prefix) => Value::from(prefix),
            (_, true) => {
                return Err(Failure::Usage(format!(
                    "-M {text}: illegal ipv6 netmask specified (a prefix length, 1..128)"
                )));
            }
            (Ok(prefix), false) if prefix <= 32 => Value::from(prefix),
            _ => Value::String(text.clone()),
        },
    };
    Ok(vec![
        ("persistence", persistence),
        ("persistence_netmask", netmask),
    ])
}

/// Our options as config keys, those given only; `none` is `null` (removes the key with -E).
pub fn extra_keys(extra: &ServiceExtras) -> Result<Vec<(&'static str, Value)>, Failure> {
    let mut keys = Vec::new();
    let text = |value: &str| {
        if value == "none" {
            Value::Null
        } else {
            Value::String(value.to_owned())
        }
    };
    if let Some(value) = &extra.forward {
        keys.push(("forward", text(value)));
    }
    if let Some(value) = &extra.tunnel {
        keys.push(("tunnel", text(value)));
    }
    if let Some(value) = &extra.gue_port {
        keys.push(("gue_port", number(value, "--gue-port")?));
    }
    if let Some(value) = &extra.mh_table_size {
        keys.push(("mh_table_size", number(value, "--mh-table-size")?));
    }
    for (value, key) in [
        (&extra.snat_pool, "snat_pool"),
        (&extra.tunnel_source, "tunnel_source"),
    ] {
        if let Some(value) = value {
            keys.push((key, address_list(value)));
        }
    }
    if let Some(value) = &extra.on_failure {
        keys.push(("on_failure", text(value)));
    }
    if let Some(value) = &extra.sorry_server {
        keys.push(("sorry_server", text(value)));
    }
    if let Some(value) = &extra.check {
        keys.push(("health_check", check(value)?));
    }
    Ok(keys)
}

fn number(text: &str, option: &str) -> Result<Value, Failure> {
    if text == "none" {
        return Ok(Value::Null);
    }
    text.parse::<u64>()
        .map(Value::from)
        .map_err(|_| Failure::Usage(format!("{option} {text}: not a number")))
}

fn address_list(text: &str) -> Value {
    if text == "none" {
        return Value::Null;
    }
    Value::Array(
        text.split(',')
            .map(|address| Value::String(address.trim().to_owned()))
            .collect(),
    )
}

/// `--check`: the `health_check` mapping in YAML flow style (`{type: tcp, interval: 1s}`).
fn check(text: &str) -> Result<Value, Failure> {
    if text == "none" {
        return Ok(Value::Null);
    }
    let value: Value = serde_saphyr::from_str(text).map_err(|error| {
        Failure::Usage(format!(
            "--check {text}: not a YAML mapping such as '{{type: http, path: /healthz}}': {error}"
        ))
    })?;
    if !value.is_object() {
        return Err(Failure::Usage(format!(
            "--check {text}: not a YAML mapping such as '{{type: tcp, interval: 1s}}'"
        )));
    }
    Ok(value)
}
