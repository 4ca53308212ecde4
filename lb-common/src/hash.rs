//! Hashes of packet fields, for the schedulers that answer the same for the same packet
//! (`sh`, `mh`) and for fragments that came before their first fragment. The program indexes
//! its tables with them; tests use the same functions to predict its answers.
//!
//! murmur3's mixing, one 32-bit word at a time, with a fixed seed: every balancer computes the
//! same hash for the same packet, which is what lets balancers behind ECMP agree on a real
//! without sharing state. So these values must never change between versions: the golden
//! values below pin them.

use crate::FlowKey;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowKey {
        FlowKey {
            src: [203, 0, 113, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            src_port_be: 40000u16.to_be(),
            dst_port_be: 80u16.to_be(),
            protocol: crate::PROTO_TCP,
            family: crate::FAMILY_IPV4,
            _pad: [0; 2],
        }
    }

    /// Balancers of different versions must agree on a flow's real (Maglev behind ECMP): a
    /// change of any of these values is a change of every `sh`/`mh` answer.
    #[test]
    fn hashes_never_change() {
        assert_eq!(
            (datagram(&flow()), connection(&flow()), source(&flow())),
            GOLDEN
        );
    }

    #[test]
    fn each_hash_reads_only_its_fields() {
        let mut other_ports = flow();
        other_ports.src_port_be = 40001u16.to_be();
        assert_eq!(source(&other_ports), source(&flow()));
        assert_eq!(datagram(&other_ports), datagram(&flow()));
        assert_ne!(connection(&other_ports), connection(&flow()));
        let mut other_destination = flow();
        other_destination.dst[3] = 101;
        assert_eq!(source(&other_destination), source(&flow()));
        assert_ne!(datagram(&other_destination), datagram(&flow()));
    }

    const GOLDEN: (u32, u32, u32) = (31_158_111, 1_205_610_330, 2_290_251_887);
}
