//! `virtual_server` → a service: its forwarding method and tunnel, its `real_server`s (with
//! the ports and families lbd accepts), sorry server, persistence, check and `on_failure`.

use std::{collections::HashSet, net::IpAddr};

use lb_common::{MAX_LEAST_CONN_REALS, RING_SLOTS};

use super::{
    check::{self, Timing},
    convert::{self, Notes, ServiceSettings},
    parse::Directive,
    yaml::{Real, Service},
};
use crate::config::{Forward, OnFailure, Protocol, Scheduler, Tunnel};

/// Weights are 16-bit in lbd, like ipvsadm's.
const MAX_WEIGHT: u32 = 65535;
/// keepalived's (`IPVS_WEIGHT_LIMIT`, `INT32_MAX`).
const KEEPALIVED_MAX_WEIGHT: u32 = i32::MAX as u32;

/// An `lvs_method` (or `lb_kind`): `DR`, `NAT`, `TUN [type ipip|gue|gre] [port N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Method {
    pub(super) forward: Forward,
    pub(super) tunnel: Tunnel,
    pub(super) gue_port: Option<u16>,
}

/// Parses an `lvs_method`'s arguments as keepalived's `svr_forwarding_handler` does: the
/// method first, so a bad tunnel option leaves the method set and the tunnel as it was
/// (`previous`'s, else ipip), as keepalived leaves it. `Ok` may carry what of it is not
/// converted.
pub(super) fn method(
    args: &[String],
    previous: Option<Method>,
) -> Result<(Method, Option<String>), String> {
    let forward = match args.first().map(String::as_str) {
        Some("DR") => Forward::Dr,
        Some("NAT") => Forward::Nat,
        Some("TUN") => Forward::Tun,
        Some(other) => {
            return Err(format!(
                "unknown method {other:?} (DR, NAT or TUN); keepalived ignores it too"
            ));
        }
        None => return Err("no method given".to_owned()),
    };
    tunnel(forward, &args[1..]).or_else(|problem| {
        let method = Method {
            forward,
            tunnel: previous.map_or(Tunnel::Ipip, |previous| previous.tunnel),
            gue_port: previous.and_then(|previous| previous.gue_port),
        };
        let tunnel = if forward == Forward::Tun {
            format!(" (tunnel {})", method.tunnel.name())
        } else {
            String::new()
        };
        let caveat = format!(
            "{problem}: keepalived ignores the tunnel options, and keeps the method, \
             {forward}{tunnel}"
        );
        Ok((method, Some(caveat)))
    })
}

/// The tunnel options after a method (`type ipip|gue|gre`, `port N`, `nocsum|csum|remcsum`);
/// `Err` when keepalived refuses them.
fn tunnel(forward: Forward, options: &[String]) -> Result<(Method, Option<String>), String> {
    let mut method = Method {
        forward,
        tunnel: Tunnel::Ipip,
        gue_port: None,
    };
    let mut gre = false;
    let mut checksum = "nocsum";
    let mut options = options.iter();
    while let Some(option) = options.next() {
        match option.as_str() {
            "type" => match options.next().map(String::as_str) {
                Some("ipip") => (method.tunnel, gre) = (Tunnel::Ipip, false),
                Some("gue") => (method.tunnel, gre) = (Tunnel::Gue, false),
                Some("gre") => (method.tunnel, gre) = (Tunnel::Ipip, true),
                Some(other) => return Err(format!("unknown tunnel type {other:?}")),
                None => return Err("type without a tunnel type".to_owned()),
            },
            "port" => {
                let port = options.next().ok_or("port without a port")?;
                method.gue_port = Some(
                    port.parse()
                        .ok()
                        .filter(|&port| port != 0)
                        .ok_or_else(|| format!("tunnel port {port:?} is not 1 to 65535"))?,
                );
            }
            "nocsum" | "csum" | "remcsum" => checksum = option,
            other => return Err(format!("unknown tunnel option {other:?}")),
        }
    }
    if (method.tunnel == Tunnel::Gue) != method.gue_port.is_some() {
        return Err("a gue tunnel needs a port, and only it has one".to_owned());
    }
    if method.tunnel == Tunnel::Ipip && !gre && checksum != "nocsum" {
        return Err(format!("{checksum}: an ipip tunnel has no checksum option"));
    }
    if gre && checksum == "remcsum" {
        return Err("remcsum: a gre tunnel has no remote checksum".to_owned());
    }
    let mut caveats = Vec::new();
    if gre {
        caveats.push(
            "type gre: lbd tunnels with ipip or gue; converted as ipip (the reals need an ipip \
             tunnel or `lbd decap`)"
                .to_owned(),
        );
    }
    if checksum != "nocsum" {
        caveats.push(format!(
            "{checksum}: lbd sends GUE and GRE without a checksum (keepalived's nocsum)"
        ));
    }
    let caveat = (!caveats.is_empty()).then(|| caveats.join("; "));
    Ok((method, caveat))
}

