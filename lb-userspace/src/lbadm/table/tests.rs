//! Golden tests: lbadm's tables against ipvsadm's, written by `golden/ipvsadm_formats.c` with
//! ipvsadm's own printf formats from the same data (IPv4 and IPv6, numbers on each side of
//! every K/M/G/T threshold).

use std::net::IpAddr;

use super::*;
use crate::admin::{Connection, Rates, Stats};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn stats(numbers: [u64; 5]) -> Stats {
    let [conns, in_packets, out_packets, in_bytes, out_bytes] = numbers;
    Stats {
        conns,
        in_packets,
        out_packets,
        in_bytes,
        out_bytes,
    }
}

fn rates(numbers: [u64; 5]) -> Rates {
    let [cps, in_pps, out_pps, in_bps, out_bps] = numbers;
    Rates {
        cps,
        in_pps,
        out_pps,
        in_bps,
        out_bps,
    }
}

fn real(address: &str, port: u16, forward: &str, weight: u32, conns: (u64, u64)) -> RealListing {
    RealListing {
        address: ip(address),
        port,
        forward: forward.into(),
        weight,
        active_conn: conns.0,
        inactive_conn: conns.1,
        next_hop: None,
        sources: Vec::new(),
        mac: Some("02:00:00:00:00:0b".into()),
        available: true,
        neighbour: "reachable".into(),
        healthy: None,
        stats: Stats::default(),
        rate: Rates::default(),
        sorry_server: false,
        standing_in: false,
    }
}

fn service(protocol: &str, vip: &str, port: u16, scheduler: &str) -> ServiceListing {
    ServiceListing {
        protocol: protocol.into(),
        vip: ip(vip),
        port,
        scheduler: scheduler.into(),
        persistent_s: None,
        netmask: None,
        forward: "dr".into(),
        mtu_overhead: 0,
        on_failure: "remove".into(),
        stats: Stats::default(),
        rate: Rates::default(),
        reals: Vec::new(),
    }
}

/// The golden files' data, in a config order that is not ipvsadm's sorted one.
fn listing() -> Listing {
    let mut udp = service("udp", "192.0.2.100", 53, "rr");
    udp.stats = stats([3, 30, 0, 3000, 0]);
    let mut nat = real("192.0.2.13", 5353, "nat", 1, (0, 3));
    nat.stats = stats([3, 30, 30, 3000, 6000]);
    nat.rate = rates([1, 2, 3, 4, 5]);
    udp.reals = vec![nat];

    let mut v6 = service("tcp", "2001:db8::100", 443, "mh");
    v6.reals = vec![real("2001:db8::11", 443, "dr", 1, (2, 0))];

    let mut web = service("tcp", "192.0.2.100", 80, "wrr");
    web.persistent_s = Some(300);
    web.netmask = Some("255.255.255.0".into());
    web.stats = stats([12, 123_456_789, 0, 123_456_789_012, 99_999_999]);
    web.rate = rates([1234, 56789, 0, 123_456_789, 0]);
    let mut first = real("192.0.2.11", 80, "dr", 3, (5, 0));
    first.stats = stats([5_000_000_000, 100_000_000_000_000, 0, 7, 0]);
    first.rate = rates([7, 123_456_789, 0, 5_000_000_000, 0]);
    web.reals = vec![real("192.0.2.12", 80, "dr", 2, (0, 1)), first];

    Listing {
        instance: "lb1".into(),
        flow_table_size: 1000,
        services: vec![udp, v6, web],
        reasons: Vec::new(),
        timeouts: TimeoutListing {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        },
    }
}

fn format(layout: Layout) -> Format {
    Format {
        layout,
        exact: false,
        sort: true,
        version_line: true,
    }
}

#[track_caller]
fn assert_same(actual: &str, golden: &str) {
    if actual != golden {
        panic!("differs from ipvsadm's layout\n--- lbadm:\n{actual}--- ipvsadm:\n{golden}");
    }
}

#[test]
fn list_is_ipvsadms() {
    let actual = services(&listing(), format(Layout::Services));
    assert_same(&actual, include_str!("golden/list.txt"));
}

#[test]
fn stats_are_ipvsadms_and_abbreviate_as_it_does() {
    let actual = services(&listing(), format(Layout::Stats));
    assert_same(&actual, include_str!("golden/stats.txt"));
    let exact = Format {
        exact: true,
        ..format(Layout::Stats)
    };
    assert_same(
        &services(&listing(), exact),
        include_str!("golden/stats_exact.txt"),
    );
}

#[test]
fn rates_are_ipvsadms() {
    let actual = services(&listing(), format(Layout::Rate));
    assert_same(&actual, include_str!("golden/rate.txt"));
}

#[test]
fn thresholds_are_ipvsadms() {
    let actual = services(&listing(), format(Layout::Thresholds));
    assert_same(&actual, include_str!("golden/thresholds.txt"));
}

#[test]
fn timeouts_are_ipvsadms() {
    assert_same(
        &timeouts(&listing().timeouts),
        include_str!("golden/timeout.txt"),
    );
}

