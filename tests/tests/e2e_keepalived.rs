//! lbd and keepalived (`vrrp_version 3`) on one segment: they elect one master by the RFC's
//! rules and hand the VIP to each other, in both roles, over IPv4 multicast, IPv6 multicast
//! (ff02::12, VIP6) and IPv4 unicast. Needs root and keepalived.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    VIP,
    ha::{Pair, report, router, wait_for_state},
    http::{self, HttpServer},
    keepalived::{self, Keepalived},
    lbd::Lbd,
    netns::Netns,
    privilege::require_root,
    topology::{
        VIP6,
        ha::{HaTopology, LB1_IP, LB1_SECOND_IP, LB2_IP},
        modes::{any_address, test_instance, test_prefix},
        real_ip6,
    },
};

const ADVERT: Duration = Duration::from_secs(1);

/// A second address on lbd's eth0 for its adverts' `source_address`: the only peer keepalived
/// lists when the test sets it.
const LBD_SOURCE: Ipv4Addr = LB1_SECOND_IP;
/// What a handover on stop may take beyond one advert interval (the skew, the stopping
/// daemon's exit, the address change, a busy machine): without the priority-0 advert it would
/// take three intervals and more.
const HANDOVER_SLACK: Duration = Duration::from_millis(1500);

/// How lbd (on lb1) and keepalived (on lb2) speak VRRP to each other.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// To 224.0.0.18 for [`VIP`], on the IPv4-only topology.
    Multicast4,
    /// To ff02::12 from each node's link-local address for [`VIP6`], on the dual-stack
    /// topology.
    Multicast6,
    /// To each other's address for [`VIP`]; lbd's adverts from [`LBD_SOURCE`] (its
    /// `source_address`, keepalived's only peer) when `lbd_source`.
    Unicast4 { lbd_source: bool },
}

/// The topology, its reals serving HTTP, and what the two nodes are configured with.
struct Segment {
    topology: HaTopology,
    _servers: Vec<HttpServer>,
    transport: Transport,
    test: &'static str,
}

impl Segment {
    fn build(test: &'static str, transport: Transport) -> Segment {
        let prefix = test_prefix(test);
        let (topology, listen) = match transport {
            Transport::Multicast6 => (
                HaTopology::build_dual_stack(&prefix, &["r1", "r2"]),
                any_address(80),
            ),
            _ => (
                HaTopology::build(&prefix, &["r1", "r2"]),
                SocketAddr::from(([0, 0, 0, 0], 80)),
            ),
        };
        if let Transport::Unicast4 { lbd_source: true } = transport {
            topology
                .lb1
                .ip(&["addr", "add", &format!("{LBD_SOURCE}/24"), "dev", "eth0"]);
        }
        let servers = topology
            .reals
            .iter()
            .map(|(name, netns, _)| HttpServer::start(netns, listen, name))
            .collect();
        Segment {
            topology,
            _servers: servers,
            transport,
            test,
        }
    }

    fn start_lbd(&self, priority: u8) -> Lbd {
        let pair = Pair {
            priority,
            advert: ADVERT,
            unicast_peer: matches!(self.transport, Transport::Unicast4 { .. }).then_some(LB2_IP),
            sync_peer: None,
            preempt: true,
        };
        let config = match self.transport {
            Transport::Multicast6 => {
                let reals: String = (0..self.topology.reals.len())
                    .map(|index| format!("      - {{address: {}}}\n", real_ip6(index)))
                    .collect();
                let service = format!(
                    "  - vip: {VIP6}\n    port: 80\n    protocol: tcp\n    scheduler: rr\n    \
                     reals:\n{reals}"
                );
                pair.config_with(&service, &[VIP6], "")
            }
            Transport::Multicast4 | Transport::Unicast4 { lbd_source: false } => {
                pair.config(&self.v4_reals(), "")
            }
            Transport::Unicast4 { lbd_source: true } => pair.config(
                &self.v4_reals(),
                &format!("    source_address: {LBD_SOURCE}\n"),
            ),
        };
        Lbd::start(&self.topology.lb1, &test_instance(self.test), &config)
    }

    fn v4_reals(&self) -> Vec<Ipv4Addr> {
        self.topology
            .reals
            .iter()
            .map(|(_, _, address)| *address)
            .collect()
    }

    /// keepalived on lb2, its files under a directory named after the test and `run`.
    fn start_keepalived(&self, priority: u8, run: &str) -> Keepalived {
        let config = match self.transport {
            Transport::Multicast4 => keepalived::config(priority, 1.0, &VIP.to_string(), None),
            Transport::Multicast6 => keepalived::config(priority, 1.0, &VIP6.to_string(), None),
            Transport::Unicast4 { .. } => keepalived::config(
                priority,
                1.0,
                &VIP.to_string(),
                Some((LB2_IP, self.lbd_address_v4())),
            ),
        };
        Keepalived::start(
            &self.topology.lb2,
            &test_instance(&format!("{}-{run}", self.test)),
            &config,
        )
    }

