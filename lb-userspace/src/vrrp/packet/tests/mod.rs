//! keepalived 2.2.7's captures frame by frame, hand-written round trips with a comment per
//! field, and every refusal triggered by mutating a real advert.
//!
//! - `pcap`: finding and reading the captures, and sorting their frames;
//! - `captures`: every advert parsed and re-emitted, every gratuitous ARP and neighbour
//!   advertisement rebuilt, all counted;
//! - `round_trips`: wire formats written out by hand, byte by byte;
//! - `refusals`: each [`AdvertError`] from a mutated real advert.

mod captures;
mod pcap;
mod refusals;
mod round_trips;

use std::net::{Ipv4Addr, Ipv6Addr};

// Through this, the modules below see the packet module's private items too.
use super::*;

// What the captures' README says they hold.
const VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
const VIP_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec0, 0, 0, 0, 0, 0, 0x100);
const VRID_V4: u8 = 51;
const VRID_V6: u8 = 52;
/// The router configured at priority 150, and its interface.
const ROUTER_1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ROUTER_1_LINK_LOCAL: Ipv6Addr =
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0x443d, 0xf2ff, 0xfef8, 0x9bc2);
const ROUTER_1_MAC: [u8; 6] = [0x46, 0x3d, 0xf2, 0xf8, 0x9b, 0xc2];
/// The router configured at priority 100, and its interface.
const ROUTER_2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const ROUTER_2_LINK_LOCAL: Ipv6Addr =
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0x2c0f, 0xd4ff, 0xfe0e, 0x947e);
const ROUTER_2_MAC: [u8; 6] = [0x2e, 0x0f, 0xd4, 0x0e, 0x94, 0x7e];
