//! The LVS-DR test network: a client, a director (lb) and real servers on one switch, each in a
//! network namespace of its own.
//!
//! ```text
//!        client 192.0.2.1          lb 192.0.2.2 (+ VIP/32)        realN 192.0.2.1N (VIP/32 on lo)
//!          eth0                       eth0                           eth0
//!           |                          |                              |
//!      p-client ---------------- br0 (switch) -------------------- p-realN
//!                                      |
//!                                     p-lb
//! ```
//!
//! Everything lives in namespaces named `<prefix>…`: no address or interface of the test ever
//! exists in the root namespace, and no namespace has a route out. By default
//! ([`DrTopology::build`]) IPv6 is disabled in every namespace so that no router
//! solicitation, MLD report or DAD probe reaches an XDP program and counters stay exact.
//!
//! [`DrTopology::build_dual_stack`] adds IPv6 to every host, mirroring the IPv4 plan in
//! 2001:db8::/64: client [`CLIENT_IP6`], lb [`LB_IP6`] (+ [`VIP6`]/128 on eth0, deprecated so
//! that the lb's own packets never come from it), real N [`real_ip6`] (VIP6/128 on `lo`),
//! each eth0 also its EUI-64 link-local address. DAD, router solicitations and router
//! advertisements are off and the bridge floods multicast like a plain switch, so the only
//! IPv6 frames are the tests' own, neighbour discovery they cause, and the MLD reports (an
//! unsolicited report and its repetition, within about a second) for each solicited-node
//! group as each address comes up.
//!
//! [`DrTopology::add_far_client`] adds a router and a client behind it (see [`far_client`]),
//! for path-MTU tests: the only link with a smaller MTU is the router's way to that client.
//!
//! [`modes`] adds what forwarding modes other than direct routing need: a site behind a router
//! (tunnel reals), a second segment behind a second interface of the lb (NAT and full-NAT
//! reals), a point-to-point link with a smaller MTU from the lb to a real.
//!
//! [`scale_out`] is a network of its own: a router running BIRD that spreads a VIP over two
//! balancers by ECMP, the reals beside them, and a client behind the router.

pub mod far_client;
pub mod ha;
pub mod modes;
pub mod scale_out;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};

use lb_userspace::admin::format_mac;

use crate::netns::Netns;

pub use far_client::FarClient;

/// Prefix length of the shared subnet 192.0.2.0/24.
pub const PREFIX_LEN: u8 = 24;
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The virtual service address: on the lb's eth0 (as keepalived puts it on the director) and
/// on every real's `lo`.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The first real gets 192.0.2.11, the next .12, and so on.
pub const FIRST_REAL_OCTET: u8 = 11;

/// Prefix length of the shared IPv6 subnet 2001:db8::/64 (dual-stack topologies).
pub const PREFIX_LEN6: u8 = 64;
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x1);
pub const LB_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x2);
/// The IPv6 virtual service address: on the lb's eth0 and every real's `lo`, like [`VIP`].
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

/// MACs of the hosts' eth0: 02:00:00:00:00:NN where NN is the last octet of the host's address.
pub const CLIENT_MAC: [u8; 6] = host_mac(1);
pub const LB_MAC: [u8; 6] = host_mac(2);
/// MAC of the bridge device itself (it never sends anything the tests look at).
pub const BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0xff];

/// Name of the bridge in the switch namespace.
pub const BRIDGE: &str = "br0";
/// Name of every host's interface.
pub const HOST_IF: &str = "eth0";

/// Address of the real at `index` (0-based) in [`DrTopology::build`]'s list.
pub const fn real_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, real_octet(index))
}

/// IPv6 address of the real at `index` in a dual-stack topology: the IPv4 address's last
/// octet written as hex digits, 2001:db8::11 for 192.0.2.11.
pub const fn real_ip6(index: usize) -> Ipv6Addr {
    let octet = real_octet(index) as u16;
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (octet / 10) * 16 + octet % 10)
}

/// MAC of the eth0 of the real at `index`: 02:00:00:00:00:0b for the first.
pub const fn real_mac(index: usize) -> [u8; 6] {
    host_mac(real_octet(index))
}

/// MAC of a host's bridge port in the switch namespace: 02:00:00:00:01:NN.
pub const fn port_mac(host_mac: [u8; 6]) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x01, host_mac[5]]
}

