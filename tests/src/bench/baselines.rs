//! The reference programs of `lb-ebpf/src/baselines.rs`, loaded by the bench itself: the
//! stateless DR balancer that per-packet costs are compared with, and the MAC-swap ceiling,
//! sink and generator of the throughput topology.

use std::net::IpAddr;

use aya::{
    maps::{Array, DevMap, HashMap, PerCpuArray},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::ServiceKey;

pub const MAC_SWAP: &str = "bench_mac_swap";
pub const MAC_SWAP_REDIRECT: &str = "bench_mac_swap_redirect";
pub const STATELESS_DR: &str = "bench_stateless_dr";
pub const SINK: &str = "bench_sink";
pub const GENERATOR: &str = "bench_generator";
pub const PASS: &str = "bench_pass";

/// How many bytes of its frame `bench_generator` writes on every frame (`BENCH_FRAME`).
pub const GENERATOR_FRAME_LEN: usize = 60;

#[repr(C)]
#[derive(Clone, Copy)]
struct Service {
    first: u32,
    count: u32,
}
// SAFETY: plain data, no padding.
unsafe impl aya::Pod for Service {}

/// A service of the stateless balancer: VIP, port, protocol number and its reals' MACs.
pub struct StatelessService {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: u8,
    pub real_macs: Vec<[u8; 6]>,
}

/// The reference programs' object, loaded; each program is loaded into the kernel when first
/// asked for.
pub struct Baselines {
    ebpf: aya::Ebpf,
    next_real: u32,
}

impl Baselines {
    pub fn load() -> Baselines {
        let ebpf = aya::EbpfLoader::new()
            .load(lb_userspace::BENCH_BASELINES_OBJECT)
            .unwrap_or_else(|e| panic!("loading the bench's reference programs: {e:?}"));
        Baselines { ebpf, next_real: 0 }
    }

    /// The program called `name`, loaded into the kernel.
    pub fn program(&mut self, name: &str) -> &mut Xdp {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("no program {name} in the reference object"))
            .try_into()
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        if program.fd().is_err() {
            program
                .load()
                .unwrap_or_else(|e| panic!("loading {name}: {e:?}"));
        }
        program
    }

    /// Adds a service to the stateless DR program.
    pub fn add_stateless_service(&mut self, service: &StatelessService) {
        let mut reals: Array<_, [u8; 8]> =
            Array::try_from(self.ebpf.map_mut("BENCH_REALS").expect("BENCH_REALS"))
                .expect("BENCH_REALS is an array");
        let first = self.next_real;
        for (i, mac) in service.real_macs.iter().enumerate() {
            let mut padded = [0u8; 8];
            padded[..6].copy_from_slice(mac);
            reals
                .set(first + i as u32, padded, 0)
                .expect("writing BENCH_REALS");
        }
        self.next_real += service.real_macs.len() as u32;
        let (vip, family) = lb_userspace::reconcile::address_bytes(service.vip);
        let mut services: HashMap<_, ServiceKey, Service> =
            HashMap::try_from(self.ebpf.map_mut("BENCH_SERVICES").expect("BENCH_SERVICES"))
                .expect("BENCH_SERVICES is a hash");
        let key = ServiceKey {
            vip,
            port_be: service.port.to_be(),
            protocol: service.protocol,
            family,
        };
        let value = Service {
            first,
            count: service.real_macs.len() as u32,
        };
        services
            .insert(key, value, 0)
            .expect("writing BENCH_SERVICES");
    }

    /// Where `bench_mac_swap_redirect` sends frames. The kernel resolves `ifindex` in the
    /// caller's network namespace: call this from a thread inside the balancer's.
    pub fn set_redirect_to(&mut self, ifindex: u32) {
        let mut port = DevMap::try_from(self.ebpf.map_mut("BENCH_TX_PORT").expect("BENCH_TX_PORT"))
            .expect("BENCH_TX_PORT is a devmap");
        port.set(0, ifindex, None, 0)
            .unwrap_or_else(|e| panic!("BENCH_TX_PORT → ifindex {ifindex}: {e:?}"));
    }

    /// How many source ports the generator rotates over (flows it makes).
    pub fn set_generator_flows(&mut self, flows: u32) {
        let mut map: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("BENCH_FLOWS").expect("BENCH_FLOWS"))
                .expect("BENCH_FLOWS is an array");
        map.set(0, flows, 0).expect("writing BENCH_FLOWS");
    }

    /// The frame `bench_generator` writes on every frame it sends (its source port stamped
    /// on): exactly [`GENERATOR_FRAME_LEN`] bytes, IPv4 without options, TCP or UDP.
    pub fn set_generator_frame(&mut self, frame: &[u8]) {
        let frame: [u8; GENERATOR_FRAME_LEN] = frame.try_into().unwrap_or_else(|_| {
            panic!(
                "the generator's frame is {GENERATOR_FRAME_LEN} bytes, not {}",
                frame.len()
            )
        });
        let mut map: Array<_, [u8; GENERATOR_FRAME_LEN]> =
            Array::try_from(self.ebpf.map_mut("BENCH_FRAME").expect("BENCH_FRAME"))
                .expect("BENCH_FRAME is an array");
        map.set(0, frame, 0).expect("writing BENCH_FRAME");
    }

    /// Frames the sink has counted (summed over CPUs).
    pub fn sink_frames(&self) -> u64 {
        self.count(0)
    }

    /// Frames the generator has sent (summed over CPUs).
    pub fn generated_frames(&self) -> u64 {
        self.count(1)
    }

    fn count(&self, slot: u32) -> u64 {
        let counts: PerCpuArray<_, [u64; 2]> =
            PerCpuArray::try_from(self.ebpf.map("BENCH_COUNTS").expect("BENCH_COUNTS"))
                .expect("BENCH_COUNTS is a per-CPU array");
        counts
            .get(&slot, 0)
            .expect("reading BENCH_COUNTS")
            .iter()
            .map(|per_cpu| per_cpu[0])
            .sum()
    }

    /// Mean time per run of `name` on `frame`, run `repeat` times in the kernel.
    pub fn time(&mut self, name: &str, frame: &[u8], repeat: u32) -> std::time::Duration {
        let mut out = vec![0u8; frame.len() + 256];
        self.program(name)
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {name}: {e:?}"))
            .duration
    }

    /// Runs `name` once on `frame`: the action and the frame as it left.
    pub fn run(&mut self, name: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self
            .program(name)
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {name}: {e:?}"));
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }
}
