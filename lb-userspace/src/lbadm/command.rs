//! ipvsadm's options → one [`Command`], checked as ipvsadm checks them: exactly one command,
//! each option allowed with it or not (ipvsadm's `commands_v_options` table), required
//! options present, and addresses, ports, weights and timeouts well formed. Every refusal is
//! a [`Failure::Usage`] (exit status 2) in ipvsadm's words, naming the argument.

use std::net::{IpAddr, Ipv6Addr};

use super::{Failure, cli::IpvsadmArgs};
use crate::config::{Protocol, edit::ServiceRef};

/// What one ipvsadm command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    AddService(ServiceRule),
    EditService(ServiceRule),
    DeleteService(ServiceRef),
    AddReal(RealRule),
    EditReal(RealRule),
    DeleteReal(RealRule),
    Clear,
    Zero(Option<ServiceRef>),
    /// `--set TCP TCPFIN UDP`, in seconds; `None` (0 on the command line) keeps a timeout.
    SetTimeouts([Option<u64>; 3]),
    Save,
    Restore,
    List(ListOptions),
}

/// `-A`/`-E`: the service and the options given for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRule {
    pub service: ServiceRef,
    pub scheduler: Option<String>,
    /// `-p [SECONDS]`.
    pub persistent_s: Option<u64>,
    /// `-M`, as given (dotted for IPv4, a prefix length for IPv6).
    pub netmask: Option<String>,
    pub extra: ServiceExtras,
}

/// Our options for what ipvsadm cannot say, as given (`none` removes a key with -E).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceExtras {
    pub forward: Option<String>,
    pub tunnel: Option<String>,
    pub gue_port: Option<String>,
    pub snat_pool: Option<String>,
    pub tunnel_source: Option<String>,
    pub mh_table_size: Option<String>,
    pub check: Option<String>,
    pub on_failure: Option<String>,
    pub sorry_server: Option<String>,
}

impl ServiceExtras {
    fn given(&self) -> Option<&'static str> {
        let options = [
            (&self.forward, "--forward"),
            (&self.tunnel, "--tunnel"),
            (&self.gue_port, "--gue-port"),
            (&self.snat_pool, "--snat-pool"),
            (&self.tunnel_source, "--tunnel-source"),
            (&self.mh_table_size, "--mh-table-size"),
            (&self.check, "--check"),
            (&self.on_failure, "--on-failure"),
            (&self.sorry_server, "--sorry-server"),
        ];
        options
            .iter()
            .find(|(value, _)| value.is_some())
            .map(|(_, name)| *name)
    }
}

/// `-a`/`-e`/`-d`: the real of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct RealRule {
    pub service: ServiceRef,
    pub address: IpAddr,
    /// `None`: `-r` gave no port (the service's is used, as ipvsadm does).
    pub port: Option<u16>,
    /// `dr`, `tun`, `nat` (from -g, -i, -m) or `fullnat` (--forward).
    pub forward: Option<&'static str>,
    pub weight: Option<u32>,
}

impl RealRule {
    /// The real's port: its own, or the service's when -r gave none, or when direct routing
    /// or tunnelling was asked for (they cannot change the port; ipvsadm quietly uses the
    /// service's).
    pub fn port(&self) -> u16 {
        match (self.forward, self.port) {
            (Some("dr" | "tun"), _) | (_, None) => self.service.port,
            (_, Some(port)) => port,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListKind {
    #[default]
    Services,
    Stats,
    Rate,
    Thresholds,
    Connections,
    Timeouts,
    Daemons,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOptions {
    pub kind: ListKind,
    pub service: Option<ServiceRef>,
    pub exact: bool,
    pub sort: bool,
}

/// ipvsadm's option names, in its table's order, for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Exact,
    Extras,
    Watch,
}

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::Timeout => "timeout",
            Opt::Daemon => "daemon",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::Exact => "exact",
            Opt::Extras => "lbd's service options",
            Opt::Watch => "watch",
        }
    }
}