const fn host_mac(octet: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, octet]
}

const fn real_octet(index: usize) -> u8 {
    assert!(index < 64, "at most 64 reals");
    FIRST_REAL_OCTET + index as u8
}

/// The LVS-DR test network. Dropping it removes every namespace (hosts first, then the switch).
pub struct DrTopology {
    prefix: String,
    /// The `xdp_pass` program on the lb's bridge port, when attached. Declared first so that it
    /// is gone before the namespaces.
    pass_program: Mutex<Option<Ebpf>>,
    pub client: Netns,
    pub lb: Netns,
    /// (name given to `build`, namespace `<prefix><name>`, address), in `build`'s order.
    pub reals: Vec<(String, Netns, Ipv4Addr)>,
    pub switch: Netns,
    dual_stack: bool,
}

impl DrTopology {
    /// Builds the network: namespaces `<prefix>sw`, `<prefix>client`, `<prefix>lb` and
    /// `<prefix><real>` for each name in `reals`, after removing leftovers of `prefix`.
    /// Returns once every link is up. Panics, cleaning up what was built, on any failure.
    ///
    /// End the prefix with a separator and make it unique per test and process (e.g.
    /// `lbt-vip-<pid>-`), so that it is never the start of another test's prefix. Names of
    /// reals must leave `p-<name>` within 15 bytes (the bridge port's interface name).
    pub fn build(prefix: &str, reals: &[&str]) -> DrTopology {
        DrTopology::build_with(prefix, reals, false)
    }

    /// [`DrTopology::build`] plus IPv6 on every host (see the module's documentation):
    /// [`CLIENT_IP6`], [`LB_IP6`] and [`VIP6`] on the lb's eth0, [`real_ip6`] on each real's
    /// eth0 and VIP6 on its `lo`. A real never answers neighbour solicitations for VIP6: Linux
    /// answers only for addresses of the interface the solicitation came in on. Returns once
    /// every address is usable (none tentative).
    pub fn build_dual_stack(prefix: &str, reals: &[&str]) -> DrTopology {
        DrTopology::build_with(prefix, reals, true)
    }

    fn build_with(prefix: &str, reals: &[&str], dual_stack: bool) -> DrTopology {
        crate::netns::remove_leftovers(prefix);
        for name in ["sw", "client", "lb"] {
            assert!(!reals.contains(&name), "a real may not be called {name:?}");
        }

        let switch = switch(prefix, dual_stack);

        let client = host(
            &switch,
            prefix,
            "client",
            (CLIENT_IP, CLIENT_MAC),
            dual_stack.then_some(CLIENT_IP6),
        );
        // Checksums of frames leaving a veth are otherwise left to an "offload" that never
        // happens once an XDP program forwards the frame: the real would get a bad checksum.
        client.exec(&["ethtool", "-K", HOST_IF, "tx", "off"]);

        let lb = host(
            &switch,
            prefix,
            "lb",
            (LB_IP, LB_MAC),
            dual_stack.then_some(LB_IP6),
        );
        lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", HOST_IF]);
        if dual_stack {
            // Deprecated (preferred lifetime 0): still the lb's, answering neighbour
            // solicitations, but never the source the kernel picks for the lb's own packets.
            // IPv6 source selection would otherwise prefer it to LB_IP6 toward the reals (a
            // /128 matches more of their address than a /64), as the lb's route lookups and
            // neighbour solicitations would show. The IPv4 VIP, a secondary, never is.
            lb.ip(&[
                "addr",
                "add",
                &format!("{VIP6}/128"),
                "dev",
                HOST_IF,
                "nodad",
                "preferred_lft",
                "0",
            ]);
        }

        let reals = dr_reals(&switch, prefix, reals, dual_stack);

        let topology = DrTopology {
            prefix: prefix.to_owned(),
            pass_program: Mutex::new(None),
            client,
            lb,
            reals,
            switch,
            dual_stack,
        };
        topology.wait_until_up(Duration::from_secs(5));
        topology
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the hosts have IPv6 ([`DrTopology::build_dual_stack`]).
    pub fn is_dual_stack(&self) -> bool {
        self.dual_stack
    }

    /// Sets the MTU of every link: each host's eth0 and its bridge port (the bridge follows).
    pub fn set_mtu(&self, mtu: u32) {
        let mtu = mtu.to_string();
        let hosts = [("client", &self.client), ("lb", &self.lb)]
            .into_iter()
            .chain(
                self.reals
                    .iter()
                    .map(|(name, netns, _)| (name.as_str(), netns)),
            );
        for (name, netns) in hosts {
            self.switch
                .ip(&["link", "set", &port_name(name), "mtu", &mtu]);
            netns.ip(&["link", "set", HOST_IF, "mtu", &mtu]);
        }
    }

    /// The lb's bridge port in the switch namespace: the veth peer that receives what the lb
    /// sends with `XDP_TX`.
    pub fn lb_switch_port(&self) -> &'static str {
        "p-lb"
    }

