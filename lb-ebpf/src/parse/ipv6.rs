//! IPv6: the fixed header, the extension headers that really occur before TCP/UDP
//! (hop-by-hop, routing, destination options, fragment), and the dispatch to TCP/UDP or
//! ICMPv6 errors.
//!
//! A chain longer than [`MAX_EXTENSION_HEADERS`], or with a header the program does not
//! follow (AH, ESP, mobility, …), passes untouched as `PassIpv6Extensions`: never dropped,
//! never forwarded half-parsed.

use aya_ebpf::programs::XdpContext;
use lb_common::{FAMILY_IPV6, FlowKey, Reason};

use super::{Datagram, Kind, Packet, header, icmp, ports_at, transport_header_len};

/// Extension headers followed before giving up. A hop-by-hop, a destination options, a
/// routing and a fragment header, plus a second destination options header, is the longest
/// chain RFC 8200's recommended order produces; one more leaves room for a repeated header.
pub const MAX_EXTENSION_HEADERS: usize = 6;

const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DESTINATION_OPTIONS: u8 = 60;
pub const NEXT_ICMPV6: u8 = 58;
/// The extension headers of IANA's list: the four followed here, then ESP, AH, mobility,
/// HIP, shim6 and the two experimental numbers, which are not.
#[inline(always)]
const fn is_extension_header(next: u8) -> bool {
    matches!(
        next,
        NEXT_HOP_BY_HOP
            | NEXT_ROUTING
            | NEXT_FRAGMENT
            | NEXT_DESTINATION_OPTIONS
            | 50
            | 51
            | 135
            | 139
            | 140
            | 253
            | 254
    )
}

/// `offset_flags` of the fragment header: the offset (in 8-byte units, shifted left by 3)
/// and the more-fragments flag.
const FRAGMENT_OFFSET_MASK: u16 = 0xfff8;
const MORE_FRAGMENTS: u16 = 0x0001;

pub const IPV6_HEADER_LEN: usize = 40;

#[repr(C)]
pub struct Ipv6Header {
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    _hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// The start of hop-by-hop, routing and destination options headers.
#[repr(C)]
struct ExtensionHeader {
    next_header: u8,
    /// In 8-byte units, not counting the first 8 bytes.
    len: u8,
    /// Routing headers: the routing type. Options headers: the first option's type.
    _routing_type: u8,
    /// Routing headers: segments left to visit. Options headers: the first option's length.
    segments_left: u8,
}

#[repr(C)]
struct FragmentHeader {
    next_header: u8,
    _reserved: u8,
    offset_flags: [u8; 2],
    id: [u8; 4],
}

#[inline(always)]
pub fn parse(ctx: &XdpContext, l3: usize, vlan: u32) -> Result<Packet, Reason> {
    let ip: *mut Ipv6Header = header(ctx, l3).ok_or(Reason::PassTruncated)?;
    if unsafe { (*ip).version_class_flow[0] } >> 4 != 6 {
        return Err(Reason::PassMalformed);
    }
    let payload_len = u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize;
    // 0 announces a jumbogram (RFC 2675), which no Ethernet link carries.
    if payload_len == 0 {
        return Err(Reason::PassMalformed);
    }
    let datagram = Datagram::within_frame(ctx, l3, IPV6_HEADER_LEN + payload_len)?;

    let mut next = unsafe { (*ip).next_header };
    let mut offset = l3 + IPV6_HEADER_LEN;
    let mut kind = Kind::Whole;
    let mut fragment_id_be = 0;
    for _ in 0..MAX_EXTENSION_HEADERS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DESTINATION_OPTIONS => {
                let extension: *mut ExtensionHeader =
                    header(ctx, offset).ok_or(Reason::PassTruncated)?;
                // Segments left: the destination is a waypoint, not where the packet ends.
                if next == NEXT_ROUTING && unsafe { (*extension).segments_left } != 0 {
                    return Err(Reason::PassIpv6Extensions);
                }
                next = unsafe { (*extension).next_header };
                offset += (unsafe { (*extension).len } as usize + 1) * 8;
            }
            NEXT_FRAGMENT => {
                let fragment: *mut FragmentHeader =
                    header(ctx, offset).ok_or(Reason::PassTruncated)?;
                next = unsafe { (*fragment).next_header };
                fragment_id_be = u32::from_ne_bytes(unsafe { (*fragment).id });
                offset += core::mem::size_of::<FragmentHeader>();
                let offset_flags = u16::from_be_bytes(unsafe { (*fragment).offset_flags });
                if offset_flags & FRAGMENT_OFFSET_MASK != 0 {
                    // What follows is the middle of the datagram, not a header.
                    kind = Kind::LaterFragment;
                    break;
                }
                // Offset 0 without more fragments is an atomic fragment (RFC 6946): whole.
                if offset_flags & MORE_FRAGMENTS != 0 {
                    // The later fragments name only the header after this one: a first
                    // fragment must name TCP or UDP there too, or its datagram would be
                    // split between a real and the kernel.
                    if is_extension_header(next) {
                        return Err(Reason::PassIpv6Extensions);
                    }
                    kind = Kind::FirstFragment;
                }
            }
            _ => break,
        }
    }
    if offset > datagram.end {
        return Err(Reason::PassTruncated);
    }

    let (src_port_be, dst_port_be, l4_offset) = match transport_header_len(next) {
        // A later fragment has no ports: its datagram is found by its id.
        Some(_) if kind == Kind::LaterFragment => (0, 0, 0),
        Some(l4_len) => {
            if offset + l4_len > datagram.end {
                return Err(Reason::PassTruncated);
            }
            let (src, dst) = ports_at(ctx, offset, l4_len)?;
            (src, dst, offset as u16)
        }
        None if next == NEXT_ICMPV6 && kind == Kind::Whole => {
            return Ok(Packet {
                flow: icmp::quoted_by_icmpv6(ctx, offset, datagram, unsafe { (*ip).dst })?,
                frame_len: datagram.frame_len,
                vlan,
                kind: Kind::IcmpError,
                fragment_id_be: 0,
                l4: offset as u16,
            });
        }
        // For a later fragment, the header its datagram continues with (see the first
        // fragment's check above).
        None if is_extension_header(next) => return Err(Reason::PassIpv6Extensions),
        None => return Err(Reason::PassNotTcpUdp),
    };
    Ok(Packet {
        flow: FlowKey {
            src: unsafe { (*ip).src },
            dst: unsafe { (*ip).dst },
            src_port_be,
            dst_port_be,
            protocol: next,
            family: FAMILY_IPV6,
            _pad: [0; 2],
        },
        frame_len: datagram.frame_len,
        vlan,
        kind,
        fragment_id_be,
        l4: l4_offset,
    })
}
