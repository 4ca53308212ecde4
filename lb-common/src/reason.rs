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
    /// IPv6: not balanced yet.
    PassIpv6 = 4,
    /// More than one VLAN tag.
    PassStackedVlan = 5,
    /// A header runs past the end of the frame (Ethernet, VLAN, IPv4, TCP or UDP).
    PassTruncated = 6,
    /// IPv4 header with a wrong version or header length.
    PassMalformed = 7,
    /// IPv4 fragment (first or later): left to the kernel.
    PassFragment = 8,
    /// Neither TCP nor UDP (ICMP, …).
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
}

impl Reason {
    /// Every reason, in number order.
    pub const ALL: [Reason; 14] = [
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
        }
    }

    pub const fn index(self) -> u32 {
        self as u32
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
