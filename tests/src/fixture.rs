//! The balancer, loaded but not attached, fed single frames through `BPF_PROG_TEST_RUN`.
//!
//! [`Balancer::load`] goes through the daemon's own code path — config parsing, `State`,
//! `loader::load`, `State::apply` — so a fixture exercises exactly what `lbd` writes. Every
//! real is "resolved" to the MAC [`real_mac_for`] derives from its address.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{Counters, Reason};
use lb_userspace::{
    config,
    dataplane::{Dataplane as _, EbpfDataplane},
    loader,
    neighbour::InterfaceInfo,
    state::State,
};

use crate::packet::Mac;

/// Without a context, `BPF_PROG_TEST_RUN` runs an XDP program as if the frame had arrived on
/// the loopback device of the caller's namespace, whose index is always 1.
pub const INGRESS_IFINDEX: u32 = 1;
/// The balancer interface's own MAC in fixtures: the source MAC of every forwarded frame.
pub const BALANCER_MAC: Mac = [0x02, 0, 0, 0, 0xbb, 0x01];

/// The MAC fixtures give a real: `02:00` then its IPv4 address.
pub fn real_mac_for(addr: Ipv4Addr) -> Mac {
    let [a, b, c, d] = addr.octets();
    [0x02, 0, a, b, c, d]
}

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
    pub state: State,
}

impl Balancer {
    /// Loads the program with the services of `yaml` (lbd's config format; `interfaces` must
    /// name `lo`). All reals on 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24 are resolved.
    pub fn load(yaml: &str) -> Balancer {
        let config = config::parse(yaml, "fixture.yaml").unwrap_or_else(|e| panic!("{e}"));
        let prefixes = [
            Ipv4Addr::new(192, 0, 2, 0),
            Ipv4Addr::new(198, 51, 100, 0),
            Ipv4Addr::new(203, 0, 113, 0),
        ];
        let lo = InterfaceInfo {
            name: "lo".into(),
            index: INGRESS_IFINDEX,
            mac: BALANCER_MAC,
            prefixes: prefixes.iter().map(|&net| (IpAddr::V4(net), 24)).collect(),
        };
        let mut state = State::new(&config, vec![lo]).unwrap_or_else(|e| panic!("{e}"));
        let macs: HashMap<IpAddr, Mac> = state
            .real_addresses()
            .into_iter()
            .filter_map(|(_, addr)| match addr {
                IpAddr::V4(v4) => Some((addr, real_mac_for(v4))),
                IpAddr::V6(_) => None,
            })
            .collect();
        state.set_neighbours(INGRESS_IFINDEX, &macs);
        let loader::Loaded { ebpf, dataplane } = loader::load(&config.limits, None)
            .unwrap_or_else(|e| panic!("loading the program: {e:?}"));
        let mut balancer = Balancer {
            ebpf,
            dataplane,
            state,
        };
        balancer.apply();
        balancer
    }

    /// Writes the (possibly modified) state to the maps, as the daemon does.
    pub fn apply(&mut self) {
        self.state
            .apply(&mut self.dataplane)
            .unwrap_or_else(|e| panic!("applying state: {e}"));
    }

    /// Runs the balancer on one frame.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        let (result, frame) = self.test_run(frame, 1);
        Outcome {
            action: result.return_value,
            frame,
        }
    }

    /// Runs `frame` `repeat` times in the kernel and returns the mean time per run (the kernel
    /// reports the mean).
    pub fn time(&mut self, frame: &[u8], repeat: u32) -> std::time::Duration {
        self.test_run(frame, repeat).0.duration
    }

    /// `BPF_PROG_TEST_RUN`: the kernel's result and the frame as the program left it.
    fn test_run(&mut self, frame: &[u8], repeat: u32) -> (aya::programs::TestRunResult, Vec<u8>) {
        let program = loader::balancer(&mut self.ebpf).unwrap_or_else(|e| panic!("{e}"));
        // Room for programs that grow frames (encapsulation, later).
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

    /// Packets counted per verdict reason so far.
    pub fn reason_packets(&self) -> HashMap<Reason, u64> {
        self.dataplane
            .reason_counters()
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|(reason, counters)| (reason, counters.packets))
            .collect()
    }

    pub fn service_counters(&self, service_index: usize) -> Counters {
        let id = self.state.services[service_index].id;
        self.dataplane
            .service_counters(id)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Counters of the real with this address in the service at `service_index`.
    pub fn real_counters(&self, service_index: usize, addr: Ipv4Addr) -> Counters {
        let real = self.state.services[service_index]
            .reals
            .iter()
            .find(|real| real.config.address == IpAddr::V4(addr))
            .unwrap_or_else(|| panic!("no real {addr} in service {service_index}"));
        self.dataplane
            .real_counters(real.id)
            .unwrap_or_else(|e| panic!("{e}"))
    }
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
