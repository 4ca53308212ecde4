//! Several machines on a fake network and a shared fake clock: every advert one sends
//! reaches every other running machine after `delay`, unless the network is partitioned.
//! Time jumps from event to event (the earliest deadline or delivery), so the scenarios
//! assert exact takeover instants.

use super::*;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Enough for minutes of 100 ms adverts between three routers; a livelock trips it.
const MAX_STEPS: usize = 100_000;

struct Node {
    machine: Machine,
    /// Crashed or never started: not polled, hears nothing. What it sent still arrives.
    running: bool,
    log: Vec<(Duration, Action)>,
}

struct Advert {
    deliver_at: Duration,
    to: usize,
    source: IpAddr,
    priority: u8,
    interval: Duration,
}

struct Network {
    now: Duration,
    nodes: Vec<Node>,
    in_flight: Vec<Advert>,
    delay: Duration,
    partitioned: bool,
}

/// Router `index` is 192.0.2.(index + 1); preempt on, no delay, initial state backup.
fn router(index: usize, priority: u8, advert_interval: Duration) -> Params {
    let last = u8::try_from(index + 1).expect("a few routers");
    Params {
        primary_address: v4(last),
        ..params(priority, advert_interval)
    }
}

impl Network {
    fn new(routers: Vec<Params>) -> Self {
        let nodes = routers
            .into_iter()
            .map(|params| Node {
                machine: Machine::new(params),
                running: false,
                log: Vec::new(),
            })
            .collect();
        Network {
            now: T0,
            nodes,
            in_flight: Vec::new(),
            delay: Duration::ZERO,
            partitioned: false,
        }
    }

    /// Every router started at T0.
    fn started(routers: Vec<Params>) -> Self {
        let mut network = Network::new(routers);
        for node in 0..network.nodes.len() {
            network.start(node);
        }
        network
    }

    fn address(&self, node: usize) -> IpAddr {
        self.nodes[node].machine.params().primary_address
    }

    fn machine(&self, node: usize) -> &Machine {
        &self.nodes[node].machine
    }

    fn start(&mut self, node: usize) {
        self.nodes[node].running = true;
        self.input(node, |machine, now| machine.start(now));
    }

    /// Dies silently, no goodbye; a later `start` is a fresh process.
    fn crash(&mut self, node: usize) {
        let params = self.machine(node).params().clone();
        self.nodes[node].machine = Machine::new(params);
        self.nodes[node].running = false;
    }

    /// Stops gracefully (a master sends priority 0).
    fn stop(&mut self, node: usize) {
        self.input(node, |machine, now| machine.shutdown(now));
        self.nodes[node].running = false;
    }

    /// Hands `node` an input now, and performs what it asks.
    fn input(&mut self, node: usize, event: impl FnOnce(&mut Machine, Duration) -> Vec<Action>) {
        let actions = event(&mut self.nodes[node].machine, self.now);
        self.perform(node, actions);
    }

    fn perform(&mut self, node: usize, actions: Vec<Action>) {
        for action in actions {
            if let Action::SendAdvert { priority } = action {
                self.send(node, priority);
            }
            self.nodes[node].log.push((self.now, action));
        }
    }

    fn send(&mut self, from: usize, priority: u8) {
        if self.partitioned {
            return;
        }
        let source = self.address(from);
        let interval = self.machine(from).params().advert_interval;
        for to in (0..self.nodes.len()).filter(|&to| to != from) {
            self.in_flight.push(Advert {
                deliver_at: self.now + self.delay,
                to,
                source,
                priority,
                interval,
            });
        }
    }

    fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Runs every event up to and including `end`, then sets the clock to `end`. At one
    /// instant, due timers fire first (so simultaneous timeouts really are simultaneous),
    /// then due adverts arrive, until nothing is left at that instant.
    fn run_until(&mut self, end: Duration) {
        for _ in 0..MAX_STEPS {
            let next_timer = (0..self.nodes.len())
                .filter(|&node| self.nodes[node].running)
                .filter_map(|node| self.machine(node).next_deadline());
            let next_delivery = self.in_flight.iter().map(|advert| advert.deliver_at);
            let next = next_timer.chain(next_delivery).min();
            let Some(next) = next.filter(|&next| next <= end) else {
                self.now = end;
                return;
            };
            assert!(next >= self.now, "time went back: {}", self.describe());
            self.now = next;
            for node in 0..self.nodes.len() {
                let now = self.now;
                let due = self
                    .machine(node)
                    .next_deadline()
                    .is_some_and(|deadline| deadline <= now);
                if self.nodes[node].running && due {
                    self.input(node, |machine, now| machine.poll(now));
                }
            }
            let (arrived, later): (Vec<Advert>, Vec<Advert>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|advert| advert.deliver_at <= self.now);
            self.in_flight = later;
            for advert in arrived {
                if self.nodes[advert.to].running {
                    self.input(advert.to, |machine, now| {
                        machine.receive(now, advert.source, advert.priority, advert.interval)
                    });
                }
            }
        }
        panic!(
            "no quiet point after {MAX_STEPS} steps: {}",
            self.describe()
        );
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&node| self.machine(node).state() == State::Master)
            .collect()
    }

    fn transitions(&self, node: usize) -> Vec<(Duration, State, State, Reason)> {
        self.nodes[node]
            .log
            .iter()
            .filter_map(|(at, action)| match action {
                Action::Transition { from, to, reason } => Some((*at, *from, *to, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn last_transition(&self, node: usize) -> (Duration, State, State, Reason) {
        self.transitions(node)
            .pop()
            .unwrap_or_else(|| panic!("router {node} never moved: {}", self.describe()))
    }

    /// (when, priority) of every advert `node` sent.
    fn adverts_sent(&self, node: usize) -> Vec<(Duration, u8)> {
        self.nodes[node]
            .log
            .iter()
            .filter_map(|(at, action)| match action {
                Action::SendAdvert { priority } => Some((*at, *priority)),
                _ => None,
            })
            .collect()
    }

    fn last_advert_before(&self, node: usize, instant: Duration) -> Duration {
        self.adverts_sent(node)
            .into_iter()
            .map(|(at, _)| at)
            .rfind(|&at| at <= instant)
            .unwrap_or_else(|| panic!("router {node} sent nothing: {}", self.describe()))
    }

    fn reannounces(&self, node: usize) -> Vec<(Duration, IpAddr)> {
        self.nodes[node]
            .log
            .iter()
            .filter_map(|(at, action)| match action {
                Action::Reannounce { peer } => Some((*at, *peer)),
                _ => None,
            })
            .collect()
    }

    /// For failure messages: the clock, and each router's state, timer and transitions.
    fn describe(&self) -> String {
        let mut text = format!("\nnow {:?} after T0", self.now - T0);
        for (index, node) in self.nodes.iter().enumerate() {
            let machine = &node.machine;
            text += &format!(
                "\nrouter {index} ({}, priority {}, {}): {}, next deadline {:?}",
                machine.params().primary_address,
                machine.priority(),
                if node.running { "running" } else { "down" },
                machine.state(),
                machine.next_deadline().map(|deadline| deadline - T0),
            );
            for (at, from, to, reason) in self.transitions(index) {
                text += &format!("\n  {:?}: {from} -> {to}: {reason}", at - T0);
            }
        }
        text
    }
}

/// A(200) and B(100) at 1 s: A is master from T0 + 3.21875 s, advertising at .21875.
fn elected_pair(a: Params, b: Params) -> Network {
    let mut network = Network::started(vec![a, b]);
    network.run_until(T0 + 10 * SECOND);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    network
}

fn default_pair() -> Network {
    elected_pair(router(A, 200, SECOND), router(B, 100, SECOND))
}

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
    assert_eq!(network.reannounces(B), [(both_timed_out, v4(9))]);
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
        [(healed, network.address(B))],
        "A heard B's claim and announced its addresses again, once"
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

#[test]
fn healed_split_brain_where_the_winner_speaks_first_needs_no_reannounce() {
    let mut network = split_brain();
    network.run_until(T0 + 21 * SECOND);
    network.partitioned = false;
    network.run_for(60 * SECOND);
    assert_eq!(network.masters(), [A], "{}", network.describe());
    assert_eq!(network.reannounces(A), []);
    assert_eq!(network.reannounces(B), []);
    assert_eq!(network.last_transition(B).0, T0 + ns(21_218_750_000));
}

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
