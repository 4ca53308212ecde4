//! Several machines on a fake network and a shared fake clock: every advert one sends
//! reaches every other running machine after `delay`, unless the network is partitioned.
//! Time jumps from event to event (the earliest deadline or delivery), so the scenarios
//! assert exact takeover instants.

use super::*;

mod changes;
mod elections;
mod fail_back;

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
