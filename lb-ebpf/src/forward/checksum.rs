//! Internet checksums (RFC 1071) and their incremental update (RFC 1624).
//!
//! Sums are taken over 32-bit words loaded in the machine's byte order and folded to 16 bits:
//! the one's-complement sum does not depend on byte order as long as the result is stored the
//! way the words were loaded, and 2^16 ≡ 1 (mod 2^16 − 1) makes 32-bit words add up like pairs
//! of 16-bit ones.

use lb_common::{FAMILY_IPV4, PROTO_TCP, PROTO_UDP};

/// A one's-complement sum folded to 16 bits (not complemented).
#[inline(always)]
pub fn fold(sum: u64) -> u16 {
    let mut sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The sum of an address's four words (an IPv4 address's three zero words add nothing).
#[inline(always)]
pub fn address_sum(addr: &[u8; 16]) -> u64 {
    let mut sum = 0;
    let mut word = 0;
    while word < 4 {
        sum += u64::from(word_at(addr, word));
        word += 1;
    }
    sum
}

/// What replacing `old` by `new` adds to a sum: `new − old`, as `new + ~old`.
#[inline(always)]
pub fn address_delta(old: &[u8; 16], new: &[u8; 16]) -> u64 {
    let mut sum = 0;
    let mut word = 0;
    while word < 4 {
        sum += u64::from(!word_at(old, word)) + u64::from(word_at(new, word));
        word += 1;
    }
    sum
}

/// What replacing the 32-bit word `old` by `new` adds to a sum.
#[inline(always)]
pub fn word_delta(old: u32, new: u32) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// The checksum field `check` (as stored) after its data changed by `delta`.
#[inline(always)]
pub fn updated(check: u16, delta: u64) -> u16 {
    !fold(u64::from(!check) + delta)
}

/// What replacing a 16-bit field `old` by `new` adds to a sum (2^16 ≡ 1, so its place in a
/// 32-bit word does not matter).
#[inline(always)]
pub fn field_delta(old: u16, new: u16) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// Where a TCP or UDP header keeps its checksum.
#[inline(always)]
pub fn transport_check_offset(protocol: u8) -> usize {
    if protocol == PROTO_TCP { 16 } else { 6 }
}

/// A TCP or UDP checksum `old` (as stored) after its segment changed by `delta`; `None` for
/// a UDP datagram over IPv4 without one (0), which stays without. A UDP result of 0 is sent
/// as 0xffff, 0 meaning "none".
#[inline(always)]
pub fn transport_updated(old: u16, delta: u64, protocol: u8, family: u8) -> Option<u16> {
    let udp = protocol == PROTO_UDP;
    if udp && old == 0 && family == FAMILY_IPV4 {
        return None;
    }
    let new = updated(old, delta);
    Some(if udp && new == 0 { 0xffff } else { new })
}

/// The `word`th four bytes of an address, as loaded (an IPv4 address is word 0).
#[inline(always)]
pub fn word_at(addr: &[u8; 16], word: usize) -> u32 {
    let i = word * 4;
    u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]])
}
