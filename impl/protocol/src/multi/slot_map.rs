//! [`SlotMap`]: the replica's per-slot maps (votes and chosen entries), indexed by slot.
//!
//! A replica's log is appended at its end, read at its applied prefix and dropped from its
//! front by compaction. A `BTreeMap` keyed by slot pays a descent on every access, a node
//! allocation every few slots and half-empty leaves on appends; here the slots from the lowest
//! one held form a `VecDeque`, so an access is an index and an append a push. A slot far from
//! that run (a vote for a slot millions above a lagging replica's log, or an input that names
//! slot 2^63) goes to an ordered overflow map instead, so that no input can make the replica
//! allocate for a gap; the run absorbs overflow entries as it grows to meet them.
//!
//! It behaves as a `BTreeMap<Slot, T>`: the same iteration order, equality, `Debug` and serde
//! form (a map from slot to value), which the step logs and conformance read.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::{Bound, RangeBounds};

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::types::Slot;

/// The widest gap of empty slots the dense run is extended over to reach a new slot. Wider gaps
/// go to the overflow map: their cost would be one `Option<T>` per empty slot.
const GAP_MAX: u64 = 4096;

/// An ordered map from [`Slot`] to `T`, dense over a run of slots (see the module docs).
#[derive(Clone)]
pub struct SlotMap<T> {
    /// The slot of `dense[0]`.
    base: Slot,
    /// Slots `base..base + dense.len()`; its first and last elements are `Some`.
    dense: VecDeque<Option<T>>,
    /// Every slot held outside the dense run.
    overflow: BTreeMap<Slot, T>,
    len: usize,
}

