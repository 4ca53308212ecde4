//! IPv4: header checks, fragments, and the dispatch to TCP/UDP or ICMP errors.

use aya_ebpf::programs::XdpContext;
use lb_common::{FAMILY_IPV4, FlowKey, Reason};

use super::{Datagram, Kind, Packet, header, icmp, ipv4_key_bytes, ports_at, transport_header_len};

const PROTO_ICMP: u8 = 1;
/// `frag_off` bits: more fragments follow, and the fragment's offset in 8-byte units.
const MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;
const FRAGMENT_BITS: u16 = MORE_FRAGMENTS | FRAGMENT_OFFSET_MASK;

#[repr(C)]
pub struct Ipv4Header {
    pub version_ihl: u8,
    _tos: u8,
    pub total_len_be: u16,
    pub id_be: u16,
    pub frag_off_be: u16,
    _ttl: u8,
    pub protocol: u8,
    _check: u16,
    /// The address's four bytes, as one load (see `ipv4_key_bytes`).
    pub src: u32,
    pub dst: u32,
}

/// The header's length in bytes, if it is an IPv4 header of a valid length.
#[inline(always)]
pub fn header_len(ip: *const Ipv4Header) -> Option<usize> {
    let version_ihl = unsafe { (*ip).version_ihl };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    (version_ihl >> 4 == 4 && header_len >= core::mem::size_of::<Ipv4Header>())
        .then_some(header_len)
}

/// Whether a packet is a fragment, and whether it is the first one (the one with ports).
#[inline(always)]
pub fn fragment_kind(frag_off_be: u16) -> Kind {
    let frag_off = u16::from_be(frag_off_be);
    if frag_off & FRAGMENT_OFFSET_MASK != 0 {
        Kind::LaterFragment
    } else if frag_off & MORE_FRAGMENTS != 0 {
        Kind::FirstFragment
    } else {
        Kind::Whole
    }
}

/// The datagram at `l3`; `vlan` is the frame's tag word (see [`Packet::vlan`]). The packet
/// is built in one piece at the end: building it early and filling it in would copy it
/// through the stack on every packet.
#[inline(always)]
pub fn parse(ctx: &XdpContext, l3: usize, vlan: u32) -> Result<Packet, Reason> {
    let ip: *mut Ipv4Header = header(ctx, l3).ok_or(Reason::PassTruncated)?;
    let header_len = header_len(ip).ok_or(Reason::PassMalformed)?;
    let total_len = u16::from_be(unsafe { (*ip).total_len_be }) as usize;
    let datagram = Datagram::within_frame(ctx, l3, total_len)?;
    if total_len < header_len {
        return Err(Reason::PassTruncated);
    }
    let protocol = unsafe { (*ip).protocol };
    let l4 = l3 + header_len;
    let frag_off_be = unsafe { (*ip).frag_off_be };
    // Whole packets (nearly all) take one test here; fragments are sorted out apart.
    let (kind, fragment_id_be) = if u16::from_be(frag_off_be) & FRAGMENT_BITS == 0 {
        (Kind::Whole, 0)
    } else {
        (
            fragment_kind(frag_off_be),
            u32::from(unsafe { (*ip).id_be }),
        )
    };
    let (src_port_be, dst_port_be, l4_offset) = match transport_header_len(protocol) {
        // A later fragment has no ports: its datagram is found by its id.
        Some(_) if kind == Kind::LaterFragment => (0, 0, 0),
        Some(l4_len) => {
            if total_len < header_len + l4_len {
                return Err(Reason::PassTruncated);
            }
            let (src, dst) = ports_at(ctx, l4, l4_len)?;
            (src, dst, l4 as u16)
        }
        None if protocol == PROTO_ICMP && kind == Kind::Whole => {
            return Ok(Packet {
                flow: icmp::quoted_by_icmpv4(
                    ctx,
                    l4,
                    datagram,
                    ipv4_key_bytes(unsafe { (*ip).dst }),
                )?,
                frame_len: datagram.frame_len,
                vlan,
                kind: Kind::IcmpError,
                fragment_id_be: 0,
                l4: l4 as u16,
            });
        }
        None => return Err(Reason::PassNotTcpUdp),
    };
    Ok(Packet {
        flow: FlowKey {
            src: ipv4_key_bytes(unsafe { (*ip).src }),
            dst: ipv4_key_bytes(unsafe { (*ip).dst }),
            src_port_be,
            dst_port_be,
            protocol,
            family: FAMILY_IPV4,
            _pad: [0; 2],
        },
        frame_len: datagram.frame_len,
        vlan,
        kind,
        fragment_id_be,
        l4: l4_offset,
    })
}
