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
//! - **A NAT flow's reply**, fragmented: its first fragment finds the reply entry and is
//!   translated back like a whole reply; the record keeps its ports, so the later fragments
//!   find the entry too. A later fragment of a reply that comes before the first passes (its
//!   ports are unknown), and so its datagram is lost.
//!
//! Later fragments racing each other on two CPUs hash alike, so they agree even then. A first
//! fragment racing a later one on another CPU could part from it; NICs hash fragments by
//! addresses alone, so all fragments of a datagram reach one queue and one CPU.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    FORWARD_FULLNAT, FORWARD_NAT, FRAGMENT_FROM_FIRST, FRAGMENT_LIFETIME, FRAGMENT_REPLY,
    FragmentKey, FragmentOwner, Reason, fragment_clock, hash,
};

use crate::{
    Forwarded, Verdict, conntrack, forward, lookup,
    maps::FRAGMENTS,
    parse::{Kind, Packet},
    schedulers,
    select::{self, Target},
};

/// The real this fragment goes to (`tcp_flags`: a TCP first fragment's flags), and what it is
/// counted under.
#[inline(always)]
pub fn place(
    ctx: &XdpContext,
    packet: &Packet,
    tcp_flags: u8,
) -> Result<(Target, Forwarded), Verdict> {
    let flow = &packet.flow;
    let key = FragmentKey {
        src: flow.src,
        dst: flow.dst,
        id_be: packet.fragment_id_be,
        protocol: flow.protocol,
        family: flow.family,
        _pad: [0; 2],
    };
    let now = fragment_clock(conntrack::now_ns());
    // Copied at once: an LRU element may be recycled while we hold a pointer to it.
    let recorded = unsafe { FRAGMENTS.get(&key) }
        .copied()
        .filter(|owner| now.wrapping_sub(owner.written_at) <= FRAGMENT_LIFETIME);
    if packet.kind == Kind::FirstFragment {
        first_fragment(ctx, packet, tcp_flags, &key, recorded, now)
    } else {
        later_fragment(ctx, packet, &key, recorded, now)
    }
}

#[inline(always)]
fn first_fragment(
    ctx: &XdpContext,
    packet: &Packet,
    tcp_flags: u8,
    key: &FragmentKey,
    recorded: Option<FragmentOwner>,
    now: u32,
) -> Result<(Target, Forwarded), Verdict> {
    let flow = &packet.flow;
    let vlan = packet.vlan;
    let Some(service) = lookup::service(flow) else {
        // A NAT flow's reply, fragmented: translated back, and its later fragments after it.
        if forward::nat::is_reply(flow) {
            let ports = forward::ports_of(flow);
            record_ports(key, FRAGMENT_FROM_FIRST | FRAGMENT_REPLY, ports, now);
            return Err(forward::hand_off_reply(ctx, packet, ports));
        }
        record(key, 0, 0, FRAGMENT_FROM_FIRST, now);
        return Err(Verdict::Pass(Reason::PassNoService));
    };
    // Where the datagram's earlier (later) fragments went, if they came first. An entry a
    // first fragment wrote is an earlier datagram's that used the same id.
    // The flags are made a value defined without an entry too, and read back volatile: left
    // to itself, the compiler tested the bit of a register that held a pointer when there
    // was no entry (and'ing the answer with "there is an entry"), which the verifier
    // refuses.
    let flags = match recorded {
        Some(owner) => owner.flags,
        None => FRAGMENT_FROM_FIRST,
    };
    // SAFETY: a local; the volatile read makes the compiler materialise the value.
    let flags = unsafe { core::ptr::read_volatile(&flags) };
    let earlier = recorded.filter(|_| flags & FRAGMENT_FROM_FIRST == 0);
    // A real of the VIP's fragment service, not of this flow's, when the earlier fragments
    // went there and the flow is new: the datagram goes there whole, and the flow is
    // scheduled by its next packet.
    // Not for a NAT or full-NAT real: its packets need their flow's translation, which only a
    // recorded flow gives.
    let elsewhere = match earlier {
        Some(owner) if owner.service_id != service.id && !select::is_known(flow, &service) => {
            select::available_real(owner.real_id, owner.service_id)
                .filter(|real| real.forward != FORWARD_NAT && real.forward != FORWARD_FULLNAT)
                .map(|real| (owner, real))
        }
        _ => None,
    };
    // One call of `select::real` (it is inlined, schedulers and all).
    let (target, service_id) = match elsewhere {
        Some((owner, real)) => (Target::placed(owner.real_id, real), owner.service_id),
        None => {
            let preferred = match earlier {
                Some(owner) if owner.service_id == service.id => owner.real_id,
                _ => 0,
            };
            (
                select::real(ctx, vlan, flow, &service, preferred, tcp_flags)?,
                service.id,
            )
        }
    };
    record(key, target.real_id, service_id, FRAGMENT_FROM_FIRST, now);
    Ok(counted(target, service_id, Reason::ForwardedFragment))
}

#[inline(always)]
fn later_fragment(
    ctx: &XdpContext,
    packet: &Packet,
    key: &FragmentKey,
    recorded: Option<FragmentOwner>,
    now: u32,
) -> Result<(Target, Forwarded), Verdict> {
    let flow = &packet.flow;
    if let Some(owner) = recorded {
        if owner.flags & FRAGMENT_REPLY != 0 {
            // The reply entry's key: these addresses, the first fragment's ports.
            return Err(forward::hand_off_reply(ctx, packet, owner.ports));
        }
        if owner.real_id == 0 {
            return Err(Verdict::Pass(Reason::PassNoService));
        }
        if let Some(real) = select::available_real(owner.real_id, owner.service_id) {
            let target = Target::placed(owner.real_id, real);
            return Ok(counted(target, owner.service_id, Reason::ForwardedFragment));
        }
        // Its real has gone since: placed anew, like a flow whose real is gone.
    }
    let service = lookup::fragment_service(flow).ok_or(Verdict::Pass(Reason::PassNoService))?;
    let real_id = schedulers::hashed(&service, hash::datagram(flow))
        .ok_or(Verdict::Drop(Reason::DropNoReal))?;
    let real =
        select::available_real(real_id, service.id).ok_or(Verdict::Drop(Reason::DropNoReal))?;
    record(key, real_id, service.id, 0, now);
    let target = Target::placed(real_id, real);
    Ok(counted(
        target,
        service.id,
        Reason::ForwardedFragmentUnmatched,
    ))
}

/// Records a NAT reply datagram (`FRAGMENT_REPLY`) with its first fragment's ports.
#[inline(always)]
fn record_ports(key: &FragmentKey, flags: u32, ports: u32, now: u32) {
    let owner = FragmentOwner {
        real_id: 0,
        service_id: 0,
        flags,
        written_at: now,
        ports,
    };
    let _ = FRAGMENTS.insert(key, &owner, 0);
}

#[inline(always)]
fn record(key: &FragmentKey, real_id: u32, service_id: u32, flags: u32, now: u32) {
    let owner = FragmentOwner {
        real_id,
        service_id,
        flags,
        written_at: now,
        ports: 0,
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
