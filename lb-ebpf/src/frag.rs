//! Fragments: every fragment of a datagram to a VIP goes to one real, so that the real can
//! reassemble it.
//!
//! Only the first fragment carries the ports, so only it can be placed by its flow. Where a
//! datagram goes is recorded in `MAP_FRAGMENTS`, keyed by addresses, protocol and IP id, by
//! whichever of its fragments comes first; the others look it up there. Entries are believed
//! for about 30 s (`FRAGMENT_LIFETIME`), the kernel's reassembly time.
//!
//! - **First fragment first** (the usual case): placed like a whole packet (its flow's real,
//!   or a new flow), and recorded; the later fragments follow. A first fragment for no
//!   service passes, and records that, so its later fragments pass too.
//! - **A later fragment first**: it cannot know its flow. It goes where a hash of (source,
//!   destination, protocol) points in the schedule of the VIP's fragment service (see
//!   `MAP_FRAGMENT_SERVICES`), and records that; the datagram's other later fragments follow.
//!   When the first fragment comes: if its flow is new, it goes there too (and the new flow is
//!   recorded on that real when it is of the same service), so the datagram is reassembled
//!   whole; if its flow is known, the flow keeps its real and the datagram is lost (TCP
//!   retransmits) rather than a connection being sent to a real that does not have it.
//!
//! Later fragments racing each other on two CPUs hash alike, so they agree even then. A first
//! fragment racing a later one on another CPU could part from it; NICs hash fragments by
//! addresses alone, so all fragments of a datagram reach one queue and one CPU.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{
    FRAGMENT_FROM_FIRST, FRAGMENT_LIFETIME, FlowKey, FragmentKey, FragmentOwner, Reason,
    fragment_clock,
};

use crate::{
    Forwarded, Verdict, lookup,
    maps::FRAGMENTS,
    parse::{Kind, Packet},
    select::{self, Target},
};

/// The real this fragment goes to, and what it is counted under.
#[inline(always)]
pub fn place(packet: &Packet) -> Result<(Target, Forwarded), Verdict> {
    let flow = &packet.flow;
    let key = FragmentKey {
        src: flow.src,
        dst: flow.dst,
        id_be: packet.fragment_id_be,
        protocol: flow.protocol,
        family: flow.family,
        _pad: [0; 2],
    };
    let now = fragment_clock(unsafe { bpf_ktime_get_ns() });
    // Copied at once: an LRU element may be recycled while we hold a pointer to it.
    let recorded = unsafe { FRAGMENTS.get(&key) }
        .copied()
        .filter(|owner| now.wrapping_sub(owner.written_at) <= FRAGMENT_LIFETIME);
    if packet.kind == Kind::FirstFragment {
        first_fragment(flow, packet.tcp_flags, &key, recorded, now)
    } else {
        later_fragment(flow, &key, recorded, now)
    }
}

#[inline(always)]
fn first_fragment(
    flow: &FlowKey,
    tcp_flags: u8,
    key: &FragmentKey,
    recorded: Option<FragmentOwner>,
    now: u32,
) -> Result<(Target, Forwarded), Verdict> {
    let Some(service) = lookup::service(flow) else {
        record(key, 0, 0, FRAGMENT_FROM_FIRST, now);
        return Err(Verdict::Pass(Reason::PassNoService));
    };
    // Where the datagram's earlier (later) fragments went, if they came first. An entry a
    // first fragment wrote is an earlier datagram's that used the same id.
    let earlier = recorded.filter(|owner| owner.flags & FRAGMENT_FROM_FIRST == 0);
    let (target, service_id) = match earlier {
        Some(owner) if owner.service_id == service.id => (
            select::real(flow, &service, owner.real_id, tcp_flags)?,
            service.id,
        ),
        Some(owner) if !select::is_known(flow, &service) => {
            match select::available_real(owner.real_id, owner.service_id) {
                // A real of the VIP's fragment service, not of this flow's: the datagram
                // goes there whole, and the flow is scheduled by its next packet.
                Some(real) => (
                    Target {
                        real_id: owner.real_id,
                        real,
                        new_flow: false,
                        mid_stream: false,
                    },
                    owner.service_id,
                ),
                None => (select::real(flow, &service, 0, tcp_flags)?, service.id),
            }
        }
        _ => (select::real(flow, &service, 0, tcp_flags)?, service.id),
    };
    record(key, target.real_id, service_id, FRAGMENT_FROM_FIRST, now);
    Ok(counted(target, service_id, Reason::ForwardedFragment))
}

#[inline(always)]
fn later_fragment(
    flow: &FlowKey,
    key: &FragmentKey,
    recorded: Option<FragmentOwner>,
    now: u32,
) -> Result<(Target, Forwarded), Verdict> {
    if let Some(owner) = recorded {
        if owner.real_id == 0 {
            return Err(Verdict::Pass(Reason::PassNoService));
        }
        if let Some(real) = select::available_real(owner.real_id, owner.service_id) {
            let target = Target {
                real_id: owner.real_id,
                real,
                new_flow: false,
                mid_stream: false,
            };
            return Ok(counted(target, owner.service_id, Reason::ForwardedFragment));
        }
        // Its real has gone since: placed anew, like a flow whose real is gone.
    }
    let service = lookup::fragment_service(flow).ok_or(Verdict::Pass(Reason::PassNoService))?;
    let real_id =
        select::hashed(&service, datagram_hash(flow)).ok_or(Verdict::Drop(Reason::DropNoReal))?;
    let real =
        select::available_real(real_id, service.id).ok_or(Verdict::Drop(Reason::DropNoReal))?;
    record(key, real_id, service.id, 0, now);
    let target = Target {
        real_id,
        real,
        new_flow: false,
        mid_stream: false,
    };
    Ok(counted(
        target,
        service.id,
        Reason::ForwardedFragmentUnmatched,
    ))
}

#[inline(always)]
fn record(key: &FragmentKey, real_id: u32, service_id: u32, flags: u32, now: u32) {
    let owner = FragmentOwner {
        real_id,
        service_id,
        flags,
        written_at: now,
    };
    // A full LRU evicts its oldest datagram; insertion cannot fail for lack of room.
    let _ = FRAGMENTS.insert(key, &owner, 0);
}

#[inline(always)]
fn counted(target: Target, service_id: u32, reason: Reason) -> (Target, Forwarded) {
    let forwarded = Forwarded {
        service_id,
        real_id: target.real_id,
        new_flow: target.new_flow,
        reason,
    };
    (target, forwarded)
}

/// A hash of what every fragment of a datagram carries besides its id: source, destination
/// and protocol (murmur3's mixing, one 32-bit word at a time).
#[inline(always)]
fn datagram_hash(flow: &FlowKey) -> u32 {
    let mut hash = u32::from(flow.protocol) ^ (u32::from(flow.family) << 8);
    let mut word = 0;
    while word < 4 {
        hash = mix(hash, word_at(&flow.src, word));
        hash = mix(hash, word_at(&flow.dst, word));
        word += 1;
    }
    finalize(hash)
}

#[inline(always)]
fn word_at(address: &[u8; 16], word: usize) -> u32 {
    let at = word * 4;
    u32::from_le_bytes([
        address[at],
        address[at + 1],
        address[at + 2],
        address[at + 3],
    ])
}

#[inline(always)]
fn mix(hash: u32, word: u32) -> u32 {
    let word = word
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (hash ^ word)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finalize(mut hash: u32) -> u32 {
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}
