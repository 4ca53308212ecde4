//! The balancer, loaded but not attached, fed single frames through `BPF_PROG_TEST_RUN`.
//!
//! [`Balancer::load`] goes through the daemon's own code path — config parsing, `Desired`,
//! `loader::load`, `Desired::apply` — so a fixture exercises exactly what `lbd` writes. Every
//! real's next hop (the real itself, or the router a route names) is "resolved" to the MAC
//! [`real_mac_for`] derives from its address.
//!
//! Fixtures have no kernel routes to read, so the harness makes them up: every `tun`, `nat`
//! and `fullnat` real on one of the interfaces' prefixes is reached directly, and the
//! balancer's own address toward it (what lbd reads as the route's preferred source: the
//! default outer source of tunnels and local address of full NAT) is [`BALANCER_V4`] or
//! [`BALANCER_V6`], by the real's family. [`Balancer::load_with_routes`] takes routes of
//! the test's own, e.g. [`route_via`] a router for a real elsewhere.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{ConnCounts, Counters, OutCounters, Reason};
use lb_userspace::{
    config,
    dataplane::{CaptureMaps, DataplaneReader as _, EbpfDataplane, EbpfReader, Sweeper, loader},
    neighbour::{InterfaceInfo, Route, Routes, interface_for},
    reconcile::{Desired, Existing},
};

use crate::{packet::Mac, pcap::assert_frame_eq, privilege::require_root};

/// Without a context, `BPF_PROG_TEST_RUN` runs an XDP program as if the frame had arrived on
/// the loopback device of the caller's namespace, whose index is always 1.
pub const INGRESS_IFINDEX: u32 = 1;
/// The balancer interface's own MAC in fixtures: the source MAC of every forwarded frame.
pub const BALANCER_MAC: Mac = [0x02, 0, 0, 0, 0xbb, 0x01];
/// The balancer's own IPv4 address in fixtures, on [`loopback`]'s 192.0.2.0/24: the outer
/// source of tunnelled packets to IPv4 reals, and the local address of full-NAT flows to
/// IPv4 reals, unless the service sets `tunnel_source` or `snat_pool`.
pub const BALANCER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// As [`BALANCER_V4`], for IPv6 reals (on 2001:db8::/32).
pub const BALANCER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);

/// The balancer's own address of `toward`'s family: [`BALANCER_V4`] or [`BALANCER_V6`].
pub fn balancer_address(toward: IpAddr) -> IpAddr {
    match toward {
        IpAddr::V4(_) => IpAddr::V4(BALANCER_V4),
        IpAddr::V6(_) => IpAddr::V6(BALANCER_V6),
    }
}

/// A route through `gateway` (a router on [`loopback`]'s prefixes), as lbd would read it for
/// a real off the balancer's segments: frames to the real carry `real_mac_for(gateway)`, and
/// its local address is [`balancer_address`].
pub fn route_via(gateway: impl Into<IpAddr>) -> Route {
    let gateway = gateway.into();
    Route {
        ifindex: INGRESS_IFINDEX,
        interface: "lo".into(),
        gateway: Some(gateway),
        prefsrc: Some(balancer_address(gateway)),
    }
}

/// The MAC fixtures give a real: `02:00` then its IPv4 address, or `02:06` then the last
/// four bytes of its IPv6 address.
pub fn real_mac_for(addr: impl Into<IpAddr>) -> Mac {
    match addr.into() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            [0x02, 0, a, b, c, d]
        }
        IpAddr::V6(v6) => {
            let [.., a, b, c, d] = v6.octets();
            [0x02, 0x06, a, b, c, d]
        }
    }
}

/// `frame` as the program sends it to `real` by direct routing: only the MACs change.
pub fn direct_routed(frame: &[u8], real: impl Into<IpAddr>) -> Vec<u8> {
    let mut rewritten = frame.to_vec();
    rewritten[0..6].copy_from_slice(&real_mac_for(real));
    rewritten[6..12].copy_from_slice(&BALANCER_MAC);
    rewritten
}

/// The real among `candidates` that a forwarded frame went to, from its destination MAC.
pub fn real_of(frame: &[u8], candidates: &[IpAddr]) -> IpAddr {
    *candidates
        .iter()
        .find(|&&real| frame[0..6] == real_mac_for(real))
        .unwrap_or_else(|| panic!("frame went to an unknown MAC {:02x?}", &frame[0..6]))
}

/// XDP actions, as `BPF_PROG_TEST_RUN` returns them.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// What the program did with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `XDP_PASS`, `XDP_TX`, …
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