    /// Bridge port in the switch namespace of the host called `host` ("client", "lb" or a
    /// real's name).
    pub fn switch_port(&self, host: &str) -> String {
        port_name(host)
    }

    /// The namespace of the real called `name`.
    pub fn real(&self, name: &str) -> &Netns {
        self.reals
            .iter()
            .find(|(real, ..)| real == name)
            .map(|(_, netns, _)| netns)
            .unwrap_or_else(|| panic!("no real called {name:?}"))
    }

    /// An HTTP server on port 80 of every real, answering with the real's name (which real
    /// served a request); each stops when its handle is dropped.
    pub fn serve_http(&self) -> Vec<crate::http::HttpServer> {
        self.reals
            .iter()
            .map(|(name, netns, _)| {
                crate::http::HttpServer::start(netns, "0.0.0.0:80".parse().unwrap(), name)
            })
            .collect()
    }

    /// Attaches `xdp_pass` (native mode) to the lb's bridge port, so that frames the lb sends
    /// with `XDP_TX` are not dropped: veth discards frames redirected by XDP unless the peer
    /// that receives them runs an XDP program. Stays attached until the topology is dropped.
    /// A second call does nothing.
    pub fn attach_pass_program(&self) {
        let mut slot = self
            .pass_program
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            let port = self.lb_switch_port();
            *slot = Some(self.switch.run(|| load_pass_program(port)));
        }
    }

    fn wait_until_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let hosts = std::iter::once(&self.client)
            .chain(std::iter::once(&self.lb))
            .chain(self.reals.iter().map(|(_, netns, _)| netns));
        for netns in hosts {
            wait_until_link_up(netns, HOST_IF, deadline, timeout);
            if self.dual_stack {
                wait_until_addresses_usable(netns, deadline, timeout);
            }
        }
    }
}

impl Drop for DrTopology {
    fn drop(&mut self) {
        // Detach inside the switch namespace: were aya to have fallen back to a netlink
        // attachment, its detach would otherwise go to an interface of the root namespace with
        // the same index.
        let program = self
            .pass_program
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(program) = program {
            self.switch.run(move || drop(program));
        }
        // Then the fields drop in declaration order: client, lb, reals, switch.
    }
}

/// The namespace `<prefix>sw` with the bridge every host plugs into, up.
pub(super) fn switch(prefix: &str, dual_stack: bool) -> Netns {
    let switch = Netns::create(&format!("{prefix}sw"));
    // The switch stays IPv4-only either way: a bridge forwards IPv6 frames all the same, and
    // sends none of its own.
    quiet_namespace(&switch, false);
    add_bridge(&switch);
    if dual_stack {
        // Without snooping the bridge floods multicast (neighbour solicitations, VRRP adverts
        // to ff02::12) to every port, as a plain switch does, whatever MLD reports it has or
        // has not seen.
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
    switch
}

/// The LVS-DR reals `<prefix><name>`, in order from [`real_ip`]`(0)`: each holds the VIP (and
/// VIP6 when dual stack) on `lo` and never answers for it on the wire.
pub(super) fn dr_reals(
    switch: &Netns,
    prefix: &str,
    names: &[&str],
    dual_stack: bool,
) -> Vec<(String, Netns, Ipv4Addr)> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let netns = host(
                switch,
                prefix,
                name,
                (real_ip(index), real_mac(index)),
                dual_stack.then(|| real_ip6(index)),
            );
            hold_vip_silently(&netns, VIP);
            if dual_stack {
                // IPv6 needs no sysctl for that: Linux answers solicitations only for
                // addresses of the receiving interface, joins VIP6's solicited-node group on
                // lo alone, and sources its own solicitations on eth0 from eth0's address.
                netns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]);
            }
            (name.to_string(), netns, real_ip(index))
        })
        .collect()
}

