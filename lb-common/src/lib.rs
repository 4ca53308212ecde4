//! Everything that crosses the kernel boundary: map names, keys, values and verdict reasons.
//!
//! Rules (see STYLE.md): every type is `#[repr(C)]`, `Copy`, has explicit padding and a
//! compile-time size assertion; byte order is part of the field name (`_be`); index 0 of
//! id-indexed arrays means "none". Changing a layout renames its map (`…_V2`), so a map pinned
//! by an older daemon is never misread.
#![no_std]

pub mod capture;
pub mod conntrack;
pub mod decap;
pub mod hash;
pub mod maps;
pub mod reason;

pub use conntrack::{
    ConnCounts, SETTINGS_NO_ALL_PORTS_SERVICE, SETTINGS_TRANSLATES_REPLIES, Settings,
};
pub use maps::*;
pub use reason::Reason;

/// `family` values, as the kernel's `AF_INET` / `AF_INET6`.
pub const FAMILY_IPV4: u8 = 2;
pub const FAMILY_IPV6: u8 = 10;

/// `protocol` values, as IANA protocol numbers.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Forwarding methods, LVS style (`ipvsadm -g/-i/-m`).
pub const FORWARD_DR: u8 = 1;
pub const FORWARD_TUN: u8 = 2;
pub const FORWARD_NAT: u8 = 3;
pub const FORWARD_FULLNAT: u8 = 4;

/// VLAN tag protocol identifiers (EtherTypes), as the kernel's `ETH_P_8021Q` / `ETH_P_8021AD`.
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// The VLAN id bits of a tag's TCI; the rest are priority (PCP) and DEI.
pub const VLAN_VID_MASK: u16 = 0x0fff;
