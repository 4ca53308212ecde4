//! Placement of per-service schedule tables in the one shared BPF array.
//!
//! Every service's tables (two halves, so one can be rewritten while the kernel reads the
//! other) live as ranges of slots in a single u32 array map of fixed length. This module
//! owns the bookkeeping of which slots are in use: [`TableSpace`] hands out ranges first
//! fit, takes them back with coalescing, and adopts ranges found in maps left behind by a
//! previous daemon. It knows nothing about maps or services; it only does the arithmetic.

use std::collections::BTreeMap;
use std::ops::Range;

/// Which slots of the shared array are free and which are in use.
///
/// Slots below `reserved_start` are never handed out (slot 0 stays an "unset" marker, for
/// instance). A range is in use from [`TableSpace::allocate`] or a successful
/// [`TableSpace::mark_used`] until it is passed, exactly as returned, to
/// [`TableSpace::free`].
#[derive(Clone, Debug)]
pub struct TableSpace {
    reserved_start: u32,
    /// Free ranges as start → end. Kept coalesced (no two touch), so a range lies in free
    /// space exactly when it lies inside one entry, and first fit sees maximal holes.
    free: BTreeMap<u32, u32>,
    /// Ranges in use as start → end, to tell a genuine free from a double or partial one.
    used: BTreeMap<u32, u32>,
    free_slots: u32,
}

impl TableSpace {
    /// Space for slots `reserved_start..total_slots`, all free. A `reserved_start` beyond
    /// `total_slots` leaves no space at all.
    pub fn new(total_slots: u32, reserved_start: u32) -> Self {
        let first_usable = reserved_start.min(total_slots);
        let mut free = BTreeMap::new();
        if first_usable < total_slots {
            free.insert(first_usable, total_slots);
        }
        TableSpace {
            reserved_start,
            free,
            used: BTreeMap::new(),
            free_slots: total_slots - first_usable,
        }
    }

    /// The lowest free range of `len` slots, now in use; `None` when no hole is big enough.
    /// Lowest address first keeps the used part of the array compact, so large holes stay
    /// at the top for services with large tables.
    ///
    /// A zero-length request returns the empty range at `reserved_start` and consumes
    /// nothing (a service with no reals still needs a well-formed range).
    pub fn allocate(&mut self, len: u32) -> Option<Range<u32>> {
        if len == 0 {
            return Some(self.reserved_start..self.reserved_start);
        }
        let (&hole_start, &hole_end) = self.free.iter().find(|&(&s, &e)| e - s >= len)?;
        self.free.remove(&hole_start);
        let end = hole_start + len;
        if end < hole_end {
            self.free.insert(end, hole_end);
        }
        self.used.insert(hole_start, end);
        self.free_slots -= len;
        Some(hole_start..end)
    }

    /// Returns a range from [`allocate`](Self::allocate) or [`mark_used`](Self::mark_used)
    /// to free space, merged with free neighbours. Anything else (never handed out, already
    /// freed, only part of a range) is a caller bug: it fails a debug assertion and is
    /// otherwise ignored, because freeing slots another service still uses would let two
    /// services share them. Empty ranges are ignored.
    pub fn free(&mut self, range: Range<u32>) {
        if range.start >= range.end {
            debug_assert!(range.start == range.end, "free of reversed range {range:?}");
            return;
        }
        if self.used.get(&range.start) != Some(&range.end) {
            debug_assert!(false, "free of {range:?}, which is not a range in use");
            return;
        }
        self.used.remove(&range.start);
        self.free_slots += range.end - range.start;

        let mut start = range.start;
        let mut end = range.end;
        if let Some((&before_start, &before_end)) = self.free.range(..start).next_back()
            && before_end == start
        {
            self.free.remove(&before_start);
            start = before_start;
        }
        if let Some(after_end) = self.free.remove(&end) {
            end = after_end;
        }
        self.free.insert(start, end);
    }

    /// Marks `range` as in use, for adopting the tables a previous daemon left in the maps.
    /// Returns false, changing nothing, unless every slot of the range is free: it must not
    /// reach below `reserved_start` or past the end, nor overlap a range already in use.
    /// An empty range is trivially available and returns true without recording anything.
    pub fn mark_used(&mut self, range: Range<u32>) -> bool {
        if range.start > range.end {
            return false;
        }
        if range.start == range.end {
            return true;
        }
        let Some((&hole_start, &hole_end)) = self.free.range(..=range.start).next_back() else {
            return false;
        };
        if hole_end < range.end {
            return false;
        }
        self.free.remove(&hole_start);
        if hole_start < range.start {
            self.free.insert(hole_start, range.start);
        }
        if range.end < hole_end {
            self.free.insert(range.end, hole_end);
        }
        self.free_slots -= range.end - range.start;
        self.used.insert(range.start, range.end);
        true
    }

