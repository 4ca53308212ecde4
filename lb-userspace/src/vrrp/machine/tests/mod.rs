//! One machine, driven by hand: every RFC 5798 §6.4 transition and timer, with exact values.
//! `network.rs` runs several machines on a fake network.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

mod backup;
mod master;
mod network;
mod priority_and_words;
mod shutdown_and_fault;
mod startup;
mod timers;

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

const ETH1_DOWN: &str = "tracked interface eth1 down";

fn fault() -> Option<String> {
    Some(ETH1_DOWN.to_owned())
}