    fn lbd_address_v4(&self) -> Ipv4Addr {
        match self.transport {
            Transport::Unicast4 { lbd_source: true } => LBD_SOURCE,
            _ => LB1_IP,
        }
    }

    /// Where lbd's adverts come from (its router's `address`).
    fn lbd_address(&self) -> IpAddr {
        match self.transport {
            Transport::Multicast6 => link_local(&self.topology.lb1),
            _ => self.lbd_address_v4().into(),
        }
    }

    /// Where keepalived's adverts come from (lbd's `master` while backup).
    fn keepalived_address(&self) -> IpAddr {
        match self.transport {
            Transport::Multicast6 => link_local(&self.topology.lb2),
            _ => LB2_IP.into(),
        }
    }

    fn vip(&self) -> IpAddr {
        match self.transport {
            Transport::Multicast6 => VIP6.into(),
            _ => VIP.into(),
        }
    }

    fn vip_holders(&self) -> Vec<usize> {
        match self.transport {
            Transport::Multicast6 => self.topology.vip6_holders(),
            _ => self.topology.vip_holders(),
        }
    }

    fn wait_for_vip(&self, expected: &[usize], limit: Duration) -> Duration {
        match self.transport {
            Transport::Multicast6 => self.topology.wait_for_vip6(expected, limit),
            _ => self.topology.wait_for_vip(expected, limit),
        }
    }

    /// A request from the client through the VIP (lbd holding it) answered by a real.
    fn get_through_vip(&self) {
        let vip = SocketAddr::new(self.vip(), 80);
        let body = self
            .topology
            .client
            .run(|| http::get(vip, "/", Duration::from_secs(3)))
            .unwrap_or_else(|e| panic!("a request through {vip}: {e}"));
        assert!(body.starts_with('r'), "{body}");
    }
}

/// The link-local address of `netns`'s eth0.
fn link_local(netns: &Netns) -> IpAddr {
    let shown = netns.ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
    shown
        .split_whitespace()
        .skip_while(|word| *word != "inet6")
        .nth(1)
        .and_then(|address| address.split('/').next())
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on eth0: {shown}"))
}

fn logs(lbd: &Lbd, keepalived: &Keepalived) -> String {
    format!("lbd:\n{}\nkeepalived:\n{}", lbd.log(), keepalived.log())
}

/// lbd (priority 150) is master, keepalived (100) backup and stays so, hearing lbd's adverts;
/// lbd stops and keepalived takes over within its skew time; lbd returns and preempts.
fn lbd_master_hands_over_both_ways(test: &'static str, transport: Transport) {
    let segment = Segment::build(test, transport);
    let mut lbd = segment.start_lbd(150);
    let mut keepalived = segment.start_keepalived(100, "ka");
    wait_for_state(&lbd, "MASTER", Duration::from_secs(10));
    assert!(
        keepalived.wait_for_log("Entering BACKUP STATE", Duration::from_secs(5)),
        "keepalived never became backup:\n{}",
        keepalived.log()
    );
    // keepalived hears lbd's adverts and stays backup for longer than its master down
    // interval.
    std::thread::sleep(4 * ADVERT);
    assert_eq!(
        segment.vip_holders(),
        vec![1],
        "{}",
        logs(&lbd, &keepalived)
    );
    // Not even for a moment.
    assert!(
        !keepalived.log().contains("Entering MASTER STATE"),
        "{}",
        logs(&lbd, &keepalived)
    );
    let status = router(&lbd).expect("lbd answers");
    assert_eq!(status.address, Some(segment.lbd_address()), "{status:?}");
    segment.get_through_vip();

    // lbd stops: its priority-0 advert makes keepalived master within its skew time.
    let stopped = Instant::now();
    lbd.stop();
    let took = stopped.elapsed() + segment.wait_for_vip(&[2], Duration::from_secs(5));
    report(
        &format!("keepalived takes over from a stopping lbd ({transport:?}, 1 s adverts)"),
        took,
    );
    assert!(
        took < ADVERT + HANDOVER_SLACK,
        "took {took:?}:\n{}",
        logs(&lbd, &keepalived)
    );

    // lbd returns with the higher priority and preempts; keepalived gives the VIP back.
    lbd.restart(&segment.topology.lb1);
    wait_for_state(&lbd, "MASTER", Duration::from_secs(10));
    segment.wait_for_vip(&[1], Duration::from_secs(5));
    segment.get_through_vip();
    let status = router(&lbd).expect("lbd answers");
    assert_eq!(
        status.adverts_ignored,
        Vec::<(String, u64)>::new(),
        "{}",
        logs(&lbd, &keepalived)
    );
    keepalived.stop();
}

