//! The mapping: keepalived's top-level blocks, `global_defs` and `virtual_server` → our
//! config; the checkers are `check.rs`'s, `vrrp_instance` and the sync daemon `vrrp.rs`'s.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use lb_common::RING_SLOTS;

use super::{
    ImportOptions, Skipped, check,
    parse::Directive,
    reals::{self, Method},
    vrrp,
    yaml::{Converted, Limits, Service, Timeouts},
};
use crate::{
    config::{Forward, OnFailure, Protocol, Scheduler, Tunnel},
    schedule::maglev,
};

/// The instance name when keepalived.conf has no `router_id`.
const DEFAULT_INSTANCE: &str = "lb";
/// The interface when neither the caller nor a `vrrp_instance` names one.
const GUESSED_INTERFACE: &str = "eth0";
/// keepalived's `persistence_timeout` without a value, with only a granularity, and for a
/// service on all ports (`IPVS_SVC_PERSISTENT_TIMEOUT`).
pub(super) const DEFAULT_PERSISTENCE_S: u32 = 360;
/// keepalived's longest `persistence_timeout` and `lvs_timeouts` (`LVS_MAX_TIMEOUT`, 31 days).
const MAX_KEEPALIVED_TIMEOUT_S: u32 = 31 * 86400;
/// Our instance names (`[A-Za-z0-9_-]{1,32}`).
const MAX_INSTANCE_LEN: usize = 32;

/// What the conversion made, and what it left out.
pub(super) struct Conversion {
    pub(super) config: Converted,
    pub(super) skipped: Vec<Skipped>,
}

/// The directives not converted, as they are found.
#[derive(Default)]
pub(super) struct Notes {
    pub(super) skipped: Vec<Skipped>,
}

impl Notes {
    pub(super) fn skip(&mut self, directive: &Directive, reason: impl Into<String>) {
        self.skipped
            .push(directive.at.skipped(&directive.keyword, reason));
    }
}

pub(super) fn convert(
    directives: &[Directive],
    source: &Path,
    options: &ImportOptions,
) -> Conversion {
    let mut notes = Notes::default();
    let mut instance = None;
    let mut timeouts = Timeouts::default();
    let mut services: Vec<Service> = Vec::new();
    let mut identities = HashSet::new();
    let mut vrrp_blocks = Vec::new();
    let mut group_blocks = Vec::new();
    let mut sync_daemon = None;
    // Every VIP, for the rule that a sorry server or a check's source is none of them.
    let vips: HashSet<IpAddr> = directives
        .iter()
        .filter(|directive| directive.keyword == "virtual_server")
        .filter_map(|directive| Some(address(directive.value()?)?.0))
        .collect();
    for directive in directives {
        match directive.keyword.as_str() {
            "global_defs" => global_defs(
                &mut notes,
                directive,
                &mut instance,
                &mut timeouts,
                &mut sync_daemon,
            ),
            "virtual_server" => {
                let Some(service) = reals::virtual_server(&mut notes, directive, &vips) else {
                    continue;
                };
                if identities.insert((service.vip, service.port, service.protocol)) {
                    services.push(service);
                } else {
                    notes.skip(
                        directive,
                        "the same address, port and protocol as an earlier virtual_server",
                    );
                }
            }
            "vrrp_instance" => vrrp_blocks.push(directive),
            "vrrp_sync_group" => group_blocks.push(directive),
            keyword => notes.skip(directive, top_level_reason(keyword)),
        }
    }

    let (instance, instance_comment) = instance.unwrap_or_else(|| {
        (
            DEFAULT_INSTANCE.to_owned(),
            "instance: keepalived.conf has no router_id (keepalived uses the host name); \
             name it"
                .to_owned(),
        )
    });
    let routers = vrrp::routers(&mut notes, &vrrp_blocks, &group_blocks, sync_daemon);
    let (interfaces, interfaces_comment) =
        interfaces(&mut notes, source, options, &routers.interfaces);
    let listed: HashSet<usize> = notes.skipped.iter().map(|entry| entry.order).collect();
    for directive in directives {
        list_unread(&mut notes, directive, &listed);
    }
    Conversion {
        config: Converted {
            source: source.display().to_string(),
            instance,
            instance_comment,
            interfaces,
            interfaces_comment,
            limits: limits(&services),
            services,
            timeouts,
            vrrp: routers.instances,
            sync: routers.sync,
        },
        skipped: notes.skipped,
    }
}

