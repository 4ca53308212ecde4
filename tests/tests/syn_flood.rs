//! A SYN flood to a VIP through the real `lbd`: spoofed SYNs fill the flow table (a plain hash,
//! which never evicts a live flow for a new one), new flows are refused and counted while it
//! is full, established connections keep forwarding, and once the flood stops the sweep's
//! pressure rule frees the table within seconds, not the 60 s of SYN_RECV. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, VIP,
    ha::LongLived,
    http::HttpClient,
    lbd::Lbd,
    netns,
    packet::Frame,
    privilege::require_root,
    topology::{CLIENT_MAC, HOST_IF, LB_MAC},
};

const FLOWS: u64 = 4096;
const LONG_LIVED: usize = 40;
/// Three times the table: every SYN a new flow, from a spoofed source in 203.0.113.0/24
/// (the reals have no route back to it, so their SYN-ACKs go nowhere).
const FLOOD: usize = 3 * FLOWS as usize;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the wait for the table to free up (SYN_RECV's own timeout is 60 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(25);

fn flows_in_table(lbd: &Lbd) -> u64 {
    lbd.status()
        .maps
        .iter()
        .find(|fill| fill.name == "flows")
        .map_or(0, |fill| fill.used)
}

#[test]
fn a_syn_flood_fills_the_table_but_established_connections_keep_working() {
    if !require_root("the SYN flood test") {
        return;
    }
    let prefix = format!("lbt-syn-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2"]);
    topology.attach_pass_program();
    let _servers = topology.serve_http();
    let lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-syn-{}", std::process::id()),
        &format!(
            "interfaces: [{{name: eth0, xdp_mode: native}}]
services:
  - vip: {VIP}
    port: 80
    protocol: tcp
    scheduler: rr
    reals: [{{address: 192.0.2.11}}, {{address: 192.0.2.12}}]
limits: {{flows: {FLOWS}, services: 16, reals: 64}}
"
        ),
    );
    let mut long_lived = LongLived::open(&topology.client, LONG_LIVED, TIMEOUT);

    let vip = SocketAddrV4::new(VIP, 80);
    let syns = (0..FLOOD).map(move |index| {
        let source = Ipv4Addr::new(203, 0, 113, (index % 250) as u8 + 1);
        let port = 1024 + (index / 250) as u16;
        Frame::tcp(SocketAddrV4::new(source, port), vip)
            .syn()
            .src_mac(CLIENT_MAC)
            .dst_mac(LB_MAC)
            .build()
    });
    let flood_started = Instant::now();
    topology.client.send_frames(HOST_IF, syns);
    let flood_took = flood_started.elapsed();
    let full_drops = lbd.reason("drop_flow_table_full");
    let peak = flows_in_table(&lbd);
    // First, while the flood's flows are fresh (the sweep may take them from 5 s on).
    let vip_socket = SocketAddr::new(IpAddr::V4(VIP), 80);
    let refused_while_full = topology
        .client
        .run(|| HttpClient::connect(vip_socket, Duration::from_secs(1)))
        .is_err();
    assert!(
        refused_while_full,
        "a new connection went through a full table"
    );
    // Established connections are unaffected.
    let broken = long_lived.check();
    assert!(
        broken.is_empty(),
        "established connections broke under the flood: {broken:?}\n{}",
        lbd.log()
    );
    assert!(
        full_drops > 0 && peak >= FLOWS - 16,
        "the flood did not fill the table: peak {peak} flows of {FLOWS}, {full_drops} refused"
    );
    // Then the sweep, under pressure, expires the flood's half-open flows.
    let deadline = flood_started + flood_took + RECOVERY_LIMIT;
    let recovered = loop {
        let connected = topology.client.run(|| {
            HttpClient::connect(vip_socket, Duration::from_millis(500))
                .and_then(|mut client| client.get("/"))
        });
        if connected.is_ok() {
            break flood_started.elapsed() - flood_took;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still refused {RECOVERY_LIMIT:?} after the flood ({} flows)\n{}",
            flows_in_table(&lbd),
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        lbd.log().contains("flow table under pressure"),
        "{}",
        lbd.log()
    );
    let broken = long_lived.check();
    assert!(broken.is_empty(), "after the flood: {broken:?}");
    println!(
        "syn flood | {FLOOD} SYNs in {flood_took:.2?} | table {peak} of {FLOWS} flows | {full_drops} \
         new flows refused (drop_flow_table_full) | {} of {LONG_LIVED} established kept | new \
         connections again {recovered:.1?} after the flood",
        LONG_LIVED - broken.len()
    );
}
