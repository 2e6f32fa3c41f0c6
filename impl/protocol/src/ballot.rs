//! Ballots (proposal numbers): `(round, node)`, ordered lexicographically, so each proposer's
//! ballots are unique and it can always pick one above any it has seen (DESIGN.md §2).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster configuration.
pub type NodeId = u32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every ballot a proposer can use: round 0 is never used.
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

    /// The lowest ballot of `node` above `seen`. `None` when the rounds are exhausted, so a
    /// caller can never silently wrap around and reuse a ballot.
    pub fn next_above(seen: Ballot, node: NodeId) -> Option<Ballot> {
        let round = if node > seen.node {
            seen.round
        } else {
            seen.round.checked_add(1)?
        };
        let round = round.max(1);
        Some(Ballot { round, node })
    }
}

impl fmt::Debug for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        assert!(Ballot { round: 1, node: 2 } < Ballot { round: 2, node: 0 });
        assert!(Ballot { round: 2, node: 0 } < Ballot { round: 2, node: 1 });
    }

    #[test]
    fn exhausted_rounds_give_no_ballot() {
        let last = Ballot {
            round: u64::MAX,
            node: 3,
        };
        assert_eq!(Ballot::next_above(last, 1), None);
    }

    proptest! {
        /// Each proposer's next ballot is above what it saw, its own, and minimal.
        #[test]
        fn next_above_is_the_lowest_own_ballot_above_seen(
            round in 0u64..1_000, seen_node in 0u32..8, node in 0u32..8
        ) {
            let seen = Ballot { round, node: seen_node };
            let next = Ballot::next_above(seen, node).expect("rounds left");
            prop_assert!(next > seen);
            prop_assert_eq!(next.node, node);
            prop_assert!(next.round >= 1);
            let one_lower = Ballot { round: next.round - 1, node };
            prop_assert!(one_lower <= seen || one_lower.round == 0);
        }
    }
}
