//! `lbd decap` end to end: a sender (standing in for the balancer) sends IPIP and GUE packets
//! carrying a client's UDP datagram for a VIP to a tunnel real, whose eth0 runs `lbd decap`;
//! the real's UDP server, bound to the VIP on its `lo`, gets the datagram and answers the
//! client directly from the VIP (direct server return), not through the tunnel. Needs root.
//!
//! ```text
//!   sender (lbt-dcp-v4-<pid>-snd)                 real (lbt-dcp-v4-<pid>-real)
//!   eth0 192.0.2.1/24  ----------- veth ---------  eth0 192.0.2.2/24, lbd decap
//!   lo   198.51.100.7/32 (the client)              lo   203.0.113.10/32 (the VIP)
//!                                                  198.51.100.0/24 via 192.0.2.1
//! ```
//!
//! A second test does the same dual stack (`lbt-dcp-ds-<pid>-`: 2001:db8::1 and ::2 on the
//! eth0s, the client 2001:db8:ffff::7 and the VIP 2001:db8:100::10 on the `lo`s) with every
//! pair of outer and inner families, IPIP and GUE.
//!
//! The sender writes the encapsulated frames itself (AF_PACKET): this kernel has no ipip or
//! fou module, which is why the real needs `lbd decap`. The real's rp_filter is off, as a
//! tunnel real's should be (0, or 2 for loose), as for LVS-TUN: the client's packet seems to
//! arrive on the interface the tunnel came in on, and strict filtering drops it whenever the
//! real's route back to that client leaves another way.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::{
    Netns,
    decap::DecapDaemon,
    netns::remove_leftovers,
    packet::{self, Frame, GUE_PORT, Mac},
    privilege::require_root,
    udp::UdpEchoServer,
};
use lb_userspace::daemon::privileges::CapabilitySet;

const SENDER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REAL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// A second VIP, added to the real's `lo` while `lbd decap` runs.
const LATER_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const NOT_A_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
/// The same plan in IPv6 (dual-stack hosts): eth0s on 2001:db8::/64, the client on the
/// sender's `lo`, the VIP on the real's.
const SENDER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const REAL_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const CLIENT6: SocketAddrV6 = SocketAddrV6::new(
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7),
    40000,
    0,
    0,
);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
const ECHO_PORT: u16 = 7;
const SENDER_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
const REAL_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
const REPLY_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a reply is waited for when none should come.
const SILENCE: Duration = Duration::from_millis(400);

struct Hosts {
    sender: Netns,
    real: Netns,
}

fn mac(mac: Mac) -> String {
    lb_userspace::admin::format_mac(&mac)
}

