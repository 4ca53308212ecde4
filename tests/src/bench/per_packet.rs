//! Nanoseconds per packet of lbd's program against the stateless DR program, through
//! `BPF_PROG_TEST_RUN` on one CPU, with 1k, 100k and 1M established flows in a flow table
//! of 1,048,576 entries (lbd's flow table is a plain hash, not an LRU: a full table takes no
//! new flow, so it is sized with room for the new flows a sample adds).
//!
//! A path that leaves the frame as it found it for the next run (a known DR flow, a pass) is
//! timed over `REPEAT` runs of one frame; a path that rewrites or grows the frame (tunnels,
//! NAT) or that must see a new 5-tuple each time (new flows) is timed one run per call, since
//! a repeat re-runs the program on its own output. New flows are taken back out of the flow
//! table after each sample, so the table holds what the row says (their connection counts
//! stay: wlc compares larger counts as the run goes on, at the same cost).
//!
//! The stateless program gets the same frames. For it every packet is alike (no table), so
//! its "new flow" is its known flow, and its tunnel or NAT row is plain DR: the ratio is what
//! the path costs in lbd over the least a balancer does. A NAT reply matches none of its
//! services, so there it passes (the row says so).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
    os::fd::AsFd as _,
    time::Duration,
};

use lb_common::{FlowKey, PROTO_TCP, PROTO_UDP};
use lb_userspace::dataplane::batch;

use super::{
    Row, Samples, Section, Target,
    baselines::{Baselines, STATELESS_DR, StatelessService},
};
use crate::{
    conntrack::established_flows,
    fixture::{BALANCER_MAC, Balancer, real_mac_for},
    forwarding::flow_key,
    packet::{Frame, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, fragments},
};

/// Every scheduler, UDP and IPv6, as one balancer with all of them configured.
const CONFIG: &str = "
instance: bench
interfaces: [{name: lo}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals: &three
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.13, weight: 3}
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    reals: [{address: 192.0.2.21}, {address: 192.0.2.22}]
  - vip: 2001:db8::100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 2001:db8::11, weight: 1}
      - {address: 2001:db8::12, weight: 2}
  - {vip: 192.0.2.100, port: 81, protocol: tcp, scheduler: wlc, reals: *three}
  - {vip: 192.0.2.100, port: 82, protocol: tcp, scheduler: sh, reals: *three}
  - {vip: 192.0.2.100, port: 83, protocol: tcp, scheduler: mh, reals: *three}
  - {vip: 192.0.2.100, port: 84, protocol: tcp, scheduler: wrr, persistence: 300s, reals: *three}
  - {vip: 192.0.2.100, port: 85, protocol: tcp, scheduler: rr, reals: *three}
limits: {flows: 1048576, services: 16, reals: 64}
";

/// The forwarding methods other than direct routing, in a balancer of their own: a NAT real
/// makes traffic that is not for a service a candidate reply, which changes the pass rows.
const MODES_CONFIG: &str = "
instance: bench-modes
interfaces: [{name: lo}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, forward: tun, reals: [{address: 198.51.100.11}]}
  - {vip: 192.0.2.100, port: 81, protocol: tcp, forward: tun, tunnel: gue,
     reals: [{address: 198.51.100.12}]}
  - {vip: 192.0.2.100, port: 82, protocol: tcp, forward: nat,
     reals: [{address: 198.51.100.21, port: 8080}]}
  - {vip: 192.0.2.100, port: 83, protocol: tcp, forward: fullnat,
     reals: [{address: 198.51.100.31, port: 8080}]}
  - {vip: 2001:db8::100, port: 80, protocol: tcp, forward: tun,
     reals: [{address: 2001:db8:1::11}]}
  - {vip: 2001:db8::100, port: 82, protocol: tcp, forward: nat,
     reals: [{address: 2001:db8:1::21, port: 8080}]}
  - {vip: 2001:db8::100, port: 83, protocol: tcp, forward: fullnat,
     reals: [{address: 2001:db8:1::31, port: 8080}]}
limits: {flows: 1048576, services: 16, reals: 64}
";

