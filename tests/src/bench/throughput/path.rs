//! One path of the throughput bench: a generator namespace, a balancer namespace and, with two
//! arms, a sink namespace, joined by veth pairs; and what balances on it (lbd, the MAC-swap
//! ceiling or nftables).
//!
//! ```text
//! one arm:   generator eth0 ──── eth0 balancer             (frames return to the generator's
//!            (sink program)                                  eth0, where the sink counts them)
//! two arms:  generator eth0 ──── eth0 balancer eth1 ──── eth0 sink
//!            (pass program)                                  (sink program)
//! ```
//!
//! Nothing resolves neighbours on the wire: the sink's program drops ARP like everything else,
//! so the balancer holds permanent entries for the reals, all pointing at the interface the
//! sink counts on.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::programs::XdpMode;
use lb_userspace::admin::format_mac;

use crate::{
    bench::baselines::{
        Baselines, MAC_SWAP, MAC_SWAP_REDIRECT, PASS, SINK, STATELESS_DR, StatelessService,
    },
    lbd::Lbd,
    netns::Netns,
    topology::wait_until_link_up,
};

pub const GENERATOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x01];
pub const BALANCER_IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x02];
const BALANCER_OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x03];
const SINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x04];

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const BALANCER_IN_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const BALANCER_OUT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const SINK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Never on any interface: lbd takes it in XDP, nftables translates it before routing.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const PORT: u16 = 80;
const REALS: u8 = 4;
const FIRST_REAL_OCTET: u8 = 11;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arms {
    /// The balancer sends frames back out of the interface they came in on (`XDP_TX`).
    One,
    /// The balancer sends frames out of a second interface toward the sink (a redirect, or
    /// routing for nftables).
    Two,
}

