//! `lb-bench` (run by `cargo xtask bench`): nanoseconds per packet of the XDP program, from
//! `BPF_PROG_TEST_RUN` durations, for the paths that matter: a known flow (IPv4 and IPv6), a
//! new flow (per scheduler), traffic that is not ours, a fragment and an ICMP error, and each
//! forwarding method (tunnel, NAT and its replies, full NAT); then VRRP takeover times of an
//! lbd pair next to a keepalived pair's. Numbers come from the kernel's own timing of the program alone,
//! without driver or wire; they bound what the program costs, not what a NIC delivers.

use std::{
    net::{Ipv4Addr, SocketAddrV4, SocketAddrV6},
    process::ExitCode,
    time::Duration,
};

use lb_tests::{
    fixture::{BALANCER_MAC, Balancer, pin_to_current_cpu},
    packet::{Frame, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, fragments},
    privilege::require_root,
};

const CONFIG: &str = "
instance: bench
interfaces: [{name: lo}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
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
  - vip: 192.0.2.100
    port: 81
    protocol: tcp
    scheduler: wlc
    reals: &three
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.13, weight: 3}
  - {vip: 192.0.2.100, port: 82, protocol: tcp, scheduler: sh, reals: *three}
  - {vip: 192.0.2.100, port: 83, protocol: tcp, scheduler: mh, reals: *three}
  - {vip: 192.0.2.100, port: 84, protocol: tcp, scheduler: wrr, persistence: 300s, reals: *three}
limits: {flows: 1000000, services: 16, reals: 64}
";
/// The forwarding methods other than direct routing, in a balancer of their own: a NAT real
/// makes traffic that is not for a service a candidate reply, which would change the "not
/// ours" rows above.
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
limits: {flows: 1000000, services: 16, reals: 64}
";
/// Runs of a path that rewrites the packet: `BPF_PROG_TEST_RUN` repeats a run on the frame
/// the previous one left, so each is timed alone.
const SINGLE_RUNS: u32 = 100_000;
const FULL_NAT_NEW_FLOWS: u32 = 10_000;
const REPEAT: u32 = 1_000_000;
const NEW_FLOWS: u32 = 100_000;

