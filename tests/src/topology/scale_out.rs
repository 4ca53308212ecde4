//! Scale-out: two balancers behind a router that spreads the VIP's traffic over them by ECMP,
//! the VIP announced by each balancer over BGP (BIRD on every side), reals answering the
//! client directly (LVS-DR), every host in a namespace of its own.
//!
//! ```text
//!   client 203.0.113.2                router (AS 64500, BIRD)
//!      eth0 ----------------------- eth1 203.0.113.1
//!                                   br0 198.51.100.1/24
//!                                    |
//!          +--------------+----------+---+-------------+-------------+
//!        p-lb1          p-lb2          p-real1       p-real2       p-real3
//!          |              |              |             |             |
//!   lb1 .11 (AS 64512)  lb2 .12      real1 .21     real2 .22     real3 .23
//!   BIRD + lbd          BIRD + lbd   (VIP 192.0.2.10/32 on lo of each real)
//! ```
//!
//! The router learns 192.0.2.10/32 from both balancers over eBGP and, with `merge paths on`
//! in BIRD's kernel protocol, installs one route with both as next hops; the kernel hashes
//! each flow's 5-tuple (`fib_multipath_hash_policy=1`) to pick one. A real answers from the
//! VIP straight back through the router. No balancer holds the VIP: the router sends the
//! VIP's packets to a balancer's own address, and XDP takes them there.
//!
//! `p-lb1` and `p-lb2` run `xdp_pass`, so that frames the balancers send with `XDP_TX` reach
//! the bridge. IPv6 is off everywhere, as in [`super::DrTopology::build`].

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::Ebpf;
use lb_userspace::admin::format_mac;

use super::{BRIDGE, HOST_IF, Plug, host_mac, port_mac, port_name};
use crate::{bird::Bird, http::HttpServer, netns::Netns};

/// The service address both balancers announce.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The router's address toward the client.
pub const ROUTER_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The router's address on the balancers' and reals' segment (on its bridge).
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const LB_IPS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 11),
    Ipv4Addr::new(198, 51, 100, 12),
];
pub const REAL_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 21),
    Ipv4Addr::new(198, 51, 100, 22),
    Ipv4Addr::new(198, 51, 100, 23),
];
pub const ROUTER_AS: u32 = 64500;
pub const LB_AS: u32 = 64512;
/// The router's BGP hold time toward the balancers, in seconds (the least BIRD takes).
pub const HOLD_TIME_S: u32 = 3;
/// Interval and multiplier of the router's BFD sessions: a balancer that stops answering
/// is declared down after about multiplier × interval. BFD takes the slower of the two
/// ends' intervals, so this (lbd's is 100 ms) sets both ends' detection to 0.9 s: a single
/// scheduling stall of a loaded CI machine must not drop a session the test keeps.
pub const BFD_INTERVAL_MS: u32 = 300;
pub const BFD_MULTIPLIER: u32 = 3;

const CLIENT_MAC: [u8; 6] = host_mac(2);
const ROUTER_CLIENT_MAC: [u8; 6] = host_mac(1);

pub struct ScaleOutTopology {
    /// `xdp_pass` on the balancers' bridge ports; dropped (in the router's namespace) first.
    pass_programs: Vec<Ebpf>,
    pub client: Netns,
    pub lb1: Netns,
    pub lb2: Netns,
    /// (name, namespace, address): real1, real2, real3.
    pub reals: Vec<(String, Netns, Ipv4Addr)>,
    pub router: Netns,
}

