//! An active/standby pair: two balancers, a client and real servers on one switch, each in a
//! network namespace of its own. No balancer holds the VIP until VRRP makes it master.
//!
//! ```text
//!   client 192.0.2.1    lb1 192.0.2.2    lb2 192.0.2.3    realN 192.0.2.1N (VIP/32 on lo)
//!      eth0                eth0             eth0             eth0
//!       |                   |                |                |
//!   p-client ---------- br0 (switch) ----- p-lb2 --------- p-realN
//!                           |
//!                         p-lb1
//! ```
//!
//! `p-lb1` and `p-lb2` run `xdp_pass`, so frames the balancers send with `XDP_TX` reach the
//! bridge. A balancer's link is "cut" by taking its bridge port down: its eth0 loses its
//! carrier, as when a cable is pulled. [`HaTopology::build`] is IPv4 only (IPv6 off, as in
//! [`super::DrTopology::build`]); [`HaTopology::build_dual_stack`] adds 2001:db8::/64 as the
//! DR topology's dual stack does (lb2 at 2001:db8::3), with [`VIP6`] on every real's `lo`
//! and, again, on no balancer.
//!
//! [`HaTopology::build_nat`] puts NAT and full-NAT reals on the same switch but in a subnet of
//! their own, 198.51.100.0/24 ([`nat_real_ip`]), with no VIP: each balancer has an address
//! there too ([`LB1_NAT_IP`], [`LB2_NAT_IP`]) to reach them. The reals have no route beyond
//! their subnet until [`HaTopology::route_clients_via_gateway`] routes the clients' subnet
//! through [`NAT_GATEWAY`], an address no host has until it is a VRRP virtual address of the
//! pair: it moves with the master, and so do the reals' replies. Full-NAT reals need no route:
//! they answer [`SNAT_ADDRESS`], on their subnet (also a virtual address of the pair).
//!
//! ```text
//!   client 192.0.2.1    lb1 192.0.2.2       lb2 192.0.2.3       realN 198.51.100.1N
//!                           198.51.100.2        198.51.100.3    (→ 192.0.2.0/24 via .1)
//!       |                   |                   |                   |
//!   p-client ----------------------- br0 (switch) ---------------- p-realN
//! ```

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

use aya::Ebpf;
use lb_userspace::admin::format_mac;

use super::{
    BRIDGE, CLIENT_IP, CLIENT_IP6, CLIENT_MAC, HOST_IF, LB_IP6, PREFIX_LEN, Plug, VIP, VIP6, host,
    load_pass_program, plugged, port_name, wait_until_link_up,
};
use crate::netns::Netns;

pub const LB1_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const LB2_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
pub const LB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
pub const LB2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 3];
/// A second address of lb1's, which tests give its adverts with `source_address`.
pub const LB1_SECOND_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);
/// lb1 has the DR topology's [`super::LB_IP6`].
pub const LB2_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x3);

/// The NAT reals' subnet in [`HaTopology::build_nat`] (a /24).
pub const NAT_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
/// The NAT reals' way to the clients: held by no host, meant as a VRRP virtual address.
pub const NAT_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The balancers' own addresses on the reals' subnet.
pub const LB1_NAT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const LB2_NAT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// A full-NAT local address for `snat_pool`: held by no host, meant as a VRRP virtual
/// address, so that the reals' replies to it reach the master.
pub const SNAT_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 4);
const FIRST_NAT_REAL_OCTET: u8 = 11;

/// Address of the NAT real at `index` (0-based) in [`HaTopology::build_nat`]'s list:
/// 198.51.100.11, .12, …
pub const fn nat_real_ip(index: usize) -> Ipv4Addr {
    assert!(index < 40, "at most 40 NAT reals");
    Ipv4Addr::new(198, 51, 100, FIRST_NAT_REAL_OCTET + index as u8)
}

pub struct HaTopology {
    /// `xdp_pass` on the balancers' bridge ports; dropped first.
    pass_programs: Mutex<Vec<Ebpf>>,
    pub client: Netns,
    pub lb1: Netns,
    pub lb2: Netns,
    pub reals: Vec<(String, Netns, Ipv4Addr)>,
    pub switch: Netns,
}

impl HaTopology {
    /// Namespaces `<prefix>sw`, `<prefix>client`, `<prefix>lb1`, `<prefix>lb2` and
    /// `<prefix><real>` per name, after removing leftovers of `prefix`.
    pub fn build(prefix: &str, reals: &[&str]) -> HaTopology {
        HaTopology::build_with(prefix, reals, false)
    }

