//! Which real gets the packet: the flow table first, the scheduler for new flows.
//!
//! A known flow keeps its real while it lives (`conntrack`); a new flow gets the real its
//! service's scheduler gives (`schedulers`), and is recorded and counted.

use core::sync::atomic::{Ordering, compiler_fence};

use aya_ebpf::{bindings::BPF_NOEXIST, programs::XdpContext};
use lb_common::{
    FORWARD_FULLNAT, FORWARD_NAT, Flow, FlowKey, PROTO_TCP, REAL_AVAILABLE, Real, RealSlots,
    Reason, Service,
    conntrack::{STATE_ESTABLISHED, STATE_SYN_RECV, STATE_UDP, next_tcp_state, opens_connection},
};

use crate::{
    Verdict,
    conntrack::{self, Known},
    forward::nat,
    maps::{FLOWS, REALS},
    schedulers,
};

/// `-EEXIST`: an insert with `BPF_NOEXIST` found the key there (another CPU recorded the same
/// new flow first, or a reply 4-tuple is held).
pub const EEXIST: i32 = -17;

pub struct Target {
    pub real_id: u32,
    pub real: Real,
    pub new_flow: bool,
    /// A TCP segment without SYN that had no flow, placed by a stable answer
    /// (`Reason::ForwardedMidStream`).
    pub mid_stream: bool,
    /// Full NAT: the flow's local port (network order); 0 otherwise, and for packets placed
    /// without their flow (later fragments, which have no ports to rewrite).
    pub local_port_be: u16,
    /// Full NAT: which of the real's local addresses the flow comes from (meaningful with a
    /// local port).
    pub local_source: u8,
}

impl Target {
    /// A packet placed on a real without its flow's details (fragments, ICMP errors).
    #[inline(always)]
    pub fn placed(real_id: u32, real: Real) -> Target {
        Target {
            real_id,
            real,
            new_flow: false,
            mid_stream: false,
            local_port_be: 0,
            local_source: 0,
        }
    }
}