pub struct Balancer {
    ebpf: aya::Ebpf,
    pub dataplane: EbpfDataplane,
    pub reader: EbpfReader,
    /// The flow sweep lbd runs every second; fixtures run it when they choose.
    pub sweeper: Sweeper,
    /// The capture map and ring (`lbadm dump`), armed and read by the fixtures themselves.
    pub capture: CaptureMaps,
    pub state: Desired,
}

/// The interface the fixtures' frames arrive on: the loopback, on 192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
pub fn loopback() -> InterfaceInfo {
    let prefixes = [
        Ipv4Addr::new(192, 0, 2, 0),
        Ipv4Addr::new(198, 51, 100, 0),
        Ipv4Addr::new(203, 0, 113, 0),
    ];
    InterfaceInfo {
        name: "lo".into(),
        index: INGRESS_IFINDEX,
        mac: BALANCER_MAC,
        prefixes: prefixes
            .iter()
            .map(|&net| (IpAddr::V4(net), 24))
            .chain([(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
                32,
            )])
            .collect(),
        mtu: 65536,
        vlan: None,
        egress: INGRESS_IFINDEX,
    }
}

impl Balancer {
    /// For a privileged test called `test`: `None` without root (the test then returns, as
    /// [`require_root`] explains); otherwise [`Balancer::load`] of `yaml`, with the calling
    /// thread pinned to its CPU so that per-CPU scheduling is predictable.
    pub fn for_test(test: &str, yaml: &str) -> Option<Balancer> {
        if !require_root(test) {
            return None;
        }
        pin_to_current_cpu();
        Some(Balancer::load(yaml))
    }

    /// Loads the program with the services of `yaml` (lbd's config format; `interfaces` must
    /// name `lo`), the loopback being the only interface. All reals are resolved.
    pub fn load(yaml: &str) -> Balancer {
        Balancer::load_with_interfaces(yaml, vec![loopback()])
    }

    /// Loads the program with the services of `yaml`, reals placed on `interfaces` (the first
    /// being where frames arrive). All reals are resolved.
    pub fn load_with_interfaces(yaml: &str, interfaces: Vec<InterfaceInfo>) -> Balancer {
        Balancer::load_with_routes(yaml, interfaces, Routes::new())
    }

    /// As [`Balancer::load_with_interfaces`], with these routes (by real address) over the
    /// ones the harness makes up for connected reals (see the module's doc).
    pub fn load_with_routes(
        yaml: &str,
        interfaces: Vec<InterfaceInfo>,
        routes: Routes,
    ) -> Balancer {
        let config = config::parse(yaml, "fixture.yaml").unwrap_or_else(|e| panic!("{e}"));
        let mut all_routes = connected_routes(&config, &interfaces);
        all_routes.extend(routes);
        let mut state =
            Desired::new(&config, interfaces, &all_routes).unwrap_or_else(|e| panic!("{e}"));
        for (ifindex, addr) in state.next_hops() {
            state.set_neighbours(ifindex, &HashMap::from([(addr, real_mac_for(addr))]));
        }
        let loader::Loaded {
            ebpf,
            dataplane,
            reader,
            sweeper,
            capture,
        } = loader::load(&config.limits, None)
            .unwrap_or_else(|e| panic!("loading the program: {e:?}"));
        let mut balancer = Balancer {
            ebpf,
            dataplane,
            reader,
            sweeper,
            capture,
            state,
        };
        balancer.apply();
        balancer
    }

    /// Switches to the services of `yaml` (interfaces on the loopback, every real resolved)
    /// and writes them, as a reload does; the program and its maps stay.
    pub fn reload(&mut self, yaml: &str) {
        let config = config::parse(yaml, "fixture.yaml").unwrap_or_else(|e| panic!("{e}"));
        let interfaces = vec![loopback()];
        let routes = connected_routes(&config, &interfaces);
        let mut state =
            Desired::new(&config, interfaces, &routes).unwrap_or_else(|e| panic!("{e}"));
        // As the reconciler does: ids kept, and what the maps hold but the config no longer
        // has is removed.
        let existing =
            Existing::read(&self.dataplane).unwrap_or_else(|e| panic!("reading the maps: {e}"));
        state.adopt(&existing);
        for (ifindex, addr) in state.next_hops() {
            state.set_neighbours(ifindex, &HashMap::from([(addr, real_mac_for(addr))]));
        }
        self.state = state;
        self.apply();
    }

    /// Writes the (possibly modified) state to the maps, as the daemon does.
    pub fn apply(&mut self) {
        self.state
            .apply(&mut self.dataplane)
            .unwrap_or_else(|e| panic!("applying state: {e}"));
    }