/// The map sizes `services` need where lbd's defaults are too small (keepalived has no such
/// bounds), by the rules of lbd's validator: ids start at 1, and each service's schedule
/// takes two tables.
fn limits(services: &[Service]) -> Limits {
    let defaults = crate::config::Limits::default();
    let needed = |count: u64, default: u32| {
        (count >= u64::from(default)).then(|| u32::try_from(count + 1).unwrap_or(u32::MAX))
    };
    let reals: u64 = services
        .iter()
        .map(|service| service.reals.len() as u64 + u64::from(service.sorry_server.is_some()))
        .sum();
    let slots: u64 = services
        .iter()
        .map(|service| {
            let capacity = match service.scheduler {
                Scheduler::Rr | Scheduler::Wrr | Scheduler::Sh => RING_SLOTS,
                Scheduler::Mh => maglev::DEFAULT_TABLE_SIZE,
                Scheduler::Lc | Scheduler::Wlc => {
                    let weighted = service.reals.iter().filter(|real| real.weight > 0).count();
                    2 * weighted.max(1) as u32
                }
            };
            2 * u64::from(capacity)
        })
        .sum();
    Limits {
        services: needed(services.len() as u64, defaults.services),
        reals: needed(reals, defaults.reals),
        table_slots: needed(slots, defaults.table_slots),
    }
}

/// Lists what sits in a block nobody read (a block after a directive that takes none),
/// below `directive` unless it is listed whole (its order is in `listed`).
fn list_unread(notes: &mut Notes, directive: &Directive, listed: &HashSet<usize>) {
    if listed.contains(&directive.at.order) {
        return;
    }
    for child in directive.block.iter().flatten() {
        if child.read.get() {
            list_unread(notes, child, listed);
        } else {
            notes.skip(
                child,
                "inside a block keepalived does not read there (or lbadm import-keepalived \
                 does not know); nothing in it is converted",
            );
        }
    }
}