/// Flows in the table for each group of rows.
const TABLE_SIZES: [u32; 3] = [1_000, 100_000, 1_000_000];
/// Samples per row, lbd and reference alternating.
const ROUNDS: usize = 5;
/// Runs of one frame per sample, for paths that leave the frame reusable.
const REPEAT: u32 = 200_000;
/// Single runs per sample, for new flows and rewriting paths.
const SINGLE_RUNS: u32 = 10_000;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 200), 40000);
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

pub fn run() -> Vec<Section> {
    let mut lbd = Balancer::load(CONFIG);
    let mut modes = Balancer::load(MODES_CONFIG);
    let mut reference = Baselines::load();
    for service in stateless_services() {
        reference.add_stateless_service(&service);
    }
    let mut bench = Bench {
        reference,
        new_flow_sources: 0,
    };
    let mut sections = Vec::new();
    for size in TABLE_SIZES {
        eprintln!("bench: per packet, {size} flows in the table");
        // The fill lies outside every source the rows use (203.0.113.0–15, from
        // `established_flows`; the rows' clients are 203.0.113.128 and up).
        let now = lb_userspace::admin::monotonic_now_ns();
        for balancer in [&lbd, &modes] {
            let (keys, flows) = established_flows(size, VIP, 1, now);
            batch::update(balancer.reader.flows().fd().as_fd(), &keys, &flows)
                .expect("filling the flow table");
        }
        let mut rows = bench.main_rows(&mut lbd);
        rows.extend(bench.mode_rows(&mut modes));
        sections.push(Section {
            title: format!("Per packet, {} flows in the table", thousands(size)),
            method: format!(
                "BPF_PROG_TEST_RUN on one CPU: lbd's program with every scheduler, UDP and \
                 IPv6 configured, and the forwarding modes in a second instance (a NAT real \
                 changes the pass path), each with a flow table of 1,048,576 entries holding \
                 {size} established flows; against the stateless DR program on the same \
                 frames. {ROUNDS} samples each, alternating; a sample is the mean of \
                 {REPEAT} runs of one frame, or of {SINGLE_RUNS} single runs for new flows \
                 and rewriting paths."
            ),
            rows,
        });
    }
    sections
}

struct Bench {
    reference: Baselines,
    /// New-flow clients used so far: each sample's are fresh.
    new_flow_sources: u32,
}

impl Bench {
    fn main_rows(&mut self, lbd: &mut Balancer) -> Vec<Row> {
        let tcp = |port: u16| tcp_frame(CLIENT, port);
        let known = |lbd: &mut Balancer, opening: &[u8], frame: Vec<u8>| {
            lbd.run(opening);
            lbd.run(&frame);
            frame
        };
        let known_tcp = known(
            lbd,
            &tcp(80).syn().build(),
            tcp(80).ack().payload(&[0; 64]).build(),
        );
        let udp = Frame::udp(CLIENT, SocketAddrV4::new(VIP, 53))
            .payload(&[0; 64])
            .src_mac(CLIENT_MAC)
            .dst_mac(BALANCER_MAC)
            .build();
        lbd.run(&udp);
        let client6: SocketAddrV6 = "[2001:db8:ffff::7]:40000".parse().unwrap();
        let tcp6 = |port: u16| {
            Frame::ipv6_tcp(client6, SocketAddrV6::new(VIP6, port, 0, 0))
                .src_mac(CLIENT_MAC)
                .dst_mac(BALANCER_MAC)
        };
        let known_tcp6 = known(
            lbd,
            &tcp6(80).syn().build(),
            tcp6(80).ack().payload(&[0; 64]).build(),
        );
        let not_a_vip = Frame::tcp(CLIENT, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 22))
            .ack()
            .payload(&[0; 64])
            .src_mac(CLIENT_MAC)
            .dst_mac(BALANCER_MAC)
            .build();
        let not_a_vip6 = Frame::ipv6_tcp(client6, "[2001:db8::1]:22".parse().unwrap())
            .ack()
            .payload(&[0; 64])
            .src_mac(CLIENT_MAC)
            .dst_mac(BALANCER_MAC)
            .build();
        let vip_other_port = tcp(22).ack().payload(&[0; 64]).build();
        let arp = Frame::arp_request(*CLIENT.ip(), VIP).build();
        let datagram = Frame::udp(CLIENT, SocketAddrV4::new(VIP, 53))
            .payload(&[0; 2000])
            .src_mac(CLIENT_MAC)
            .dst_mac(BALANCER_MAC)
            .build();
        let pieces = fragments(&datagram, 1280, 99);
        lbd.run(&pieces[0]);
        let later_fragment = pieces.last().expect("fragments").clone();
        let reply = Frame::tcp(SocketAddrV4::new(VIP, 80), CLIENT)
            .ack()
            .ip_bytes();
        let icmp_error = Frame::icmp_error(
            Ipv4Addr::new(192, 0, 2, 254),
            VIP,
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            1280,
            &reply[..28],
        )
        .dst_mac(BALANCER_MAC)
        .build();

