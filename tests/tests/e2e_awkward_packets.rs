//! Fragments and ICMP errors end to end, IPv4 and IPv6, through the real `lbd`:
//! - a UDP datagram larger than the MTU, fragmented by the client's kernel, is reassembled and
//!   answered by one real;
//! - path-MTU discovery through the VIP: a router between the balancer's segment and a far
//!   client has a smaller MTU towards the client, so the reals' full-size replies make it
//!   send fragmentation-needed / packet-too-big to the VIP; the balancer must hand those to
//!   the real that owns the connection, or a 5 MB download stalls. A control run with the
//!   reals dropping those ICMP messages shows the stall the test would catch.
//!
//! Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    DrTopology, VIP,
    bulk::{self, BulkServer},
    lbd::Lbd,
    netns,
    privilege::require_root,
    topology::VIP6,
    udp::{UdpEchoServer, udp_request},
};

const REALS: [&str; 3] = ["real1", "real2", "real3"];
const TIMEOUT: Duration = Duration::from_secs(5);
const DOWNLOAD_SIZE: usize = 5 * 1024 * 1024;
/// A black hole shows as no byte for this long.
const IDLE: Duration = Duration::from_secs(2);
const DOWNLOAD_TOTAL: Duration = Duration::from_secs(30);

const CONFIG: &str = "
interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    scheduler: rr
    reals: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]
  - vip: 2001:db8::100
    port: 53
    protocol: udp
    scheduler: rr
    reals: [{address: 2001:db8::11}, {address: 2001:db8::12}, {address: 2001:db8::13}]
  - vip: 192.0.2.100
    port: 8080
    protocol: tcp
    scheduler: rr
    reals: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]
  - vip: 2001:db8::100
    port: 8080
    protocol: tcp
    scheduler: rr
    reals: [{address: 2001:db8::11}, {address: 2001:db8::12}, {address: 2001:db8::13}]
limits: {flows: 65536, services: 16, reals: 64}
";

fn reasons(lbd: &Lbd) -> HashMap<String, u64> {
    lbd.listing()
        .reasons
        .into_iter()
        .map(|count| (count.reason, count.packets))
        .collect()
}

#[test]
fn fragmented_datagrams_and_path_mtu_discovery_work_through_the_vip() {
    if !require_root("e2e_awkward_packets") {
        return;
    }
    let prefix = format!("lbt-awk-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build_dual_stack(&prefix, &REALS);
    topology.attach_pass_program();
    let far = topology.add_far_client();
    // Each real answers on the VIPs themselves (held on its lo), as a DR real does.
    let _udp: Vec<UdpEchoServer> = topology
        .reals
        .iter()
        .flat_map(|(name, netns, _)| {
            [IpAddr::V4(VIP), IpAddr::V6(VIP6)]
                .map(|vip| UdpEchoServer::start(netns, SocketAddr::new(vip, 53), name))
        })
        .collect();
    let _bulk: Vec<BulkServer> = topology
        .reals
        .iter()
        .map(|(_, netns, _)| BulkServer::start(netns, "[::]:8080".parse().unwrap(), DOWNLOAD_SIZE))
        .collect();
    let lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-awk-{}", std::process::id()),
        CONFIG,
    );

    // Datagrams of 3000 bytes leave the client as three fragments each (MTU 1500); each must
    // reach one real whole to be answered. Several flows, so several reals are involved.
    let payload = vec![0x5a; 3000];
    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        let addr = SocketAddr::new(vip, 53);
        let mut answered_by = Vec::new();
        for datagram in 0..6 {
            let reply = topology
                .client
                .run(|| udp_request(addr, &payload, TIMEOUT))
                .unwrap_or_else(|e| panic!("datagram {datagram} to {addr}: {e}\n{}", lbd.log()));
            let (real, length) = reply
                .trim_end()
                .split_once(' ')
                .expect("\"<real> <length>\"");
            assert_eq!(length, "3000", "{addr}: the real got the datagram whole");
            answered_by.push(real.to_owned());
        }
        answered_by.sort();
        answered_by.dedup();
        assert!(
            answered_by.len() > 1,
            "{addr}: rr spread the flows: {answered_by:?}"
        );
    }
    let after_datagrams = reasons(&lbd);
    assert!(
        after_datagrams["forwarded_fragment"] >= 2 * 6 * 3,
        "{after_datagrams:?}"
    );

    // The control: with every real dropping the router's ICMP, the download through the VIP
    // stalls once the first full-size segment is sent.
    let rules = [
        "add table inet lbt",
        "add chain inet lbt input { type filter hook input priority 0; }",
        "add rule inet lbt input icmp type destination-unreachable drop",
        "add rule inet lbt input icmpv6 type packet-too-big drop",
    ];
    for (_, netns, _) in &topology.reals {
        for rule in rules {
            netns.exec(&["nft", rule]);
        }
    }
    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        let addr = SocketAddr::new(vip, 8080);
        match far.far.run(|| bulk::download(addr, IDLE, DOWNLOAD_TOTAL)) {
            Ok(received) => panic!("{received} bytes from {addr} although no real got ICMP"),
            Err(error) => assert!(error.to_string().contains("stalled"), "{addr}: {error}"),
        }
    }
    let forwarded_while_dropped = reasons(&lbd)["forwarded_icmp_error"];
    assert!(
        forwarded_while_dropped >= 2,
        "the balancer forwarded the router's errors (the reals dropped them): {forwarded_while_dropped}"
    );

    // The errors reach the reals: every download completes, over IPv4 and IPv6, on fresh
    // connections to each real in turn.
    for (_, netns, _) in &topology.reals {
        netns.exec(&["nft", "delete", "table", "inet", "lbt"]);
    }
    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        let addr = SocketAddr::new(vip, 8080);
        for download in 0..REALS.len() {
            let received = far
                .far
                .run(|| bulk::download(addr, IDLE, DOWNLOAD_TOTAL))
                .unwrap_or_else(|e| panic!("download {download} from {addr}: {e}\n{}", lbd.log()));
            assert_eq!(received, DOWNLOAD_SIZE, "download {download} from {addr}");
        }
    }
    let after = reasons(&lbd);
    assert!(
        after["forwarded_icmp_error"] > forwarded_while_dropped,
        "{after:?}"
    );
    assert_eq!(
        after.get("pass_icmp_bad_quote").copied().unwrap_or(0),
        0,
        "{after:?}"
    );
}
