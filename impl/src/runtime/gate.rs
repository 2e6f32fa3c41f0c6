//! Persist before you speak: effects wait here until every WAL submission made before them is
//! durable, and leave in the order they came.
//!
//! ```text
//!   submit() -> n          hold(effects)  ─► waits for submissions 1..=n (n = last submitted)
//!   durable(m) ─► releases, oldest first, every held batch whose submissions are all ≤ m
//! ```
//!
//! A batch held when nothing is outstanding is released by the next [`DurabilityGate::ready`].
//! Batches that wrote nothing still wait for the submissions before them: a repeated Promise
//! must not overtake the write of the promise it repeats. The group-commit writer completes
//! submissions in order, so "submission m is durable" means every one up to m is.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct DurabilityGate<T> {
    submitted: u64,
    durable: u64,
    held: VecDeque<(u64, Vec<T>)>,
}

impl<T> Default for DurabilityGate<T> {
    fn default() -> Self {
        DurabilityGate {
            submitted: 0,
            durable: 0,
            held: VecDeque::new(),
        }
    }
}

impl<T> DurabilityGate<T> {
    /// Counts a new WAL submission and returns its number (from 1).
    pub fn submit(&mut self) -> u64 {
        self.submitted += 1;
        self.submitted
    }

    /// Holds `items` until every submission made so far is durable.
    pub fn hold(&mut self, items: Vec<T>) {
        if !items.is_empty() {
            self.held.push_back((self.submitted, items));
        }
    }

    /// Submission `n` (and so every earlier one) is durable.
    pub fn durable(&mut self, n: u64) {
        self.durable = self.durable.max(n);
    }

    /// Every held item whose submissions are durable, oldest first.
    pub fn ready(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(after, _)| *after <= self.durable)
        {
            if let Some((_, items)) = self.held.pop_front() {
                out.extend(items);
            }
        }
        out
    }

    /// Whether some submission is not durable yet.
    pub fn outstanding(&self) -> bool {
        self.durable < self.submitted
    }

    /// Submissions made and not durable yet.
    pub fn undurable(&self) -> u64 {
        self.submitted.saturating_sub(self.durable)
    }

    /// Items still held.
    pub fn held(&self) -> usize {
        self.held.iter().map(|(_, items)| items.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_wait_for_their_own_records() {
        let mut gate = DurabilityGate::default();
        let n = gate.submit();
        gate.hold(vec!["accept to 1", "accept to 2"]);
        assert!(gate.ready().is_empty(), "nothing leaves before the fsync");
        assert!(gate.outstanding());
        gate.durable(n);
        assert_eq!(gate.ready(), vec!["accept to 1", "accept to 2"]);
        assert!(!gate.outstanding());
    }

    #[test]
    fn a_step_without_records_waits_behind_earlier_records() {
        let mut gate = DurabilityGate::default();
        let first = gate.submit();
        gate.hold(vec!["promise (after persisting it)"]);
        gate.hold(vec!["promise repeated (M2')"]);
        assert!(gate.ready().is_empty());
        gate.durable(first);
        assert_eq!(
            gate.ready(),
            vec!["promise (after persisting it)", "promise repeated (M2')"]
        );
    }

    #[test]
    fn with_nothing_outstanding_effects_leave_at_once() {
        let mut gate: DurabilityGate<&str> = DurabilityGate::default();
        gate.hold(vec!["heartbeat-like"]);
        assert_eq!(gate.ready(), vec!["heartbeat-like"]);
        assert_eq!(gate.held(), 0);
    }

    #[test]
    fn later_submissions_release_in_order_and_only_up_to_the_durable_one() {
        let mut gate = DurabilityGate::default();
        let one = gate.submit();
        gate.hold(vec![1]);
        let two = gate.submit();
        gate.hold(vec![2]);
        let three = gate.submit();
        gate.hold(vec![3]);
        gate.durable(two);
        assert_eq!(gate.ready(), vec![1, 2]);
        gate.durable(one); // a late, lower notification changes nothing
        assert!(gate.ready().is_empty());
        gate.durable(three);
        assert_eq!(gate.ready(), vec![3]);
    }
}
