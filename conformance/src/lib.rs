//! Conformance between the model (`paxos-model`) and the implementation's protocol crate
//! (`paxos-protocol`): the abstraction from implementation state to model state, and the
//! translation of model actions to implementation inputs. Only this crate sees both sides.
//!
//! So far: the ballot mapping; [`synod`], which replays every enabled transition of every
//! reachable Synod model state on the implementation's Synod core; [`multi`], which does the
//! same for every replica transition of the Multi-Paxos model on the implementation's replica
//! core (`paxos_protocol::multi`); [`conform`], one interface over both replays with field-by-field
//! diffs; [`check`], the exhaustive check behind `paxos-conform check` with shortest
//! divergence traces; and [`trace`], which replays `paxos-trace/2` files
//! (specs/trace-format.md).
//!
//! ```text
//!   trace file ──► model (from its config) ──► each step: action enabled? next state recorded?
//!                                                  │ (state, action)
//!                  synod::replay / multi::replay ◄─┘──► agree, or a DivergenceRecord
//! ```

pub mod check;
pub mod conform;
pub mod multi;
pub mod random;
pub mod synod;
pub mod trace;
pub mod validate;

use paxos_model::types::Ballot as ModelBallot;
use paxos_protocol::Ballot as ImplBallot;

/// Model ballots name their proposer by actor index; implementation ballots by node id. The
/// conformance harness numbers impl nodes by the model's actor indices, so the map is 1:1.
pub fn ballot_to_model<R: TryFrom<u64>>(ballot: ImplBallot) -> Option<ModelBallot<R>> {
    Some(ModelBallot {
        round: R::try_from(ballot.round).ok()?,
        proposer: u8::try_from(ballot.node).ok()?,
    })
}

pub fn ballot_to_impl<R: Into<u64>>(ballot: ModelBallot<R>) -> ImplBallot {
    ImplBallot {
        round: ballot.round.into(),
        node: u32::from(ballot.proposer),
    }
}

// Conformance replays the core in release builds too: without the `invariants` feature a state
// the model allows but the core's own invariants forbid would pass unseen.
const _: () = assert!(
    paxos_protocol::multi::INVARIANTS_CHECKED,
    "conformance needs the core's invariants checked: the `invariants` feature of paxos-protocol"
);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The two sides order ballots identically, so "promised ≥ b" means the same on both.
        #[test]
        fn ballot_order_is_preserved_both_ways(r1 in 0u8..=255, p1 in 0u8..16, r2 in 0u8..=255, p2 in 0u8..16) {
            let (a, b) = (ModelBallot { round: r1, proposer: p1 }, ModelBallot { round: r2, proposer: p2 });
            prop_assert_eq!(a.cmp(&b), ballot_to_impl(a).cmp(&ballot_to_impl(b)));
            prop_assert_eq!(ballot_to_model(ballot_to_impl(a)), Some(a));
        }
    }

    #[test]
    fn impl_ballots_beyond_the_model_bounds_have_no_model_image() {
        assert_eq!(
            ballot_to_model::<u8>(ImplBallot {
                round: 300,
                node: 0
            }),
            None
        );
    }
}