/// Puts `vip` on the `lo` of an LVS-DR real, which must never answer ARP for it nor use it as
/// the source of its own ARP requests: only the director owns it on the wire.
pub(super) fn hold_vip_silently(netns: &Netns, vip: Ipv4Addr) {
    for conf in ["all", HOST_IF] {
        netns.sysctl(&format!("net.ipv4.conf.{conf}.arp_ignore"), "1");
        netns.sysctl(&format!("net.ipv4.conf.{conf}.arp_announce"), "2");
    }
    netns.ip(&["addr", "add", &format!("{vip}/32"), "dev", "lo"]);
}

/// The segment's bridge [`BRIDGE`] in `netns`, with its fixed MAC, down until set up.
pub(super) fn add_bridge(netns: &Netns) {
    netns.ip(&[
        "link",
        "add",
        BRIDGE,
        "address",
        &format_mac(&BRIDGE_MAC),
        "type",
        "bridge",
    ]);
}

pub(super) fn port_name(host: &str) -> String {
    let name = format!("p-{host}");
    assert!(
        name.len() <= 15,
        "interface name {name:?} too long (15 bytes max): shorten the host name"
    );
    name
}

/// Loopback up, and IPv6 either off (no RS/MLD/DAD frames on the wire) or on with as little
/// of its own traffic as it can have: no DAD, no router solicitations nor advertisements. MLD
/// reports for the solicited-node groups remain (the robustness variable `net.ipv6.mld_qrv`
/// exists only in the root namespace). Link-local addresses stay: Linux sources a neighbour
/// solicitation from one whenever the packet that needs it does not come from an address of
/// the outgoing interface (a router forwarding, a real answering from VIP6), and sends none
/// without. Set on `default` before the namespace's eth0 exists, so that eth0 inherits it.
pub(super) fn quiet_namespace(netns: &Netns, ipv6: bool) {
    if !ipv6 {
        if Path::new("/proc/sys/net/ipv6").exists() {
            for conf in ["all", "default"] {
                netns.sysctl(&format!("net.ipv6.conf.{conf}.disable_ipv6"), "1");
            }
        }
        netns.ip(&["link", "set", "lo", "up"]);
        return;
    }
    for conf in ["all", "default"] {
        for (key, value) in [
            ("disable_ipv6", "0"),
            ("accept_dad", "0"),
            ("dad_transmits", "0"),
            ("router_solicitations", "0"),
            ("accept_ra", "0"),
            ("autoconf", "0"),
        ] {
            netns.sysctl(&format!("net.ipv6.conf.{conf}.{key}"), value);
        }
    }
    netns.ip(&["link", "set", "lo", "up"]);
}

/// Makes the namespace `<prefix><name>` with an eth0 plugged into the switch, holding `ip`
/// (/24) and, when given, `ip6` (/64, no DAD).
pub(super) fn host(
    switch: &Netns,
    prefix: &str,
    name: &str,
    (ip, mac): (Ipv4Addr, [u8; 6]),
    ip6: Option<Ipv6Addr>,
) -> Netns {
    let plug = Plug {
        switch,
        bridge: BRIDGE,
        port: port_name(name),
        port_mac: port_mac(mac),
    };
    plugged(plug, prefix, name, mac, (ip, PREFIX_LEN), ip6)
}

/// Where a new host plugs in: a bridge in `switch`'s namespace, through a port of its own.
pub(super) struct Plug<'a> {
    pub(super) switch: &'a Netns,
    pub(super) bridge: &'a str,
    pub(super) port: String,
    pub(super) port_mac: [u8; 6],
}

