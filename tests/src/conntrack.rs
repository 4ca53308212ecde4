//! A model of connection tracking for packet fixtures: the services
//! `tests/tests/fixtures_conntrack.rs` loads, packets to them, and [`Conntrack`], a balancer
//! and the test's account of its flows (state and real of each, hence every real's
//! `ActiveConn`/`InActConn`), checked against each other after every packet and every sweep.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
    time::Duration,
};

use crate::{
    fixture::{BALANCER_MAC, Balancer, XDP_DROP, XDP_PASS, XDP_TX, check_exact, direct_routed},
    packet::{Frame, tcp_flags::*},
};
use lb_common::{
    ConnCounts, FAMILY_IPV4, FAMILY_IPV6, Flow, FlowKey, PROTO_TCP, PROTO_UDP, Reason,
    conntrack::{is_active, state_name},
};
use lb_userspace::{admin::monotonic_now_ns, dataplane::DataplaneReader as _};

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 120);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 9);
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x120);
pub const TCP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 53;

/// Service indexes in [`config`]. Each has two rr reals, so that a count on the wrong real,
/// or a flow that changes real, shows.
pub const TCP_V4: usize = 0;
pub const UDP_V4: usize = 1;
pub const TCP_V6: usize = 2;
pub const UDP_V6: usize = 3;

/// The services every test loads, under its own instance name, with `limits.flows = flows`
/// and whatever `extra` adds (a `timeouts` key).
pub fn config(instance: &str, flows: u32, extra: &str) -> String {
    format!(
        "
instance: {instance}
interfaces: [{{name: lo}}]
services:
  - {{vip: 192.0.2.120, port: 80, protocol: tcp, scheduler: rr,
      reals: [{{address: 192.0.2.61}}, {{address: 192.0.2.62}}]}}
  - {{vip: 192.0.2.120, port: 53, protocol: udp, scheduler: rr,
      reals: [{{address: 192.0.2.63}}, {{address: 192.0.2.64}}]}}
  - {{vip: '2001:db8::120', port: 80, protocol: tcp, scheduler: rr,
      reals: [{{address: '2001:db8::61'}}, {{address: '2001:db8::62'}}]}}
  - {{vip: '2001:db8::120', port: 53, protocol: udp, scheduler: rr,
      reals: [{{address: '2001:db8::63'}}, {{address: '2001:db8::64'}}]}}
limits: {{flows: {flows}, services: 16, reals: 64}}
{extra}
"
    )
}

/// The shortest timeouts lbd accepts, for the tests that wait for flows to expire.
pub const ONE_SECOND_TIMEOUTS: &str = "timeouts: {tcp: 1s, tcp_fin: 1s, udp: 1s}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// One packet of one of a test's flows: from the client's `port` to the VIP's TCP or UDP
/// service.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub family: Family,
    pub protocol: u8,
    pub port: u16,
    pub flags: u8,
}

pub fn tcp(family: Family, port: u16, flags: u8) -> Packet {
    Packet {
        family,
        protocol: PROTO_TCP,
        port,
        flags,
    }
}

pub fn udp(family: Family, port: u16) -> Packet {
    Packet {
        family,
        protocol: PROTO_UDP,
        port,
        flags: 0,
    }
}

impl Packet {
    pub fn frame(self) -> Vec<u8> {
        let v4 = |port| {
            (
                SocketAddrV4::new(CLIENT_V4, self.port),
                SocketAddrV4::new(VIP_V4, port),
            )
        };
        let v6 = |port| {
            (
                SocketAddrV6::new(CLIENT_V6, self.port, 0, 0),
                SocketAddrV6::new(VIP_V6, port, 0, 0),
            )
        };
        let frame = match (self.family, self.protocol) {
            (Family::V4, PROTO_TCP) => {
                let (src, dst) = v4(TCP_PORT);
                Frame::tcp(src, dst).tcp_flags(self.flags)
            }
            (Family::V6, PROTO_TCP) => {
                let (src, dst) = v6(TCP_PORT);
                Frame::ipv6_tcp(src, dst).tcp_flags(self.flags)
            }
            (Family::V4, _) => {
                let (src, dst) = v4(UDP_PORT);
                Frame::udp(src, dst).payload(b"query")
            }
            (Family::V6, _) => {
                let (src, dst) = v6(UDP_PORT);
                Frame::ipv6_udp(src, dst).payload(b"query")
            }
        };
        frame.dst_mac(BALANCER_MAC).build()
    }