/// The two hosts, every link up. IPv4 only (IPv6 off, so no stray frames), or dual stack
/// (no DAD, router solicitations or advertisements).
fn build(prefix: &str, dual_stack: bool) -> Hosts {
    remove_leftovers(prefix);
    let sender = Netns::create(&format!("{prefix}snd"));
    let real = Netns::create(&format!("{prefix}real"));
    for netns in [&sender, &real] {
        if Path::new("/proc/sys/net/ipv6").exists() {
            // On `default` too, before eth0 exists, so that eth0 inherits it.
            for conf in ["all", "default"] {
                let ipv6 = [
                    ("disable_ipv6", if dual_stack { "0" } else { "1" }),
                    ("accept_dad", "0"),
                    ("dad_transmits", "0"),
                    ("router_solicitations", "0"),
                    ("accept_ra", "0"),
                ];
                for (key, value) in ipv6 {
                    netns.sysctl(&format!("net.ipv6.conf.{conf}.{key}"), value);
                }
            }
        }
        netns.ip(&["link", "set", "lo", "up"]);
    }
    // Made in the sender's namespace with its peer in the real's: never in the root one.
    sender.ip(&[
        "link",
        "add",
        "eth0",
        "address",
        &mac(SENDER_MAC),
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "address",
        &mac(REAL_MAC),
        "netns",
        real.name(),
    ]);
    sender.ip(&["addr", "add", &format!("{SENDER_IP}/24"), "dev", "eth0"]);
    sender.ip(&["addr", "add", &format!("{}/32", CLIENT.ip()), "dev", "lo"]);
    real.ip(&["addr", "add", &format!("{REAL_IP}/24"), "dev", "eth0"]);
    real.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    if dual_stack {
        for (netns, eth0, lo) in [
            (&sender, SENDER_IP6, *CLIENT6.ip()),
            (&real, REAL_IP6, VIP6),
        ] {
            netns.ip(&["addr", "add", &format!("{eth0}/64"), "dev", "eth0", "nodad"]);
            netns.ip(&["addr", "add", &format!("{lo}/128"), "dev", "lo", "nodad"]);
        }
    }
    for netns in [&sender, &real] {
        // Frames the kernel sends over a veth otherwise carry checksums left to an offload.
        netns.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
        // A tunnel real gets the client's packet on the tunnel's interface, whatever its
        // route back (rp_filter 0 or 2, as for LVS-TUN reals); the sender, standing in for
        // the balancer, gets replies from the VIP it has no route to.
        for conf in ["all", "eth0"] {
            netns.sysctl(&format!("net.ipv4.conf.{conf}.rp_filter"), "0");
        }
        netns.ip(&["link", "set", "eth0", "up"]);
    }
    // A veth is up once both ends are.
    wait_until_up(&sender, "sender");
    wait_until_up(&real, "real");
    // The VIP is the real's alone on the wire: LVS's ARP settings.
    for conf in ["all", "eth0"] {
        real.sysctl(&format!("net.ipv4.conf.{conf}.arp_ignore"), "1");
        real.sysctl(&format!("net.ipv4.conf.{conf}.arp_announce"), "2");
    }
    // Direct server return: the real answers the client itself.
    real.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        &SENDER_IP.to_string(),
        "dev",
        "eth0",
    ]);
    if dual_stack {
        real.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:ffff::/48",
            "via",
            &SENDER_IP6.to_string(),
            "dev",
            "eth0",
        ]);
    }
    Hosts { sender, real }
}

