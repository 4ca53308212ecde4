//! Hosts for the forwarding modes beyond direct routing, added to the LVS-DR network of
//! [`super`]: a site behind a router (tunnel reals anywhere), a second segment behind a second
//! interface of the lb (NAT and full-NAT reals), and a point-to-point link from the lb to a
//! real (a smaller MTU on the lb's way to one real).
//!
//! ```text
//!   client, lb eth0, reals ── br0 (switch) ── eth0 192.0.2.253  site router  br1 203.0.113.1/26
//!                                                                               |
//!                                                               site hosts 203.0.113.1N (VIPs on lo)
//!
//!   lb eth1 203.0.113.129/26 ── br0 (back switch) ── back hosts 203.0.113.14N
//!
//!   lb eth2 203.0.113.193/30 ───────────────────────── eth1 203.0.113.194 of a real on br0
//! ```
//!
//! IPv6, when the topology is dual stack, mirrors IPv4 with the last octet written as hex
//! digits (as [`super::real_ip6`] does): the site is 2001:db8:3::/64 (router ::1, hosts ::10
//! on), the back segment 2001:db8:4::/64 (lb ::129, hosts ::140 on), the link 2001:db8:6::/64
//! (lb ::193, real ::194).
//!
//! - **Routed site** ([`DrTopology::add_routed_site`]): the lb reaches the site through the
//!   router; the site's hosts reach the switch's subnet through it too, so what they send from
//!   a VIP goes host → router → client without crossing the lb. The router forwards packets
//!   from a VIP that arrive on the site's side (rp_filter off): the replies of tunnel reals.
//!   Each site host holds the VIPs on `lo` with rp_filter off: a tunnel real as
//!   [`prepare_tunnel_real`] leaves one. The lb's routes to the site name its own address
//!   ([`super::LB_IP`], [`super::LB_IP6`]) as the preferred source, never the VIP.
//! - **Back segment** ([`DrTopology::add_back_segment`]): a switch of its own, the lb's eth1 on
//!   it. Its hosts have no route beyond it (full NAT needs none) until
//!   [`BackSegment::route_clients_via_lb`] routes the clients' networks through the lb (NAT:
//!   the replies must cross the balancer to be translated back). The lb's port on this switch
//!   runs `xdp_pass`, as on the first switch (veth drops frames sent by XDP otherwise).
//! - **Direct link** ([`DrTopology::add_direct_link`]): a veth from the lb's eth2 to a new eth1
//!   of one real, with an MTU of its own.
//!
//! Every host's eth0 has TX checksum offload off: a NAT real's replies are rewritten by XDP,
//! which never completes a checksum left to "offload". No namespace gets a default route.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use aya::Ebpf;
use lb_userspace::admin::format_mac;

use super::{
    BRIDGE, CLIENT_IP, CLIENT_IP6, DrTopology, HOST_IF, LB_IP, LB_IP6, PREFIX_LEN, PREFIX_LEN6,
    Plug, VIP, VIP6,
    far_client::{FAR_NET, FAR_NET6},
    host, host_mac, load_pass_program, plugged, quiet_namespace, wait_until_addresses_usable,
    wait_until_link_up,
};
use crate::netns::Netns;

/// Name (after the prefix) of the site router's namespace, and of its port on the switch.
pub const SITE_ROUTER: &str = "site";
/// The site router's address on the switch.
pub const SITE_ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 253);
pub const SITE_ROUTER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfd);
pub const SITE_ROUTER_MAC: [u8; 6] = host_mac(0xfd);
/// The site's subnets, and the router's address on them.
pub const SITE_NET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 0);
pub const SITE_NET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0);
pub const SITE_PREFIX_LEN: u8 = 26;
pub const SITE_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const SITE_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 1);
/// The bridge in the router's namespace that the site's hosts plug into.
const SITE_BRIDGE: &str = "br1";
const FIRST_SITE_OCTET: u8 = 10;

/// Name (after the prefix) of the back segment's switch namespace.
pub const BACK_SWITCH: &str = "bsw";
/// The lb's interface on the back segment.
pub const BACK_IF: &str = "eth1";
pub const BACK_NET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 128);
pub const BACK_NET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, 0);
pub const BACK_PREFIX_LEN: u8 = 26;
/// The lb's address on the back segment: what full-NAT reals see flows come from by default.
pub const LB_BACK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 129);
pub const LB_BACK_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, 0x129);
pub const LB_BACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x04, 129];
const FIRST_BACK_OCTET: u8 = 140;

