use super::*;
use crate::config::bgp::{BgpNeighbor, BgpVip, Community, DEFAULT_BIRD_SOCKET};

const SERVICES: &str = "\
instance: lb1
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.10, port: 80, protocol: tcp, scheduler: mh, reals: [{address: 198.51.100.21}]}
";

fn with_bgp(bgp: &str) -> String {
    format!("{SERVICES}bgp:\n{bgp}")
}

#[test]
fn a_bgp_section_reads_with_its_defaults() {
    let config = parse_ok(&with_bgp(
        "  local_as: 64512\n  router_id: 198.51.100.11\n  neighbors: [{address: 198.51.100.1, as: 64500}]\n",
    ));
    let bgp = config.bgp.expect("bgp");
    assert_eq!(bgp.local_as, 64512);
    assert_eq!(bgp.router_id, Ipv4Addr::new(198, 51, 100, 11));
    assert_eq!(
        bgp.neighbors,
        vec![BgpNeighbor {
            address: "198.51.100.1".parse().unwrap(),
            remote_as: 64500,
            hold_time: None,
            bfd: false,
        }]
    );
    assert_eq!(
        bgp.bird_socket,
        std::path::PathBuf::from(DEFAULT_BIRD_SOCKET)
    );
    assert_eq!(
        bgp.bird_config,
        std::path::PathBuf::from("/run/lb/lb1.bird.conf")
    );
    assert!(bgp.vips.is_empty());

    let config = parse_ok(&with_bgp(
        "  local_as: 4200000000\n  router_id: 198.51.100.11\n  bird_socket: /tmp/b.ctl\n  bird_config: /tmp/lbd.conf\n  neighbors:\n    - {address: 198.51.100.1, as: 64500, hold_time: 3s, bfd: true}\n  vips:\n    - {address: 192.0.2.10, med: 0, communities: ['64500:100', '4200000000:1:2']}\n",
    ));
    let bgp = config.bgp.expect("bgp");
    assert_eq!(bgp.local_as, 4_200_000_000);
    assert_eq!(
        bgp.neighbors[0].hold_time,
        Some(std::time::Duration::from_secs(3))
    );
    assert!(bgp.neighbors[0].bfd);
    assert_eq!(
        bgp.vips,
        vec![BgpVip {
            address: "192.0.2.10".parse().unwrap(),
            med: Some(0),
            communities: vec![
                Community::Standard(64500, 100),
                Community::Large(4_200_000_000, 1, 2)
            ],
        }]
    );
}

/// An lbadm edit may delete a VIP's last service; its `bgp.vips` entry (fixed while lbd runs)
/// must not stand in the way, so an entry naming no service is accepted.
#[test]
fn a_bgp_vips_entry_may_wait_for_its_service() {
    let config = parse_ok(&with_bgp(
        "  local_as: 64512\n  router_id: 198.51.100.11\n  neighbors: [{address: 198.51.100.1, as: 64500}]\n  vips: [{address: 192.0.2.99, med: 1}]\n",
    ));
    assert_eq!(config.bgp.unwrap().vips[0].med, Some(1));
}

