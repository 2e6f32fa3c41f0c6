//! The single-decree (Synod) protocol core: acceptor, proposer and learner as deterministic
//! state machines. Events in, effects out, no IO: the runtime performs every [`Effect`] in
//! order, and must make a `Persist` durable before it performs any effect after it.
//!
//! ```text
//!   Input ──► step ──► [Persist(..), Send { to, msg }, SetRetryTimer, Learned(v), ..]
//! ```
//!
//! The transitions are those of `specs/protocol.md` (S1–S9); each handler names its rule.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ballot::{Ballot, NodeId};
use crate::rules::{self, PrepareVerdict};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<V> {
    Prepare {
        ballot: Ballot,
    },
    Promise {
        ballot: Ballot,
        accepted: Option<(Ballot, V)>,
    },
    Nack {
        ballot: Ballot,
        promised: Ballot,
    },
    Accept {
        ballot: Ballot,
        value: V,
    },
    Accepted {
        ballot: Ballot,
        value: V,
    },
}

/// What survives a crash, per role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durable<V> {
    Proposer {
        round: u64,
    },
    Acceptor {
        promised: Option<Ballot>,
        accepted: Option<(Ballot, V)>,
    },
    Learner {
        learned: V,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect<V> {
    /// Make this durable before performing any later effect of the same step.
    Persist(Durable<V>),
    Send {
        to: NodeId,
        msg: Message<V>,
    },
    SetRetryTimer,
    CancelRetryTimer,
    Learned(V),
}

/// S4–S8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acceptor<V> {
    pub promised: Option<Ballot>,
    pub accepted: Option<(Ballot, V)>,
    pub learners: Vec<NodeId>,
}

impl<V: Clone + PartialEq> Acceptor<V> {
    pub fn new(learners: Vec<NodeId>) -> Self {
        Acceptor {
            promised: None,
            accepted: None,
            learners,
        }
    }

    /// Recovery: a vote is also a promise.
    pub fn recover(learners: Vec<NodeId>, durable: Option<Durable<V>>) -> Self {
        let mut acceptor = Acceptor::new(learners);
        if let Some(Durable::Acceptor { promised, accepted }) = durable {
            acceptor.promised = promised.max(accepted.as_ref().map(|(b, _)| *b));
            acceptor.accepted = accepted;
        }
        acceptor
    }

    /// S4 (new promise), S5 (repeat), S6 (Nack).
    pub fn on_prepare(&mut self, from: NodeId, ballot: Ballot) -> Vec<Effect<V>> {
        tracing::debug!(role = "acceptor", input = "prepare", from, %ballot, promised = ?self.promised);
        match rules::on_prepare(self.promised, ballot) {
            PrepareVerdict::Refuse { promised } => {
                vec![Effect::Send {
                    to: from,
                    msg: Message::Nack { ballot, promised },
                }]
            }
            PrepareVerdict::Repeat => vec![self.promise(from, ballot)],
            PrepareVerdict::Promise => {
                self.promised = Some(ballot);
                vec![self.persist(), self.promise(from, ballot)]
            }
        }
    }

    /// S7 (accept) and S8 (Nack).
    pub fn on_accept(&mut self, from: NodeId, ballot: Ballot, value: V) -> Vec<Effect<V>> {
        tracing::debug!(role = "acceptor", input = "accept", from, %ballot, promised = ?self.promised);
        if let Err(promised) = rules::may_accept(self.promised, ballot) {
            return vec![Effect::Send {
                to: from,
                msg: Message::Nack { ballot, promised },
            }];
        }
        let changed = self.promised != Some(ballot)
            || self
                .accepted
                .as_ref()
                .is_none_or(|(b, v)| (*b, v) != (ballot, &value));
        let mut effects = Vec::new();
        if changed {
            // A repeated Accept re-sends Accepted without a new write, as the model does.
            self.promised = Some(ballot);
            self.accepted = Some((ballot, value.clone()));
            effects.push(self.persist());
        }
        effects.extend(self.learners.iter().map(|&to| Effect::Send {
            to,
            msg: Message::Accepted {
                ballot,
                value: value.clone(),
            },
        }));
        effects
    }

    fn promise(&self, to: NodeId, ballot: Ballot) -> Effect<V> {
        Effect::Send {
            to,
            msg: Message::Promise {
                ballot,
                accepted: self.accepted.clone(),
            },
        }
    }

