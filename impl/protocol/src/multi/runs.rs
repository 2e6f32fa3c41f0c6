//! Runs of consecutive slots: the one place where slots are cut into runs, for phase 2's
//! messages in the core (M4, M7, R1: one `Accept`, `Accepted` or `Decide` per run) and for
//! the runs of model deliveries that conformance's random walks hand the core as one input.

use super::types::Slot;

/// Built from `(slot, item)` pairs pushed in ascending slot order.
pub struct Runs<T> {
    run: Option<(Slot, Vec<T>)>,
}

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Runs { run: None }
    }
}

impl<T> Runs<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item` at `slot`; returns the run it ends (its first slot and items), if `slot`
    /// does not extend it.
    pub fn push(&mut self, slot: Slot, item: T) -> Option<(Slot, Vec<T>)> {
        if let Some((first, items)) = &mut self.run {
            if first.checked_add(items.len() as Slot) == Some(slot) {
                items.push(item);
                return None;
            }
        }
        self.run.replace((slot, vec![item]))
    }

    /// The last run, if any.
    pub fn finish(self) -> Option<(Slot, Vec<T>)> {
        self.run
    }

    /// Cuts `pairs` (ascending by slot) into runs.
    pub fn cut(pairs: impl IntoIterator<Item = (Slot, T)>) -> Vec<(Slot, Vec<T>)> {
        let mut runs = Runs::new();
        let mut cut: Vec<_> = pairs
            .into_iter()
            .filter_map(|(slot, item)| runs.push(slot, item))
            .collect();
        cut.extend(runs.finish());
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_slots_make_one_run_and_a_gap_or_a_repeat_starts_another() {
        let pairs = [(3, 'a'), (4, 'b'), (6, 'c'), (6, 'd'), (7, 'e')];
        assert_eq!(
            Runs::cut(pairs),
            vec![(3, vec!['a', 'b']), (6, vec!['c']), (6, vec!['d', 'e'])]
        );
        assert_eq!(Runs::<char>::cut([]), vec![]);
    }

    #[test]
    fn the_slot_after_the_largest_ends_the_run() {
        let mut runs = Runs::new();
        assert_eq!(runs.push(Slot::MAX, 'a'), None);
        assert_eq!(runs.push(0, 'b'), Some((Slot::MAX, vec!['a'])));
        assert_eq!(runs.finish(), Some((0, vec!['b'])));
    }
}
