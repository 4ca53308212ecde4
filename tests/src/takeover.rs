//! Takeover times of an active/standby pair, lbd's and keepalived's measured the same way in
//! the same run (`cargo xtask bench`): from the moment the master is killed or stopped to the
//! moment the backup holds the VIP on its interface.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{
    VIP,
    ha::{Pair, wait_for_state},
    http::HttpServer,
    keepalived::{self, Keepalived},
    lbd::Lbd,
    topology::ha::HaTopology,
};

/// Who runs VRRP on the two balancers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Lbd,
    Keepalived,
}

/// How the master goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGKILL: no goodbye; the backup waits for the master down interval.
    Killed,
    /// SIGTERM: a priority-0 advert; the backup waits for its skew time.
    Stopped,
}

/// The two nodes of one kind, lb1 (priority 150, master) and lb2 (100).
enum Node {
    Lbd(Lbd),
    Keepalived(Keepalived),
}

impl Node {
    fn start(
        peer: Peer,
        topology: &HaTopology,
        index: usize,
        advert: Duration,
        name: &str,
    ) -> Node {
        let (netns, priority) = if index == 1 {
            (&topology.lb1, 150)
        } else {
            (&topology.lb2, 100)
        };
        match peer {
            Peer::Lbd => {
                let reals: Vec<_> = topology
                    .reals
                    .iter()
                    .map(|(_, _, address)| *address)
                    .collect();
                let config = Pair {
                    priority,
                    advert,
                    unicast_peer: None,
                    sync_peer: None,
                    preempt: true,
                }
                .config(&reals, "");
                Node::Lbd(Lbd::start(netns, &format!("{name}{index}"), &config))
            }
            Peer::Keepalived => Node::Keepalived(Keepalived::start(
                netns,
                &format!("{name}{index}"),
                &keepalived::config(priority, advert.as_secs_f64(), &VIP.to_string(), None),
            )),
        }
    }

    fn exit(&mut self, exit: Exit) {
        let signal = match exit {
            Exit::Killed => libc::SIGKILL,
            Exit::Stopped => libc::SIGTERM,
        };
        match (self, exit) {
            (Node::Lbd(lbd), _) => lbd.signal(signal),
            (Node::Keepalived(keepalived), Exit::Killed) => keepalived.kill(),
            (Node::Keepalived(keepalived), Exit::Stopped) => keepalived.signal(signal),
        }
    }
}

/// One takeover: a fresh topology, lb1 master, then `exit`; the time until lb2 holds the VIP.
pub fn measure(prefix: &str, peer: Peer, advert: Duration, exit: Exit) -> Duration {
    let topology = HaTopology::build(prefix, &["r1"]);
    let _server = HttpServer::start(
        &topology.reals[0].1,
        SocketAddr::from(([0, 0, 0, 0], 80)),
        "r1",
    );
    let name = prefix.trim_end_matches('-');
    let mut lb1 = Node::start(peer, &topology, 1, advert, name);
    // lb1 alone first, so it is master before lb2 starts.
    wait_for_holder(&topology, 1, Duration::from_secs(10));
    if let Node::Lbd(lbd) = &lb1 {
        wait_for_state(lbd, "MASTER", Duration::from_secs(5));
    }
    let lb2 = Node::start(peer, &topology, 2, advert, name);
    // lb2 settles as backup: longer than its master down interval.
    std::thread::sleep(advert * 4 + Duration::from_millis(500));
    assert_eq!(
        topology.vip_holders(),
        vec![1],
        "lb1 is not the only master"
    );
    let started = Instant::now();
    lb1.exit(exit);
    let took = started.elapsed() + wait_for_holder(&topology, 2, Duration::from_secs(30));
    drop(lb2);
    drop(lb1);
    took
}

/// Polls (every 2 ms) until balancer `index` holds the VIP; returns how long that took.
fn wait_for_holder(topology: &HaTopology, index: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if topology.vip_holders().contains(&index) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "lb{index} does not hold the VIP after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