    /// Slots not in use (and not reserved), wherever they are.
    pub fn free_slots(&self) -> u32 {
        self.free_slots
    }

    /// Length of the largest hole: the largest [`allocate`](Self::allocate) that succeeds.
    pub fn largest_free(&self) -> u32 {
        self.free.iter().map(|(s, e)| e - s).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocate(space: &mut TableSpace, len: u32) -> Range<u32> {
        space
            .allocate(len)
            .unwrap_or_else(|| panic!("allocate({len}) failed in {space:?}"))
    }

    #[test]
    fn first_fit_takes_the_lowest_hole() {
        let mut space = TableSpace::new(100, 1);
        assert_eq!(allocate(&mut space, 10), 1..11, "first allocation");
        assert_eq!(allocate(&mut space, 20), 11..31, "second allocation");
        space.free(1..11);
        assert_eq!(allocate(&mut space, 5), 1..6, "reuses the lowest hole");
        assert_eq!(
            allocate(&mut space, 6),
            31..37,
            "6 slots do not fit in 6..11"
        );
        assert_eq!(
            allocate(&mut space, 5),
            6..11,
            "5 slots fill the hole exactly"
        );
        assert_eq!(
            space.free_slots(),
            99 - 36,
            "free slots after five allocations"
        );
    }

    #[test]
    fn reserved_slots_are_never_handed_out() {
        let mut space = TableSpace::new(10, 3);
        assert_eq!(space.free_slots(), 7, "slots 3..10");
        assert!(!space.mark_used(0..1), "slot 0 is reserved");
        assert!(!space.mark_used(2..4), "slot 2 is reserved");
        assert_eq!(
            allocate(&mut space, 7),
            3..10,
            "everything above the reserve"
        );
        assert_eq!(space.allocate(1), None, "space is full");

        let mut nothing = TableSpace::new(10, 20);
        assert_eq!(
            (nothing.free_slots(), nothing.largest_free()),
            (0, 0),
            "no space"
        );
        assert_eq!(nothing.allocate(1), None, "reserve beyond the end");
    }

    #[test]
    fn zero_length_ranges_consume_nothing() {
        let mut space = TableSpace::new(50, 1);
        assert_eq!(
            allocate(&mut space, 0),
            1..1,
            "empty range at reserved_start"
        );
        assert_eq!(
            allocate(&mut space, 4),
            1..5,
            "the empty range took no space"
        );
        space.free(1..1);
        assert!(
            space.mark_used(30..30),
            "an empty range is always available"
        );
        assert_eq!(
            space.free_slots(),
            45,
            "empty ranges changed the free count"
        );
    }

    #[test]
    fn free_coalesces_with_both_neighbours() {
        // The guard at 60..61 fills the space, so only the three ranges can merge.
        let mut space = TableSpace::new(61, 0);
        let left = allocate(&mut space, 10);
        let middle = allocate(&mut space, 20);
        let right = allocate(&mut space, 30);
        assert_eq!(allocate(&mut space, 1), 60..61, "guard");
        space.free(left);
        space.free(right);
        assert_eq!(space.largest_free(), 30, "two separate holes");
        space.free(middle);
        assert_eq!(
            space.largest_free(),
            60,
            "the middle merged with both holes"
        );
        assert_eq!(allocate(&mut space, 60), 0..60, "one hole of 60");
    }

    #[test]
    fn fragmented_space_fails_large_allocations_until_freed() {
        let mut space = TableSpace::new(100, 0);
        let blocks: Vec<Range<u32>> = (0..10).map(|_| allocate(&mut space, 10)).collect();
        assert_eq!(space.allocate(1), None, "space should be full");
        for block in blocks.iter().step_by(2) {
            space.free(block.clone());
        }
        assert_eq!(space.free_slots(), 50, "half the space is free");
        assert_eq!(space.largest_free(), 10, "but only in holes of 10");
        assert_eq!(space.allocate(20), None, "20 slots must not fit");
        space.free(blocks[1].clone());
        assert_eq!(space.largest_free(), 30, "blocks 0..3 merged");
        assert_eq!(
            allocate(&mut space, 20),
            0..20,
            "fits once the hole is merged"
        );
    }

    #[test]
    fn mark_used_adopts_ranges_and_frees_them_again() {
        let mut space = TableSpace::new(1000, 1);
        assert!(space.mark_used(100..200), "adopting from free space");
        assert!(space.mark_used(200..250), "adopting right next to it");
        assert!(!space.mark_used(150..160), "overlaps an adopted range");
        assert!(
            !space.mark_used(240..260),
            "overlaps the end of an adopted range"
        );
        assert!(!space.mark_used(990..1001), "reaches past the end");
        assert_eq!(space.free_slots(), 999 - 150, "adopted slots are in use");
        assert_eq!(
            allocate(&mut space, 99),
            1..100,
            "allocation below the adopted ranges"
        );
        assert_eq!(
            allocate(&mut space, 5),
            250..255,
            "allocation skips the adopted ranges"
        );
        space.free(100..200);
        assert_eq!(
            allocate(&mut space, 100),
            100..200,
            "the freed range is reused"
        );
        space.free(200..250);
        assert!(space.mark_used(200..250), "freed, so adoptable again");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not a range in use")]
    fn freeing_part_of_a_range_is_a_bug() {
        let mut space = TableSpace::new(100, 0);
        let range = allocate(&mut space, 10);
        space.free(range.start..range.end - 1);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn bad_frees_are_ignored_in_release() {
        let mut space = TableSpace::new(100, 0);
        let range = allocate(&mut space, 10);
        space.free(range.start..range.end - 1);
        space.free(50..60);
        space.free(range.clone());
        space.free(range);
        assert_eq!(space.free_slots(), 100, "only the genuine free counted");
        assert_eq!(space.largest_free(), 100, "free list intact");
    }

    /// xorshift64: deterministic, so a failure replays exactly.
    struct Xorshift(u64);

    impl Xorshift {
        fn below(&mut self, bound: u32) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % u64::from(bound)) as u32
        }
    }

    /// The same space as a plain bitmap: true = not available (reserved or in use).
    struct Model {
        taken: Vec<bool>,
    }

    impl Model {
        fn first_fit(&self, len: u32) -> Option<Range<u32>> {
            let len = len as usize;
            (0..=self.taken.len().checked_sub(len)?)
                .find(|&start| self.taken[start..start + len].iter().all(|&t| !t))
                .map(|start| start as u32..(start + len) as u32)
        }

        fn set(&mut self, range: &Range<u32>, taken: bool) {
            self.taken[range.start as usize..range.end as usize].fill(taken);
        }

        fn all_free(&self, range: &Range<u32>) -> bool {
            let slots = self.taken.get(range.start as usize..range.end as usize);
            slots.is_some_and(|slots| slots.iter().all(|&t| !t))
        }

        fn largest_free(&self) -> u32 {
            let holes = self.taken.split(|&t| t);
            holes.map(|hole| hole.len() as u32).max().unwrap_or(0)
        }
    }

    #[test]
    fn random_operations_match_a_bitmap_model() {
        const TOTAL: u32 = 512;
        const RESERVED: u32 = 3;
        let mut space = TableSpace::new(TOTAL, RESERVED);
        let mut model = Model {
            taken: (0..TOTAL).map(|slot| slot < RESERVED).collect(),
        };
        let mut live: Vec<Range<u32>> = Vec::new();
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        // allocated, allocation refused, freed, adopted, adoption refused
        let mut outcomes = [0u32; 5];
        for step in 0..5000 {
            let operation = random.below(100);
            if operation < 40 {
                let len = 1 + random.below(40);
                let got = space.allocate(len);
                assert_eq!(got, model.first_fit(len), "step {step}: allocate({len})");
                outcomes[if got.is_some() { 0 } else { 1 }] += 1;
                if let Some(range) = got {
                    model.set(&range, true);
                    live.push(range);
                }
            } else if operation < 80 && !live.is_empty() {
                let range = live.swap_remove(random.below(live.len() as u32) as usize);
                space.free(range.clone());
                model.set(&range, false);
                outcomes[2] += 1;
            } else {
                let start = random.below(TOTAL + 8);
                let range = start..start + 1 + random.below(30);
                let expected = model.all_free(&range);
                let got = space.mark_used(range.clone());
                assert_eq!(got, expected, "step {step}: mark_used({range:?})");
                outcomes[if got { 3 } else { 4 }] += 1;
                if got {
                    model.set(&range, true);
                    live.push(range);
                }
            }
            let model_free = model.taken.iter().filter(|&&t| !t).count() as u32;
            assert_eq!(space.free_slots(), model_free, "step {step}: free_slots");
            let largest = space.largest_free();
            assert_eq!(largest, model.largest_free(), "step {step}: largest_free");
        }
        // Guards the mix itself: each outcome must occur often enough to mean something.
        let rare = outcomes.iter().any(|&count| count < 100);
        assert!(!rare, "some outcome too rare to be tested: {outcomes:?}");
    }
}
