//! Packet fixtures: single frames through the loaded (unattached) XDP program with
//! `BPF_PROG_TEST_RUN`, checking verdict, output bytes and counters. Needs root.
//!
//! On a byte mismatch the failure names the differing fields and writes a pcap (expected, then
//! actual) under `$LB_PCAP_DIR` or `<tmp>/lb-tests-pcap`.

use std::net::{Ipv4Addr, SocketAddrV4};

use lb_common::Reason;
use lb_tests::{
    fixture::{
        BALANCER_MAC, Balancer, XDP_DROP, XDP_PASS, XDP_TX, check_exact, direct_routed,
        pin_to_current_cpu, real_mac_for,
    },
    packet::{Frame, Mac, truncated},
    pcap::assert_frame_eq,
    privilege::require_root,
};
use lb_userspace::dataplane::Dataplane as _;

const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP_ALL_PORTS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
const VIP_NO_REALS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 102);
const BALANCER_OWN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const WEB_REALS: [(Ipv4Addr, u32); 3] = [
    (Ipv4Addr::new(192, 0, 2, 11), 1),
    (Ipv4Addr::new(192, 0, 2, 12), 2),
    (Ipv4Addr::new(192, 0, 2, 13), 3),
];
const DNS_REALS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 21), Ipv4Addr::new(192, 0, 2, 22)];
const ALL_PORTS_REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 31);
const VIP_LOST_INTERFACE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 103);

/// Service indexes in CONFIG.
const WEB: usize = 0;
const DNS: usize = 1;
const NO_REALS: usize = 3;
const LOST_INTERFACE: usize = 4;

const CONFIG: &str = "
instance: fixtures
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
    scheduler: rr
    reals: [{address: 192.0.2.21}, {address: 192.0.2.22}]
  - vip: 192.0.2.101
    port: 0
    protocol: tcp
    scheduler: rr
    reals: [{address: 192.0.2.31}]
  - vip: 192.0.2.102
    port: 80
    protocol: tcp
    scheduler: rr
    reals: [{address: 192.0.2.41}]
  - vip: 192.0.2.103
    port: 80
    protocol: tcp
    reals: [{address: 192.0.2.51}]
limits: {flows: 4096, services: 16, reals: 64}
";

fn balancer(test: &str) -> Option<Balancer> {
    if !require_root(test) {
        return None;
    }
    pin_to_current_cpu();
    let mut balancer = Balancer::load(CONFIG);
    // This service's only real never answered ARP: it cannot take flows.
    balancer.state.services[NO_REALS].reals[0].mac = None;
    balancer.apply();
    // This one names an interface the program was never told about.
    let lost = &balancer.state.services[LOST_INTERFACE].reals[0];
    let (id, mut entry) = balancer
        .dataplane
        .reals()
        .unwrap()
        .into_iter()
        .find(|(id, _)| *id == lost.id)
        .expect("the real is in the map");
    entry.ifindex = 99;
    balancer.dataplane.set_real(id, entry).unwrap();
    Some(balancer)
}

fn tcp(client_port: u16, vip: Ipv4Addr, port: u16) -> Frame {
    Frame::tcp(
        SocketAddrV4::new(CLIENT, client_port),
        SocketAddrV4::new(vip, port),
    )
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
}

fn syn(client_port: u16) -> Frame {
    tcp(client_port, VIP, 80).syn()
}

/// What the program must do with a frame.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// To the kernel, byte for byte as it came.
    Pass(Reason),
    Drop(Reason),
    /// Out the same interface to this real: only the MAC addresses change.
    Forward(Ipv4Addr),
    /// As `Forward`, to the real the service's schedule gives next on this CPU.
    ForwardNext(usize),
}

/// Runs one frame and checks action, output bytes and the reason counter. Returns the output.
#[track_caller]
fn check(balancer: &mut Balancer, name: &str, frame: &[u8], expect: Expect) -> Vec<u8> {
    let expect = match expect {
        Expect::ForwardNext(service) => Expect::Forward(balancer.next_scheduled(service)),
        other => other,
    };
    let (action, reason, expected_frame) = match expect {
        Expect::Pass(reason) => (XDP_PASS, reason, frame.to_vec()),
        Expect::Drop(reason) => (XDP_DROP, reason, frame.to_vec()),
        Expect::Forward(real) => {
            let mut rewritten = frame.to_vec();
            rewritten[0..6].copy_from_slice(&real_mac_for(real));
            rewritten[6..12].copy_from_slice(&BALANCER_MAC);
            (XDP_TX, Reason::ForwardedTx, rewritten)
        }
        Expect::ForwardNext(_) => unreachable!("resolved above"),
    };
    check_exact(balancer, name, frame, action, reason, &expected_frame)
}

