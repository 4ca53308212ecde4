//! The daemon's admin socket and lbadm's rendering, with the in-memory data plane: no root.

use std::net::{IpAddr, Ipv4Addr};

use clap::Parser as _;
use lb_common::{
    ConnCounts, Counters, FAMILY_IPV4, Flow, FlowKey, PROTO_TCP, conntrack::STATE_ESTABLISHED,
};
use lb_userspace::{
    admin, config,
    daemon::{self, Daemon},
    dataplane::{FakeDataplane, FakeReader},
    lbadm::{self, Cli},
    neighbour::{InterfaceInfo, Routes},
    reconcile::Desired,
};

const CONFIG: &str = "
instance: admin-test
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    scheduler: rr
    reals: [{address: 192.0.2.21}]
limits: {flows: 1000, services: 16, reals: 64}
";

fn lbadm(socket: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["lbadm"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--socket", socket.to_str().unwrap()]);
    lbadm::run(&Cli::parse_from(argv))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbadm_lists_what_the_daemon_holds() {
    let config = config::parse(CONFIG, "admin.yaml").unwrap();
    let eth0 = InterfaceInfo {
        name: "eth0".into(),
        index: 3,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
        mtu: 1500,
        vlan: None,
        egress: 3,
    };
    let mut state = Desired::new(&config, vec![eth0], &Routes::new()).unwrap();
    let resolved = [(11u8, 0x0bu8), (12, 0x0c)]
        .into_iter()
        .map(|(host, mac)| {
            (
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                [2, 0, 0, 0, 0, mac],
            )
        })
        .collect();
    state.set_neighbours(3, &resolved);

    // What the program counted.
    let mut reader = FakeReader::default();
    reader.service_stats.insert(
        1,
        Counters {
            packets: 600,
            bytes: 40_000,
            new_flows: 100,
        },
    );
    reader.real_stats.insert(
        2,
        Counters {
            packets: 400,
            bytes: 26_000,
            new_flows: 67,
        },
    );
    // One live flow on real 2; its last_seen (0 ns) is older than any timeout unless the
    // machine booted less than 900 s ago, so use "now" from the same clock as the kernel.
    let now = admin::monotonic_now_ns();
    let key = FlowKey {
        src: [198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst: [192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        src_port_be: 40001u16.to_be(),
        dst_port_be: 80u16.to_be(),
        protocol: PROTO_TCP,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    reader.flows.insert(
        key,
        Flow {
            real_id: 2,
            service_id: 1,
            last_seen_ns: now,
            state: u32::from(STATE_ESTABLISHED),
            ..Flow::default()
        },
    );
    reader.connections.insert(
        2,
        ConnCounts {
            active: 1,
            inactive: 3,
        },
    );

    let dir = std::env::temp_dir().join(format!("lb-admin-test-{}", std::process::id()));
    let socket = dir.join("lbd.sock");
    let listener = admin::bind_admin_socket(&socket).unwrap();
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let daemon = Daemon::new(
        &config.instance,
        config.limits.flows,
        state,
        Box::new(FakeDataplane::default()),
        std::sync::Arc::new(reader),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daemon::run(daemon, listener, async {
        let _ = stopped.await;
    }));

    let socket_for_cli = socket.clone();
    let (table, stats, json, filtered, missing, connections, connections_json) =
        tokio::task::spawn_blocking(move || {
            (
                lbadm(&socket_for_cli, &["-L", "-n"]).unwrap(),
                lbadm(&socket_for_cli, &["-Ln", "--stats"]).unwrap(),
                lbadm(&socket_for_cli, &["-L", "-n", "-o", "json"]).unwrap(),
                lbadm(&socket_for_cli, &["-L", "-n", "-u", "192.0.2.100:53"]).unwrap(),
                lbadm(&socket_for_cli, &["-L", "-n", "-t", "192.0.2.100:8080"])
                    .unwrap_err()
                    .to_string(),
                lbadm(&socket_for_cli, &["-Lnc"]).unwrap(),
                lbadm(&socket_for_cli, &["-L", "-n", "-c", "-o", "json"]).unwrap(),
            )
        })
        .await
        .unwrap();

    let expected_table = "\
lbd 0.1.0 instance admin-test (flow table size=1000)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.100:80 wrr
  -> 192.0.2.11:80                Route   1      0          0         
  -> 192.0.2.12:80                Route   2      1          3         
UDP  192.0.2.100:53 rr
  -> 192.0.2.21:53                Route   1      0          0         
";
    assert_eq!(table, expected_table);
    assert!(
        stats.contains(
            "TCP  192.0.2.100:80                    100      600        0    40000        0\n"
        ),
        "{stats}"
    );
    assert!(
        stats.contains(
            "  -> 192.0.2.12:80                      67      400        0    26000        0\n"
        ),
        "{stats}"
    );
    let listing: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        listing["services"][0]["reals"][1]["mac"],
        "02:00:00:00:00:0c"
    );
    assert_eq!(
        listing["services"][1]["reals"][0]["available"], false,
        "192.0.2.21 never resolved"
    );
    assert!(
        filtered.contains("UDP  192.0.2.100:53 rr") && !filtered.contains("TCP"),
        "{filtered}"
    );
    assert_eq!(missing, "no such service: TCP 192.0.2.100:8080");
    // Expiry is 15:00 or 14:59, depending on how long the request took.
    assert!(
        connections.starts_with(
            "IPVS connection entries\n\
             pro expire state       source             virtual            destination\n\
             TCP 1"
        ) && connections
            .ends_with("  ESTABLISHED 198.51.100.7:40001 192.0.2.100:80     192.0.2.12:80\n"),
        "{connections}"
    );
    let connections_json: serde_json::Value = serde_json::from_str(&connections_json).unwrap();
    let entry = &connections_json["connections"][0];
    assert_eq!(entry["state"], "ESTABLISHED");
    assert_eq!(entry["destination"], "192.0.2.12");
    assert_eq!(entry["source_port"], 40001);
    assert!(entry["expire_s"].as_u64().unwrap() > 890, "{entry}");

    stop.send(()).unwrap();
    server.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