/// What one `real_server` block says.
pub(super) struct RealSettings<'d> {
    pub(super) at: &'d Directive,
    pub(super) address: IpAddr,
    /// `None` or 0: the service's port.
    pub(super) port: Option<u16>,
    pub(super) weight: u32,
    pub(super) method: Option<(Method, &'d Directive)>,
    pub(super) inhibit: Option<(bool, &'d Directive)>,
    pub(super) timing: Timing<'d>,
    pub(super) virtualhost: Option<String>,
    /// Its checker blocks, in order (`TCP_CHECK`, `MISC_CHECK`, …).
    pub(super) checks: Vec<&'d Directive>,
}

/// A `weight` from `least` to keepalived's most (`IPVS_WEIGHT_LIMIT`), at most lbd's; `None`
/// (listed) for one keepalived ignores. `whose` gets the weight.
pub(super) fn weight(
    notes: &mut Notes,
    directive: &Directive,
    least: u32,
    whose: &str,
) -> Option<u32> {
    let value = directive.value().unwrap_or_default();
    match value.parse::<u32>() {
        Ok(weight) if (least..=KEEPALIVED_MAX_WEIGHT).contains(&weight) => {
            if weight > MAX_WEIGHT {
                notes.skip(
                    directive,
                    format!(
                        "{weight} is above lbd's most, {MAX_WEIGHT}; {whose} gets {MAX_WEIGHT}"
                    ),
                );
            }
            Some(weight.min(MAX_WEIGHT))
        }
        _ => {
            notes.skip(
                directive,
                format!(
                    "{value:?} is not a weight from {least} to {KEEPALIVED_MAX_WEIGHT}; keepalived \
                     ignores it too"
                ),
            );
            None
        }
    }
}

/// What `directive` says, where it inherits from `service` (its weight, its tunnel).
fn real_settings<'d>(
    notes: &mut Notes,
    directive: &'d Directive,
    service: &ServiceSettings,
) -> Option<RealSettings<'d>> {
    let service_method = service.method.map(|(method, _)| method);
    let Some((address, dropped)) = directive.value().and_then(convert::address) else {
        notes.skip(
            directive,
            "not an IP address; keepalived skips the real too",
        );
        return None;
    };
    if let Some(dropped) = dropped {
        notes.skip(directive, convert::dropped_suffix(address, dropped));
    }
    let port = match directive.args.get(1).map(|text| text.parse::<u16>()) {
        None => None,
        Some(Ok(port)) => Some(port),
        Some(Err(_)) => {
            notes.skip(directive, "not a port; keepalived skips the real too");
            return None;
        }
    };
    let mut real = RealSettings {
        at: directive,
        address,
        port,
        weight: service.weight.unwrap_or(1),
        method: None,
        inhibit: None,
        timing: Timing::default(),
        virtualhost: None,
        checks: Vec::new(),
    };
    for child in directive.children() {
        if real.timing.read(notes, child, false) {
            continue;
        }
        let value = child.value().unwrap_or_default();
        match child.keyword.as_str() {
            "weight" => {
                if let Some(weight) = weight(notes, child, 0, "the real") {
                    real.weight = weight;
                }
            }
            "lvs_method" => match method(&child.args, service_method) {
                Ok((parsed, caveat)) => {
                    real.method = Some((parsed, child));
                    if let Some(caveat) = caveat {
                        notes.skip(child, caveat);
                    }
                }
                Err(reason) => notes.skip(child, reason),
            },
            "inhibit_on_failure" => match convert::on_off(child) {
                Some(inhibit) => real.inhibit = Some((inhibit, child)),
                None => notes.skip(child, format!("{value:?} is not on or off")),
            },
            "virtualhost" if !value.is_empty() => real.virtualhost = Some(value.to_owned()),
            keyword if check::is_checker(keyword) => real.checks.push(child),
            keyword => notes.skip(child, real_reason(keyword)),
        }
    }
    Some(real)
}