/// The real a forwarded frame went to, from its destination MAC.
fn real_of(frame: &[u8], candidates: &[Ipv4Addr]) -> Ipv4Addr {
    *candidates
        .iter()
        .find(|&&real| frame[0..6] == real_mac_for(real))
        .unwrap_or_else(|| panic!("frame went to an unknown MAC {:02x?}", &frame[0..6]))
}

fn web_reals() -> Vec<Ipv4Addr> {
    WEB_REALS.iter().map(|(addr, _)| *addr).collect()
}

#[test]
fn every_kind_of_frame_gets_its_verdict() {
    let Some(mut balancer) = balancer("every_kind_of_frame_gets_its_verdict") else {
        return;
    };
    let udp = |vip: Ipv4Addr, port: u16| {
        Frame::udp(
            SocketAddrV4::new(CLIENT, 5353),
            SocketAddrV4::new(vip, port),
        )
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .payload(b"query")
    };
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "tcp_syn_to_vip",
            syn(40000).build(),
            Expect::ForwardNext(WEB),
        ),
        ("udp_to_vip", udp(VIP, 53).build(), Expect::ForwardNext(DNS)),
        (
            "tcp_to_all_ports_vip",
            tcp(40001, VIP_ALL_PORTS, 8443).syn().build(),
            Expect::Forward(ALL_PORTS_REAL),
        ),
        (
            "ip_options_are_forwarded_untouched",
            syn(40003)
                .ip_options(&[0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00])
                .build(),
            Expect::ForwardNext(WEB),
        ),
        (
            "ethernet_padding_is_kept",
            {
                let mut frame = syn(40004).build();
                frame.extend_from_slice(&[0; 6]);
                frame
            },
            Expect::ForwardNext(WEB),
        ),
        (
            "tcp_to_balancer_own_address",
            tcp(40005, BALANCER_OWN, 22).syn().build(),
            Expect::Pass(Reason::PassNoService),
        ),
        (
            "tcp_to_vip_other_port",
            tcp(40006, VIP, 443).syn().build(),
            Expect::Pass(Reason::PassNoService),
        ),
        (
            "udp_to_tcp_only_port",
            udp(VIP, 80).build(),
            Expect::Pass(Reason::PassNoService),
        ),
        (
            "arp_request_for_vip",
            Frame::arp_request(CLIENT, VIP).src_mac(CLIENT_MAC).build(),
            Expect::Pass(Reason::PassNotIp),
        ),
        (
            "ipv6_tcp_to_an_address_without_service",
            Frame::ipv6_tcp(
                "[2001:db8::7]:40000".parse().unwrap(),
                "[2001:db8::100]:80".parse().unwrap(),
            )
            .src_mac(CLIENT_MAC)
            .dst_mac(BALANCER_MAC)
            .syn()
            .build(),
            Expect::Pass(Reason::PassNoService),
        ),
        (
            "qinq_tagged",
            syn(40007).qinq(10, 100).build(),
            Expect::Pass(Reason::PassStackedVlan),
        ),
        (
            "icmp_echo_to_vip",
            Frame::icmp_echo(CLIENT, VIP)
                .src_mac(CLIENT_MAC)
                .dst_mac(BALANCER_MAC)
                .build(),
            Expect::Pass(Reason::PassNotTcpUdp),
        ),
        (
            "fragment_to_balancer_own_address",
            tcp(40008, BALANCER_OWN, 22).fragment(false, 1480).build(),
            Expect::Pass(Reason::PassNoService),
        ),
        (
            "ihl_below_five",
            syn(40010).ip_ihl(4).build(),
            Expect::Pass(Reason::PassMalformed),
        ),
        (
            "total_length_past_frame_end",
            syn(40011).ip_total_length(1500).build(),
            Expect::Pass(Reason::PassTruncated),
        ),
        (
            "total_length_shorter_than_tcp_header",
            syn(40012).ip_total_length(30).build(),
            Expect::Pass(Reason::PassTruncated),
        ),
        (
            "service_without_available_real",
            tcp(40013, VIP_NO_REALS, 80).syn().build(),
            Expect::Drop(Reason::DropNoReal),
        ),
        (
            "real_on_an_interface_the_program_does_not_know",
            tcp(40014, VIP_LOST_INTERFACE, 80).syn().build(),
            Expect::Drop(Reason::DropNoInterface),
        ),
    ];
    for (name, frame, expect) in &cases {
        check(&mut balancer, name, frame, *expect);
    }
}

