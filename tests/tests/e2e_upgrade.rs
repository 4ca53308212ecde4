//! An upgrade keeps every connection: the `lbd` of the previous layout (built by
//! `cargo xtask test` from a fixed commit, handed over as `LB_PREVIOUS_LBD`) forwards
//! long-lived connections, then this build's `lbd` restarts over its pinned data plane. It
//! copies the old flow table (`LB_FLOWS_V1`, no connection states) into today's before its
//! program replaces the old one, so every connection goes on to its real and counts as
//! established. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use lb_tests::{
    DrTopology, VIP,
    http::{HttpClient, HttpServer},
    lbd::{Lbd, binary},
    netns,
    privilege::require_root,
};

const TIMEOUT: Duration = Duration::from_secs(5);
const KEPT: usize = 12;

const CONFIG: &str = "
interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 1}
      - {address: 192.0.2.13, weight: 1}
limits: {flows: 65536, services: 16, reals: 64}
";

/// The previous build's `lbd`: `cargo xtask test` builds it. Skipped, saying why, when xtask
/// could not (a clone without the commit in its history); required under CI otherwise.
fn previous_lbd() -> Option<PathBuf> {
    if let Some(reason) = std::env::var_os("LB_PREVIOUS_LBD_MISSING") {
        eprintln!("skipped: {}", reason.to_string_lossy());
        return None;
    }
    match std::env::var_os("LB_PREVIOUS_LBD") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("CI").is_some() => {
            panic!("LB_PREVIOUS_LBD is not set: run the tests through `cargo xtask test`")
        }
        None => {
            eprintln!(
                "skipped: LB_PREVIOUS_LBD (the previous layout's lbd) is not set; \
                 `cargo xtask test` builds it and sets it"
            );
            None
        }
    }
}

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), 80)
}

/// The DR topology with three reals serving HTTP, its namespaces named for `test`.
fn three_reals(test: &str) -> (DrTopology, Vec<HttpServer>) {
    let prefix = format!("lbt-{test}-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2", "real3"]);
    topology.attach_pass_program();
    let servers = topology.serve_http();
    (topology, servers)
}

/// `KEPT` long-lived connections through the VIP, each with the real that answered it.
fn open_kept(topology: &DrTopology, lbd: &Lbd) -> Vec<(HttpClient, String)> {
    (0..KEPT)
        .map(|index| {
            let mut connection = topology
                .client
                .run(|| HttpClient::connect(vip(), TIMEOUT))
                .unwrap_or_else(|e| panic!("connection {index}: {e}\n{}", lbd.log()));
            let real = connection
                .get("/")
                .unwrap_or_else(|e| panic!("connection {index}: {e}\n{}", lbd.log()));
            (connection, real.trim_end().to_owned())
        })
        .collect()
}

/// Every kept connection still answers, from its own real, after `what`.
fn assert_kept(kept: &mut [(HttpClient, String)], lbd: &Lbd, what: &str) {
    for (index, (connection, real)) in kept.iter_mut().enumerate() {
        let answer = connection.get("/").unwrap_or_else(|e| {
            panic!(
                "connection {index} (on {real}) broke across {what}: {e}\n{}",
                lbd.log()
            )
        });
        assert_eq!(answer.trim_end(), real, "connection {index} moved");
    }
}

#[test]
fn an_upgrade_from_the_previous_layout_keeps_every_connection() {
    if !require_root("e2e_upgrade") {
        return;
    }
    let Some(previous) = previous_lbd() else {
        return;
    };
    let (topology, _servers) = three_reals("upg");
    let mut lbd = Lbd::start_binary(
        &topology.lb,
        &format!("lbt-upg-{}", std::process::id()),
        CONFIG,
        previous,
    );
    let pins = lbd.pin_dir().to_path_buf();
    assert!(
        pins.join("LB_FLOWS_V1").exists(),
        "the previous build pins the old flow table"
    );

    let mut kept = open_kept(&topology, &lbd);

    // This build takes over the pinned maps and links.
    lbd.use_binary(binary("lbd"));
    lbd.restart(&topology.lb);
    assert!(
        lbd.log().contains("replaced the program on eth0"),
        "{}",
        lbd.log()
    );
    assert_kept(&mut kept, &lbd, "the upgrade");
    let listing = lbd.listing();
    let active: u64 = listing.services[0]
        .reals
        .iter()
        .map(|real| real.active_conn)
        .sum();
    assert_eq!(
        active, KEPT as u64,
        "the copied flows count as established: {listing:#?}"
    );
    let table = lbd.lbadm(&["-L", "-n", "-c"]);
    assert_eq!(table.matches(" ESTABLISHED ").count(), KEPT, "{table}");
    assert!(
        !pins.join("LB_FLOWS_V1").exists(),
        "the old flow table is unpinned once the new program runs"
    );
    // And new connections are scheduled by the new program.
    for index in 0..6 {
        let mut connection = topology
            .client
            .run(|| HttpClient::connect(vip(), TIMEOUT))
            .unwrap_or_else(|e| panic!("new connection {index}: {e}\n{}", lbd.log()));
        connection
            .get("/")
            .unwrap_or_else(|e| panic!("new connection {index}: {e}\n{}", lbd.log()));
    }
}

/// A later version may change the layout of the service or real entries (new map names, old
/// maps unreadable to it). The ids flows name then come from the id maps, which never change:
/// here the service and real maps are unpinned between two daemons, as such an upgrade would
/// leave them, and the new daemon lists its reals in another order, so ids handed out afresh
/// would send every kept connection to another real.
#[test]
fn ids_survive_a_change_of_the_service_and_real_layouts() {
    if !require_root("e2e_upgrade") {
        return;
    }
    let (topology, _servers) = three_reals("ids");
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-ids-{}", std::process::id()),
        CONFIG,
    );
    let pins = lbd.pin_dir().to_path_buf();
    for map in [lb_common::MAP_SERVICE_IDS, lb_common::MAP_REAL_IDS] {
        assert!(pins.join(map).exists(), "{map} is pinned");
    }
    let mut kept = open_kept(&topology, &lbd);
    let status = lbd.stop();
    assert!(status.success(), "{status}\n{}", lbd.log());
    for map in [lb_common::MAP_SERVICES, lb_common::MAP_REALS] {
        std::fs::remove_file(pins.join(map)).unwrap_or_else(|e| panic!("unpinning {map}: {e}"));
    }
    lbd.edit_config(
        "      - {address: 192.0.2.11, weight: 1}\n      - {address: 192.0.2.12, weight: 1}\n      - {address: 192.0.2.13, weight: 1}\n",
        "      - {address: 192.0.2.13, weight: 1}\n      - {address: 192.0.2.12, weight: 1}\n      - {address: 192.0.2.11, weight: 1}\n",
    );
    lbd.restart(&topology.lb);
    assert!(
        lbd.log().contains("adopting pinned maps"),
        "the ids were found: {}",
        lbd.log()
    );
    assert_kept(&mut kept, &lbd, "the layout change");
    assert!(lbd.stop().success());
}
