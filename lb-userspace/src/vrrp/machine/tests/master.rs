//! Master (§6.4.3): adverts, priority 0, yielding, tie-breaks, weaker claims.

use super::*;

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
        [
            // Its last advert, so that a master which spoke first after a split brain
            // still hears of it.
            Action::SendAdvert { priority: 100 },
            transition(State::Master, State::Backup, reason.clone())
        ]
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
        [
            Action::SendAdvert { priority: 100 },
            transition(State::Master, State::Backup, reason.clone())
        ]
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
