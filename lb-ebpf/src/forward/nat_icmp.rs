//! ICMP errors about NAT and full-NAT flows, translated for their real.
//!
//! A router on the client's side that cannot pass a real's reply (fragmentation needed,
//! packet too big, time exceeded) sends its error to the reply's source, the VIP, quoting the
//! reply as the client would have got it: VIP:port → client:port. The balancer's `icmp` stage
//! finds the flow; here the error is made what the real's stack can match: addressed to the
//! real, quoting real:port → client:port (full NAT: → local address:port), as the real sent
//! it. Without this, path-MTU discovery from a NAT real would black-hole.
//!
//! Every rewrite updates the checksums that cover it: the outer IPv4 header's (its
//! destination), the quoted IPv4 header's (its addresses), the quoted TCP/UDP checksum when
//! the quote holds it (pseudo-header and ports; a UDP checksum of 0 over IPv4 stays 0), and
//! the ICMP checksum, which covers the whole quote, checksum fields included (and, for
//! ICMPv6, the outer destination through its pseudo-header).

use aya_ebpf::programs::XdpContext;
use lb_common::{FAMILY_IPV4, FORWARD_FULLNAT, FlowKey, Handoff, Reason};

use super::{
    checksum, ipv4_word,
    nat::{real_port_be, recorded_source},
    ports_word, store_address,
    tunnel::{IPV6_HEADER_LEN, Ipv4Header, Ipv6Header},
};
use crate::{
    Verdict,
    parse::{ETH_HEADER_LEN, L4_OFFSET_BOUND, TAGGED, VLAN_HEADER_LEN, header},
};

const ICMP_HEADER_LEN: usize = 8;
const ICMP_CHECK_OFFSET: usize = 2;

/// Rewrites the ICMP error in `handoff` (quoting a reply of its flow) for the flow's real.
#[inline(always)]
pub fn to_real(ctx: &XdpContext, handoff: &Handoff) -> Result<(), Verdict> {
    let bad_quote = Verdict::Pass(Reason::PassIcmpBadQuote);
    let real = &handoff.real;
    // The reply as the client saw it, and the client's flow it belongs to.
    let quoted = &handoff.flow;
    let client_flow = FlowKey {
        src: quoted.dst,
        dst: quoted.src,
        src_port_be: quoted.dst_port_be,
        dst_port_be: quoted.src_port_be,
        ..*quoted
    };
    // The reply as the real sent it: from its own address and port, to the client (NAT) or
    // to the flow's local address and port (full NAT).
    let real_port = real_port_be(&client_flow, real);
    let (to, to_port) = if real.forward == FORWARD_FULLNAT {
        if handoff.local_port_be == 0 {
            return Err(bad_quote);
        }
        (
            recorded_source(handoff.real_id, handoff.local_source)?,
            handoff.local_port_be,
        )
    } else {
        (quoted.dst, quoted.dst_port_be)
    };
    let address_delta = checksum::address_delta(&quoted.src, &real.addr)
        + checksum::address_delta(&quoted.dst, &to);
    let ports_delta = checksum::word_delta(
        ports_word(quoted.src_port_be, quoted.dst_port_be),
        ports_word(real_port, to_port),
    );
    // What the ICMP checksum must take in: every change inside the message.
    let mut icmp_delta = address_delta + ports_delta;

    let l3 = ETH_HEADER_LEN
        + if handoff.vlan & TAGGED != 0 {
            VLAN_HEADER_LEN
        } else {
            0
        };
    let icmp_at = usize::from(handoff.l4) & L4_OFFSET_BOUND;
    let quote = icmp_at + ICMP_HEADER_LEN;
    let v4 = quoted.family == FAMILY_IPV4;
    // The error's own end: what follows is link-layer padding, never part of the quote.
    let datagram_end;
    let quoted_l4;
    if v4 {
        let outer: *mut Ipv4Header = header(ctx, l3).ok_or(bad_quote)?;
        let inner: *mut Ipv4Header = header(ctx, quote).ok_or(bad_quote)?;
        unsafe {
            datagram_end = l3 + usize::from(u16::from_be((*outer).total_len_be));
            // The error was addressed to the VIP, the reply's source.
            let real_word = ipv4_word(&real.addr);
            let outer_delta = checksum::word_delta((*outer).dst, real_word);
            (*outer).dst = real_word;
            (*outer).check = checksum::updated((*outer).check, outer_delta);

            quoted_l4 = quote + usize::from((*inner).version_ihl & 0x0f) * 4;
            (*inner).src = real_word;
            (*inner).dst = ipv4_word(&to);
            let old_check = (*inner).check;
            (*inner).check = checksum::updated(old_check, address_delta);
            icmp_delta += checksum::field_delta(old_check, (*inner).check);
        }
    } else {
        let outer: *mut Ipv6Header = header(ctx, l3).ok_or(bad_quote)?;
        let inner: *mut Ipv6Header = header(ctx, quote).ok_or(bad_quote)?;
        unsafe {
            datagram_end =
                l3 + IPV6_HEADER_LEN + usize::from(u16::from_be((*outer).payload_len_be));
            // ICMPv6's pseudo-header holds the outer destination.
            icmp_delta += checksum::address_delta(&quoted.src, &real.addr);
            store_address(&raw mut (*outer).dst, &real.addr);
            quoted_l4 = quote + IPV6_HEADER_LEN;
            store_address(&raw mut (*inner).src, &real.addr);
            store_address(&raw mut (*inner).dst, &to);
        }
    }
    let quoted_l4 = quoted_l4 & L4_OFFSET_BOUND;

    // The quoted ports (the parse checked they are in the quote).
    let ports: *mut u32 = header(ctx, quoted_l4).ok_or(bad_quote)?;
    unsafe { core::ptr::write_unaligned(ports, ports_word(real_port, to_port)) };
    // The quoted transport checksum, if the quote reaches it.
    let check_at = quoted_l4 + checksum::transport_check_offset(quoted.protocol);
    if check_at + 2 <= datagram_end {
        if let Some(check) = header::<u16>(ctx, check_at) {
            unsafe {
                let old = *check;
                let delta = address_delta + ports_delta;
                if let Some(new) =
                    checksum::transport_updated(old, delta, quoted.protocol, quoted.family)
                {
                    *check = new;
                    icmp_delta += checksum::field_delta(old, new);
                }
            }
        }
    }
    let icmp_check: *mut u16 = header(ctx, icmp_at + ICMP_CHECK_OFFSET).ok_or(bad_quote)?;
    unsafe { *icmp_check = checksum::updated(*icmp_check, icmp_delta) };
    Ok(())
}
