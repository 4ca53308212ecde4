//! One machine, driven by hand: every RFC 5798 §6.4 transition and timer, with exact values.
//! `network.rs` runs several machines on a fake network.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

mod network;

/// An epoch far from zero, so a deadline computed from 0 instead of `now` shows.
const T0: Duration = Duration::from_secs(1000);
const SECOND: Duration = Duration::from_secs(1);

fn ns(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// 192.0.2.`last`.
fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

/// Ours is 192.0.2.1, preempt on, no delay, initial state backup.
fn params(priority: u8, advert_interval: Duration) -> Params {
    Params {
        vrid: 51,
        priority,
        advert_interval,
        preempt: true,
        preempt_delay: Duration::ZERO,
        initial_state: InitialState::Backup,
        primary_address: v4(1),
    }
}

fn started(params: Params) -> Machine {
    let mut machine = Machine::new(params);
    machine.start(T0);
    machine
}

/// Started at T0 and master through Master_Down at T0 + Master_Down_Interval.
fn master(params: Params) -> (Machine, Duration) {
    let mut machine = started(params);
    let became_master = machine
        .next_deadline()
        .unwrap_or_else(|| panic!("a started machine runs a timer: {machine:?}"));
    machine.poll(became_master);
    assert_eq!(machine.state(), State::Master, "{machine:?}");
    (machine, became_master)
}

fn transition(from: State, to: State, reason: Reason) -> Action {
    Action::Transition { from, to, reason }
}

fn deadline_of(machine: &Machine) -> Duration {
    machine
        .next_deadline()
        .unwrap_or_else(|| panic!("expected a running timer: {machine:?}"))
}

// --- Timers ---

#[test]
fn skew_and_master_down_interval_exact_values() {
    // (priority, interval, Skew_Time, Master_Down_Interval), in nanoseconds, truncated.
    let cases = [
        (100, SECOND, ns(609_375_000), ns(3_609_375_000)),
        (150, ms(100), ns(41_406_250), ns(341_406_250)),
        (200, SECOND, ns(218_750_000), ns(3_218_750_000)),
        (255, SECOND, ns(3_906_250), ns(3_003_906_250)),
        (254, ms(10), ns(78_125), ns(30_078_125)),
        // 255 × 40.95 s / 256 = 40.7900390625 s: the half nanosecond goes.
        (1, ms(40_950), ns(40_790_039_062), ns(163_640_039_062)),
    ];
    for (priority, interval, skew, down) in cases {
        assert_eq!(
            skew_time(priority, interval),
            skew,
            "Skew_Time at priority {priority}, interval {interval:?}"
        );
        assert_eq!(
            master_down_interval(priority, interval),
            down,
            "Master_Down_Interval at priority {priority}, interval {interval:?}"
        );
    }
}

#[test]
fn skew_falls_strictly_as_priority_rises_even_at_10ms() {
    // In centiseconds every skew at 10 ms would be 0 and backups would tie.
    for priority in 1..OWNER_PRIORITY {
        let lower = skew_time(priority, INTERVAL_UNIT);
        let higher = skew_time(priority + 1, INTERVAL_UNIT);
        assert!(
            higher < lower,
            "skew at priority {} ({higher:?}) is not below priority {priority}'s ({lower:?})",
            priority + 1
        );
    }
}

// --- Params ---

#[test]
fn params_validation_names_the_problem() {
    let good = params(100, SECOND);
    assert_eq!(good.validate(), Ok(()));
    for interval in [INTERVAL_UNIT, MAX_INTERVAL] {
        let edge = Params {
            advert_interval: interval,
            ..good.clone()
        };
        assert_eq!(edge.validate(), Ok(()), "{interval:?} is in range");
    }
    let cases = [
        (
            Params {
                vrid: 0,
                ..good.clone()
            },
            ParamsError::Vrid,
        ),
        (params(0, SECOND), ParamsError::Priority),
        (params(100, ms(15)), ParamsError::AdvertInterval(ms(15))),
        (params(100, ms(5)), ParamsError::AdvertInterval(ms(5))),
        (
            params(100, ms(40_960)),
            ParamsError::AdvertInterval(ms(40_960)),
        ),
        (
            params(100, Duration::ZERO),
            ParamsError::AdvertInterval(Duration::ZERO),
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(bad.validate(), Err(expected.clone()), "{bad:?}");
        assert_eq!(Machine::try_new(bad).err(), Some(expected));
    }
    assert_eq!(
        ParamsError::AdvertInterval(ms(15)).to_string(),
        "advert interval 15ms is not valid: VRRPv3 carries whole centiseconds from 10ms to 40.95s"
    );
}

#[test]
#[should_panic(expected = "VRRP parameters were not validated: vrid 0")]
fn new_refuses_unvalidated_params() {
    Machine::new(Params {
        vrid: 0,
        ..params(100, SECOND)
    });
}

// --- Startup (§6.4.1) ---

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

// --- Backup (§6.4.2) ---

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
        [transition(
            State::Master,
            State::Backup,
            Reason::HigherAddress {
                peer: v4(2),
                priority: 255
            }
        )]
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

// --- Master (§6.4.3) ---

#[test]
fn master_advertises_every_interval() {
    let mut machine = started(params(OWNER_PRIORITY, SECOND));
    assert_eq!(machine.poll(T0 + ms(999)), []);
    assert_eq!(
        machine.poll(T0 + SECOND),
        [Action::SendAdvert { priority: 255 }]
    );
    assert_eq!(machine.next_deadline(), Some(T0 + 2 * SECOND));
    // A late poll sends once and counts the next interval from now.
    assert_eq!(
        machine.poll(T0 + ms(2500)),
        [Action::SendAdvert { priority: 255 }]
    );
    assert_eq!(machine.next_deadline(), Some(T0 + ms(3500)));
}

#[test]
fn master_answers_a_priority_zero_advert_at_once_and_reannounces() {
    let (mut machine, became_master) = master(params(100, SECOND));
    let goodbye = became_master + ms(300);
    assert_eq!(
        machine.receive(goodbye, v4(2), STOP_PRIORITY, SECOND),
        [
            Action::SendAdvert { priority: 100 },
            Action::Reannounce { peer: v4(2) },
        ]
    );
    assert_eq!(machine.next_deadline(), Some(goodbye + SECOND));
    assert_eq!(machine.state(), State::Master);
}

#[test]
fn master_yields_to_a_higher_priority() {
    let (mut machine, became_master) = master(params(100, SECOND));
    let heard = became_master + ms(300);
    let reason = Reason::HigherPriority {
        peer: v4(2),
        peer_priority: 200,
        ours: 100,
    };
    assert_eq!(
        machine.receive(heard, v4(2), 200, 2 * SECOND),
        [transition(State::Master, State::Backup, reason.clone())]
    );
    assert_eq!(machine.master_adver_interval(), 2 * SECOND, "learned");
    assert_eq!(machine.next_deadline(), Some(heard + ns(7_218_750_000)));
    assert_eq!(machine.master_address(), Some(v4(2)));
    assert_eq!(
        reason.to_string(),
        "advert from 192.0.2.2 with priority 200 > ours 100"
    );
}

#[test]
fn master_yields_on_equal_priority_to_a_higher_address() {
    // .10 > .9 as numbers, though "192.0.2.10" < "192.0.2.9" as text.
    let (mut machine, became_master) = master(Params {
        primary_address: v4(9),
        ..params(100, SECOND)
    });
    let reason = Reason::HigherAddress {
        peer: v4(10),
        priority: 100,
    };
    assert_eq!(
        machine.receive(became_master + ms(1), v4(10), 100, SECOND),
        [transition(State::Master, State::Backup, reason.clone())]
    );
    assert_eq!(
        reason.to_string(),
        "equal priority 100, its primary address 192.0.2.10 is higher"
    );
}

#[test]
fn master_keeps_the_role_against_a_weaker_claim_and_reannounces() {
    let (mut machine, became_master) = master(Params {
        primary_address: v4(10),
        ..params(100, SECOND)
    });
    for (offset, peer, priority) in [(ms(100), v4(9), 100), (ms(200), v4(200), 99)] {
        let heard = became_master + offset;
        assert_eq!(
            machine.receive(heard, peer, priority, SECOND),
            [
                Action::SendAdvert { priority: 100 },
                Action::Reannounce { peer },
            ],
            "priority {priority} from {peer}"
        );
        assert_eq!(machine.next_deadline(), Some(heard + SECOND), "reset");
        assert_eq!(machine.state(), State::Master);
    }
}

#[test]
fn ipv6_tie_break_compares_addresses_as_numbers() {
    // fe80::10 > fe80::2 as numbers, though not as text.
    let low = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2));
    let high = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10));
    for (ours, peer, yields) in [(low, high, true), (high, low, false)] {
        let (mut machine, became_master) = master(Params {
            primary_address: ours,
            ..params(100, SECOND)
        });
        machine.receive(became_master + ms(1), peer, 100, SECOND);
        let expected = if yields { State::Backup } else { State::Master };
        assert_eq!(machine.state(), expected, "ours {ours}, peer {peer}");
    }
}

#[test]
fn own_adverts_looped_back_are_ignored() {
    let (mut machine, became_master) = master(params(100, SECOND));
    assert_eq!(machine.receive(became_master, v4(1), 200, SECOND), []);
    assert_eq!(machine.state(), State::Master);
    let mut backup = started(params(100, SECOND));
    backup.receive(T0 + SECOND, v4(1), 200, SECOND);
    assert_eq!(backup.next_deadline(), Some(T0 + ns(3_609_375_000)));
}

#[test]
fn zero_interval_in_an_advert_counts_as_the_shortest() {
    let mut machine = started(params(100, SECOND));
    let heard = T0 + SECOND;
    machine.receive(heard, v4(2), 200, Duration::ZERO);
    assert_eq!(machine.master_adver_interval(), INTERVAL_UNIT);
    // 30 ms + 156 × 10 ms / 256.
    assert_eq!(machine.next_deadline(), Some(heard + ns(36_093_750)));
}

// --- Shutdown ---

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

const ETH1_DOWN: &str = "tracked interface eth1 down";

fn fault() -> Option<String> {
    Some(ETH1_DOWN.to_owned())
}

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

// --- Priority ---

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
