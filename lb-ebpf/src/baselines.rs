//! The benchmark's reference programs, which `cargo xtask bench` measures lbd's program
//! against. They do the least a balancer can do, so a ratio to them is what lbd's features
//! cost:
//!
//! - `bench_mac_swap` and `bench_mac_swap_redirect`: the ceiling of a path. Swap the MACs and
//!   send the frame back out (`XDP_TX`) or out of another interface (a devmap redirect, as
//!   lbd redirects); no parsing at all.
//! - `bench_stateless_dr`: a stateless direct-routing balancer. Ethernet, IPv4 or IPv6, TCP
//!   or UDP ports; the service by VIP:port/protocol; the real by a hash of the 5-tuple (the
//!   same hash and key lbd uses); the MACs rewritten and `XDP_TX`. No flow table, no
//!   counters, no VLANs, fragments, options or extension headers.
//!
//! `bench_sink` counts and drops what reaches the sink of the throughput topology, and
//! `bench_generator` is the in-kernel traffic source that `BPF_PROG_TEST_RUN` runs in live
//! frame mode: it writes the bench's frame, stamps a source port from a rotating range on it
//! and transmits it. `bench_pass` passes everything to the stack: a veth receives frames
//! sent by XDP only while an XDP program is attached to it, so the kernel-stack balancer
//! (nftables) needs one in front.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, DevMap, HashMap, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{FAMILY_IPV4, FAMILY_IPV6, FlowKey, PROTO_TCP, PROTO_UDP, ServiceKey, hash};

/// A service of the stateless balancer: its reals are `count` entries of `BENCH_REALS` from
/// `first`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BenchService {
    pub first: u32,
    pub count: u32,
}

#[map(name = "BENCH_SERVICES")]
/// Keyed as lbd's services are (`lb_common::ServiceKey`).
static SERVICES: HashMap<ServiceKey, BenchService> = HashMap::with_max_entries(1024, 0);

/// The reals' MACs (padded to 8 bytes).
#[map(name = "BENCH_REALS")]
static REALS: Array<[u8; 8]> = Array::with_max_entries(4096, 0);

/// Slot 0: the interface `bench_mac_swap_redirect` sends to.
#[map(name = "BENCH_TX_PORT")]
static TX_PORT: DevMap = DevMap::with_max_entries(1, 0);

/// Slot 0: frames and bytes `bench_sink` saw; slot 1: frames `bench_generator` sent.
#[map(name = "BENCH_COUNTS")]
static COUNTS: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(2, 0);

/// Slot 0: how many source ports `bench_generator` rotates over (1 = one flow).
#[map(name = "BENCH_FLOWS")]
static FLOWS: Array<u32> = Array::with_max_entries(1, 0);

/// The first `GENERATOR_FRAME_LEN` bytes `bench_generator` writes on every frame.
#[map(name = "BENCH_FRAME")]
static FRAME: Array<[u32; GENERATOR_FRAME_LEN / 4]> = Array::with_max_entries(1, 0);

const ETH_LEN: usize = 14;
/// The generator's frames: Ethernet, IPv4, TCP or UDP and a few bytes of payload (a
/// minimum-size Ethernet frame without its FCS).
const GENERATOR_FRAME_LEN: usize = 60;
const _: () = assert!(GENERATOR_FRAME_LEN == 15 * 4, "write_frame copies 15 words");

#[xdp]
pub fn bench_mac_swap(ctx: XdpContext) -> u32 {
    match swap_macs(&ctx) {
        Some(()) => xdp_action::XDP_TX,
        None => xdp_action::XDP_PASS,
    }
}

#[xdp]
pub fn bench_mac_swap_redirect(ctx: XdpContext) -> u32 {
    match swap_macs(&ctx) {
        Some(()) => TX_PORT
            .redirect(0, u64::from(xdp_action::XDP_DROP))
            .unwrap_or(xdp_action::XDP_DROP),
        None => xdp_action::XDP_PASS,
    }
}