/// How an option goes with a command (ipvsadm's table: `+` required, ` ` allowed, `x` not,
/// `1` at most one of its kind).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    Required,
    Optional,
    No,
    OneOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Delete,
    Flush,
    List,
    AddServer,
    DeleteServer,
    EditServer,
    Set,
    Restore,
    Save,
    Zero,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Delete => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddServer => "add-server",
            Cmd::DeleteServer => "delete-server",
            Cmd::EditServer => "edit-server",
            Cmd::Set => "set",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
        }
    }

    fn allows(self, option: Opt) -> Allowed {
        use Allowed::*;
        use Opt::*;
        match (self, option) {
            (Cmd::Add | Cmd::Edit, Service) => Required,
            (Cmd::Add | Cmd::Edit, Scheduler | Persistent | Netmask | Extras) => Optional,
            (Cmd::Delete, Service) => Required,
            (Cmd::List, Numeric | Stats | Rate | Thresholds | NoSort | Exact | Watch) => Optional,
            (Cmd::List, Connection | Service | Timeout | Daemon) => OneOf,
            (Cmd::AddServer | Cmd::EditServer, Service | Server) => Required,
            (Cmd::AddServer | Cmd::EditServer, Forward | Weight | UThreshold | LThreshold) => {
                Optional
            }
            (Cmd::DeleteServer, Service | Server) => Required,
            (Cmd::Save, Numeric) => Optional,
            (Cmd::Zero, Service) => Optional,
            _ => No,
        }
    }
}

