//! `lbd decap --interface IFACE`: on a real server of a tunnel-mode service, the XDP program
//! that takes the IPIP or GUE header off packets the balancer sends to a local VIP, for hosts
//! whose kernel lacks (or should not load) the `ipip`, `ip6_tunnel`, `sit` and `fou` modules.
//!
//! It runs in the foreground: loads the program (from the same object as the balancer; its
//! maps are not pinned and go with the process), fills its address map, attaches, and
//! every [`REFRESH`] reads the host's addresses again, so VIPs added to or removed from `lo`
//! are followed (SIGHUP re-reads them at once). SIGUSR1 logs the counters; SIGINT or SIGTERM
//! detaches the program, logs them and returns.
//!
//! # Layout
//!
//! - this file: [`Options`], [`run`], [`DecapError`];
//! - [`addresses`]: which addresses the program acts for, from the host's (pure);
//! - [`program`]: the program, its maps, attachment and counters.

pub mod addresses;
pub mod program;

use std::{net::IpAddr, time::Duration};

use aya::{maps::MapError, programs::ProgramError};
use lb_common::decap::MAX_DECAP_ADDRS;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::XdpMode,
    daemon::privileges::{CAP_BPF, CAP_NET_ADMIN, CapabilitySet, PrivilegeError, keep_only},
    neighbour::{NeighbourError, Neighbours},
};
use addresses::{describe, refuse_vip, wanted};
pub use program::{DecapCounters, DecapProgram};

/// How often the host's addresses are read again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// What `lbd decap` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The interface tunnel packets arrive on.
    pub interface: String,
    /// UDP destination port of GUE packets; 0: IPIP only.
    pub gue_port: u16,
    pub xdp_mode: XdpMode,
    /// VIPs besides the addresses on `lo`.
    pub vips: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecapError {
    #[error(transparent)]
    Netlink(#[from] NeighbourError),
    #[error("--vip {addr}: {why}")]
    BadVip { addr: IpAddr, why: &'static str },
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("dropping capabilities after attaching: {0}")]
    Privileges(#[from] PrivilegeError),
    #[error("loading the XDP object: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("program lb_decap: {0}")]
    Program(Box<ProgramError>),
    #[error("program lb_decap is missing from the object")]
    MissingProgram,
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "{count} addresses to decapsulate for, more than the program's map holds \
         ({MAX_DECAP_ADDRS})"
    )]
    TooManyAddresses { count: usize },
    #[error("attaching lb_decap to {interface} (ifindex {ifindex}, mode {mode}): {source}{hint}")]
    Attach {
        interface: String,
        ifindex: u32,
        mode: &'static str,
        source: Box<ProgramError>,
        hint: &'static str,
    },
}

/// Runs `lbd decap` until SIGINT or SIGTERM; returns the counters, after detaching. Bad input
/// (an unknown interface, a VIP that cannot be one) and a failed load or attach are errors
/// before anything is attached.
pub async fn run(options: Options) -> Result<DecapCounters, DecapError> {
    for &addr in &options.vips {
        if let Some(why) = refuse_vip(addr) {
            return Err(DecapError::BadVip { addr, why });
        }
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(DecapError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DecapError::Signals)?;
    let mut report = signal(SignalKind::user_defined1()).map_err(DecapError::Signals)?;
    // A reload signal (a service manager's habit) must not kill it: it re-reads the
    // addresses at once.
    let mut reload = signal(SignalKind::hangup()).map_err(DecapError::Signals)?;

    let netlink = Neighbours::new()?;
    let interface = netlink.interface(&options.interface).await?;
    let mut program = DecapProgram::load()?;
    program.set_gue_port(options.gue_port)?;
    // Filled before attaching, so that the first tunnel packets find the addresses.
    let host = netlink.host_addresses().await?;
    program.write_addresses(&wanted(&host, &options.vips))?;
    let link = program.attach(&interface.name, interface.index, options.xdp_mode)?;
    // From here on it writes the address map (CAP_BPF) and, at the end, detaches
    // (CAP_NET_ADMIN); nothing else.
    let kept = keep_only(CapabilitySet(1 << CAP_BPF | 1 << CAP_NET_ADMIN))?;
    log::info!("capabilities kept: {kept}");
    let mode = match netlink.xdp_attachment(interface.index).await {
        Ok(Some(attachment)) => attachment.mode,
        _ => options.xdp_mode.name(),
    };
    log::info!(
        "lb_decap attached to {} (ifindex {}, {mode} mode): decapsulating IPIP{} {}",
        interface.name,
        interface.index,
        gue_text(options.gue_port),
        describe(program.addresses())
    );

    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the addresses were just read.
    tick.tick().await;
    let mut last_error = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                refresh(&netlink, &mut program, &options.vips, &mut last_error).await;
            }
            _ = reload.recv() => {
                log::info!("SIGHUP: re-reading the host's addresses");
                refresh(&netlink, &mut program, &options.vips, &mut last_error).await;
            }
            _ = report.recv() => match program.counters() {
                Ok(counters) => log::info!("{}", counters_text(&counters)),
                Err(error) => log::warn!("reading the counters: {error}"),
            },
            _ = terminate.recv() => {
                log::info!("SIGTERM: detaching");
                break;
            }
            _ = interrupt.recv() => {
                log::info!("SIGINT: detaching");
                break;
            }
        }
    }
    program.detach(link)?;
    let counters = program.counters()?;
    log::info!(
        "lb_decap detached from {}: {}",
        interface.name,
        counters_text(&counters)
    );
    Ok(counters)
}

/// Reads the host's addresses and rewrites what changed; logs the new set when it changed.
/// A failure is logged (once until it changes) and the map kept as it was.
async fn refresh(
    netlink: &Neighbours,
    program: &mut DecapProgram,
    vips: &[IpAddr],
    last_error: &mut Option<String>,
) {
    let result = match netlink.host_addresses().await {
        Ok(host) => program.write_addresses(&wanted(&host, vips)),
        Err(error) => Err(error.into()),
    };
    match result {
        Ok(changed) => {
            *last_error = None;
            if changed {
                log::info!("now decapsulating {}", describe(program.addresses()));
            }
        }
        Err(error) => {
            let text = error.to_string();
            if last_error.as_ref() != Some(&text) {
                log::warn!("reading the host's addresses: {text}; keeping the previous ones");
                *last_error = Some(text);
            }
        }
    }
}

fn gue_text(port: u16) -> String {
    if port == 0 {
        String::new()
    } else {
        format!(" and GUE (UDP port {port})")
    }
}

/// The counters in one line: `decapsulated 2 packets (196 bytes); passed 1 tunnel packet
/// not for this host or malformed`.
pub fn counters_text(counters: &DecapCounters) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let (done, passed) = (counters.decapsulated, counters.not_decapsulated);
    format!(
        "decapsulated {} packet{} ({} bytes); passed {} tunnel packet{} not for this host \
         or malformed",
        done.packets,
        plural(done.packets),
        done.bytes,
        passed.packets,
        plural(passed.packets)
    )
}

/// The `--xdp-mode` value named `name`.
pub fn xdp_mode_named(name: &str) -> Option<XdpMode> {
    XdpMode::ALL.into_iter().find(|mode| mode.name() == name)
}
