//! The rise/fall thresholds of one real: pure, so the rules are tested without a clock.

use super::{CheckReport, RealHealth};

/// Counts a real's check results against `rise` and `fall`: it goes down only after `fall`
/// consecutive failures and comes back only after `rise` consecutive successes, so one lost
/// answer does not take a real out and one lucky answer does not bring it back.
///
/// A real starts up unless told otherwise: keepalived's behaviour without `alpha`. It takes
/// new flows from the start and leaves only after `fall` failed checks, so restarting lbd
/// (or adding a real) never takes a healthy real out while its first checks run. Starting
/// down (keepalived's `alpha`) admits a real only after `rise` passed checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    up: bool,
    /// Consecutive results against the current state: failures while up, successes while
    /// down. A result that agrees with the state ends the run.
    run: u32,
    checks: u64,
    failures: u64,
    transitions: u64,
}

impl RiseFall {
    /// A real with no results yet; thresholds of 0 count as 1.
    pub fn new(rise: u32, fall: u32, up: bool) -> Self {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            up,
            run: 0,
            checks: 0,
            failures: 0,
            transitions: 0,
        }
    }

    /// Carries on from a real's board entry: its state and counters, a new run of results.
    pub fn resume(rise: u32, fall: u32, health: &RealHealth) -> Self {
        RiseFall {
            up: health.up,
            checks: health.checks,
            failures: health.failures,
            transitions: health.transitions,
            ..RiseFall::new(rise, fall, health.up)
        }
    }

    /// Counts one result; true when it changed the state (up → down or down → up).
    pub fn record(&mut self, ok: bool) -> bool {
        self.checks += 1;
        if !ok {
            self.failures += 1;
        }
        if ok == self.up {
            self.run = 0;
            return false;
        }
        self.run += 1;
        let threshold = if self.up { self.fall } else { self.rise };
        if self.run < threshold {
            return false;
        }
        self.up = !self.up;
        self.run = 0;
        self.transitions += 1;
        true
    }

    /// New thresholds (the check's config changed): the state and counters stay, the run of
    /// results starts again.
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
        self.run = 0;
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The real's entry on the board, with `last` as its latest report.
    pub fn health(&self, last: Option<CheckReport>) -> RealHealth {
        RealHealth {
            up: self.up,
            last,
            transitions: self.transitions,
            checks: self.checks,
            failures: self.failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results` (`+` success, `-` failure); returns the state after each, as `U`/`D`.
    fn states(machine: &mut RiseFall, results: &str) -> String {
        results
            .chars()
            .map(|result| {
                machine.record(result == '+');
                if machine.is_up() { 'U' } else { 'D' }
            })
            .collect()
    }

    #[test]
    fn an_up_real_goes_down_after_fall_consecutive_failures() {
        let mut machine = RiseFall::new(2, 3, true);
        assert_eq!(states(&mut machine, "--+--+---+"), "UUUUUUUUDD");
        assert_eq!(machine.health(None).transitions, 1);
    }

    #[test]
    fn a_down_real_comes_back_after_rise_consecutive_successes() {
        let mut machine = RiseFall::new(2, 3, false);
        assert_eq!(states(&mut machine, "+-+-++-"), "DDDDDUU");
        let health = machine.health(None);
        assert_eq!((health.up, health.transitions), (true, 1));
    }

    #[test]
    fn record_says_when_the_state_flips() {
        let mut machine = RiseFall::new(1, 2, true);
        assert!(!machine.record(false));
        assert!(machine.record(false));
        assert!(!machine.record(false));
        assert!(machine.record(true));
    }

    #[test]
    fn counts_checks_failures_and_transitions() {
        let mut machine = RiseFall::new(1, 1, true);
        states(&mut machine, "+-+--+");
        let report = CheckReport {
            ok: true,
            latency: std::time::Duration::from_millis(3),
            detail: "connected".into(),
            at: std::time::SystemTime::UNIX_EPOCH,
        };
        assert_eq!(
            machine.health(Some(report.clone())),
            RealHealth {
                up: true,
                last: Some(report),
                transitions: 4,
                checks: 6,
                failures: 3,
            }
        );
    }

    #[test]
    fn resuming_keeps_state_and_counters() {
        let mut machine = RiseFall::new(2, 2, true);
        states(&mut machine, "+---");
        let mut resumed = RiseFall::resume(3, 1, &machine.health(None));
        assert_eq!(resumed.health(None), machine.health(None));
        assert_eq!(states(&mut resumed, "++-+"), "DDDD");
    }

    #[test]
    fn thresholds_of_zero_count_as_one() {
        let mut machine = RiseFall::new(0, 0, true);
        assert_eq!(states(&mut machine, "-+"), "DU");
    }

    #[test]
    fn new_thresholds_keep_the_state_and_restart_the_run() {
        let mut machine = RiseFall::new(2, 3, true);
        states(&mut machine, "--");
        machine.set_thresholds(2, 2);
        assert_eq!(states(&mut machine, "-"), "U");
        assert_eq!(states(&mut machine, "-"), "D");
        assert_eq!(machine.health(None).checks, 4);
    }
}
