//! Why the XDP program returned what it returned.

/// A verdict reason: the index of its counter in `MAP_REASON_STATS`.
///
/// The numbers are stable: a number is never reused for another meaning, since a daemon may
/// read counters kept by a program of another version. New reasons take new numbers.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Scheduled or known flow, sent to its real with `XDP_TX` (real on the ingress interface).
    ForwardedTx = 1,
    /// Same, sent with `XDP_REDIRECT` (real behind another interface).
    ForwardedRedirect = 2,
    /// Not IPv4 or IPv6 (ARP, LLDP, …).
    PassNotIp = 3,
    /// Retired: IPv6 is balanced since IPv6 services exist; no program counts this any more.
    PassIpv6 = 4,
    /// More than one VLAN tag.
    PassStackedVlan = 5,
    /// A header runs past the end of the frame or of its datagram (Ethernet, VLAN, IPv4,
    /// IPv6 and its extension headers, TCP or UDP, the ICMP header), or a first fragment is
    /// too short to hold the ports.
    PassTruncated = 6,
    /// IPv4 header with a wrong version or header length; IPv6 header with a wrong version,
    /// or a jumbogram (payload length 0).
    PassMalformed = 7,
    /// Retired: fragments to a VIP are balanced (see [`Reason::ForwardedFragment`]); a
    /// fragment of another protocol counts as [`Reason::PassNotTcpUdp`].
    PassFragment = 8,
    /// Neither TCP nor UDP (ICMP echo, neighbour discovery, …), nor an ICMP error the program
    /// forwards (an ICMP error that is itself fragmented is not), nor a fragment of another
    /// protocol.
    PassNotTcpUdp = 9,
    /// No service for this destination address, port and protocol.
    PassNoService = 10,
    /// The service has no real that can take a new flow.
    DropNoReal = 11,
    /// The chosen real's interface is unknown to the program (daemon has not written it yet).
    DropNoInterface = 12,
    /// `XDP_REDIRECT` refused: the egress interface is not in the program's port map (or
    /// the redirect helper failed). Failures after the program returns (the egress driver
    /// refusing the frame) are counted by the kernel (`xdp:xdp_redirect_err`), not here.
    DropRedirectFailed = 13,
    /// A VLAN tag could not be added or removed (`bpf_xdp_adjust_head` refused: no headroom).
    DropVlanRewrite = 14,
    /// IPv6 with an extension header the program does not follow (AH, ESP, mobility, …) or a
    /// chain longer than it follows (`MAX_EXTENSION_HEADERS` in lb-ebpf's `parse/ipv6.rs`).
    PassIpv6Extensions = 15,
    /// A fragment of a datagram to a VIP, sent to the real that owns the datagram: the first
    /// fragment's flow, or the real an earlier fragment of the datagram went to.
    ForwardedFragment = 16,
    /// A non-first fragment that came before its datagram's first fragment: sent to the real
    /// a hash of (source, destination, protocol) picks from the VIP's fragment service
    /// schedule; the datagram's other fragments follow it there.
    ForwardedFragmentUnmatched = 17,
    /// An ICMP/ICMPv6 error about a flow the program forwards (path-MTU discovery, …), sent to
    /// that flow's real.
    ForwardedIcmpError = 18,
    /// An ICMP error about a VIP flow the flow table does not hold (expired, or never seen).
    PassIcmpNoFlow = 19,
    /// An ICMP error whose quoted packet is truncated, malformed, or not the start of a TCP or
    /// UDP packet: the program cannot tell whose flow it is about.
    PassIcmpBadQuote = 20,
    /// A TCP segment without SYN whose flow the table does not hold (expired, its real gone,
    /// or a flow another balancer scheduled), on a service whose scheduler answers the same
    /// for the same packet every time (`sh`, `mh`): sent where that answer points, and the
    /// flow recorded, so the connection lives on if its real is still the one the hash picks.
    ForwardedMidStream = 21,
    /// A TCP segment without SYN whose flow the table does not hold, on a service with no
    /// such stable answer: passed to the host, whose stack (holding the VIP, with no socket
    /// for it) answers with a reset, as with LVS. Never handed to an arbitrary real.
    PassTcpNoFlow = 22,
    /// A new flow could not be recorded: the flow table (`limits.flows`) is full (an expired
    /// flow keeps its slot until its next packet or lbd's sweep, every second, removes it).
    /// The packet is dropped; the client retries.
    DropFlowTableFull = 23,
    /// A reply of a NAT or full-NAT flow from its real, translated back (source VIP:port; for
    /// full NAT also destination client:port) and sent to the client the way its packets came.
    ForwardedReply = 24,
    /// A packet that would not fit the egress MTU once encapsulated for a tunnel real: answered
    /// with ICMP "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big", sent back to
    /// the client from the VIP.
    TxIcmpTooBig = 25,
    /// Too big once encapsulated, and not answered: the ICMP answer's rate limit
    /// (`ICMP_TOO_BIG_PER_SECOND` per CPU) was reached, or an IPv4 packet without DF (the
    /// program cannot fragment).
    DropTooBig = 26,
    /// A new full-NAT flow found no free local port on any of its local addresses, or a new
    /// NAT flow's reply 4-tuple is held by another live flow: refused, never mis-forwarded.
    DropNatNoPort = 27,
    /// Room for the tunnel header could not be made (`bpf_xdp_adjust_head` refused).
    DropEncapFailed = 28,
    /// Decapsulation program: an IPIP or GUE packet to a local address carrying a packet for a
    /// local VIP, passed on without its outer headers.
    Decapsulated = 29,
    /// Decapsulation program: an IPIP or GUE packet whose outer destination is not a local
    /// address or whose inner destination is not a local VIP, or that is malformed: passed
    /// untouched.
    PassNotDecapsulated = 30,
    /// Retired before any release counted it: ICMP errors about NAT and full-NAT flows are
    /// translated for their real and counted as [`Reason::ForwardedIcmpError`].
    PassIcmpNat = 31,
}

