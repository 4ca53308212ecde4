//! Answers built from a snapshot of the desired state and the data plane's own counters and
//! flow table. Nothing here waits for the writer: the snapshot is loaded once, and counters
//! and flows are read through the reader's own map handles.

use std::time::Duration;

use lb_common::PROTO_TCP;

use super::{Listing, RealListing, ReasonCount, ServiceListing};
use crate::{
    dataplane::{DataplaneError, DataplaneReader},
    reconcile::{Desired, describe_reachability},
};

/// A flow counts as a connection while seen within its protocol's timeout (LVS's defaults,
/// `ipvsadm --set 900 120 300`, until the `timeouts` key arrives).
const TCP_FLOW_TIMEOUT: Duration = Duration::from_secs(900);
const UDP_FLOW_TIMEOUT: Duration = Duration::from_secs(300);

/// `lbadm -L`: services, reals, counters, and connections counted from the flow table.
pub fn listing(
    instance: &str,
    flow_table_size: u32,
    desired: &Desired,
    reader: &dyn DataplaneReader,
) -> Result<Listing, DataplaneError> {
    let active = active_flows_per_real(reader)?;
    let mut services = Vec::with_capacity(desired.services.len());
    for service in &desired.services {
        let mut reals = Vec::with_capacity(service.reals.len());
        for real in &service.reals {
            reals.push(RealListing {
                address: real.config.address,
                port: real.config.port,
                forward: real.config.forward.name().to_owned(),
                weight: real.config.weight,
                active_conn: active.get(real.id as usize).copied().unwrap_or(0),
                inactive_conn: 0,
                mac: real.mac.map(|mac| format_mac(&mac)),
                available: real.available(),
                neighbour: describe_reachability(real).to_owned(),
                stats: reader.real_counters(real.id)?.into(),
            });
        }
        services.push(ServiceListing {
            protocol: service.config.protocol.name().to_owned(),
            vip: service.config.vip,
            port: service.config.port,
            scheduler: service.config.scheduler.name().to_owned(),
            forward: service.config.forward.name().to_owned(),
            stats: reader.service_counters(service.id)?.into(),
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
    Ok(Listing {
        instance: instance.to_owned(),
        flow_table_size,
        services,
        reasons,
    })
}

/// Live flows per real id (index = id).
fn active_flows_per_real(reader: &dyn DataplaneReader) -> Result<Vec<u64>, DataplaneError> {
    let now = monotonic_now_ns();
    let mut counts: Vec<u64> = Vec::new();
    reader.for_each_flow(&mut |key, flow| {
        let timeout = if key.protocol == PROTO_TCP {
            TCP_FLOW_TIMEOUT
        } else {
            UDP_FLOW_TIMEOUT
        };
        if now.saturating_sub(flow.last_seen_ns) <= timeout.as_nanos() as u64 {
            let id = flow.real_id as usize;
            if counts.len() <= id {
                counts.resize(id + 1, 0);
            }
            counts[id] += 1;
        }
    })?;
    Ok(counts)
}

/// The clock of `bpf_ktime_get_ns()`, which `Flow::last_seen_ns` is read against.
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
