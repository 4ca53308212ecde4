//! The shape of the file: serde fills these, every key optional, and the validator reports
//! missing ones with their key path and line.

use serde::{
    Deserialize,
    de::{self, IgnoredAny},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) instance: Option<String>,
    pub(super) interfaces: Option<Vec<RawInterface>>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) pin_dir: Option<String>,
    pub(super) services: Option<Vec<RawService>>,
    pub(super) limits: Option<RawLimits>,
    pub(super) metrics: Option<RawMetrics>,
    pub(super) timeouts: Option<RawTimeouts>,
    #[serde(default)]
    pub(super) vrrp: PlannedKey,
    #[serde(default)]
    pub(super) sync: PlannedKey,
    #[serde(default)]
    pub(super) bgp: PlannedKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub(super) name: Option<String>,
    pub(super) xdp_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) socket: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) vip: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) protocol: Option<String>,
    pub(super) scheduler: Option<String>,
    pub(super) forward: Option<String>,
    pub(super) tunnel: Option<String>,
    pub(super) gue_port: Option<i64>,
    pub(super) snat_pool: Option<Vec<String>>,
    pub(super) tunnel_source: Option<Vec<String>>,
    pub(super) reals: Option<Vec<RawReal>>,
    pub(super) persistence: Option<String>,
    pub(super) persistence_netmask: Option<RawNetmask>,
    pub(super) mh_table_size: Option<i64>,
    #[serde(default)]
    pub(super) health_check: PlannedKey,
    #[serde(default)]
    pub(super) on_failure: PlannedKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReal {
    pub(super) address: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) weight: Option<i64>,
    pub(super) forward: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) flows: Option<i64>,
    pub(super) table_slots: Option<i64>,
    pub(super) services: Option<i64>,
    pub(super) reals: Option<i64>,
}

/// ipvsadm's `-M`: a prefix length (`24`) or an IPv4 netmask (`255.255.255.0`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawNetmask {
    Prefix(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) tcp: Option<String>,
    pub(super) tcp_fin: Option<String>,
    pub(super) udp: Option<String>,
}

/// A key from SPEC.md that this version does not implement. It accepts any value so that the
/// validator can say "not supported yet" rather than serde saying "unknown key"; it is not an
/// `Option` because `health_check:` with an empty value must be rejected too.
#[derive(Default)]
pub(super) struct PlannedKey {
    pub(super) present: bool,
}

impl<'de> Deserialize<'de> for PlannedKey {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(PlannedKey { present: true })
    }
}