fn wait_until_up(netns: &Netns, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = netns.ip(&["-br", "link", "show", "dev", "eth0"]);
        if state.split_whitespace().nth(1) == Some("UP") {
            return;
        }
        assert!(Instant::now() < deadline, "{name}'s eth0 not up: {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

enum Tunnel {
    Ipip,
    Gue,
}

/// The outer header's family.
#[derive(Clone, Copy)]
enum Outer {
    V4,
    V6,
}

/// The client's datagram from `client` to `vip`, as the balancer would send it to the real.
fn encapsulated(
    tunnel: &Tunnel,
    outer: Outer,
    client: SocketAddr,
    vip: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let inner = match (client, vip) {
        (SocketAddr::V4(client), SocketAddr::V4(vip)) => Frame::udp(client, vip),
        (SocketAddr::V6(client), SocketAddr::V6(vip)) => Frame::ipv6_udp(client, vip),
        _ => panic!("client {client} and VIP {vip} of two families"),
    }
    .payload(payload)
    .ip_bytes();
    let (outer_src, outer_dst) = match outer {
        Outer::V4 => (IpAddr::V4(SENDER_IP), IpAddr::V4(REAL_IP)),
        Outer::V6 => (IpAddr::V6(SENDER_IP6), IpAddr::V6(REAL_IP6)),
    };
    let outer = match tunnel {
        Tunnel::Ipip => packet::ipip(outer_src, outer_dst, &inner),
        Tunnel::Gue => packet::gue(outer_src, outer_dst, 50000, GUE_PORT, &inner),
    };
    Frame::from_ip(&outer)
        .src_mac(SENDER_MAC)
        .dst_mac(REAL_MAC)
        .build()
}

/// Sends the client's datagram to `vip` through the tunnel and returns the reply (its text
/// and where it came from), or `None` after `timeout`.
fn exchange(
    hosts: &Hosts,
    client: &UdpSocket,
    (tunnel, outer): (&Tunnel, Outer),
    vip: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Option<(String, SocketAddr)> {
    let from = client.local_addr().expect("the client's address");
    client
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    hosts
        .sender
        .send_frame("eth0", &encapsulated(tunnel, outer, from, vip, payload));
    let mut buf = [0u8; 512];
    match client.recv_from(&mut buf) {
        Ok((len, from)) => Some((String::from_utf8_lossy(&buf[..len]).into_owned(), from)),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(error) => panic!("receiving on {from}: {error}"),
    }
}

fn echo(vip: impl Into<IpAddr>) -> SocketAddr {
    SocketAddr::new(vip.into(), ECHO_PORT)
}

/// Counts what the log's last counter line says: (decapsulated, passed).
fn counted(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rev()
        .find(|line| line.contains("decapsulated ") && line.contains(" tunnel packet"))
        .unwrap_or_else(|| panic!("no counter line in the log:\n{log}"));
    let number_after = |word: &str| -> u64 {
        let rest = &line[line
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {line}"))
            + word.len()..];
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {word:?} in {line}"))
    };
    (number_after("decapsulated "), number_after("passed "))
}

#[test]
fn a_tunnel_real_running_lbd_decap_answers_ipip_and_gue_directly() {
    if !require_root("a_tunnel_real_running_lbd_decap_answers_ipip_and_gue_directly") {
        return;
    }
    let prefix = format!("lbt-dcp-v4-{}-", std::process::id());
    let hosts = build(&prefix, false);
    let _server = UdpEchoServer::start(&hosts.real, echo(VIP), "real");
    let client = hosts
        .sender
        .run(|| UdpSocket::bind(CLIENT))
        .unwrap_or_else(|e| panic!("binding {CLIENT} in the sender: {e}"));

    // Without the program the kernel has nothing to take the tunnel off with.
    for tunnel in [Tunnel::Ipip, Tunnel::Gue] {
        let reply = exchange(
            &hosts,
            &client,
            (&tunnel, Outer::V4),
            echo(VIP),
            b"early",
            SILENCE,
        );
        assert_eq!(reply, None, "a reply without lbd decap running");
    }

    let mut daemon = DecapDaemon::start(
        &hosts.real,
        "eth0",
        &["--xdp-mode", "native"],
        &format!("{prefix}lbd-decap"),
    );
    let log = daemon.log();
    assert!(
        log.contains("lb_decap attached to eth0")
            && log.contains("native mode")
            && log.contains(
                "decapsulating IPIP and GUE (UDP port 6080) to 192.0.2.2 for VIPs 203.0.113.10"
            ),
        "start-up log:\n{log}"
    );
    // Once attached it keeps what writing its map and detaching take.
    assert!(
        daemon.wait_for_log("capabilities kept: CAP_NET_ADMIN, CAP_BPF", REPLY_TIMEOUT),
        "{}",
        daemon.log()
    );
    let kept = CapabilitySet::after_start(false);
    lb_tests::privilege::assert_threads_hold_only(daemon.pid(), kept, &|| daemon.log());

    let mut decapsulated = 0;
    for (name, tunnel) in [("IPIP", Tunnel::Ipip), ("GUE", Tunnel::Gue)] {
        let reply = exchange(
            &hosts,
            &client,
            (&tunnel, Outer::V4),
            echo(VIP),
            b"hello",
            REPLY_TIMEOUT,
        );
        assert_eq!(
            reply,
            Some(("real 5\n".to_owned(), echo(VIP))),
            "{name}: the real's answer, straight from the VIP\n{}",
            daemon.log()
        );
        decapsulated += 1;
    }

    // A tunnel packet for an address that is not a VIP here passes untouched, and the
    // kernel, which cannot take a tunnel off, drops it.
    let reply = exchange(
        &hosts,
        &client,
        (&Tunnel::Ipip, Outer::V4),
        echo(NOT_A_VIP),
        b"x",
        SILENCE,
    );
    assert_eq!(reply, None, "an answer for a VIP the real does not hold");

    // A VIP added to lo is followed within the refresh (a second).
    hosts
        .real
        .ip(&["addr", "add", &format!("{LATER_VIP}/32"), "dev", "lo"]);
    let _later_server = UdpEchoServer::start(&hosts.real, echo(LATER_VIP), "later");
    assert!(
        daemon.wait_for_log("203.0.113.11", Duration::from_secs(5)),
        "the new VIP never logged:\n{}",
        daemon.log()
    );
    let reply = exchange(
        &hosts,
        &client,
        (&Tunnel::Gue, Outer::V4),
        echo(LATER_VIP),
        b"again",
        REPLY_TIMEOUT,
    );
    assert_eq!(
        reply,
        Some(("later 5\n".to_owned(), echo(LATER_VIP))),
        "the VIP added while running\n{}",
        daemon.log()
    );
    decapsulated += 1;

    // SIGUSR1 logs the counters without stopping.
    daemon.signal(libc::SIGUSR1);
    assert!(
        daemon.wait_for_log("passed 1 tunnel packet ", Duration::from_secs(5)),
        "no counters after SIGUSR1:\n{}",
        daemon.log()
    );
    assert_eq!(counted(&daemon.log()), (decapsulated, 1));

    let status = daemon.stop();
    assert!(
        status.success(),
        "lbd decap exited with {status}:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(log.contains("lb_decap detached from eth0"), "{log}");
    assert_eq!(counted(&log), (decapsulated, 1), "{log}");
    let link = hosts.real.ip(&["link", "show", "dev", "eth0"]);
    assert!(!link.contains("xdp"), "still attached after exit: {link}");
    // And the real is back to not understanding tunnels.
    let reply = exchange(
        &hosts,
        &client,
        (&Tunnel::Ipip, Outer::V4),
        echo(VIP),
        b"late",
        SILENCE,
    );
    assert_eq!(reply, None, "a reply after lbd decap stopped");
}

#[test]
fn every_family_pair_reaches_a_dual_stack_tunnel_real() {
    if !require_root("every_family_pair_reaches_a_dual_stack_tunnel_real") {
        return;
    }
    let prefix = format!("lbt-dcp-ds-{}-", std::process::id());
    let hosts = build(&prefix, true);
    let _server = UdpEchoServer::start(&hosts.real, echo(VIP), "real");
    let _server6 = UdpEchoServer::start(&hosts.real, echo(VIP6), "real6");
    let client = hosts
        .sender
        .run(|| UdpSocket::bind(CLIENT))
        .unwrap_or_else(|e| panic!("binding {CLIENT} in the sender: {e}"));
    let client6 = hosts
        .sender
        .run(|| UdpSocket::bind(CLIENT6))
        .unwrap_or_else(|e| panic!("binding {CLIENT6} in the sender: {e}"));
    let mut daemon = DecapDaemon::start(
        &hosts.real,
        "eth0",
        &["--xdp-mode", "native"],
        &format!("{prefix}lbd-decap"),
    );
    let log = daemon.log();
    assert!(
        log.contains("to 192.0.2.2, 2001:db8::2, fe80::")
            && log.contains("for VIPs 203.0.113.10, 2001:db8:100::10"),
        "start-up log:\n{log}"
    );
    let cases = [
        (
            "6in6",
            &client6,
            (&Tunnel::Ipip, Outer::V6),
            echo(VIP6),
            "real6",
        ),
        (
            "GUE 6 over 6",
            &client6,
            (&Tunnel::Gue, Outer::V6),
            echo(VIP6),
            "real6",
        ),
        (
            "4in6",
            &client,
            (&Tunnel::Ipip, Outer::V6),
            echo(VIP),
            "real",
        ),
        (
            "GUE 4 over 6",
            &client,
            (&Tunnel::Gue, Outer::V6),
            echo(VIP),
            "real",
        ),
        (
            "6in4",
            &client6,
            (&Tunnel::Ipip, Outer::V4),
            echo(VIP6),
            "real6",
        ),
        (
            "GUE 6 over 4",
            &client6,
            (&Tunnel::Gue, Outer::V4),
            echo(VIP6),
            "real6",
        ),
    ];
    for (name, socket, tunnel, vip, server) in cases {
        let reply = exchange(&hosts, socket, tunnel, vip, b"dual", REPLY_TIMEOUT);
        assert_eq!(
            reply,
            Some((format!("{server} 4\n"), vip)),
            "{name}: the real's answer, straight from the VIP\n{}",
            daemon.log()
        );
    }
    let status = daemon.stop();
    assert!(
        status.success(),
        "lbd decap exited with {status}:\n{}",
        daemon.log()
    );
    assert_eq!(counted(&daemon.log()), (cases.len() as u64, 0));
}