/// The lb's end of the direct link, and the real's.
pub const LINK_IF: &str = "eth2";
pub const LINK_REAL_IF: &str = "eth1";
pub const LINK_PREFIX_LEN: u8 = 30;
pub const LB_LINK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 193);
pub const LINK_REAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 194);
pub const LB_LINK_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0x193);
pub const LINK_REAL_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0x194);
const LB_LINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x06, 0xc1];
const LINK_REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x06, 0xc2];

/// Address of the site host at `index` (0-based): 203.0.113.10, .11, …
pub const fn site_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, octet(FIRST_SITE_OCTET, index))
}

/// 2001:db8:3::10 for 203.0.113.10.
pub const fn site_ip6(index: usize) -> Ipv6Addr {
    let last = hex_digits(octet(FIRST_SITE_OCTET, index));
    Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, last)
}

/// Address of the back host at `index` (0-based): 203.0.113.140, .141, …
pub const fn back_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, octet(FIRST_BACK_OCTET, index))
}

/// 2001:db8:4::140 for 203.0.113.140.
pub const fn back_ip6(index: usize) -> Ipv6Addr {
    let last = hex_digits(octet(FIRST_BACK_OCTET, index));
    Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, last)
}

const fn octet(first: u8, index: usize) -> u8 {
    assert!(index < 40, "at most 40 hosts on a site or back segment");
    first + index as u8
}

/// 140 → 0x140: the decimal digits read as hex, so the IPv6 address shows the IPv4 octet.
const fn hex_digits(octet: u8) -> u16 {
    let octet = octet as u16;
    (octet / 100) * 256 + (octet / 10 % 10) * 16 + octet % 10
}

/// A host of a routed site or of the back segment: namespace `<prefix><name>`, one eth0.
pub struct Host {
    pub name: String,
    pub netns: Netns,
    pub ip: Ipv4Addr,
    /// Configured only when the topology is dual stack.
    pub ip6: Ipv6Addr,
}

/// A router on the switch and the hosts behind it ([`DrTopology::add_routed_site`]). Dropping
/// it removes the hosts, then the router; the lb's routes to the site stay, pointing nowhere.
pub struct RoutedSite {
    pub hosts: Vec<Host>,
    /// `<prefix>site`: eth0 on the switch, the site's bridge `br1`, forwarding on.
    pub router: Netns,
}

impl RoutedSite {
    /// The host called `name`.
    pub fn host(&self, name: &str) -> &Host {
        find(&self.hosts, name)
    }
}

/// The second segment behind the lb's eth1 ([`DrTopology::add_back_segment`]). Dropping it
/// detaches `xdp_pass`, removes the hosts, then the switch (and with it the lb's eth1).
pub struct BackSegment {
    /// `xdp_pass` on the lb's port, detached inside the switch's namespace on drop.
    pass_program: Option<Ebpf>,
    pub hosts: Vec<Host>,
    /// `<prefix>bsw`: the bridge `br0`, the lb's port `p-lb` and one port per host.
    pub switch: Netns,
    ipv6: bool,
}

impl BackSegment {
    /// The host called `name`.
    pub fn host(&self, name: &str) -> &Host {
        find(&self.hosts, name)
    }

    /// Makes the host `name` a NAT real: it reaches the clients' networks (the switch's subnet
    /// and the far client's) through the lb's address on the back segment, so that its
    /// replies cross the balancer. Specific routes rather than a default one: nothing routes
    /// out of the test's namespaces.
    pub fn route_clients_via_lb(&self, name: &str) {
        let netns = &self.host(name).netns;
        for net in [Ipv4Addr::new(192, 0, 2, 0), FAR_NET] {
            netns.ip(&[
                "route",
                "add",
                &format!("{net}/{PREFIX_LEN}"),
                "via",
                &LB_BACK_IP.to_string(),
            ]);
        }
        if self.ipv6 {
            for net in [Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), FAR_NET6] {
                netns.ip(&[
                    "-6",
                    "route",
                    "add",
                    &format!("{net}/{PREFIX_LEN6}"),
                    "via",
                    &LB_BACK_IP6.to_string(),
                ]);
            }
        }
    }
}

impl Drop for BackSegment {
    fn drop(&mut self) {
        // As for the first switch: detach inside the namespace the program was attached in.
        if let Some(program) = self.pass_program.take() {
            self.switch.run(move || drop(program));
        }
    }
}