fn main() -> ExitCode {
    if !require_root("the benchmark") {
        return ExitCode::FAILURE;
    }
    pin_to_current_cpu();
    let mut balancer = Balancer::load(CONFIG);
    let tcp = |client: SocketAddrV4, port: u16| {
        Frame::tcp(
            client,
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), port),
        )
        .src_mac([2, 0, 0, 0, 0, 1])
        .dst_mac(BALANCER_MAC)
    };
    let client = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 40000);

    // Known flows: opened by a SYN, then established by the first of the timed ACKs.
    balancer.run(&tcp(client, 80).syn().build());
    let established = tcp(client, 80).ack().payload(&[0; 64]).build();
    balancer.run(&established);
    let pass = tcp(client, 22).ack().payload(&[0; 64]).build();
    let arp =
        Frame::arp_request(Ipv4Addr::new(203, 0, 113, 7), Ipv4Addr::new(192, 0, 2, 100)).build();
    let tcp6 = |port: u16| {
        let client: SocketAddrV6 = "[2001:db8:ffff::7]:40000".parse().unwrap();
        let vip = SocketAddrV6::new("2001:db8::100".parse().unwrap(), port, 0, 0);
        Frame::ipv6_tcp(client, vip)
            .src_mac([2, 0, 0, 0, 0, 1])
            .dst_mac(BALANCER_MAC)
    };
    balancer.run(&tcp6(80).syn().build());
    let established6 = tcp6(80).ack().payload(&[0; 64]).build();
    balancer.run(&established6);
    let pass6 = tcp6(22).ack().payload(&[0; 64]).build();
    // A datagram's last fragment, once its first fragment has placed the datagram.
    let datagram = Frame::udp(client, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 53))
        .payload(&[0; 2000])
        .src_mac([2, 0, 0, 0, 0, 1])
        .dst_mac(BALANCER_MAC)
        .build();
    let pieces = fragments(&datagram, 1280, 99);
    balancer.run(&pieces[0]);
    let later_fragment = pieces.last().expect("fragments").clone();
    // Fragmentation needed about the known flow's reply, to the VIP.
    let reply = Frame::tcp(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 80), client)
        .ack()
        .ip_bytes();
    let icmp_error = Frame::icmp_error(
        Ipv4Addr::new(192, 0, 2, 254),
        Ipv4Addr::new(192, 0, 2, 100),
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        1280,
        &reply[..28],
    )
    .dst_mac(BALANCER_MAC)
    .build();

    // A new flow cannot be repeated in one run (the first run records it), so each is its own
    // run with its own 5-tuple; the kernel times each run.
    let mut new_flows = |port: u16| {
        let mut total = Duration::ZERO;
        for i in 0..NEW_FLOWS {
            let source =
                SocketAddrV4::new(Ipv4Addr::from(0xcb00_7100 | (i >> 16)), (i & 0xffff) as u16);
            total += balancer.time(&tcp(source, port).syn().build(), 1);
        }
        total / NEW_FLOWS
    };
    let new_flow = new_flows(80);
    let new_flow_wlc = new_flows(81);
    let new_flow_sh = new_flows(82);
    let new_flow_mh = new_flows(83);
    let new_flow_persistent = new_flows(84);
    // lbd's sweep over the table the new flows filled (none expired: the walk is the cost).
    let flows_swept = {
        let started = std::time::Instant::now();
        let report = balancer
            .sweeper
            .sweep(lb_userspace::admin::monotonic_now_ns())
            .expect("sweeping the flow table");
        (report.flows, started.elapsed())
    };

    let modes = forwarding_methods();

    println!(
        "{:<44} {:>10}",
        "path (BPF_PROG_TEST_RUN, one CPU)", "ns/packet"
    );
    let rows = [
        (
            "known flow: TCP to VIP, forwarded (XDP_TX)",
            balancer.time(&established, REPEAT),
        ),
        ("new flow: TCP SYN scheduled and recorded", new_flow),
        (
            "not ours: TCP to another port (XDP_PASS)",
            balancer.time(&pass, REPEAT),
        ),
        ("not IP: ARP (XDP_PASS)", balancer.time(&arp, REPEAT)),
        (
            "known flow: IPv6 TCP to VIP, forwarded",
            balancer.time(&established6, REPEAT),
        ),
        (
            "not ours: IPv6 TCP to another port (PASS)",
            balancer.time(&pass6, REPEAT),
        ),
        (
            "fragment: a later one, datagram known",
            balancer.time(&later_fragment, REPEAT),
        ),
        (
            "ICMP frag-needed about a known flow",
            balancer.time(&icmp_error, REPEAT),
        ),
        ("new flow, wlc (3 reals)", new_flow_wlc),
        ("new flow, sh", new_flow_sh),
        ("new flow, mh (Maglev, 65537 slots)", new_flow_mh),
        ("new flow, wrr with persistence", new_flow_persistent),
    ];
    for (name, per_packet) in rows.into_iter().chain(modes) {
        println!("{name:<44} {:>10}", per_packet.as_nanos());
    }
    println!(
        "\nlbd's flow sweep over {} flows, none expired: {} ms",
        flows_swept.0,
        flows_swept.1.as_millis()
    );
    println!(
        "\n(new flows and the forwarding methods: {NEW_FLOWS} and {SINGLE_RUNS} single runs; \
         others: {REPEAT} repeats of one frame)"
    );
    takeovers();
    ExitCode::SUCCESS
}