    /// [`HaTopology::build`] with IPv6 on every host too.
    pub fn build_dual_stack(prefix: &str, reals: &[&str]) -> HaTopology {
        HaTopology::build_with(prefix, reals, true)
    }

    /// [`HaTopology::build`] with NAT reals instead of DR ones (see the module's
    /// documentation): `<prefix><real>` per name at [`nat_real_ip`] in order, TX checksum
    /// offload off (the balancer rewrites their replies in XDP, which completes no checksum
    /// left to offload), no VIP, no route beyond their subnet; [`LB1_NAT_IP`] and
    /// [`LB2_NAT_IP`] on the balancers' eth0. IPv4 only.
    pub fn build_nat(prefix: &str, reals: &[&str]) -> HaTopology {
        let mut topology = HaTopology::build_with(prefix, &[], false);
        for (index, address) in [(1, LB1_NAT_IP), (2, LB2_NAT_IP)] {
            topology
                .lb(index)
                .ip(&["addr", "add", &format!("{address}/24"), "dev", HOST_IF]);
        }
        for (index, name) in reals.iter().enumerate() {
            let address = nat_real_ip(index);
            let octet = address.octets()[3];
            let netns = plugged(
                Plug {
                    switch: &topology.switch,
                    bridge: BRIDGE,
                    port: port_name(name),
                    port_mac: [0x02, 0, 0, 0, 0x17, octet],
                },
                prefix,
                name,
                [0x02, 0, 0, 0, 0x07, octet],
                (address, 24),
                None,
            );
            netns.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
            topology.reals.push((name.to_string(), netns, address));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, netns, _) in &topology.reals {
            wait_until_link_up(netns, HOST_IF, deadline, Duration::from_secs(5));
        }
        topology
    }

    /// Routes the clients' subnet (192.0.2.0/24) of every NAT real through [`NAT_GATEWAY`], so
    /// that their replies cross the master to be translated back. A route to another host of
    /// the test, not out of it.
    pub fn route_clients_via_gateway(&self) {
        for (_, netns, _) in &self.reals {
            netns.ip(&[
                "route",
                "add",
                &format!("{}/{PREFIX_LEN}", Ipv4Addr::new(192, 0, 2, 0)),
                "via",
                &NAT_GATEWAY.to_string(),
            ]);
        }
    }

