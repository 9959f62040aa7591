//! [`RangeSet`]: a set of `u64` kept as sorted, disjoint, half-open ranges,
//! for the groups a receiver has verified, what it asks for on resume, and
//! what a sender has yet to send.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};

/// A set of `u64` stored as sorted, disjoint, non-adjacent half-open ranges
/// (`start..end`), merged as they are inserted: a file received in order is
/// one range, however large.
///
/// Members are below `u64::MAX` (a half-open range cannot end past it);
/// inserting `u64::MAX` does nothing. Every operation accepts any input,
/// empty and reversed ranges included, without panicking: ranges arrive from
/// the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start → end; no two ranges overlap or touch.
    ranges: BTreeMap<u64, u64>,
    /// The number of members, kept so [`len`](Self::len) is O(1).
    members: u64,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every member of `range`, merging with the ranges it overlaps or
    /// touches. An empty (or reversed) range adds nothing.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        // A range starting at or before `start` that reaches it absorbs it.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.remove_entry(s, e);
            }
        }
        // Every range starting inside (or right at the end of) the new one merges.
        while let Some((&s, &e)) = self.ranges.range(start..=end).next() {
            end = end.max(e);
            self.remove_entry(s, e);
        }
        self.ranges.insert(start, end);
        self.members += end - start;
    }

    /// Adds `x` (nothing for `u64::MAX`, see the type's documentation).
    pub fn insert_one(&mut self, x: u64) {
        if let Some(end) = x.checked_add(1) {
            self.insert(x..end);
        }
    }

    /// Whether `x` is a member.
    pub fn contains(&self, x: u64) -> bool {
        self.ranges.range(..=x).next_back().is_some_and(|(_, &end)| x < end)
    }

    /// The number of members (not of ranges; see [`ranges_count`](Self::ranges_count)).
    pub fn len(&self) -> u64 {
        self.members
    }

    /// Whether the set has no member.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The number of disjoint ranges the set is stored as.
    pub fn ranges_count(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges, in increasing order; no two overlap or touch.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&start, &end)| start..end)
    }

    /// The smallest number at or above `x` that is not a member.
    pub fn first_missing_from(&self, x: u64) -> u64 {
        match self.ranges.range(..=x).next_back() {
            // Ranges never touch, so a range's end is never a member.
            Some((_, &end)) if x < end => end,
            _ => x,
        }
    }

    /// The gaps of the set inside `range`, in increasing order: every
    /// non-member of `range`, as maximal ranges. Nothing for an empty range.
    pub fn missing_in(&self, range: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        let Range { start: mut cursor, end } = range;
        // The range that may hold `start`, then those starting inside `range`.
        let before = self.ranges.range(..=cursor).next_back();
        // (`BTreeMap::range` panics on an empty pair of excluded bounds.)
        let inside = (cursor < end).then(|| self.ranges.range((Bound::Excluded(cursor), Bound::Excluded(end))));
        let mut present = before.into_iter().chain(inside.into_iter().flatten()).map(|(&s, &e)| s..e);
        std::iter::from_fn(move || {
            while cursor < end {
                match present.next() {
                    Some(have) if have.end <= cursor => continue,
                    Some(have) if have.start <= cursor => cursor = have.end,
                    Some(have) => {
                        let gap = cursor..have.start;
                        cursor = have.end;
                        return Some(gap);
                    }
                    None => {
                        let gap = cursor..end;
                        cursor = end;
                        return Some(gap);
                    }
                }
            }
            None
        })
    }

    fn remove_entry(&mut self, start: u64, end: u64) {
        self.ranges.remove(&start);
        self.members -= end - start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::collections::BTreeSet;

    fn set(ranges: &[Range<u64>]) -> RangeSet {
        let mut set = RangeSet::new();
        ranges.iter().for_each(|r| set.insert(r.clone()));
        set
    }

    #[test]
    fn inserts_merge_overlapping_and_adjacent_ranges() {
        // Given 0..4 and 10..12,
        let mut s = set(&[0..4, 10..12]);
        assert_eq!((s.len(), s.ranges_count()), (6, 2));
        // when 4..6 touches the first, it extends it;
        s.insert(4..6);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..6, 10..12]);
        // when 5..11 overlaps both, one range remains;
        s.insert(5..11);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..12]);
        assert_eq!(s.len(), 12);
        // and single members fill a gap from either side.
        s.insert_one(13);
        s.insert_one(12);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..14]);
        // Empty and reversed ranges add nothing.
        s.insert(20..20);
        s.insert(Range { start: 30, end: 25 });
        assert_eq!((s.len(), s.ranges_count()), (14, 1));
    }

    #[test]
    fn queries_answer_at_the_edges() {
        let s = set(&[2..5, 8..9]);
        assert!(!s.contains(1) && s.contains(2) && s.contains(4) && !s.contains(5) && s.contains(8));
        assert_eq!([0, 2, 4, 5, 8, 9].map(|x| s.first_missing_from(x)), [0, 5, 5, 5, 9, 9]);
        let gaps = |r: Range<u64>| s.missing_in(r).collect::<Vec<_>>();
        assert_eq!(gaps(0..10), vec![0..2, 5..8, 9..10]);
        assert_eq!(gaps(3..8), vec![5..8]);
        assert_eq!(gaps(2..5), vec![]);
        assert_eq!(gaps(4..4), vec![]);
        assert_eq!(gaps(Range { start: 9, end: 7 }), vec![]);
        assert_eq!(RangeSet::new().missing_in(3..7).collect::<Vec<_>>(), vec![3..7]);
        assert!(RangeSet::new().is_empty() && !s.is_empty());
    }

    #[test]
    fn the_top_of_u64_is_handled_without_overflow() {
        let mut s = RangeSet::new();
        s.insert_one(u64::MAX);
        assert!(s.is_empty(), "u64::MAX cannot be a member");
        s.insert(u64::MAX - 2..u64::MAX);
        s.insert(0..u64::MAX - 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..u64::MAX]);
        assert_eq!(s.len(), u64::MAX);
        assert_eq!(s.first_missing_from(7), u64::MAX);
        assert!(!s.contains(u64::MAX));
        assert_eq!(s.missing_in(0..u64::MAX).count(), 0);
    }

    /// Given any sequence of inserts, the set answers every query as a
    /// `BTreeSet` of the same members does, and stays maximally merged.
    #[test]
    fn behaves_as_a_set_of_numbers_under_random_operations() {
        const UNIVERSE: u64 = 160;
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let (mut s, mut model) = (RangeSet::new(), BTreeSet::new());
            for _ in 0..rng.below(40) {
                if rng.below(3) == 0 {
                    let x = rng.below(UNIVERSE);
                    s.insert_one(x);
                    model.insert(x);
                } else {
                    let (a, b) = (rng.below(UNIVERSE), rng.below(UNIVERSE));
                    let len = rng.below(12);
                    // Mostly short ranges, sometimes arbitrary (and reversed) ones.
                    let r = if rng.below(4) == 0 { a..b } else { a..a + len };
                    s.insert(r.clone());
                    model.extend(r);
                }
                assert_eq!(s.len(), model.len() as u64, "seed {seed}");
                let ranges: Vec<_> = s.iter().collect();
                assert_eq!(ranges.len(), s.ranges_count());
                assert!(ranges.iter().all(|r| r.start < r.end), "seed {seed}: {ranges:?}");
                assert!(ranges.windows(2).all(|w| w[0].end < w[1].start), "seed {seed}: {ranges:?}");
                assert_eq!(ranges.iter().flat_map(|r| r.clone()).collect::<BTreeSet<_>>(), model);
                for x in 0..UNIVERSE + 15 {
                    assert_eq!(s.contains(x), model.contains(&x), "seed {seed}: contains {x}");
                    let missing = (x..).find(|y| !model.contains(y)).expect("finite");
                    assert_eq!(s.first_missing_from(x), missing, "seed {seed}: first missing from {x}");
                }
                let (a, b) = (rng.below(UNIVERSE + 10), rng.below(UNIVERSE + 10));
                let gaps: Vec<_> = s.missing_in(a..b).collect();
                let expected: BTreeSet<u64> = (a..b).filter(|x| !model.contains(x)).collect();
                assert_eq!(gaps.iter().flat_map(|r| r.clone()).collect::<BTreeSet<_>>(), expected, "seed {seed}");
                assert!(gaps.windows(2).all(|w| w[0].end < w[1].start), "seed {seed}: gaps maximal {gaps:?}");
                assert!(gaps.iter().all(|r| r.start < r.end));
            }
        }
    }
}