/// The caller's interfaces, else the VRRP instances' (`vrrp_interfaces`), else a guess that
/// is listed.
fn interfaces(
    notes: &mut Notes,
    source: &Path,
    options: &ImportOptions,
    vrrp_interfaces: &[String],
) -> (Vec<String>, String) {
    if !options.interfaces.is_empty() {
        let mut names: Vec<String> = Vec::new();
        for name in &options.interfaces {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        return (
            names,
            "interfaces: as given to lbadm import-keepalived".to_owned(),
        );
    }
    if !vrrp_interfaces.is_empty() {
        return (
            vrrp_interfaces.to_vec(),
            "interfaces: those of the vrrp_instances; the XDP program attaches where VIP \
             traffic arrives"
                .to_owned(),
        );
    }
    notes.skipped.push(Skipped {
        order: usize::MAX,
        unconverted: super::Unconverted {
            file: source.to_owned(),
            line: 0,
            directive: "interfaces".to_owned(),
            reason: format!(
                "keepalived.conf names no interface for lbd (no vrrp_instance) and none was \
                 given; the YAML guesses {GUESSED_INTERFACE}: check it"
            ),
        },
    });
    (
        vec![GUESSED_INTERFACE.to_owned()],
        format!("interfaces: a guess ({GUESSED_INTERFACE}); set where VIP traffic arrives"),
    )
}

fn global_defs<'d>(
    notes: &mut Notes,
    block: &'d Directive,
    instance: &mut Option<(String, String)>,
    timeouts: &mut Timeouts,
    sync_daemon: &mut Option<&'d Directive>,
) {
    for directive in block.children() {
        match directive.keyword.as_str() {
            "router_id" => match directive.value() {
                Some(router_id) => {
                    let name = instance_name(router_id);
                    let comment = if name == router_id {
                        "instance: keepalived's router_id".to_owned()
                    } else {
                        format!("instance: keepalived's router_id {router_id}, made a valid name")
                    };
                    *instance = Some((name, comment));
                }
                None => notes.skip(directive, "router_id has no value"),
            },
            "lvs_timeouts" => {
                let (values, problems) = lvs_timeouts(&directive.args);
                for problem in problems {
                    notes.skip(directive, problem);
                }
                let merge = |ours: &mut Option<u32>, theirs: Option<u32>| {
                    if theirs.is_some() {
                        *ours = theirs.filter(|&seconds| seconds != 0);
                    }
                };
                merge(&mut timeouts.tcp, values.tcp);
                merge(&mut timeouts.tcp_fin, values.tcp_fin);
                merge(&mut timeouts.udp, values.udp);
            }
            // `lvs_sync_daemon INTERFACE VRRP_INSTANCE [options]`.
            "lvs_sync_daemon" if directive.args.len() >= 2 && sync_daemon.is_none() => {
                *sync_daemon = Some(directive);
            }
            "lvs_sync_daemon" if sync_daemon.is_none() => notes.skip(
                directive,
                "needs an interface and a vrrp_instance; keepalived ignores it too",
            ),
            "vrrp_version" if directive.value() == Some("3") => {}
            keyword => notes.skip(directive, global_reason(keyword)),
        }
    }
}

/// `router_id` as an instance name: `[A-Za-z0-9_-]`, at most 32 characters.
fn instance_name(router_id: &str) -> String {
    let name = valid_name(router_id);
    if name.is_empty() {
        DEFAULT_INSTANCE.to_owned()
    } else {
        name
    }
}

/// `text` as lbd's names (`instance`, a vrrp instance's `name`) are written: a character
/// outside `A-Za-z0-9_-` becomes `-`, and at most 32 are kept.
pub(super) fn valid_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_INSTANCE_LEN)
        .collect()
}

/// `tcp N tcpfin N udp N`, in any order and subset, each option read alone as keepalived
/// reads it (one it does not know is skipped, a value beyond 31 days ignored). A 0 (keep
/// the kernel's) comes back as `Some(0)`; the problems come back to be listed.
fn lvs_timeouts(args: &[String]) -> (Timeouts, Vec<String>) {
    let mut timeouts = Timeouts::default();
    let mut problems = Vec::new();
    if args.len() < 2 {
        problems.push("needs an option and its value; keepalived ignores it too".to_owned());
        return (timeouts, problems);
    }
    let mut words = args.iter();
    while let Some(name) = words.next() {
        let slot = match name.as_str() {
            "tcp" => &mut timeouts.tcp,
            "tcpfin" => &mut timeouts.tcp_fin,
            "udp" => &mut timeouts.udp,
            other => {
                problems.push(format!(
                    "unknown option {other:?} (tcp, tcpfin or udp); keepalived skips it too"
                ));
                continue;
            }
        };
        let Some(value) = words.next() else {
            problems.push(format!("{name} has no value; keepalived ignores it too"));
            break;
        };
        match value.parse::<u32>() {
            Ok(seconds) if seconds <= MAX_KEEPALIVED_TIMEOUT_S => *slot = Some(seconds),
            _ => problems.push(format!(
                "{name} {value}: not a number of seconds up to {MAX_KEEPALIVED_TIMEOUT_S} (31 \
                 days); keepalived ignores it too"
            )),
        }
    }
    (timeouts, problems)
}

