//! Bounds-checked header access. Every read is preceded by a check against `data_end`, so a
//! truncated frame can only ever end in `PassTruncated`.
//!
//! Multi-buffer frames (`xdp.frags`, jumbo MTUs): the headers are read from the linear part;
//! lengths are checked against the whole frame, which is asked of the kernel
//! (`bpf_xdp_get_buff_len`) only when the IP datagram reaches past the linear part, so the
//! common single-buffer frame pays nothing for it.

use aya_ebpf::{helpers::generated::bpf_xdp_get_buff_len, programs::XdpContext};
use lb_common::{ETH_P_8021AD, ETH_P_8021Q, FAMILY_IPV4, FlowKey, PROTO_TCP, PROTO_UDP, Reason};

pub const ETH_HEADER_LEN: usize = 14;
pub const VLAN_HEADER_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// More-fragments flag and fragment offset of the IPv4 `frag_off` field.
const IPV4_FRAGMENT_MASK: u16 = 0x3fff;
const TCP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

#[repr(C)]
pub struct EthHeader {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

/// An Ethernet header with one VLAN tag: what a tagged frame starts with.
#[repr(C)]
pub struct VlanEthHeader {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub tpid: [u8; 2],
    pub tci: [u8; 2],
    pub ether_type: [u8; 2],
}

#[repr(C)]
struct Ipv4Header {
    version_ihl: u8,
    _tos: u8,
    total_len: [u8; 2],
    _id: [u8; 2],
    frag_off: [u8; 2],
    _ttl: u8,
    protocol: u8,
    _check: [u8; 2],
    src: [u8; 4],
    dst: [u8; 4],
}

/// The first four bytes of both TCP and UDP headers.
#[repr(C)]
struct Ports {
    src: [u8; 2],
    dst: [u8; 2],
}

/// [`Packet::vlan`]: the frame has a tag.
pub const TAGGED: u32 = 1 << 16;

/// What the rest of the pipeline needs to know about a frame.
pub struct Packet {
    pub flow: FlowKey,
    /// Length of the whole frame (all buffers), for byte counters.
    pub frame_len: u64,
    /// The frame's VLAN tag: [`TAGGED`] with the tag's TCI (network order) in the low bits,
    /// or 0 when it has none. One word, not an `Option`: the payload of a `None` is left
    /// undefined, and the verifier refuses a program that copies undefined registers.
    pub vlan: u32,
}

/// A pointer to a `T` at `offset`, if the frame's linear part is long enough to hold it.
#[inline(always)]
pub fn header<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Length of the frame's linear part (all of it, unless the frame has fragments).
#[inline(always)]
pub fn linear_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Reason> {
    let linear = linear_len(ctx);
    let eth: *mut EthHeader = header(ctx, 0).ok_or(Reason::PassTruncated)?;
    let mut ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type });
    let mut l3 = ETH_HEADER_LEN;
    let mut vlan = 0;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let tagged_header: *mut VlanEthHeader = header(ctx, 0).ok_or(Reason::PassTruncated)?;
        ether_type = u16::from_be_bytes(unsafe { (*tagged_header).ether_type });
        vlan = TAGGED | u32::from(u16::from_ne_bytes(unsafe { (*tagged_header).tci }));
        l3 += VLAN_HEADER_LEN;
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            return Err(Reason::PassStackedVlan);
        }
    }
    match ether_type {
        ETH_P_IPV4 => {}
        ETH_P_IPV6 => return Err(Reason::PassIpv6),
        _ => return Err(Reason::PassNotIp),
    }

    let ip: *mut Ipv4Header = header(ctx, l3).ok_or(Reason::PassTruncated)?;
    let version_ihl = unsafe { (*ip).version_ihl };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < core::mem::size_of::<Ipv4Header>() {
        return Err(Reason::PassMalformed);
    }
    // The header (options included) and the datagram must lie within the frame; anything
    // after `total_len` is link-layer padding.
    let total_len = u16::from_be_bytes(unsafe { (*ip).total_len }) as usize;
    let datagram_end = (l3 + total_len) as u64;
    let mut frame_len = linear;
    if datagram_end > linear {
        frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    }
    if total_len < header_len || datagram_end > frame_len {
        return Err(Reason::PassTruncated);
    }
    if u16::from_be_bytes(unsafe { (*ip).frag_off }) & IPV4_FRAGMENT_MASK != 0 {
        return Err(Reason::PassFragment);
    }
    let protocol = unsafe { (*ip).protocol };
    let l4_len = match protocol {
        PROTO_TCP => TCP_HEADER_LEN,
        PROTO_UDP => UDP_HEADER_LEN,
        _ => return Err(Reason::PassNotTcpUdp),
    };
    if total_len < header_len + l4_len {
        return Err(Reason::PassTruncated);
    }
    let l4 = l3 + header_len;
    // The transport header must be in the linear part, where the program can read it.
    if ctx.data() + l4 + l4_len > ctx.data_end() {
        return Err(Reason::PassTruncated);
    }
    let ports: *mut Ports = header(ctx, l4).ok_or(Reason::PassTruncated)?;

    let flow = FlowKey {
        src: ipv4_key_bytes(unsafe { (*ip).src }),
        dst: ipv4_key_bytes(unsafe { (*ip).dst }),
        protocol,
        family: FAMILY_IPV4,
        src_port_be: u16::from_ne_bytes(unsafe { (*ports).src }),
        dst_port_be: u16::from_ne_bytes(unsafe { (*ports).dst }),
        _pad: [0; 2],
    };
    Ok(Packet {
        flow,
        frame_len,
        vlan,
    })
}

/// An IPv4 address as keys hold it: its four bytes, then twelve zeroes. Built as one 128-bit
/// value so that the compiler stores it whole, instead of calling `memset` for the zeroes
/// (a BPF-to-BPF call on every packet).
#[inline(always)]
fn ipv4_key_bytes(octets: [u8; 4]) -> [u8; 16] {
    u128::from(u32::from_le_bytes(octets)).to_le_bytes()
}
