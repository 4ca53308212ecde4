//! Fail-back: with and without preempt, preempt delay and hold, and a healed split brain.

use super::*;

#[test]
fn fail_back_with_preempt() {
    let mut network = default_pair();
    network.run_until(T0 + ms(10_500));
    network.crash(A);
    network.run_until(T0 + ms(20_500));
    assert_eq!(network.masters(), [B], "{}", network.describe());
    network.start(A);
    network.run_for(30 * SECOND);
    // A's adverts heard from B (priority 100) are discarded: A's timer from its restart runs out.
    let takeover = T0 + ms(20_500) + ns(3_218_750_000);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(
        network.last_transition(A),
        (
            takeover,
            State::Backup,
            State::Master,
            Reason::Preempting {
                peer: network.address(B),
                peer_priority: 100,
                ours: 200
            }
        )
    );
    assert_eq!(
        network.last_transition(B),
        (
            takeover,
            State::Master,
            State::Backup,
            Reason::HigherPriority {
                peer: network.address(A),
                peer_priority: 200,
                ours: 100
            }
        )
    );
}

#[test]
fn no_fail_back_without_preempt() {
    let mut network = elected_pair(
        Params {
            preempt: false,
            ..router(A, 200, SECOND)
        },
        router(B, 100, SECOND),
    );
    network.run_until(T0 + ms(10_500));
    network.crash(A);
    network.run_until(T0 + ms(20_500));
    network.start(A);
    network.run_for(60 * SECOND);
    assert_eq!(network.masters(), [B], "{}", network.describe());
    assert_eq!(
        network.machine(A).master_address(),
        Some(network.address(B))
    );
    assert_eq!(network.transitions(A).len(), 3, "{}", network.describe());
}

#[test]
fn preempt_delay_postpones_fail_back() {
    let mut network = elected_pair(
        Params {
            preempt_delay: 10 * SECOND,
            ..router(A, 200, SECOND)
        },
        router(B, 100, SECOND),
    );
    network.run_until(T0 + ms(10_500));
    network.crash(A);
    network.run_until(T0 + ms(20_500));
    network.start(A);
    network.run_for(30 * SECOND);
    // B (master since 13.828125 s) advertises at .828125; A follows those before 30.5 s.
    let last_followed = T0 + ns(29_828_125_000);
    assert_eq!(
        network.last_transition(A),
        (
            last_followed + ns(3_218_750_000),
            State::Backup,
            State::Master,
            Reason::Preempting {
                peer: network.address(B),
                peer_priority: 100,
                ours: 200
            }
        ),
        "{}",
        network.describe()
    );
}

/// A (200) restarts held while B (100) is master.
fn held_fail_back() -> Network {
    let mut network = default_pair();
    network.run_until(T0 + ms(10_500));
    network.crash(A);
    network.run_until(T0 + ms(20_500));
    network.input(A, |machine, now| machine.set_preempt_hold(now, true));
    network.start(A);
    network.run_for(60 * SECOND);
    assert_eq!(network.masters(), [B], "held: {}", network.describe());
    network
}

#[test]
fn preempt_hold_blocks_preemption_but_not_takeover_from_a_silent_master() {
    let mut network = held_fail_back();
    network.crash(B);
    network.run_for(30 * SECOND);
    let last_heard = network.last_advert_before(B, network.now);
    assert_eq!(last_heard, T0 + ns(79_828_125_000));
    assert_eq!(
        network.last_transition(A),
        (
            last_heard + ns(3_218_750_000),
            State::Backup,
            State::Master,
            Reason::MasterDown {
                waited: ns(3_218_750_000)
            }
        ),
        "{}",
        network.describe()
    );
}

#[test]
fn preempt_hold_still_takes_over_from_a_stopping_master() {
    let mut network = held_fail_back();
    let stop = network.now;
    network.stop(B);
    network.run_for(30 * SECOND);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(network.last_transition(A).0, stop + ns(218_750_000));
}

#[test]
fn releasing_preempt_hold_lets_the_backup_preempt() {
    let mut network = held_fail_back();
    let released = network.now;
    assert_eq!(released, T0 + ms(80_500));
    network.input(A, |machine, now| machine.set_preempt_hold(now, false));
    network.run_for(30 * SECOND);
    // The last of B's adverts A followed came at 79.828125 s.
    assert_eq!(
        network.last_transition(A),
        (
            T0 + ns(79_828_125_000) + ns(3_218_750_000),
            State::Backup,
            State::Master,
            Reason::Preempting {
                peer: network.address(B),
                peer_priority: 100,
                ours: 200
            }
        ),
        "{}",
        network.describe()
    );
    assert_eq!(network.masters(), [A]);
}

/// Partitioned at 10.5 s: B becomes master too at 13.828125 s.
fn split_brain() -> Network {
    let mut network = default_pair();
    network.run_until(T0 + ms(10_500));
    network.partitioned = true;
    network.run_until(T0 + ms(20_300));
    assert_eq!(network.masters(), [A, B], "{}", network.describe());
    assert_eq!(network.last_transition(B).0, T0 + ns(13_828_125_000));
    network
}

#[test]
fn healed_split_brain_leaves_one_master_and_the_winner_reannounces() {
    let mut network = split_brain();
    network.run_until(T0 + ms(20_500));
    let (b_next, a_next) = (
        network.machine(B).next_deadline(),
        network.machine(A).next_deadline(),
    );
    assert!(
        b_next < a_next,
        "B must speak first: {}",
        network.describe()
    );
    network.partitioned = false;
    network.run_for(60 * SECOND);

    let healed = T0 + ns(20_828_125_000);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(
        network.reannounces(A),
        [(healed, network.address(B)), (healed, network.address(B))],
        "A heard B's claim, and B's last advert as it stood down, and announced its \
         addresses again for each"
    );
    assert_eq!(network.reannounces(B), []);
    assert_eq!(
        network.last_transition(B),
        (
            healed,
            State::Master,
            State::Backup,
            Reason::HigherPriority {
                peer: network.address(A),
                peer_priority: 200,
                ours: 100
            }
        )
    );
    assert_eq!(
        network.transitions(A).len(),
        2,
        "A never left MASTER: {}",
        network.describe()
    );
}

/// The winner's advert reaches the loser first: the loser stands down, and the last advert it
/// sends as it does tells the winner, which announces its addresses again (the segment's ARP
/// caches may still point at the loser; keepalived#166). Found by the chaos test's partition.
#[test]
fn healed_split_brain_where_the_winner_speaks_first_still_reannounces() {
    let mut network = split_brain();
    network.run_until(T0 + 21 * SECOND);
    network.partitioned = false;
    network.run_for(60 * SECOND);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    let stood_down = T0 + ns(21_218_750_000);
    assert_eq!(network.last_transition(B).0, stood_down);
    assert_eq!(network.reannounces(A), [(stood_down, network.address(B))]);
    assert_eq!(network.reannounces(B), []);
}
