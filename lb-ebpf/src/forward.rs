//! Sending the packet to its real. Direct routing (LVS-DR): the IP packet is left exactly as
//! the client sent it; only the Ethernet addresses change, so the real, which holds the VIP
//! on a loopback, answers the client directly.

use aya_ebpf::programs::XdpContext;
use lb_common::{Real, Reason};

use crate::{
    Verdict,
    maps::INTERFACES,
    parse::{EthHeader, header},
};

#[inline(always)]
pub fn direct_route(ctx: &XdpContext, real: &Real) -> Verdict {
    let Some(interface) = (unsafe { INTERFACES.get(&real.ifindex) }) else {
        return Verdict::Drop(Reason::DropNoInterface);
    };
    let Some(eth) = header::<EthHeader>(ctx, 0) else {
        return Verdict::Pass(Reason::PassTruncated);
    };
    unsafe {
        (*eth).dst = real.mac;
        (*eth).src = interface.mac;
    }
    let ingress_ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    if real.ifindex == ingress_ifindex {
        Verdict::Tx
    } else {
        Verdict::Redirect {
            ifindex: real.ifindex,
        }
    }
}