fn find<'a>(hosts: &'a [Host], name: &str) -> &'a Host {
    hosts
        .iter()
        .find(|host| host.name == name)
        .unwrap_or_else(|| panic!("no host called {name:?}"))
}

/// Frames of each tunnel kind the switch forwarded, counted in its namespace by nftables since
/// [`DrTopology::count_tunnel_frames`]: IP in IP (protocol 4 or 41, under an IPv4 or an IPv6
/// header) and GUE (UDP to the GUE port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelFrames {
    pub ipip4: u64,
    pub ipip6: u64,
    pub gue4: u64,
    pub gue6: u64,
}

const TUNNEL_COUNTERS: [&str; 4] = ["ipip4", "ipip6", "gue4", "gue6"];

impl DrTopology {
    /// Adds a router on the switch (namespace `<prefix>site`, [`SITE_ROUTER_IP`]) and, behind
    /// it on the site's subnet, a host per name ([`site_ip`] in order), each holding the VIPs
    /// on `lo` with rp_filter off, as a tunnel real. The lb routes the site through the
    /// router, the hosts route the switch's subnet back through it. IPv6 too when the topology
    /// is dual stack. Returns once every link is up; panics on failure, the namespaces made so
    /// far removed.
    pub fn add_routed_site(&self, names: &[&str]) -> RoutedSite {
        let (prefix, ipv6) = (self.prefix(), self.is_dual_stack());
        self.check_new_names(names.iter().copied().chain([SITE_ROUTER]));
        let router = host(
            &self.switch,
            prefix,
            SITE_ROUTER,
            (SITE_ROUTER_IP, SITE_ROUTER_MAC),
            ipv6.then_some(SITE_ROUTER_IP6),
        );
        router.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        router.sysctl("net.ipv4.ip_forward", "1");
        if ipv6 {
            router.sysctl("net.ipv6.conf.all.forwarding", "1");
        }
        // A tunnel real's replies come from a VIP, whose subnet is on the router's eth0 side:
        // reverse-path filtering would drop them as they arrive from the site.
        rp_filter_off(&router);
        router.ip(&[
            "link",
            "add",
            SITE_BRIDGE,
            "address",
            &format_mac(&[0x02, 0, 0, 0, 0x03, 0x01]),
            "type",
            "bridge",
        ]);
        if ipv6 {
            router.ip(&[
                "link",
                "set",
                SITE_BRIDGE,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ]);
        }
        router.ip(&[
            "addr",
            "add",
            &format!("{SITE_GATEWAY}/{SITE_PREFIX_LEN}"),
            "dev",
            SITE_BRIDGE,
        ]);
        if ipv6 {
            router.ip(&[
                "addr",
                "add",
                &format!("{SITE_GATEWAY6}/{PREFIX_LEN6}"),
                "dev",
                SITE_BRIDGE,
                "nodad",
            ]);
        }
        router.ip(&["link", "set", SITE_BRIDGE, "up"]);
        let mut site = RoutedSite {
            hosts: Vec::new(),
            router,
        };

        for (index, name) in names.iter().enumerate() {
            let (ip, ip6) = (site_ip(index), site_ip6(index));
            let netns = plug_host(
                Plug {
                    switch: &site.router,
                    bridge: SITE_BRIDGE,
                    port: format!("s-{name}"),
                    port_mac: [0x02, 0, 0, 0, 0x13, ip.octets()[3]],
                },
                prefix,
                name,
                [0x02, 0, 0, 0, 0x03, ip.octets()[3]],
                (ip, SITE_PREFIX_LEN),
                ipv6.then_some(ip6),
            );
            netns.ip(&[
                "route",
                "add",
                &format!("{}/{PREFIX_LEN}", Ipv4Addr::new(192, 0, 2, 0)),
                "via",
                &SITE_GATEWAY.to_string(),
            ]);
            netns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            if ipv6 {
                netns.ip(&[
                    "-6",
                    "route",
                    "add",
                    &format!(
                        "{}/{PREFIX_LEN6}",
                        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)
                    ),
                    "via",
                    &SITE_GATEWAY6.to_string(),
                ]);
                netns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]);
            }
            prepare_tunnel_real(&netns);
            site.hosts.push(Host {
                name: name.to_string(),
                netns,
                ip,
                ip6,
            });
        }

        // With the lb's own address as the source: source selection would otherwise be free
        // to pick the VIP (IPv6 does), which the site's hosts hold themselves.
        self.lb.ip(&[
            "route",
            "add",
            &format!("{SITE_NET}/{SITE_PREFIX_LEN}"),
            "via",
            &SITE_ROUTER_IP.to_string(),
            "src",
            &LB_IP.to_string(),
        ]);
        if ipv6 {
            self.lb.ip(&[
                "-6",
                "route",
                "add",
                &format!("{SITE_NET6}/{PREFIX_LEN6}"),
                "via",
                &SITE_ROUTER_IP6.to_string(),
                "src",
                &LB_IP6.to_string(),
            ]);
        }

        let interfaces = [(&site.router, HOST_IF), (&site.router, SITE_BRIDGE)]
            .into_iter()
            .chain(site.hosts.iter().map(|host| (&host.netns, HOST_IF)));
        wait_until_up(interfaces, ipv6);
        site
    }

    /// Adds a second segment: a switch of its own (`<prefix>bsw`), the lb's [`BACK_IF`] on it
    /// ([`LB_BACK_IP`]) and a host per name ([`back_ip`] in order) with no route beyond the
    /// segment. IPv6 too when the topology is dual stack. Returns once every link is up;
    /// panics on failure, the namespaces made so far removed.
    pub fn add_back_segment(&self, names: &[&str]) -> BackSegment {
        let (prefix, ipv6) = (self.prefix(), self.is_dual_stack());
        self.check_new_names(names.iter().copied().chain([BACK_SWITCH]));
        let switch = Netns::create(&format!("{prefix}{BACK_SWITCH}"));
        quiet_namespace(&switch, false);
        switch.ip(&[
            "link",
            "add",
            BRIDGE,
            "address",
            &format_mac(&[0x02, 0, 0, 0, 0x05, 0xff]),
            "type",
            "bridge",
        ]);
        if ipv6 {
            switch.ip(&[
                "link",
                "set",
                BRIDGE,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ]);
        }
        switch.ip(&["link", "set", BRIDGE, "up"]);
        let mut segment = BackSegment {
            pass_program: None,
            hosts: Vec::new(),
            switch,
            ipv6,
        };

        // The lb's side, made directly in the lb's namespace.
        let lb_port = "p-lb";
        let veth = format!(
            "link add {lb_port} address {} type veth peer name {BACK_IF} address {} netns {}",
            format_mac(&[0x02, 0, 0, 0, 0x05, LB_BACK_MAC[5]]),
            format_mac(&LB_BACK_MAC),
            self.lb.name()
        );
        segment.switch.ip(&veth.split(' ').collect::<Vec<_>>());
        segment
            .switch
            .ip(&["link", "set", lb_port, "master", BRIDGE, "up"]);
        self.lb.ip(&[
            "addr",
            "add",
            &format!("{LB_BACK_IP}/{BACK_PREFIX_LEN}"),
            "dev",
            BACK_IF,
        ]);
        if ipv6 {
            self.lb.ip(&[
                "addr",
                "add",
                &format!("{LB_BACK_IP6}/{PREFIX_LEN6}"),
                "dev",
                BACK_IF,
                "nodad",
            ]);
        }
        self.lb.ip(&["link", "set", BACK_IF, "up"]);

        for (index, name) in names.iter().enumerate() {
            let (ip, ip6) = (back_ip(index), back_ip6(index));
            let netns = plug_host(
                Plug {
                    switch: &segment.switch,
                    bridge: BRIDGE,
                    port: super::port_name(name),
                    port_mac: [0x02, 0, 0, 0, 0x05, ip.octets()[3]],
                },
                prefix,
                name,
                [0x02, 0, 0, 0, 0x04, ip.octets()[3]],
                (ip, BACK_PREFIX_LEN),
                ipv6.then_some(ip6),
            );
            segment.hosts.push(Host {
                name: name.to_string(),
                netns,
                ip,
                ip6,
            });
        }

        let interfaces = std::iter::once((&self.lb, BACK_IF))
            .chain(segment.hosts.iter().map(|host| (&host.netns, HOST_IF)));
        wait_until_up(interfaces, ipv6);
        segment.pass_program = Some(segment.switch.run(|| load_pass_program(lb_port)));
        segment
    }

    /// Adds a point-to-point link from the lb's [`LINK_IF`] ([`LB_LINK_IP`]) to a new
    /// [`LINK_REAL_IF`] of the real called `real` ([`LINK_REAL_IP`]), both ends at `mtu`. IPv6
    /// too when the topology is dual stack. The real's end has GRO on, so that it takes the
    /// frames the lb's XDP program redirects there. The link goes with the namespaces.
    pub fn add_direct_link(&self, real: &str, mtu: u32) {
        let ipv6 = self.is_dual_stack();
        let netns = self.real(real);
        let veth = format!(
            "link add {LINK_IF} address {} type veth peer name {LINK_REAL_IF} address {} netns {}",
            format_mac(&LB_LINK_MAC),
            format_mac(&LINK_REAL_MAC),
            netns.name()
        );
        self.lb.ip(&veth.split(' ').collect::<Vec<_>>());
        let mtu = mtu.to_string();
        for (host, interface, ip, ip6) in [
            (&self.lb, LINK_IF, LB_LINK_IP, LB_LINK_IP6),
            (netns, LINK_REAL_IF, LINK_REAL_IP, LINK_REAL_IP6),
        ] {
            host.ip(&["link", "set", interface, "mtu", &mtu]);
            host.ip(&[
                "addr",
                "add",
                &format!("{ip}/{LINK_PREFIX_LEN}"),
                "dev",
                interface,
            ]);
            if ipv6 {
                host.ip(&[
                    "addr",
                    "add",
                    &format!("{ip6}/{PREFIX_LEN6}"),
                    "dev",
                    interface,
                    "nodad",
                ]);
            }
            host.ip(&["link", "set", interface, "up"]);
        }
        // A veth takes frames another interface's XDP program redirects to it only if it runs
        // a native XDP program or has GRO on (its NAPI then runs): GRO, so that the lb's
        // redirects reach the real whatever mode its own program (`lbd decap`) is attached in.
        netns.exec(&["ethtool", "-K", LINK_REAL_IF, "gro", "on"]);
        wait_until_up([(&self.lb, LINK_IF), (netns, LINK_REAL_IF)], ipv6);
    }

    /// Makes the real called `name` a NAT real beside the client, on the switch: it no longer
    /// holds the VIPs, and it reaches the client (and only the client) through the lb, so that
    /// its replies cross the balancer to be translated back. Its own subnet stays connected:
    /// the lb still reaches it directly.
    pub fn make_nat_real(&self, name: &str) {
        let netns = self.real(name);
        netns.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        netns.ip(&["addr", "del", &format!("{VIP}/32"), "dev", "lo"]);
        netns.ip(&[
            "route",
            "add",
            &format!("{CLIENT_IP}/32"),
            "via",
            &LB_IP.to_string(),
        ]);
        if self.is_dual_stack() {
            netns.ip(&["addr", "del", &format!("{VIP6}/128"), "dev", "lo"]);
            netns.ip(&[
                "-6",
                "route",
                "add",
                &format!("{CLIENT_IP6}/128"),
                "via",
                &LB_IP6.to_string(),
            ]);
        }
    }

    /// Starts counting tunnelled frames crossing the switch ([`TunnelFrames`]), GUE as UDP to
    /// `gue_port`. Read with [`DrTopology::tunnel_frames`].
    pub fn count_tunnel_frames(&self, gue_port: u16) {
        let mut rules = vec![
            "add table bridge lbt".to_owned(),
            "add chain bridge lbt forward { type filter hook forward priority 0; }".to_owned(),
        ];
        for counter in TUNNEL_COUNTERS {
            rules.push(format!("add counter bridge lbt {counter}"));
        }
        for (matches, counter) in [
            ("ether type ip ip protocol { 4, 41 }".to_owned(), "ipip4"),
            ("ether type ip6 ip6 nexthdr { 4, 41 }".to_owned(), "ipip6"),
            (format!("ether type ip udp dport {gue_port}"), "gue4"),
            (format!("ether type ip6 udp dport {gue_port}"), "gue6"),
        ] {
            rules.push(format!(
                "add rule bridge lbt forward {matches} counter name {counter}"
            ));
        }
        for rule in rules {
            self.switch.exec(&["nft", &rule]);
        }
    }

    /// Tunnelled frames the switch forwarded since [`DrTopology::count_tunnel_frames`].
    pub fn tunnel_frames(&self) -> TunnelFrames {
        let [ipip4, ipip6, gue4, gue6] = TUNNEL_COUNTERS.map(|counter| {
            let listing = self
                .switch
                .exec(&["nft", "list", "counter", "bridge", "lbt", counter]);
            // "counter ipip4 {\n\t\tpackets 3 bytes 180\n\t}"
            listing
                .split_whitespace()
                .skip_while(|word| *word != "packets")
                .nth(1)
                .and_then(|packets| packets.parse().ok())
                .unwrap_or_else(|| panic!("no packet count in {listing:?}"))
        });
        TunnelFrames {
            ipip4,
            ipip6,
            gue4,
            gue6,
        }
    }

    /// Panics if a namespace `<prefix><name>` would clash with one the topology has or will
    /// have (its own hosts, the far client's, the site's, the back segment's).
    fn check_new_names<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let taken = ["sw", "client", "lb", "rt", "far"];
        let mut seen = Vec::new();
        for name in names {
            assert!(
                !taken.contains(&name)
                    && !self.reals.iter().any(|(real, ..)| real == name)
                    && !seen.contains(&name)
                    && !crate::netns::list().contains(&format!("{}{name}", self.prefix())),
                "a host called {name:?} clashes with another namespace of the topology"
            );
            seen.push(name);
        }
    }
}