/// Makes the namespace `<prefix><name>` with an eth0 (MAC `mac`) plugged into `plug`,
/// holding `ip` (with its prefix length) and, when given, `ip6` (/64, no DAD).
pub(super) fn plugged(
    plug: Plug<'_>,
    prefix: &str,
    name: &str,
    mac: [u8; 6],
    (ip, prefix_len): (Ipv4Addr, u8),
    ip6: Option<Ipv6Addr>,
) -> Netns {
    assert!(
        plug.port.len() <= 15,
        "interface name {:?} too long (15 bytes max): shorten the host name",
        plug.port
    );
    let netns = Netns::create(&format!("{prefix}{name}"));
    quiet_namespace(&netns, ip6.is_some());
    // Both ends are created directly in their namespaces: never in the root namespace.
    let veth = format!(
        "link add {} address {} type veth peer name {HOST_IF} address {} netns {}",
        plug.port,
        format_mac(&plug.port_mac),
        format_mac(&mac),
        netns.name()
    );
    plug.switch.ip(&veth.split(' ').collect::<Vec<_>>());
    plug.switch
        .ip(&["link", "set", &plug.port, "master", plug.bridge, "up"]);
    netns.ip(&["addr", "add", &format!("{ip}/{prefix_len}"), "dev", HOST_IF]);
    if let Some(ip6) = ip6 {
        netns.ip(&[
            "addr",
            "add",
            &format!("{ip6}/{PREFIX_LEN6}"),
            "dev",
            HOST_IF,
            "nodad",
        ]);
    }
    netns.ip(&["link", "set", HOST_IF, "up"]);
    netns
}

