//! The pure parts: which VIPs are announced, and the BIRD configuration written for them.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
};

use super::{
    announce::{VipVerdict, Withheld, verdicts},
    bird_config::{DRAINED_MARK, render},
};
use crate::{
    config::{Config, parse},
    neighbour::{InterfaceInfo, Routes},
    reconcile::Desired,
};

const CONFIG: &str = "\
instance: lb1
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.10, port: 80, protocol: tcp, scheduler: mh, reals: [{address: 198.51.100.21}, {address: 198.51.100.22}]}
  - {vip: 192.0.2.10, port: 443, protocol: tcp, scheduler: mh, reals: [{address: 198.51.100.21}]}
  - {vip: 192.0.2.20, port: 53, protocol: udp, reals: [{address: 198.51.100.23}]}
  - {vip: '2001:db8::10', port: 80, protocol: tcp, reals: [{address: '2001:db8:1::21'}]}
bgp:
  local_as: 64512
  router_id: 198.51.100.11
  bird_config: /run/lb/lb1.bird.conf
  neighbors:
    - {address: 198.51.100.1, as: 64500, hold_time: 3s, bfd: true}
    - {address: '2001:db8::1', as: 64512}
  vips:
    - {address: 192.0.2.10, med: 10, communities: ['64500:100', '64500:1:2']}
";

fn config(text: &str) -> Config {
    parse(text, "lb1.yaml").unwrap_or_else(|error| panic!("config refused: {error}"))
}

/// The desired state of `config` with every real's neighbour resolved.
fn desired(config: &Config) -> Desired {
    let eth0 = InterfaceInfo {
        name: "eth0".into(),
        index: 2,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![
            (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11)), 0),
            (IpAddr::V6("2001:db8::11".parse().unwrap()), 0),
        ],
        mtu: 1500,
        vlan: None,
        egress: 2,
    };
    let mut desired = Desired::new(config, vec![eth0], &Routes::new()).expect("placed");
    let all: HashMap<IpAddr, [u8; 6]> = desired
        .next_hops()
        .into_iter()
        .map(|(_, address)| (address, [2, 0, 0, 0, 0, 3]))
        .collect();
    desired.set_neighbours(2, &all);
    desired
}

fn verdict(vip: &str, withheld: Option<Withheld>) -> VipVerdict {
    VipVerdict {
        vip: vip.parse().unwrap(),
        withheld,
    }
}

#[test]
fn a_vip_is_announced_while_one_of_its_services_has_a_healthy_real() {
    let config = config(CONFIG);
    let bgp = config.bgp.clone().unwrap();
    let mut desired = desired(&config);
    assert_eq!(
        verdicts(&bgp, &desired, false, false),
        vec![
            verdict("192.0.2.10", None),
            verdict("192.0.2.20", None),
            verdict("2001:db8::10", None),
        ]
    );

    // Port 80's reals both down: port 443's real still serves the VIP.
    for real in &mut desired.services[0].reals {
        real.healthy = false;
    }
    assert!(verdicts(&bgp, &desired, false, false)[0].announced());
    // Then 443's too: withdrawn. Weight 0 (drained) counts as no real for new flows.
    desired.services[1].reals[0].healthy = false;
    desired.services[2].reals[0].config.weight = 0;
    assert_eq!(
        verdicts(&bgp, &desired, false, false)[..2],
        [
            verdict("192.0.2.10", Some(Withheld::NoHealthyReal)),
            verdict("192.0.2.20", Some(Withheld::NoHealthyReal)),
        ]
    );

    // Drained or stopping: everything goes, whatever the reals.
    let fresh = self::desired(&config);
    assert!(
        verdicts(&bgp, &fresh, true, false)
            .iter()
            .all(|verdict| verdict.withheld == Some(Withheld::Drained))
    );
    assert!(
        verdicts(&bgp, &fresh, false, true)
            .iter()
            .all(|verdict| verdict.withheld == Some(Withheld::Stopping))
    );

    // A VIP that VRRP has on standby here is not forwarded, so not announced.
    let mut standby = self::desired(&config);
    standby.standby.insert("192.0.2.20".parse().unwrap());
    assert_eq!(
        verdicts(&bgp, &standby, false, false)[1],
        verdict("192.0.2.20", Some(Withheld::VrrpStandby))
    );

    // Without an IPv6 neighbour (a VIP added at run time), the IPv6 VIP goes nowhere.
    let mut v4_only = bgp.clone();
    v4_only.neighbors.truncate(1);
    assert_eq!(
        verdicts(&v4_only, &fresh, false, false)[2],
        verdict("2001:db8::10", Some(Withheld::NoNeighbourOfItsFamily))
    );
}

