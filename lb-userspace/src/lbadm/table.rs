//! ipvsadm's table layouts, for `-L -n` and `-L -n --stats`.

use std::fmt::Write as _;

use crate::{
    admin::{ConnectionListing, Listing, RealListing, ServiceListing, Stats, Status},
    config::socket_text,
};

/// `-L -n`: services with scheduler, reals with forwarding method, weight and connections.
pub fn services(listing: &Listing) -> String {
    let mut out = header(listing);
    out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    for service in &listing.services {
        let _ = write!(
            out,
            "{:<4} {} {}",
            service.protocol.to_uppercase(),
            socket_text(service.vip, service.port),
            service.scheduler
        );
        // ipvsadm's flags: `persistent SECONDS`, then `mask NETMASK` when not the whole
        // address.
        if let Some(seconds) = service.persistent_s {
            let _ = write!(out, " persistent {seconds}");
        }
        if let Some(netmask) = &service.netmask {
            let _ = write!(out, " mask {netmask}");
        }
        // Ours: what tunnelling adds to its packets, which the path to its reals must carry.
        if service.mtu_overhead > 0 {
            let _ = write!(out, " mtu-overhead {}", service.mtu_overhead);
        }
        out.push('\n');
        for real in shown_reals(service) {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                socket_text(real.address, real.port),
                forward_name(&real.forward),
                real.weight,
                real.active_conn,
                real.inactive_conn
            );
        }
    }
    out
}

/// A service's reals as ipvsadm would list them under keepalived: its sorry server only
/// while it stands in for the reals.
fn shown_reals(service: &ServiceListing) -> impl Iterator<Item = &RealListing> {
    service
        .reals
        .iter()
        .filter(|real| !real.sorry_server || real.standing_in)
}

/// `-L -n --stats`: connections, packets and bytes per service and real.
pub fn stats(listing: &Listing, exact: bool) -> String {
    let mut out = header(listing);
    out.push_str(
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
    );
    out.push_str("  -> RemoteAddress:Port\n");
    for service in &listing.services {
        let name = format!(
            "{:<4} {}",
            service.protocol.to_uppercase(),
            socket_text(service.vip, service.port)
        );
        let _ = writeln!(out, "{name:<33}{}", stats_columns(&service.stats, exact));
        for real in shown_reals(service) {
            let _ = writeln!(
                out,
                "  -> {:<28}{}",
                socket_text(real.address, real.port),
                stats_columns(&real.stats, exact)
            );
        }
    }
    out
}

/// `-L -n -c`: ipvsadm's connection table (`pro expire state source virtual destination`),
/// the expiry as minutes:seconds. A full-NAT connection ends with `local ADDRESS:PORT`, where
/// the real sees it come from.
pub fn connections(listing: &ConnectionListing) -> String {
    let mut out = String::from("IPVS connection entries\n");
    out.push_str("pro expire state       source             virtual            destination\n");
    for connection in &listing.connections {
        let _ = write!(
            out,
            "{:<3} {:02}:{:02}  {:<11} {:<18} {:<18} ",
            connection.protocol.to_uppercase(),
            connection.expire_s / 60,
            connection.expire_s % 60,
            connection.state,
            socket_text(connection.source, connection.source_port),
            socket_text(connection.virtual_address, connection.virtual_port),
        );
        let destination = socket_text(connection.destination, connection.destination_port);
        let _ = match (connection.local_address, connection.local_port) {
            (Some(address), Some(port)) => writeln!(
                out,
                "{destination:<18} local {}",
                socket_text(address, port)
            ),
            _ => writeln!(out, "{destination}"),
        };
    }
    out
}

/// `status`: one line for the daemon, one per interface.
pub fn status(status: &Status) -> String {
    let mut out = format!(
        "lbd {} instance {}: {} services, {} reals, flow table size {}\n",
        status.version, status.instance, status.services, status.reals, status.flow_table_size
    );
    out.push_str("Interface        XDP mode   Requested  Program  MTU\n");
    for interface in &status.interfaces {
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:<10} {:<8} {}",
            interface.name,
            interface.attached_mode.as_deref().unwrap_or("none"),
            interface.requested_mode,
            interface
                .program_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            interface.mtu
        );
    }
    out
}

fn header(listing: &Listing) -> String {
    format!(
        "lbd {} instance {} (flow table size={})\n",
        env!("CARGO_PKG_VERSION"),
        listing.instance,
        listing.flow_table_size
    )
}

fn stats_columns(stats: &Stats, exact: bool) -> String {
    [
        stats.conns,
        stats.in_packets,
        stats.out_packets,
        stats.in_bytes,
        stats.out_bytes,
    ]
    .iter()
    .map(|&n| format!(" {:>8}", large_number(n, exact)))
    .collect()
}

/// ipvsadm's method names (`FullNat` is ours: ipvsadm has no full NAT).
fn forward_name(forward: &str) -> &str {
    match forward {
        "dr" => "Route",
        "tun" => "Tunnel",
        "nat" => "Masq",
        "fullnat" => "FullNat",
        other => other,
    }
}

