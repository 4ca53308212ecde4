//! The `bgp` key: this node announces its VIPs over BGP through BIRD, for a fleet of
//! balancers behind ECMP routers (scale-out).

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

/// Where BIRD's control socket is when the config does not say (Debian's `bird2`).
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";

/// Key `bgp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// This node's AS number (1..=4294967295, not 23456, AS_TRANS).
    pub local_as: u32,
    /// BIRD's router id (an IPv4 address, even on an IPv6-only node, as BGP's identifier is).
    pub router_id: Ipv4Addr,
    /// Non-empty, unique addresses. Each carries the VIPs of its own address family.
    pub neighbors: Vec<BgpNeighbor>,
    /// Key `bird_socket`; default [`DEFAULT_BIRD_SOCKET`].
    pub bird_socket: PathBuf,
    /// Key `bird_config`: the file lbd writes and BIRD includes; default
    /// `<DEFAULT_RUN_DIR>/<instance>.bird.conf`.
    pub bird_config: PathBuf,
    /// Key `vips`: attributes of some VIPs' routes. Each names a VIP of a service.
    pub vips: Vec<BgpVip>,
}

/// `bgp.neighbors[]`: a BGP session of this node's BIRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpNeighbor {
    pub address: IpAddr,
    /// Key `as`: the neighbour's AS number; equal to `local_as` makes the session internal.
    pub remote_as: u32,
    /// Key `hold_time`: whole seconds, 3..=65535; BIRD's default (240 s) when absent.
    pub hold_time: Option<Duration>,
    /// Key `bfd`: BFD on the session (100 ms × 3), so a dead link is noticed in 0.3 s.
    pub bfd: bool,
}

/// `bgp.vips[]`: what one VIP's route carries besides its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpVip {
    pub address: IpAddr,
    /// Key `med`: the MULTI_EXIT_DISC attribute.
    pub med: Option<u32>,
    /// Key `communities`: `"64500:100"` (RFC 1997) or `"64500:1:2"` (large, RFC 8092).
    pub communities: Vec<Community>,
}

/// A BGP community a VIP's route carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Community {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Community::Standard(asn, value) => write!(f, "{asn}:{value}"),
            Community::Large(asn, first, second) => write!(f, "{asn}:{first}:{second}"),
        }
    }
}

impl std::str::FromStr for Community {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let number = |part: &str| part.trim().parse::<u32>().ok();
        match parts.as_slice() {
            [asn, value] => {
                let standard = |part: &str| number(part).and_then(|n| u16::try_from(n).ok());
                match (standard(asn), standard(value)) {
                    (Some(asn), Some(value)) => Ok(Community::Standard(asn, value)),
                    _ => Err(format!(
                        "invalid community {text:?}: a standard community is two numbers \
                         0..=65535, \"64500:100\""
                    )),
                }
            }
            [asn, first, second] => match (number(asn), number(first), number(second)) {
                (Some(asn), Some(first), Some(second)) => Ok(Community::Large(asn, first, second)),
                _ => Err(format!(
                    "invalid community {text:?}: a large community is three numbers \
                     0..=4294967295, \"64500:1:2\""
                )),
            },
            _ => Err(format!(
                "invalid community {text:?}: expected \"ASN:VALUE\" (standard) or \
                 \"ASN:VALUE:VALUE\" (large)"
            )),
        }
    }
}
