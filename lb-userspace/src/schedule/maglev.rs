//! Weighted Maglev lookup tables: the `mh` scheduler.
//!
//! This module owns the mapping from a set of weighted reals to a lookup table of real ids
//! (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016).
//! The kernel picks the real for a flow as `table[flow_hash % table.len()]`, so every
//! property that matters here — balance, weights, how few flows move when the set of reals
//! changes, and that two daemons (or two versions of one) agree on the table — is decided
//! by [`table`]. The function is pure and std-only; it depends on nothing but its inputs.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Table size used when a service does not choose one. Prime, as Maglev needs, and large
/// enough that 1000 reals still get ~65 slots each (the paper's `M ≫ N`).
pub const DEFAULT_TABLE_SIZE: u32 = 65537;

/// Smallest table size a service may configure. 251 is the largest prime below 256: below
/// it one slot is more than 0.4% of the service's traffic, so weights can only be honoured
/// coarsely and any change of the set of reals moves traffic in large steps.
pub const MIN_TABLE_SIZE: u32 = 251;

/// Largest table size a service may configure. 131071 (2^17 - 1) is prime; it caps one
/// service at 2 halves × 131071 slots × 4 bytes ≈ 1 MiB of the shared BPF array, and keeps
/// a rebuild (linear in the size) well inside the time budget of a configuration change.
pub const MAX_TABLE_SIZE: u32 = 131071;

/// One real as the Maglev scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevReal<'a> {
    /// The real's identity, e.g. its 16-byte address followed by its 2-byte port. Only
    /// these bytes decide where the real lands in the table, so a real keeps its slots
    /// when its id (an index the daemon may reassign) changes.
    pub key: &'a [u8],
    /// Relative share of the table; 0 excludes the real.
    pub weight: u32,
    /// The value written into the table for this real.
    pub id: u32,
}

/// Seeds of the two hashes that give each real its permutation of the table. They are
/// fixed forever: changing them (or [`stable_hash`]) reshuffles every table, which moves
/// flows on upgrade and makes two daemon versions disagree. The golden tests pin them.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_5f6f; // "maglev_o"
const SKIP_SEED: u64 = 0x6d61_676c_6576_5f73; // "maglev_s"

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Builds the lookup table of `size` entries for `reals`.
///
/// Every entry is the id of a real with a positive weight, and each such real holds a share
/// of the entries proportional to its weight (off by fewer slots than there are reals).
/// Returns an empty table when no real has a positive weight, or when `size` is 0.
///
/// The result depends only on the set of `(key, weight, id)` — not on the order of `reals`,
/// the machine, the run or the Rust version — and multiplying every weight by the same
/// factor leaves it unchanged. Reals with weight 0 are ignored. When several
/// reals share a key, only the one with the lowest id (then the lowest weight) is used:
/// a key is a real's identity, so duplicates are a caller bug, but one that must not make
/// the result depend on slice order.
///
/// `size` should be a prime from [`MIN_TABLE_SIZE`] to [`MAX_TABLE_SIZE`]; this function
/// does not enforce the range. Other sizes still produce a full table (skips are made
/// coprime to `size`), but the paper's balance and disruption results assume a prime.
pub fn table(reals: &[MaglevReal], size: u32) -> Vec<u32> {
    let candidates = distinct_weighted(reals);
    if candidates.is_empty() || size == 0 {
        return Vec::new();
    }

    let mut walks: Vec<PermutationWalk> = candidates
        .iter()
        .map(|real| PermutationWalk::new(real.key, size))
        .collect();
    let mut turns: BinaryHeap<Turn> = candidates
        .iter()
        .enumerate()
        .map(|(rank, real)| Turn {
            claim_number: 1,
            weight: real.weight,
            rank,
        })
        .collect();

    let size = size as usize;
    let mut entries = vec![0u32; size];
    let mut taken = vec![false; size];
    let mut filled = 0;
    while filled < size {
        // The heap never empties: turns are only rescheduled, never removed.
        let Some(mut turn) = turns.peek_mut() else {
            break;
        };
        let walk = &mut walks[turn.rank];
        // Terminates: the walk visits every slot once per cycle and one is still free.
        let slot = loop {
            let slot = walk.advance();
            if !taken[slot as usize] {
                break slot as usize;
            }
        };
        taken[slot] = true;
        entries[slot] = candidates[turn.rank].id;
        filled += 1;
        // Dropping the PeekMut re-sifts the heap with the real's next claim time.
        turn.claim_number += 1;
    }
    entries
}