    fn build_with(prefix: &str, reals: &[&str], dual_stack: bool) -> HaTopology {
        crate::netns::remove_leftovers(prefix);
        let switch = super::switch(prefix, dual_stack);
        let v6 = |address: Ipv6Addr| dual_stack.then_some(address);
        let client = host(
            &switch,
            prefix,
            "client",
            (CLIENT_IP, CLIENT_MAC),
            v6(CLIENT_IP6),
        );
        client.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        let lb1 = host(&switch, prefix, "lb1", (LB1_IP, LB1_MAC), v6(LB_IP6));
        let lb2 = host(&switch, prefix, "lb2", (LB2_IP, LB2_MAC), v6(LB2_IP6));
        let reals = super::dr_reals(&switch, prefix, reals, dual_stack);
        let topology = HaTopology {
            pass_programs: Mutex::new(Vec::new()),
            client,
            lb1,
            lb2,
            reals,
            switch,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        for netns in topology.hosts() {
            wait_until_link_up(netns, HOST_IF, deadline, Duration::from_secs(5));
        }
        for port in ["p-lb1", "p-lb2"] {
            let program = topology.switch.run(|| load_pass_program(port));
            topology
                .pass_programs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(program);
        }
        topology
    }

    fn hosts(&self) -> impl Iterator<Item = &Netns> {
        [&self.client, &self.lb1, &self.lb2]
            .into_iter()
            .chain(self.reals.iter().map(|(_, netns, _)| netns))
    }

    /// An HTTP server on port 80 of every real, answering with the real's name.
    pub fn serve_http(&self) -> Vec<crate::http::HttpServer> {
        self.reals
            .iter()
            .map(|(name, netns, _)| {
                crate::http::HttpServer::start(netns, "0.0.0.0:80".parse().unwrap(), name)
            })
            .collect()
    }

    /// The reals' addresses, in their order.
    pub fn real_addresses(&self) -> Vec<Ipv4Addr> {
        self.reals.iter().map(|(_, _, address)| *address).collect()
    }

    /// The balancer `index` (1 or 2).
    pub fn lb(&self, index: usize) -> &Netns {
        match index {
            1 => &self.lb1,
            2 => &self.lb2,
            _ => panic!("no lb{index}"),
        }
    }

    /// Takes balancer `index`'s bridge port down (`up: false`) or up again.
    pub fn set_link(&self, index: usize, up: bool) {
        self.switch.ip(&[
            "link",
            "set",
            &port_name(&format!("lb{index}")),
            if up { "up" } else { "down" },
        ]);
    }

    /// Which balancer holds the VIP on its eth0 (none, one or both).
    pub fn vip_holders(&self) -> Vec<usize> {
        self.holders(&VIP.to_string())
    }

    /// [`HaTopology::wait_for_vip`] for any other address (a virtual address beside the VIP).
    pub fn wait_for_address(&self, address: Ipv4Addr, expected: &[usize], limit: Duration) {
        let what = address.to_string();
        wait_for_holders(|| self.holders(&what), expected, limit, &what);
    }

    /// Waits (bounded) until exactly the balancers `expected` hold the VIP (a router adds and
    /// removes its addresses just after its state changes); returns how long that took.
    pub fn wait_for_vip(&self, expected: &[usize], limit: Duration) -> Duration {
        wait_for_holders(|| self.vip_holders(), expected, limit, "VIP")
    }

    /// [`HaTopology::wait_for_vip`] for [`VIP6`].
    pub fn wait_for_vip6(&self, expected: &[usize], limit: Duration) -> Duration {
        wait_for_holders(|| self.vip6_holders(), expected, limit, "VIP6")
    }

    /// Which balancer holds [`VIP6`] on its eth0.
    pub fn vip6_holders(&self) -> Vec<usize> {
        self.holders(&VIP6.to_string())
    }

    fn holders(&self, address: &str) -> Vec<usize> {
        [1, 2]
            .into_iter()
            .filter(|index| {
                self.lb(*index)
                    .ip(&["-o", "addr", "show", "dev", HOST_IF])
                    .contains(&format!(" {address}/"))
            })
            .collect()
    }

    /// The MAC the client has for the VIP, if any.
    pub fn client_vip_mac(&self) -> Option<String> {
        neighbour_mac(&self.client, VIP)
    }

    /// How long until the client's neighbour entry for the VIP has balancer `index`'s MAC
    /// (a new master's gratuitous ARPs move it), or `None` if it has not within `limit`.
    pub fn client_mac_within(&self, index: usize, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while self.client_vip_mac() != Some(lb_mac_text(index)) {
            if started.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(started.elapsed())
    }

    /// [`HaTopology::client_mac_within`], panicking when it does not happen.
    pub fn wait_for_client_mac(&self, index: usize, limit: Duration) -> Duration {
        self.client_mac_within(index, limit).unwrap_or_else(|| {
            panic!(
                "after {limit:?} the client has {:?} for the VIP, not lb{index}'s MAC",
                self.client_vip_mac()
            )
        })
    }

    /// Waits (bounded) until every real has balancer `index`'s MAC for `address` (the
    /// gratuitous ARPs of a new master moved it); panics naming the reals that do not.
    pub fn wait_until_reals_use(&self, index: usize, address: Ipv4Addr, limit: Duration) {
        let wanted = lb_mac_text(index);
        let started = Instant::now();
        loop {
            let elsewhere: Vec<(&str, Option<String>)> = self
                .reals
                .iter()
                .map(|(name, netns, _)| (name.as_str(), neighbour_mac(netns, address)))
                .filter(|(_, mac)| mac.as_deref() != Some(wanted.as_str()))
                .collect();
            if elsewhere.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "after {limit:?}, reals still do not have lb{index}'s MAC {wanted} for \
                 {address}: {elsewhere:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The MAC `netns` has on its eth0 for `address`, if any.
fn neighbour_mac(netns: &Netns, address: Ipv4Addr) -> Option<String> {
    let entry = netns.ip(&["neigh", "show", &address.to_string(), "dev", HOST_IF]);
    entry
        .split_whitespace()
        .skip_while(|word| *word != "lladdr")
        .nth(1)
        .map(str::to_owned)
}

fn wait_for_holders(
    holders: impl Fn() -> Vec<usize>,
    expected: &[usize],
    limit: Duration,
    what: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = holders();
        if now == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the {what} is on {now:?}, not {expected:?}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for HaTopology {
    fn drop(&mut self) {
        let programs = std::mem::take(
            self.pass_programs
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        self.switch.run(move || drop(programs));
    }
}

/// The MAC of balancer `index` as `ip neigh` prints it.
pub fn lb_mac_text(index: usize) -> String {
    format_mac(if index == 1 { &LB1_MAC } else { &LB2_MAC })
}
