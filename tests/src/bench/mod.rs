//! `cargo xtask bench`: lbd measured against references in the same run, so every figure is
//! a ratio that another machine can reproduce, whatever its absolute speed.
//!
//! Each part measures one thing and returns [`Row`]s; [`report`] prints them as a table,
//! writes `target/bench/report.md` and one SVG chart per part. A row holds samples of lbd
//! and of its reference taken in pairs (lbd, reference, lbd, reference, …), so a ratio comes
//! from neighbouring samples and a machine that slows down part-way slows both sides.
//!
//! - [`per_packet`]: nanoseconds per packet through BPF_PROG_TEST_RUN, against the stateless
//!   DR program (`lb-ebpf/src/baselines.rs`), with 1k, 100k and 1M flows in the table.
//! - [`throughput`]: packets per second through namespaces (an in-kernel generator →
//!   balancer → sink), against the MAC-swap ceiling on the same path, and UDP against an
//!   nftables DNAT balancer.
//! - [`connections`]: new TCP connections per second and latency percentiles from wrk,
//!   through lbd against direct to one real, nftables DNAT and HAProxy.
//! - [`scale`]: Maglev build time, services applied per second, flow-table memory per entry
//!   and lbd's resident memory at 1M flows.
//! - [`takeover`]: VRRP takeover times of an lbd pair next to a keepalived pair.

pub mod baselines;
pub mod connections;
pub mod host;
pub mod per_packet;
pub mod report;
pub mod scale;
pub mod takeover;
pub mod throughput;

use std::fmt;

/// Repeated measurements of one quantity.
#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    pub fn median(&self) -> f64 {
        let values = self.sorted();
        match values.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// Element-wise `self[i] / other[i]`: the ratio of each pair.
    pub fn ratios(&self, other: &Samples) -> Samples {
        Samples(self.0.iter().zip(&other.0).map(|(a, b)| a / b).collect())
    }
}

/// Which way a ratio must lie to meet its target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// lbd ÷ reference must be at most this (a cost: ns/packet, memory).
    AtMost(f64),
    /// lbd ÷ reference must be at least this (a rate: packets/s, connections/s).
    AtLeast(f64),
}

impl Target {
    pub fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(bound) => ratio <= bound,
            Target::AtLeast(bound) => ratio >= bound,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::AtMost(bound) => write!(f, "≤ {bound}×"),
            Target::AtLeast(bound) => write!(f, "≥ {bound}×"),
        }
    }
}

/// lbd's samples next to a reference's, taken in pairs.
#[derive(Clone, Debug)]
pub struct Compared {
    /// What the reference is ("stateless DR", "MAC swap", "nftables DNAT", …).
    pub reference: String,
    pub samples: Samples,
    pub target: Option<Target>,
}

/// One line of the report: a measured quantity of lbd, optionally against a reference.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured ("known TCP flow, 1M flows in the table").
    pub name: String,
    /// The unit of the samples ("ns/packet", "Mpps", "conn/s", "ms", "B", "MiB").
    pub unit: &'static str,
    pub lbd: Samples,
    pub compared: Option<Compared>,
    /// What else the reader needs: the bottleneck, a target met or missed and why.
    pub note: String,
}

impl Row {
    /// A quantity with no reference (a time, a size).
    pub fn alone(name: impl Into<String>, unit: &'static str, lbd: Samples) -> Row {
        Row {
            name: name.into(),
            unit,
            lbd,
            compared: None,
            note: String::new(),
        }
    }

    /// lbd against a reference measured in the same run.
    pub fn against(
        name: impl Into<String>,
        unit: &'static str,
        lbd: Samples,
        reference: impl Into<String>,
        reference_samples: Samples,
        target: Option<Target>,
    ) -> Row {
        Row {
            name: name.into(),
            unit,
            lbd,
            compared: Some(Compared {
                reference: reference.into(),
                samples: reference_samples,
                target,
            }),
            note: String::new(),
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// The pairs' ratios (lbd ÷ reference), when there is a reference.
    pub fn ratios(&self) -> Option<Samples> {
        let compared = self.compared.as_ref()?;
        Some(self.lbd.ratios(&compared.samples))
    }

    /// Whether the median ratio meets the target, when there is one.
    pub fn target_met(&self) -> Option<bool> {
        let target = self.compared.as_ref()?.target?;
        Some(target.met(self.ratios()?.median()))
    }
}

/// A part's rows under a title, with what the reader needs to know about how it was run.
#[derive(Clone, Debug)]
pub struct Section {
    pub title: String,
    /// How it was measured, in a sentence or two (printed above the table).
    pub method: String,
    pub rows: Vec<Row>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_pairwise_ratios() {
        let lbd = Samples(vec![30.0, 10.0, 20.0, 40.0]);
        assert_eq!(lbd.median(), 25.0);
        assert_eq!(Samples(vec![3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!((lbd.min(), lbd.max()), (10.0, 40.0));
        assert!(Samples::default().median().is_nan());
        let reference = Samples(vec![15.0, 10.0, 10.0, 10.0]);
        assert_eq!(lbd.ratios(&reference).0, vec![2.0, 1.0, 2.0, 4.0]);
    }

    #[test]
    fn targets_hold_in_their_direction() {
        let cost = Row::against(
            "known flow",
            "ns/packet",
            Samples(vec![130.0, 140.0]),
            "stateless DR",
            Samples(vec![100.0, 100.0]),
            Some(Target::AtMost(1.3)),
        );
        // Median of 1.3 and 1.4: 1.35, over the bound.
        assert_eq!(cost.target_met(), Some(false));
        let rate = Row::against(
            "pps",
            "Mpps",
            Samples(vec![4.6]),
            "MAC swap",
            Samples(vec![5.0]),
            Some(Target::AtLeast(0.9)),
        );
        assert_eq!(rate.target_met(), Some(true));
        assert_eq!(Row::alone("t", "ms", Samples(vec![1.0])).target_met(), None);
    }
}