/// The file as BIRD reads it: sessions per neighbour with their family's table, attributes on
/// the routes, a withheld VIP absent.
#[test]
fn the_bird_configuration_holds_a_route_per_announced_vip() {
    let config = config(CONFIG);
    let bgp = config.bgp.unwrap();
    let verdicts = [
        verdict("192.0.2.10", None),
        verdict("192.0.2.20", Some(Withheld::NoHealthyReal)),
        verdict("2001:db8::10", None),
    ];
    let expected = "\
# Written by lbd (instance lb1) from its `bgp` key, again on every change: do not edit.
# BIRD reads it through `include \"/run/lb/lb1.bird.conf\";` in bird.conf.

router id 198.51.100.11;

protocol device lbd_device {
}

ipv4 table lbd_vips4;
ipv6 table lbd_vips6;

protocol static lbd_routes4 {
\tipv4 { table lbd_vips4; };
\troute 192.0.2.10/32 blackhole {
\t\tbgp_med = 10;
\t\tbgp_community.add((64500, 100));
\t\tbgp_large_community.add((64500, 1, 2));
\t};
}

protocol static lbd_routes6 {
\tipv6 { table lbd_vips6; };
\troute 2001:db8::10/128 blackhole;
}

protocol bfd lbd_bfd {
\tinterface \"*\" {
\t\tmin rx interval 100 ms;
\t\tmin tx interval 100 ms;
\t\tmultiplier 3;
\t};
}

protocol bgp lbd_peer1 {
\tdescription \"lbd lb1 to 198.51.100.1\";
\tlocal as 64512;
\tneighbor 198.51.100.1 as 64500;
\thold time 3;
\tbfd on;
\tipv4 {
\t\ttable lbd_vips4;
\t\timport none;
\t\texport all;
\t\tnext hop self;
\t};
}

protocol bgp lbd_peer2 {
\tdescription \"lbd lb1 to 2001:db8::1\";
\tlocal as 64512;
\tneighbor 2001:db8::1 as 64512;
\tipv6 {
\t\ttable lbd_vips6;
\t\timport none;
\t\texport all;
\t\tnext hop self;
\t};
}

";
    let text = render(&bgp, "lb1", &verdicts, false);
    assert_eq!(text, expected, "rendered:\n{text}");
    assert!(!text.contains(DRAINED_MARK));
    let drained = render(&bgp, "lb1", &[], true);
    assert!(drained.lines().any(|line| line == DRAINED_MARK));
    assert!(!drained.contains("route "));
    bird_parses(&text);
    bird_parses(&drained);
}

/// BIRD itself reads the text (`bird -p`: parse and exit), when it is installed (`cargo xtask
/// setup` installs it; the scale-out test runs it for real).
fn bird_parses(text: &str) {
    let bird = std::path::Path::new("/usr/sbin/bird");
    if !bird.exists() {
        eprintln!("BIRD is not installed: the text is not checked by BIRD itself");
        return;
    }
    let file = std::env::temp_dir().join(format!("lbd-bird-{}.conf", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let output = std::process::Command::new(bird)
        .arg("-p")
        .arg("-c")
        .arg(&file)
        .output()
        .expect("running bird -p");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "BIRD refuses the configuration: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
}
