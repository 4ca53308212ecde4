//! The fuzzed balancer's services, written once as data: the YAML lbd loads is generated from
//! them, and the model reads them. Every service kind and forwarding method is here: IPv4 and
//! IPv6 VIPs, TCP and UDP, an all-ports service, `dr`, `tun` over IPIP and GUE (reals of both
//! families, so 4in6 and 6in4 too), `nat` and `fullnat`, a persistent service, and the `rr`,
//! `wrr`, `sh` and `mh` schedulers, reals behind a VLAN (DR, NAT, IPIP), and a service whose
//! only real is at weight 0 (new flows refused). Every service has at least one real, and every real serves
//! one service only, so a forwarded frame's real names its service.

use std::net::{IpAddr, Ipv4Addr};

use lb_common::{PROTO_TCP, PROTO_UDP};
use lb_userspace::neighbour::{InterfaceInfo, Vlan};

use crate::{
    fixture::{BALANCER_MAC, INGRESS_IFINDEX, loopback},
    packet::{Mac, TPID_8021AD},
};

/// A VLAN on the loopback holding 198.51.100.128/25 (longer than the loopback's /24, so reals
/// there are reached through it): frames to them leave with its 802.1ad tag and its MAC.
pub const VLAN_ID: u16 = 100;
pub const VLAN_MAC: Mac = [0x02, 0, 0, 0, 0xbb, 0x64];

/// The interfaces: the loopback (where frames arrive) and the VLAN. The VLAN's MTU leaves
/// room for every generated frame once encapsulated (ICMP too-big is not fuzzed).
pub fn interfaces() -> Vec<InterfaceInfo> {
    let vlan = InterfaceInfo {
        name: "lo.100".into(),
        index: 100,
        mac: VLAN_MAC,
        prefixes: vec![(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 128)), 25)],
        mtu: 9000,
        vlan: Some(Vlan {
            id: VLAN_ID,
            protocol: TPID_8021AD,
        }),
        egress: INGRESS_IFINDEX,
    };
    vec![loopback(), vlan]
}

/// How frames to a real leave: the source MAC, and the tag (TPID, VLAN id) of its interface.
pub fn egress(real: IpAddr) -> (Mac, Option<(u16, u16)>) {
    match real {
        IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100] && v4.octets()[3] >= 128 => {
            (VLAN_MAC, Some((TPID_8021AD, VLAN_ID)))
        }
        _ => (BALANCER_MAC, None),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Dr,
    Ipip,
    Gue,
    Nat,
    FullNat,
}

#[derive(Clone, Debug)]
pub struct RealSpec {
    pub addr: IpAddr,
    /// The port NAT and full NAT rewrite to (0: the packet's own).
    pub port: u16,
}

#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub vip: IpAddr,
    /// 0: every port (an all-ports service).
    pub port: u16,
    pub protocol: u8,
    pub mode: Mode,
    pub scheduler: &'static str,
    /// Keeps a client on its real (`persistence`).
    pub persistent: bool,
    /// Every real at weight 0: known flows only, new ones refused (`drop_no_real`).
    pub drained: bool,
    pub reals: Vec<RealSpec>,
}

impl ServiceSpec {
    /// Whether the scheduler gives the same real for the same packet every time (`sh`, `mh`):
    /// a TCP segment without a flow is then forwarded mid-stream.
    pub fn hashes(&self) -> bool {
        matches!(self.scheduler, "sh" | "mh")
    }