impl ScaleOutTopology {
    /// Namespaces `<prefix>router`, `<prefix>client`, `<prefix>lb1`, `<prefix>lb2` and
    /// `<prefix>real1..3`, after removing leftovers of `prefix`. Returns once every link is
    /// up. BIRD runs nowhere yet: see [`ScaleOutTopology::start_router_bird`].
    pub fn build(prefix: &str) -> ScaleOutTopology {
        crate::netns::remove_leftovers(prefix);
        let router = Netns::create(&format!("{prefix}router"));
        super::quiet_namespace(&router, false);
        router.sysctl("net.ipv4.ip_forward", "1");
        // Hash on the 5-tuple, so that the client's connections (one address, many ports)
        // spread over both balancers.
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        super::add_bridge(&router);
        router.ip(&["addr", "add", &format!("{ROUTER_IP}/24"), "dev", BRIDGE]);
        router.ip(&["link", "set", BRIDGE, "up"]);

        let client = client(prefix, &router);
        let segment_host = |name: &str, ip: Ipv4Addr| {
            let mac = host_mac(ip.octets()[3]);
            let plug = Plug {
                switch: &router,
                bridge: BRIDGE,
                port: port_name(name),
                port_mac: port_mac(mac),
            };
            super::plugged(plug, prefix, name, mac, (ip, 24), None)
        };
        let lb1 = segment_host("lb1", LB_IPS[0]);
        let lb2 = segment_host("lb2", LB_IPS[1]);
        let reals = REAL_IPS
            .iter()
            .enumerate()
            .map(|(index, ip)| {
                let name = format!("real{}", index + 1);
                let netns = segment_host(&name, *ip);
                super::hold_vip_silently(&netns, VIP);
                netns.ip(&[
                    "route",
                    "add",
                    &format!("{}/24", Ipv4Addr::new(203, 0, 113, 0)),
                    "via",
                    &ROUTER_IP.to_string(),
                ]);
                (name, netns, *ip)
            })
            .collect();

        let mut topology = ScaleOutTopology {
            pass_programs: Vec::new(),
            client,
            lb1,
            lb2,
            reals,
            router,
        };
        let timeout = Duration::from_secs(5);
        let deadline = Instant::now() + timeout;
        super::wait_until_link_up(&topology.router, "eth1", deadline, timeout);
        for netns in topology.hosts() {
            super::wait_until_link_up(netns, HOST_IF, deadline, timeout);
        }
        for port in ["p-lb1", "p-lb2"] {
            let program = topology.router.run(|| super::load_pass_program(port));
            topology.pass_programs.push(program);
        }
        // Each balancer's MAC pinned to its port, as a switch that learnt it would keep it
        // while the port is down: otherwise a dead balancer's port flushes its entry and the
        // bridge floods frames for it to the other balancer, whose program (which does not
        // look at the destination MAC; a real NIC filters it) would carry the dead one's
        // traffic before BGP withdrew it.
        for (index, ip) in LB_IPS.iter().enumerate() {
            let mac = format_mac(&host_mac(ip.octets()[3]));
            topology.router.exec(&[
                "bridge",
                "fdb",
                "replace",
                &mac,
                "dev",
                &port_name(&format!("lb{}", index + 1)),
                "master",
                "static",
            ]);
        }
        topology
    }

    fn hosts(&self) -> impl Iterator<Item = &Netns> {
        [&self.client, &self.lb1, &self.lb2]
            .into_iter()
            .chain(self.reals.iter().map(|(_, netns, _)| netns))
    }

    /// Balancer `index` (1 or 2).
    pub fn lb(&self, index: usize) -> &Netns {
        match index {
            1 => &self.lb1,
            2 => &self.lb2,
            _ => panic!("no lb{index}"),
        }
    }

    /// An HTTP server on port 80 of every real, answering with the real's name.
    pub fn serve_http(&self) -> Vec<HttpServer> {
        self.reals
            .iter()
            .map(|(name, netns, _)| HttpServer::start(netns, "0.0.0.0:80".parse().unwrap(), name))
            .collect()
    }

    /// Takes balancer `index`'s own end of its link down (`up: false`) or up again: nothing
    /// it sends or forwards gets out, nothing reaches it, while the router's bridge port
    /// merely loses its carrier and the bridge itself stays up, so the router's routes
    /// through it stay until BGP (or BFD) says otherwise.
    pub fn set_lb_link(&self, index: usize, up: bool) {
        self.lb(index)
            .ip(&["link", "set", HOST_IF, if up { "up" } else { "down" }]);
    }

    /// Starts the router's BIRD ([`router_bird_config`]); its files go to `<temp>/<name>`.
    pub fn start_router_bird(&self, name: &str) -> Bird {
        Bird::start(&self.router, name, &router_bird_config())
    }

    /// The next hops of the router's kernel route to the VIP (`ip route show VIP`): none,
    /// one balancer, or both (an ECMP route), in the kernel's order.
    pub fn vip_next_hops(&self) -> Vec<Ipv4Addr> {
        let route = self.router.ip(&["route", "show", &VIP.to_string()]);
        next_hops(&route)
    }

