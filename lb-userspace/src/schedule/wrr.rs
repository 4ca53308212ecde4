//! LVS's weighted round robin as a ring: the sequence of real ids one full round of `wrr`
//! produces, scaled down to fit [`RING_SLOTS`] when the weights would make it longer.

#[cfg(test)]
use lb_common::RING_SLOTS;

use super::Candidate;

/// LVS's interleaved weighted round robin (`ip_vs_wrr.c`): walk the reals repeatedly,
/// lowering a threshold from the largest weight by their gcd, and take every real whose
/// weight reaches it. One period holds each real `weight / gcd` times, spread out rather than
/// in bursts.
pub(super) fn weighted_round_robin(active: &[Candidate]) -> Vec<u32> {
    let Some(max_weight) = active.iter().map(|c| c.weight).max() else {
        return Vec::new();
    };
    let step = active.iter().fold(0, |g, c| gcd(g, c.weight));
    let period: u32 = active.iter().map(|c| c.weight / step).sum();
    let mut ring = Vec::with_capacity(period as usize);
    let mut threshold = max_weight;
    while ring.len() < period as usize {
        ring.extend(
            active
                .iter()
                .filter(|c| c.weight >= threshold)
                .map(|c| c.real_id),
        );
        threshold = if threshold > step {
            threshold - step
        } else {
            max_weight
        };
    }
    ring
}

/// Scales weights down until one period fits `slots`, keeping every real at least 1 and the
/// ratios as close as integer weights allow. Weights that already fit are returned unchanged.
pub(super) fn fit_weights(active: &[Candidate], slots: u32) -> Vec<Candidate> {
    let period = |cands: &[Candidate]| -> u64 {
        let step = cands.iter().fold(0, |g, c| gcd(g, c.weight)).max(1);
        cands.iter().map(|c| u64::from(c.weight / step)).sum()
    };
    if period(active) <= u64::from(slots) {
        return active.to_vec();
    }
    let total: u64 = active.iter().map(|c| u64::from(c.weight)).sum();
    // Each real gets floor(weight * budget / total), at least 1; shrink the budget until the
    // sum fits (the floor of 1 can push it over).
    let mut budget = u64::from(slots);
    loop {
        let scaled: Vec<Candidate> = active
            .iter()
            .map(|c| Candidate {
                weight: ((u64::from(c.weight) * budget / total).max(1)) as u32,
                ..*c
            })
            .collect();
        if period(&scaled) <= u64::from(slots) || budget <= 1 {
            return scaled;
        }
        budget -= 1;
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{ScheduleError, ring},
        *,
    };
    use crate::config::Scheduler;

    fn candidates(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Candidate::new(i as u32 + 1, weight))
            .collect()
    }

    fn count(ring: &[u32], real_id: u32) -> usize {
        ring.iter().filter(|&&id| id == real_id).count()
    }

    #[test]
    fn wrr_period_holds_each_real_in_proportion_to_its_weight() {
        let ring = ring(Scheduler::Wrr, &candidates(&[1, 2, 3])).unwrap();
        assert_eq!(ring.len(), 6);
        assert_eq!(
            (count(&ring, 1), count(&ring, 2), count(&ring, 3)),
            (1, 2, 3)
        );
    }

    #[test]
    fn wrr_interleaves_like_lvs() {
        // ip_vs_wrr with weights 4,3,2: thresholds 4,3,2,1 → A; A B; A B C; A B C.
        let ring = ring(Scheduler::Wrr, &candidates(&[4, 3, 2])).unwrap();
        assert_eq!(ring, vec![1, 1, 2, 1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn wrr_reduces_by_gcd() {
        let ring = ring(Scheduler::Wrr, &candidates(&[100, 200])).unwrap();
        assert_eq!(ring.len(), 3);
        assert_eq!(count(&ring, 2), 2);
    }

    #[test]
    fn zero_weight_reals_take_no_new_flows() {
        for scheduler in [Scheduler::Rr, Scheduler::Wrr] {
            let ring = ring(scheduler, &candidates(&[0, 5, 0])).unwrap();
            assert!(!ring.is_empty());
            assert!(ring.iter().all(|&id| id == 2), "{scheduler:?}: {ring:?}");
        }
    }

    #[test]
    fn no_positive_weight_gives_an_empty_ring() {
        assert_eq!(
            ring(Scheduler::Wrr, &candidates(&[0, 0])).unwrap(),
            Vec::<u32>::new()
        );
        assert_eq!(ring(Scheduler::Rr, &[]).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn rr_ignores_weights() {
        assert_eq!(
            ring(Scheduler::Rr, &candidates(&[1, 7, 3])).unwrap(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn large_weights_are_scaled_to_fit_keeping_ratios() {
        let ring = ring(Scheduler::Wrr, &candidates(&[65535, 32767, 1])).unwrap();
        assert!(ring.len() <= RING_SLOTS as usize);
        let (a, b, c) = (count(&ring, 1), count(&ring, 2), count(&ring, 3));
        assert!(c >= 1, "every real with weight keeps a slot");
        let ratio = a as f64 / b as f64;
        assert!((ratio - 2.0).abs() < 0.02, "ratio {ratio} ({a}/{b})");
    }

    #[test]
    fn too_many_reals_is_an_error() {
        let weights = vec![1; RING_SLOTS as usize + 1];
        assert_eq!(
            ring(Scheduler::Wrr, &candidates(&weights)),
            Err(ScheduleError::TooManyReals {
                count: RING_SLOTS as usize + 1,
                slots: RING_SLOTS
            })
        );
    }
}