/// keepalived (priority 200) is master, lbd (100) backup and stays so, hearing keepalived's
/// adverts and ignoring none; keepalived stops and lbd takes over within its skew time and
/// forwards; keepalived returns and lbd hands the VIP back.
fn keepalived_master_hands_over_both_ways(test: &'static str, transport: Transport) {
    let segment = Segment::build(test, transport);
    let mut keepalived = segment.start_keepalived(200, "ka");
    assert!(
        keepalived.wait_for_log("Entering MASTER STATE", Duration::from_secs(10)),
        "keepalived never became master:\n{}",
        keepalived.log()
    );
    let mut lbd = segment.start_lbd(100);
    wait_for_state(&lbd, "BACKUP", Duration::from_secs(5));
    // lbd stays backup, hearing keepalived's adverts (all valid), for longer than its master
    // down interval.
    std::thread::sleep(4 * ADVERT);
    let status = router(&lbd).expect("lbd answers");
    assert_eq!(status.state, "BACKUP", "{}", logs(&lbd, &keepalived));
    // Not even for a moment.
    assert!(
        !lbd.log().contains("-> MASTER"),
        "{}",
        logs(&lbd, &keepalived)
    );
    assert_eq!(
        status.master,
        Some(segment.keepalived_address()),
        "{status:?}\n{}",
        logs(&lbd, &keepalived)
    );
    assert!(status.adverts_received >= 3, "{status:?}");
    assert_eq!(
        status.adverts_ignored,
        Vec::<(String, u64)>::new(),
        "{}",
        logs(&lbd, &keepalived)
    );
    assert_eq!(segment.vip_holders(), vec![2]);

    // keepalived stops (priority 0): lbd takes over within its skew time and forwards.
    let stopped = Instant::now();
    keepalived.stop();
    let took = stopped.elapsed() + segment.wait_for_vip(&[1], Duration::from_secs(5));
    report(
        &format!("lbd takes over from a stopping keepalived ({transport:?}, 1 s adverts)"),
        took,
    );
    assert!(
        took < ADVERT + HANDOVER_SLACK,
        "took {took:?}:\n{}",
        logs(&lbd, &keepalived)
    );
    assert_eq!(router(&lbd).expect("lbd answers").state, "MASTER");
    segment.get_through_vip();

    // keepalived returns with the higher priority: lbd hands the VIP back.
    let mut keepalived = segment.start_keepalived(200, "ka2");
    wait_for_state(&lbd, "BACKUP", Duration::from_secs(10));
    segment.wait_for_vip(&[2], Duration::from_secs(5));
    keepalived.stop();
    lbd.stop();
}

#[test]
fn lbd_master_with_keepalived_backup_hand_over_both_ways() {
    if require_root("the keepalived interop test") {
        lbd_master_hands_over_both_ways("ka-lbdm", Transport::Multicast4);
    }
}

#[test]
fn keepalived_master_with_lbd_backup_hand_over_both_ways() {
    if require_root("the keepalived interop test") {
        keepalived_master_hands_over_both_ways("ka-kam", Transport::Multicast4);
    }
}

#[test]
fn ipv6_lbd_master_with_keepalived_backup_hand_over_both_ways() {
    if require_root("the keepalived IPv6 interop test") {
        lbd_master_hands_over_both_ways("ka6-lbdm", Transport::Multicast6);
    }
}

#[test]
fn ipv6_keepalived_master_with_lbd_backup_hand_over_both_ways() {
    if require_root("the keepalived IPv6 interop test") {
        keepalived_master_hands_over_both_ways("ka6-kam", Transport::Multicast6);
    }
}

/// lbd's adverts come from its `source_address`, the one peer keepalived accepts
/// (`check_unicast_src`): were they sent from 192.0.2.2, keepalived would ignore them and
/// claim the role too.
#[test]
fn unicast_lbd_master_from_its_source_address_with_keepalived_backup_hand_over_both_ways() {
    if require_root("the keepalived unicast interop test") {
        lbd_master_hands_over_both_ways("kauc-lbdm", Transport::Unicast4 { lbd_source: true });
    }
}

#[test]
fn unicast_keepalived_master_with_lbd_backup_hand_over_both_ways() {
    if require_root("the keepalived unicast interop test") {
        keepalived_master_hands_over_both_ways(
            "kauc-kam",
            Transport::Unicast4 { lbd_source: false },
        );
    }
}