/// Turns reverse-path filtering off in `netns`, on every interface it has and on those it
/// will get: a tunnel real gets the client's packet out of a tunnel, on an interface its route
/// back to the client may not use. (The kernel takes the larger of `all` and the interface's.)
pub fn prepare_tunnel_real(netns: &Netns) {
    rp_filter_off(netns);
}

fn rp_filter_off(netns: &Netns) {
    // /proc/sys/net shows the namespace of the thread that reads it.
    let interfaces = netns.run(|| {
        std::fs::read_dir("/proc/sys/net/ipv4/conf")
            .expect("reading /proc/sys/net/ipv4/conf")
            .map(|entry| {
                entry
                    .expect("an entry of /proc/sys/net/ipv4/conf")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect::<Vec<_>>()
    });
    for interface in interfaces {
        netns.sysctl(&format!("net.ipv4.conf.{interface}.rp_filter"), "0");
    }
}

/// Makes the namespace `<prefix><name>` plugged into `plug` (see [`plugged`]), with TX
/// checksum offload off on its eth0.
fn plug_host(
    plug: Plug<'_>,
    prefix: &str,
    name: &str,
    mac: [u8; 6],
    ip: (Ipv4Addr, u8),
    ip6: Option<Ipv6Addr>,
) -> Netns {
    let netns = plugged(plug, prefix, name, mac, ip, ip6);
    netns.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);
    netns
}

fn wait_until_up<'a>(interfaces: impl IntoIterator<Item = (&'a Netns, &'a str)>, ipv6: bool) {
    let timeout = Duration::from_secs(5);
    let deadline = Instant::now() + timeout;
    for (netns, interface) in interfaces {
        wait_until_link_up(netns, interface, deadline, timeout);
        if ipv6 {
            wait_until_addresses_usable(netns, deadline, timeout);
        }
    }
}