        let mut rows = vec![
            self.repeated(
                lbd,
                "known flow: TCP",
                &known_tcp,
                Some(Target::AtMost(1.3)),
            ),
            self.repeated(lbd, "known flow: UDP", &udp, Some(Target::AtMost(1.3))),
            self.repeated(
                lbd,
                "known flow: IPv6 TCP",
                &known_tcp6,
                Some(Target::AtMost(1.3)),
            ),
            self.repeated(
                lbd,
                "not for a VIP: TCP (XDP_PASS)",
                &not_a_vip,
                Some(Target::AtMost(1.1)),
            ),
            self.repeated(
                lbd,
                "not for a VIP: IPv6 TCP",
                &not_a_vip6,
                Some(Target::AtMost(1.1)),
            ),
            self.repeated(lbd, "VIP, port not a service (pass)", &vip_other_port, None),
            self.repeated(lbd, "not IP: ARP (pass)", &arp, None),
            self.repeated(lbd, "fragment, datagram known", &later_fragment, None),
            self.repeated(lbd, "ICMP frag-needed, known flow", &icmp_error, None),
        ];
        for (name, port) in [
            ("new flow: TCP SYN, wrr", 80),
            ("new flow: rr", 85),
            ("new flow: wlc", 81),
            ("new flow: sh", 82),
            ("new flow: mh (Maglev, 65537 slots)", 83),
            ("new flow: wrr with persistence", 84),
        ] {
            let target = (port == 80).then_some(Target::AtMost(2.0));
            rows.push(self.new_flows(lbd, name, target, false, |source| syn_to(source, port)));
        }
        rows.push(self.new_flows(lbd, "new flow: UDP", None, false, |source| {
            let vip = SocketAddrV4::new(VIP, 53);
            let frame = Frame::udp(source, vip)
                .payload(&[0; 64])
                .src_mac(CLIENT_MAC)
                .dst_mac(BALANCER_MAC)
                .build();
            (frame, flow_key(source.into(), vip.into(), PROTO_UDP))
        }));
        rows.push(
            self.new_flows(lbd, "new flow: IPv6 TCP SYN", None, false, |source| {
                let mut address = client6.ip().octets();
                address[12..].copy_from_slice(&source.ip().octets());
                let source = SocketAddrV6::new(address.into(), source.port(), 0, 0);
                let vip = SocketAddrV6::new(VIP6, 80, 0, 0);
                let frame = Frame::ipv6_tcp(source, vip)
                    .syn()
                    .src_mac(CLIENT_MAC)
                    .dst_mac(BALANCER_MAC)
                    .build();
                (frame, flow_key(source.into(), vip.into(), PROTO_TCP))
            }),
        );
        rows
    }

    fn mode_rows(&mut self, modes: &mut Balancer) -> Vec<Row> {
        let mut known = |port: u16| {
            modes.run(&tcp_frame(CLIENT, port).syn().build());
            let established = tcp_frame(CLIENT, port).ack().payload(&[0; 64]).build();
            modes.run(&established);
            established
        };
        let ipip = known(80);
        let gue = known(81);
        let nat = known(82);
        let full_nat = known(83);
        let client6: SocketAddrV6 = "[2001:db8:ffff::7]:40000".parse().unwrap();
        let mut known6 = |port: u16| {
            let frame = || {
                Frame::ipv6_tcp(client6, SocketAddrV6::new(VIP6, port, 0, 0))
                    .src_mac(CLIENT_MAC)
                    .dst_mac(BALANCER_MAC)
            };
            modes.run(&frame().syn().build());
            let established = frame().ack().payload(&[0; 64]).build();
            modes.run(&established);
            established
        };
        let ip6ip6 = known6(80);
        let nat6 = known6(82);
        let full_nat6 = known6(83);
        let nat_reply = Frame::tcp(
            SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 21), 8080),
            CLIENT,
        )
        .ack()
        .payload(&[0; 64])
        .src_mac([2, 0, 0, 0, 0, 2])
        .dst_mac(BALANCER_MAC)
        .build();
        let not_a_vip = Frame::tcp(CLIENT, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 22))
            .ack()
            .payload(&[0; 64])
            .src_mac(CLIENT_MAC)
            .dst_mac(BALANCER_MAC)
            .build();
        let mut rows = vec![
            self.single_runs(modes, "known flow: tunnel, IPIP", &ipip),
            self.single_runs(modes, "known flow: tunnel, GUE", &gue),
            self.single_runs(modes, "known flow: NAT, port mapped", &nat),
            self.single_runs(modes, "NAT reply, translated back", &nat_reply)
                .note(
                    "the stateless program passes this packet (a real's reply matches none of its \
                 services): a translation against a pass",
                ),
            self.single_runs(modes, "known flow: full NAT", &full_nat),
            self.single_runs(modes, "known flow: IPv6 tunnel (6in6)", &ip6ip6),
            self.single_runs(modes, "known flow: IPv6 NAT", &nat6),
            self.single_runs(modes, "known flow: IPv6 full NAT", &full_nat6),
            self.repeated(
                modes,
                "not for a VIP, with NAT reals (reply lookup)",
                &not_a_vip,
                Some(Target::AtMost(1.1)),
            ),
        ];
        for (name, port) in [
            ("new flow: tunnel, IPIP", 80),
            ("new flow: NAT", 82),
            ("new flow: full NAT (local port claimed)", 83),
        ] {
            rows.push(self.new_flows(modes, name, None, true, |source| syn_to(source, port)));
        }
        rows
    }

    /// A frame the program leaves reusable, `REPEAT` runs per sample.
    fn repeated(
        &mut self,
        lbd: &mut Balancer,
        name: &str,
        frame: &[u8],
        target: Option<Target>,
    ) -> Row {
        let mut ours = Samples::default();
        let mut theirs = Samples::default();
        for _ in 0..ROUNDS {
            ours.push(nanos(lbd.time(frame, REPEAT)));
            theirs.push(nanos(self.reference.time(STATELESS_DR, frame, REPEAT)));
        }
        Row::against(name, "ns/packet", ours, "stateless DR", theirs, target)
    }

    /// A frame the program rewrites: one run per call.
    fn single_runs(&mut self, lbd: &mut Balancer, name: &str, frame: &[u8]) -> Row {
        let mut ours = Samples::default();
        let mut theirs = Samples::default();
        for _ in 0..ROUNDS {
            let mut total = Duration::ZERO;
            for _ in 0..SINGLE_RUNS {
                total += lbd.time(frame, 1);
            }
            ours.push(nanos(total / SINGLE_RUNS));
            let mut total = Duration::ZERO;
            for _ in 0..SINGLE_RUNS {
                total += self.reference.time(STATELESS_DR, frame, 1);
            }
            theirs.push(nanos(total / SINGLE_RUNS));
        }
        Row::against(name, "ns/packet", ours, "stateless DR", theirs, None)
    }

    /// New flows, one per run, each from a client no row has used; taken back out of the
    /// table after each sample (and `with_replies`, their NAT reply entries too).
    fn new_flows(
        &mut self,
        lbd: &mut Balancer,
        name: &str,
        target: Option<Target>,
        with_replies: bool,
        frame_from: impl Fn(SocketAddrV4) -> (Vec<u8>, FlowKey),
    ) -> Row {
        let mut ours = Samples::default();
        let mut theirs = Samples::default();
        for _ in 0..ROUNDS {
            let frames: Vec<(Vec<u8>, FlowKey)> = (0..SINGLE_RUNS)
                .map(|_| {
                    let i = self.new_flow_sources;
                    self.new_flow_sources += 1;
                    // 203.0.113.128 to .191, ports 1 to 65535 each: 4.19M distinct flows,
                    // more than a run uses (1.65M), so every one is new.
                    let address = Ipv4Addr::from(0xcb00_7180 | ((i / 65_535) & 0x3f));
                    frame_from(SocketAddrV4::new(address, (i % 65_535) as u16 + 1))
                })
                .collect();
            let mut total = Duration::ZERO;
            for (frame, _) in &frames {
                total += lbd.time(frame, 1);
            }
            ours.push(nanos(total / SINGLE_RUNS));
            let keys: Vec<FlowKey> = frames.iter().map(|(_, key)| *key).collect();
            batch::delete(lbd.reader.flows().fd().as_fd(), &keys)
                .expect("taking the new flows back out of the table");
            if with_replies {
                // NAT flows hold reply entries (and full NAT a local port each); lbd's sweep
                // takes back those whose flow is gone, as it does every second.
                lbd.sweeper
                    .sweep(lb_userspace::admin::monotonic_now_ns())
                    .expect("sweeping the replies of the new flows");
            }
            let mut total = Duration::ZERO;
            for (frame, _) in &frames {
                total += self.reference.time(STATELESS_DR, frame, 1);
            }
            theirs.push(nanos(total / SINGLE_RUNS));
        }
        Row::against(name, "ns/packet", ours, "stateless DR", theirs, target)
    }
}