/// keepalived's timers: seconds, with a fraction (`delay_loop 1.5`). lbd keeps milliseconds.
pub(super) fn seconds(text: &str) -> Option<Duration> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
        || fraction.len() > 3 && fraction[3..].chars().any(|c| c != '0')
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let millis: u64 = format!("{:0<3}", &fraction[..fraction.len().min(3)])
        .parse()
        .ok()?;
    Some(Duration::from_secs(whole) + Duration::from_millis(millis))
}

/// An address as keepalived's `inet_stosockaddr` reads it (virtual, real and sorry servers,
/// `connect_ip`, `bindto`): a range (`-…`), else a mask (`/…`), after it is dropped. Also
/// returns what was dropped, for the note.
pub(super) fn address(text: &str) -> Option<(IpAddr, Option<&str>)> {
    let cut = text.find('-').or_else(|| text.find('/'));
    let (address, dropped) = match cut {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (text, None),
    };
    // keepalived takes the family from a `:` anywhere in what is written.
    let address: IpAddr = address.parse().ok()?;
    (address.is_ipv6() == text.contains(':')).then_some((address, dropped))
}

/// The note for what [`address`] dropped.
pub(super) fn dropped_suffix(address: IpAddr, dropped: &str) -> String {
    format!(
        "{dropped} after {address}: keepalived ignores a range or mask here, and so does the \
         YAML"
    )
}

/// Why our validator would refuse `address` for a VIP or a server (the same rules).
pub(super) fn unusable(address: IpAddr) -> Option<&'static str> {
    let reason = match address {
        _ if address.is_unspecified() => "the unspecified address",
        _ if address.is_multicast() => "a multicast address",
        _ if address.is_loopback() => "a loopback address",
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => "the broadcast address",
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => "an IPv4-mapped IPv6 address",
        IpAddr::V6(v6) if v6.is_unicast_link_local() => "an IPv6 link-local address",
        _ => return None,
    };
    Some(reason)
}