impl<T> Default for SlotMap<T> {
    fn default() -> Self {
        SlotMap {
            base: 0,
            dense: VecDeque::new(),
            overflow: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> SlotMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the last slot of the dense run.
    fn end(&self) -> Slot {
        self.base + self.dense.len() as u64
    }

    fn dense_index(&self, slot: Slot) -> Option<usize> {
        (slot >= self.base && slot < self.end()).then(|| (slot - self.base) as usize)
    }

    pub fn get(&self, slot: &Slot) -> Option<&T> {
        match self.dense_index(*slot) {
            Some(i) => self.dense[i].as_ref(),
            None => self.overflow.get(slot),
        }
    }

    pub fn contains_key(&self, slot: &Slot) -> bool {
        self.get(slot).is_some()
    }

    /// Inserts `value` in `slot`, returning the value it replaces.
    pub fn insert(&mut self, slot: Slot, value: T) -> Option<T> {
        if let Some(i) = self.dense_index(slot) {
            let old = self.dense[i].replace(value);
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        let old = if self.overflow.is_empty() {
            None
        } else {
            self.overflow.remove(&slot)
        };
        if old.is_none() {
            self.len += 1;
        }
        if slot == Slot::MAX {
            // Never in the run, so that `end()` cannot overflow.
            self.overflow.insert(slot, value);
            return old;
        }
        if self.dense.is_empty() {
            self.base = slot;
            self.dense.push_back(Some(value));
        } else if slot >= self.end() && slot - self.end() <= GAP_MAX {
            let gap = (slot - self.end()) as usize;
            // Appending at the end, the common case, has no gap: skip the extend machinery.
            if gap > 0 {
                self.dense.extend(std::iter::repeat_with(|| None).take(gap));
            }
            self.dense.push_back(Some(value));
        } else if slot < self.base && self.base - slot <= GAP_MAX {
            let gap = (self.base - slot - 1) as usize;
            for _ in 0..gap {
                self.dense.push_front(None);
            }
            self.dense.push_front(Some(value));
            self.base = slot;
        } else {
            self.overflow.insert(slot, value);
            return old;
        }
        self.absorb_overflow();
        old
    }

    /// Moves the overflow entries the dense run now covers or touches into it.
    fn absorb_overflow(&mut self) {
        if self.overflow.is_empty() {
            return;
        }
        while let Some((&slot, _)) = self.overflow.range(self.end()..).next() {
            if slot == Slot::MAX || slot - self.end() > GAP_MAX {
                break;
            }
            let Some(value) = self.overflow.remove(&slot) else {
                break;
            };
            let gap = (slot - self.end()) as usize;
            // Appending at the end, the common case, has no gap: skip the extend machinery.
            if gap > 0 {
                self.dense.extend(std::iter::repeat_with(|| None).take(gap));
            }
            self.dense.push_back(Some(value));
        }
        while let Some((&slot, _)) = self.overflow.range(..self.base).next_back() {
            if self.base - slot > GAP_MAX {
                break;
            }
            let Some(value) = self.overflow.remove(&slot) else {
                break;
            };
            for _ in slot + 1..self.base {
                self.dense.push_front(None);
            }
            self.dense.push_front(Some(value));
            self.base = slot;
        }
        // Nothing can lie inside the run: an overflow entry is more than `GAP_MAX` from the
        // run's end it was put beside, only removals move an end away from it, and the run
        // grows over a gap of at most `GAP_MAX`, absorbing in slot order as it goes.
        debug_assert!(
            self.overflow.range(self.base..self.end()).next().is_none(),
            "an overflow entry inside the run"
        );
    }

    pub fn remove(&mut self, slot: &Slot) -> Option<T> {
        let old = match self.dense_index(*slot) {
            Some(i) => self.dense[i].take(),
            None => self.overflow.remove(slot),
        };
        if old.is_some() {
            self.len -= 1;
            self.trim();
        }
        old
    }

    /// Drops every slot below `slot` (compaction).
    pub fn remove_below(&mut self, slot: Slot) {
        let kept = self.overflow.split_off(&slot);
        self.len -= self.overflow.len();
        self.overflow = kept;
        if slot > self.base {
            let drop = ((slot - self.base).min(self.dense.len() as u64)) as usize;
            self.len -= self.dense.drain(..drop).flatten().count();
            self.base += drop as u64;
        }
        self.trim();
    }

    /// Restores "the run starts and ends with a value".
    fn trim(&mut self) {
        while matches!(self.dense.back(), Some(None)) {
            self.dense.pop_back();
        }
        while matches!(self.dense.front(), Some(None)) {
            self.dense.pop_front();
            self.base += 1;
        }
    }

    /// The entries with slots in `range`, in slot order.
    pub fn range<R: RangeBounds<Slot>>(&self, range: R) -> Iter<'_, T> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // Exclusive; saturating is exact for the run, which never holds `Slot::MAX`.
        let end = match range.end_bound() {
            Bound::Included(&s) => s.saturating_add(1),
            Bound::Excluded(&s) => s,
            Bound::Unbounded => Slot::MAX,
        };
        let dense_from = start.clamp(self.base, self.end());
        let dense_to = end.clamp(dense_from, self.end());
        let dense = self
            .dense
            .range((dense_from - self.base) as usize..(dense_to - self.base) as usize);
        let below = (start < self.base).then(|| {
            let to = end.min(self.base);
            self.overflow.range(start..to.max(start))
        });
        let beyond_run = match range.end_bound() {
            Bound::Included(&s) => s >= self.end(),
            Bound::Excluded(&s) => s > self.end(),
            Bound::Unbounded => true,
        };
        let above = beyond_run.then(|| {
            let from = start.max(self.end());
            let upper = match range.end_bound() {
                Bound::Included(&s) => Bound::Included(s),
                Bound::Excluded(&s) => Bound::Excluded(s),
                Bound::Unbounded => Bound::Unbounded,
            };
            self.overflow.range((Bound::Included(from), upper))
        });
        Iter {
            below: below.into_iter().flatten(),
            dense: dense.enumerate(),
            dense_base: dense_from,
            above: above.into_iter().flatten(),
        }
    }

    pub fn iter(&self) -> Iter<'_, T> {
        self.range(..)
    }

    /// The entries with slots in `range`, in slot order, mutable.
    pub fn range_mut(&mut self, range: std::ops::Range<Slot>) -> IterMut<'_, T> {
        let start = range.start;
        let end = range.end.max(start);
        let dense_from = start.clamp(self.base, self.end());
        let dense_to = end.clamp(dense_from, self.end());
        let from = (dense_from - self.base) as usize;
        let to = (dense_to - self.base) as usize;
        IterMut {
            base: self.base,
            overflow: self.overflow.range_mut(start..end).peekable(),
            dense: self.dense.range_mut(from..to).enumerate(),
            dense_base: dense_from,
        }
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = Slot> + '_ {
        self.iter().map(|(slot, _)| slot)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// What turns `base` into `self`: the entries `base` lacks or holds with another value,
    /// and the slots only `base` holds ([`SlotMap::patched`] applies them). One pass over
    /// both; nothing is cloned where they agree.
    pub fn changes_from(&self, base: &SlotMap<T>) -> (SlotMap<T>, Vec<Slot>)
    where
        T: Clone + PartialEq,
    {
        let mut changed = SlotMap::new();
        let mut removed = Vec::new();
        let mut ours = self.iter().peekable();
        let mut theirs = base.iter().peekable();
        loop {
            match (ours.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(&(slot, value)), None) => {
                    changed.insert(slot, value.clone());
                    ours.next();
                }
                (None, Some(&(slot, _))) => {
                    removed.push(slot);
                    theirs.next();
                }
                (Some(&(a, value)), Some(&(b, old))) => {
                    if a < b {
                        changed.insert(a, value.clone());
                        ours.next();
                    } else if b < a {
                        removed.push(b);
                        theirs.next();
                    } else {
                        if value != old {
                            changed.insert(a, value.clone());
                        }
                        ours.next();
                        theirs.next();
                    }
                }
            }
        }
        (changed, removed)
    }