/// The flow's real if it is alive and its real may still take it (its state moved on by the
/// packet's `tcp_flags`); otherwise a new flow, recorded, on `preferred` (a real id of this
/// service; 0 for none) if it is available, else on the real the scheduler gives next.
///
/// New TCP flows start only with a SYN. A TCP segment without SYN and without a live flow is
/// placed only where an answer that does not change between packets points; without one it
/// passes (`PassTcpNoFlow`).
///
/// A new flow to a NAT or full-NAT real first claims its reply entry (`nat::claim`), from
/// the frame's Ethernet header (`ctx`) and VLAN tag (`vlan`, as `Packet::vlan`).
#[inline(always)]
pub fn real(
    ctx: &XdpContext,
    vlan: u32,
    flow: &FlowKey,
    service: &Service,
    preferred: u32,
    tcp_flags: u8,
) -> Result<Target, Verdict> {
    let now = conntrack::now_ns();
    // Copied out at once: an element can be deleted and reused for another flow while we
    // hold a pointer to it, so nothing is ever written through that pointer.
    if let Some(known) = unsafe { FLOWS.get(flow) }.copied() {
        let real = available_real(known.real_id, service.id);
        // A flow whose real was removed or failed is forgotten, like LVS with
        // expire_nodest_conn; its packet is then handled as one without a flow.
        if let (Known::Lives, Some(real)) = (
            conntrack::follow(flow, &known, tcp_flags, now, real.as_ref()),
            real,
        ) {
            schedulers::flow_seen(flow, service, known.real_id, now);
            return Ok(Target {
                real_id: known.real_id,
                real,
                new_flow: false,
                mid_stream: false,
                local_port_be: known.local_port_be,
                local_source: known.local_source,
            });
        }
    }

    let tcp = flow.protocol == PROTO_TCP;
    let mid_stream = tcp && !opens_connection(tcp_flags);
    let (mut real_id, mut real) = if mid_stream {
        let real_id =
            schedulers::stable(flow, service, now).ok_or(Verdict::Pass(Reason::PassTcpNoFlow))?;
        let real =
            available_real(real_id, service.id).ok_or(Verdict::Pass(Reason::PassTcpNoFlow))?;
        (real_id, real)
    } else {
        match available_real(preferred, service.id) {
            Some(real) => (preferred, real),
            None => {
                let real_id = schedulers::new_flow(flow, service, now)
                    .ok_or(Verdict::Drop(Reason::DropNoReal))?;
                let real =
                    available_real(real_id, service.id).ok_or(Verdict::Drop(Reason::DropNoReal))?;
                (real_id, real)
            }
        }
    };
    let state = if !tcp {
        STATE_UDP
    } else if mid_stream {
        next_tcp_state(STATE_ESTABLISHED, tcp_flags)
    } else {
        STATE_SYN_RECV
    };
    let translated = real.forward == FORWARD_NAT || real.forward == FORWARD_FULLNAT;
    let (mut local_port_be, mut local_source) = if translated {
        nat::claim(ctx, vlan, flow, service.id, real_id, &real)?
    } else {
        (0, 0)
    };
    let entry = Flow {
        real_id,
        service_id: service.id,
        last_seen_ns: now,
        state: u32::from(state),
        local_port_be,
        local_source,
        _pad: 0,
        reserved: 0,
    };
    match FLOWS.insert(flow, &entry, BPF_NOEXIST as u64) {
        Ok(()) => conntrack::count(real_id, state, 1),
        // Another CPU recorded this flow a moment ago (and counted it): this packet goes
        // where that flow says. A reply entry this CPU claimed for something else is given
        // back; one the same as the recorded flow's is that flow's, and stays.
        Err(error) if error == EEXIST => {
            if let Some(recorded) = unsafe { FLOWS.get(flow) }.copied() {
                let same = recorded.real_id == real_id
                    && recorded.local_port_be == local_port_be
                    && recorded.local_source == local_source;
                if !same {
                    if translated {
                        nat::release_claim();
                    }
                    real = available_real(recorded.real_id, service.id)
                        .ok_or(Verdict::Drop(Reason::DropNoReal))?;
                    real_id = recorded.real_id;
                    local_port_be = recorded.local_port_be;
                    local_source = recorded.local_source;
                }
            }
        }
        // The table is full of live flows: refuse the flow rather than forward it untracked.
        Err(_) => {
            if translated {
                nat::release_claim();
            }
            return Err(Verdict::Drop(Reason::DropFlowTableFull));
        }
    }
    Ok(Target {
        real_id,
        real,
        new_flow: true,
        mid_stream,
        local_port_be,
        local_source,
    })
}

/// Whether the flow table holds this flow, alive, with a real of `service` that may take it.
#[inline(always)]
pub fn is_known(flow: &FlowKey, service: &Service) -> bool {
    match unsafe { FLOWS.get(flow) }.copied() {
        Some(known) => {
            conntrack::is_alive(&known, conntrack::now_ns())
                && available_real(known.real_id, service.id).is_some()
        }
        None => false,
    }
}

/// The real, if it may take packets of this service. The service check matters for flows:
/// a real id retired by one service may be given to another, and an old flow must then be
/// rescheduled, not follow the id.
#[inline(always)]
pub fn available_real(real_id: u32, service_id: u32) -> Option<Real> {
    if real_id == 0 {
        return None;
    }
    let slots = REALS.get_ptr(real_id)?;
    // One read of the generation (volatile, so the compiler reads it exactly once), then only
    // the copy it names (see `RealSlots`). The fence keeps the compiler from reading the copy
    // first (it costs no instruction); the CPU cannot, as its address depends on the
    // generation. A plain read lets the compiler load just the fields used.
    let generation = unsafe { core::ptr::read_volatile(&(*slots).generation) };
    compiler_fence(Ordering::Acquire);
    let real = unsafe { (*slots).slots[RealSlots::current_slot(generation)] };
    (real.flags & REAL_AVAILABLE != 0 && real.service_id == service_id).then_some(real)
}