    /// A map the program keeps to itself (one the dataplane's handles do not take, e.g. the
    /// fragment records `lb_common::MAP_FRAGMENTS`), for tests that empty or read it.
    pub fn program_map(&self, name: &str) -> &aya::maps::MapData {
        match self.ebpf.map(name) {
            Some(aya::maps::Map::HashMap(data) | aya::maps::Map::LruHashMap(data)) => data,
            Some(_) => panic!("map {name} is not a hash map"),
            None => panic!("the program has no map {name} (or the dataplane took it)"),
        }
    }

    /// Sets every CPU's round-robin cursor of service `service_id` to `cursor` (lbd starts
    /// them at random), so that a test's run of new flows is the same every time. The cursor
    /// map belongs to the dataplane's handles; it is reached through the program's own map ids.
    pub fn set_schedule_cursors(&mut self, service_id: u32, cursor: u32) {
        use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
        let program = loader::balancer(&mut self.ebpf).unwrap_or_else(|e| panic!("{e}"));
        let ids = program
            .info()
            .and_then(|info| info.map_ids())
            .unwrap_or_else(|e| panic!("the program's maps: {e}"))
            .unwrap_or_default();
        let data = ids
            .into_iter()
            .filter_map(|id| MapData::from_id(id).ok())
            .find(|data| {
                data.info()
                    .is_ok_and(|info| info.name_as_str() == Some(lb_common::MAP_RR_CURSOR))
            })
            .unwrap_or_else(|| panic!("the program has no {} map", lb_common::MAP_RR_CURSOR));
        let mut cursors: PerCpuArray<MapData, u32> = PerCpuArray::try_from(Map::PerCpuArray(data))
            .unwrap_or_else(|e| panic!("{}: {e}", lb_common::MAP_RR_CURSOR));
        let cpus = aya::util::nr_cpus().unwrap_or_else(|(_, e)| panic!("counting CPUs: {e}"));
        let values = PerCpuValues::try_from(vec![cursor; cpus]).expect("one value per CPU");
        cursors
            .set(service_id, values, 0)
            .unwrap_or_else(|e| panic!("setting the cursors of service {service_id}: {e}"));
    }

