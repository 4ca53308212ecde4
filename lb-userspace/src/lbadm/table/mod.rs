//! ipvsadm's table layouts, column for column, so that scripts reading ipvsadm's output read
//! lbadm's: `-L -n` and its `--stats`, `--rate`, `--thresholds`, `--exact` forms, `-L -c`,
//! `-L --timeout`; and `lbadm status` (`status.rs`), which ipvsadm does not have.
//!
//! What a listing shows is what IPVS would hold if keepalived ran these services: a real
//! whose health check failed is absent (`on_failure: remove`, keepalived's default) or has
//! weight 0 (`inhibit`, keepalived's `inhibit_on_failure`), and a sorry server appears only
//! while it stands in for the reals. `-o json` and `lbadm status` show everything.

mod status;
#[cfg(test)]
mod tests;

use std::{cmp::Ordering, fmt::Write as _};

pub use status::status;

use crate::{
    admin::{ConnectionListing, Listing, RealListing, ServiceListing, TimeoutListing},
    config::socket_text,
};

/// The version line ipvsadm prints first: IPVS's protocol version, whose tables these are,
/// and the connection table's size (here the flow table's).
const IPVS_VERSION: &str = "1.2.1";

/// Which of ipvsadm's service listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `-L -n`: scheduler, flags, forwarding method, weight, connections.
    Services,
    /// `--stats`: connections, packets and bytes.
    Stats,
    /// `--rate`: the same per second.
    Rate,
    /// `--thresholds`: connection thresholds (lbd has none: 0, as ipvsadm shows unset ones).
    Thresholds,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub layout: Layout,
    /// `--exact`: whole numbers, never K, M, G, T.
    pub exact: bool,
    /// Sorted as ipvsadm sorts (the default), or in the config's order (`--nosort`).
    pub sort: bool,
    /// The `IP Virtual Server version` line: ipvsadm prints it for the whole table, not for
    /// one service (`-L -t VIP:PORT`).
    pub version_line: bool,
}

/// A service listing in ipvsadm's layout.
pub fn services(listing: &Listing, format: Format) -> String {
    let mut out = String::new();
    if format.version_line {
        let _ = writeln!(
            out,
            "IP Virtual Server version {IPVS_VERSION} (size={})",
            listing.flow_table_size
        );
    }
    out.push_str(&title(format.layout));
    let mut services: Vec<&ServiceListing> = listing.services.iter().collect();
    if format.sort {
        services.sort_by(|a, b| service_order(a, b));
    }
    for service in services {
        service_lines(&mut out, service, format);
    }
    out
}

