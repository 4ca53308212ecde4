//! Direct routing (LVS-DR): the IP packet is left exactly as the client sent it; only the
//! Ethernet header changes, so the real, which holds the VIP on a loopback, answers the client
//! directly. NAT and full NAT leave through here too, once they have rewritten the packet.
//!
//! The Ethernet header is rewritten for the real's own L2 interface: its MACs, and its VLAN
//! tag. A real on the untagged subnet of the interface the program runs on gets an untagged
//! frame, whatever tag the client's frame came with; a real on a VLAN interface stacked on it
//! gets that VLAN's tag (added, or replacing the client's VLAN id, keeping its priority bits).

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{Interface, Real, Reason, VLAN_VID_MASK};

use super::{interface, leave, write_macs};
use crate::{
    Forwarded, Verdict,
    parse::{EthHeader, TAGGED, VLAN_HEADER_LEN, VlanEthHeader, header},
};

#[inline(always)]
pub fn direct_route(ctx: &XdpContext, vlan: u32, real: &Real, forwarded: Forwarded) -> Verdict {
    let interface = match interface(real.ifindex) {
        Ok(interface) => interface,
        Err(verdict) => return verdict,
    };
    send(ctx, vlan, &real.mac, &interface, forwarded)
}

/// The frame (tagged as `vlan` says) sent to `mac` through `interface`: retagged for it, its
/// MACs rewritten.
#[inline(always)]
pub fn send(
    ctx: &XdpContext,
    vlan: u32,
    mac: &[u8; 6],
    interface: &Interface,
    forwarded: Forwarded,
) -> Verdict {
    let eth = match retag(ctx, vlan, interface) {
        Ok(eth) => eth,
        Err(verdict) => return verdict,
    };
    write_macs(eth.cast(), mac, &interface.mac);
    leave(ctx, interface.egress_ifindex, forwarded)
}

/// Gives the frame the tag `interface` wants (none, or its VLAN) and returns its Ethernet
/// header, whose MACs the caller then writes (so moving them is never needed).
#[inline(always)]
fn retag(ctx: &XdpContext, vlan: u32, interface: &Interface) -> Result<*mut EthHeader, Verdict> {
    let truncated = Verdict::Pass(Reason::PassTruncated);
    let wanted = interface.vlan_tci_be != 0;
    match (vlan & TAGGED != 0, wanted) {
        (false, false) => header::<EthHeader>(ctx, 0).ok_or(truncated),
        (true, true) => {
            let tci_be = vlan as u16;
            let tagged: *mut VlanEthHeader = header(ctx, 0).ok_or(truncated)?;
            // The client's priority bits stay; the VLAN id becomes the real's.
            let vid_mask_be = VLAN_VID_MASK.to_be();
            let tci = (tci_be & !vid_mask_be) | (interface.vlan_tci_be & vid_mask_be);
            unsafe {
                (*tagged).tpid_be = interface.vlan_proto_be;
                (*tagged).tci_be = tci;
            }
            Ok(tagged.cast())
        }
        (true, false) => {
            // Drop the 4 tag bytes from the front: the MACs are rewritten anyway, and the
            // inner EtherType already sits where an untagged header keeps it.
            if unsafe { bpf_xdp_adjust_head(ctx.ctx, VLAN_HEADER_LEN as i32) } != 0 {
                return Err(Verdict::Drop(Reason::DropVlanRewrite));
            }
            header::<EthHeader>(ctx, 0).ok_or(truncated)
        }
        (false, true) => {
            if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(VLAN_HEADER_LEN as i32)) } != 0 {
                return Err(Verdict::Drop(Reason::DropVlanRewrite));
            }
            // The old EtherType is now where a tagged header keeps the inner one.
            let tagged: *mut VlanEthHeader = header(ctx, 0).ok_or(truncated)?;
            unsafe {
                (*tagged).tpid_be = interface.vlan_proto_be;
                (*tagged).tci_be = interface.vlan_tci_be;
            }
            Ok(tagged.cast())
        }
    }
}