/// Waits until `interface` of `netns` is up, panicking at `deadline`.
pub fn wait_until_link_up(netns: &Netns, interface: &str, deadline: Instant, timeout: Duration) {
    loop {
        // `ip -br link` prints e.g. "eth0@if7  UP  02:00:00:00:00:01 <...>".
        let state = netns.ip(&["-br", "link", "show", "dev", interface]);
        if state.split_whitespace().nth(1) == Some("UP") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{interface} in {} not up after {timeout:?}: {state}",
            netns.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until no IPv6 address of `netns` is tentative (and none failed DAD), panicking at
/// `deadline`. With DAD off this holds at once; the wait is what makes "at once" checked.
fn wait_until_addresses_usable(netns: &Netns, deadline: Instant, timeout: Duration) {
    loop {
        let pending = netns.ip(&["-6", "-o", "addr", "show", "tentative"])
            + &netns.ip(&["-6", "-o", "addr", "show", "dadfailed"]);
        if pending.trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "IPv6 addresses in {} still tentative after {timeout:?}: {pending}",
            netns.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Loads `xdp_pass` from the balancer's object and attaches it to `interface` of the current
/// thread's namespace. The object's maps are small and unpinned until a loader sizes and pins
/// them (see `lb_userspace::dataplane::loader`), so loading it just for `xdp_pass` costs little.
pub(super) fn load_pass_program(interface: &str) -> Ebpf {
    let mut ebpf = Ebpf::load(lb_userspace::EBPF_OBJECT)
        .unwrap_or_else(|error| panic!("loading lb_userspace::EBPF_OBJECT: {error:?}"));
    let name = lb_userspace::PROGRAM_PASS;
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("no program {name:?} in lb_userspace::EBPF_OBJECT"))
        .try_into()
        .unwrap_or_else(|error| panic!("program {name:?} is not XDP: {error:?}"));
    program
        .load()
        .unwrap_or_else(|error| panic!("loading {name}: {error:?}"));
    program
        .attach(interface, XdpMode::Driver)
        .unwrap_or_else(|error| panic!("attaching {name} to {interface} (native mode): {error:?}"));
    ebpf
}

#[cfg(test)]
mod tests {
    use std::{
        net::{SocketAddr, SocketAddrV4},
        time::Duration,
    };

    use super::*;
    use crate::{
        http::{HttpClient, HttpServer},
        privilege::require_root,
    };

    #[test]
    fn addresses_and_macs() {
        assert_eq!(real_ip(0), Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(real_ip(2), Ipv4Addr::new(192, 0, 2, 13));
        assert_eq!(real_ip6(0), "2001:db8::11".parse::<Ipv6Addr>().unwrap());
        assert_eq!(real_ip6(2), "2001:db8::13".parse::<Ipv6Addr>().unwrap());
        assert_eq!(real_ip6(63), "2001:db8::74".parse::<Ipv6Addr>().unwrap());
        assert_eq!(VIP6, "2001:db8::100".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            far_client::ROUTER_MAC,
            [2, 0, 0, 0, 0, 0xfe],
            "the router's MAC follows the host scheme"
        );
        assert_eq!(format_mac(&real_mac(0)), "02:00:00:00:00:0b");
        assert_eq!(format_mac(&port_mac(LB_MAC)), "02:00:00:00:01:02");
        assert_eq!(port_name("real1"), "p-real1");
    }

    #[test]
    fn failed_build_cleans_up() {
        if !require_root("failed_build_cleans_up") {
            return;
        }
        let prefix = format!("lbt-f-{}-", std::process::id());
        // The switch, client and lb exist by the time the bad name is refused.
        let built =
            std::panic::catch_unwind(|| DrTopology::build(&prefix, &["a-name-far-too-long"]));
        let error = built.err().expect("a 21-byte port name must be refused");
        assert!(
            error
                .downcast_ref::<String>()
                .is_some_and(|message| message.contains("too long"))
        );
        let left = crate::netns::list()
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect::<Vec<_>>();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }

    #[test]
    fn dr_topology_serves_http_and_cleans_up() {
        if !require_root("dr_topology_serves_http_and_cleans_up") {
            return;
        }
        let prefix = format!("lbt-h-{}-", std::process::id());
        let timeout = Duration::from_secs(3);
        {
            let topology = DrTopology::build(&prefix, &["real1", "real2", "real3"]);
            // Loads the pass program too, so that path is exercised.
            topology.attach_pass_program();
            topology.attach_pass_program(); // a second call does nothing
            let port =
                topology
                    .switch
                    .ip(&["-d", "link", "show", "dev", topology.lb_switch_port()]);
            assert!(
                port.contains("xdp") && port.contains("prog/xdp id"),
                "xdp_pass not attached natively: {port}"
            );

            let servers = topology
                .reals
                .iter()
                .map(|(name, netns, ip)| {
                    HttpServer::start(netns, SocketAddr::V4(SocketAddrV4::new(*ip, 80)), name)
                })
                .collect::<Vec<_>>();
            // A spawned daemon sees the lb's interfaces and the host's mounts (bpffs among
            // them, whether or not it is mounted yet: lbd mounts it where it is missing).
            let mut command = std::process::Command::new("sh");
            command
                .args([
                    "-c",
                    "ip -br addr show dev eth0; readlink /proc/self/ns/mnt",
                ])
                .stdout(std::process::Stdio::piped());
            let output = topology
                .lb
                .spawn(command)
                .wait_with_output()
                .expect("waiting for sh");
            let output = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.contains("192.0.2.2/24") && output.contains("192.0.2.100/32"),
                "{output}"
            );
            let own_mounts = std::fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
            assert!(
                output.contains(&*own_mounts.to_string_lossy()),
                "spawned in another mount namespace than {own_mounts:?}: {output}"
            );

            let lb_addr = SocketAddr::V4(SocketAddrV4::new(LB_IP, 8080));
            let lb_server = HttpServer::start(&topology.lb, lb_addr, "lb");

            topology.client.run(|| {
                for (name, _, ip) in &topology.reals {
                    let addr = SocketAddr::V4(SocketAddrV4::new(*ip, 80));
                    let mut client = HttpClient::connect(addr, timeout)
                        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
                    // Keep-alive: several requests over one connection.
                    for path in ["/", "/again", "/third"] {
                        let body = client
                            .get(path)
                            .unwrap_or_else(|error| panic!("GET {path} from {addr}: {error}"));
                        assert_eq!(body, format!("{name}\n"), "body of GET {path} from {addr}");
                    }
                }
                let mut client = HttpClient::connect(lb_addr, timeout)
                    .unwrap_or_else(|error| panic!("connecting to {lb_addr}: {error}"));
                assert_eq!(client.get("/").expect("GET / from the lb"), "lb\n");
            });

            for (server, (name, ..)) in servers.iter().zip(&topology.reals) {
                assert_eq!(server.requests(), 3, "requests served by {name}");
            }
            assert_eq!(lb_server.requests(), 1);
        }
        let left = crate::netns::list()
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect::<Vec<_>>();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        // Loading the object for xdp_pass must pin nothing (aya pins maps declared `by_name` at
        // /sys/fs/bpf/<MAP> when no directory is given).
        let pins = std::fs::read_dir(lb_userspace::dataplane::loader::BPFFS_ROOT)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok())
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("LB_"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        assert!(pins.is_empty(), "maps pinned by loading xdp_pass: {pins:?}");
    }
}
