//! A client behind a router, for path-MTU tests: [`DrTopology::add_far_client`].
//!
//! ```text
//!   far client 198.51.100.2        router                          lb, reals, client
//!              2001:db8:1::2       eth1 198.51.100.1 / 2001:db8:1::1
//!      eth0 (MTU 1500) ----------- eth1 (MTU 1500, routes MTU 1280)
//!                                  eth0 192.0.2.254 / 2001:db8::fe
//!                                    |
//!                                  p-rt ---- br0 (switch) ---- p-lb, p-realN, p-client
//! ```
//!
//! The far client reaches 192.0.2.0/24 and 2001:db8::/64 (the VIPs included) through the
//! router, which resolves the VIP with ARP or neighbour discovery like any other host and so
//! sends to the lb's MAC: only the director answers for the VIP. The lb and every real route
//! 198.51.100.0/24 and 2001:db8:1::/64 through the router, so that in DR a real's replies go
//! real → router → far client without crossing the lb. No namespace gets a default route.
//!
//! The bottleneck is the router's way to the far client: its routes there carry a locked MTU
//! of [`FAR_PATH_MTU`], so a full-size packet a real sends with DF (every TCP segment, and
//! every IPv6 packet) makes the router answer its source with ICMP fragmentation-needed or
//! ICMPv6 packet-too-big, while the far client's own link stays 1500 bytes: it advertises a
//! TCP MSS of 1460 (1440 over IPv6) and sends full-size packets towards the reals.
//!
//! Why a route MTU rather than an interface MTU of 1280 on the router's eth1: a veth end
//! drops, silently and without any ICMP, every frame its peer sends that exceeds its own MTU
//! (counted as an RX drop on that end). With 1280 facing the far client's 1500, whatever the
//! far client sent above 1280 bytes (full-size uploads, the fragments of a large datagram)
//! would vanish. Both ends at 1500 with a 1280 route MTU behaves like a 1280 hop further
//! down the path.

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_userspace::admin::format_mac;

use super::{
    DrTopology, HOST_IF, PREFIX_LEN, PREFIX_LEN6, host, quiet_namespace,
    wait_until_addresses_usable, wait_until_link_up,
};
use crate::netns::Netns;

/// Name (after the prefix) of the router's namespace, and of its port on the switch (`p-rt`).
pub const ROUTER: &str = "rt";
/// Name (after the prefix) of the far client's namespace.
pub const FAR: &str = "far";

/// The router's address on the switch.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
pub const ROUTER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
/// MAC of the router's eth0 (on the switch).
pub const ROUTER_MAC: [u8; 6] = super::host_mac(0xfe);
/// The router's address on the far link.
pub const ROUTER_FAR_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const ROUTER_FAR_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const FAR_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const FAR_CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The far link's subnets.
pub const FAR_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
pub const FAR_NET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0);
/// MACs on the far link: the router's eth1 and the far client's eth0.
pub const ROUTER_FAR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
pub const FAR_CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
/// The MTU of the router's routes to the far link: the path MTU between a real and the far
/// client.
pub const FAR_PATH_MTU: u32 = 1280;

/// The router and the far client. Dropping it removes both namespaces (the far client first);
/// the routes the lb and reals got towards the router stay, pointing nowhere.
pub struct FarClient {
    /// `<prefix>far`: [`FAR_CLIENT_IP`] (and [`FAR_CLIENT_IP6`]) on eth0.
    pub far: Netns,
    /// `<prefix>rt`: eth0 on the switch, eth1 to the far client, forwarding on.
    pub router: Netns,
}

