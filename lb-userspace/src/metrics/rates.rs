//! Per-second rates for the status page, from the difference with the sample the previous
//! view of the page took (ipvsadm's `--rate` comes from the kernel's estimator; we have only
//! counters, so the page is its own estimator). Prometheus computes its own rates with
//! `rate()`, from the counters.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use lb_common::ServiceKey;

use super::View;
use crate::{admin::Stats, health::HealthKey};

/// Views closer together than this keep the previous rates: a difference over a few
/// milliseconds says little, and would reset the interval for the next view.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A row of the page: a service's totals or one of its reals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Row {
    Service(ServiceKey),
    Real(HealthKey),
}

/// Connections, packets and bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rate {
    pub(super) connections: f64,
    pub(super) packets: f64,
    pub(super) bytes: f64,
}

/// The rates of the rows that have one (none on the first view, nor for a row new since the
/// previous one).
pub(super) type Rates = HashMap<Row, Rate>;

#[derive(Debug, Default)]
pub(super) struct RateEstimator {
    previous: Option<(Instant, HashMap<Row, Stats>)>,
    rates: Rates,
}

impl RateEstimator {
    /// Takes the sample `totals` taken at `now`, and returns the rates since the previous
    /// one.
    pub(super) fn update(&mut self, now: Instant, totals: HashMap<Row, Stats>) -> Rates {
        let Some((then, before)) = &self.previous else {
            self.previous = Some((now, totals));
            return self.rates.clone();
        };
        let elapsed = now.saturating_duration_since(*then);
        if elapsed < MIN_INTERVAL {
            return self.rates.clone();
        }
        let seconds = elapsed.as_secs_f64();
        let per_second = |now: u64, then: u64| (now - then) as f64 / seconds;
        self.rates = totals
            .iter()
            .filter_map(|(row, stats)| {
                let old = before.get(row)?;
                // A counter that went back belongs to an id given a new meaning meanwhile.
                let grew = stats.conns >= old.conns
                    && stats.in_packets >= old.in_packets
                    && stats.in_bytes >= old.in_bytes;
                grew.then(|| {
                    let rate = Rate {
                        connections: per_second(stats.conns, old.conns),
                        packets: per_second(stats.in_packets, old.in_packets),
                        bytes: per_second(stats.in_bytes, old.in_bytes),
                    };
                    (*row, rate)
                })
            })
            .collect();
        self.previous = Some((now, totals));
        self.rates.clone()
    }
}

/// The counters of every row of the page.
pub(super) fn totals(view: &View) -> HashMap<Row, Stats> {
    let mut totals = HashMap::new();
    for service in view.services() {
        totals.insert(Row::Service(service.key()), service.listing.stats);
        for real in service.reals() {
            totals.insert(Row::Real(real.key), real.listing.stats);
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(conns: u64, in_packets: u64, in_bytes: u64) -> Stats {
        Stats {
            conns,
            in_packets,
            in_bytes,
            ..Stats::default()
        }
    }

    #[test]
    fn rates_come_from_the_previous_sample_at_least_a_second_old() {
        let row = Row::Service(ServiceKey::default());
        let start = Instant::now();
        let mut estimator = RateEstimator::default();
        assert!(
            estimator
                .update(start, HashMap::from([(row, stats(10, 100, 1000))]))
                .is_empty()
        );
        // Too soon: no rate yet, and the first sample stays the base.
        let soon = start + Duration::from_millis(200);
        assert!(
            estimator
                .update(soon, HashMap::from([(row, stats(11, 110, 1100))]))
                .is_empty()
        );
        let later = start + Duration::from_secs(2);
        let rates = estimator.update(later, HashMap::from([(row, stats(30, 300, 5000))]));
        assert_eq!(
            rates[&row],
            Rate {
                connections: 10.0,
                packets: 100.0,
                bytes: 2000.0
            }
        );
        // A counter that went back (id reused) has no rate.
        let rates = estimator.update(
            later + Duration::from_secs(1),
            HashMap::from([(row, stats(1, 1, 1))]),
        );
        assert!(rates.is_empty());
    }
}