#[test]
fn truncated_frames_pass_untouched_at_every_length() {
    let Some(mut balancer) = balancer("truncated_frames_pass_untouched_at_every_length") else {
        return;
    };
    let frames = [
        (
            "tcp",
            syn(41000).payload(b"GET / HTTP/1.1\r\n").build(),
            14 + 20 + 20,
        ),
        (
            "udp",
            Frame::udp(SocketAddrV4::new(CLIENT, 41001), SocketAddrV4::new(VIP, 53))
                .src_mac(CLIENT_MAC)
                .dst_mac(BALANCER_MAC)
                .payload(b"q")
                .build(),
            14 + 20 + 8,
        ),
        ("vlan_tcp", syn(41002).vlan(7).build(), 18 + 20 + 20),
        (
            "tcp_with_ip_options",
            syn(41003).ip_options(&[1, 1, 1, 0]).build(),
            14 + 24 + 20,
        ),
    ];
    // BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet header.
    for (kind, frame, headers) in &frames {
        for len in 14..*headers {
            let name = format!("{kind}_truncated_to_{len}");
            check(
                &mut balancer,
                &name,
                &truncated(frame, len),
                Expect::Pass(Reason::PassTruncated),
            );
        }
    }
    // Non-IP frames are not parsed beyond the Ethernet header, whatever their length.
    let arp = Frame::arp_request(CLIENT, VIP).src_mac(CLIENT_MAC).build();
    check(
        &mut balancer,
        "arp_truncated_to_14",
        &truncated(&arp, 14),
        Expect::Pass(Reason::PassNotIp),
    );
    assert_eq!(
        balancer.service_counters(WEB).packets,
        0,
        "nothing truncated was forwarded"
    );
}

#[test]
fn a_flow_keeps_its_real() {
    let Some(mut balancer) = balancer("a_flow_keeps_its_real") else {
        return;
    };
    let first = check(
        &mut balancer,
        "syn",
        &syn(42000).build(),
        Expect::ForwardNext(WEB),
    );
    let real = real_of(&first, &web_reals());
    // Other flows move the scheduler on; this flow's packets must not follow it.
    for port in 42001..42005 {
        let outcome = balancer.run(&syn(port).build());
        assert_eq!(outcome.action, XDP_TX, "other flow from port {port}");
    }
    for (i, frame) in [
        tcp(42000, VIP, 80).ack().seq(1).ack_number(1).build(),
        tcp(42000, VIP, 80)
            .ack()
            .psh()
            .seq(1)
            .payload(b"GET / HTTP/1.1\r\n\r\n")
            .build(),
        tcp(42000, VIP, 80).fin().ack().seq(19).build(),
    ]
    .iter()
    .enumerate()
    {
        check(
            &mut balancer,
            &format!("same_flow_packet_{i}"),
            frame,
            Expect::Forward(real),
        );
    }
    let counters = balancer.real_counters(WEB, real);
    assert!(counters.new_flows >= 1, "{counters:?}");
    assert_eq!(
        balancer.service_counters(WEB).new_flows,
        5,
        "five flows, however many packets"
    );
}

#[test]
fn new_flows_follow_the_weighted_schedule() {
    let Some(mut balancer) = balancer("new_flows_follow_the_weighted_schedule") else {
        return;
    };
    // LVS wrr over weights 1,2,3 (ids 1,2,3): thresholds 3,2,1 → [3], [2,3], [1,2,3]. This
    // CPU's walk starts wherever its cursor was seeded; from there it follows the period.
    let period = [
        WEB_REALS[2].0,
        WEB_REALS[1].0,
        WEB_REALS[2].0,
        WEB_REALS[0].0,
        WEB_REALS[1].0,
        WEB_REALS[2].0,
    ];
    let web = &balancer.state.services[WEB];
    assert_eq!(
        balancer.dataplane.schedule(web.id).unwrap(),
        vec![3, 2, 3, 1, 2, 3],
        "the schedule the program walks"
    );
    let cursor = balancer.dataplane.schedule_cursors(web.id).unwrap()
        // SAFETY: no preconditions.
        [unsafe { libc::sched_getcpu() } as usize] as usize;
    let rounds = 10;
    for flow in 0..period.len() * rounds {
        let name = format!("flow_{flow}");
        check(
            &mut balancer,
            &name,
            &syn(43000 + flow as u16).build(),
            Expect::Forward(period[(cursor + flow) % period.len()]),
        );
    }
    for (real, weight) in WEB_REALS {
        let counters = balancer.real_counters(WEB, real);
        assert_eq!(
            counters.new_flows,
            u64::from(weight) * rounds as u64,
            "{real}"
        );
        assert_eq!(
            counters.packets, counters.new_flows,
            "{real}: one SYN per flow"
        );
    }
    let service = balancer.service_counters(WEB);
    let frame_len = syn(43000).build().len() as u64;
    assert_eq!((service.new_flows, service.packets), (60, 60));
    assert_eq!(service.bytes, 60 * frame_len);
}

