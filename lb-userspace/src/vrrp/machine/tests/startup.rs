//! Startup (RFC 5798 §6.4.1): backup, owner, `initial_state: master`, preempt hold.

use super::*;

#[test]
fn startup_as_backup_waits_master_down_interval() {
    let mut machine = Machine::new(params(100, SECOND));
    assert_eq!(machine.state(), State::Initialize);
    assert_eq!(machine.next_deadline(), None, "no timer before start");
    assert_eq!(machine.last_transition(), None);

    let actions = machine.start(T0);
    assert_eq!(
        actions,
        [transition(
            State::Initialize,
            State::Backup,
            Reason::Startup
        )]
    );
    assert_eq!(machine.next_deadline(), Some(T0 + ns(3_609_375_000)));
    assert_eq!(machine.master_adver_interval(), SECOND);
    assert_eq!(machine.master_address(), None, "no master heard yet");
    assert_eq!(
        machine.last_transition(),
        Some((T0, State::Initialize, State::Backup, &Reason::Startup))
    );
}

#[test]
fn startup_as_owner_advertises_and_becomes_master_even_with_initial_state_backup() {
    let mut machine = Machine::new(params(OWNER_PRIORITY, SECOND));
    let actions = machine.start(T0);
    assert_eq!(
        actions,
        [
            Action::SendAdvert { priority: 255 },
            transition(State::Initialize, State::Master, Reason::AddressOwner),
        ]
    );
    assert_eq!(machine.next_deadline(), Some(T0 + SECOND), "Adver_Timer");
    assert_eq!(machine.master_address(), Some(v4(1)), "ourselves");
}

#[test]
fn initial_state_master_waits_one_interval_plus_skew_then_takes_over() {
    let mut machine = Machine::new(Params {
        initial_state: InitialState::Master,
        ..params(100, SECOND)
    });
    assert_eq!(
        machine.start(T0),
        [transition(
            State::Initialize,
            State::Backup,
            Reason::Startup
        )]
    );
    let quick = T0 + ns(1_609_375_000);
    assert_eq!(machine.next_deadline(), Some(quick));
    assert_eq!(machine.poll(quick - ns(1)), [], "not yet due");
    let waited = ns(1_609_375_000);
    assert_eq!(
        machine.poll(quick),
        [
            Action::SendAdvert { priority: 100 },
            transition(
                State::Backup,
                State::Master,
                Reason::InitialMaster { waited }
            ),
        ]
    );
    assert_eq!(machine.next_deadline(), Some(quick + SECOND));
}

#[test]
fn initial_state_master_follows_a_live_higher_master() {
    let mut machine = started(Params {
        initial_state: InitialState::Master,
        ..params(100, SECOND)
    });
    let heard = T0 + ms(500);
    assert_eq!(machine.receive(heard, v4(2), 200, SECOND), []);
    assert_eq!(machine.next_deadline(), Some(heard + ns(3_609_375_000)));
    assert_eq!(machine.state(), State::Backup);
    assert_eq!(machine.master_address(), Some(v4(2)));
}

#[test]
fn preempt_hold_makes_owner_and_initial_master_wait_master_down() {
    let owner = params(OWNER_PRIORITY, SECOND);
    let initial_master = Params {
        initial_state: InitialState::Master,
        ..params(100, SECOND)
    };
    for (params, down) in [
        (owner, ns(3_003_906_250)),
        (initial_master, ns(3_609_375_000)),
    ] {
        let mut machine = Machine::new(params.clone());
        assert_eq!(machine.set_preempt_hold(T0, true), []);
        assert_eq!(
            machine.start(T0),
            [transition(
                State::Initialize,
                State::Backup,
                Reason::Startup
            )],
            "{params:?}"
        );
        assert_eq!(machine.next_deadline(), Some(T0 + down), "{params:?}");
    }
}

#[test]
fn start_is_ignored_unless_in_initialize() {
    let mut machine = started(params(100, SECOND));
    assert_eq!(machine.start(T0 + SECOND), []);
    assert_eq!(machine.next_deadline(), Some(T0 + ns(3_609_375_000)));
    let (mut machine, became_master) = master(params(100, SECOND));
    assert_eq!(machine.start(became_master), []);
    assert_eq!(machine.state(), State::Master);
}
