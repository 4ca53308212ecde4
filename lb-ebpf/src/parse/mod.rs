//! Bounds-checked header access. Every read is preceded by a check against `data_end`, so a
//! truncated frame can only ever end in `PassTruncated`.
//!
//! `mod.rs` reads the Ethernet header and its VLAN tag, then hands the IP datagram to
//! [`ipv4`] or [`ipv6`]; both classify it as a [`Kind`] and fill in its flow key, reading the
//! quoted packet of an ICMP error with [`icmp`].
//!
//! Multi-buffer frames (`xdp.frags`, jumbo MTUs): the headers are read from the linear part;
//! lengths are checked against the whole frame, which is asked of the kernel
//! (`bpf_xdp_get_buff_len`) only when the IP datagram reaches past the linear part, so the
//! common single-buffer frame pays nothing for it.

mod icmp;
pub(crate) mod ipv4;
pub(crate) mod ipv6;

use aya_ebpf::{helpers::generated::bpf_xdp_get_buff_len, programs::XdpContext};
use lb_common::{ETH_P_8021AD, ETH_P_8021Q, FlowKey, PROTO_TCP, PROTO_UDP, Reason};

pub const ETH_HEADER_LEN: usize = 14;
pub const VLAN_HEADER_LEN: usize = 4;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const TCP_HEADER_LEN: usize = 20;
/// Where the flags byte (FIN, SYN, RST, PSH, ACK, …) lies in a TCP header, after the data
/// offset byte.
const TCP_FLAGS_OFFSET: usize = 13;
/// Transport headers start below this offset (Ethernet, a VLAN tag, and six IPv6 extension
/// headers of at most 2 KiB each still fit).
pub const L4_OFFSET_BOUND: usize = 0x3fff;
const UDP_HEADER_LEN: usize = 8;

// Header structs type their 16- and 32-bit fields as such (network byte order, as in the
// `_be` names), as C's `struct iphdr` does: the compiler then reads each with one load instead
// of byte by byte. The fields lie at their natural alignment relative to the header, and
// the verifier and the JIT accept packet loads at any address on the architectures XDP runs
// on (x86-64, arm64).

#[repr(C)]
pub struct EthHeader {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type_be: u16,
}

/// An Ethernet header with one VLAN tag: what a tagged frame starts with.
#[repr(C)]
pub struct VlanEthHeader {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub tpid_be: u16,
    pub tci_be: u16,
    pub ether_type_be: u16,
}

/// The first four bytes of both TCP and UDP headers.
#[repr(C)]
struct Ports {
    src_be: u16,
    dst_be: u16,
}

/// [`Packet::vlan`]: the frame has a tag.
pub const TAGGED: u32 = lb_common::VLAN_TAGGED;

/// What kind of datagram a frame carries, which decides the pipeline it takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole TCP or UDP packet.
    Whole,
    /// The first fragment of a TCP or UDP datagram: it has the ports.
    FirstFragment,
    /// A later fragment: no ports ([`Packet::flow`] has them 0).
    LaterFragment,
    /// An ICMP or ICMPv6 error quoting a TCP or UDP packet; [`Packet::flow`] is the quoted
    /// packet's, as it was sent (source and destination not turned around).
    IcmpError,
}

/// What the rest of the pipeline needs to know about a frame.
pub struct Packet {
    pub flow: FlowKey,
    /// Length of the whole frame (all buffers), for byte counters.
    pub frame_len: u64,
    /// The frame's VLAN tag: [`TAGGED`] with the tag's TCI (network order) in the low bits,
    /// or 0 when it has none. One word, not an `Option`: the payload of a `None` is left
    /// undefined, and the verifier refuses a program that copies undefined registers.
    pub vlan: u32,
    pub kind: Kind,
    /// Fragments: the datagram's IP identification, as received (network byte order).
    pub fragment_id_be: u32,
    /// Where the TCP or UDP header starts (0 for later fragments): the TCP flags are read
    /// from it only once a packet is known to be for a service (see [`tcp_flags`]), so
    /// traffic that is not ours does not pay for them. For an ICMP error, where the ICMP
    /// header starts (NAT translates the quote behind it).
    pub l4: u16,
}