    /// The flow table's key for this packet, as the program builds it.
    pub fn key(self) -> FlowKey {
        let (src, dst, family) = match self.family {
            Family::V4 => {
                let mut src = [0; 16];
                let mut dst = [0; 16];
                src[..4].copy_from_slice(&CLIENT_V4.octets());
                dst[..4].copy_from_slice(&VIP_V4.octets());
                (src, dst, FAMILY_IPV4)
            }
            Family::V6 => (CLIENT_V6.octets(), VIP_V6.octets(), FAMILY_IPV6),
        };
        let service_port = if self.protocol == PROTO_TCP {
            TCP_PORT
        } else {
            UDP_PORT
        };
        FlowKey {
            src,
            dst,
            src_port_be: self.port.to_be(),
            dst_port_be: service_port.to_be(),
            protocol: self.protocol,
            family,
            _pad: [0; 2],
        }
    }

    pub fn service(self) -> usize {
        match (self.family, self.protocol) {
            (Family::V4, PROTO_TCP) => TCP_V4,
            (Family::V4, _) => UDP_V4,
            (Family::V6, PROTO_TCP) => TCP_V6,
            (Family::V6, _) => UDP_V6,
        }
    }

    /// With another client port.
    pub fn on_port(self, port: u16) -> Packet {
        Packet { port, ..self }
    }

    /// With other TCP flags.
    pub fn with_flags(self, flags: u8) -> Packet {
        Packet { flags, ..self }
    }

    pub fn describe(self) -> String {
        let family = match self.family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        if self.protocol != PROTO_TCP {
            return format!("udp/{family} from port {}", self.port);
        }
        let names: Vec<&str> = [(SYN, "SYN"), (ACK, "ACK"), (FIN, "FIN"), (RST, "RST")]
            .into_iter()
            .filter(|&(bit, _)| self.flags & bit != 0)
            .map(|(_, name)| name)
            .collect();
        let flags = if names.is_empty() {
            "no flags".to_owned()
        } else {
            names.join("|")
        };
        format!("tcp/{family} from port {} with {flags}", self.port)
    }
}

/// What the program must do with a packet, and what becomes of its flow.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// A new flow in this state, on the real the service's schedule gives next.
    Opens(u8),
    /// Forwarded to the real the flow is on; the flow is now in this state.
    Follows(u8),
    /// To the host, byte for byte as it came; no flow recorded or changed.
    Pass(Reason),
    /// Dropped; no flow recorded or changed.
    Drop(Reason),
}

/// A flow the test believes the table holds.
#[derive(Clone, Copy, Debug)]
pub struct Tracked {
    pub service: usize,
    pub real: IpAddr,
    pub state: u8,
}

/// What the flow table and the connection counts must hold: the test's own account of every
/// live flow.
#[derive(Default)]
pub struct Model {
    pub flows: HashMap<FlowKey, Tracked>,
}

impl Model {
    pub fn expected_counts(&self, service: usize, real: IpAddr) -> ConnCounts {
        let mut counts = ConnCounts::default();
        for tracked in self.flows.values() {
            if tracked.service == service && tracked.real == real {
                if is_active(tracked.state) {
                    counts.active += 1;
                } else {
                    counts.inactive += 1;
                }
            }
        }
        counts
    }

    /// Panics, naming `step`, unless the flow table holds exactly the model's flows (same
    /// reals, same states) and every real's counts are the model's.
    #[track_caller]
    pub fn check(&self, balancer: &Balancer, step: &str) {
        let mut table: HashMap<FlowKey, Flow> = HashMap::new();
        balancer
            .reader
            .for_each_flow(&mut |key, flow| {
                table.insert(*key, *flow);
            })
            .unwrap_or_else(|e| panic!("{step}: reading the flow table: {e}"));
        for (key, tracked) in &self.flows {
            let flow = table.get(key).unwrap_or_else(|| {
                panic!(
                    "{step}: the flow from port {} ({}) is missing from the table",
                    u16::from_be(key.src_port_be),
                    state_name(tracked.state)
                )
            });
            assert_eq!(
                state_name(flow.state as u8),
                state_name(tracked.state),
                "{step}: state of the flow from port {}",
                u16::from_be(key.src_port_be)
            );
            assert_eq!(
                flow.real_id,
                balancer.real_id(tracked.service, tracked.real),
                "{step}: real of the flow from port {} (expected {})",
                u16::from_be(key.src_port_be),
                tracked.real
            );
        }
        let unexpected: Vec<(u16, &str)> = table
            .iter()
            .filter(|(key, _)| !self.flows.contains_key(key))
            .map(|(key, flow)| (u16::from_be(key.src_port_be), state_name(flow.state as u8)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{step}: flows (client port, state) in the table that should not be: {unexpected:?}"
        );
        for (index, service) in balancer.state.services.iter().enumerate() {
            for real in &service.reals {
                let address = real.config.address;
                assert_eq!(
                    balancer.connections(index, address),
                    self.expected_counts(index, address),
                    "{step}: connections of real {address} of service {index}"
                );
            }
        }
    }
}

/// A balancer and the test's account of its flows, checked against each other after every
/// packet and every sweep.
pub struct Conntrack {
    pub balancer: Balancer,
    pub model: Model,
}

impl Conntrack {
    /// `None` without root (see [`Balancer::for_test`]).
    pub fn for_test(test: &str, yaml: &str) -> Option<Conntrack> {
        let balancer = Balancer::for_test(test, yaml)?;
        let conntrack = Conntrack {
            balancer,
            model: Model::default(),
        };
        conntrack.model.check(&conntrack.balancer, "after loading");
        Some(conntrack)
    }