/// What balances a path.
pub enum Balancer {
    /// The `lbd` binary, which attaches its program to the balancer's interfaces.
    Lbd(#[expect(dead_code, reason = "held for its drop, which stops lbd and unpins")] Box<Lbd>),
    /// The MAC-swap ceiling, attached by the bench.
    MacSwap,
    /// The stateless DR reference program, attached by the bench.
    StatelessDr,
    /// nftables DNAT in the balancer's kernel stack.
    Nftables,
}

pub struct Path {
    /// Stopped before the namespaces go (its drop detaches and unpins).
    pub balancer: Balancer,
    pub generator: Netns,
    pub balancer_netns: Netns,
    #[expect(dead_code, reason = "held for its drop, which removes the namespace")]
    sink: Option<Netns>,
    /// The generator's eth0 in its namespace: the `ingress_ifindex` its frames leave by.
    pub generator_ifindex: u32,
}

impl Links {
    /// The namespaces `<prefix><tag>-g`, `-b` (and `-s` with two arms), linked and up, the
    /// sink's program attached from `baselines` (and the pass program on the generator's eth0
    /// with two arms: the generator's queue needs an XDP program to send from). Every veth
    /// has `queues` queues (one per generator thread, see [`Pair::queues`]).
    pub fn build(
        prefix: &str,
        tag: &str,
        arms: Arms,
        queues: usize,
        baselines: &mut Baselines,
    ) -> Links {
        let generator = quiet(&format!("{prefix}{tag}-g"));
        let balancer = quiet(&format!("{prefix}{tag}-b"));
        let pair = Pair {
            near: &generator,
            near_name: "eth0",
            near_mac: GENERATOR_MAC,
            far: &balancer,
            far_mac: BALANCER_IN_MAC,
            queues,
        };
        pair.create();
        generator.ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", "eth0"]);
        balancer.ip(&[
            "addr",
            "add",
            &format!("{BALANCER_IN_IP}/24"),
            "dev",
            "eth0",
        ]);
        let sink = (arms == Arms::Two).then(|| {
            let sink = quiet(&format!("{prefix}{tag}-s"));
            let pair = Pair {
                near: &balancer,
                near_name: "eth1",
                near_mac: BALANCER_OUT_MAC,
                far: &sink,
                far_mac: SINK_MAC,
                queues,
            };
            pair.create();
            balancer.ip(&[
                "addr",
                "add",
                &format!("{BALANCER_OUT_IP}/24"),
                "dev",
                "eth1",
            ]);
            sink.ip(&["addr", "add", &format!("{SINK_IP}/24"), "dev", "eth0"]);
            sink
        });
        let sink_mac = match arms {
            Arms::One => GENERATOR_MAC,
            Arms::Two => SINK_MAC,
        };
        for real in reals(arms) {
            balancer.ip(&[
                "neigh",
                "replace",
                &real.to_string(),
                "lladdr",
                &format_mac(&sink_mac),
                "dev",
                egress(arms),
                "nud",
                "permanent",
            ]);
        }
        let timeout = Duration::from_secs(5);
        let deadline = Instant::now() + timeout;
        let mut up = vec![(&generator, "eth0"), (&balancer, "eth0")];
        if let Some(sink) = &sink {
            up.extend([(&balancer, "eth1"), (sink, "eth0")]);
        }
        for (netns, interface) in up {
            wait_until_link_up(netns, interface, deadline, timeout);
        }
        let generator_ifindex = generator.run(|| ifindex("eth0"));
        match &sink {
            None => generator.run(|| attach(baselines, SINK, "eth0")),
            Some(sink) => {
                sink.run(|| attach(baselines, SINK, "eth0"));
                generator.run(|| attach(baselines, PASS, "eth0"));
            }
        }
        Links {
            arms,
            generator,
            balancer,
            sink,
            generator_ifindex,
        }
    }
}

/// A path's network before its balancer is chosen.
pub struct Links {
    pub arms: Arms,
    pub generator: Netns,
    pub balancer: Netns,
    pub sink: Option<Netns>,
    pub generator_ifindex: u32,
}

impl Links {
    /// Starts lbd in the balancer's namespace as `instance`, with one TCP and one UDP
    /// service on [`VIP`]:[`PORT`], both weighted round robin over the path's reals.
    pub fn with_lbd(self, instance: &str) -> Path {
        let reals = reals(self.arms)
            .map(|real| format!("{{address: {real}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut interfaces = String::from("  - {name: eth0, xdp_mode: native}\n");
        if self.arms == Arms::Two {
            interfaces.push_str("  - {name: eth1, xdp_mode: native}\n");
        }
        let body = format!(
            "interfaces:\n{interfaces}services:\n\
             \x20 - {{vip: {VIP}, port: {PORT}, protocol: tcp, scheduler: wrr, reals: [{reals}]}}\n\
             \x20 - {{vip: {VIP}, port: {PORT}, protocol: udp, scheduler: wrr, reals: [{reals}]}}\n"
        );
        let lbd = Lbd::start(&self.balancer, instance, &body);
        self.into_path(Balancer::Lbd(Box::new(lbd)))
    }

    /// The MAC-swap ceiling on the balancer's eth0: `XDP_TX` with one arm, a redirect to eth1
    /// with two (there is one redirect target in the reference object: one two-arm ceiling).
    pub fn with_mac_swap(self, baselines: &mut Baselines) -> Path {
        let program = match self.arms {
            Arms::One => MAC_SWAP,
            Arms::Two => MAC_SWAP_REDIRECT,
        };
        self.balancer.run(|| {
            if self.arms == Arms::Two {
                baselines.set_redirect_to(ifindex("eth1"));
            }
            attach(baselines, program, "eth0");
        });
        self.into_path(Balancer::MacSwap)
    }

    /// The stateless DR program (one arm), its service's reals pointing where lbd's do: the
    /// least a balancer does, on the same path as the ceiling.
    pub fn with_stateless_dr(self, baselines: &mut Baselines) -> Path {
        assert_eq!(
            self.arms,
            Arms::One,
            "the stateless program only sends back (XDP_TX)"
        );
        baselines.add_stateless_service(&StatelessService {
            vip: VIP.into(),
            port: PORT,
            protocol: lb_common::PROTO_TCP,
            real_macs: vec![GENERATOR_MAC; usize::from(REALS)],
        });
        self.balancer
            .run(|| attach(baselines, STATELESS_DR, "eth0"));
        self.into_path(Balancer::StatelessDr)
    }

    /// nftables DNAT in the balancer's namespace (two arms): the VIP's UDP port translated to
    /// the reals in turn (`numgen inc`, decided once per conntrack entry), forwarded to the
    /// sink. The pass program on eth0 only lets the generator's XDP frames in.
    pub fn with_nftables(self, baselines: &mut Baselines, rules_file: &std::path::Path) -> Path {
        assert_eq!(self.arms, Arms::Two, "nftables forwards to the sink's arm");
        self.balancer.sysctl("net.ipv4.ip_forward", "1");
        for conf in ["all", "default", "eth0", "eth1"] {
            self.balancer
                .sysctl(&format!("net.ipv4.conf.{conf}.rp_filter"), "0");
        }
        let map = reals(self.arms)
            .enumerate()
            .map(|(index, real)| format!("{index} : {real}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rules = format!(
            "table ip lbtp {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {VIP} udp dport {PORT} dnat to numgen inc mod {REALS} map {{ {map} }}\n  }}\n}}\n"
        );
        std::fs::write(rules_file, rules)
            .unwrap_or_else(|e| panic!("writing {}: {e}", rules_file.display()));
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.balancer
                .exec(&["nft", "-f", &rules_file.to_string_lossy()])
        }));
        let _ = std::fs::remove_file(rules_file);
        if let Err(payload) = loaded {
            std::panic::resume_unwind(payload);
        }
        self.balancer.run(|| attach(baselines, PASS, "eth0"));
        self.into_path(Balancer::Nftables)
    }