fn real_reason(keyword: &str) -> &'static str {
    match keyword {
        "uthreshold" | "lthreshold" => "lbd has no connection thresholds for a real",
        "notify_up" | "notify_down" => "lbd runs no scripts when a real changes state",
        "alpha" => "lbd starts reals up (keepalived without alpha); starting them down has no key",
        "warmup" => "lbd spreads first checks over one interval; it has no warmup",
        "smtp_alert" => "lbd sends no mail",
        "snmp_name" => "lbd has no SNMP",
        _ => "lbd has no equivalent real server setting",
    }
}

/// One `virtual_server` → a service, or `None` (and why) when lbd cannot have it.
pub(super) fn virtual_server(
    notes: &mut Notes,
    directive: &Directive,
    vips: &HashSet<IpAddr>,
) -> Option<Service> {
    let (vip, port) = match directive.args.as_slice() {
        [kind, _, ..] if kind == "fwmark" => {
            notes.skip(directive, "lbd has no firewall-mark services");
            return None;
        }
        [kind, _, ..] if kind == "group" => {
            notes.skip(
                directive,
                "lbd has no virtual_server_group; write a service per address of the group",
            );
            return None;
        }
        [address, rest @ ..] => {
            let vip = convert::address(address);
            let port = rest.first().map_or(Ok(0), |port| port.parse::<u16>());
            let (Some((vip, dropped)), Ok(port)) = (vip, port) else {
                notes.skip(directive, "not IP PORT; keepalived skips it too");
                return None;
            };
            if let Some(dropped) = dropped {
                notes.skip(directive, convert::dropped_suffix(vip, dropped));
            }
            if rest.len() > 1 {
                notes.skip(
                    directive,
                    format!(
                        "{}: keepalived ignores what follows the port",
                        rest[1..].join(" ")
                    ),
                );
            }
            (vip, port)
        }
        _ => {
            notes.skip(directive, "expects IP PORT, fwmark N or group NAME");
            return None;
        }
    };
    if let Some(problem) = convert::unusable(vip) {
        notes.skip(directive, format!("the VIP {vip} is {problem}"));
        return None;
    }
    let settings = convert::service_settings(notes, directive, vip);
    if settings.sctp {
        notes.skip(directive, "protocol SCTP: lbd balances TCP and UDP");
        return None;
    }
    let reals: Vec<RealSettings> = settings
        .reals
        .iter()
        .filter_map(|real| real_settings(notes, real, &settings))
        .collect();

    let mut defaults = Vec::new();
    let protocol = settings.protocol.unwrap_or_else(|| {
        defaults.push("protocol udp");
        Protocol::Udp
    });
    let scheduler = settings.scheduler.unwrap_or_else(|| {
        defaults.push("scheduler wlc");
        Scheduler::Wlc
    });
    // "zero port only valid for persistent services" (check_data.c): keepalived makes them so.
    let persistence = settings.persistence.or_else(|| {
        (port == 0).then(|| {
            defaults.push("persistence 360s (a service on all ports is persistent)");
            convert::DEFAULT_PERSISTENCE_S
        })
    });
    let service_method = settings.method.map(|(method, _)| method);
    let first_real_method = reals
        .iter()
        .find_map(|real| real.method)
        .map(|(method, _)| method);
    let forward = match service_method.or(first_real_method) {
        Some(method) => method.forward,
        None => {
            defaults.push("forward nat");
            Forward::Nat
        }
    };
    // The service's tunnel is its own method's, else the first tunnelled real's.
    let tunnel_method = service_method
        .filter(|method| method.forward == Forward::Tun)
        .or_else(|| {
            reals
                .iter()
                .filter_map(|real| real.method)
                .map(|(method, _)| method)
                .find(|method| method.forward == Forward::Tun)
        });
    let mut comment = format!(
        "{}: virtual_server {}",
        directive.at.place(),
        directive.args.join(" ")
    );
    if !defaults.is_empty() {
        comment.push_str(&format!(
            "\nkeepalived's defaults, spelled out: {}",
            defaults.join(", ")
        ));
    }
    let mut service = Service {
        comment,
        vip,
        port,
        protocol,
        scheduler,
        forward,
        tunnel: None,
        gue_port: None,
        sorry_server: None,
        persistence,
        persistence_netmask: settings.persistence_netmask,
        health_check: None,
        on_failure: OnFailure::Remove,
        reals: Vec::new(),
    };

    let default_method = Method {
        forward: Forward::Nat,
        tunnel: Tunnel::Ipip,
        gue_port: None,
    };
    // The settings of each real kept, in the order of `service.reals`.
    let mut kept: Vec<&RealSettings> = Vec::new();
    for real in &reals {
        let (method, method_at) = match (real.method, settings.method) {
            (Some((method, at)), _) | (None, Some((method, at))) => (method, Some(at)),
            (None, None) => (default_method, None),
        };
        if let Some(added) = add_real(notes, &mut service, real, method) {
            if method.forward == Forward::Tun && Some(method) != tunnel_method {
                notes.skip(
                    method_at.expect("a tun method is written"),
                    "lbd's tunnel and gue_port are per service; this real uses the service's",
                );
            }
            service.reals.push(added);
            kept.push(real);
        }
    }
    if service.reals.is_empty() {
        notes.skip(
            directive,
            "no real server to convert; keepalived ignores a virtual_server without one too",
        );
        return None;
    }
    fit_schedule(notes, &mut service, &kept);
    if service
        .reals
        .iter()
        .any(|real| real.forward.unwrap_or(forward) == Forward::Tun)
    {
        let tunnel = tunnel_method.unwrap_or(default_method);
        service.tunnel = Some(tunnel.tunnel);
        service.gue_port = tunnel.gue_port.filter(|_| tunnel.tunnel == Tunnel::Gue);
    }

    if let Some(sorry) = settings.sorry {
        match convert::sorry_server(sorry, &service, vips) {
            Ok((address, caveats)) => {
                service.sorry_server = Some(address);
                for caveat in caveats {
                    notes.skip(sorry, caveat);
                }
            }
            Err(reason) => notes.skip(sorry, reason),
        }
    }
    if let Some(sorry_method) = settings.sorry_method
        && !(service.sorry_server.is_some()
            && convert::sorry_method_matches(sorry_method, &service))
    {
        notes.skip(
            sorry_method,
            format!("lbd sends the sorry server the service's method ({forward})"),
        );
    }

    service.health_check = check::service_check(notes, &settings, &kept, &service, vips);
    on_failure(notes, &settings, &kept, &mut service);
    Some(service)
}