/// The service-wide settings of one `virtual_server` block, before its reals.
pub(super) struct ServiceSettings<'d> {
    pub(super) protocol: Option<Protocol>,
    /// `protocol SCTP`: the service cannot be converted.
    pub(super) sctp: bool,
    pub(super) scheduler: Option<Scheduler>,
    pub(super) method: Option<(Method, &'d Directive)>,
    pub(super) persistence: Option<u32>,
    pub(super) persistence_netmask: Option<u8>,
    /// The weight of its reals that have none of their own.
    pub(super) weight: Option<u32>,
    pub(super) timing: check::Timing<'d>,
    pub(super) inhibit: Option<(bool, &'d Directive)>,
    pub(super) sorry: Option<&'d Directive>,
    pub(super) sorry_method: Option<&'d Directive>,
    pub(super) virtualhost: Option<String>,
    pub(super) reals: Vec<&'d Directive>,
}

/// Reads the service-wide directives of `block`; the reals are only collected.
pub(super) fn service_settings<'d>(
    notes: &mut Notes,
    block: &'d Directive,
    vip: IpAddr,
) -> ServiceSettings<'d> {
    let mut settings = ServiceSettings {
        protocol: None,
        sctp: false,
        scheduler: None,
        method: None,
        persistence: None,
        persistence_netmask: None,
        weight: None,
        timing: check::Timing::default(),
        inhibit: None,
        sorry: None,
        sorry_method: None,
        virtualhost: None,
        reals: Vec::new(),
    };
    for directive in block.children() {
        if settings.timing.read(notes, directive, false) {
            continue;
        }
        let value = directive.value().unwrap_or_default();
        match directive.keyword.as_str() {
            "real_server" => settings.reals.push(directive),
            "protocol" => match value.to_ascii_uppercase().as_str() {
                "TCP" => settings.protocol = Some(Protocol::Tcp),
                "UDP" => settings.protocol = Some(Protocol::Udp),
                // The virtual_server is listed whole.
                "SCTP" => settings.sctp = true,
                _ => notes.skip(
                    directive,
                    format!(
                        "unknown protocol {value:?}; keepalived ignores it too (the service is UDP)"
                    ),
                ),
            },
            "lvs_sched" | "lb_algo" => match value.parse::<Scheduler>() {
                Ok(scheduler) => settings.scheduler = Some(scheduler),
                Err(_) => notes.skip(
                    directive,
                    format!(
                        "lbd has no {value:?} scheduler (it has rr, wrr, lc, wlc, sh, mh); the \
                         service uses wlc, keepalived's default"
                    ),
                ),
            },
            "lvs_method" | "lb_kind" => {
                let previous = settings.method.map(|(method, _)| method);
                match reals::method(&directive.args, previous) {
                    Ok((method, caveat)) => {
                        settings.method = Some((method, directive));
                        if let Some(caveat) = caveat {
                            notes.skip(directive, caveat);
                        }
                    }
                    Err(reason) => notes.skip(directive, reason),
                }
            }
            "persistence_timeout" => match directive.args.as_slice() {
                [] => settings.persistence = Some(DEFAULT_PERSISTENCE_S),
                [seconds] => match seconds.parse::<u32>() {
                    Ok(seconds) if (1..=MAX_KEEPALIVED_TIMEOUT_S).contains(&seconds) => {
                        settings.persistence = Some(seconds);
                    }
                    _ => notes.skip(
                        directive,
                        format!(
                            "{seconds:?} is not a number of seconds from 1 to \
                             {MAX_KEEPALIVED_TIMEOUT_S} (31 days); keepalived ignores it too"
                        ),
                    ),
                },
                _ => notes.skip(directive, "takes one number of seconds"),
            },
            "persistence_granularity" => match granularity(value, vip) {
                Ok(prefix) => {
                    let full = if vip.is_ipv4() { 32 } else { 128 };
                    settings.persistence_netmask = (prefix != full).then_some(prefix);
                    settings.persistence.get_or_insert(DEFAULT_PERSISTENCE_S);
                }
                Err(reason) => notes.skip(directive, reason),
            },
            // keepalived's handler at this level ignores its argument (check_parser.c).
            "inhibit_on_failure" => {
                settings.inhibit = Some((true, directive));
                if on_off(directive) != Some(true) {
                    notes.skip(
                        directive,
                        format!(
                            "{value:?}: keepalived ignores the argument in a virtual_server, and \
                             inhibits; so does the YAML"
                        ),
                    );
                }
            }
            "weight" => {
                let weight = reals::weight(notes, directive, 1, "each real without a weight");
                settings.weight = weight.or(settings.weight);
            }
            "sorry_server" => settings.sorry = Some(directive),
            "sorry_server_lvs_method" => settings.sorry_method = Some(directive),
            "virtualhost" if !value.is_empty() => settings.virtualhost = Some(value.to_owned()),
            // It only restates the VIP's family.
            "ip_family"
                if matches!(
                    (value, vip),
                    ("inet", IpAddr::V4(_)) | ("inet6", IpAddr::V6(_))
                ) => {}
            keyword => notes.skip(directive, service_reason(keyword)),
        }
    }
    settings
}

/// `inhibit_on_failure [on|off|true|false|yes|no]`.
pub(super) fn on_off(directive: &Directive) -> Option<bool> {
    match directive.value() {
        None | Some("on" | "true" | "yes") => Some(true),
        Some("off" | "false" | "no") => Some(false),
        Some(_) => None,
    }
}

/// `persistence_granularity`: an IPv4 netmask, or for IPv6 a prefix length → the prefix.
fn granularity(value: &str, vip: IpAddr) -> Result<u8, String> {
    if vip.is_ipv6() {
        return value
            .parse::<u8>()
            .ok()
            .filter(|prefix| (1..=128).contains(prefix))
            .ok_or_else(|| format!("{value:?} is not an IPv6 prefix length (1 to 128)"));
    }
    let mask: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("{value:?} is not an IPv4 netmask"))?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 || bits == 0 {
        return Err(format!(
            "{value} is not a contiguous netmask; lbd's persistence_netmask is a prefix"
        ));
    }
    Ok(bits.leading_ones() as u8)
}

