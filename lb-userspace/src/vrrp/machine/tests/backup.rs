//! Backup (§6.4.2): the master down timer, following and preempting a master, preempt hold and delay.

use super::*;

#[test]
fn backup_becomes_master_when_master_down_timer_fires() {
    let mut machine = started(params(100, SECOND));
    let down = T0 + ns(3_609_375_000);
    assert_eq!(machine.poll(down - ns(1)), [], "one nanosecond early");
    let actions = machine.poll(down);
    let reason = Reason::MasterDown {
        waited: ns(3_609_375_000),
    };
    assert_eq!(
        actions,
        [
            Action::SendAdvert { priority: 100 },
            transition(State::Backup, State::Master, reason.clone()),
        ]
    );
    assert_eq!(
        reason.to_string(),
        "no advert for 3.609s (master down interval)"
    );
    assert_eq!(machine.next_deadline(), Some(down + SECOND), "Adver_Timer");
    assert_eq!(
        machine.last_transition(),
        Some((down, State::Backup, State::Master, &reason))
    );
}

#[test]
fn backup_follows_a_higher_or_equal_master_and_learns_its_interval() {
    let mut machine = started(params(100, ms(100)));
    let first = T0 + SECOND;
    assert_eq!(machine.receive(first, v4(2), 200, SECOND), []);
    assert_eq!(machine.master_adver_interval(), SECOND);
    assert_eq!(machine.skew_time(), ns(609_375_000));
    assert_eq!(machine.master_down_interval(), ns(3_609_375_000));
    assert_eq!(machine.next_deadline(), Some(first + ns(3_609_375_000)));
    assert_eq!(machine.master_address(), Some(v4(2)));

    // Equal priority is followed too, whatever the addresses (§6.4.2 says ≥).
    let second = T0 + 2 * SECOND;
    assert_eq!(machine.receive(second, v4(0), 100, 2 * SECOND), []);
    assert_eq!(machine.master_adver_interval(), 2 * SECOND);
    // 6 s + 156 × 2 s / 256 = 7.21875 s.
    assert_eq!(machine.next_deadline(), Some(second + ns(7_218_750_000)));
    assert_eq!(machine.master_address(), Some(v4(0)));
    assert_eq!(machine.state(), State::Backup);
}

#[test]
fn backup_priority_zero_advert_sets_master_down_timer_to_skew_time() {
    let mut machine = started(params(100, SECOND));
    machine.receive(T0 + SECOND, v4(2), 200, SECOND);
    let goodbye = T0 + 2 * SECOND;
    assert_eq!(machine.receive(goodbye, v4(2), STOP_PRIORITY, SECOND), []);
    let takeover = goodbye + ns(609_375_000);
    assert_eq!(machine.next_deadline(), Some(takeover));
    let reason = Reason::MasterStopped { peer: v4(2) };
    assert_eq!(
        machine.poll(takeover),
        [
            Action::SendAdvert { priority: 100 },
            transition(State::Backup, State::Master, reason.clone()),
        ]
    );
    assert_eq!(
        reason.to_string(),
        "priority 0 advert from 192.0.2.2 (its master stopped)"
    );
}

#[test]
fn backup_with_preempt_discards_a_lower_master_and_preempts_it() {
    let mut machine = started(params(150, SECOND));
    let down = T0 + ns(3_414_062_500);
    assert_eq!(machine.next_deadline(), Some(down));
    assert_eq!(machine.receive(T0 + SECOND, v4(2), 100, SECOND), []);
    assert_eq!(
        machine.next_deadline(),
        Some(down),
        "discarded: timer not reset"
    );
    assert_eq!(
        machine.master_address(),
        Some(v4(2)),
        "still the master we hear"
    );
    let reason = Reason::Preempting {
        peer: v4(2),
        peer_priority: 100,
        ours: 150,
    };
    assert_eq!(
        machine.poll(down),
        [
            Action::SendAdvert { priority: 150 },
            transition(State::Backup, State::Master, reason.clone()),
        ]
    );
    assert_eq!(
        reason.to_string(),
        "preempting master 192.0.2.2: its priority 100 < ours 150"
    );
}

#[test]
fn backup_without_preempt_follows_a_lower_master() {
    let mut machine = started(Params {
        preempt: false,
        ..params(150, SECOND)
    });
    let heard = T0 + SECOND;
    assert_eq!(machine.receive(heard, v4(2), 100, SECOND), []);
    assert_eq!(machine.next_deadline(), Some(heard + ns(3_414_062_500)));
}

