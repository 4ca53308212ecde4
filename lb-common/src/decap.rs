//! The decapsulation program's maps (`lb_decap`, run by `lbd decap` on the reals of a
//! tunnel-mode service): which addresses are this host's and which are VIPs, and the GUE port.
//!
//! | map | key → value | written by | read by |
//! | --- | --- | --- | --- |
//! | [`MAP_DECAP_ADDRS`] | [`DecapAddrKey`] → `u32` flags ([`DECAP_LOCAL`], [`DECAP_VIP`]) | `lbd decap` | `lb_decap` |
//! | [`MAP_DECAP_CONFIG`] | 0 → [`DecapConfig`] | `lbd decap` | `lb_decap` |
//!
//! Neither is pinned: `lbd decap` creates them when it loads the program, and they go with it.

/// The host's addresses the program decapsulates for (hash, [`MAX_DECAP_ADDRS`] entries).
pub const MAP_DECAP_ADDRS: &str = "LB_DECAP_ADDRS_V1";
/// The decapsulation settings (array of one [`DecapConfig`]).
pub const MAP_DECAP_CONFIG: &str = "LB_DECAP_CFG_V1";

/// Addresses [`MAP_DECAP_ADDRS`] holds at most: every address of the host plus its VIPs.
pub const MAX_DECAP_ADDRS: u32 = 4096;

/// [`MAP_DECAP_ADDRS`] value bit: an address of this host on an interface other than a
/// loopback. A tunnel packet's outer destination must have it.
pub const DECAP_LOCAL: u32 = 1;
/// [`MAP_DECAP_ADDRS`] value bit: a VIP this host serves (an address on a loopback, or named
/// with `lbd decap --vip`). A tunnel packet's inner destination must have it.
pub const DECAP_VIP: u32 = 2;

/// IP protocol numbers (IPv6 Next Header values) of IP in IP: an IPv4 packet inside (`ipip`,
/// 4in4 and 4in6), an IPv6 packet inside (`sit`/`ip6ip6`, 6in4 and 6in6).
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_IPV6_IN_IP: u8 = 41;

/// The UDP port GUE packets are sent to unless configured otherwise (as the balancer's
/// `gue_port` defaults to).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// An address of the host: the key of [`MAP_DECAP_ADDRS`].
///
/// Aligned to 4 bytes so that the program builds and hashes it a word at a time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DecapAddrKey {
    /// Network byte order; IPv4 uses the first four bytes, the rest are zero.
    pub addr: [u8; 16],
    /// `FAMILY_IPV4` or `FAMILY_IPV6`, widened.
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<DecapAddrKey>() == 20);
const _: () = assert!(core::mem::align_of::<DecapAddrKey>() == 4);

/// What the decapsulation program is told at start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapConfig {
    /// The UDP destination port of GUE packets (network order); 0 = no GUE, IPIP only.
    pub gue_port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<DecapConfig>() == 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, explicit padding, no invalid bit patterns.
    unsafe impl aya::Pod for super::DecapAddrKey {}
    unsafe impl aya::Pod for super::DecapConfig {}
}
