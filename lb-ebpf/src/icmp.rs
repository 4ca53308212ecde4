//! ICMP errors about VIP flows go to the real that owns the flow.
//!
//! In LVS-DR the reals answer clients with the VIP as source, so a router that cannot pass a
//! real's reply (fragmentation needed, packet too big, TTL exceeded) sends its error to the
//! VIP, which is routed to the balancer. The balancer's kernel holds no socket for the flow;
//! the real does. The error quotes the reply; turned around, that is a flow the table knows,
//! and the error is sent to that flow's real, untouched, like the flow's own packets. That is
//! what makes path-MTU discovery work through the balancer.
//!
//! An error quoting a client's packet (VIP as destination) is addressed to the client, not to
//! the VIP: it passes (`PassNoService`), so that a balancer on the client's path lets it reach
//! the client. An error about a VIP flow the table does not hold passes (`PassIcmpNoFlow`):
//! no real is known to want it, and a new flow is never made for an error.

use lb_common::{FlowKey, Reason};

use crate::{
    Forwarded, Verdict, conntrack, lookup,
    maps::FLOWS,
    select::{self, Target},
};

/// The real of the flow that `quoted` (the packet an ICMP error quotes) belongs to.
#[inline(always)]
pub fn place(quoted: &FlowKey) -> Result<(Target, Forwarded), Verdict> {
    // The quote is a real's reply, from the VIP: the flow is its reverse.
    let flow = FlowKey {
        src: quoted.dst,
        dst: quoted.src,
        src_port_be: quoted.dst_port_be,
        dst_port_be: quoted.src_port_be,
        ..*quoted
    };
    let service = lookup::service(&flow).ok_or(Verdict::Pass(Reason::PassNoService))?;
    let known = unsafe { FLOWS.get(&flow) }
        .copied()
        .ok_or(Verdict::Pass(Reason::PassIcmpNoFlow))?;
    if known.service_id != service.id || !conntrack::is_alive(&known, conntrack::now_ns()) {
        return Err(Verdict::Pass(Reason::PassIcmpNoFlow));
    }
    let real = select::available_real(known.real_id, known.service_id)
        .ok_or(Verdict::Pass(Reason::PassIcmpNoFlow))?;
    let target = Target {
        local_port_be: known.local_port_be,
        local_source: known.local_source,
        ..Target::placed(known.real_id, real)
    };
    let forwarded = Forwarded {
        service_id: known.service_id,
        real_id: known.real_id,
        new_flow: false,
        reason: Reason::ForwardedIcmpError,
    };
    Ok((target, forwarded))
}