/// Whether `n` is prime, by trial division (at most ~32k divisions for a u32).
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let n = u64::from(n);
    let mut divisor = 3u64;
    while divisor * divisor <= n {
        if n.is_multiple_of(divisor) {
            return false;
        }
        divisor += 2;
    }
    true
}

/// The reals that take part, sorted by key with duplicate keys removed. Sorting by key (and
/// not by id or slice position) is what makes the table independent of input order: ties
/// in the filling order below are broken by this rank.
fn distinct_weighted<'r, 'k>(reals: &'r [MaglevReal<'k>]) -> Vec<&'r MaglevReal<'k>> {
    let mut candidates: Vec<&MaglevReal> = reals.iter().filter(|real| real.weight > 0).collect();
    candidates.sort_unstable_by(|a, b| {
        a.key
            .cmp(b.key)
            .then(a.id.cmp(&b.id))
            .then(a.weight.cmp(&b.weight))
    });
    candidates.dedup_by(|later, earlier| later.key == earlier.key);
    candidates
}

/// A real's preference list, `slot_j = (offset + j * skip) % size`, produced lazily one
/// slot at a time so that building the table allocates nothing per step.
struct PermutationWalk {
    next_slot: u32,
    skip: u32,
    size: u32,
}

impl PermutationWalk {
    fn new(key: &[u8], size: u32) -> Self {
        let next_slot = (stable_hash(OFFSET_SEED, key) % u64::from(size)) as u32;
        let skip = if size == 1 {
            1
        } else {
            (stable_hash(SKIP_SEED, key) % u64::from(size - 1)) as u32 + 1
        };
        PermutationWalk {
            next_slot,
            skip: coprime_skip(skip, size),
            size,
        }
    }

    fn advance(&mut self) -> u32 {
        let slot = self.next_slot;
        // A subtraction instead of `%`: this is the hot loop, and both terms are below
        // `size`. u64 because their sum can exceed u32::MAX for sizes near it.
        let mut next = u64::from(slot) + u64::from(self.skip);
        if next >= u64::from(self.size) {
            next -= u64::from(self.size);
        }
        self.next_slot = next as u32;
        slot
    }
}