    /// `self` with the entries of `changed` set and the slots of `removed` dropped, as
    /// [`SlotMap::changes_from`] gives them.
    pub fn patched(mut self, changed: &SlotMap<T>, removed: &[Slot]) -> SlotMap<T>
    where
        T: Clone,
    {
        for slot in removed {
            self.remove(slot);
        }
        for (slot, value) in changed.iter() {
            self.insert(slot, value.clone());
        }
        self
    }

    /// The highest slot held.
    pub fn last_slot(&self) -> Option<Slot> {
        let above = self.overflow.range(self.end()..).next_back();
        let dense = self.dense.back().map(|_| self.end() - 1);
        let below = self.overflow.range(..self.base).next_back();
        above.map(|(&s, _)| s).or(dense).or(below.map(|(&s, _)| s))
    }
}

/// The iterator of [`SlotMap::range`]: overflow below the run, the run, overflow above it.
pub struct Iter<'a, T> {
    below:
        std::iter::Flatten<std::option::IntoIter<std::collections::btree_map::Range<'a, Slot, T>>>,
    dense: std::iter::Enumerate<std::collections::vec_deque::Iter<'a, Option<T>>>,
    dense_base: Slot,
    above:
        std::iter::Flatten<std::option::IntoIter<std::collections::btree_map::Range<'a, Slot, T>>>,
}

/// Yields owned slots (the run stores no keys), unlike `BTreeMap`'s `(&K, &V)`.
impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (Slot, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((&slot, value)) = self.below.next() {
            return Some((slot, value));
        }
        for (i, value) in self.dense.by_ref() {
            if let Some(value) = value {
                return Some((self.dense_base + i as u64, value));
            }
        }
        self.above.next().map(|(&slot, value)| (slot, value))
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if let Some((&slot, value)) = self.above.next_back() {
            return Some((slot, value));
        }
        while let Some((i, value)) = self.dense.next_back() {
            if let Some(value) = value {
                return Some((self.dense_base + i as u64, value));
            }
        }
        self.below.next_back().map(|(&slot, value)| (slot, value))
    }
}

/// The iterator of [`SlotMap::range_mut`]. Overflow entries lie below or above the run, never
/// inside it, so the overflow range yields those below `base` before the run and the rest after.
pub struct IterMut<'a, T> {
    base: Slot,
    overflow: std::iter::Peekable<std::collections::btree_map::RangeMut<'a, Slot, T>>,
    dense: std::iter::Enumerate<std::collections::vec_deque::IterMut<'a, Option<T>>>,
    dense_base: Slot,
}