    fn into_path(self, balancer: Balancer) -> Path {
        Path {
            balancer,
            generator: self.generator,
            balancer_netns: self.balancer,
            sink: self.sink,
            generator_ifindex: self.generator_ifindex,
        }
    }
}

impl Path {
    /// The id of the XDP program attached to the balancer's eth0 (`ip -d link` shows it).
    pub fn balancer_program_id(&self) -> u32 {
        let link = self
            .balancer_netns
            .ip(&["-d", "link", "show", "dev", "eth0"]);
        let id = link
            .split("prog/xdp id ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok());
        id.unwrap_or_else(|| {
            panic!(
                "no XDP program on eth0 of {}: {link}",
                self.balancer_netns.name()
            )
        })
    }
}

/// The reals: on the sink's side of the path, never answering (the balancer holds their
/// MACs as permanent entries).
fn reals(arms: Arms) -> impl Iterator<Item = Ipv4Addr> {
    let subnet = match arms {
        Arms::One => BALANCER_IN_IP.octets(),
        Arms::Two => BALANCER_OUT_IP.octets(),
    };
    (0..REALS)
        .map(move |index| Ipv4Addr::new(subnet[0], subnet[1], subnet[2], FIRST_REAL_OCTET + index))
}

/// The balancer's interface toward the reals.
fn egress(arms: Arms) -> &'static str {
    match arms {
        Arms::One => "eth0",
        Arms::Two => "eth1",
    }
}

/// A namespace with loopback up and IPv6 off: no router solicitation or DAD frame ever
/// reaches a program or a count.
fn quiet(name: &str) -> Netns {
    let netns = Netns::create(name);
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        for conf in ["all", "default"] {
            netns.sysctl(&format!("net.ipv6.conf.{conf}.disable_ipv6"), "1");
        }
    }
    netns.ip(&["link", "set", "lo", "up"]);
    netns
}

/// A veth pair made in `near` (its end `near_name`) with its peer `eth0` moved straight into
/// `far`: nothing ever exists in the root namespace.
struct Pair<'a> {
    near: &'a Netns,
    near_name: &'a str,
    near_mac: [u8; 6],
    far: &'a Netns,
    far_mac: [u8; 6],
    /// Receive and transmit queues on each end. A frame sent into a veth by XDP lands on the
    /// receiving queue of the sending CPU's number (modulo the queues), whose NAPI then runs
    /// on that CPU: with a queue per generator thread, each CPU carries its own frames from
    /// generator to sink. With one queue, all CPUs would feed one ring drained by one CPU at
    /// a time, which drops what it cannot take.
    queues: usize,
}

impl Pair<'_> {
    /// Creates the pair and sets both ends up.
    fn create(&self) {
        let queues = self.queues.to_string();
        let near_mac = format_mac(&self.near_mac);
        let far_mac = format_mac(&self.far_mac);
        self.near.ip(&[
            "link",
            "add",
            self.near_name,
            "address",
            &near_mac,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            &far_mac,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "netns",
            self.far.name(),
        ]);
        self.near.ip(&["link", "set", self.near_name, "up"]);
        self.far.ip(&["link", "set", "eth0", "up"]);
    }
}

/// The index of `interface` in the calling thread's namespace.
pub fn ifindex(interface: &str) -> u32 {
    let name = std::ffi::CString::new(interface).expect("interface name");
    // SAFETY: a NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {interface} here");
    index
}

/// Attaches the reference program `name` natively to `interface` of the calling thread's
/// namespace; it stays attached until `baselines` is dropped.
fn attach(baselines: &mut Baselines, name: &str, interface: &str) {
    baselines
        .program(name)
        .attach(interface, XdpMode::Driver)
        .unwrap_or_else(|e| panic!("attaching {name} to {interface} (native): {e:?}"));
}