/// Numbers that do not fit 8 columns are abbreviated with K, M, G, T (powers of 1000), as
/// ipvsadm does; `exact` prints them whole.
pub fn large_number(n: u64, exact: bool) -> String {
    let text = n.to_string();
    if exact || text.len() <= 8 {
        return text;
    }
    let mut value = n;
    for suffix in ["K", "M", "G", "T", "P"] {
        value /= 1000;
        if value < 10_000_000 {
            return format!("{value}{suffix}");
        }
    }
    format!("{}E", value / 1000)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::admin::{RealListing, ServiceListing};

    fn listing() -> Listing {
        let stats = Stats {
            conns: 12,
            in_packets: 60,
            out_packets: 0,
            in_bytes: 123_456_789_012,
            out_bytes: 0,
        };
        Listing {
            instance: "lb1".into(),
            flow_table_size: 1000,
            services: vec![ServiceListing {
                protocol: "tcp".into(),
                vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
                port: 80,
                scheduler: "wrr".into(),
                persistent_s: None,
                netmask: None,
                forward: "dr".into(),
                mtu_overhead: 0,
                stats,
                reals: vec![RealListing {
                    address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
                    port: 80,
                    forward: "dr".into(),
                    weight: 3,
                    active_conn: 5,
                    inactive_conn: 0,
                    next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))),
                    sources: Vec::new(),
                    mac: Some("02:00:00:00:00:0b".into()),
                    available: true,
                    neighbour: "reachable".into(),
                    stats,
                    sorry_server: false,
                    standing_in: false,
                }],
            }],
            reasons: Vec::new(),
        }
    }

    #[test]
    fn list_has_ipvsadm_layout() {
        let expected = "\
lbd 0.1.0 instance lb1 (flow table size=1000)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.100:80 wrr
  -> 192.0.2.11:80                Route   3      5          0         
";
        assert_eq!(services(&listing()), expected);
    }

    #[test]
    fn persistence_shows_as_ipvsadm_flags() {
        let mut persistent = listing();
        persistent.services[0].persistent_s = Some(300);
        persistent.services[0].netmask = Some("255.255.255.0".into());
        assert!(
            services(&persistent)
                .contains("TCP  192.0.2.100:80 wrr persistent 300 mask 255.255.255.0\n"),
            "{}",
            services(&persistent)
        );
    }

    #[test]
    fn methods_have_ipvsadm_names_and_tunnels_show_their_overhead() {
        let mut mixed = listing();
        let first = mixed.services[0].reals[0].clone();
        let real = |last: u8, forward: &str, port: u16| RealListing {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            port,
            forward: forward.into(),
            ..first.clone()
        };
        mixed.services[0].reals = vec![
            real(11, "dr", 80),
            real(12, "tun", 80),
            real(13, "nat", 8080),
            real(14, "fullnat", 8080),
        ];
        // A sorry server is listed only while it stands in.
        mixed.services[0].reals.push(RealListing {
            sorry_server: true,
            ..real(99, "dr", 80)
        });
        mixed.services[0].mtu_overhead = 20;
        let expected = "\
TCP  192.0.2.100:80 wrr mtu-overhead 20
  -> 192.0.2.11:80                Route   3      5          0         
  -> 192.0.2.12:80                Tunnel  3      5          0         
  -> 192.0.2.13:8080              Masq    3      5          0         
  -> 192.0.2.14:8080              FullNat 3      5          0         
";
        assert!(services(&mixed).ends_with(expected), "{}", services(&mixed));
        // Persistence flags come first, as ipvsadm's.
        mixed.services[0].persistent_s = Some(300);
        assert!(
            services(&mixed).contains("TCP  192.0.2.100:80 wrr persistent 300 mtu-overhead 20\n"),
            "{}",
            services(&mixed)
        );
    }

    #[test]
    fn stats_has_ipvsadm_layout() {
        let expected = "\
lbd 0.1.0 instance lb1 (flow table size=1000)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.100:80                     12       60        0  123456M        0
  -> 192.0.2.11:80                      12       60        0  123456M        0
";
        assert_eq!(stats(&listing(), false), expected);
        assert!(stats(&listing(), true).contains(" 123456789012 "));
    }

    #[test]
    fn connections_have_ipvsadm_layout() {
        use crate::admin::Connection;
        let listing = ConnectionListing {
            instance: "lb1".into(),
            connections: vec![Connection {
                protocol: "tcp".into(),
                expire_s: 899,
                state: "ESTABLISHED".into(),
                source: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                source_port: 40001,
                virtual_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
                virtual_port: 80,
                destination: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
                destination_port: 80,
                local_address: None,
                local_port: None,
            }],
        };
        let expected = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 198.51.100.7:40001 192.0.2.100:80     192.0.2.11:80
";
        assert_eq!(connections(&listing), expected);
    }

    #[test]
    fn full_nat_connections_end_with_the_local_address() {
        use crate::admin::Connection;
        let listing = ConnectionListing {
            instance: "lb1".into(),
            connections: vec![Connection {
                protocol: "udp".into(),
                expire_s: 300,
                state: "UDP".into(),
                source: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                source_port: 40001,
                virtual_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
                virtual_port: 53,
                destination: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)),
                destination_port: 5353,
                local_address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
                local_port: Some(1025),
            }],
        };
        let expected = "\
IPVS connection entries
pro expire state       source             virtual            destination
UDP 05:00  UDP         198.51.100.7:40001 192.0.2.100:53     10.0.0.11:5353     local 10.0.0.2:1025
";
        assert_eq!(connections(&listing), expected);
    }

    #[test]
    fn large_numbers_abbreviate_like_ipvsadm() {
        assert_eq!(large_number(99_999_999, false), "99999999");
        assert_eq!(large_number(100_000_000, false), "100000K");
        assert_eq!(large_number(12_345_678_901_234, false), "12345G");
        assert_eq!(large_number(100_000_000, true), "100000000");
    }
}
