//! Answers built from a snapshot of the desired state and the data plane's own counters and
//! flow table. Nothing here waits for the writer: the snapshot is loaded once, and counters
//! and flows are read through the reader's own map handles.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{FlowKey, PROTO_TCP, conntrack::state_name};

use super::{
    AdminContext, Connection, ConnectionListing, Listing, RealListing, ReasonCount, ServiceListing,
    Stats, TimeoutListing,
    rates::{RateBoard, RateKey},
};
use crate::{
    config::{Forward, netmask_text},
    dataplane::{DataplaneError, DataplaneReader},
    reconcile::{
        Desired, DesiredReal, address_from_bytes, describe_reachability, health_key_of,
        service_key, sorry_in_use,
    },
};

/// `lbadm -L`: services, reals, counters and rates, and each real's connection counts.
pub fn listing(context: &AdminContext, desired: &Desired) -> Result<Listing, DataplaneError> {
    let reader = context.reader.as_ref();
    let rates = &context.rates;
    let mut services = Vec::with_capacity(desired.services.len());
    for service in &desired.services {
        let checked = service.config.health_check.is_some();
        let mut reals = Vec::with_capacity(service.reals.len());
        for real in &service.reals {
            let connections = reader.connections(real.id)?;
            let key = RateKey::Real(health_key_of(&service.config, &real.config));
            reals.push(RealListing {
                address: real.config.address,
                port: real.config.port,
                forward: real.config.forward.name().to_owned(),
                weight: real.config.weight,
                active_conn: connections.active,
                inactive_conn: connections.inactive,
                next_hop: Some(real.next_hop),
                sources: real.sources.clone(),
                mac: real.mac.map(|mac| format_mac(&mac)),
                available: real.available(),
                neighbour: describe_reachability(real).to_owned(),
                healthy: (checked && !real.sorry).then_some(real.healthy),
                stats: real_stats(reader, real.id)?,
                rate: rates.rates(&key),
                sorry_server: real.sorry,
                standing_in: real.sorry && sorry_in_use(service).is_some(),
            });
        }
        services.push(ServiceListing {
            protocol: service.config.protocol.name().to_owned(),
            vip: service.config.vip,
            port: service.config.port,
            scheduler: service.config.scheduler.name().to_owned(),
            persistent_s: service
                .config
                .persistence
                .map(|persistence| persistence.timeout.as_secs()),
            netmask: service
                .config
                .persistence
                .and_then(|persistence| netmask_text(service.config.vip, persistence.prefix)),
            forward: service.config.forward.name().to_owned(),
            mtu_overhead: service.config.mtu_overhead(),
            on_failure: service.config.on_failure.name().to_owned(),
            stats: service_stats(reader, service.id)?,
            rate: rates.rates(&RateKey::Service(service_key(&service.config))),
            reals,
        });
    }
    let reasons = reader
        .reason_counters()?
        .into_iter()
        .map(|(reason, counters)| ReasonCount {
            reason: reason.name().to_owned(),
            packets: counters.packets,
            bytes: counters.bytes,
        })
        .collect();
    let timeouts = desired.timeouts;
    Ok(Listing {
        instance: context.instance.clone(),
        flow_table_size: context.flow_table_size,
        services,
        reasons,
        timeouts: TimeoutListing {
            tcp: timeouts.tcp.as_secs(),
            tcp_fin: timeouts.tcp_fin.as_secs(),
            udp: timeouts.udp.as_secs(),
        },
    })
}

/// A service's counters, as ipvsadm's `--stats` columns.
pub fn service_stats(reader: &dyn DataplaneReader, id: u32) -> Result<Stats, DataplaneError> {
    Ok(Stats::new(
        reader.service_counters(id)?,
        reader.service_out_counters(id)?,
    ))
}

/// A real's counters, as ipvsadm's `--stats` columns.
pub fn real_stats(reader: &dyn DataplaneReader, id: u32) -> Result<Stats, DataplaneError> {
    Ok(Stats::new(
        reader.real_counters(id)?,
        reader.real_out_counters(id)?,
    ))
}

/// One reading of every service's and real's counters into the rate estimates.
pub fn sample_rates(
    desired: &Desired,
    reader: &dyn DataplaneReader,
    rates: &RateBoard,
    at: std::time::Instant,
) -> Result<(), DataplaneError> {
    let mut readings = Vec::new();
    for service in &desired.services {
        readings.push((
            RateKey::Service(service_key(&service.config)),
            service_stats(reader, service.id)?,
        ));
        for real in &service.reals {
            readings.push((
                RateKey::Real(health_key_of(&service.config, &real.config)),
                real_stats(reader, real.id)?,
            ));
        }
    }
    rates.sample(&readings, at);
    Ok(())
}

/// `lbadm -L -n -c`: every flow that has not expired, with the real it goes to, sorted by
/// virtual service, then source. Flows whose real lbd no longer has are left out (the sweep
/// removes them within a second). Full-NAT flows also name the local address and port the
/// real sees them come from.
pub fn connections(
    instance: &str,
    desired: &Desired,
    reader: &dyn DataplaneReader,
) -> Result<ConnectionListing, DataplaneError> {
    let settings = desired.timeouts.settings();
    let mut reals: HashMap<(u32, u32), &DesiredReal> = HashMap::new();
    for service in &desired.services {
        for real in &service.reals {
            reals.insert((service.id, real.id), real);
        }
    }
    let now = monotonic_now_ns();
    let mut connections = Vec::new();
    reader.for_each_flow(&mut |key, flow| {
        let Some(real) = reals.get(&(flow.service_id, flow.real_id)) else {
            return;
        };
        let (destination, destination_port) = (real.config.address, real.config.port);
        // Full NAT: which of the real's local addresses, and which port.
        let local = (real.config.forward == Forward::Fullnat)
            .then(|| real.sources.get(usize::from(flow.local_source)))
            .flatten()
            .map(|&address| (address, u16::from_be(flow.local_port_be)));
        let state = flow.state as u8;
        let idle = now.saturating_sub(flow.last_seen_ns);
        let Some(left) = settings.expires_after_ns(state).checked_sub(idle) else {
            return;
        };
        let left = left.min(settings.timeout_ns(state));
        connections.push(Connection {
            protocol: if key.protocol == PROTO_TCP {
                "tcp"
            } else {
                "udp"
            }
            .to_owned(),
            expire_s: left.div_ceil(1_000_000_000),
            state: state_name(state).to_owned(),
            source: address(key, &key.src),
            source_port: u16::from_be(key.src_port_be),
            virtual_address: address(key, &key.dst),
            virtual_port: u16::from_be(key.dst_port_be),
            destination,
            destination_port: if destination_port == 0 {
                u16::from_be(key.dst_port_be)
            } else {
                destination_port
            },
            local_address: local.map(|(address, _)| address),
            local_port: local.map(|(_, port)| port),
        });
    })?;
    connections.sort_by(|a, b| {
        (a.virtual_address, a.virtual_port, a.source, a.source_port).cmp(&(
            b.virtual_address,
            b.virtual_port,
            b.source,
            b.source_port,
        ))
    });
    Ok(ConnectionListing {
        instance: instance.to_owned(),
        connections,
    })
}

fn address(key: &FlowKey, bytes: &[u8; 16]) -> IpAddr {
    address_from_bytes(bytes, key.family)
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns()` and (a timer tick behind at most) of the
/// coarse one the program stamps `Flow::last_seen_ns` with; idle times read against it saturate.
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