#[test]
fn preempt_hold_follows_a_lower_master_until_released() {
    let mut machine = Machine::new(params(150, SECOND));
    machine.set_preempt_hold(T0, true);
    machine.start(T0);
    let held = T0 + SECOND;
    assert_eq!(machine.receive(held, v4(2), 100, SECOND), []);
    let down = held + ns(3_414_062_500);
    assert_eq!(machine.next_deadline(), Some(down), "followed while held");
    assert!(machine.preempt_hold());

    assert_eq!(machine.set_preempt_hold(T0 + ms(1500), false), []);
    assert_eq!(machine.receive(T0 + 2 * SECOND, v4(2), 100, SECOND), []);
    assert_eq!(
        machine.next_deadline(),
        Some(down),
        "discarded once released"
    );
    assert_eq!(
        machine.poll(down).last(),
        Some(&transition(
            State::Backup,
            State::Master,
            Reason::Preempting {
                peer: v4(2),
                peer_priority: 100,
                ours: 150
            }
        ))
    );
}

#[test]
fn preempt_hold_still_takes_over_from_a_stopping_master() {
    let mut machine = Machine::new(params(150, SECOND));
    machine.set_preempt_hold(T0, true);
    machine.start(T0);
    machine.receive(T0 + SECOND, v4(2), 100, SECOND);
    let goodbye = T0 + 2 * SECOND;
    machine.receive(goodbye, v4(2), STOP_PRIORITY, SECOND);
    assert_eq!(machine.next_deadline(), Some(goodbye + ns(414_062_500)));
}

#[test]
fn preempt_delay_tolerates_a_lower_master_after_startup() {
    let mut machine = started(Params {
        preempt_delay: 5 * SECOND,
        ..params(150, SECOND)
    });
    let down = ns(3_414_062_500);
    for second in 1..5 {
        let heard = T0 + second * SECOND;
        machine.receive(heard, v4(2), 100, SECOND);
        assert_eq!(
            machine.next_deadline(),
            Some(heard + down),
            "followed {second} s after startup, within the 5 s delay"
        );
    }
    // The window is [T0, T0 + 5 s): at its end the advert is discarded.
    machine.receive(T0 + 5 * SECOND, v4(2), 100, SECOND);
    assert_eq!(machine.next_deadline(), Some(T0 + 4 * SECOND + down));
}

#[test]
fn preempt_delay_opens_at_the_first_lower_advert_after_a_higher_one() {
    let mut machine = started(Params {
        preempt_delay: 5 * SECOND,
        ..params(150, SECOND)
    });
    let down = ns(3_414_062_500);
    // (seconds after T0, advert priority, followed?). Startup's window is [T0, T0 + 5 s); a
    // higher advert closes it, and the lower one at 2 s opens [2 s, 7 s).
    let adverts = [
        (1, 200, true),
        (2, 100, true),
        (5, 100, true),
        (6, 100, true),
        (7, 100, false),
        (8, 200, true),
        (9, 100, true),
        (10, 100, true),
        (11, 100, true),
        (12, 100, true),
        (13, 100, true),
        (14, 100, false),
    ];
    let mut last_followed = T0;
    for (second, priority, followed) in adverts {
        let heard = T0 + second * SECOND;
        machine.receive(heard, v4(3), priority, SECOND);
        if followed {
            last_followed = heard;
        }
        assert_eq!(
            machine.next_deadline(),
            Some(last_followed + down),
            "priority {priority} at {second} s should be {}",
            if followed { "followed" } else { "discarded" }
        );
    }
}

#[test]
fn owner_preempts_whatever_preempt_and_preempt_delay_say() {
    let (mut machine, _) = master(Params {
        preempt: false,
        preempt_delay: 10 * SECOND,
        ..params(OWNER_PRIORITY, SECOND)
    });
    // Two owners is a misconfiguration; the higher address wins.
    let lost = T0 + SECOND;
    assert_eq!(
        machine.receive(lost, v4(2), 255, SECOND),
        [
            Action::SendAdvert {
                priority: OWNER_PRIORITY
            },
            transition(
                State::Master,
                State::Backup,
                Reason::HigherAddress {
                    peer: v4(2),
                    priority: 255
                }
            )
        ]
    );
    let down = lost + ns(3_003_906_250);
    assert_eq!(machine.next_deadline(), Some(down));
    machine.receive(T0 + 2 * SECOND, v4(3), 200, SECOND);
    assert_eq!(
        machine.next_deadline(),
        Some(down),
        "lower master discarded"
    );
}