impl<'a, T> Iterator for IterMut<'a, T> {
    type Item = (Slot, &'a mut T);

    fn next(&mut self) -> Option<Self::Item> {
        if self
            .overflow
            .peek()
            .is_some_and(|(&slot, _)| slot < self.base)
        {
            return self.overflow.next().map(|(&slot, value)| (slot, value));
        }
        for (i, value) in self.dense.by_ref() {
            if let Some(value) = value {
                return Some((self.dense_base + i as u64, value));
            }
        }
        self.overflow.next().map(|(&slot, value)| (slot, value))
    }
}

impl<'a, T> IntoIterator for &'a SlotMap<T> {
    type Item = (Slot, &'a T);
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> FromIterator<(Slot, T)> for SlotMap<T> {
    fn from_iter<I: IntoIterator<Item = (Slot, T)>>(iter: I) -> Self {
        let mut map = SlotMap::new();
        for (slot, value) in iter {
            map.insert(slot, value);
        }
        map
    }
}

impl<T: PartialEq> PartialEq for SlotMap<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for SlotMap<T> {}

impl<T: fmt::Debug> fmt::Debug for SlotMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T: Serialize> Serialize for SlotMap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The length up front, as `BTreeMap` gives it: postcard (snapshots) needs it.
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (slot, value) in self.iter() {
            map.serialize_entry(&slot, value)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SlotMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<Slot, T>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(Slot, u32),
        Remove(Slot),
        RemoveBelow(Slot),
        /// Adds to every value in `from..to`, through `range_mut`.
        AddInRange(Slot, Slot, u32),
    }

    /// Slots near 0, near a far slot and at the top of the range: appends, gaps within and
    /// beyond `GAP_MAX`, and the overflow map on both sides of the run.
    fn slot() -> impl Strategy<Value = Slot> {
        prop_oneof![
            0..64u64,
            (0..3u64).prop_map(|k| k * GAP_MAX),
            (0..16u64).prop_map(|d| 3 * GAP_MAX + d),
            (0..4u64).prop_map(|d| 1_000_000 + d),
            (0..2u64).prop_map(|d| u64::MAX - d),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (slot(), any::<u32>()).prop_map(|(s, v)| Op::Insert(s, v)),
            2 => slot().prop_map(Op::Remove),
            1 => slot().prop_map(Op::RemoveBelow),
            2 => (slot(), slot(), any::<u32>()).prop_map(|(a, b, v)| Op::AddInRange(a, b, v)),
        ]
    }

    fn check(map: &SlotMap<u32>, reference: &BTreeMap<Slot, u32>, probes: &[Slot]) {
        let all: Vec<(Slot, &u32)> = reference.iter().map(|(&s, v)| (s, v)).collect();
        assert_eq!(map.iter().collect::<Vec<_>>(), all);
        assert_eq!(map.iter().rev().collect::<Vec<_>>(), {
            let mut rev = all.clone();
            rev.reverse();
            rev
        });
        assert_eq!(map.len(), reference.len());
        assert_eq!(map.is_empty(), reference.is_empty());
        assert_eq!(map.last_slot(), reference.keys().next_back().copied());
        for &a in probes {
            assert_eq!(map.get(&a), reference.get(&a));
            for &b in probes.iter().filter(|&&b| b >= a) {
                let got: Vec<_> = map.range(a..b).collect();
                let want: Vec<_> = reference.range(a..b).map(|(&s, v)| (s, v)).collect();
                assert_eq!(got, want, "range {a}..{b}");
                let got: Vec<_> = map.range(a..=b).collect();
                let want: Vec<_> = reference.range(a..=b).map(|(&s, v)| (s, v)).collect();
                assert_eq!(got, want, "range {a}..={b}");
            }
            let got: Vec<_> = map.range(a..).collect();
            let want: Vec<_> = reference.range(a..).map(|(&s, v)| (s, v)).collect();
            assert_eq!(got, want, "range {a}..");
        }
    }

    proptest! {
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 1..80)) {
            let mut map = SlotMap::new();
            let mut reference = BTreeMap::new();
            let mut probes: Vec<Slot> = vec![0, 1, GAP_MAX, 3 * GAP_MAX + 3, u64::MAX];
            // Halfway through, for the changes the second half makes.
            let mut before = SlotMap::new();
            let half = ops.len() / 2;
            for (i, op) in ops.into_iter().enumerate() {
                if i == half {
                    before = map.clone();
                }
                match op {
                    Op::Insert(s, v) => {
                        prop_assert_eq!(map.insert(s, v), reference.insert(s, v));
                        probes.push(s);
                    }
                    Op::Remove(s) => prop_assert_eq!(map.remove(&s), reference.remove(&s)),
                    Op::RemoveBelow(s) => {
                        map.remove_below(s);
                        reference = reference.split_off(&s);
                    }
                    Op::AddInRange(a, b, v) => {
                        let mut visited = Vec::new();
                        for (slot, value) in map.range_mut(a..b) {
                            *value = value.wrapping_add(v);
                            visited.push(slot);
                        }
                        let mut want = Vec::new();
                        for (&slot, value) in reference.range_mut(a..b.max(a)) {
                            *value = value.wrapping_add(v);
                            want.push(slot);
                        }
                        prop_assert_eq!(visited, want, "range_mut {}..{}", a, b);
                    }
                }
                check(&map, &reference, &probes);
            }
            let json = serde_json::to_string(&map).expect("serialises");
            prop_assert_eq!(&json, &serde_json::to_string(&reference).expect("serialises"));
            let back: SlotMap<u32> = serde_json::from_str(&json).expect("its own JSON");
            prop_assert_eq!(&back, &map);
            let (changed, removed) = map.changes_from(&before);
            prop_assert_eq!(&before.clone().patched(&changed, &removed), &map);
            prop_assert!(changed.iter().all(|(slot, value)| before.get(&slot) != Some(value)));
            prop_assert!(removed.iter().all(|slot| before.contains_key(slot) && !map.contains_key(slot)));
            let bytes = postcard::to_allocvec(&map).expect("serialises");
            prop_assert_eq!(&bytes, &postcard::to_allocvec(&reference).expect("serialises"));
            let back: SlotMap<u32> = postcard::from_bytes(&bytes).expect("its own bytes");
            prop_assert_eq!(back, map);
        }
    }