/// `sorry_server IP [PORT]` for a service, and what of it is not converted; or why not.
pub(super) fn sorry_server(
    directive: &Directive,
    service: &Service,
    vips: &HashSet<IpAddr>,
) -> Result<(SocketAddr, Vec<String>), String> {
    let mut caveats = Vec::new();
    let (address, dropped) = directive
        .value()
        .and_then(address)
        .ok_or("not an IP address")?;
    if let Some(dropped) = dropped {
        caveats.push(dropped_suffix(address, dropped));
    }
    if let Some(problem) = unusable(address) {
        return Err(format!("{address} is {problem}"));
    }
    if vips.contains(&address) {
        return Err(format!(
            "{address} is a VIP; packets sent on to a VIP would come back to the balancer"
        ));
    }
    if address.is_ipv4() != service.vip.is_ipv4() && service.forward.keeps_family() {
        return Err(format!(
            "{address} is not in the VIP's address family, which {} needs",
            service.forward
        ));
    }
    // The rules of a real's port (`reals::add_real`), in the same order.
    let port = match directive.args.get(1).map(|text| text.parse::<u16>()) {
        None | Some(Ok(0)) => service.port,
        Some(Ok(port)) if port != service.port && service.port == 0 => {
            caveats.push(format!(
                "port {port}: the service has all ports (0), so each packet keeps its port; \
                 the sorry server has port 0"
            ));
            0
        }
        Some(Ok(port)) if port != service.port && !service.forward.can_change_port() => {
            caveats.push(format!(
                "port {port}: {} passes the packet on unchanged (keepalived resets the port \
                 too); the sorry server has the service's port {}",
                service.forward, service.port
            ));
            service.port
        }
        Some(Ok(port)) => port,
        Some(Err(_)) => return Err("not a port; keepalived skips the sorry server too".to_owned()),
    };
    if service
        .reals
        .iter()
        .any(|real| (real.address, real.port) == (address, port))
    {
        return Err("it is also a real server of the service".to_owned());
    }
    Ok((SocketAddr::new(address, port), caveats))
}

/// `sorry_server_lvs_method`: converted only when it is the service's own.
pub(super) fn sorry_method_matches(directive: &Directive, service: &Service) -> bool {
    matches!(reals::method(&directive.args, None), Ok((method, None))
        if method.forward == service.forward
            && (method.forward != Forward::Tun
                || Some(method.tunnel) == service.tunnel.or(Some(Tunnel::Ipip))
                    && method.gue_port == service.gue_port))
}

/// What `on_failure` the service gets, from `inhibit_on_failure`s.
pub(super) fn on_failure(inhibit: bool) -> OnFailure {
    if inhibit {
        OnFailure::Inhibit
    } else {
        OnFailure::Remove
    }
}

fn top_level_reason(keyword: &str) -> String {
    match keyword {
        "virtual_server_group" => {
            "lbd has no virtual server groups; write a service per address".to_owned()
        }
        "vrrp_script" | "vrrp_track_process" | "track_file" => {
            "lbd runs no scripts or trackers to adjust VRRP priorities".to_owned()
        }
        "static_ipaddress" | "static_routes" | "static_rules" => {
            "lbd does not manage the host's addresses and routes; configure them with the \
             system"
                .to_owned()
        }
        "SSL" => "lbd has no TLS health checks".to_owned(),
        "bfd_instance" => "lbd has no BFD".to_owned(),
        "linkbeat_interfaces" | "net_namespace" | "instance" | "use_pid_dir" => {
            "a keepalived process setting; lbd has no equivalent".to_owned()
        }
        _ => "lbadm import-keepalived does not know this directive".to_owned(),
    }
}

