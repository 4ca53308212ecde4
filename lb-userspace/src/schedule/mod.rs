//! Schedules computed in userspace and read by the kernel: one table per service, whose shape
//! depends on its scheduler (see `schedulers.rs` in lb-ebpf for how the program reads it).
//!
//! - `rr`, `wrr`, `sh`: a ring, the sequence of real ids one full round of the (weighted)
//!   round robin produces (`wrr.rs`); the program walks it (`rr`, `wrr`) or indexes it by a
//!   hash of the client's address (`sh`);
//! - `mh`: a Maglev table of a prime size (`maglev.rs`), indexed by a hash of the 5-tuple;
//! - `lc`, `wlc`: (real id, weight) pairs the program compares live connection counts over.
//!
//! Everything here is a pure function of the reals (ids, weights, addresses), so two
//! balancers with the same config build the same tables. `space.rs` places the tables of all
//! services in the one map that holds them.

pub mod maglev;
pub mod space;
mod wrr;

use std::net::IpAddr;

use lb_common::{MAX_LEAST_CONN_REALS, RING_SLOTS};

use crate::config::{Scheduler, ServiceConfig};

/// One real as the scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub real_id: u32,
    /// 0 = drained: keeps its flows, takes no new ones.
    pub weight: u32,
    /// Its identity for Maglev: a real keeps its place in the table by address and port,
    /// whatever its id or its position in the config.
    pub address: IpAddr,
    pub port: u16,
}

impl Candidate {
    /// A candidate whose address does not matter (every scheduler but `mh`).
    pub fn new(real_id: u32, weight: u32) -> Self {
        Candidate {
            real_id,
            weight,
            address: IpAddr::from([0, 0, 0, 0]),
            port: 0,
        }
    }