impl Reason {
    /// Every reason, in number order.
    pub const ALL: [Reason; 31] = [
        Reason::ForwardedTx,
        Reason::ForwardedRedirect,
        Reason::PassNotIp,
        Reason::PassIpv6,
        Reason::PassStackedVlan,
        Reason::PassTruncated,
        Reason::PassMalformed,
        Reason::PassFragment,
        Reason::PassNotTcpUdp,
        Reason::PassNoService,
        Reason::DropNoReal,
        Reason::DropNoInterface,
        Reason::DropRedirectFailed,
        Reason::DropVlanRewrite,
        Reason::PassIpv6Extensions,
        Reason::ForwardedFragment,
        Reason::ForwardedFragmentUnmatched,
        Reason::ForwardedIcmpError,
        Reason::PassIcmpNoFlow,
        Reason::PassIcmpBadQuote,
        Reason::ForwardedMidStream,
        Reason::PassTcpNoFlow,
        Reason::DropFlowTableFull,
        Reason::ForwardedReply,
        Reason::TxIcmpTooBig,
        Reason::DropTooBig,
        Reason::DropNatNoPort,
        Reason::DropEncapFailed,
        Reason::Decapsulated,
        Reason::PassNotDecapsulated,
        Reason::PassIcmpNat,
    ];

    /// The name printed by the CLI and used in metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::ForwardedTx => "forwarded_tx",
            Reason::ForwardedRedirect => "forwarded_redirect",
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassIpv6 => "pass_ipv6",
            Reason::PassStackedVlan => "pass_stacked_vlan",
            Reason::PassTruncated => "pass_truncated",
            Reason::PassMalformed => "pass_malformed",
            Reason::PassFragment => "pass_fragment",
            Reason::PassNotTcpUdp => "pass_not_tcp_udp",
            Reason::PassNoService => "pass_no_service",
            Reason::DropNoReal => "drop_no_real",
            Reason::DropNoInterface => "drop_no_interface",
            Reason::DropRedirectFailed => "drop_redirect_failed",
            Reason::DropVlanRewrite => "drop_vlan_rewrite",
            Reason::PassIpv6Extensions => "pass_ipv6_extensions",
            Reason::ForwardedFragment => "forwarded_fragment",
            Reason::ForwardedFragmentUnmatched => "forwarded_fragment_unmatched",
            Reason::ForwardedIcmpError => "forwarded_icmp_error",
            Reason::PassIcmpNoFlow => "pass_icmp_no_flow",
            Reason::PassIcmpBadQuote => "pass_icmp_bad_quote",
            Reason::ForwardedMidStream => "forwarded_mid_stream",
            Reason::PassTcpNoFlow => "pass_tcp_no_flow",
            Reason::DropFlowTableFull => "drop_flow_table_full",
            Reason::ForwardedReply => "forwarded_reply",
            Reason::TxIcmpTooBig => "tx_icmp_too_big",
            Reason::DropTooBig => "drop_too_big",
            Reason::DropNatNoPort => "drop_nat_no_port",
            Reason::DropEncapFailed => "drop_encap_failed",
            Reason::Decapsulated => "decapsulated",
            Reason::PassNotDecapsulated => "pass_not_decapsulated",
            Reason::PassIcmpNat => "pass_icmp_nat",
        }
    }

    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The reason numbered `index`, if there is one.
    pub const fn from_index(index: u32) -> Option<Reason> {
        if index >= 1 && index as usize <= Reason::ALL.len() {
            // SAFETY: `Reason` is `repr(u32)` and numbered 1..=ALL.len() without gaps (checked
            // below).
            Some(unsafe { core::mem::transmute::<u32, Reason>(index) })
        } else {
            None
        }
    }
}

const _: () = {
    let mut i = 0;
    while i < Reason::ALL.len() {
        assert!(Reason::ALL[i].index() < crate::REASON_SLOTS);
        assert!(Reason::ALL[i].index() == i as u32 + 1);
        i += 1;
    }
};