#[test]
fn connections_are_ipvsadms() {
    let connection = |protocol: &str, expire_s, state: &str, source, virt, destination| {
        let (source, source_port): (IpAddr, u16) = source;
        let (virtual_address, virtual_port): (IpAddr, u16) = virt;
        let (destination, destination_port): (IpAddr, u16) = destination;
        Connection {
            protocol: protocol.into(),
            expire_s,
            state: state.into(),
            source,
            source_port,
            virtual_address,
            virtual_port,
            destination,
            destination_port,
            local_address: None,
            local_port: None,
        }
    };
    let listing = ConnectionListing {
        instance: "lb1".into(),
        connections: vec![
            connection(
                "tcp",
                899,
                "ESTABLISHED",
                (ip("198.51.100.7"), 40001),
                (ip("192.0.2.100"), 80),
                (ip("192.0.2.11"), 80),
            ),
            connection(
                "udp",
                300,
                "UDP",
                (ip("2001:db8::7"), 5300),
                (ip("2001:db8::100"), 53),
                (ip("2001:db8::11"), 53),
            ),
        ],
    };
    assert_same(
        &connections(&listing),
        include_str!("golden/connections.txt"),
    );
}

#[test]
fn full_nat_connections_end_with_the_local_address() {
    let listing = ConnectionListing {
        instance: "lb1".into(),
        connections: vec![Connection {
            protocol: "udp".into(),
            expire_s: 300,
            state: "UDP".into(),
            source: ip("198.51.100.7"),
            source_port: 40001,
            virtual_address: ip("192.0.2.100"),
            virtual_port: 53,
            destination: ip("10.0.0.11"),
            destination_port: 5353,
            local_address: Some(ip("10.0.0.2")),
            local_port: Some(1025),
        }],
    };
    assert!(
        connections(&listing).ends_with(
            "UDP 05:00  UDP         198.51.100.7:40001 192.0.2.100:53     10.0.0.11:5353     local 10.0.0.2:1025\n"
        ),
        "{}",
        connections(&listing)
    );
}

#[test]
fn nosort_keeps_the_configs_order_and_one_service_has_no_version_line() {
    let unsorted = Format {
        sort: false,
        ..format(Layout::Services)
    };
    let text = services(&listing(), unsorted);
    let services_in_order: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("TCP") || line.starts_with("UDP"))
        .collect();
    assert_eq!(
        services_in_order,
        [
            "UDP  192.0.2.100:53 rr",
            "TCP  [2001:db8::100]:443 mh",
            "TCP  192.0.2.100:80 wrr persistent 300 mask 255.255.255.0"
        ]
    );
    assert!(text.contains("192.0.2.12:80  ") && text.find("192.0.2.12") < text.find("192.0.2.11"));
    let mut one = listing();
    one.services.truncate(1);
    let text = services(
        &one,
        Format {
            version_line: false,
            ..format(Layout::Services)
        },
    );
    assert!(
        text.starts_with("Prot LocalAddress:Port Scheduler Flags\n"),
        "{text}"
    );
}

#[test]
fn failed_reals_show_as_keepalived_leaves_them_in_ipvs() {
    let mut listing = listing();
    let web = &mut listing.services[2];
    web.reals[0].healthy = Some(false);
    web.reals[1].healthy = Some(true);
    // on_failure: remove (keepalived's default): the failed real is not listed.
    let text = services(&listing, format(Layout::Services));
    assert!(!text.contains("192.0.2.12:80"), "{text}");
    assert!(text.contains("192.0.2.11:80"), "{text}");
    // inhibit (inhibit_on_failure): listed with weight 0.
    listing.services[2].on_failure = "inhibit".into();
    let text = services(&listing, format(Layout::Services));
    assert!(
        text.contains("  -> 192.0.2.12:80                Route   0      0          1"),
        "{text}"
    );
    // A sorry server shows only while it stands in.
    let mut sorry = real("192.0.2.99", 80, "dr", 1, (0, 0));
    sorry.sorry_server = true;
    listing.services[2].reals.push(sorry);
    assert!(!services(&listing, format(Layout::Services)).contains("192.0.2.99"));
    listing.services[2].reals[2].standing_in = true;
    assert!(services(&listing, format(Layout::Services)).contains("192.0.2.99:80"));
}

#[test]
fn methods_have_ipvsadm_names_and_tunnels_show_their_overhead() {
    let mut mixed = service("tcp", "192.0.2.100", 80, "wrr");
    mixed.reals = vec![
        real("192.0.2.11", 80, "dr", 1, (0, 0)),
        real("192.0.2.12", 80, "tun", 1, (0, 0)),
        real("192.0.2.13", 8080, "nat", 1, (0, 0)),
        real("192.0.2.14", 8080, "fullnat", 1, (0, 0)),
    ];
    mixed.mtu_overhead = 20;
    let listing = Listing {
        services: vec![mixed],
        ..listing()
    };
    let expected = "\
TCP  192.0.2.100:80 wrr mtu-overhead 20
  -> 192.0.2.11:80                Route   1      0          0         
  -> 192.0.2.12:80                Tunnel  1      0          0         
  -> 192.0.2.13:8080              Masq    1      0          0         
  -> 192.0.2.14:8080              FullNat 1      0          0         
";
    let text = services(&listing, format(Layout::Services));
    assert!(text.ends_with(expected), "{text}");
}

#[test]
fn large_numbers_abbreviate_at_ipvsadms_thresholds() {
    let cases = [
        (99_999_999, "99999999"),
        (100_000_000, "100000K"),
        (999_999_999, "999999K"),
        (1_000_000_000, "1000M"),
        (99_999_999_999, "99999M"),
        (100_000_000_000, "100G"),
        (99_999_999_999_999, "99999G"),
        (100_000_000_000_000, "100T"),
    ];
    for (n, text) in cases {
        assert_eq!(large_number(n, false).trim(), text, "{n}");
        assert_eq!(large_number(n, false).len(), 9, "{n}");
        assert_eq!(large_number(n, true).trim(), n.to_string());
    }
}