/// The first skip from `skip` on (wrapping in 1..size) that shares no factor with `size`,
/// so the walk is a full permutation. For a prime size that is `skip` itself, which keeps
/// the tables for prime sizes exactly the paper's.
fn coprime_skip(mut skip: u32, size: u32) -> u32 {
    while gcd(skip, size) != 1 {
        skip = if skip + 1 >= size { 1 } else { skip + 1 };
    }
    skip
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// When a real next gets to claim a slot. Weighting works like weighted fair queueing: the
/// real's `n`-th claim happens at virtual time `n / weight`, and claims are served in that
/// order, ties going to the lower rank (sorted key). With equal weights this is exactly the
/// paper's round-robin filling. Because a real's claim times depend on its own weight
/// only — not on a maximum or total over all reals — adding, removing or reweighting one
/// real leaves the relative order of everyone else's claims untouched, which is what keeps
/// disruption low. Each claim takes exactly one slot, so shares come out proportional to
/// weight no matter how the permutations collide.
#[derive(Clone, Copy, Debug)]
struct Turn {
    claim_number: u64,
    weight: u32,
    rank: usize,
}

impl Ord for Turn {
    /// Greater means earlier, as BinaryHeap pops its greatest element.
    fn cmp(&self, other: &Self) -> Ordering {
        // a/wa < b/wb  ⇔  a·wb < b·wa; u128 because both factors can approach 2^32.
        let own_time = u128::from(self.claim_number) * u128::from(other.weight);
        let other_time = u128::from(other.claim_number) * u128::from(self.weight);
        other_time
            .cmp(&own_time)
            .then_with(|| other.rank.cmp(&self.rank))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Turn {}

/// 64-bit FNV-1a over `seed` (as 8 little-endian bytes) then `bytes`, finished with
/// MurmurHash3's fmix64. FNV alone mixes the last bytes poorly (keys differing only in the
/// port would get nearby hashes); the finalizer spreads every input bit over all 64.
/// Implemented here, never via std's hashers, whose output may change between releases.
fn stable_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut state = FNV_OFFSET_BASIS;
    for &byte in seed.to_le_bytes().iter().chain(bytes) {
        state ^= u64::from(byte);
        state = state.wrapping_mul(FNV_PRIME);
    }
    fmix64(state)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An IPv4-mapped IPv6 address followed by a big-endian port: 18 identity bytes.
    fn ipv4_key(octets: [u8; 4], port: u16) -> Vec<u8> {
        let mut key = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        key.extend_from_slice(&octets);
        key.extend_from_slice(&port.to_be_bytes());
        key
    }

    /// 2001:db8::`last` followed by a big-endian port.
    fn ipv6_key(last: u16, port: u16) -> Vec<u8> {
        let mut key = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        key.extend_from_slice(&last.to_be_bytes());
        key.extend_from_slice(&port.to_be_bytes());
        key
    }

    /// Keys 192.0.2.11:80, 192.0.2.12:80, …
    fn web_keys(count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| ipv4_key([192, 0, 2, 11 + i as u8], 80))
            .collect()
    }

    /// One real per key, with ids 1, 2, … in key order and the given weights.
    fn reals<'k>(keys: &'k [Vec<u8>], weights: &[u32]) -> Vec<MaglevReal<'k>> {
        assert_eq!(keys.len(), weights.len(), "one weight per key");
        let ids = 1..;
        keys.iter()
            .zip(weights)
            .zip(ids)
            .map(|((key, &weight), id)| MaglevReal { key, weight, id })
            .collect()
    }

    fn checksum(entries: &[u32]) -> u64 {
        let bytes: Vec<u8> = entries.iter().flat_map(|id| id.to_le_bytes()).collect();
        stable_hash(0, &bytes)
    }

    fn counts(entries: &[u32]) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        for &id in entries {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// Percent of the slots other reals held in `before` that changed owner although the
    /// new owner is not `changed_id` either: flows moved only as a side effect of the change.
    fn collateral_percent(before: &[u32], after: &[u32], changed_id: u32) -> f64 {
        assert_eq!(before.len(), after.len(), "tables of different sizes");
        let others = before.iter().filter(|&&b| b != changed_id).count();
        let moved = before
            .iter()
            .zip(after)
            .filter(|&(&b, &a)| b != a && b != changed_id && a != changed_id)
            .count();
        100.0 * moved as f64 / others as f64
    }

    #[test]
    fn golden_tables_never_change() {
        let check = |name: &str, reals: &[MaglevReal], size, first: [u32; 40], sum| {
            let entries = table(reals, size);
            assert_eq!(entries.len(), size as usize, "{name}: table length");
            assert_eq!(entries[..40], first, "{name}: hash or algorithm changed?");
            assert_eq!(checksum(&entries), sum, "{name}: checksum changed");
        };
        let web = web_keys(3);
        let (equal, weighted) = (reals(&web, &[1, 1, 1]), reals(&web, &[1, 2, 3]));
        check("3 equal ipv4", &equal, 251, EQUAL_40, EQUAL_SUM);
        check("ipv4 1:2:3", &weighted, 251, WEIGHTED_40, WEIGHTED_SUM);
        let v6: Vec<Vec<u8>> = (1..=4).map(|i| ipv6_key(i, 443)).collect();
        let v6 = reals(&v6, &[5, 0, 100, 7]);
        check("ipv6 5:0:100:7", &v6, DEFAULT_TABLE_SIZE, IPV6_40, IPV6_SUM);
        let empty_hash = stable_hash(0, b"");
        assert_eq!(empty_hash, HASH_OF_EMPTY, "the hash itself changed");
    }

    #[test]
    fn table_depends_only_on_keys_and_weight_ratios() {
        let keys = web_keys(7);
        let forward = reals(&keys, &[1, 2, 3, 1, 0, 5, 1]);
        let expected = table(&forward, 1009);
        let mut shuffled = forward.clone();
        shuffled.reverse();
        assert_eq!(table(&shuffled, 1009), expected, "reversed order");
        shuffled.swap(0, 3);
        shuffled.swap(2, 6);
        assert_eq!(table(&shuffled, 1009), expected, "permuted order");

        let scaled = reals(&keys, &[20, 40, 60, 20, 0, 100, 20]);
        assert_eq!(table(&scaled, 1009), expected, "weights scaled by 20");

        let mut renumbered = forward;
        renumbered.iter_mut().for_each(|real| real.id += 100);
        let relabelled: Vec<u32> = table(&renumbered, 1009).iter().map(|id| id - 100).collect();
        assert_eq!(relabelled, expected, "slots follow keys, not ids");
    }

    #[test]
    fn shares_follow_weights() {
        for weights in [&[1u32, 2, 3][..], &[1, 1, 1, 5], &[7, 7, 7], &[1, 1000]] {
            let keys = web_keys(weights.len());
            let entries = table(&reals(&keys, weights), DEFAULT_TABLE_SIZE);
            let counts = counts(&entries);
            let total_weight: u32 = weights.iter().sum();
            for (id, &weight) in (1..).zip(weights) {
                let slots = counts.get(&id).copied().unwrap_or(0) as f64;
                let ideal_slots = entries.len() as f64 * weight as f64 / total_weight as f64;
                let off_points = 100.0 * (slots - ideal_slots).abs() / entries.len() as f64;
                assert!(
                    off_points < 0.5,
                    "weights {weights:?}: real {id} is {off_points:.3} points off its share"
                );
                // Stronger: each claim takes exactly one slot, so a real misses its ideal
                // count by no more than the number of reals.
                assert!(
                    (slots - ideal_slots).abs() <= weights.len() as f64,
                    "weights {weights:?}: real {id} has {slots} slots, ideal {ideal_slots:.1}"
                );
            }
        }
    }

    #[test]
    fn changes_move_few_other_slots() {
        let keys = web_keys(11);
        let ten = reals(&keys[..10], &[1; 10]);
        let before = table(&ten, DEFAULT_TABLE_SIZE);
        let (mut removal, mut reweight, mut lost_by_reweighted) = (0f64, 0f64, 0usize);
        for (index, changed) in ten.iter().enumerate() {
            let rest: Vec<MaglevReal> = ten.iter().copied().filter(|r| r != changed).collect();
            let after = table(&rest, DEFAULT_TABLE_SIZE);
            assert!(
                !after.contains(&changed.id),
                "removed real still in the table"
            );
            removal = removal.max(collateral_percent(&before, &after, changed.id));

            let mut doubled = ten.clone();
            doubled[index].weight = 2;
            let after = table(&doubled, DEFAULT_TABLE_SIZE);
            reweight = reweight.max(collateral_percent(&before, &after, changed.id));
            // Gaining weight should only gain slots, never trade old ones for new ones.
            let lost = (before.iter().zip(&after))
                .filter(|&(&b, &a)| b == changed.id && a != changed.id)
                .count();
            lost_by_reweighted = lost_by_reweighted.max(lost);
        }
        let eleven = reals(&keys, &[1; 11]);
        let after = table(&eleven, DEFAULT_TABLE_SIZE);
        let addition = (eleven.iter())
            .map(|added| {
                let rest: Vec<MaglevReal> = eleven.iter().copied().filter(|r| r != added).collect();
                collateral_percent(&table(&rest, DEFAULT_TABLE_SIZE), &after, added.id)
            })
            .fold(0f64, f64::max);
        println!(
            "collateral moves, % of the other reals' slots: remove 1 of 10 {removal:.2}, \
             add an 11th {addition:.2}, weight 1 -> 2 {reweight:.2}"
        );
        for (change, percent) in [
            ("removal", removal),
            ("addition", addition),
            ("reweight", reweight),
        ] {
            assert!(
                percent < DISRUPTION_BOUND_PERCENT,
                "{change} moved {percent:.2}% of other slots"
            );
        }
        assert_eq!(lost_by_reweighted, 0, "a real gaining weight lost slots");
    }

    #[test]
    fn table_holds_only_weighted_ids() {
        let keys = web_keys(6);
        let entries = table(&reals(&keys, &[0, 3, 0, 1, 2, 0]), 1021);
        assert_eq!(entries.len(), 1021, "table length");
        let mut present: Vec<u32> = counts(&entries).into_keys().collect();
        present.sort_unstable();
        assert_eq!(present, [2, 4, 5], "ids present; weights were 0,3,0,1,2,0");

        assert!(table(&[], 251).is_empty(), "no reals");
        let drained = reals(&keys, &[0; 6]);
        assert!(table(&drained, 251).is_empty(), "all drained");
        assert!(table(&reals(&keys, &[1; 6]), 0).is_empty(), "size 0");
    }

    #[test]
    fn duplicate_keys_keep_the_lowest_id() {
        let keys = web_keys(2);
        let real = |key: usize, id| MaglevReal {
            key: &keys[key],
            weight: 1,
            id,
        };
        let forward = [real(0, 9), real(1, 5), real(0, 3)];
        let backward = [real(0, 3), real(1, 5), real(0, 9)];
        let entries = table(&forward, 251);
        assert_eq!(entries, table(&backward, 251), "result depends on order");
        let deduplicated = table(&[real(1, 5), real(0, 3)], 251);
        assert_eq!(entries, deduplicated, "id 9 should be dropped, id 3 kept");
    }

    #[test]
    fn odd_sizes_still_fill_the_table() {
        let keys = web_keys(5);
        let reals = reals(&keys, &[1, 2, 3, 4, 5]);
        for size in [1, 2, 4, 6, 100, 256, 1000] {
            let entries = table(&reals, size);
            assert_eq!(entries.len(), size as usize, "size {size}: length");
            let unknown = entries.iter().find(|id| !(1..=5).contains(*id));
            assert_eq!(unknown, None, "size {size}: unknown id");
        }
        // More reals than slots: the one slot goes to the earliest claim, the heaviest real.
        assert_eq!(table(&reals, 1), [5], "one slot");
    }

    #[test]
    fn is_prime_matches_known_values() {
        let small_primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47];
        for n in 0..50 {
            assert_eq!(is_prime(n), small_primes.contains(&n), "is_prime({n})");
        }
        let table_sizes = [MIN_TABLE_SIZE, DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE];
        for prime in table_sizes.into_iter().chain([65521, 4_294_967_291]) {
            assert!(is_prime(prime), "{prime} is prime");
        }
        for composite in [65535, 65539 * 3, 65537 * 65521, 1_000_001, u32::MAX] {
            assert!(!is_prime(composite), "{composite} is composite");
        }
    }

    /// Run with `cargo test --release -- --ignored --nocapture`; prints, does not assert.
    #[test]
    #[ignore]
    fn bench_build_1000_reals() {
        let keys: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| ipv4_key([10, 0, (i >> 8) as u8, i as u8], 80))
            .collect();
        let skewed = (0..1000).map(|i| if i == 0 { 1000 } else { 1 }).collect();
        for (name, weights) in [
            ("equal weights", vec![1u32; 1000]),
            ("weights 1..=1000", (1..=1000).collect()),
            ("one real at 1000, the rest 1", skewed),
        ] {
            let reals = reals(&keys, &weights);
            let mut best = std::time::Duration::MAX;
            for _ in 0..10 {
                let started = std::time::Instant::now();
                let entries = table(&reals, DEFAULT_TABLE_SIZE);
                best = best.min(started.elapsed());
                assert_eq!(entries.len(), DEFAULT_TABLE_SIZE as usize, "{name}: length");
            }
            println!("1000 reals, size {DEFAULT_TABLE_SIZE}, {name}: best of 10 {best:?}");
        }
    }

    // Measured 0.32% (remove), 0.31% (add), 0.29% (reweight) of the other reals' slots;
    // the bound leaves a little room and still fails on a real regression.
    const DISRUPTION_BOUND_PERCENT: f64 = 0.5;

    // Golden values, recorded from this implementation. Never update them to make a test
    // pass unless every deployed table is meant to change.
    const HASH_OF_EMPTY: u64 = 0x7bd3_144f_29c0_cc9e;
    const EQUAL_40: [u32; 40] = [
        3, 2, 3, 2, 2, 3, 2, 2, 3, 3, 2, 3, 1, 3, 1, 1, 2, 1, 1, 2, //
        3, 2, 2, 1, 3, 3, 3, 2, 1, 3, 2, 3, 2, 1, 1, 1, 1, 3, 1, 2,
    ];
    const EQUAL_SUM: u64 = 0x47e6_35a5_5907_5b7e;
    const WEIGHTED_40: [u32; 40] = [
        3, 2, 3, 3, 2, 3, 2, 2, 3, 3, 2, 3, 1, 3, 1, 1, 2, 1, 3, 2, //
        3, 2, 2, 3, 3, 3, 3, 2, 3, 3, 2, 3, 2, 1, 1, 3, 2, 3, 3, 2,
    ];
    const WEIGHTED_SUM: u64 = 0xabcd_5891_ad2a_ab0d;
    const IPV6_40: [u32; 40] = [
        3, 3, 3, 1, 3, 3, 4, 3, 3, 3, 1, 3, 3, 4, 4, 3, 3, 1, 3, 3, //
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3, 3, 3,
    ];
    const IPV6_SUM: u64 = 0x6377_067b_e972_e87a;
}
