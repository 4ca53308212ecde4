//! Fragments: every fragment of a datagram to a VIP goes to one real, so that the real can
//! reassemble it.
//!
//! Only the first fragment carries the ports, so only it can be placed by its flow. The
//! first fragment of a datagram (or whichever fragment comes first) records the datagram's
//! real in `MAP_FRAGMENTS`, keyed by addresses, protocol and IP id; every other fragment
//! looks it up there.
//!
//! A non-first fragment that arrives before its first fragment cannot know its flow. It goes
//! where a hash of (source, destination, protocol) points in the schedule of the VIP's
//! fragment service (its service with the lowest port, see `MAP_FRAGMENT_SERVICES`), and
//! records that: the datagram's later fragments follow it, and so does the first fragment when
//! it comes, so the datagram is still reassembled whole, on that real. Later fragments racing
//! each other on two CPUs hash alike, so they agree even then; a first fragment racing a later
//! one on another CPU could part from it, but NICs hash fragments by addresses alone, so all
//! fragments of a datagram reach one queue and one CPU.

use lb_common::{FRAGMENT_FROM_FIRST, FlowKey, FragmentKey, FragmentOwner, Reason};

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
    let first = packet.kind == Kind::FirstFragment;
    // Copied at once: an LRU element may be recycled while we hold a pointer to it.
    if let Some(owner) = unsafe { FRAGMENTS.get(&key) }.copied() {
        // A first fragment follows only an entry a later fragment wrote: one written by a
        // first fragment belongs to an earlier datagram that used the same id.
        if (!first || owner.flags & FRAGMENT_FROM_FIRST == 0)
            && let Some(real) = select::available_real(owner.real_id, owner.service_id)
        {
            let target = Target {
                real_id: owner.real_id,
                real,
                new_flow: false,
            };
            return Ok(counted(target, owner.service_id, Reason::ForwardedFragment));
        }
    }

    let (target, service_id, reason) = if first {
        let service = lookup::service(flow).ok_or(Verdict::Pass(Reason::PassNoService))?;
        let target = select::real(flow, &service)?;
        (target, service.id, Reason::ForwardedFragment)
    } else {
        let service = lookup::fragment_service(flow).ok_or(Verdict::Pass(Reason::PassNoService))?;
        let real_id = select::hashed(&service, datagram_hash(flow))
            .ok_or(Verdict::Drop(Reason::DropNoReal))?;
        let real =
            select::available_real(real_id, service.id).ok_or(Verdict::Drop(Reason::DropNoReal))?;
        let target = Target {
            real_id,
            real,
            new_flow: false,
        };
        (target, service.id, Reason::ForwardedFragmentUnmatched)
    };
    let owner = FragmentOwner {
        real_id: target.real_id,
        service_id,
        flags: if first { FRAGMENT_FROM_FIRST } else { 0 },
        _pad: 0,
    };
    // A full LRU evicts its oldest datagram; insertion cannot fail for lack of room.
    let _ = FRAGMENTS.insert(&key, &owner, 0);
    Ok(counted(target, service_id, reason))
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