    /// Waits (bounded, polling every 10 ms) until the router's route to the VIP goes through
    /// exactly the balancers `expected` (1, 2), whatever their order; returns how long that
    /// took. Panics after `limit` with the route and `context()` (logs, BIRD's view).
    pub fn wait_for_next_hops(
        &self,
        expected: &[usize],
        limit: Duration,
        context: impl Fn() -> String,
    ) -> Duration {
        let mut wanted: Vec<Ipv4Addr> = expected.iter().map(|index| LB_IPS[index - 1]).collect();
        wanted.sort();
        let started = Instant::now();
        loop {
            let mut now = self.vip_next_hops();
            now.sort();
            if now == wanted {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "the router's route to {VIP} goes through {now:?}, not {wanted:?}, after \
                 {limit:?}:\n{}",
                context()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ScaleOutTopology {
    fn drop(&mut self) {
        // Detached inside the router's namespace (see DrTopology's Drop); then the fields
        // drop in declaration order, the router last.
        let programs = std::mem::take(&mut self.pass_programs);
        self.router.run(move || drop(programs));
    }
}

/// The client's namespace, linked to the router's eth1, with a route to the VIPs' subnet
/// through the router.
fn client(prefix: &str, router: &Netns) -> Netns {
    let client = Netns::create(&format!("{prefix}client"));
    super::quiet_namespace(&client, false);
    let link = format!(
        "link add eth1 address {} type veth peer name {HOST_IF} address {} netns {}",
        format_mac(&ROUTER_CLIENT_MAC),
        format_mac(&CLIENT_MAC),
        client.name()
    );
    router.ip(&link.split(' ').collect::<Vec<_>>());
    router.ip(&[
        "addr",
        "add",
        &format!("{ROUTER_CLIENT_IP}/24"),
        "dev",
        "eth1",
    ]);
    router.ip(&["link", "set", "eth1", "up"]);
    // The client's checksums must be whole on the wire: an XDP program that forwards its
    // frames never completes one left to "offload" (see DrTopology::build).
    client.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
    client.ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", HOST_IF]);
    client.ip(&["link", "set", HOST_IF, "up"]);
    client.ip(&[
        "route",
        "add",
        &format!("{}/24", Ipv4Addr::new(192, 0, 2, 0)),
        "via",
        &ROUTER_CLIENT_IP.to_string(),
    ]);
    client
}

/// The router's BIRD config: eBGP from AS [`ROUTER_AS`] to each balancer (AS [`LB_AS`]),
/// importing what they announce, exporting nothing; BFD on every session; and the kernel
/// protocol merging equal routes into one ECMP route (`merge paths on`), since a BGP route
/// from each balancer is otherwise one best route and one backup.
pub fn router_bird_config() -> String {
    let neighbours: String = LB_IPS
        .iter()
        .enumerate()
        .map(|(index, ip)| {
            format!(
                "protocol bgp lb{} from balancer {{ neighbor {ip} as {LB_AS}; }}\n",
                index + 1
            )
        })
        .collect();
    format!(
        "router id {ROUTER_IP};
protocol device {{ }}
protocol kernel {{
  ipv4 {{ import none; export all; }};
  merge paths on;
}}
protocol bfd {{
  interface \"{BRIDGE}\" {{
    min rx interval {BFD_INTERVAL_MS} ms;
    min tx interval {BFD_INTERVAL_MS} ms;
    multiplier {BFD_MULTIPLIER};
  }};
}}
template bgp balancer {{
  local {ROUTER_IP} as {ROUTER_AS};
  hold time {HOLD_TIME_S};
  connect retry time 1;
  error wait time 1, 2;
  bfd on;
  ipv4 {{ import all; export none; }};
}}
{neighbours}"
    )
}

/// The next hops in `ip route show` output: every address after a `via`.
fn next_hops(route: &str) -> Vec<Ipv4Addr> {
    let words: Vec<&str> = route.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "via")
        .map(|pair| {
            pair[1]
                .parse()
                .unwrap_or_else(|e| panic!("next hop {:?} in {route:?}: {e}", pair[1]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_of_single_and_multipath_routes() {
        assert_eq!(next_hops(""), Vec::<Ipv4Addr>::new());
        assert_eq!(
            next_hops("192.0.2.10 via 198.51.100.11 dev br0 proto bird metric 32 \n"),
            [LB_IPS[0]]
        );
        let ecmp = "192.0.2.10 proto bird metric 32 \n\tnexthop via 198.51.100.11 dev br0 \
                    weight 1 \n\tnexthop via 198.51.100.12 dev br0 weight 1 \n";
        assert_eq!(next_hops(ecmp), LB_IPS);
    }

    #[test]
    fn router_config_names_both_balancers() {
        let config = router_bird_config();
        assert!(
            config.contains("neighbor 198.51.100.11 as 64512;"),
            "{config}"
        );
        assert!(
            config.contains("neighbor 198.51.100.12 as 64512;"),
            "{config}"
        );
        assert!(config.contains("merge paths on;"), "{config}");
    }
}