/// VRRP takeover times, lbd's next to keepalived's, each from a fresh pair in namespaces: from
/// the master's exit until the backup holds the VIP.
fn takeovers() {
    use lb_tests::takeover::{Exit, Peer, measure};
    println!(
        "\n{:<44} {:>10} {:>11}",
        "VRRP takeover (namespaces, one sample each)", "lbd", "keepalived"
    );
    let mut run = 0;
    for advert in [Duration::from_secs(1), Duration::from_millis(100)] {
        for (exit, what) in [
            (Exit::Killed, "master SIGKILLed"),
            (Exit::Stopped, "master stopped"),
        ] {
            let mut times = [Duration::ZERO; 2];
            for (slot, peer) in [Peer::Lbd, Peer::Keepalived].into_iter().enumerate() {
                run += 1;
                let prefix = format!("lbb-to{}-{run}-", std::process::id());
                times[slot] = measure(&prefix, peer, advert, exit);
            }
            println!(
                "{:<44} {:>8} ms {:>8} ms",
                format!("{what}, {} ms adverts", advert.as_millis()),
                times[0].as_millis(),
                times[1].as_millis()
            );
        }
    }
    println!(
        "(bounds: killed, 3 × advert + skew = 3.609 s at 1 s and 361 ms at 100 ms for the backup's \
         priority 100; stopped, the skew: 609 ms and 61 ms)"
    );
}

/// Known flows through each forwarding method, a NAT reply, a full-NAT new flow, and traffic
/// that is not ours once a NAT real makes the program look for replies.
fn forwarding_methods() -> Vec<(&'static str, Duration)> {
    let mut balancer = Balancer::load(MODES_CONFIG);
    let vip = Ipv4Addr::new(192, 0, 2, 100);
    let client = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 40000);
    let from_client = |client: SocketAddrV4, port: u16| {
        Frame::tcp(client, SocketAddrV4::new(vip, port))
            .src_mac([2, 0, 0, 0, 0, 1])
            .dst_mac(BALANCER_MAC)
    };
    let mut known = |port: u16| {
        balancer.run(&from_client(client, port).syn().build());
        let established = from_client(client, port).ack().payload(&[0; 64]).build();
        balancer.run(&established);
        established
    };
    let tunnel = known(80);
    let gue = known(81);
    let nat = known(82);
    let full_nat = known(83);
    let real = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 21), 8080);
    let nat_reply = Frame::tcp(real, client)
        .ack()
        .payload(&[0; 64])
        .src_mac([2, 0, 0, 0, 0, 2])
        .dst_mac(BALANCER_MAC)
        .build();
    let pass = from_client(client, 22).ack().payload(&[0; 64]).build();
    let mut single_runs = |frame: &[u8]| {
        let mut total = Duration::ZERO;
        for _ in 0..SINGLE_RUNS {
            total += balancer.time(frame, 1);
        }
        total / SINGLE_RUNS
    };
    let mut rows = vec![
        ("known flow: tunnel, IPIP", single_runs(&tunnel)),
        ("known flow: tunnel, GUE", single_runs(&gue)),
        ("known flow: NAT, port mapped", single_runs(&nat)),
        ("NAT reply, translated back", single_runs(&nat_reply)),
        ("known flow: full NAT", single_runs(&full_nat)),
        (
            "not ours, with NAT reals (reply lookup)",
            balancer.time(&pass, REPEAT),
        ),
    ];
    // Within what one local address holds for one real (31,744 ports): a third of them, so
    // later flows find some ports taken, as a busy service does.
    let mut total = Duration::ZERO;
    for i in 0..FULL_NAT_NEW_FLOWS {
        let source =
            SocketAddrV4::new(Ipv4Addr::from(0xcb00_7100 | (i >> 16)), (i & 0xffff) as u16);
        total += balancer.time(&from_client(source, 83).syn().build(), 1);
    }
    rows.push((
        "new flow: full NAT (local port claimed)",
        total / FULL_NAT_NEW_FLOWS,
    ));
    rows
}
