//! Every forwarding mode under load, and all of them behind one service, IPv4 and IPv6,
//! through the real `lbd`:
//!
//! - 50 MB each way through each mode (`dr`, `tun`, `nat`, `fullnat`), every byte compared
//!   with what was sent: uploads cross the balancer in every mode (wrapped for `tun`,
//!   rewritten for `nat` and `fullnat`); downloads cross it for `nat` and `fullnat` (replies
//!   translated back) and only their acknowledgements do for `dr` and `tun` (the reals answer
//!   directly). A `tun` upload's full-size segments do not fit once wrapped: the balancer's
//!   packet-too-big answers shrink them (see `e2e_tunnel.rs` for that alone).
//! - A service whose four reals each use another mode (a real's `forward:` overrides the
//!   service's) spreads one client's connections over all four, each connection answered
//!   whole by one of them.
//!
//! The reals: `dr` and `tun` beside the balancer on the switch, `nat` and `fn` (full NAT)
//! behind its second interface; the `nat` real routes the clients through the balancer, the
//! `fn` real has no route beyond its segment. Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    DrTopology, Netns, VIP,
    bulk::{self, BulkServer, BulkSink},
    decap::DecapDaemon,
    http::{self, HttpClient, HttpServer},
    lbd::{Lbd, assert_split_follows_weights},
    netns,
    privilege::require_root,
    topology::{
        HOST_IF, VIP6,
        modes::{self, BACK_IF, BackSegment, back_ip, back_ip6, prepare_tunnel_real},
        real_ip, real_ip6,
    },
};

const TRANSFER_SIZE: usize = 50 * 1024 * 1024;
/// A stall shows as no progress for this long.
const IDLE: Duration = Duration::from_secs(5);
/// Far more than 50 MB needs over veth, even in a debug build on a busy machine.
const TRANSFER_TOTAL: Duration = Duration::from_secs(90);
const TIMEOUT: Duration = Duration::from_secs(5);
/// Ports of the transfer services (uploads, downloads); a `nat` or `fullnat` real listens on
/// the port + 1, so the translation of ports is under load too.
const UPLOAD_PORT: u16 = 9000;
const DOWNLOAD_PORT: u16 = 9100;

fn prefix(test: &str) -> String {
    modes::test_prefix(test)
}

fn instance(test: &str) -> String {
    modes::test_instance(test)
}

fn any(port: u16) -> SocketAddr {
    modes::any_address(port)
}

/// The network with one real per mode: `dr` and `tun` on the switch, `nat` and `fn` on the
/// back segment. Only the reals `modes` names are built.
struct Network {
    /// `lbd decap` on the `tun` real, if built. Fields drop in order: the process first.
    decap: Option<DecapDaemon>,
    back: BackSegment,
    topology: DrTopology,
}

impl Network {
    fn build(prefix: &str, modes: &[&str]) -> Network {
        netns::remove_leftovers(prefix);
        let on_switch: Vec<&str> = ["dr", "tun"]
            .into_iter()
            .filter(|mode| modes.contains(mode))
            .collect();
        let topology = DrTopology::build_dual_stack(prefix, &on_switch);
        topology.attach_pass_program();
        let behind: Vec<&str> = [("nat", "nat"), ("fullnat", "fn")]
            .into_iter()
            .filter(|(mode, _)| modes.contains(mode))
            .map(|(_, name)| name)
            .collect();
        let back = topology.add_back_segment(&behind);
        if modes.contains(&"nat") {
            back.route_clients_via_lb("nat");
        }
        let decap = modes.contains(&"tun").then(|| {
            let tun = topology.real("tun");
            prepare_tunnel_real(tun);
            DecapDaemon::on(tun, HOST_IF, None)
        });
        Network {
            decap,
            back,
            topology,
        }
    }

    /// The namespace of the real of `mode`.
    fn real(&self, mode: &str) -> &Netns {
        match mode {
            "dr" | "tun" => self.topology.real(mode),
            "nat" => &self.back.host("nat").netns,
            "fullnat" => &self.back.host("fn").netns,
            other => panic!("no mode {other:?}"),
        }
    }

    /// The real of `mode`'s address in the family of `vip`, and the port it listens on for
    /// the service port `port`.
    fn real_address(&self, mode: &str, vip: IpAddr, port: u16) -> (IpAddr, u16) {
        let v4 = vip.is_ipv4();
        let index = |name: &str| {
            self.back
                .hosts
                .iter()
                .position(|host| host.name == name)
                .expect("a back host")
        };
        let on_switch = |index: usize| -> IpAddr {
            if v4 {
                real_ip(index).into()
            } else {
                real_ip6(index).into()
            }
        };
        let behind = |index: usize| -> IpAddr {
            if v4 {
                back_ip(index).into()
            } else {
                back_ip6(index).into()
            }
        };
        let switch_index = |name: &str| {
            self.topology
                .reals
                .iter()
                .position(|(real, ..)| real == name)
                .expect("a real on the switch")
        };
        match mode {
            "dr" | "tun" => (on_switch(switch_index(mode)), port),
            "nat" => (behind(index("nat")), port + 1),
            "fullnat" => (behind(index("fn")), port + 1),
            other => panic!("no mode {other:?}"),
        }
    }

