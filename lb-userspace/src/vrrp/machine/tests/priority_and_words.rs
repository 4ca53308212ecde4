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

#[test]
fn a_reload_changes_the_interval_and_preempt_but_never_the_routers_identity() {
    let (mut machine, became_master) = master(params(100, SECOND));
    let reloaded = Params {
        vrid: 99,
        priority: 120,
        advert_interval: ms(100),
        preempt: false,
        preempt_delay: ms(500),
        initial_state: InitialState::Master,
        primary_address: v4(9),
    };
    assert_eq!(machine.reconfigure(reloaded), Ok(vec![]));
    let now = machine.params();
    assert_eq!(
        (
            now.advert_interval,
            now.preempt,
            now.preempt_delay,
            now.priority
        ),
        (ms(100), false, ms(500), 120)
    );
    assert_eq!(
        (now.vrid, now.initial_state, now.primary_address),
        (51, InitialState::Backup, v4(1)),
        "what makes the router another one stays"
    );
    // The advert due at the old interval goes; the next at the new one.
    assert_eq!(
        machine.poll(became_master + SECOND),
        [Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(deadline_of(&machine), became_master + SECOND + ms(100));
    // An owner stays one, and a router does not become one.
    let mut owner = started(params(OWNER_PRIORITY, SECOND));
    owner.reconfigure(params(100, SECOND)).unwrap();
    assert_eq!(owner.params().priority, OWNER_PRIORITY);
    machine.reconfigure(params(OWNER_PRIORITY, SECOND)).unwrap();
    assert_eq!(machine.params().priority, OWNER_PRIORITY - 1);
    assert!(machine.reconfigure(params(100, ms(15))).is_err());
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