fn global_reason(keyword: &str) -> String {
    let reason = if keyword.starts_with("notification_email")
        || keyword.starts_with("smtp_")
        || keyword == "email_faults"
    {
        "lbd sends no mail"
    } else if keyword == "lvs_sync_daemon" {
        "keepalived runs one sync daemon, the first configured; it ignores this one too"
    } else if keyword == "vrrp_version" {
        "lbd speaks VRRPv3 only, so its peer must too"
    } else if keyword.starts_with("vrrp_") || keyword.starts_with("garp_") {
        "lbd's VRRP has no such setting"
    } else if keyword == "script_user" || keyword == "enable_script_security" {
        "lbd runs no keepalived scripts"
    } else if keyword.starts_with("lvs_flush") {
        "lbd replaces its own services at start; it leaves IPVS alone"
    } else {
        "lbd has no equivalent global setting"
    };
    reason.to_owned()
}

fn service_reason(keyword: &str) -> String {
    let reason = match keyword {
        "alpha" => "lbd starts reals up (keepalived without alpha); starting them down has no key",
        "omega" | "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => {
            "lbd has no quorum for a service"
        }
        "smtp_alert" => "lbd sends no mail",
        "ha_suspend" => {
            "lbd checks the reals whatever its VRRP state, so that a backup takes over \
             knowing which are up"
        }
        "persistence_engine" => "lbd has no persistence engines (SIP)",
        "hashed" | "ops" | "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback"
        | "mh-port" | "mh-fallback" => "lbd's schedulers take no IPVS flags",
        "warmup" => "lbd spreads first checks over one interval; it has no warmup",
        "sorry_server_inhibit" => "lbd removes a sorry server's flows; it has no inhibit for it",
        "ip_family" => "it contradicts the VIP's address family",
        "snmp_name" => "lbd has no SNMP",
        "fwmark" => "lbd has no firewall-mark services",
        _ => "lbd has no equivalent service setting",
    };
    reason.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_in_seconds() {
        assert_eq!(seconds("6"), Some(Duration::from_secs(6)));
        assert_eq!(seconds("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(seconds("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(seconds(".1"), Some(Duration::from_millis(100)));
        assert_eq!(seconds("2.0000"), Some(Duration::from_secs(2)));
        assert_eq!(seconds("0.0001"), None);
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("5s"), None);
        assert_eq!(seconds("."), None);
    }

    #[test]
    fn router_id_becomes_an_instance_name() {
        assert_eq!(instance_name("LVS_DEVEL"), "LVS_DEVEL");
        assert_eq!(instance_name("lb1.example.com"), "lb1-example-com");
        assert_eq!(instance_name(&"x".repeat(40)), "x".repeat(32));
    }

    #[test]
    fn lvs_timeouts_options_are_read_alone() {
        let read = |text: &str| {
            let args: Vec<String> = text.split(' ').map(String::from).collect();
            lvs_timeouts(&args)
        };
        let (timeouts, problems) = read("udp 30 tcp 900");
        assert_eq!(
            timeouts,
            Timeouts {
                tcp: Some(900),
                tcp_fin: None,
                udp: Some(30)
            }
        );
        assert!(problems.is_empty());
        // keepalived skips an unknown word and reads on.
        let (timeouts, problems) = read("tcp 900 sctp 5 udp 30");
        assert_eq!((timeouts.tcp, timeouts.udp), (Some(900), Some(30)));
        assert_eq!(problems.len(), 2, "sctp and 5: {problems:?}");
        let (timeouts, problems) = read("tcp 2678401 udp 2678400 tcpfin");
        assert_eq!((timeouts.tcp, timeouts.udp), (None, Some(2_678_400)));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(read("tcp").1.len(), 1);
    }

    #[test]
    fn granularity_is_a_prefix() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(granularity("255.255.255.0", v4), Ok(24));
        assert!(granularity("255.0.255.0", v4).is_err());
        assert_eq!(granularity("64", v6), Ok(64));
        assert!(granularity("129", v6).is_err());
    }
}