    fn log_of_decap(&self) -> String {
        self.decap
            .as_ref()
            .map(DecapDaemon::log)
            .unwrap_or_default()
    }
}

/// The lbd config: both interfaces, and `services`.
fn config(services: &str) -> String {
    format!(
        "interfaces:\n  - {{name: eth0, xdp_mode: native}}\n  - {{name: {BACK_IF}, xdp_mode: native}}\n\
         services:\n{services}limits: {{flows: 65536, services: 32, reals: 64}}\n"
    )
}

/// 50 MB up and (where the balancer carries it) down through a service of `mode`, both
/// families, every byte checked.
fn transfer_through(mode: &str) {
    let network = Network::build(&prefix(&format!("x{mode}")), &[mode]);
    let real = network.real(mode);
    let (real_upload, real_download) = if matches!(mode, "nat" | "fullnat") {
        (UPLOAD_PORT + 1, DOWNLOAD_PORT + 1)
    } else {
        (UPLOAD_PORT, DOWNLOAD_PORT)
    };
    let _sink = BulkSink::start(real, any(real_upload));
    let _source = BulkServer::start(real, any(real_download), TRANSFER_SIZE);

    let mut services = String::new();
    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        for port in [UPLOAD_PORT, DOWNLOAD_PORT] {
            let (address, real_port) = network.real_address(mode, vip, port);
            services += &format!(
                "  - {{vip: {vip}, port: {port}, protocol: tcp, scheduler: rr, forward: {mode}, \
                 reals: [{{address: {address}, port: {real_port}}}]}}\n"
            );
        }
    }
    let lbd = Lbd::start(
        &network.topology.lb,
        &instance(&format!("x{mode}")),
        &config(&services),
    );
    let context = || format!("{}\n{}", lbd.log(), network.log_of_decap());

    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        let addr = SocketAddr::new(vip, UPLOAD_PORT);
        let sent = network
            .topology
            .client
            .run(|| bulk::upload(addr, TRANSFER_SIZE, IDLE, TRANSFER_TOTAL))
            .unwrap_or_else(|e| panic!("{mode}: upload to {addr}: {e}\n{}", context()));
        assert_eq!(sent, TRANSFER_SIZE, "{mode}: bytes that reached {addr}");

        let addr = SocketAddr::new(vip, DOWNLOAD_PORT);
        let received = network
            .topology
            .client
            .run(|| bulk::download(addr, IDLE, TRANSFER_TOTAL))
            .unwrap_or_else(|e| panic!("{mode}: download from {addr}: {e}\n{}", context()));
        assert_eq!(received, TRANSFER_SIZE, "{mode}: bytes from {addr}");
    }
    let listing = lbd.listing();
    for service in &listing.services {
        assert_eq!(service.stats.conns, 1, "{mode}: {listing:#?}");
        // 50 MB in segments of at most 1,460 bytes: over 35,000 packets for the uploads.
        if service.port == UPLOAD_PORT {
            assert!(
                service.stats.in_bytes >= TRANSFER_SIZE as u64,
                "{mode}: {listing:#?}"
            );
        }
    }
}

#[test]
fn fifty_megabytes_each_way_through_dr_arrive_intact() {
    if !require_root("e2e_forwarding dr transfer") {
        return;
    }
    transfer_through("dr");
}

#[test]
fn fifty_megabytes_each_way_through_tun_arrive_intact() {
    if !require_root("e2e_forwarding tun transfer") {
        return;
    }
    transfer_through("tun");
}

#[test]
fn fifty_megabytes_each_way_through_nat_arrive_intact() {
    if !require_root("e2e_forwarding nat transfer") {
        return;
    }
    transfer_through("nat");
}

#[test]
fn fifty_megabytes_each_way_through_fullnat_arrive_intact() {
    if !require_root("e2e_forwarding fullnat transfer") {
        return;
    }
    transfer_through("fullnat");
}

const MODES: [&str; 4] = ["dr", "tun", "nat", "fullnat"];
/// Real names as their HTTP servers answer.
const NAMES: [(&str, &str); 4] = [
    ("dr", "dr"),
    ("tun", "tun"),
    ("nat", "nat"),
    ("fullnat", "fn"),
];
const CONNECTIONS: usize = 40;
const REQUESTS_PER_CONNECTION: usize = 2;

