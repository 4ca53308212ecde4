//! Hashes of packet fields, for the schedulers that answer the same for the same packet
//! (`sh`, `mh`) and for fragments that came before their first fragment.
//!
//! murmur3's mixing, one 32-bit word at a time, with a fixed seed: every balancer computes the
//! same hash for the same packet, which is what lets balancers behind ECMP agree on a real
//! without sharing state.

use lb_common::FlowKey;

/// Source, destination and protocol: what every fragment of a datagram carries besides its
/// id.
#[inline(always)]
pub fn datagram(flow: &FlowKey) -> u32 {
    finalize(datagram_unfinished(flow))
}

/// The whole 5-tuple: one connection.
#[inline(always)]
pub fn connection(flow: &FlowKey) -> u32 {
    let ports = u32::from(flow.src_port_be) | (u32::from(flow.dst_port_be) << 16);
    finalize(mix(datagram_unfinished(flow), ports))
}

/// The client's address alone (`sh`: one client, one real).
#[inline(always)]
pub fn source(flow: &FlowKey) -> u32 {
    let mut hash = u32::from(flow.family);
    let mut word = 0;
    while word < 4 {
        hash = mix(hash, word_at(&flow.src, word));
        word += 1;
    }
    finalize(hash)
}

#[inline(always)]
fn datagram_unfinished(flow: &FlowKey) -> u32 {
    let mut hash = u32::from(flow.protocol) ^ (u32::from(flow.family) << 8);
    let mut word = 0;
    while word < 4 {
        hash = mix(hash, word_at(&flow.src, word));
        hash = mix(hash, word_at(&flow.dst, word));
        word += 1;
    }
    hash
}

#[inline(always)]
fn word_at(address: &[u8; 16], word: usize) -> u32 {
    let at = word * 4;
    u32::from_le_bytes([
        address[at],
        address[at + 1],
        address[at + 2],
        address[at + 3],
    ])
}

#[inline(always)]
fn mix(hash: u32, word: u32) -> u32 {
    let word = word
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (hash ^ word)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finalize(mut hash: u32) -> u32 {
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}