    /// The bytes Maglev hashes: the address (4 or 16 bytes), then the port in network order.
    fn identity(&self) -> Vec<u8> {
        let mut bytes = match self.address {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        bytes.extend_from_slice(&self.port.to_be_bytes());
        bytes
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("{count} reals with non-zero weight do not fit a schedule of {slots} slots")]
    TooManyReals { count: usize, slots: u32 },
}

/// The service's table over `candidates` (the reals that may take new flows now). Empty when
/// no candidate has a positive weight.
pub fn table(service: &ServiceConfig, candidates: &[Candidate]) -> Result<Vec<u32>, ScheduleError> {
    match service.scheduler {
        Scheduler::Rr | Scheduler::Wrr | Scheduler::Sh => ring(service.scheduler, candidates),
        Scheduler::Mh => {
            let identities: Vec<Vec<u8>> = candidates.iter().map(Candidate::identity).collect();
            let reals: Vec<maglev::MaglevReal> = candidates
                .iter()
                .zip(&identities)
                .map(|(candidate, key)| maglev::MaglevReal {
                    key,
                    weight: candidate.weight,
                    id: candidate.real_id,
                })
                .collect();
            Ok(maglev::table(&reals, service.mh_table_size))
        }
        Scheduler::Lc | Scheduler::Wlc => {
            let members: Vec<&Candidate> = candidates.iter().filter(|c| c.weight > 0).collect();
            if members.len() > MAX_LEAST_CONN_REALS as usize {
                return Err(ScheduleError::TooManyReals {
                    count: members.len(),
                    slots: MAX_LEAST_CONN_REALS,
                });
            }
            Ok(members.iter().flat_map(|c| [c.real_id, c.weight]).collect())
        }
    }
}

/// The most slots the service's table can need, as configured: what each of its two halves
/// reserves in the tables map.
pub fn capacity(service: &ServiceConfig) -> u32 {
    match service.scheduler {
        Scheduler::Rr | Scheduler::Wrr | Scheduler::Sh => RING_SLOTS,
        Scheduler::Mh => service.mh_table_size,
        Scheduler::Lc | Scheduler::Wlc => {
            let weighted = service.reals.iter().filter(|real| real.weight > 0).count();
            2 * (weighted.max(1) as u32)
        }
    }
}

/// The ring for `scheduler` over `candidates`, at most [`RING_SLOTS`] long. Empty when no
/// candidate has a positive weight.
pub fn ring(scheduler: Scheduler, candidates: &[Candidate]) -> Result<Vec<u32>, ScheduleError> {
    let active: Vec<Candidate> = candidates
        .iter()
        .copied()
        .filter(|c| c.weight > 0)
        .collect();
    if active.len() > RING_SLOTS as usize {
        return Err(ScheduleError::TooManyReals {
            count: active.len(),
            slots: RING_SLOTS,
        });
    }
    match scheduler {
        // Plain round robin ignores weights, like LVS `rr` (weight 0 still drains).
        Scheduler::Rr => Ok(active.iter().map(|c| c.real_id).collect()),
        _ => Ok(wrr::weighted_round_robin(&wrr::fit_weights(
            &active, RING_SLOTS,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_GUE_PORT, Forward, Protocol, Tunnel};

    fn service(scheduler: Scheduler) -> ServiceConfig {
        ServiceConfig {
            vip: IpAddr::from([192, 0, 2, 100]),
            port: 80,
            protocol: Protocol::Tcp,
            scheduler,
            forward: Forward::Dr,
            tunnel: Tunnel::Ipip,
            gue_port: DEFAULT_GUE_PORT,
            snat_pool: Vec::new(),
            tunnel_source: Vec::new(),
            persistence: None,
            mh_table_size: 251,
            health_check: None,
            on_failure: crate::config::OnFailure::Remove,
            sorry_server: None,
            reals: Vec::new(),
        }
    }

    fn candidate(last: u8, weight: u32) -> Candidate {
        Candidate {
            real_id: u32::from(last),
            weight,
            address: IpAddr::from([192, 0, 2, last]),
            port: 80,
        }
    }

    #[test]
    fn least_connection_tables_are_id_weight_pairs_of_weighted_reals() {
        let candidates = [candidate(11, 3), candidate(12, 0), candidate(13, 1)];
        for scheduler in [Scheduler::Lc, Scheduler::Wlc] {
            assert_eq!(
                table(&service(scheduler), &candidates).unwrap(),
                vec![11, 3, 13, 1]
            );
        }
    }

    #[test]
    fn maglev_tables_follow_addresses_not_ids_or_order() {
        let one = [candidate(11, 1), candidate(12, 1)];
        let table_one = table(&service(Scheduler::Mh), &one).unwrap();
        assert_eq!(table_one.len(), 251);
        // The same reals under other ids, listed the other way round: the same places.
        let renumbered = [
            Candidate {
                real_id: 7,
                ..candidate(12, 1)
            },
            Candidate {
                real_id: 5,
                ..candidate(11, 1)
            },
        ];
        let table_two = table(&service(Scheduler::Mh), &renumbered).unwrap();
        let as_addresses = |table: &[u32], ids: &[(u32, u8)]| -> Vec<u8> {
            table
                .iter()
                .map(|id| ids.iter().find(|(i, _)| i == id).unwrap().1)
                .collect()
        };
        assert_eq!(
            as_addresses(&table_one, &[(11, 11), (12, 12)]),
            as_addresses(&table_two, &[(5, 11), (7, 12)])
        );
    }

    #[test]
    fn source_hashing_uses_the_weighted_ring() {
        let candidates = [candidate(11, 1), candidate(12, 2)];
        assert_eq!(
            table(&service(Scheduler::Sh), &candidates).unwrap(),
            ring(Scheduler::Wrr, &candidates).unwrap()
        );
    }

    #[test]
    fn capacity_covers_the_largest_table() {
        let mut lc = service(Scheduler::Wlc);
        lc.reals = (0..5)
            .map(|i| crate::config::RealConfig {
                address: IpAddr::from([192, 0, 2, 20 + i]),
                port: 80,
                weight: u32::from(i),
                forward: Forward::Dr,
            })
            .collect();
        assert_eq!(capacity(&lc), 8, "four weighted reals, two slots each");
        assert_eq!(capacity(&service(Scheduler::Mh)), 251);
        assert_eq!(capacity(&service(Scheduler::Wrr)), RING_SLOTS);
    }
}