    /// Runs `packet` and checks action, output bytes, that exactly the expected reason
    /// counter moved, then the flow table and every real's counts.
    #[track_caller]
    pub fn send(&mut self, step: &str, packet: Packet, expect: Expect) {
        let frame = packet.frame();
        let key = packet.key();
        let name = format!("{step} [{}]", packet.describe());
        let balancer = &mut self.balancer;
        match expect {
            Expect::Opens(state) => {
                assert!(
                    !self.model.flows.contains_key(&key),
                    "{name}: the test expects a new flow, but its model has one"
                );
                let real = balancer.next_scheduled_address(packet.service());
                let forwarded = direct_routed(&frame, real);
                check_exact(
                    balancer,
                    &name,
                    &frame,
                    XDP_TX,
                    Reason::ForwardedTx,
                    &forwarded,
                );
                let tracked = Tracked {
                    service: packet.service(),
                    real,
                    state,
                };
                self.model.flows.insert(key, tracked);
            }
            Expect::Follows(state) => {
                let tracked = self.model.flows.get_mut(&key).unwrap_or_else(|| {
                    panic!("{name}: the test expects a known flow, but its model has none")
                });
                let forwarded = direct_routed(&frame, tracked.real);
                check_exact(
                    balancer,
                    &name,
                    &frame,
                    XDP_TX,
                    Reason::ForwardedTx,
                    &forwarded,
                );
                tracked.state = state;
            }
            Expect::Pass(reason) => {
                check_exact(balancer, &name, &frame, XDP_PASS, reason, &frame);
            }
            Expect::Drop(reason) => {
                check_exact(balancer, &name, &frame, XDP_DROP, reason, &frame);
            }
        }
        self.model.check(&self.balancer, &name);
    }

    /// The test's word that `packet`'s flow has expired: the program must have forgotten it
    /// by the time its next packet has gone through.
    #[track_caller]
    pub fn expired(&mut self, packet: Packet) {
        assert!(
            self.model.flows.remove(&packet.key()).is_some(),
            "the test says {} expired, but its model had no such flow",
            packet.describe()
        );
    }

    /// Runs the sweep as if it were `look_ahead` from now, and checks that it removed exactly
    /// the flows of `removed`, then the table and the counts.
    #[track_caller]
    pub fn sweep(&mut self, step: &str, look_ahead: Duration, removed: &[FlowKey]) {
        let flows_before = self.model.flows.len() as u64;
        let now = monotonic_now_ns() + look_ahead.as_nanos() as u64;
        let report = self
            .balancer
            .sweeper
            .sweep(now)
            .unwrap_or_else(|e| panic!("{step}: sweep: {e}"));
        for key in removed {
            assert!(
                self.model.flows.remove(key).is_some(),
                "{step}: the test expects the sweep to remove the flow from port {}, which its \
                 model does not have",
                u16::from_be(key.src_port_be)
            );
        }
        assert_eq!(
            (report.flows, report.removed),
            (flows_before, removed.len() as u64),
            "{step}: flows the sweep saw and removed"
        );
        self.model.check(&self.balancer, step);
    }

    pub fn new_flows(&self, service: usize) -> u64 {
        self.balancer.service_counters(service).new_flows
    }
}

/// `count` established TCP flows to `vip`:80 of service 1, from 203.0.113.0/24 clients, spread
/// over reals 1 to `reals` (ids as a fresh instance gives them, in config order), last seen
/// `now_ns`: for filling a flow table directly (`batch::update`).
pub fn established_flows(
    count: u32,
    vip: Ipv4Addr,
    reals: u32,
    now_ns: u64,
) -> (Vec<FlowKey>, Vec<Flow>) {
    let keys = (0..count)
        .map(|i| {
            let mut key = FlowKey {
                protocol: PROTO_TCP,
                family: FAMILY_IPV4,
                src_port_be: (i as u16).to_be(),
                dst_port_be: 80u16.to_be(),
                ..FlowKey::default()
            };
            key.src[..4].copy_from_slice(&(0xcb00_7100u32 + (i >> 16)).to_be_bytes());
            key.dst[..4].copy_from_slice(&vip.octets());
            key
        })
        .collect();
    let flows = (0..count)
        .map(|i| Flow {
            real_id: 1 + i % reals,
            service_id: 1,
            last_seen_ns: now_ns,
            state: u32::from(lb_common::conntrack::STATE_ESTABLISHED),
            ..Flow::default()
        })
        .collect();
    (keys, flows)
}