    /// Runs the balancer on one frame.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        run_once(&mut self.ebpf, frame)
    }

    /// Runs `frame` `repeat` times in the kernel and returns the mean time per run (the kernel
    /// reports the mean).
    pub fn time(&mut self, frame: &[u8], repeat: u32) -> std::time::Duration {
        test_run(&mut self.ebpf, frame, repeat).0.duration
    }

    /// Runs `frame` through the program again and again (one run each, every output kept)
    /// while `meanwhile` keeps changing the maps on another thread; stops after `count` runs
    /// or `limit`, whichever comes first. Returns the outputs and how often `meanwhile` ran.
    pub fn run_during(
        &mut self,
        frame: &[u8],
        count: usize,
        limit: std::time::Duration,
        mut meanwhile: impl FnMut(&mut EbpfDataplane) + Send,
    ) -> (Vec<Outcome>, usize) {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let Balancer {
            ebpf, dataplane, ..
        } = self;
        std::thread::scope(|scope| {
            let changer = scope.spawn(|| {
                let mut changes = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    meanwhile(dataplane);
                    changes += 1;
                }
                changes
            });
            let deadline = std::time::Instant::now() + limit;
            let mut outcomes = Vec::with_capacity(count);
            while outcomes.len() < count && std::time::Instant::now() < deadline {
                outcomes.push(run_once(ebpf, frame));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (
                outcomes,
                changer.join().expect("the changing thread panicked"),
            )
        })
    }

    /// Packets counted per verdict reason so far.
    pub fn reason_packets(&self) -> HashMap<Reason, u64> {
        self.reader
            .reason_counters()
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|(reason, counters)| (reason, counters.packets))
            .collect()
    }

    pub fn service_counters(&self, service_index: usize) -> Counters {
        let id = self.state.services[service_index].id;
        self.reader
            .service_counters(id)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Counters of the real with this address in the service at `service_index`.
    pub fn real_counters(&self, service_index: usize, addr: impl Into<IpAddr>) -> Counters {
        self.reader
            .real_counters(self.real_id(service_index, addr.into()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What the balancer sent back for the service at `service_index` (NAT replies).
    pub fn service_out_counters(&self, service_index: usize) -> OutCounters {
        let id = self.state.services[service_index].id;
        self.reader
            .service_out_counters(id)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What the balancer sent back for the real with this address in the service at
    /// `service_index` (its NAT replies).
    pub fn real_out_counters(&self, service_index: usize, addr: impl Into<IpAddr>) -> OutCounters {
        self.reader
            .real_out_counters(self.real_id(service_index, addr.into()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The id of the real with this address in the service at `service_index`.
    pub fn real_id(&self, service_index: usize, addr: IpAddr) -> u32 {
        self.state.services[service_index]
            .reals
            .iter()
            .find(|real| real.config.address == addr)
            .unwrap_or_else(|| panic!("no real {addr} in service {service_index}"))
            .id
    }
}

impl Balancer {
    /// Active and inactive connections of the real with this address in the service at
    /// `service_index`.
    pub fn connections(&self, service_index: usize, addr: impl Into<IpAddr>) -> ConnCounts {
        self.reader
            .connections(self.real_id(service_index, addr.into()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The real the next new flow of service `service_index` goes to, on this CPU (call
    /// [`pin_to_current_cpu`] first): the slot of the schedule the program walks (read back
    /// from its maps) that this CPU's cursor points at.
    pub fn next_scheduled(&self, service_index: usize) -> Ipv4Addr {
        match self.next_scheduled_address(service_index) {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => panic!("IPv6 real {v6}: use next_scheduled_address"),
        }
    }

    /// As [`Balancer::next_scheduled`], for reals of either family.
    pub fn next_scheduled_address(&self, service_index: usize) -> IpAddr {
        let service = &self.state.services[service_index];
        let ring = self.state.ring(service).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !ring.is_empty(),
            "service {service_index} has no schedulable real"
        );
        let cpus = self
            .dataplane
            .schedule_cursors(service.id)
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: no preconditions.
        let cpu = unsafe { libc::sched_getcpu() } as usize;
        let real_id = ring[cpus[cpu] as usize % ring.len()];
        let real = service
            .reals
            .iter()
            .find(|real| real.id == real_id)
            .expect("a ring names reals of its service");
        real.config.address
    }
}

/// Runs one frame and checks the action, the output bytes (unless dropped) and that exactly
/// the counter of `reason` moved, by one. Returns the output.
#[track_caller]
pub fn check_exact(
    balancer: &mut Balancer,
    name: &str,
    frame: &[u8],
    action: u32,
    reason: Reason,
    expected_frame: &[u8],
) -> Vec<u8> {
    let before = balancer.reason_packets();
    let outcome = balancer.run(frame);
    let after = balancer.reason_packets();
    assert_eq!(
        outcome.action,
        action,
        "{name}: XDP action (expected {action} for {})",
        reason.name()
    );
    // A dropped frame's bytes go nowhere; only check what leaves.
    if action != XDP_DROP {
        assert_frame_eq(name, expected_frame, &outcome.frame);
    }
    for candidate in Reason::ALL {
        let delta = after[&candidate] - before[&candidate];
        let wanted = u64::from(candidate == reason);
        assert_eq!(
            delta,
            wanted,
            "{name}: counter {} moved by {delta}",
            candidate.name()
        );
    }
    outcome.frame
}

/// The routes lbd would read for the reals of `config` that may be routed (all but `dr`) and
/// sit on a prefix of `interfaces`: straight to the real, from [`balancer_address`].
pub fn connected_routes(config: &config::Config, interfaces: &[InterfaceInfo]) -> Routes {
    config
        .services
        .iter()
        .flat_map(|service| &service.reals)
        .filter(|real| !real.forward.needs_connected_real())
        .filter_map(|real| {
            let interface = interface_for(real.address, interfaces)?;
            Some((
                real.address,
                Route {
                    ifindex: interface.index,
                    interface: interface.name.clone(),
                    gateway: None,
                    prefsrc: Some(balancer_address(real.address)),
                },
            ))
        })
        .collect()
}

fn run_once(ebpf: &mut aya::Ebpf, frame: &[u8]) -> Outcome {
    let (result, frame) = test_run(ebpf, frame, 1);
    Outcome {
        action: result.return_value,
        frame,
    }
}

/// `BPF_PROG_TEST_RUN`: the kernel's result and the frame as the program left it.
fn test_run(
    ebpf: &mut aya::Ebpf,
    frame: &[u8],
    repeat: u32,
) -> (aya::programs::TestRunResult, Vec<u8>) {
    let program = loader::balancer(ebpf).unwrap_or_else(|e| panic!("{e}"));
    // Room for frames that grow (a VLAN tag added; encapsulation, later).
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e:?}", frame.len()));
    out.truncate(result.data_size_out as usize);
    (result, out)
}

/// Pins the calling thread to the CPU it is on, so that per-CPU state (the round-robin
/// cursor) is the same from one test run to the next.
pub fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is zeroed then filled.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu failed");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}