/// The stateless program's services: the DR services of [`CONFIG`], same VIPs, ports and
/// number of reals.
fn stateless_services() -> Vec<StatelessService> {
    let macs = |addresses: &[&str]| {
        addresses
            .iter()
            .map(|a| real_mac_for(a.parse::<IpAddr>().unwrap()))
            .collect::<Vec<_>>()
    };
    let three = macs(&["192.0.2.11", "192.0.2.12", "192.0.2.13"]);
    let mut services: Vec<StatelessService> = [80, 81, 82, 83, 84, 85]
        .into_iter()
        .map(|port| StatelessService {
            vip: VIP.into(),
            port,
            protocol: PROTO_TCP,
            real_macs: three.clone(),
        })
        .collect();
    services.push(StatelessService {
        vip: VIP.into(),
        port: 53,
        protocol: PROTO_UDP,
        real_macs: macs(&["192.0.2.21", "192.0.2.22"]),
    });
    // Port 80 as lbd's wrr service; 82 and 83 stand for the IPv6 NAT and full-NAT ones.
    for port in [80, 82, 83] {
        services.push(StatelessService {
            vip: VIP6.into(),
            port,
            protocol: PROTO_TCP,
            real_macs: macs(&["2001:db8::11", "2001:db8::12"]),
        });
    }
    services
}

/// A SYN from `source` to the VIP's `port`, and the flow key it makes.
fn syn_to(source: SocketAddrV4, port: u16) -> (Vec<u8>, FlowKey) {
    let vip = SocketAddrV4::new(VIP, port);
    let frame = tcp_frame(source, port).syn().build();
    (frame, flow_key(source.into(), vip.into(), PROTO_TCP))
}

fn tcp_frame(client: SocketAddrV4, port: u16) -> Frame {
    Frame::tcp(client, SocketAddrV4::new(VIP, port))
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
}

fn nanos(duration: Duration) -> f64 {
    duration.as_nanos() as f64
}

/// 1000 → "1k", 100000 → "100k", 1000000 → "1M".
pub fn thousands(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