/// lbd schedules at most [`RING_SLOTS`] reals with a non-zero weight in a service, and lc
/// and wlc compare at most [`MAX_LEAST_CONN_REALS`] per new flow (keepalived has no such
/// bound): the reals beyond get weight 0 (drained), listed.
fn fit_schedule(notes: &mut Notes, service: &mut Service, reals: &[&RealSettings]) {
    let (most, why) = match service.scheduler {
        Scheduler::Lc | Scheduler::Wlc => (
            MAX_LEAST_CONN_REALS,
            format!("{} compares at most", service.scheduler.name()),
        ),
        _ => (RING_SLOTS, "a service's schedule holds at most".to_owned()),
    };
    let mut weighted = 0;
    for (real, settings) in service.reals.iter_mut().zip(reals) {
        if real.weight == 0 {
            continue;
        }
        weighted += 1;
        if weighted > most {
            real.weight = 0;
            notes.skip(
                settings.at,
                format!(
                    "lbd's {why} {most} reals with a non-zero weight; this one gets weight 0 \
                     (no new flows): split the service, or use mh or wrr for more than \
                     {MAX_LEAST_CONN_REALS}"
                ),
            );
        }
    }
}

/// `real` as lbd can have it in `service`, with `method`; `None` (and why) when it cannot.
fn add_real(
    notes: &mut Notes,
    service: &mut Service,
    real: &RealSettings,
    method: Method,
) -> Option<Real> {
    let address = real.address;
    if let Some(problem) = convert::unusable(address) {
        notes.skip(real.at, format!("{address} is {problem}"));
        return None;
    }
    if address.is_ipv4() != service.vip.is_ipv4() && method.forward.keeps_family() {
        notes.skip(
            real.at,
            "not in the VIP's address family, which only tun can cross; keepalived skips it too",
        );
        return None;
    }
    let written = real.port.filter(|&port| port != 0);
    let port = match written {
        Some(port) if port != service.port && service.port == 0 => {
            notes.skip(
                real.at,
                format!(
                    "port {port}: the service has all ports (0), so each packet keeps its port; \
                     the real has port 0"
                ),
            );
            0
        }
        Some(port) if port != service.port && !method.forward.can_change_port() => {
            notes.skip(
                real.at,
                format!(
                    "port {port}: {} passes the packet on unchanged (IPVS ignores this port too); \
                     the real has the service's port {}",
                    method.forward, service.port
                ),
            );
            service.port
        }
        Some(port) => port,
        None => service.port,
    };
    if let Some(first) = service
        .reals
        .iter()
        .position(|other| (other.address, other.port) == (address, port))
    {
        notes.skip(
            real.at,
            format!("the same real as reals[{first}] of the service; keepalived removes it too"),
        );
        return None;
    }
    Some(Real {
        address,
        port,
        weight: real.weight,
        forward: (method.forward != service.forward).then_some(method.forward),
    })
}

/// `inhibit_on_failure` of the service or its reals → `on_failure`, which lbd has per
/// service: the first real's, the others listed where they differ.
fn on_failure(
    notes: &mut Notes,
    settings: &ServiceSettings,
    reals: &[&RealSettings],
    service: &mut Service,
) {
    let inhibits = |real: &RealSettings| {
        real.inhibit
            .or(settings.inhibit)
            .is_some_and(|(inhibit, _)| inhibit)
    };
    if service.health_check.is_none() {
        let written = settings
            .inhibit
            .iter()
            .chain(reals.iter().filter_map(|real| real.inhibit.as_ref()));
        for (inhibit, at) in written {
            if *inhibit {
                notes.skip(
                    at,
                    "the service has no converted health check, and without one no real fails",
                );
            }
        }
        return;
    }
    let Some(first) = reals.first() else { return };
    let wanted = inhibits(first);
    service.on_failure = convert::on_failure(wanted);
    for real in &reals[1..] {
        if inhibits(real) != wanted {
            let at = real.inhibit.map_or(real.at, |(_, at)| at);
            notes.skip(
                at,
                format!(
                    "on_failure is per service in lbd; the service uses the first real's ({})",
                    service.on_failure
                ),
            );
        }
    }
}