#[xdp]
pub fn bench_stateless_dr(ctx: XdpContext) -> u32 {
    stateless_dr(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(counts) = COUNTS.get_ptr_mut(0) {
        unsafe {
            (*counts)[0] += 1;
            (*counts)[1] += len;
        }
    }
    xdp_action::XDP_DROP
}

/// Writes the bench's frame (`BENCH_FRAME`), stamps the next source port on it (IPv4 TCP/UDP,
/// no options) and transmits. Live frame mode recycles pages that went through the path: a
/// frame comes back with the MACs a balancer rewrote, or the address and TTL that a
/// forwarding kernel changed, so every frame is written whole rather than only its port.
#[xdp]
pub fn bench_generator(ctx: XdpContext) -> u32 {
    let Some(counts) = COUNTS.get_ptr_mut(1) else {
        return xdp_action::XDP_DROP;
    };
    let flows = match FLOWS.get(0) {
        Some(&flows) if flows > 0 => flows,
        _ => 1,
    };
    let sent = unsafe {
        (*counts)[0] += 1;
        (*counts)[0]
    };
    let port = 10_000 + (sent % u64::from(flows)) as u16;
    let frame = FRAME.get(0);
    // Read once, after the lookup: a `data` read again later carries no checked bounds.
    let data = ctx.data();
    if data + GENERATOR_FRAME_LEN > ctx.data_end() {
        return xdp_action::XDP_DROP;
    }
    if let Some(frame) = frame {
        write_frame(data, frame);
    }
    let at = ETH_LEN + 20;
    unsafe { core::ptr::write_unaligned((data + at) as *mut u16, port.to_be()) };
    xdp_action::XDP_TX
}

/// Copies `frame` to the packet at `data` (checked to hold `GENERATOR_FRAME_LEN` bytes, and
/// 4-aligned: XDP leaves 256 bytes of headroom) in stores at constant offsets: a 60-byte
/// `memcpy` becomes a call the verifier cannot follow with the packet's bounds.
#[inline(always)]
fn write_frame(data: usize, frame: &[u32; GENERATOR_FRAME_LEN / 4]) {
    macro_rules! copy_words {
        ($($word:literal),*) => {$(
            unsafe { core::ptr::write((data + 4 * $word) as *mut u32, frame[$word]) };
        )*};
    }
    copy_words!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
}

#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Option<()> {
    let start = ctx.data();
    if start + ETH_LEN > ctx.data_end() {
        return None;
    }
    let eth = start as *mut [u8; 12];
    unsafe {
        let macs = core::ptr::read(eth);
        let mut swapped = [0u8; 12];
        swapped[..6].copy_from_slice(&macs[6..]);
        swapped[6..].copy_from_slice(&macs[..6]);
        core::ptr::write(eth, swapped);
    }
    Some(())
}

#[inline(always)]
fn stateless_dr(ctx: &XdpContext) -> Option<u32> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_LEN > end {
        return None;
    }
    let ether_type = u16::from_be(unsafe { core::ptr::read_unaligned((start + 12) as *const u16) });
    let mut flow = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        src_port_be: 0,
        dst_port_be: 0,
        protocol: 0,
        family: 0,
        _pad: [0; 2],
    };
    let l4 = match ether_type {
        0x0800 => {
            let ip = start + ETH_LEN;
            if ip + 20 > end {
                return None;
            }
            let first = unsafe { *(ip as *const u8) };
            if first != 0x45 {
                return None;
            }
            flow.protocol = unsafe { *((ip + 9) as *const u8) };
            flow.family = FAMILY_IPV4;
            unsafe {
                flow.src[..4].copy_from_slice(&*((ip + 12) as *const [u8; 4]));
                flow.dst[..4].copy_from_slice(&*((ip + 16) as *const [u8; 4]));
            }
            ip + 20
        }
        0x86dd => {
            let ip = start + ETH_LEN;
            if ip + 40 > end {
                return None;
            }
            flow.protocol = unsafe { *((ip + 6) as *const u8) };
            flow.family = FAMILY_IPV6;
            unsafe {
                flow.src = *((ip + 8) as *const [u8; 16]);
                flow.dst = *((ip + 24) as *const [u8; 16]);
            }
            ip + 40
        }
        _ => return None,
    };
    if flow.protocol != PROTO_TCP && flow.protocol != PROTO_UDP {
        return None;
    }
    if l4 + 4 > end {
        return None;
    }
    unsafe {
        flow.src_port_be = core::ptr::read_unaligned(l4 as *const u16);
        flow.dst_port_be = core::ptr::read_unaligned((l4 + 2) as *const u16);
    }
    let key = ServiceKey {
        vip: flow.dst,
        port_be: flow.dst_port_be,
        protocol: flow.protocol,
        family: flow.family,
    };
    let service = unsafe { SERVICES.get(&key) }?;
    if service.count == 0 {
        return None;
    }
    let slot = service.first + hash::connection(&flow) % service.count;
    let mac = REALS.get(slot)?;
    let eth = start as *mut [u8; 12];
    unsafe {
        let old = core::ptr::read(eth);
        let mut new = [0u8; 12];
        new[..6].copy_from_slice(&mac[..6]);
        new[6..].copy_from_slice(&old[..6]);
        core::ptr::write(eth, new);
    }
    Some(xdp_action::XDP_TX)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