/// ipvsadm's two title lines (its `print_title`).
fn title(layout: Layout) -> String {
    let columns = |names: [&str; 5]| {
        names
            .iter()
            .map(|name| format!(" {name:>8}"))
            .collect::<String>()
    };
    match layout {
        Layout::Services => "Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
"
        .to_owned(),
        Layout::Stats => format!(
            "{:<33}{}
  -> RemoteAddress:Port
",
            "Prot LocalAddress:Port",
            columns(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"])
        ),
        Layout::Rate => format!(
            "{:<33}{}
  -> RemoteAddress:Port
",
            "Prot LocalAddress:Port",
            columns(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"])
        ),
        Layout::Thresholds => format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}
  -> RemoteAddress:Port
",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
    }
}

/// ipvsadm's order: IPv4 before IPv6, TCP before UDP, then address and port.
fn service_order(a: &ServiceListing, b: &ServiceListing) -> Ordering {
    let key = |s: &ServiceListing| (s.vip.is_ipv6(), s.protocol == "udp", s.vip, s.port);
    key(a).cmp(&key(b))
}

fn service_lines(out: &mut String, service: &ServiceListing, format: Format) {
    let name = format!(
        "{}  {}",
        service.protocol.to_uppercase(),
        socket_text(service.vip, service.port)
    );
    match format.layout {
        // ipvsadm prints a service's usual line above its reals' thresholds.
        Layout::Services | Layout::Thresholds => {
            let _ = write!(out, "{name} {}", service.scheduler);
            // ipvsadm's flags: `persistent SECONDS`, then `mask NETMASK` when not the whole
            // address.
            if let Some(seconds) = service.persistent_s {
                let _ = write!(out, " persistent {seconds}");
                if let Some(netmask) = &service.netmask {
                    let _ = write!(out, " mask {netmask}");
                }
            }
            // Ours: what tunnelling adds to its packets, which the path to its reals must
            // carry.
            if service.mtu_overhead > 0 {
                let _ = write!(out, " mtu-overhead {}", service.mtu_overhead);
            }
        }
        Layout::Stats => {
            let _ = write!(
                out,
                "{name:<33}{}",
                stats_columns(&service.stats, format.exact)
            );
        }
        Layout::Rate => {
            let rate = service.rate;
            let _ = write!(out, "{name:<33}");
            for n in [
                rate.cps,
                rate.in_pps,
                rate.out_pps,
                rate.in_bps,
                rate.out_bps,
            ] {
                out.push_str(&large_number(n, format.exact));
            }
        }
    }
    out.push('\n');
    let mut reals: Vec<&RealListing> = shown_reals(service).collect();
    if format.sort {
        reals.sort_by_key(|real| (real.address, real.port));
    }
    for real in reals {
        real_line(out, service, real, format);
    }
}

fn real_line(out: &mut String, service: &ServiceListing, real: &RealListing, format: Format) {
    let name = socket_text(real.address, real.port);
    let _ = match format.layout {
        Layout::Services => writeln!(
            out,
            "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
            forward_name(&real.forward),
            shown_weight(service, real),
            real.active_conn,
            real.inactive_conn
        ),
        Layout::Stats => writeln!(
            out,
            "  -> {name:<28}{}",
            stats_columns(&real.stats, format.exact)
        ),
        // ipvsadm prints a real's per-second counts whole and abbreviates only its bytes.
        Layout::Rate => {
            let rate = real.rate;
            let _ = write!(
                out,
                "  -> {name:<28} {:>8} {:>8} {:>8}",
                rate.cps, rate.in_pps, rate.out_pps
            );
            out.push_str(&large_number(rate.in_bps, format.exact));
            out.push_str(&large_number(rate.out_bps, format.exact));
            writeln!(out)
        }
        Layout::Thresholds => writeln!(
            out,
            "  -> {name:<28} {:<10} {:<10} {:<10} {:<10}",
            0, 0, real.active_conn, real.inactive_conn
        ),
    };
}

/// A service's reals as IPVS would hold them under keepalived: a real whose check failed
/// is gone unless the service inhibits instead, and the sorry server shows only while it
/// stands in.
pub fn shown_reals(service: &ServiceListing) -> impl Iterator<Item = &RealListing> {
    service.reals.iter().filter(|real| {
        let removed = real.healthy == Some(false) && service.on_failure != "inhibit";
        !removed && (!real.sorry_server || real.standing_in)
    })
}

/// A real's weight as IPVS would hold it: 0 while its check fails and the service inhibits.
fn shown_weight(service: &ServiceListing, real: &RealListing) -> u32 {
    if real.healthy == Some(false) && service.on_failure == "inhibit" {
        0
    } else {
        real.weight
    }
}

/// `-L -n -c`: ipvsadm's connection table (`pro expire state source virtual destination`),
/// the expiry as minutes:seconds. A full-NAT connection ends with `local ADDRESS:PORT`, where
/// the real sees it come from.
pub fn connections(listing: &ConnectionListing) -> String {
    let mut out = String::from("IPVS connection entries\n");
    out.push_str("pro expire state       source             virtual            destination\n");
    for connection in &listing.connections {
        let expire = format!(
            "{:02}:{:02}",
            connection.expire_s / 60,
            connection.expire_s % 60
        );
        let _ = write!(
            out,
            "{:<3} {expire:<6} {:<11} {:<18} {:<18} ",
            connection.protocol.to_uppercase(),
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

/// `-L --timeout`.
pub fn timeouts(timeouts: &TimeoutListing) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        timeouts.tcp, timeouts.tcp_fin, timeouts.udp
    )
}

/// ipvsadm's method names (`FullNat` is ours: ipvsadm has no full NAT).
pub fn forward_name(forward: &str) -> &str {
    match forward {
        "dr" => "Route",
        "tun" => "Tunnel",
        "nat" => "Masq",
        "fullnat" => "FullNat",
        other => other,
    }
}

/// `--stats`'s five columns.
fn stats_columns(stats: &crate::admin::Stats, exact: bool) -> String {
    [
        stats.conns,
        stats.in_packets,
        stats.out_packets,
        stats.in_bytes,
        stats.out_bytes,
    ]
    .iter()
    .map(|&n| large_number(n, exact))
    .collect()
}

/// One number column as ipvsadm prints it: 9 characters, right-aligned, and past 8 digits
/// abbreviated to thousands (K), millions (M), billions (G) or trillions (T), ipvsadm's
/// thresholds; `exact` prints it whole (one space before it, wider when it must be).
pub fn large_number(n: u64, exact: bool) -> String {
    if exact {
        return format!(" {n:>8}");
    }
    match n {
        0..100_000_000 => format!("{n:>9}"),
        100_000_000..1_000_000_000 => format!("{:>8}K", n / 1_000),
        1_000_000_000..100_000_000_000 => format!("{:>8}M", n / 1_000_000),
        100_000_000_000..100_000_000_000_000 => format!("{:>8}G", n / 1_000_000_000),
        _ => format!("{:>8}T", n / 1_000_000_000_000),
    }
}