#[test]
fn a_drained_real_keeps_its_flows_and_takes_no_new_ones() {
    let Some(mut balancer) = balancer("a_drained_real_keeps_its_flows_and_takes_no_new_ones")
    else {
        return;
    };
    let first = check(
        &mut balancer,
        "syn",
        &syn(44000).build(),
        Expect::ForwardNext(WEB),
    );
    let drained = real_of(&first, &web_reals());
    let index = WEB_REALS
        .iter()
        .position(|(addr, _)| *addr == drained)
        .unwrap();
    balancer.state.services[WEB].reals[index].config.weight = 0;
    balancer.apply();

    check(
        &mut balancer,
        "established_flow",
        &tcp(44000, VIP, 80).ack().build(),
        Expect::Forward(drained),
    );
    for port in 44001..44031 {
        let outcome = balancer.run(&syn(port).build());
        assert_eq!(outcome.action, XDP_TX);
        assert_ne!(
            real_of(&outcome.frame, &web_reals()),
            drained,
            "new flow from port {port}"
        );
    }

    // The client closes, then opens a new connection from the same port: a new connection,
    // which the drained real does not take (the closed flow is forgotten and rescheduled).
    check(
        &mut balancer,
        "fin",
        &tcp(44000, VIP, 80).fin().ack().build(),
        Expect::Forward(drained),
    );
    let reopened = balancer.run(&syn(44000).build());
    assert_eq!(reopened.action, XDP_TX);
    assert_ne!(
        real_of(&reopened.frame, &web_reals()),
        drained,
        "a SYN reusing a closed flow's 5-tuple is a new connection"
    );
}

/// LVS's expire_nodest_conn: a flow whose real failed leaves the table; its next TCP segment
/// is mid-stream with no flow, so it passes to the host (which resets it) instead of landing
/// on a real that never saw the connection. A new connection from the same port is scheduled
/// afresh.
#[test]
fn tcp_flows_of_an_unavailable_real_are_forgotten() {
    let Some(mut balancer) = balancer("tcp_flows_of_an_unavailable_real_are_forgotten") else {
        return;
    };
    let first = check(
        &mut balancer,
        "syn",
        &syn(45000).build(),
        Expect::ForwardNext(WEB),
    );
    let gone = real_of(&first, &web_reals());
    assert_eq!(balancer.connections(WEB, gone).inactive, 1, "SYN_RECV");
    let index = WEB_REALS
        .iter()
        .position(|(addr, _)| *addr == gone)
        .unwrap();
    balancer.state.services[WEB].reals[index].mac = None;
    balancer.apply();

    check(
        &mut balancer,
        "ack_after_the_real_failed",
        &tcp(45000, VIP, 80).ack().build(),
        Expect::Pass(Reason::PassTcpNoFlow),
    );
    assert_eq!(
        balancer.connections(WEB, gone),
        lb_common::ConnCounts::default(),
        "the forgotten flow left its real's counts"
    );
    let again = check(
        &mut balancer,
        "new_syn_from_the_same_port",
        &syn(45000).build(),
        Expect::ForwardNext(WEB),
    );
    assert_ne!(real_of(&again, &web_reals()), gone);
    assert_eq!(balancer.service_counters(WEB).new_flows, 2);
}

