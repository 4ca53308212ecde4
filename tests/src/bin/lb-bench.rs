//! `lb-bench` (run by `cargo xtask bench`): nanoseconds per packet of the XDP program, from
//! `BPF_PROG_TEST_RUN` durations, for the paths that matter: a known flow, a new flow, and
//! traffic that is not ours. Numbers come from the kernel's own timing of the program alone,
//! without driver or wire; they bound what the program costs, not what a NIC delivers.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::ExitCode,
    time::Duration,
};

use lb_tests::{
    fixture::{BALANCER_MAC, Balancer, pin_to_current_cpu},
    packet::Frame,
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
limits: {flows: 1000000, services: 16, reals: 64}
";
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

    let established = tcp(client, 80).ack().payload(&[0; 64]).build();
    balancer.run(&established);
    let pass = tcp(client, 22).ack().payload(&[0; 64]).build();
    let arp =
        Frame::arp_request(Ipv4Addr::new(203, 0, 113, 7), Ipv4Addr::new(192, 0, 2, 100)).build();

    // A new flow cannot be repeated in one run (the first run records it), so each is its own
    // run with its own 5-tuple; the kernel times each run.
    let mut new_flow_total = Duration::ZERO;
    for i in 0..NEW_FLOWS {
        let source =
            SocketAddrV4::new(Ipv4Addr::from(0xcb00_7100 | (i >> 16)), (i & 0xffff) as u16);
        new_flow_total += balancer.time(&tcp(source, 80).syn().build(), 1);
    }

    println!(
        "{:<44} {:>10}",
        "path (BPF_PROG_TEST_RUN, one CPU)", "ns/packet"
    );
    let rows = [
        (
            "known flow: TCP to VIP, forwarded (XDP_TX)",
            balancer.time(&established, REPEAT),
        ),
        (
            "new flow: TCP SYN scheduled and recorded",
            new_flow_total / NEW_FLOWS,
        ),
        (
            "not ours: TCP to another port (XDP_PASS)",
            balancer.time(&pass, REPEAT),
        ),
        ("not IP: ARP (XDP_PASS)", balancer.time(&arp, REPEAT)),
    ];
    for (name, per_packet) in rows {
        println!("{name:<44} {:>10}", per_packet.as_nanos());
    }
    println!("\n(new flows: {NEW_FLOWS} single runs; others: {REPEAT} repeats of one frame)");
    ExitCode::SUCCESS
}