/// Where the IP datagram ends in the frame, and how long the frame is.
#[derive(Clone, Copy)]
pub(crate) struct Datagram {
    /// Offset of the datagram's end: what follows is link-layer padding.
    pub end: usize,
    pub frame_len: u64,
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
    let eth: *mut EthHeader = header(ctx, 0).ok_or(Reason::PassTruncated)?;
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type_be });
    let mut l3 = ETH_HEADER_LEN;
    let mut vlan = 0;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let tagged_header: *mut VlanEthHeader = header(ctx, 0).ok_or(Reason::PassTruncated)?;
        ether_type = u16::from_be(unsafe { (*tagged_header).ether_type_be });
        vlan = TAGGED | u32::from(unsafe { (*tagged_header).tci_be });
        l3 += VLAN_HEADER_LEN;
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            return Err(Reason::PassStackedVlan);
        }
    }
    match ether_type {
        ETH_P_IPV4 => ipv4::parse(ctx, l3, vlan),
        ETH_P_IPV6 => ipv6::parse(ctx, l3, vlan),
        _ => Err(Reason::PassNotIp),
    }
}

impl Datagram {
    /// Checks that a datagram of `total_len` bytes from `l3` lies within the frame (anything
    /// after it is link-layer padding).
    #[inline(always)]
    pub(crate) fn within_frame(
        ctx: &XdpContext,
        l3: usize,
        total_len: usize,
    ) -> Result<Datagram, Reason> {
        let linear = linear_len(ctx);
        let end = l3 + total_len;
        let mut frame_len = linear;
        if end as u64 > linear {
            frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
        }
        if end as u64 > frame_len {
            return Err(Reason::PassTruncated);
        }
        Ok(Datagram { end, frame_len })
    }
}

/// The length of the transport header the program needs in full, for the protocols it
/// balances.
#[inline(always)]
fn transport_header_len(protocol: u8) -> Option<usize> {
    match protocol {
        PROTO_TCP => Some(TCP_HEADER_LEN),
        PROTO_UDP => Some(UDP_HEADER_LEN),
        _ => None,
    }
}

/// The ports at `l4`, which must lie (with the rest of a `header_len`-byte transport header)
/// in the linear part, where the program can read them.
#[inline(always)]
fn ports_at(ctx: &XdpContext, l4: usize, header_len: usize) -> Result<(u16, u16), Reason> {
    if ctx.data() + l4 + header_len > ctx.data_end() {
        return Err(Reason::PassTruncated);
    }
    let ports: *mut Ports = header(ctx, l4).ok_or(Reason::PassTruncated)?;
    Ok(unsafe { ((*ports).src_be, (*ports).dst_be) })
}

/// The TCP segment's flags (`TCP_*` of `lb_common::conntrack`); 0 for anything else. The parse
/// checked that the whole TCP header lies in the linear part.
#[inline(always)]
pub fn tcp_flags(ctx: &XdpContext, packet: &Packet) -> u8 {
    if packet.flow.protocol != PROTO_TCP || packet.l4 == 0 || packet.kind == Kind::IcmpError {
        return 0;
    }
    // The mask changes nothing (headers start well within the first 16 KiB) but bounds the
    // offset for the verifier, which proves packet accesses only for offsets it knows stay
    // below 64 KiB. Two bytes, not one: a one-byte bounds check compiles to a comparison the
    // verifier does not take as proof of the access.
    let l4 = usize::from(packet.l4) & L4_OFFSET_BOUND;
    match header::<[u8; 2]>(ctx, l4 + TCP_FLAGS_OFFSET - 1) {
        Some(bytes) => unsafe { (*bytes)[1] },
        None => 0,
    }
}

/// An IPv4 address (`word`: its four bytes as loaded from the packet) as keys hold it: its
/// four bytes, then twelve zeroes. Built as one 128-bit value so that the compiler stores it
/// whole, instead of calling `memset` for the zeroes (a BPF-to-BPF call on every packet).
#[inline(always)]
pub(crate) fn ipv4_key_bytes(word: u32) -> [u8; 16] {
    u128::from(u32::from_le_bytes(word.to_ne_bytes())).to_le_bytes()
}