/// UDP has no connection to reset: a flow whose real failed moves to another real.
#[test]
fn udp_flows_of_an_unavailable_real_move_to_another() {
    let Some(mut balancer) = balancer("udp_flows_of_an_unavailable_real_move_to_another") else {
        return;
    };
    let query = Frame::udp(SocketAddrV4::new(CLIENT, 5400), SocketAddrV4::new(VIP, 53))
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .payload(b"query")
        .build();
    let first = check(&mut balancer, "first", &query, Expect::ForwardNext(DNS));
    let gone = real_of(&first, &DNS_REALS);
    let other = *DNS_REALS.iter().find(|&&real| real != gone).unwrap();
    let index = DNS_REALS.iter().position(|&addr| addr == gone).unwrap();
    balancer.state.services[DNS].reals[index].mac = None;
    balancer.apply();
    check(&mut balancer, "moved", &query, Expect::Forward(other));
    check(&mut balancer, "stays", &query, Expect::Forward(other));
    assert_eq!(balancer.connections(DNS, gone).inactive, 0);
    assert_eq!(
        balancer.connections(DNS, other).inactive,
        1,
        "UDP flows are inactive"
    );
    assert_eq!(
        balancer.service_counters(DNS).new_flows,
        2,
        "rescheduling counts as a new flow"
    );
}

#[test]
fn udp_flows_keep_their_real_too() {
    let Some(mut balancer) = balancer("udp_flows_keep_their_real_too") else {
        return;
    };
    let query = |client_port: u16| {
        Frame::udp(
            SocketAddrV4::new(CLIENT, client_port),
            SocketAddrV4::new(VIP, 53),
        )
        .src_mac(CLIENT_MAC)
        .dst_mac(BALANCER_MAC)
        .payload(b"query")
        .build()
    };
    // Six flows over two rr reals; each flow's datagrams stay with the real its first got,
    // whatever the scheduler does for the flows in between.
    let mut real_of_flow = Vec::new();
    for port in 5300..5306 {
        let first = check(
            &mut balancer,
            &format!("flow_{port}_first"),
            &query(port),
            Expect::ForwardNext(DNS),
        );
        real_of_flow.push((port, real_of(&first, &DNS_REALS)));
    }
    for round in 0..3 {
        for &(port, real) in &real_of_flow {
            check(
                &mut balancer,
                &format!("flow_{port}_datagram_{round}"),
                &query(port),
                Expect::Forward(real),
            );
        }
    }
    for real in DNS_REALS {
        let flows = real_of_flow.iter().filter(|(_, r)| *r == real).count();
        assert_eq!(
            flows, 3,
            "rr gives each of two reals every other flow: {real_of_flow:?}"
        );
    }
    let counters = balancer.service_counters(DNS);
    assert_eq!((counters.new_flows, counters.packets), (6, 24));
}

/// The program skips the all-ports lookup while no service is an all-ports one (a setting lbd
/// writes before the services): one added by a reload is found at once, and once it is gone
/// its VIP's other ports pass again.
#[test]
fn an_all_ports_service_added_by_a_reload_is_found() {
    if !require_root("fixtures: all-ports service reload") {
        return;
    }
    pin_to_current_cpu();
    const WITHOUT: &str = "
instance: fixtures-all-ports
interfaces: [{name: lo}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}
limits: {flows: 4096, services: 16, reals: 64}
";
    let with = WITHOUT.replace(
        "limits:",
        "  - {vip: 192.0.2.101, port: 0, protocol: tcp, reals: [{address: 192.0.2.31}]}\nlimits:",
    );
    let mut balancer = Balancer::load(WITHOUT);
    let frame = tcp(41000, Ipv4Addr::new(192, 0, 2, 101), 2222)
        .syn()
        .build();
    let passed = balancer.run(&frame);
    assert_eq!((passed.action, &passed.frame), (XDP_PASS, &frame));

    balancer.reload(&with);
    let forwarded = balancer.run(&frame);
    assert_eq!(forwarded.action, XDP_TX);
    assert_frame_eq(
        "to the all-ports service's real",
        &direct_routed(&frame, Ipv4Addr::new(192, 0, 2, 31)),
        &forwarded.frame,
    );

    balancer.reload(WITHOUT);
    let ports: Vec<u16> = (balancer.dataplane.services().unwrap())
        .iter()
        .map(|(key, _)| u16::from_be(key.port_be))
        .collect();
    assert_eq!(ports, [80], "the all-ports service left the map");
    let other = tcp(41001, Ipv4Addr::new(192, 0, 2, 101), 2222)
        .syn()
        .build();
    let passed = balancer.run(&other);
    assert_eq!((passed.action, &passed.frame), (XDP_PASS, &other));
}