/// The namespace prefix of a forwarding test: `lbt-fwd-TEST-PID-`, so that parallel tests and
/// processes never share a namespace.
pub fn test_prefix(test: &str) -> String {
    format!("lbt-fwd-{test}-{}-", std::process::id())
}

/// The lbd instance of a forwarding test (its pin directory and socket names).
pub fn test_instance(test: &str) -> String {
    format!("lbt-fwd-{test}-{}", std::process::id())
}

/// A server's listening address: `port` on every address of both families.
pub fn any_address(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(site_ip(0), Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(site_ip6(0), "2001:db8:3::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(back_ip(1), Ipv4Addr::new(203, 0, 113, 141));
        assert_eq!(back_ip6(1), "2001:db8:4::141".parse::<Ipv6Addr>().unwrap());
        assert_eq!(LB_BACK_IP6, "2001:db8:4::129".parse::<Ipv6Addr>().unwrap());
        // The subnets stay apart and inside 203.0.113.0/24.
        let site = u32::from(SITE_NET)..u32::from(SITE_NET) + (1 << (32 - SITE_PREFIX_LEN));
        let back = u32::from(BACK_NET)..u32::from(BACK_NET) + (1 << (32 - BACK_PREFIX_LEN));
        assert!(site.contains(&u32::from(site_ip(39))));
        assert!(back.contains(&u32::from(back_ip(39))) && back.contains(&u32::from(LB_BACK_IP)));
        assert!(u32::from(LB_LINK_IP) >= back.end);
    }
}
