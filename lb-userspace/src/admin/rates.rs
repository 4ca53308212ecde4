//! Per-second rates for `lbadm -L -n --rate`, estimated as IPVS estimates them: every
//! [`ESTIMATE_EVERY`] the counters are read, the difference since the last reading is turned
//! into a rate, and the estimate moves a quarter of the way towards it (IPVS's
//! `ip_vs_est.c`: `avg += (rate - avg) >> 2` every two seconds). A burst therefore shows
//! within seconds and fades over about ten, and two listings a moment apart agree.
//!
//! The daemon samples on its own clock ([`RateBoard::sample`], from a task of its own), so
//! rates do not depend on who lists or how often.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use lb_common::ServiceKey;

use super::{Rates, Stats};
use crate::health::HealthKey;

/// IPVS's estimator period.
pub const ESTIMATE_EVERY: Duration = Duration::from_secs(2);

/// A service's totals, or one of its reals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKey {
    Service(ServiceKey),
    Real(HealthKey),
}

/// The estimates of every service and real, and the readings they were last moved by.
#[derive(Debug, Default)]
pub struct RateBoard {
    estimates: Mutex<HashMap<RateKey, Estimate>>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    last: Stats,
    at: Instant,
    /// cps, in pps, out pps, in Bps, out Bps.
    average: [f64; 5],
}

impl RateBoard {
    /// Moves every estimate by one reading of the counters, taken `at`. Keys not in
    /// `readings` are forgotten (their service or real is gone). A counter that went down
    /// (zeroed with `-Z`) starts its estimate again from the new reading.
    pub fn sample(&self, readings: &[(RateKey, Stats)], at: Instant) {
        let mut estimates = self.lock();
        let mut next = HashMap::with_capacity(readings.len());
        for &(key, stats) in readings {
            let estimate = match estimates.remove(&key) {
                Some(previous) => previous.moved(stats, at),
                None => Estimate {
                    last: stats,
                    at,
                    average: [0.0; 5],
                },
            };
            next.insert(key, estimate);
        }
        *estimates = next;
    }

    /// Starts the estimates that `forget` picks again from the next reading, as IPVS's
    /// `ip_vs_zero_estimator` does when counters are zeroed.
    pub fn forget(&self, forget: impl Fn(&RateKey) -> bool) {
        self.lock().retain(|key, _| !forget(key));
    }

    /// The rates of `key`, zero while it has had no two readings.
    pub fn rates(&self, key: &RateKey) -> Rates {
        self.lock()
            .get(key)
            .map(|estimate| {
                let [cps, in_pps, out_pps, in_bps, out_bps] =
                    estimate.average.map(|value| value.round() as u64);
                Rates {
                    cps,
                    in_pps,
                    out_pps,
                    in_bps,
                    out_bps,
                }
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RateKey, Estimate>> {
        self.estimates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Estimate {
    fn moved(self, stats: Stats, at: Instant) -> Estimate {
        let seconds = at.duration_since(self.at).as_secs_f64();
        let totals = |stats: Stats| {
            [
                stats.conns,
                stats.in_packets,
                stats.out_packets,
                stats.in_bytes,
                stats.out_bytes,
            ]
        };
        let (now, before) = (totals(stats), totals(self.last));
        if seconds <= 0.0 || now.iter().zip(&before).any(|(now, before)| now < before) {
            return Estimate {
                last: stats,
                at,
                average: [0.0; 5],
            };
        }
        let mut average = self.average;
        for (slot, (now, before)) in average.iter_mut().zip(now.iter().zip(&before)) {
            let rate = (now - before) as f64 / seconds;
            *slot += (rate - *slot) / 4.0;
        }
        Estimate {
            last: stats,
            at,
            average,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> RateKey {
        RateKey::Service(ServiceKey {
            vip: [0; 16],
            port_be: 80u16.to_be(),
            protocol: lb_common::PROTO_TCP,
            family: lb_common::FAMILY_IPV4,
        })
    }

    fn stats(conns: u64, packets: u64, bytes: u64) -> Stats {
        Stats {
            conns,
            in_packets: packets,
            in_bytes: bytes,
            ..Stats::default()
        }
    }

    #[test]
    fn a_steady_rate_is_approached_a_quarter_at_a_time() {
        let board = RateBoard::default();
        let start = Instant::now();
        board.sample(&[(service(), stats(0, 0, 0))], start);
        assert_eq!(board.rates(&service()), Rates::default());
        // 100 connections, 1000 packets and 100 kB a second, read every two seconds.
        let mut expected: f64 = 0.0;
        for step in 1..=60u64 {
            board.sample(
                &[(service(), stats(200 * step, 2000 * step, 200_000 * step))],
                start + ESTIMATE_EVERY * step as u32,
            );
            expected += (100.0 - expected) / 4.0;
            assert_eq!(board.rates(&service()).cps, expected.round() as u64);
        }
        let rates = board.rates(&service());
        assert_eq!(
            (rates.cps, rates.in_pps, rates.in_bps),
            (100, 1000, 100_000)
        );
        assert_eq!((rates.out_pps, rates.out_bps), (0, 0));
    }

    #[test]
    fn zeroed_counters_and_removed_keys_start_again() {
        let board = RateBoard::default();
        let start = Instant::now();
        board.sample(&[(service(), stats(0, 0, 0))], start);
        board.sample(&[(service(), stats(400, 0, 0))], start + ESTIMATE_EVERY);
        assert_eq!(board.rates(&service()).cps, 50);
        board.sample(&[(service(), stats(0, 0, 0))], start + ESTIMATE_EVERY * 2);
        assert_eq!(board.rates(&service()).cps, 0);
        board.sample(&[], start + ESTIMATE_EVERY * 3);
        assert_eq!(board.rates(&service()), Rates::default());
    }
}