    fn persist(&self) -> Effect<V> {
        Effect::Persist(Durable::Acceptor {
            promised: self.promised,
            accepted: self.accepted.clone(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase<V> {
    Idle,
    Preparing {
        promises: BTreeSet<NodeId>,
        highest: Option<(Ballot, V)>,
    },
    Accepting {
        value: V,
    },
}

/// S1–S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposer<V> {
    pub node: NodeId,
    pub acceptors: Vec<NodeId>,
    pub value: V,
    /// The highest round used, or known to be superseded by a Nack.
    pub round: u64,
    pub max_round: u64,
    pub phase: Phase<V>,
}

impl<V: Clone + Ord> Proposer<V> {
    /// A proposer starting from `durable` (None on first start); the caller arms the retry
    /// timer when [`Proposer::can_retry`].
    pub fn recover(
        node: NodeId,
        acceptors: Vec<NodeId>,
        value: V,
        max_round: u64,
        durable: Option<Durable<V>>,
    ) -> Self {
        let round = match durable {
            Some(Durable::Proposer { round }) => round,
            _ => 0,
        };
        Proposer {
            node,
            acceptors,
            value,
            round,
            max_round,
            phase: Phase::Idle,
        }
    }

    pub fn ballot(&self) -> Ballot {
        Ballot {
            round: self.round,
            node: self.node,
        }
    }

    pub fn can_retry(&self) -> bool {
        self.round < self.max_round
    }

    fn majority(&self) -> usize {
        rules::majority(self.acceptors.len())
    }

    /// S1: start the next round; the round is persisted before its Prepare is sent.
    pub fn on_retry_timeout(&mut self) -> Vec<Effect<V>> {
        tracing::debug!(
            role = "proposer",
            input = "retry_timeout",
            node = self.node,
            round = self.round
        );
        if !self.can_retry() {
            return Vec::new();
        }
        self.round += 1;
        self.phase = Phase::Preparing {
            promises: BTreeSet::new(),
            highest: None,
        };
        let ballot = self.ballot();
        let mut effects = vec![Effect::Persist(Durable::Proposer { round: self.round })];
        effects.extend(self.acceptors.iter().map(|&to| Effect::Send {
            to,
            msg: Message::Prepare { ballot },
        }));
        if self.can_retry() {
            effects.push(Effect::SetRetryTimer);
        }
        effects
    }

    /// S2: count the Promise; on a majority, propose the highest vote's value or our own.
    pub fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Option<(Ballot, V)>,
    ) -> Vec<Effect<V>> {
        tracing::debug!(role = "proposer", input = "promise", node = self.node, from, %ballot);
        let current = self.ballot();
        let majority = self.majority();
        let Phase::Preparing { promises, highest } = &mut self.phase else {
            return Vec::new();
        };
        if ballot != current || !promises.insert(from) {
            return Vec::new();
        }
        if let Some(vote) = accepted {
            if rules::is_higher_vote(highest.as_ref(), &vote) {
                *highest = Some(vote);
            }
        }
        if promises.len() < majority {
            return Vec::new();
        }
        let value = highest
            .as_ref()
            .map_or_else(|| self.value.clone(), |(_, v)| v.clone());
        self.phase = Phase::Accepting {
            value: value.clone(),
        };
        self.acceptors
            .iter()
            .map(|&to| Effect::Send {
                to,
                msg: Message::Accept {
                    ballot,
                    value: value.clone(),
                },
            })
            .collect()
    }

    /// S3: give up the ballot; the next retry starts above the promise we ran into.
    pub fn on_nack(&mut self, ballot: Ballot, promised: Ballot) -> Vec<Effect<V>> {
        tracing::debug!(role = "proposer", input = "nack", node = self.node, %ballot, %promised);
        if matches!(self.phase, Phase::Idle) || ballot != self.ballot() {
            return Vec::new();
        }
        self.phase = Phase::Idle;
        self.round = self.round.max(promised.round);
        if self.can_retry() {
            Vec::new()
        } else {
            vec![Effect::CancelRetryTimer]
        }
    }
}

/// S9.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learner<V> {
    pub acceptors: usize,
    pub learned: Option<V>,
    pub votes: BTreeMap<(Ballot, V), BTreeSet<NodeId>>,
}

impl<V: Clone + Ord> Learner<V> {
    pub fn recover(acceptors: usize, durable: Option<Durable<V>>) -> Self {
        let learned = match durable {
            Some(Durable::Learner { learned }) => Some(learned),
            _ => None,
        };
        Learner {
            acceptors,
            learned,
            votes: BTreeMap::new(),
        }
    }

    /// S9: learn a value once a majority accepted it in the same ballot.
    pub fn on_accepted(&mut self, from: NodeId, ballot: Ballot, value: V) -> Vec<Effect<V>> {
        tracing::debug!(role = "learner", input = "accepted", from, %ballot);
        if self.learned.is_some() {
            return Vec::new();
        }
        let voters = self.votes.entry((ballot, value.clone())).or_default();
        if !voters.insert(from) || voters.len() < self.acceptors / 2 + 1 {
            return Vec::new();
        }
        self.learned = Some(value.clone());
        self.votes.clear();
        vec![
            Effect::Persist(Durable::Learner {
                learned: value.clone(),
            }),
            Effect::Learned(value),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(round: u64, node: NodeId) -> Ballot {
        Ballot { round, node }
    }

    fn send(to: NodeId, msg: Message<u8>) -> Effect<u8> {
        Effect::Send { to, msg }
    }

    #[test]
    fn s1_retry_persists_the_round_before_preparing_everywhere() {
        let mut p = Proposer::recover(0, vec![2, 3, 4], 1u8, 2, None);
        let prepare = Message::Prepare { ballot: b(1, 0) };
        assert_eq!(
            p.on_retry_timeout(),
            vec![
                Effect::Persist(Durable::Proposer { round: 1 }),
                send(2, prepare.clone()),
                send(3, prepare.clone()),
                send(4, prepare),
                Effect::SetRetryTimer,
            ]
        );
    }

    #[test]
    fn s1_a_recovered_proposer_never_reuses_a_ballot() {
        let mut p = Proposer::recover(
            0,
            vec![2, 3, 4],
            1u8,
            3,
            Some(Durable::Proposer { round: 2 }),
        );
        let effects = p.on_retry_timeout();
        assert_eq!(effects[0], Effect::Persist(Durable::Proposer { round: 3 }));
        assert_eq!(p.ballot(), b(3, 0));
        assert!(
            !effects.contains(&Effect::SetRetryTimer),
            "no rounds left to arm for"
        );
    }

    #[test]
    fn s2_majority_of_promises_adopts_the_highest_vote() {
        let mut p = Proposer::recover(1, vec![2, 3, 4], 2u8, 2, None);
        p.on_retry_timeout();
        assert!(p.on_promise(2, b(1, 1), Some((b(1, 0), 7))).is_empty());
        assert!(
            p.on_promise(2, b(1, 1), None).is_empty(),
            "a repeated Promise counts once"
        );
        let accept = Message::Accept {
            ballot: b(1, 1),
            value: 7,
        };
        assert_eq!(
            p.on_promise(3, b(1, 1), None),
            vec![
                send(2, accept.clone()),
                send(3, accept.clone()),
                send(4, accept)
            ]
        );
    }

    /// S2's negative space: of two votes from different ballots the higher one's value is
    /// proposed, whichever Promise arrives first (not the first heard, not the lowest).
    #[test]
    fn s2_of_two_votes_the_higher_ballot_wins_in_either_order() {
        let accept_of = |votes: [(NodeId, Ballot, u8); 2]| {
            let mut p = Proposer::recover(2, vec![3, 4, 5], 0u8, 1, None);
            p.on_retry_timeout();
            assert_eq!(p.ballot(), b(1, 2));
            let [(a1, b1, v1), (a2, b2, v2)] = votes;
            assert!(p.on_promise(a1, b(1, 2), Some((b1, v1))).is_empty());
            p.on_promise(a2, b(1, 2), Some((b2, v2)))
        };
        let accept_9 = send(
            3,
            Message::Accept {
                ballot: b(1, 2),
                value: 9,
            },
        );
        let lower_first = accept_of([(3, b(1, 0), 7), (4, b(1, 1), 9)]);
        let higher_first = accept_of([(3, b(1, 1), 9), (4, b(1, 0), 7)]);
        assert!(lower_first.contains(&accept_9), "{lower_first:?}");
        assert!(higher_first.contains(&accept_9), "{higher_first:?}");
    }

    #[test]
    fn s2_without_votes_the_proposer_proposes_its_own_value() {
        let mut p = Proposer::recover(0, vec![2, 3, 4], 5u8, 1, None);
        p.on_retry_timeout();
        p.on_promise(2, b(1, 0), None);
        let effects = p.on_promise(4, b(1, 0), None);
        assert!(effects.contains(&send(
            3,
            Message::Accept {
                ballot: b(1, 0),
                value: 5
            }
        )));
    }

    #[test]
    fn s2_a_promise_for_another_ballot_is_ignored() {
        let mut p = Proposer::recover(0, vec![2, 3, 4], 5u8, 2, None);
        p.on_retry_timeout();
        assert!(p.on_promise(2, b(2, 0), None).is_empty());
        assert_eq!(
            p.phase,
            Phase::Preparing {
                promises: BTreeSet::new(),
                highest: None
            }
        );
    }

    #[test]
    fn s3_nack_abandons_the_ballot_and_jumps_above_the_promise() {
        let mut p = Proposer::recover(0, vec![2, 3, 4], 5u8, 3, None);
        p.on_retry_timeout();
        assert!(p.on_nack(b(1, 0), b(2, 1)).is_empty());
        assert_eq!((p.phase.clone(), p.round), (Phase::Idle, 2));
        p.on_retry_timeout();
        assert!(p.ballot() > b(2, 1));
        assert_eq!(p.on_nack(b(3, 0), b(3, 1)), vec![Effect::CancelRetryTimer]);
    }

    /// S1's guard: with no round left the retry timer changes nothing, and a late one does
    /// not reset a campaign in progress (its Promises are kept).
    #[test]
    fn s1_no_round_left_the_retry_timer_changes_nothing() {
        let mut p = Proposer::recover(
            0,
            vec![2, 3, 4],
            5u8,
            2,
            Some(Durable::Proposer { round: 2 }),
        );
        let before = p.clone();
        assert_eq!(p.on_retry_timeout(), vec![]);
        assert_eq!(p, before);
        let mut p = Proposer::recover(0, vec![2, 3, 4], 5u8, 1, None);
        p.on_retry_timeout();
        p.on_promise(2, b(1, 0), None);
        let campaigning = p.clone();
        assert_eq!(p.on_retry_timeout(), vec![]);
        assert_eq!(p, campaigning, "the Promise from 2 is kept");
    }

    /// S2's guard: once Accepting, a late Promise (even carrying a vote) changes nothing.
    #[test]
    fn s2_a_promise_after_the_majority_changes_nothing() {
        let mut p = Proposer::recover(1, vec![2, 3, 4], 2u8, 2, None);
        p.on_retry_timeout();
        p.on_promise(2, b(1, 1), None);
        assert_eq!(p.on_promise(3, b(1, 1), None).len(), 3, "three Accepts");
        assert_eq!(p.phase, Phase::Accepting { value: 2 });
        let accepting = p.clone();
        assert_eq!(p.on_promise(4, b(1, 1), Some((b(1, 0), 7))), vec![]);
        assert_eq!(p, accepting);
    }

    /// S3's guard: a Nack for another ballot, or one arriving when the ballot was already given
    /// up, changes nothing (in particular the round is not raised); a Nack while Accepting
    /// gives the ballot up as one while Preparing does.
    #[test]
    fn s3_a_nack_for_another_ballot_or_when_idle_changes_nothing() {
        let mut p = Proposer::recover(0, vec![2, 3, 4], 5u8, 3, None);
        p.on_retry_timeout();
        p.on_retry_timeout();
        assert_eq!(p.ballot(), b(2, 0));
        let before = p.clone();
        assert_eq!(p.on_nack(b(1, 0), b(5, 1)), vec![], "a stale Nack");
        assert_eq!(p, before);
        assert_eq!(p.on_nack(b(2, 0), b(2, 1)), vec![]);
        assert_eq!((p.phase.clone(), p.round), (Phase::Idle, 2));
        let idle = p.clone();
        assert_eq!(p.on_nack(b(2, 0), b(5, 1)), vec![], "a duplicate when idle");
        assert_eq!(p, idle);

        let mut p = Proposer::recover(1, vec![2, 3, 4], 2u8, 3, None);
        p.on_retry_timeout();
        p.on_promise(2, b(1, 1), None);
        p.on_promise(3, b(1, 1), None);
        assert_eq!(p.phase, Phase::Accepting { value: 2 });
        assert_eq!(p.on_nack(b(1, 1), b(2, 0)), vec![]);
        assert_eq!((p.phase.clone(), p.round), (Phase::Idle, 2));
    }

    #[test]
    fn s4_s5_s6_prepare_promises_once_repeats_and_nacks_lower() {
        let mut a = Acceptor::<u8>::new(vec![9]);
        assert_eq!(
            a.on_prepare(0, b(1, 0)),
            vec![
                Effect::Persist(Durable::Acceptor {
                    promised: Some(b(1, 0)),
                    accepted: None
                }),
                send(
                    0,
                    Message::Promise {
                        ballot: b(1, 0),
                        accepted: None
                    }
                ),
            ]
        );
        assert_eq!(
            a.on_prepare(0, b(1, 0)),
            vec![send(
                0,
                Message::Promise {
                    ballot: b(1, 0),
                    accepted: None
                }
            )]
        );
        assert_eq!(
            a.on_prepare(1, b(0, 1)),
            vec![send(
                1,
                Message::Nack {
                    ballot: b(0, 1),
                    promised: b(1, 0)
                }
            )]
        );
    }

    /// S4 at an acceptor that has voted: a higher Prepare is promised, persisted with the
    /// vote, and the Promise carries that vote.
    #[test]
    fn s4_a_promise_carries_the_vote() {
        let mut a = Acceptor::new(vec![9]);
        a.on_prepare(0, b(1, 0));
        a.on_accept(0, b(1, 0), 4u8);
        assert_eq!(
            a.on_prepare(1, b(2, 1)),
            vec![
                Effect::Persist(Durable::Acceptor {
                    promised: Some(b(2, 1)),
                    accepted: Some((b(1, 0), 4)),
                }),
                send(
                    1,
                    Message::Promise {
                        ballot: b(2, 1),
                        accepted: Some((b(1, 0), 4)),
                    }
                ),
            ]
        );
    }

    #[test]
    fn s7_accept_persists_then_tells_the_learners() {
        let mut a = Acceptor::new(vec![8, 9]);
        a.on_prepare(0, b(1, 0));
        let accepted = Message::Accepted {
            ballot: b(1, 0),
            value: 4u8,
        };
        assert_eq!(
            a.on_accept(0, b(1, 0), 4),
            vec![
                Effect::Persist(Durable::Acceptor {
                    promised: Some(b(1, 0)),
                    accepted: Some((b(1, 0), 4)),
                }),
                send(8, accepted.clone()),
                send(9, accepted),
            ]
        );
    }

    #[test]
    fn s8_p1a_acceptor_ignores_accept_below_its_promise() {
        let mut a = Acceptor::new(vec![9]);
        a.on_prepare(1, b(2, 1));
        assert_eq!(
            a.on_accept(0, b(1, 0), 4u8),
            vec![send(
                0,
                Message::Nack {
                    ballot: b(1, 0),
                    promised: b(2, 1)
                }
            )]
        );
        assert_eq!(a.accepted, None);
    }

    #[test]
    fn recovery_keeps_the_vote_as_a_promise() {
        let durable = Durable::Acceptor {
            promised: None,
            accepted: Some((b(2, 0), 4u8)),
        };
        let a = Acceptor::recover(vec![9], Some(durable));
        assert_eq!(a.promised, Some(b(2, 0)));
    }

    #[test]
    fn s9_learner_needs_a_majority_in_one_ballot() {
        let mut l = Learner::recover(3, None);
        assert!(l.on_accepted(2, b(1, 0), 4u8).is_empty());
        assert!(
            l.on_accepted(3, b(2, 1), 4).is_empty(),
            "mixed ballots are not a quorum"
        );
        assert!(
            l.on_accepted(2, b(1, 0), 4).is_empty(),
            "a duplicate counts once"
        );
        assert_eq!(
            l.on_accepted(4, b(1, 0), 4),
            vec![
                Effect::Persist(Durable::Learner { learned: 4 }),
                Effect::Learned(4)
            ]
        );
        assert!(l.on_accepted(3, b(1, 0), 4).is_empty(), "learned once");
    }

    #[test]
    fn s7_a_repeated_accept_resends_without_writing_again() {
        let mut a = Acceptor::new(vec![9]);
        a.on_accept(0, b(1, 0), 4u8);
        assert_eq!(
            a.on_accept(0, b(1, 0), 4),
            vec![send(
                9,
                Message::Accepted {
                    ballot: b(1, 0),
                    value: 4
                }
            )]
        );
    }
}
