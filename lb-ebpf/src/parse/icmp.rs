//! ICMP and ICMPv6 errors: which TCP/UDP packet they quote.
//!
//! An error (destination unreachable, fragmentation needed, time exceeded, packet too big)
//! quotes the start of the packet that caused it: its IP header and at least the first 8
//! bytes after it, which hold the ports. The program balances an error by the quoted packet's
//! flow (see `icmp.rs` in the pipeline), so only the quote needs parsing here. A quote that
//! is truncated, malformed, or not the start of a TCP or UDP packet passes as
//! `PassIcmpBadQuote`, and so does an error not addressed to the quoted packet's source
//! (every ICMP error goes to the source of the packet that caused it).

use aya_ebpf::programs::XdpContext;
use lb_common::{FAMILY_IPV4, FAMILY_IPV6, FlowKey, Reason};

use super::{
    Datagram, Kind, Ports, header,
    ipv4::{self, Ipv4Header},
    ipv4_key_bytes,
    ipv6::{IPV6_HEADER_LEN, Ipv6Header},
    transport_header_len,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;

/// The ICMP and ICMPv6 header: type, code, checksum, and four bytes that depend on the type.
#[repr(C)]
struct IcmpHeader {
    kind: u8,
    _code: u8,
    _checksum: [u8; 2],
    _rest: [u8; 4],
}

/// The flow of the packet an ICMP message at `l4`, addressed to `to`, quotes, if it is an
/// error the program forwards; `PassNotTcpUdp` for other ICMP messages (echo, …).
#[inline(always)]
pub fn quoted_by_icmpv4(
    ctx: &XdpContext,
    l4: usize,
    datagram: Datagram,
    to: [u8; 16],
) -> Result<FlowKey, Reason> {
    let quote = error_quote(ctx, l4, |kind| {
        kind == ICMP_DEST_UNREACH || kind == ICMP_TIME_EXCEEDED
    })?;
    let ip: *mut Ipv4Header = header(ctx, quote).ok_or(Reason::PassIcmpBadQuote)?;
    let header_len = ipv4::header_len(ip).ok_or(Reason::PassIcmpBadQuote)?;
    // Only a packet's start has ports; an error about a later fragment cannot be placed.
    if ipv4::fragment_kind(unsafe { (*ip).frag_off_be }) == Kind::LaterFragment {
        return Err(Reason::PassIcmpBadQuote);
    }
    let protocol = unsafe { (*ip).protocol };
    let (src_port_be, dst_port_be) = quoted_ports(ctx, quote + header_len, protocol, datagram)?;
    let src = ipv4_key_bytes(unsafe { (*ip).src });
    addressed_to_source(src, to)?;
    Ok(FlowKey {
        src,
        dst: ipv4_key_bytes(unsafe { (*ip).dst }),
        src_port_be,
        dst_port_be,
        protocol,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    })
}

/// As [`quoted_by_icmpv4`], for ICMPv6. A quoted packet with extension headers between its
/// fixed header and TCP/UDP counts as a bad quote: errors about such packets are rare, and
/// following the chain a second time would double the program's parsing.
#[inline(always)]
pub fn quoted_by_icmpv6(
    ctx: &XdpContext,
    l4: usize,
    datagram: Datagram,
    to: [u8; 16],
) -> Result<FlowKey, Reason> {
    let quote = error_quote(ctx, l4, |kind| {
        kind == ICMPV6_DEST_UNREACH || kind == ICMPV6_PACKET_TOO_BIG || kind == ICMPV6_TIME_EXCEEDED
    })?;
    let ip: *mut Ipv6Header = header(ctx, quote).ok_or(Reason::PassIcmpBadQuote)?;
    if unsafe { (*ip).version_class_flow[0] } >> 4 != 6 {
        return Err(Reason::PassIcmpBadQuote);
    }
    let protocol = unsafe { (*ip).next_header };
    let (src_port_be, dst_port_be) =
        quoted_ports(ctx, quote + IPV6_HEADER_LEN, protocol, datagram)?;
    let src = unsafe { (*ip).src };
    addressed_to_source(src, to)?;
    Ok(FlowKey {
        src,
        dst: unsafe { (*ip).dst },
        src_port_be,
        dst_port_be,
        protocol,
        family: FAMILY_IPV6,
        _pad: [0; 2],
    })
}

/// Checks that an error quoting a packet from `source` is addressed to `source`. Compared
/// as two words: comparing arrays would call `bcmp`.
#[inline(always)]
fn addressed_to_source(source: [u8; 16], to: [u8; 16]) -> Result<(), Reason> {
    if u128::from_ne_bytes(source) != u128::from_ne_bytes(to) {
        return Err(Reason::PassIcmpBadQuote);
    }
    Ok(())
}

/// Offset of the quoted packet, if the ICMP message at `l4` is an error `is_error` accepts.
#[inline(always)]
fn error_quote(
    ctx: &XdpContext,
    l4: usize,
    is_error: impl Fn(u8) -> bool,
) -> Result<usize, Reason> {
    let icmp: *mut IcmpHeader = header(ctx, l4).ok_or(Reason::PassTruncated)?;
    if !is_error(unsafe { (*icmp).kind }) {
        return Err(Reason::PassNotTcpUdp);
    }
    Ok(l4 + core::mem::size_of::<IcmpHeader>())
}

/// The ports of a quoted TCP or UDP header at `l4`: its first 8 bytes must be in the quote.
#[inline(always)]
fn quoted_ports(
    ctx: &XdpContext,
    l4: usize,
    protocol: u8,
    datagram: Datagram,
) -> Result<(u16, u16), Reason> {
    if transport_header_len(protocol).is_none() || l4 + 8 > datagram.end {
        return Err(Reason::PassIcmpBadQuote);
    }
    let ports: *mut Ports = header(ctx, l4).ok_or(Reason::PassIcmpBadQuote)?;
    Ok(unsafe { ((*ports).src_be, (*ports).dst_be) })
}
