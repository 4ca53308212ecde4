//! The shape of the file: serde fills these, every key optional, and the validator reports
//! missing ones with their key path and line.

use serde::{Deserialize, de};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) instance: Option<String>,
    pub(super) interfaces: Option<Vec<RawInterface>>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) pin_dir: Option<String>,
    pub(super) pid_file: Option<String>,
    pub(super) services: Option<Vec<RawService>>,
    pub(super) limits: Option<RawLimits>,
    pub(super) metrics: Option<RawMetrics>,
    pub(super) timeouts: Option<RawTimeouts>,
    pub(super) vrrp: Option<Vec<RawVrrpInstance>>,
    pub(super) sync: Option<RawSync>,
    pub(super) bgp: Option<RawBgp>,
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
    pub(super) group: Option<RawGroup>,
}

/// `admin.group`: a group by name or by number. Deserialized by hand, as [`RawStatus`], so
/// that a wrong value is told what is expected.
pub(super) enum RawGroup {
    Id(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for RawGroup {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GroupVisitor;
        impl de::Visitor<'_> for GroupVisitor {
            type Value = RawGroup;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a group name (lbadmin) or id (4242)")
            }
            fn visit_i64<E: de::Error>(self, id: i64) -> Result<RawGroup, E> {
                Ok(RawGroup::Id(id))
            }
            fn visit_u64<E: de::Error>(self, id: u64) -> Result<RawGroup, E> {
                Ok(RawGroup::Id(i64::try_from(id).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<RawGroup, E> {
                Ok(RawGroup::Name(name.to_owned()))
            }
        }
        deserializer.deserialize_any(GroupVisitor)
    }
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
    pub(super) health_check: Option<RawHealthCheck>,
    pub(super) on_failure: Option<String>,
    pub(super) sorry_server: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) path: Option<String>,
    pub(super) expect_status: Option<RawStatus>,
    pub(super) host: Option<String>,
    pub(super) expect_body: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) rise: Option<i64>,
    pub(super) fall: Option<i64>,
    pub(super) source: Option<String>,
}

/// `expect_status`: one code (`200`) or a range (`200-299`, which YAML reads as a string).
/// Deserialized by hand so that a wrong value is told what is expected, which serde's
/// `untagged` cannot say.
pub(super) enum RawStatus {
    Code(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        impl de::Visitor<'_> for StatusVisitor {
            type Value = RawStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a status code (200) or a range (200-299)")
            }
            fn visit_i64<E: de::Error>(self, code: i64) -> Result<RawStatus, E> {
                Ok(RawStatus::Code(code))
            }
            fn visit_u64<E: de::Error>(self, code: u64) -> Result<RawStatus, E> {
                Ok(RawStatus::Code(i64::try_from(code).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawStatus, E> {
                Ok(RawStatus::Text(text.to_owned()))
            }
        }
        deserializer.deserialize_any(StatusVisitor)
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrpInstance {
    pub(super) name: Option<String>,
    pub(super) interface: Option<String>,
    pub(super) vrid: Option<i64>,
    pub(super) priority: Option<i64>,
    pub(super) advert_interval: Option<String>,
    pub(super) preempt: Option<bool>,
    pub(super) preempt_delay: Option<String>,
    pub(super) initial_state: Option<String>,
    pub(super) unicast_peers: Option<Vec<String>>,
    pub(super) source_address: Option<String>,
    pub(super) virtual_addresses: Option<Vec<String>>,
    pub(super) track_interfaces: Option<Vec<RawTrackInterface>>,
    pub(super) track_services: Option<RawTrackServices>,
    pub(super) sync_group: Option<String>,
    pub(super) hooks: Option<RawHooks>,
}

/// `eth1`, or `{name: eth1, weight: -20}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawTrackInterface {
    Name(String),
    Weighted(RawWeightedInterface),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightedInterface {
    pub(super) name: Option<String>,
    pub(super) weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrackServices {
    pub(super) weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    pub(super) on_master: Option<String>,
    pub(super) on_backup: Option<String>,
    pub(super) on_fault: Option<String>,
    pub(super) on_stop: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) peer: Option<String>,
    pub(super) port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    pub(super) local_as: Option<i64>,
    pub(super) router_id: Option<String>,
    pub(super) neighbors: Option<Vec<RawBgpNeighbor>>,
    pub(super) bird_socket: Option<String>,
    pub(super) bird_config: Option<String>,
    pub(super) vips: Option<Vec<RawBgpVip>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgpNeighbor {
    pub(super) address: Option<String>,
    #[serde(rename = "as")]
    pub(super) remote_as: Option<i64>,
    pub(super) hold_time: Option<String>,
    pub(super) bfd: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgpVip {
    pub(super) address: Option<String>,
    pub(super) med: Option<i64>,
    pub(super) communities: Option<Vec<String>>,
}
