//! Priority changes, and the words states and reasons print as.

use super::*;

#[test]
fn set_priority_clamps_and_spares_the_owner() {
    let mut machine = started(params(100, SECOND));
    for (effective, expected) in [(0, 1), (255, 254), (42, 42)] {
        assert_eq!(machine.set_priority(T0, effective), []);
        assert_eq!(machine.priority(), expected, "set to {effective}");
    }
    let mut owner = started(params(OWNER_PRIORITY, SECOND));
    owner.set_priority(T0, 100);
    assert_eq!(owner.priority(), OWNER_PRIORITY);
}

#[test]
fn set_priority_reaches_the_next_advert_and_the_backup_timers() {
    let (mut machine, became_master) = master(params(100, SECOND));
    machine.set_priority(became_master, 50);
    assert_eq!(
        machine.poll(became_master + SECOND),
        [Action::SendAdvert { priority: 50 }]
    );

    let mut backup = started(params(100, SECOND));
    backup.set_priority(T0 + ms(500), 200);
    assert_eq!(backup.skew_time(), ns(218_750_000));
    assert_eq!(backup.master_down_interval(), ns(3_218_750_000));
    assert_eq!(
        backup.next_deadline(),
        Some(T0 + ns(3_609_375_000)),
        "the running timer stays as set"
    );
    let heard = T0 + SECOND;
    backup.receive(heard, v4(2), 250, SECOND);
    assert_eq!(backup.next_deadline(), Some(heard + ns(3_218_750_000)));
    // Now above the master's 150: its adverts are discarded, so Master_Down preempts.
    backup.receive(T0 + 2 * SECOND, v4(2), 150, SECOND);
    assert_eq!(deadline_of(&backup), heard + ns(3_218_750_000));
}

// --- Words ---

#[test]
fn states_print_as_keepalived_does() {
    let names = [
        (State::Initialize, "INIT"),
        (State::Backup, "BACKUP"),
        (State::Master, "MASTER"),
        (State::Fault, "FAULT"),
    ];
    for (state, name) in names {
        assert_eq!(state.to_string(), name);
    }
}

#[test]
fn reasons_read_as_sentences() {
    let cases = [
        (Reason::Startup, "startup"),
        (
            Reason::AddressOwner,
            "address owner (priority 255) at startup",
        ),
        (
            Reason::MasterDown { waited: ms(341) },
            "no advert for 0.341s (master down interval)",
        ),
        (
            Reason::MasterDown { waited: 3 * SECOND },
            "no advert for 3s (master down interval)",
        ),
        (
            Reason::InitialMaster {
                waited: ns(1_609_375_000),
            },
            "initial state MASTER, no master heard for 1.609s",
        ),
        (
            Reason::InitialMaster { waited: ms(1100) },
            "initial state MASTER, no master heard for 1.1s",
        ),
        (
            Reason::HigherPriority {
                peer: "2001:db8::2".parse().expect("literal"),
                peer_priority: 200,
                ours: 150,
            },
            "advert from 2001:db8::2 with priority 200 > ours 150",
        ),
        (Reason::Shutdown, "shutdown"),
    ];
    for (reason, sentence) in cases {
        assert_eq!(reason.to_string(), sentence, "{reason:?}");
    }
}
