//! Changes while running: priority, fault, owner, intervals learnt, initial state.

use super::*;

#[test]
fn lowering_the_masters_priority_hands_over_to_a_preempting_backup() {
    let mut network = elected_pair(router(A, 200, SECOND), router(B, 150, SECOND));
    network.run_until(T0 + ms(10_500));
    network.input(A, |machine, now| machine.set_priority(now, 100));
    network.run_for(30 * SECOND);
    assert!(
        network
            .adverts_sent(A)
            .contains(&(T0 + ns(11_218_750_000), 100)),
        "the next advert carries 100: {:?}",
        network.adverts_sent(A)
    );
    // B discards priority 100; its timer from the last 200 (10.21875 s) runs out.
    let takeover = T0 + ns(10_218_750_000) + ns(3_414_062_500);
    assert_eq!(network.masters(), [B], "{}", network.describe());
    assert_eq!(
        network.last_transition(B),
        (
            takeover,
            State::Backup,
            State::Master,
            Reason::Preempting {
                peer: network.address(A),
                peer_priority: 100,
                ours: 150
            }
        )
    );
    assert_eq!(network.last_transition(A).0, takeover);
}

#[test]
fn fault_and_recovery() {
    let mut network = default_pair();
    let failed = T0 + ms(10_500);
    network.run_until(failed);
    network.input(A, |machine, now| machine.set_fault(now, fault()));
    network.run_until(T0 + ms(20_500));
    assert_eq!(network.masters(), [B], "{}", network.describe());
    assert_eq!(
        network.last_transition(B).0,
        failed + ns(609_375_000),
        "A said goodbye: B waited only its skew"
    );
    assert_eq!(network.machine(A).state(), State::Fault);
    assert_eq!(
        network.adverts_sent(A).last(),
        Some(&(failed, 0)),
        "silent in FAULT"
    );

    network.input(A, |machine, now| machine.set_fault(now, None));
    network.run_for(30 * SECOND);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    let states: Vec<(State, State)> = network
        .transitions(A)
        .into_iter()
        .map(|(_, from, to, _)| (from, to))
        .collect();
    assert_eq!(
        states,
        [
            (State::Initialize, State::Backup),
            (State::Backup, State::Master),
            (State::Master, State::Fault),
            (State::Fault, State::Backup),
            (State::Backup, State::Master),
        ]
    );
    assert_eq!(
        network.last_transition(A).0,
        T0 + ms(20_500) + ns(3_218_750_000)
    );
}

#[test]
fn owner_takes_over_at_once_and_keeps_the_role() {
    let mut network = Network::new(vec![
        router(A, OWNER_PRIORITY, SECOND),
        router(B, 100, SECOND),
    ]);
    network.start(B);
    network.run_until(T0 + ms(10_500));
    assert_eq!(network.masters(), [B], "{}", network.describe());
    network.start(A);
    assert_eq!(
        network.last_transition(A),
        (
            T0 + ms(10_500),
            State::Initialize,
            State::Master,
            Reason::AddressOwner
        )
    );
    network.run_for(60 * SECOND);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(
        network.last_transition(B).0,
        T0 + ms(10_500),
        "B yields to the owner's first advert"
    );
}

#[test]
fn sub_second_interval_fails_over_in_about_a_third_of_a_second() {
    let mut network = Network::started(vec![router(A, 200, ms(100)), router(B, 100, ms(100))]);
    network.run_until(T0 + ms(10_050));
    // A: master at 300 ms + 21.875 ms, then every 100 ms.
    assert_eq!(network.last_transition(A).0, T0 + ns(321_875_000));
    network.crash(A);
    network.run_for(5 * SECOND);
    let last_heard = network.last_advert_before(A, network.now);
    assert_eq!(last_heard, T0 + ns(10_021_875_000));
    assert_eq!(
        network.last_transition(B),
        (
            last_heard + ns(360_937_500),
            State::Backup,
            State::Master,
            Reason::MasterDown {
                waited: ns(360_937_500)
            }
        ),
        "{}",
        network.describe()
    );
}

#[test]
fn learns_the_interval_of_a_slower_peer() {
    // B (100 ms, priority 100) starts alone in effect: it leads after 360.9375 ms. A, a
    // keepalived at 1 s with priority 200, preempts it at 3.21875 s.
    let mut network = Network::started(vec![router(A, 200, SECOND), router(B, 100, ms(100))]);
    network.run_until(T0 + ms(10_500));
    assert_eq!(
        network
            .transitions(B)
            .iter()
            .map(|(at, _, to, _)| (*at, *to))
            .collect::<Vec<_>>(),
        [
            (T0, State::Backup),
            (T0 + ns(360_937_500), State::Master),
            (T0 + ns(3_218_750_000), State::Backup),
        ],
        "{}",
        network.describe()
    );
    let b = network.machine(B);
    assert_eq!(b.master_adver_interval(), SECOND, "learned from A");
    assert_eq!(b.master_down_interval(), ns(3_609_375_000));

    network.crash(A);
    network.run_for(30 * SECOND);
    assert_eq!(
        network.last_transition(B).0,
        T0 + ns(10_218_750_000) + ns(3_609_375_000),
        "B waits on A's interval, not its own: {}",
        network.describe()
    );
}

#[test]
fn a_slower_backup_learns_a_faster_masters_interval() {
    let mut network = Network::started(vec![router(A, 200, ms(100)), router(B, 100, SECOND)]);
    network.run_until(T0 + ms(10_050));
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(network.machine(B).master_adver_interval(), ms(100));
    network.crash(A);
    network.run_for(5 * SECOND);
    assert_eq!(
        network.last_transition(B).0,
        T0 + ns(10_021_875_000) + ns(360_937_500),
        "{}",
        network.describe()
    );
}

#[test]
fn initial_state_master_takes_over_quickly_when_alone() {
    let mut network = Network::started(vec![Params {
        initial_state: InitialState::Master,
        ..router(A, 100, SECOND)
    }]);
    network.run_for(10 * SECOND);
    assert_eq!(
        network.last_transition(A),
        (
            T0 + ns(1_609_375_000),
            State::Backup,
            State::Master,
            Reason::InitialMaster {
                waited: ns(1_609_375_000)
            }
        )
    );
}

#[test]
fn initial_state_master_does_not_steal_from_a_live_higher_master() {
    let mut network = Network::new(vec![
        router(A, 200, SECOND),
        Params {
            initial_state: InitialState::Master,
            ..router(B, 100, SECOND)
        },
    ]);
    network.start(A);
    network.run_until(T0 + ms(10_500));
    network.start(B);
    network.run_for(60 * SECOND);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(
        network.transitions(B).len(),
        1,
        "B stayed BACKUP: {}",
        network.describe()
    );
}
