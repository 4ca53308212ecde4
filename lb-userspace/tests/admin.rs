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
  - vip: 192.0.2.100
    port: 443
    protocol: tcp
    scheduler: rr
    forward: tun
    tunnel: gue
    snat_pool: [192.0.2.3]
    reals:
      - {address: 192.0.2.31}
      - {address: 2001:db8::32}
      - {address: 192.0.2.33, forward: nat, port: 8443}
      - {address: 192.0.2.34, forward: fullnat, port: 8443}
limits: {flows: 1000, services: 16, reals: 64}
";

fn lbadm(socket: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["lbadm"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--socket", socket.to_str().unwrap()]);
    lbadm::run(&Cli::parse_from(argv)).map_err(anyhow::Error::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbadm_lists_what_the_daemon_holds() {
    let config = config::parse(CONFIG, "admin.yaml").unwrap();
    let eth0 = InterfaceInfo {
        name: "eth0".into(),
        index: 3,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24),
            ("2001:db8::2".parse().unwrap(), 64),
        ],
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
    // A full-NAT flow, on real 7 (192.0.2.34), from its first local address.
    let full_nat = FlowKey {
        src: [203, 0, 113, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst_port_be: 443u16.to_be(),
        ..key
    };
    reader.flows.insert(
        full_nat,
        Flow {
            real_id: 7,
            service_id: 3,
            last_seen_ns: now,
            state: u32::from(STATE_ESTABLISHED),
            local_port_be: 1025u16.to_be(),
            local_source: 0,
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
    let listener = admin::bind_admin_socket(&socket, None).unwrap();
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
IP Virtual Server version 1.2.1 (size=1000)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.100:80 wrr
  -> 192.0.2.11:80                Route   1      0          0         
  -> 192.0.2.12:80                Route   2      1          3         
TCP  192.0.2.100:443 rr mtu-overhead 48
  -> 192.0.2.31:443               Tunnel  1      0          0         
  -> 192.0.2.33:8443              Masq    1      0          0         
  -> 192.0.2.34:8443              FullNat 1      0          0         
  -> [2001:db8::32]:443           Tunnel  1      0          0         
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
    let tunnelled = &listing["services"][2];
    assert_eq!(tunnelled["mtu_overhead"], 48, "GUE in IPv6");
    assert_eq!(listing["services"][0]["mtu_overhead"], 0);
    assert_eq!(tunnelled["reals"][0]["forward"], "tun");
    assert_eq!(tunnelled["reals"][0]["next_hop"], "192.0.2.31");
    assert_eq!(
        tunnelled["reals"][1]["sources"],
        serde_json::json!(["2001:db8::2"]),
        "the outer source of the IPv6 tunnel: eth0's own address"
    );
    assert_eq!(
        tunnelled["reals"][3]["sources"],
        serde_json::json!(["192.0.2.3"])
    );
    assert!(
        filtered.contains("UDP  192.0.2.100:53 rr") && !filtered.contains("TCP"),
        "{filtered}"
    );
    assert_eq!(missing, "No such service: TCP 192.0.2.100:8080");
    // Expiry is 15:00 or 14:59, depending on how long the request took.
    let lines: Vec<&str> = connections.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "IPVS connection entries",
            "pro expire state       source             virtual            destination"
        ],
        "{connections}"
    );
    assert!(
        lines.len() == 4
            && lines[2].starts_with("TCP 1")
            && lines[2]
                .ends_with("  ESTABLISHED 198.51.100.7:40001 192.0.2.100:80     192.0.2.12:80")
            && lines[3].ends_with(
                "  ESTABLISHED 203.0.113.9:40001  192.0.2.100:443    192.0.2.34:8443    \
                 local 192.0.2.3:1025"
            ),
        "{connections}"
    );
    let connections_json: serde_json::Value = serde_json::from_str(&connections_json).unwrap();
    let entry = &connections_json["connections"][0];
    assert_eq!(entry["state"], "ESTABLISHED");
    assert_eq!(entry["destination"], "192.0.2.12");
    assert_eq!(entry["source_port"], 40001);
    assert!(entry["expire_s"].as_u64().unwrap() > 890, "{entry}");
    assert!(entry.get("local_address").is_none(), "{entry}");
    let full_nat = &connections_json["connections"][1];
    assert_eq!(full_nat["destination_port"], 8443);
    assert_eq!(full_nat["local_address"], "192.0.2.3");
    assert_eq!(full_nat["local_port"], 1025);

    stop.send(()).unwrap();
    server.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