#[test]
fn bad_bgp_values_are_named_by_key_and_line() {
    let neighbors = "  neighbors: [{address: 198.51.100.1, as: 64500}]\n";
    let id = "  router_id: 198.51.100.11\n";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "".to_owned(),
            vec![
                "demo.yaml:5:",
                "bgp: needs a value (local_as, router_id and neighbors)",
            ],
        ),
        (
            format!("{id}{neighbors}"),
            vec!["bgp.local_as: required key is missing"],
        ),
        (
            format!("  local_as: 0\n{id}{neighbors}"),
            vec!["demo.yaml:6:13:", "bgp.local_as: AS 0 is out of range"],
        ),
        (
            format!("  local_as: 23456\n{id}{neighbors}"),
            vec!["bgp.local_as: 23456 is AS_TRANS"],
        ),
        (
            format!("  local_as: 4294967296\n{id}{neighbors}"),
            vec!["bgp.local_as: AS 4294967296 is out of range"],
        ),
        (
            format!("  local_as: 64512\n  router_id: '2001:db8::1'\n{neighbors}"),
            vec!["demo.yaml:7:", "bgp.router_id: invalid router id", "IPv4"],
        ),
        (
            format!("  local_as: 64512\n{id}  neighbors: []\n"),
            vec!["bgp.neighbors: needs at least one neighbour"],
        ),
        (
            format!("  local_as: 64512\n{id}  neighbors: [{{address: 198.51.100.1}}]\n"),
            vec!["bgp.neighbors[0].as: required key is missing"],
        ),
        (
            format!(
                "  local_as: 64512\n{id}  neighbors: [{{address: 198.51.100.1, as: 1}}, {{address: 198.51.100.1, as: 2}}]\n"
            ),
            vec!["bgp.neighbors[1].address: 198.51.100.1 is listed twice (also [0])"],
        ),
        (
            format!("  local_as: 64512\n{id}  neighbors: [{{address: 224.0.0.5, as: 1}}]\n"),
            vec!["bgp.neighbors[0].address: 224.0.0.5 is a multicast address"],
        ),
        (
            format!(
                "  local_as: 64512\n{id}  neighbors: [{{address: 198.51.100.1, as: 1, hold_time: 2s}}]\n"
            ),
            vec!["bgp.neighbors[0].hold_time: 2s is not whole seconds in 3s..=65535s"],
        ),
        (
            format!(
                "  local_as: 64512\n{id}  neighbors: [{{address: 198.51.100.1, as: 1, hold_time: 3500ms}}]\n"
            ),
            vec!["bgp.neighbors[0].hold_time: 3500ms is not whole seconds"],
        ),
        (
            format!("  local_as: 64512\n{id}  neighbors: [{{address: '2001:db8::1', as: 1}}]\n"),
            vec![
                "bgp.neighbors: no neighbour is IPv4, so VIP 192.0.2.10 would be announced to nobody",
            ],
        ),
        (
            format!(
                "  local_as: 64512\n{id}{neighbors}  bird_socket: /{}\n",
                "s".repeat(120)
            ),
            vec!["bgp.bird_socket: socket path is 121 bytes"],
        ),
        (
            format!("  local_as: 64512\n{id}{neighbors}  bird_config: \"/tmp/a\\nb\"\n"),
            vec!["bgp.bird_config: must not contain"],
        ),
        (
            format!(
                "  local_as: 64512\n{id}{neighbors}  vips: [{{address: 192.0.2.10, med: -1}}]\n"
            ),
            vec!["bgp.vips[0].med: MED -1 is out of range"],
        ),
        (
            format!(
                "  local_as: 64512\n{id}{neighbors}  vips: [{{address: 192.0.2.10, communities: ['64500:70000']}}]\n"
            ),
            vec![
                "bgp.vips[0].communities[0]: invalid community \"64500:70000\": a standard community",
            ],
        ),
        (
            format!(
                "  local_as: 64512\n{id}{neighbors}  vips: [{{address: 192.0.2.10, communities: ['1:2:3:4']}}]\n"
            ),
            vec!["bgp.vips[0].communities[0]: invalid community \"1:2:3:4\": expected"],
        ),
        (
            format!(
                "  local_as: 64512\n{id}{neighbors}  vips: [{{address: 192.0.2.10, communities: ['1:2', '1:2']}}]\n"
            ),
            vec!["bgp.vips[0].communities[1]: 1:2 is listed twice"],
        ),
        (
            format!(
                "  local_as: 64512\n{id}{neighbors}  vips: [{{address: 192.0.2.10}}, {{address: 192.0.2.10}}]\n"
            ),
            vec!["bgp.vips[1].address: 192.0.2.10 is listed twice (also [0])"],
        ),
        (
            format!("  local_as: 64512\n{id}{neighbors}  bird_config: '/tmp/a\"b'\n"),
            vec!["bgp.bird_config: must not contain '\"'"],
        ),
        (
            format!("  local_as: 64512\n{id}{neighbors}  peers: []\n"),
            vec![
                "demo.yaml:9:3: bgp.peers: unknown key (keys allowed here: local_as, router_id, neighbors, bird_socket, bird_config, vips)",
            ],
        ),
    ];
    for (bgp, expected) in cases {
        let text = with_bgp(&bgp);
        assert_mentions(&error_of(&text), &expected);
    }
}