    pub fn name(&self) -> String {
        let protocol = if self.protocol == PROTO_TCP {
            "tcp"
        } else {
            "udp"
        };
        format!("{}:{}/{protocol} {:?}", self.vip, self.port, self.mode)
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn reals(addresses: &[&str], port: u16) -> Vec<RealSpec> {
    addresses
        .iter()
        .map(|address| RealSpec {
            addr: ip(address),
            port,
        })
        .collect()
}

pub const VIP4: &str = "192.0.2.10";
pub const VIP4_ALL_PORTS: &str = "192.0.2.20";
pub const VIP6: &str = "2001:db8::100";

/// The services, in config order.
pub fn services() -> Vec<ServiceSpec> {
    let service = |vip: &str, port, protocol, mode, scheduler, reals| ServiceSpec {
        vip: ip(vip),
        port,
        protocol,
        mode,
        scheduler,
        persistent: false,
        drained: false,
        reals,
    };
    vec![
        service(
            VIP4,
            80,
            PROTO_TCP,
            Mode::Dr,
            "rr",
            reals(&["192.0.2.11", "192.0.2.12", "192.0.2.13"], 0),
        ),
        service(
            VIP4,
            53,
            PROTO_UDP,
            Mode::Dr,
            "mh",
            reals(&["192.0.2.14", "192.0.2.15"], 0),
        ),
        service(
            VIP4_ALL_PORTS,
            0,
            PROTO_TCP,
            Mode::Dr,
            "sh",
            reals(&["192.0.2.21", "192.0.2.22"], 0),
        ),
        ServiceSpec {
            persistent: true,
            ..service(
                VIP6,
                80,
                PROTO_TCP,
                Mode::Dr,
                "wrr",
                reals(&["2001:db8::11", "2001:db8::12"], 0),
            )
        },
        service(
            VIP4,
            81,
            PROTO_TCP,
            Mode::Ipip,
            "rr",
            reals(&["198.51.100.11", "2001:db8::41"], 0),
        ),
        service(
            VIP6,
            53,
            PROTO_UDP,
            Mode::Gue,
            "rr",
            reals(&["2001:db8::13", "198.51.100.13"], 0),
        ),
        service(
            VIP6,
            81,
            PROTO_TCP,
            Mode::Gue,
            "mh",
            reals(&["2001:db8::14"], 0),
        ),
        service(
            VIP4,
            8000,
            PROTO_TCP,
            Mode::Nat,
            "rr",
            reals(&["198.51.100.21", "198.51.100.22"], 8080),
        ),
        service(
            VIP6,
            8000,
            PROTO_UDP,
            Mode::Nat,
            "rr",
            reals(&["2001:db8::21"], 53),
        ),
        service(
            VIP4,
            9000,
            PROTO_TCP,
            Mode::FullNat,
            "rr",
            reals(&["198.51.100.31", "198.51.100.32"], 8080),
        ),
        service(
            VIP6,
            9000,
            PROTO_UDP,
            Mode::FullNat,
            "sh",
            reals(&["2001:db8::31"], 53),
        ),
        service(
            VIP6,
            9001,
            PROTO_TCP,
            Mode::FullNat,
            "rr",
            reals(&["2001:db8::32"], 0),
        ),
        ServiceSpec {
            drained: true,
            ..service(
                VIP4,
                84,
                PROTO_TCP,
                Mode::Dr,
                "rr",
                reals(&["192.0.2.16"], 0),
            )
        },
        // Reals behind the VLAN.
        service(
            VIP4,
            443,
            PROTO_TCP,
            Mode::Dr,
            "rr",
            reals(&["198.51.100.141", "198.51.100.142"], 0),
        ),
        service(
            VIP4,
            8443,
            PROTO_UDP,
            Mode::Nat,
            "rr",
            reals(&["198.51.100.151"], 53),
        ),
        service(
            VIP4,
            82,
            PROTO_TCP,
            Mode::Ipip,
            "rr",
            reals(&["198.51.100.161"], 0),
        ),
    ]
}

/// lbd's config for `services`.
pub fn yaml(services: &[ServiceSpec]) -> String {
    let mut out = String::from("instance: fuzz\ninterfaces: [{name: lo}]\nservices:\n");
    for service in services {
        let protocol = if service.protocol == PROTO_TCP {
            "tcp"
        } else {
            "udp"
        };
        let forward = match service.mode {
            Mode::Dr => "forward: dr",
            Mode::Ipip => "forward: tun",
            Mode::Gue => "forward: tun, tunnel: gue",
            Mode::Nat => "forward: nat",
            Mode::FullNat => "forward: fullnat",
        };
        let persistence = if service.persistent {
            ", persistence: 3600s"
        } else {
            ""
        };
        let reals: Vec<String> = service
            .reals
            .iter()
            .map(|real| {
                let weight = if service.drained { ", weight: 0" } else { "" };
                if real.port == 0 {
                    format!("{{address: '{}'{weight}}}", real.addr)
                } else {
                    format!("{{address: '{}', port: {}{weight}}}", real.addr, real.port)
                }
            })
            .collect();
        out.push_str(&format!(
            "  - {{vip: '{}', port: {}, protocol: {protocol}, scheduler: {}, {forward}{persistence}, reals: [{}]}}\n",
            service.vip,
            service.port,
            service.scheduler,
            reals.join(", ")
        ));
    }
    // Flows are cleared between epochs (see `mod.rs`); the table never fills. Timeouts far
    // beyond a run, so that no flow expires under the model (CLOSE keeps IPVS's fixed 10 s,
    // longer than an epoch).
    out.push_str("limits: {flows: 65536, services: 32, reals: 64}\n");
    out.push_str("timeouts: {tcp: 3600s, tcp_fin: 3600s, udp: 3600s}\n");
    out
}
