//! Elections and handovers: priority, tie-break, graceful stop, silent death, delay, three routers.

use super::*;

#[test]
fn two_routers_elect_the_higher_priority() {
    let mut network = Network::started(vec![router(A, 200, SECOND), router(B, 100, SECOND)]);
    network.run_until(T0 + 60 * SECOND);
    let elected = T0 + ns(3_218_750_000);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(
        network.transitions(A),
        [
            (T0, State::Initialize, State::Backup, Reason::Startup),
            (
                elected,
                State::Backup,
                State::Master,
                Reason::MasterDown {
                    waited: ns(3_218_750_000)
                }
            ),
        ]
    );
    assert_eq!(
        network.transitions(B),
        [(T0, State::Initialize, State::Backup, Reason::Startup)],
        "B never led"
    );
    // Every second from the election: at +0 s … +56 s (the 57th is at 59.21875 s).
    let adverts = network.adverts_sent(A);
    assert_eq!(adverts.len(), 57, "{adverts:?}");
    assert_eq!(adverts.last(), Some(&(elected + 56 * SECOND, 200)));
    assert_eq!(
        network.machine(B).master_address(),
        Some(network.address(A))
    );
    assert_eq!(
        network.machine(B).next_deadline(),
        Some(elected + 56 * SECOND + ns(3_609_375_000)),
        "B's Master_Down_Timer counts from A's last advert"
    );
}

#[test]
fn equal_priority_elects_the_higher_primary_address() {
    // .9 and .10: a textual comparison would pick .9.
    let low = Params {
        primary_address: v4(9),
        ..params(100, SECOND)
    };
    let high = Params {
        primary_address: v4(10),
        ..params(100, SECOND)
    };
    let mut network = Network::started(vec![low, high]);
    network.run_until(T0 + 60 * SECOND);
    let both_timed_out = T0 + ns(3_609_375_000);
    assert_eq!(network.masters(), [B], "{}", network.describe());
    assert_eq!(
        network.last_transition(A),
        (
            both_timed_out,
            State::Master,
            State::Backup,
            Reason::HigherAddress {
                peer: v4(10),
                priority: 100
            }
        ),
        "both became master at once, then the lower address yielded"
    );
    // Once for A's claim, once for the last advert A sent as it stood down.
    assert_eq!(
        network.reannounces(B),
        [(both_timed_out, v4(9)), (both_timed_out, v4(9))]
    );
    assert_eq!(network.reannounces(A), [], "the loser announces nothing");
    assert_eq!(network.transitions(B).len(), 2, "{}", network.describe());
}

#[test]
fn graceful_stop_hands_over_within_skew_time() {
    let mut network = default_pair();
    let stop = T0 + ms(10_500);
    network.run_until(stop);
    network.stop(A);
    assert_eq!(network.adverts_sent(A).last(), Some(&(stop, 0)), "goodbye");
    network.run_for(30 * SECOND);
    assert_eq!(network.masters(), [B], "{}", network.describe());
    assert_eq!(
        network.last_transition(B),
        (
            stop + ns(609_375_000),
            State::Backup,
            State::Master,
            Reason::MasterStopped {
                peer: network.address(A)
            }
        )
    );
}

#[test]
fn silent_death_hands_over_after_exactly_master_down_interval() {
    let mut network = default_pair();
    network.run_until(T0 + ms(10_500));
    network.crash(A);
    network.run_for(30 * SECOND);
    let last_heard = network.last_advert_before(A, network.now);
    assert_eq!(last_heard, T0 + ns(10_218_750_000));
    assert_eq!(network.masters(), [B], "{}", network.describe());
    assert_eq!(
        network.last_transition(B),
        (
            last_heard + ns(3_609_375_000),
            State::Backup,
            State::Master,
            Reason::MasterDown {
                waited: ns(3_609_375_000)
            }
        )
    );
}

#[test]
fn network_delay_adds_to_the_takeover_time() {
    let mut network = Network::new(vec![router(A, 200, SECOND), router(B, 100, SECOND)]);
    network.delay = ms(5);
    network.start(A);
    network.start(B);
    network.run_until(T0 + ms(10_500));
    assert_eq!(network.masters(), [A], "{}", network.describe());
    network.crash(A);
    network.run_for(30 * SECOND);
    // Sent at 10.21875 s, heard 5 ms later, then Master_Down_Interval.
    assert_eq!(
        network.last_transition(B).0,
        T0 + ns(10_223_750_000) + ns(3_609_375_000),
        "{}",
        network.describe()
    );
}

#[test]
fn three_routers_the_higher_backup_takes_over_first() {
    let mut network = Network::started(vec![
        router(A, 200, SECOND),
        router(B, 150, SECOND),
        router(C, 100, SECOND),
    ]);
    network.run_until(T0 + ms(10_500));
    network.crash(A);
    network.run_for(30 * SECOND);
    assert_eq!(network.masters(), [B], "{}", network.describe());
    // B's skew (414 ms) runs out before C's (609 ms); C hears B and follows.
    assert_eq!(
        network.last_transition(B).0,
        T0 + ns(10_218_750_000) + ns(3_414_062_500)
    );
    assert_eq!(network.transitions(C).len(), 1, "{}", network.describe());
    assert_eq!(
        network.machine(C).master_address(),
        Some(network.address(B))
    );
}
