//! The BIRD 2 configuration lbd writes: router id, one BGP session per neighbour, and a static
//! protocol per address family holding a host route for each VIP announced. Pure: the config
//! and the verdicts in, the file's text out.
//!
//! The VIPs' routes live in tables of their own (`lbd_<instance>_vips4`, `…_vips6`) that
//! only lbd's sessions read: they are blackhole routes, which must never reach the kernel's routing table
//! through a `protocol kernel` of the operator's (the program forwards the VIPs before
//! routing, and packets for a VIP that reach the stack must not vanish in a blackhole). Every
//! name lbd defines starts with `lbd_<instance>_` ([`Names`]), so that one BIRD can serve
//! several lbd instances.
//!
//! There is no `protocol device` here, though BGP sessions need it (BIRD learns interfaces from
//! it): BIRD allows one, and an operator's bird.conf nearly always has it. The README's
//! bird.conf has it, which also lets BIRD start before lbd has written this file once.

use std::fmt::Write as _;

use super::announce::VipVerdict;
use crate::config::bgp::{BgpConfig, BgpNeighbor, Community};

/// The line that records a drain in the file, so that a restarted lbd stays drained.
pub const DRAINED_MARK: &str = "# lbd: node drained (lbadm undrain-node announces again)";

/// BFD's timers when a neighbour asks for it: a dead link is noticed after 3 × 100 ms.
const BFD_INTERVAL_MS: u32 = 100;
const BFD_MULTIPLIER: u32 = 3;

/// The names lbd gives BIRD's symbols for one instance: `lbd_<instance>_…`, with the `-` an
/// instance name may hold (BIRD's symbols may not) written `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn of(instance: &str) -> Names {
        Names {
            prefix: format!("lbd_{}", instance.replace('-', "_")),
        }
    }

    /// The table holding the VIPs' routes of a family.
    pub fn table(&self, ipv6: bool) -> String {
        format!("{}_vips{}", self.prefix, if ipv6 { 6 } else { 4 })
    }

    /// The static protocol putting them there.
    pub fn routes(&self, ipv6: bool) -> String {
        format!("{}_routes{}", self.prefix, if ipv6 { 6 } else { 4 })
    }

    pub fn bfd(&self) -> String {
        format!("{}_bfd", self.prefix)
    }

    /// The session with the `index`th neighbour (`lbd_lb1_peer1`, …).
    pub fn session(&self, index: usize) -> String {
        format!("{}_peer{}", self.prefix, index + 1)
    }
}

/// The file's text for `verdicts` (announced ones get a route).
pub fn render(
    config: &BgpConfig,
    instance: &str,
    verdicts: &[VipVerdict],
    drained: bool,
) -> String {
    let names = Names::of(instance);
    let mut text = String::new();
    let out = &mut text;
    let _ = writeln!(
        out,
        "# Written by lbd (instance {instance}) from its `bgp` key, again on every change: do not edit.\n\
         # BIRD reads it through `include \"{}\";` in bird.conf.",
        config.bird_config.display()
    );
    if drained {
        let _ = writeln!(out, "{DRAINED_MARK}");
    }
    let _ = writeln!(out, "\nrouter id {};\n", config.router_id);
    let _ = writeln!(
        out,
        "ipv4 table {};\nipv6 table {};\n",
        names.table(false),
        names.table(true)
    );
    for ipv6 in [false, true] {
        let family = if ipv6 { "ipv6" } else { "ipv4" };
        let _ = writeln!(
            out,
            "protocol static {} {{\n\t{family} {{ table {}; }};",
            names.routes(ipv6),
            names.table(ipv6)
        );
        for verdict in verdicts
            .iter()
            .filter(|verdict| verdict.announced() && verdict.vip.is_ipv6() == ipv6)
        {
            route(out, config, verdict);
        }
        let _ = writeln!(out, "}}\n");
    }
    if config.neighbors.iter().any(|neighbor| neighbor.bfd) {
        let _ = writeln!(
            out,
            "protocol bfd {} {{\n\tinterface \"*\" {{\n\t\tmin rx interval {BFD_INTERVAL_MS} ms;\n\t\tmin tx interval {BFD_INTERVAL_MS} ms;\n\t\tmultiplier {BFD_MULTIPLIER};\n\t}};\n}}\n",
            names.bfd()
        );
    }
    for (index, neighbor) in config.neighbors.iter().enumerate() {
        session(out, config, instance, &names, index, neighbor);
    }
    text
}

/// A VIP's host route, with its MED and communities.
fn route(out: &mut String, config: &BgpConfig, verdict: &VipVerdict) {
    let length = if verdict.vip.is_ipv6() { 128 } else { 32 };
    let _ = write!(out, "\troute {}/{length} blackhole", verdict.vip);
    let attributes = config.vips.iter().find(|vip| vip.address == verdict.vip);
    let Some(vip) = attributes.filter(|vip| vip.med.is_some() || !vip.communities.is_empty())
    else {
        let _ = writeln!(out, ";");
        return;
    };
    let _ = writeln!(out, " {{");
    if let Some(med) = vip.med {
        let _ = writeln!(out, "\t\tbgp_med = {med};");
    }
    for community in &vip.communities {
        let _ = match community {
            Community::Standard(asn, value) => {
                writeln!(out, "\t\tbgp_community.add(({asn}, {value}));")
            }
            Community::Large(asn, first, second) => writeln!(
                out,
                "\t\tbgp_large_community.add(({asn}, {first}, {second}));"
            ),
        };
    }
    let _ = writeln!(out, "\t}};");
}

fn session(
    out: &mut String,
    config: &BgpConfig,
    instance: &str,
    names: &Names,
    index: usize,
    neighbor: &BgpNeighbor,
) {
    let ipv6 = neighbor.address.is_ipv6();
    let family = if ipv6 { "ipv6" } else { "ipv4" };
    let _ = writeln!(out, "protocol bgp {} {{", names.session(index));
    let _ = writeln!(
        out,
        "\tdescription \"lbd {instance} to {}\";",
        neighbor.address
    );
    let _ = writeln!(out, "\tlocal as {};", config.local_as);
    let _ = writeln!(
        out,
        "\tneighbor {} as {};",
        neighbor.address, neighbor.remote_as
    );
    // Neighbours are routers on a segment the balancer is on. BIRD takes an internal session
    // for multihop unless told, and refuses BFD on multihop without a local address.
    let _ = writeln!(out, "\tdirect;");
    if let Some(hold) = neighbor.hold_time {
        let _ = writeln!(out, "\thold time {};", hold.as_secs());
    }
    if neighbor.bfd {
        let _ = writeln!(out, "\tbfd on;");
    }
    // Routes learnt are of no use to a balancer; only the VIPs' go out, with this node as
    // their next hop (for an internal session too). The MED is set again in the export
    // filter: BIRD sends another AS a MED only if that filter set it, and drops one that
    // came with the route (the static protocol's), which no eBGP neighbour would then see.
    let _ = writeln!(
        out,
        "\t{family} {{\n\t\ttable {};\n\t\timport none;\n\t\texport filter {{\n\t\t\tif defined(bgp_med) then bgp_med = bgp_med;\n\t\t\taccept;\n\t\t}};\n\t\tnext hop self;\n\t}};\n}}\n",
        names.table(ipv6)
    );
}
