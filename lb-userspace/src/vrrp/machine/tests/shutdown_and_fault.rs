//! Shutdown and FAULT: the priority-0 goodbye, leaving and re-entering.

use super::*;

#[test]
fn shutdown_master_says_goodbye_with_priority_zero() {
    let (mut machine, became_master) = master(params(100, SECOND));
    let stop = became_master + ms(400);
    assert_eq!(
        machine.shutdown(stop),
        [
            Action::SendAdvert { priority: 0 },
            transition(State::Master, State::Initialize, Reason::Shutdown),
        ]
    );
    assert_eq!(machine.next_deadline(), None);
    assert_eq!(machine.poll(stop + 10 * SECOND), []);
    assert_eq!(machine.receive(stop + SECOND, v4(2), 200, SECOND), []);
    assert_eq!(machine.master_address(), None);
    assert_eq!(machine.shutdown(stop + SECOND), [], "already stopped");
}

#[test]
fn shutdown_backup_is_silent_and_start_runs_again() {
    let mut machine = started(params(100, SECOND));
    let stop = T0 + SECOND;
    assert_eq!(
        machine.shutdown(stop),
        [transition(
            State::Backup,
            State::Initialize,
            Reason::Shutdown
        )]
    );
    assert_eq!(machine.next_deadline(), None);
    let restart = T0 + 5 * SECOND;
    assert_eq!(
        machine.start(restart),
        [transition(
            State::Initialize,
            State::Backup,
            Reason::Startup
        )]
    );
    assert_eq!(machine.next_deadline(), Some(restart + ns(3_609_375_000)));
}

#[test]
fn shutdown_before_start_does_nothing() {
    let mut machine = Machine::new(params(100, SECOND));
    assert_eq!(machine.shutdown(T0), []);
    assert_eq!(machine.state(), State::Initialize);
}

// --- Fault ---

#[test]
fn fault_from_master_says_goodbye_and_stops() {
    let (mut machine, became_master) = master(params(100, SECOND));
    let failed = became_master + ms(400);
    assert_eq!(
        machine.set_fault(failed, fault()),
        [
            Action::SendAdvert { priority: 0 },
            transition(
                State::Master,
                State::Fault,
                Reason::Fault(ETH1_DOWN.to_owned())
            ),
        ]
    );
    assert_eq!(machine.next_deadline(), None, "no adverts in FAULT");
    assert_eq!(machine.poll(failed + 10 * SECOND), []);
    assert_eq!(machine.receive(failed + SECOND, v4(2), 50, SECOND), []);
    assert_eq!(machine.master_address(), None);
    assert_eq!(machine.fault(), Some(ETH1_DOWN));
    assert_eq!(
        Reason::Fault(ETH1_DOWN.to_owned()).to_string(),
        "tracked interface eth1 down"
    );
}

#[test]
fn fault_from_backup_stops_the_timer() {
    let mut machine = started(params(100, SECOND));
    assert_eq!(
        machine.set_fault(T0 + SECOND, fault()),
        [transition(
            State::Backup,
            State::Fault,
            Reason::Fault(ETH1_DOWN.to_owned())
        )]
    );
    assert_eq!(machine.next_deadline(), None);
}

#[test]
fn fault_cleared_starts_again_as_backup_with_a_new_preempt_delay() {
    let mut machine = started(Params {
        preempt_delay: 5 * SECOND,
        ..params(150, SECOND)
    });
    machine.set_fault(T0 + SECOND, fault());
    let cleared = T0 + 60 * SECOND;
    let reason = Reason::FaultCleared {
        was: ETH1_DOWN.to_owned(),
    };
    assert_eq!(
        machine.set_fault(cleared, None),
        [transition(State::Fault, State::Backup, reason.clone())]
    );
    assert_eq!(
        reason.to_string(),
        "fault cleared (was: tracked interface eth1 down)"
    );
    let down = ns(3_414_062_500);
    assert_eq!(machine.next_deadline(), Some(cleared + down));
    assert_eq!(machine.fault(), None);
    // The window opened when the fault cleared, long after startup's closed.
    let heard = cleared + SECOND;
    machine.receive(heard, v4(2), 100, SECOND);
    assert_eq!(machine.next_deadline(), Some(heard + down), "tolerated");
}

#[test]
fn owner_leaving_fault_becomes_master_at_once() {
    let mut machine = started(params(OWNER_PRIORITY, SECOND));
    machine.set_fault(T0 + SECOND, fault());
    let cleared = T0 + 2 * SECOND;
    assert_eq!(
        machine.set_fault(cleared, None),
        [
            Action::SendAdvert { priority: 255 },
            transition(
                State::Fault,
                State::Master,
                Reason::FaultCleared {
                    was: ETH1_DOWN.to_owned()
                }
            ),
        ]
    );
    assert_eq!(machine.next_deadline(), Some(cleared + SECOND));
}

#[test]
fn fault_before_start_is_entered_at_start() {
    let mut machine = Machine::new(params(100, SECOND));
    assert_eq!(machine.set_fault(T0, fault()), []);
    assert_eq!(machine.state(), State::Initialize);
    assert_eq!(
        machine.start(T0),
        [transition(
            State::Initialize,
            State::Fault,
            Reason::Fault(ETH1_DOWN.to_owned())
        )]
    );
    assert_eq!(machine.next_deadline(), None);
    assert_eq!(
        machine.set_fault(T0 + SECOND, None).first(),
        Some(&transition(
            State::Fault,
            State::Backup,
            Reason::FaultCleared {
                was: ETH1_DOWN.to_owned()
            }
        ))
    );
}

#[test]
fn a_new_fault_while_in_fault_replaces_the_words_only() {
    let mut machine = started(params(100, SECOND));
    machine.set_fault(T0 + SECOND, fault());
    let other = "tracked interface eth2 down".to_owned();
    assert_eq!(machine.set_fault(T0 + 2 * SECOND, Some(other.clone())), []);
    assert_eq!(machine.fault(), Some(other.as_str()));
    assert_eq!(
        machine.set_fault(T0 + 3 * SECOND, None),
        [transition(
            State::Fault,
            State::Backup,
            Reason::FaultCleared { was: other }
        )]
    );
}

#[test]
fn clearing_a_fault_that_is_not_there_does_nothing() {
    let mut machine = started(params(100, SECOND));
    assert_eq!(machine.set_fault(T0 + SECOND, None), []);
    assert_eq!(machine.state(), State::Backup);
    assert_eq!(machine.next_deadline(), Some(T0 + ns(3_609_375_000)));
}
