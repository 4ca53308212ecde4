//! `bgp`: the AS, router id and neighbours of this node's BIRD, where BIRD is, and the
//! attributes of some VIPs' routes.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use super::Validator;
use crate::config::{
    ConfigError, DEFAULT_RUN_DIR, MAX_UNIX_SOCKET_PATH_LEN, ServiceConfig,
    bgp::{BgpConfig, BgpNeighbor, BgpVip, Community, DEFAULT_BIRD_SOCKET},
    duration::parse_duration,
    raw::{RawBgp, RawBgpNeighbor, RawBgpVip},
};

/// RFC 6793's AS_TRANS stands in for 4-byte ASNs on old sessions; it is never a real AS.
const AS_TRANS: i64 = 23456;
/// BIRD refuses hold times under 3 s (RFC 4271: 0 or at least 3; 0 turns keepalives off,
/// which would leave a dead balancer announced).
const HOLD_TIMES: std::ops::RangeInclusive<u64> = 3..=65535;

impl Validator<'_> {
    pub(super) fn bgp(
        &self,
        raw: Option<RawBgp>,
        instance: &str,
        services: &[ServiceConfig],
    ) -> Result<Option<BgpConfig>, ConfigError> {
        if raw.is_none() && !self.source_map.contains("bgp") {
            return Ok(None);
        }
        let raw = self.required(raw, "bgp", "local_as, router_id and neighbors")?;
        let local_as = self.asn(raw.local_as, "bgp.local_as", "this node's AS number")?;
        let router_id = self.router_id(raw.router_id)?;

        let neighbors_key = "bgp.neighbors";
        let raw_neighbors = self.required(
            raw.neighbors,
            neighbors_key,
            "the BGP peers, e.g. [{address: 198.51.100.1, as: 64500}]",
        )?;
        if raw_neighbors.is_empty() {
            return Err(self.invalid(neighbors_key, "needs at least one neighbour"));
        }
        let mut neighbors: Vec<BgpNeighbor> = Vec::with_capacity(raw_neighbors.len());
        for (position, raw) in raw_neighbors.into_iter().enumerate() {
            let key = format!("{neighbors_key}[{position}]");
            let neighbor = self.bgp_neighbor(raw, &key)?;
            if let Some(earlier) = neighbors
                .iter()
                .position(|earlier| earlier.address == neighbor.address)
            {
                return Err(self.invalid(
                    &format!("{key}.address"),
                    format!("{} is listed twice (also [{earlier}])", neighbor.address),
                ));
            }
            neighbors.push(neighbor);
        }

        let bird_socket = match raw.bird_socket {
            Some(path) => {
                self.check_path("bgp.bird_socket", &path)?;
                if path.len() > MAX_UNIX_SOCKET_PATH_LEN {
                    return Err(self.invalid(
                        "bgp.bird_socket",
                        format!(
                            "socket path is {} bytes; a Unix socket path can have at most \
                             {MAX_UNIX_SOCKET_PATH_LEN}",
                            path.len()
                        ),
                    ));
                }
                PathBuf::from(path)
            }
            None => PathBuf::from(DEFAULT_BIRD_SOCKET),
        };
        let bird_config = match raw.bird_config {
            Some(path) => {
                self.check_path("bgp.bird_config", &path)?;
                if path.contains('"') || path.chars().any(char::is_control) {
                    return Err(self.invalid(
                        "bgp.bird_config",
                        "must not contain '\"' or control characters (BIRD's include names \
                         the file in quotes, on one line)",
                    ));
                }
                PathBuf::from(path)
            }
            None => Path::new(DEFAULT_RUN_DIR).join(format!("{instance}.bird.conf")),
        };

        let mut vips: Vec<BgpVip> = Vec::new();
        for (position, raw) in raw.vips.unwrap_or_default().into_iter().enumerate() {
            let key = format!("bgp.vips[{position}]");
            let vip = self.bgp_vip(raw, &key)?;
            if let Some(earlier) = vips
                .iter()
                .position(|earlier| earlier.address == vip.address)
            {
                return Err(self.invalid(
                    &format!("{key}.address"),
                    format!("{} is listed twice (also [{earlier}])", vip.address),
                ));
            }
            vips.push(vip);
        }

        // A VIP of a family no neighbour carries would be announced to nobody.
        for service in services {
            let family_carried = neighbors
                .iter()
                .any(|neighbor| neighbor.address.is_ipv6() == service.vip.is_ipv6());
            if !family_carried {
                return Err(self.invalid(
                    neighbors_key,
                    format!(
                        "no neighbour is {}, so VIP {} would be announced to nobody (each \
                         neighbour carries the VIPs of its own address family)",
                        if service.vip.is_ipv6() {
                            "IPv6"
                        } else {
                            "IPv4"
                        },
                        service.vip
                    ),
                ));
            }
        }

        Ok(Some(BgpConfig {
            local_as,
            router_id,
            neighbors,
            bird_socket,
            bird_config,
            vips,
        }))
    }

    fn asn(&self, raw: Option<i64>, key: &str, what: &str) -> Result<u32, ConfigError> {
        let value = self.required(raw, key, what)?;
        if value == AS_TRANS {
            return Err(self.invalid(
                key,
                "23456 is AS_TRANS (RFC 6793), a placeholder for 4-byte AS numbers, not an AS",
            ));
        }
        u32::try_from(value)
            .ok()
            .filter(|asn| *asn != 0)
            .ok_or_else(|| self.invalid(key, format!("AS {value} is out of range 1..=4294967295")))
    }

    fn router_id(&self, raw: Option<String>) -> Result<Ipv4Addr, ConfigError> {
        let key = "bgp.router_id";
        let text = self.required(raw, key, "an IPv4 address naming this BGP speaker")?;
        let id: Ipv4Addr = text.parse().map_err(|_| {
            self.invalid(
                key,
                format!(
                    "invalid router id {text:?}: BGP's identifier is an IPv4 address \
                     (on an IPv6-only node too), e.g. 198.51.100.11"
                ),
            )
        })?;
        if id.is_unspecified() {
            return Err(self.invalid(key, "0.0.0.0 is not a valid router id"));
        }
        Ok(id)
    }

    fn bgp_neighbor(&self, raw: RawBgpNeighbor, key: &str) -> Result<BgpNeighbor, ConfigError> {
        let address = self.address(raw.address, &format!("{key}.address"), "BGP neighbour")?;
        let remote_as = self.asn(raw.remote_as, &format!("{key}.as"), "the neighbour's AS")?;
        let hold_key = format!("{key}.hold_time");
        let hold_time = match raw.hold_time {
            Some(text) => {
                let hold =
                    parse_duration(&text).map_err(|message| self.invalid(&hold_key, message))?;
                if hold.subsec_nanos() != 0 || !HOLD_TIMES.contains(&hold.as_secs()) {
                    return Err(self.invalid(
                        &hold_key,
                        format!(
                            "{text} is not whole seconds in 3s..=65535s (BGP's hold time; \
                             keepalives go every third of it)"
                        ),
                    ));
                }
                Some(Duration::from_secs(hold.as_secs()))
            }
            None => None,
        };
        Ok(BgpNeighbor {
            address,
            remote_as,
            hold_time,
            bfd: raw.bfd.unwrap_or(false),
        })
    }

    /// An entry may name a VIP no service has: an lbadm edit may delete a VIP's last service
    /// (and add it back), which `bgp`, fixed while lbd runs, must not stand in the way of.
    /// lbd warns at start of an entry that waits for its service.
    fn bgp_vip(&self, raw: RawBgpVip, key: &str) -> Result<BgpVip, ConfigError> {
        let address_key = format!("{key}.address");
        let address: IpAddr = self.address(raw.address, &address_key, "VIP")?;
        let med = match raw.med {
            Some(med) => Some(u32::try_from(med).map_err(|_| {
                self.invalid(
                    &format!("{key}.med"),
                    format!("MED {med} is out of range 0..=4294967295"),
                )
            })?),
            None => None,
        };
        let mut communities: Vec<Community> = Vec::new();
        for (position, text) in raw.communities.unwrap_or_default().into_iter().enumerate() {
            let item_key = format!("{key}.communities[{position}]");
            let community: Community = text
                .parse()
                .map_err(|message: String| self.invalid(&item_key, message))?;
            if communities.contains(&community) {
                return Err(self.invalid(&item_key, format!("{community} is listed twice")));
            }
            communities.push(community);
        }
        Ok(BgpVip {
            address,
            med,
            communities,
        })
    }
}