/// The one command `args` asks for, checked.
pub fn command(args: &IpvsadmArgs) -> Result<Command, Failure> {
    refuse_unsupported(args)?;
    let cmd = which_command(args)?;
    let given = given_options(args, Some(cmd));
    check_options(cmd, &given)?;
    if cmd == Cmd::List {
        check_list_formats(args)?;
    }
    let service = service_of(args)?;
    let need_service = || service.expect("the table requires -t or -u");
    Ok(match cmd {
        Cmd::Add | Cmd::Edit => {
            let rule = ServiceRule {
                service: need_service(),
                scheduler: args.scheduler.clone(),
                persistent_s: args
                    .persistent
                    .as_deref()
                    .map(|text| timeout(text, 1, "persistent"))
                    .transpose()?,
                netmask: args.netmask.clone(),
                extra: extras(args),
            };
            if cmd == Cmd::Add {
                Command::AddService(rule)
            } else {
                Command::EditService(rule)
            }
        }
        Cmd::Delete => Command::DeleteService(need_service()),
        Cmd::AddServer | Cmd::EditServer | Cmd::DeleteServer => {
            let rule = real_rule(args, need_service())?;
            match cmd {
                Cmd::AddServer => Command::AddReal(rule),
                Cmd::EditServer => Command::EditReal(rule),
                _ => Command::DeleteReal(rule),
            }
        }
        Cmd::Flush => Command::Clear,
        Cmd::Zero => Command::Zero(service),
        Cmd::Set => Command::SetTimeouts(set_timeouts(args)?),
        Cmd::Save => Command::Save,
        Cmd::Restore => Command::Restore,
        Cmd::List => Command::List(ListOptions {
            kind: list_kind(args),
            service,
            exact: args.exact,
            sort: !args.nosort,
        }),
    })
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

fn refuse_unsupported(args: &IpvsadmArgs) -> Result<(), Failure> {
    if args.fwmark_service.is_some() || args.ipv6 {
        return Err(usage(
            "-f: firewall-mark services are not supported by lbd (use -t or -u VIP:PORT, or \
             port 0 for every port of a VIP)",
        ));
    }
    if args.start_daemon.is_some()
        || args.stop_daemon.is_some()
        || args.mcast_interface.is_some()
        || args.syncid.is_some()
    {
        return Err(usage(
            "--start-daemon/--stop-daemon: connection sync is set in lbd's config (`sync:`), \
             not started by lbadm",
        ));
    }
    if args.pe.is_some() {
        return Err(usage("--pe: lbd has no persistence engines"));
    }
    if args.ops {
        return Err(usage(
            "--ops: one-packet scheduling is not supported (lbd schedules UDP by flow)",
        ));
    }
    if args.persistent_conn {
        return Err(usage(
            "--persistent-conn: lbd does not count persistent connections per real",
        ));
    }
    for (value, name) in [(&args.u_threshold, "-x"), (&args.l_threshold, "-y")] {
        if let Some(text) = value
            && text != "0"
        {
            return Err(usage(format!(
                "{name} {text}: connection thresholds are not supported (only 0, none)"
            )));
        }
    }
    Ok(())
}

fn which_command(args: &IpvsadmArgs) -> Result<Cmd, Failure> {
    let commands = [
        (args.add_service, Cmd::Add),
        (args.edit_service, Cmd::Edit),
        (args.delete_service, Cmd::Delete),
        (args.clear, Cmd::Flush),
        (args.list, Cmd::List),
        (args.add_server, Cmd::AddServer),
        (args.delete_server, Cmd::DeleteServer),
        (args.edit_server, Cmd::EditServer),
        (args.set.is_some(), Cmd::Set),
        (args.restore, Cmd::Restore),
        (args.save, Cmd::Save),
        (args.zero, Cmd::Zero),
    ];
    let mut chosen = commands.iter().filter(|(given, _)| *given).map(|(_, c)| *c);
    match (chosen.next(), chosen.next()) {
        (Some(cmd), None) => Ok(cmd),
        (Some(_), Some(_)) => Err(usage("multiple commands specified")),
        // ipvsadm with no arguments lists the table; with options alone it asks for one.
        (None, _) if given_options(args, None).is_empty() => Ok(Cmd::List),
        (None, _) => Err(Failure::Syntax(
            "no command specified (one of -A -E -D -C -a -e -d -L -Z -S -R --set; see --help)"
                .into(),
        )),
    }
}

fn given_options(args: &IpvsadmArgs, cmd: Option<Cmd>) -> Vec<Opt> {
    let switches = args.gatewaying || args.ipip || args.masquerading;
    let service = args.tcp_service.is_some() || args.udp_service.is_some();
    // --forward is a real's method with -a/-e/-d, one of our service options otherwise.
    let for_real = matches!(
        cmd,
        Some(Cmd::AddServer | Cmd::EditServer | Cmd::DeleteServer)
    );
    let (forward, extras) = if for_real {
        (
            switches || args.forward.is_some(),
            ServiceExtras {
                forward: None,
                ..extras(args)
            },
        )
    } else {
        (switches, extras(args))
    };
    let given = [
        (args.numeric, Opt::Numeric),
        (args.connection, Opt::Connection),
        (service, Opt::Service),
        (args.scheduler.is_some(), Opt::Scheduler),
        (args.persistent.is_some(), Opt::Persistent),
        (args.netmask.is_some(), Opt::Netmask),
        (args.real_server.is_some(), Opt::Server),
        (forward, Opt::Forward),
        (args.weight.is_some(), Opt::Weight),
        (args.u_threshold.is_some(), Opt::UThreshold),
        (args.l_threshold.is_some(), Opt::LThreshold),
        (args.timeout, Opt::Timeout),
        (args.daemon, Opt::Daemon),
        (args.stats, Opt::Stats),
        (args.rate, Opt::Rate),
        (args.thresholds, Opt::Thresholds),
        (args.nosort, Opt::NoSort),
        (args.exact, Opt::Exact),
        (extras.given().is_some(), Opt::Extras),
        (args.watch || args.count.is_some(), Opt::Watch),
    ];
    given
        .iter()
        .filter(|(given, _)| *given)
        .map(|(_, option)| *option)
        .collect()
}

fn check_options(cmd: Cmd, given: &[Opt]) -> Result<(), Failure> {
    let all = [
        Opt::Numeric,
        Opt::Connection,
        Opt::Service,
        Opt::Scheduler,
        Opt::Persistent,
        Opt::Netmask,
        Opt::Server,
        Opt::Forward,
        Opt::Weight,
        Opt::UThreshold,
        Opt::LThreshold,
        Opt::Timeout,
        Opt::Daemon,
        Opt::Stats,
        Opt::Rate,
        Opt::Thresholds,
        Opt::PersistentConn,
        Opt::NoSort,
        Opt::Exact,
        Opt::Extras,
        Opt::Watch,
    ];
    let mut one_of: Option<Opt> = None;
    for option in all {
        let allowed = cmd.allows(option);
        let present = given.contains(&option);
        match (allowed, present) {
            (Allowed::Required, false) => {
                return Err(usage(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    option.name(),
                    cmd.name()
                )));
            }
            (Allowed::No, true) => {
                return Err(usage(format!(
                    "Illegal '{}' option with the '{}' command",
                    option.name(),
                    cmd.name()
                )));
            }
            (Allowed::OneOf, true) => {
                if let Some(first) = one_of {
                    return Err(usage(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        option.name(),
                        first.name(),
                        cmd.name()
                    )));
                }
                one_of = Some(option);
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_list_formats(args: &IpvsadmArgs) -> Result<(), Failure> {
    // Several of --stats, --rate, --thresholds: the first wins, as in ipvsadm.
    let formats = [args.stats, args.rate, args.thresholds];
    if (args.connection || args.timeout || args.daemon) && formats.contains(&true) {
        return Err(usage("options conflicts in the list command"));
    }
    let watching = args.watch || args.count.is_some();
    if watching && !(args.stats || args.rate) {
        return Err(usage(
            "--watch redraws -L --rate or -L --stats: give one of them",
        ));
    }
    if watching && args.output == super::cli::Output::Json {
        return Err(usage(
            "--watch redraws a table; for JSON, run -L -o json as often as needed",
        ));
    }
    Ok(())
}

fn list_kind(args: &IpvsadmArgs) -> ListKind {
    if args.connection {
        ListKind::Connections
    } else if args.timeout {
        ListKind::Timeouts
    } else if args.daemon {
        ListKind::Daemons
    } else if args.stats {
        ListKind::Stats
    } else if args.rate {
        ListKind::Rate
    } else if args.thresholds {
        ListKind::Thresholds
    } else {
        ListKind::Services
    }
}

fn extras(args: &IpvsadmArgs) -> ServiceExtras {
    ServiceExtras {
        forward: args.forward.clone(),
        tunnel: args.tunnel.clone(),
        gue_port: args.gue_port.clone(),
        snat_pool: args.snat_pool.clone(),
        tunnel_source: args.tunnel_source.clone(),
        mh_table_size: args.mh_table_size.clone(),
        check: args.check.clone(),
        on_failure: args.on_failure.clone(),
        sorry_server: args.sorry_server.clone(),
    }
}

fn service_of(args: &IpvsadmArgs) -> Result<Option<ServiceRef>, Failure> {
    let (protocol, flag, text) = match (&args.tcp_service, &args.udp_service) {
        (Some(_), Some(_)) => return Err(usage("multiple 'service-address' options specified")),
        (Some(text), None) => (Protocol::Tcp, "-t", text),
        (None, Some(text)) => (Protocol::Udp, "-u", text),
        (None, None) => return Ok(None),
    };
    let (vip, port) = address_port(text, protocol).ok_or_else(|| {
        usage(format!(
            "{flag} {text}: illegal virtual server address[:port] specified (VIP:PORT, \
             [IPv6]:PORT, or a bare address for port 0)"
        ))
    })?;
    Ok(Some(ServiceRef {
        protocol,
        vip,
        port: port.unwrap_or(0),
    }))
}

fn real_rule(args: &IpvsadmArgs, service: ServiceRef) -> Result<RealRule, Failure> {
    let text = args.real_server.as_deref().unwrap_or_default();
    let (address, port) = address_port(text, service.protocol).ok_or_else(|| {
        usage(format!(
            "-r {text}: illegal real server address[:port] specified (RIP, RIP:PORT or \
             [IPv6]:PORT)"
        ))
    })?;
    let forward = match (
        args.gatewaying,
        args.ipip,
        args.masquerading,
        args.forward.as_deref(),
    ) {
        (false, false, false, None) => None,
        (true, false, false, None) => Some("dr"),
        (false, true, false, None) => Some("tun"),
        (false, false, true, None) => Some("nat"),
        (false, false, false, Some(method)) => Some(match method {
            "dr" => "dr",
            "tun" => "tun",
            "nat" => "nat",
            "fullnat" => "fullnat",
            other => {
                return Err(usage(format!(
                    "--forward {other}: unknown method (dr, tun, nat or fullnat)"
                )));
            }
        }),
        _ => return Err(usage("multiple 'forwarding-method' options specified")),
    };
    let weight = args
        .weight
        .as_deref()
        .map(|text| {
            text.parse::<u32>()
                .ok()
                .filter(|weight| *weight <= 65535)
                .ok_or_else(|| usage(format!("-w {text}: illegal weight specified (0..65535)")))
        })
        .transpose()?;
    Ok(RealRule {
        service,
        address,
        port,
        forward,
        weight,
    })
}

fn set_timeouts(args: &IpvsadmArgs) -> Result<[Option<u64>; 3], Failure> {
    let values = args.set.as_deref().unwrap_or_default();
    let [tcp, tcpfin, udp] = values else {
        return Err(usage("--set option requires 3 timeout values"));
    };
    let seconds = |text: &String| timeout(text, 0, "set").map(|s| (s > 0).then_some(s));
    Ok([seconds(tcp)?, seconds(tcpfin)?, seconds(udp)?])
}

/// ipvsadm's timeouts: whole seconds up to 31 days.
fn timeout(text: &str, min: u64, option: &str) -> Result<u64, Failure> {
    const MAX_TIMEOUT_S: u64 = 86400 * 31;
    text.parse::<u64>()
        .ok()
        .filter(|seconds| (min..=MAX_TIMEOUT_S).contains(seconds))
        .ok_or_else(|| {
            usage(format!(
                "--{option} {text}: invalid timeout value `{text}' specified (whole seconds, \
                 {min}..{MAX_TIMEOUT_S})"
            ))
        })
}

/// `ADDR`, `ADDR:PORT`, `[ADDR]:PORT` or a bare IPv6 address, as ipvsadm reads them; the
/// port a number or a service name (`http`, as `ipvsadm -S` without `-n` writes it).
/// Addresses are numeric only.
pub fn address_port(text: &str, protocol: Protocol) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (address, port) = rest.split_once("]:")?;
        return Some((
            IpAddr::V6(address.parse::<Ipv6Addr>().ok()?),
            Some(port_number(port, protocol)?),
        ));
    }
    if let Ok(address) = text.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(address), None));
    }
    match text.rsplit_once(':') {
        Some((address, port)) => Some((
            IpAddr::V4(address.parse().ok()?),
            Some(port_number(port, protocol)?),
        )),
        None => Some((IpAddr::V4(text.parse().ok()?), None)),
    }
}

/// A port number, or a service name from the services database (`/etc/services`).
fn port_number(text: &str, protocol: Protocol) -> Option<u16> {
    if let Ok(port) = text.parse() {
        return Some(port);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let name = std::ffi::CString::new(text).ok()?;
    let protocol = std::ffi::CString::new(protocol.name()).ok()?;
    // SAFETY: both are NUL-terminated; the entry is read at once, before another lookup.
    let entry = unsafe { libc::getservbyname(name.as_ptr(), protocol.as_ptr()) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: non-null entries point at a valid servent; s_port is in network order.
    Some(u16::from_be(unsafe { (*entry).s_port } as u16))
}