#[test]
fn one_service_spreads_a_client_over_a_dr_a_tun_a_nat_and_a_fullnat_real() {
    if !require_root("e2e_forwarding mixed service") {
        return;
    }
    let network = Network::build(&prefix("mix"), &MODES);
    let _servers: Vec<HttpServer> = NAMES
        .iter()
        .map(|(mode, name)| {
            let (_, port) = network.real_address(mode, VIP.into(), 80);
            HttpServer::start(network.real(mode), any(port), name)
        })
        .collect();

    // The service says `dr`; three reals override it.
    let mut services = String::new();
    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        let reals = MODES
            .iter()
            .map(|mode| {
                let (address, port) = network.real_address(mode, vip, 80);
                let forward = if *mode == "dr" {
                    String::new()
                } else {
                    format!(", forward: {mode}")
                };
                format!("{{address: {address}, port: {port}{forward}}}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        services += &format!(
            "  - {{vip: {vip}, port: 80, protocol: tcp, scheduler: rr, forward: dr, \
             tunnel: ipip, reals: [{reals}]}}\n"
        );
    }
    let mut lbd = Lbd::start(&network.topology.lb, &instance("mix"), &config(&services));

    let weights = NAMES.map(|(_, name)| (name, 1u32));
    for (service_id, vip) in [(1, IpAddr::V4(VIP)), (2, IpAddr::V6(VIP6))] {
        let results = http::connections(
            &network.topology.client,
            SocketAddr::new(vip, 80),
            CONNECTIONS,
            REQUESTS_PER_CONNECTION,
            TIMEOUT,
        );
        let per_real: HashMap<String, u64> =
            http::connections_per_server(&results, REQUESTS_PER_CONNECTION, || {
                format!("{}\n{}", lbd.log(), network.log_of_decap())
            });
        for (_, name) in NAMES {
            assert!(
                per_real.get(name).copied().unwrap_or(0) > 0,
                "{vip}: the {name} real answered nothing: {per_real:?}"
            );
        }
        // rr from one client: an even split, within what several CPUs' cursors allow.
        assert_split_follows_weights(&per_real, &weights, &lbd.new_flows_per_cpu(service_id));
    }

    // Kept-alive connections, until every real holds one of each family: each
    // must stay on its real through a restart of lbd, whose new forwarding programs take
    // over from the old balancer while it is still attached.
    let mut kept: Vec<(HttpClient, String)> = Vec::new();
    for vip in [IpAddr::V4(VIP), IpAddr::V6(VIP6)] {
        let mut holders = std::collections::HashSet::new();
        for _ in 0..4 * MODES.len() {
            let addr = SocketAddr::new(vip, 80);
            let mut client = network
                .topology
                .client
                .run(|| HttpClient::connect(addr, TIMEOUT))
                .unwrap_or_else(|e| panic!("connecting to {addr}: {e}\n{}", lbd.log()));
            let real = client.get("/").expect("first request on a kept connection");
            if holders.insert(real.clone()) {
                kept.push((client, real));
            }
            if holders.len() == MODES.len() {
                break;
            }
        }
        assert_eq!(
            holders.len(),
            MODES.len(),
            "{vip}: kept connections reach {holders:?}"
        );
    }

    // Each real keeps its own method, shown as ipvsadm names them.
    let listing = lbd.listing();
    for service in &listing.services {
        let mut methods: Vec<&str> = service.reals.iter().map(|r| r.forward.as_str()).collect();
        methods.sort();
        assert_eq!(methods, ["dr", "fullnat", "nat", "tun"], "{listing:#?}");
    }
    let table = lbd.lbadm(&["-L", "-n"]);
    for method in ["Route", "Tunnel", "Masq", "FullNat"] {
        let lines = table
            .lines()
            .filter(|line| line.starts_with("  -> ") && line.contains(&format!(" {method} ")))
            .count();
        assert_eq!(lines, 2, "{method} once per service:\n{table}");
    }

    // Requests go on over every kept connection while lbd restarts: between the new daemon
    // loading its programs and swapping them into the links, the old balancer hands packets
    // to the new forwarding programs.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let requests = std::thread::scope(|scope| {
        let looping = scope.spawn(|| {
            let mut requests = 0u64;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the restart took over 60 s"
                );
                for (client, real) in &mut kept {
                    let answer = client.get("/").unwrap_or_else(|e| {
                        panic!("kept connection to {real} during the restart: {e}")
                    });
                    assert_eq!(&answer, real, "a kept connection moved");
                    requests += 1;
                }
            }
            requests
        });
        lbd.restart(&network.topology.lb);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        looping
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    assert!(
        lbd.log().contains("adopting pinned maps"),
        "not an adopting restart:\n{}",
        lbd.log()
    );
    assert!(requests > 0, "no request ran during the restart");
    // TCP would hide a dropped packet by sending it again: the counters say whether any was.
    let drops: Vec<(String, u64)> = lbd
        .listing()
        .reasons
        .iter()
        .filter(|count| count.reason.starts_with("drop_") && count.packets > 0)
        .map(|count| (count.reason.clone(), count.packets))
        .collect();
    assert!(
        drops.is_empty(),
        "packets dropped around the restart: {drops:?}"
    );
    for (client, real) in &mut kept {
        let answer = client
            .get("/")
            .unwrap_or_else(|e| panic!("kept connection to {real} after the restart: {e}"));
        assert_eq!(&answer, real, "a kept connection moved");
    }
}