    #[test]
    fn a_far_slot_allocates_no_gap() {
        let mut map = SlotMap::new();
        map.insert(0, 1u8);
        map.insert(u64::MAX, 2);
        map.insert(1 << 40, 3);
        assert_eq!(map.dense.len(), 1);
        assert_eq!(map.overflow.len(), 2);
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            [(0, &1), (1 << 40, &3), (u64::MAX, &2)]
        );
    }

    /// The layout is the point of the type: a slot up to `GAP_MAX` from either end of the run
    /// joins it, one further waits in the overflow map, and an overflow entry joins the run
    /// once the run comes within `GAP_MAX` of it. (The `BTreeMap` proptest cannot see this:
    /// where an entry lives changes no answer, only the cost. cargo-mutants found each bound.)
    #[test]
    fn slots_join_the_run_exactly_within_the_gap_bound() {
        let below = |base: Slot, distance: Slot| {
            let mut map = SlotMap::new();
            map.insert(base, 0u8);
            map.insert(base - distance, 1);
            (map.dense.len(), map.overflow.len())
        };
        assert_eq!(below(10_000, GAP_MAX), (GAP_MAX as usize + 1, 0));
        assert_eq!(below(10_000, GAP_MAX + 1), (1, 1));
        let above = |distance: Slot| {
            let mut map = SlotMap::new();
            map.insert(0, 0u8);
            map.insert(1 + distance, 1);
            (map.dense.len(), map.overflow.len())
        };
        assert_eq!(above(GAP_MAX), (GAP_MAX as usize + 2, 0));
        assert_eq!(above(GAP_MAX + 1), (1, 1));

        // Absorbed from above once the run's end is exactly `GAP_MAX` below the entry.
        let mut map = SlotMap::new();
        map.insert(0, 0u8);
        map.insert(2 * GAP_MAX + 2, 2);
        assert_eq!(map.overflow.len(), 1);
        map.insert(GAP_MAX + 1, 1);
        assert_eq!(
            (map.dense.len(), map.overflow.len()),
            (2 * GAP_MAX as usize + 3, 0)
        );

        // Absorbed from below once the run's base is exactly `GAP_MAX` above the entry.
        let mut map = SlotMap::new();
        map.insert(20_000, 0u8);
        map.insert(20_000 - 2 * GAP_MAX, 2);
        assert_eq!(map.overflow.len(), 1);
        map.insert(20_000 - GAP_MAX, 1);
        assert_eq!((map.base, map.overflow.len()), (20_000 - 2 * GAP_MAX, 0));
        assert_eq!(map.len(), 3);
    }

    /// Equality and `Debug` read the entries, as a `BTreeMap`'s do (cargo-mutants: the
    /// lib's tests never compared two maps that differ, nor printed one).
    #[test]
    fn equality_and_debug_read_as_a_btree_map() {
        let entries = [(1, 1u8), (2 * GAP_MAX, 2)];
        let map: SlotMap<u8> = entries.into_iter().collect();
        let shorter: SlotMap<u8> = entries[..1].iter().copied().collect();
        let other_value: SlotMap<u8> = [(1, 1u8), (2 * GAP_MAX, 3)].into_iter().collect();
        assert_eq!(map, map.clone());
        assert_ne!(map, shorter);
        assert_ne!(map, other_value, "same length, another value");
        assert_eq!(format!("{map:?}"), format!("{:?}", BTreeMap::from(entries)));
    }

    #[test]
    fn appends_stay_in_the_run() {
        let mut map = SlotMap::new();
        for slot in 10..1000 {
            map.insert(slot, slot);
        }
        map.remove_below(500);
        assert_eq!(
            (map.base, map.dense.len(), map.overflow.len()),
            (500, 500, 0)
        );
        assert_eq!(map.get(&999), Some(&999));
    }
}
