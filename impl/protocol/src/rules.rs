//! The rules of Paxos that the single-decree core ([`crate::synod`]) and the Multi-Paxos
//! replica ([`crate::multi`]) share, written once: an acceptor's answer to a Prepare and to an
//! Accept, how a proposer picks the value to propose from the Promises, and what a majority
//! is. The Multi-Paxos replica applies the first two to its one promise for the whole log and
//! the third per slot; `specs/protocol.md` names the rules (S2, S4–S8; M2, M3, M6).

use std::cmp::Ordering;

use crate::ballot::Ballot;

/// An acceptor's answer to `Prepare(ballot)` (S4–S6, M2–M2'').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepareVerdict {
    /// Above the promise (or no promise yet): promise it, persisting the promise first.
    Promise,
    /// Exactly the promise: answer with the same Promise again, nothing to write.
    Repeat,
    /// Below the promise: refuse with a Nack carrying the promise.
    Refuse { promised: Ballot },
}

/// S4–S6, M2: the answer to `Prepare(ballot)` of an acceptor promised to `promised`.
pub fn on_prepare(promised: Option<Ballot>, ballot: Ballot) -> PrepareVerdict {
    match promised.map(|p| ballot.cmp(&p)) {
        None | Some(Ordering::Greater) => PrepareVerdict::Promise,
        Some(Ordering::Equal) => PrepareVerdict::Repeat,
        Some(Ordering::Less) => PrepareVerdict::Refuse {
            promised: promised.unwrap_or(ballot),
        },
    }
}

/// S7–S8, M6–M6': an acceptor promised to `promised` may accept at `ballot` exactly when the
/// ballot is not below the promise; `Err` carries the promise for the Nack.
pub fn may_accept(promised: Option<Ballot>, ballot: Ballot) -> Result<(), Ballot> {
    match promised {
        Some(promised) if promised > ballot => Err(promised),
        _ => Ok(()),
    }
}

/// S2, M3 value selection: whether `vote` should replace `current` as the vote a proposer
/// re-proposes, i.e. whether it was cast at a strictly higher ballot (the first of equal
/// ballots is kept: at one ballot only one value is ever proposed).
pub fn is_higher_vote<V>(current: Option<&(Ballot, V)>, vote: &(Ballot, V)) -> bool {
    current.is_none_or(|(ballot, _)| vote.0 > *ballot)
}

/// The smallest number of `n` acceptors any two of which intersect.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(round: u64, node: u32) -> Ballot {
        Ballot { round, node }
    }

    #[test]
    fn prepare_is_promised_above_repeated_at_and_refused_below_the_promise() {
        assert_eq!(on_prepare(None, b(1, 0)), PrepareVerdict::Promise);
        assert_eq!(on_prepare(Some(b(1, 0)), b(1, 1)), PrepareVerdict::Promise);
        assert_eq!(on_prepare(Some(b(1, 1)), b(1, 1)), PrepareVerdict::Repeat);
        assert_eq!(
            on_prepare(Some(b(2, 0)), b(1, 1)),
            PrepareVerdict::Refuse { promised: b(2, 0) }
        );
    }

    #[test]
    fn accept_is_allowed_at_or_above_the_promise_only() {
        assert_eq!(may_accept(None, b(1, 0)), Ok(()));
        assert_eq!(may_accept(Some(b(1, 0)), b(1, 0)), Ok(()));
        assert_eq!(may_accept(Some(b(1, 0)), b(2, 0)), Ok(()));
        assert_eq!(may_accept(Some(b(2, 0)), b(1, 9)), Err(b(2, 0)));
    }

    #[test]
    fn the_highest_ballot_vote_wins_and_ties_keep_the_first() {
        assert!(is_higher_vote(None, &(b(1, 0), 'a')));
        assert!(is_higher_vote(Some(&(b(1, 0), 'a')), &(b(2, 0), 'b')));
        assert!(!is_higher_vote(Some(&(b(2, 0), 'a')), &(b(1, 0), 'b')));
        assert!(!is_higher_vote(Some(&(b(1, 0), 'a')), &(b(1, 0), 'a')));
    }

    #[test]
    fn majorities_intersect() {
        for n in 1..10 {
            assert!(2 * majority(n) > n && 2 * (majority(n) - 1) <= n, "{n}");
        }
    }
}