impl DrTopology {
    /// Adds a router on the switch and a client behind it (see [`far_client`](self)), and
    /// routes between them and the lb and every real. IPv6 too when the topology is dual
    /// stack. Returns once every link is up. Panics on failure; the namespaces made so far are
    /// removed.
    pub fn add_far_client(&self) -> FarClient {
        for name in [ROUTER, FAR] {
            assert!(
                !self.reals.iter().any(|(real, ..)| real == name),
                "a real called {name:?} takes the far client's namespace name"
            );
        }
        let prefix = self.prefix();
        let ipv6 = self.is_dual_stack();
        // Made first so that the router's veth can be created with its far end inside.
        let far = Netns::create(&format!("{prefix}{FAR}"));
        quiet_namespace(&far, ipv6);
        let router = host(
            &self.switch,
            prefix,
            ROUTER,
            (ROUTER_IP, ROUTER_MAC),
            ipv6.then_some(ROUTER_IP6),
        );
        let far_client = FarClient { far, router };
        far_client.wire(ipv6);

        let hosts = std::iter::once(&self.lb).chain(self.reals.iter().map(|(_, netns, _)| netns));
        for netns in hosts {
            netns.ip(&[
                "route",
                "add",
                &format!("{FAR_NET}/{PREFIX_LEN}"),
                "via",
                &ROUTER_IP.to_string(),
            ]);
            if ipv6 {
                netns.ip(&[
                    "-6",
                    "route",
                    "add",
                    &format!("{FAR_NET6}/{PREFIX_LEN6}"),
                    "via",
                    &ROUTER_IP6.to_string(),
                ]);
            }
        }
        far_client.wait_until_up(ipv6);
        far_client
    }
}

impl FarClient {
    fn wire(&self, ipv6: bool) {
        let (router, far) = (&self.router, &self.far);
        // Checksums must be whole on the wire: frames may meet an XDP program on the lb, which
        // never completes a checksum left to "offload" (see DrTopology::build).
        router.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        router.sysctl("net.ipv4.ip_forward", "1");
        if ipv6 {
            router.sysctl("net.ipv6.conf.all.forwarding", "1");
        }
        let link = format!(
            "link add eth1 address {} type veth peer name {HOST_IF} address {} netns {}",
            format_mac(&ROUTER_FAR_MAC),
            format_mac(&FAR_CLIENT_MAC),
            far.name()
        );
        router.ip(&link.split(' ').collect::<Vec<_>>());

        // The router's side: addresses without their prefix routes, which come back with the
        // path's MTU on them, locked so that nothing the router learns later changes it.
        let mtu = FAR_PATH_MTU.to_string();
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_FAR_IP}/{PREFIX_LEN}"),
            "dev",
            "eth1",
            "noprefixroute",
        ]);
        if ipv6 {
            router.ip(&[
                "addr",
                "add",
                &format!("{ROUTER_FAR_IP6}/{PREFIX_LEN6}"),
                "dev",
                "eth1",
                "nodad",
                "noprefixroute",
            ]);
        }
        router.ip(&["link", "set", "eth1", "up"]);
        router.ip(&[
            "route",
            "add",
            &format!("{FAR_NET}/{PREFIX_LEN}"),
            "dev",
            "eth1",
            "src",
            &ROUTER_FAR_IP.to_string(),
            "mtu",
            "lock",
            &mtu,
        ]);
        if ipv6 {
            router.ip(&[
                "-6",
                "route",
                "add",
                &format!("{FAR_NET6}/{PREFIX_LEN6}"),
                "dev",
                "eth1",
                "mtu",
                "lock",
                &mtu,
            ]);
        }

        // The far client's side.
        far.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        far.ip(&[
            "addr",
            "add",
            &format!("{FAR_CLIENT_IP}/{PREFIX_LEN}"),
            "dev",
            HOST_IF,
        ]);
        if ipv6 {
            far.ip(&[
                "addr",
                "add",
                &format!("{FAR_CLIENT_IP6}/{PREFIX_LEN6}"),
                "dev",
                HOST_IF,
                "nodad",
            ]);
        }
        far.ip(&["link", "set", HOST_IF, "up"]);
        far.ip(&[
            "route",
            "add",
            &format!("{}/{PREFIX_LEN}", Ipv4Addr::new(192, 0, 2, 0)),
            "via",
            &ROUTER_FAR_IP.to_string(),
        ]);
        if ipv6 {
            far.ip(&[
                "-6",
                "route",
                "add",
                &format!(
                    "{}/{PREFIX_LEN6}",
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)
                ),
                "via",
                &ROUTER_FAR_IP6.to_string(),
            ]);
        }
    }

    fn wait_until_up(&self, ipv6: bool) {
        let timeout = std::time::Duration::from_secs(5);
        let deadline = std::time::Instant::now() + timeout;
        for (netns, interface) in [
            (&self.router, HOST_IF),
            (&self.router, "eth1"),
            (&self.far, HOST_IF),
        ] {
            wait_until_link_up(netns, interface, deadline, timeout);
        }
        if ipv6 {
            for netns in [&self.router, &self.far] {
                wait_until_addresses_usable(netns, deadline, timeout);
            }
        }
    }
}
