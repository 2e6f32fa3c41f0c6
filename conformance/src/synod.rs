//! Synod conformance, step by step: every (reachable model state, enabled action) pair is
//! replayed on the implementation's core, and the two must agree on the node's next state, the
//! messages it sends (as a multiset), what it persists and its timers.
//!
//! The implementation node is built from the model node's state (concretisation), the action
//! becomes one core input, and the resulting implementation node is mapped back (abstraction).
//! Crash and recovery rebuild the implementation node from its durable record only.

use std::borrow::Cow;
use std::collections::BTreeSet;

use paxos_model::synod::{
    AcceptorState, LearnerState, Phase as ModelPhase, ProposerState, Role, SynodActor, SynodConfig,
    SynodModel, SynodModelState, SynodMsg, SynodState, SynodStorage, SynodTimer,
};
use paxos_model::types::{Ballot, IdSet, Value};
use paxos_protocol::synod::{Acceptor, Durable, Effect, Learner, Message, Phase, Proposer};
use paxos_protocol::Ballot as ImplBallot;
use stateright::actor::{Actor, ActorModelAction, Command, Id, Out};

use crate::{ballot_to_impl, ballot_to_model};

/// An implementation node of any role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Proposer(Proposer<u8>),
    Acceptor(Acceptor<u8>),
    Learner(Learner<u8>),
}

/// What one step did, in the model's vocabulary, for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    pub state: SynodState,
    pub sends: Vec<(usize, SynodMsg)>,
    pub saved: Option<SynodStorage>,
    pub timer_set: bool,
    pub timer_cancelled: bool,
}

fn node_id(id: Id) -> u32 {
    usize::from(id) as u32
}

/// `Some(None)` for no value, `None` when the value is outside the model's bounds.
fn optional<T, U>(x: Option<T>, f: impl FnOnce(T) -> Option<U>) -> Option<Option<U>> {
    match x {
        None => Some(None),
        Some(t) => f(t).map(Some),
    }
}

fn vote_to_model(&(ballot, value): &(ImplBallot, u8)) -> Option<(Ballot, Value)> {
    Some((ballot_to_model(ballot)?, Value(value)))
}

fn vote_to_impl((ballot, value): (Ballot, Value)) -> (ImplBallot, u8) {
    (ballot_to_impl(ballot), value.0)
}

fn msg_to_impl(msg: SynodMsg) -> Message<u8> {
    let b = ballot_to_impl;
    match msg {
        SynodMsg::Prepare(ballot) => Message::Prepare { ballot: b(ballot) },
        SynodMsg::Promise(ballot, last) => Message::Promise {
            ballot: b(ballot),
            accepted: last.map(vote_to_impl),
        },
        SynodMsg::Nack(ballot, promised) => Message::Nack {
            ballot: b(ballot),
            promised: b(promised),
        },
        SynodMsg::Accept(ballot, v) => Message::Accept {
            ballot: b(ballot),
            value: v.0,
        },
        SynodMsg::Accepted(ballot, v) => Message::Accepted {
            ballot: b(ballot),
            value: v.0,
        },
    }
}

fn msg_to_model(msg: &Message<u8>) -> Option<SynodMsg> {
    let b = |ballot| ballot_to_model(ballot);
    Some(match msg {
        Message::Prepare { ballot } => SynodMsg::Prepare(b(*ballot)?),
        Message::Promise { ballot, accepted } => {
            SynodMsg::Promise(b(*ballot)?, optional(accepted.as_ref(), vote_to_model)?)
        }
        Message::Nack { ballot, promised } => SynodMsg::Nack(b(*ballot)?, b(*promised)?),
        Message::Accept { ballot, value } => SynodMsg::Accept(b(*ballot)?, Value(*value)),
        Message::Accepted { ballot, value } => SynodMsg::Accepted(b(*ballot)?, Value(*value)),
    })
}

fn durable_to_model(d: &Durable<u8>) -> Option<SynodStorage> {
    Some(match d {
        Durable::Proposer { round } => SynodStorage::Proposer {
            round: u8::try_from(*round).ok()?,
        },
        Durable::Acceptor { promised, accepted } => SynodStorage::Acceptor {
            promised: optional(*promised, ballot_to_model)?,
            accepted: optional(accepted.as_ref(), vote_to_model)?,
        },
        Durable::Learner { learned } => SynodStorage::Learner {
            learned: Value(*learned),
        },
    })
}

fn durable_to_impl(s: &SynodStorage) -> Durable<u8> {
    match *s {
        SynodStorage::Proposer { round } => Durable::Proposer {
            round: u64::from(round),
        },
        SynodStorage::Acceptor { promised, accepted } => Durable::Acceptor {
            promised: promised.map(ballot_to_impl),
            accepted: accepted.map(vote_to_impl),
        },
        SynodStorage::Learner { learned } => Durable::Learner { learned: learned.0 },
    }
}

fn ids(set: IdSet) -> BTreeSet<u32> {
    set.iter().map(node_id).collect()
}

/// The implementation node the runtime builds for `role` from its durable record alone (what
/// a restart does).
fn recovered(cfg: &SynodConfig, role: &Role, durable: Option<Durable<u8>>) -> Node {
    let node_ids = |ids: Vec<Id>| ids.into_iter().map(node_id).collect();
    match role {
        Role::Proposer { index, value } => Node::Proposer(Proposer::recover(
            u32::from(*index),
            node_ids(cfg.acceptor_ids()),
            value.0,
            u64::from(cfg.max_round),
            durable,
        )),
        Role::Acceptor => Node::Acceptor(Acceptor::recover(node_ids(cfg.learner_ids()), durable)),
        Role::Learner => Node::Learner(Learner::recover(cfg.acceptors, durable)),
    }
}

/// Concretisation: the implementation node whose abstraction is `state`.
pub fn concretize(cfg: &SynodConfig, actor: &SynodActor, state: &SynodState) -> Node {
    let mut node = recovered(cfg, &actor.role, None);
    match (&mut node, state) {
        (Node::Proposer(node), SynodState::Proposer(p)) => {
            node.round = u64::from(p.round);
            node.phase = match p.phase {
                ModelPhase::Idle => Phase::Idle,
                ModelPhase::Preparing { promises, highest } => Phase::Preparing {
                    promises: ids(promises),
                    highest: highest.map(vote_to_impl),
                },
                ModelPhase::Accepting { value } => Phase::Accepting { value: value.0 },
            };
        }
        (Node::Acceptor(node), SynodState::Acceptor(a)) => {
            node.promised = a.promised.map(ballot_to_impl);
            node.accepted = a.accepted.map(vote_to_impl);
        }
        (Node::Learner(node), SynodState::Learner(l)) => {
            node.learned = l.learned.map(|v| v.0);
            for (b, v, from) in &l.votes {
                node.votes.insert((ballot_to_impl(*b), v.0), ids(*from));
            }
        }
        _ => unreachable!("the actor's role fixes its state's role"),
    }
    node
}

/// Abstraction: the model state of an implementation node (None: outside the model's bounds).
pub fn abstraction(node: &Node) -> Option<SynodState> {
    let to_set = |from: &BTreeSet<u32>| from.iter().map(|&n| Id::from(n as usize)).collect();
    Some(match node {
        Node::Proposer(p) => SynodState::Proposer(ProposerState {
            index: u8::try_from(p.node).ok()?,
            round: u8::try_from(p.round).ok()?,
            phase: match &p.phase {
                Phase::Idle => ModelPhase::Idle,
                Phase::Preparing { promises, highest } => ModelPhase::Preparing {
                    promises: to_set(promises),
                    highest: optional(highest.as_ref(), vote_to_model)?,
                },
                Phase::Accepting { value } => ModelPhase::Accepting {
                    value: Value(*value),
                },
            },
        }),
        Node::Acceptor(a) => SynodState::Acceptor(AcceptorState {
            promised: optional(a.promised, ballot_to_model)?,
            accepted: optional(a.accepted.as_ref(), vote_to_model)?,
        }),
        Node::Learner(l) => {
            let mut votes = Vec::new();
            for ((b, v), from) in &l.votes {
                votes.push((ballot_to_model(*b)?, Value(*v), to_set(from)));
            }
            votes.sort();
            SynodState::Learner(LearnerState {
                learned: l.learned.map(Value),
                votes,
            })
        }
    })
}

fn outcome_from_model(state: SynodState, out: &Out<SynodActor>) -> StepOutcome {
    let mut outcome = StepOutcome {
        state,
        sends: Vec::new(),
        saved: None,
        timer_set: false,
        timer_cancelled: false,
    };
    for command in out.iter() {
        match command {
            Command::Send(to, msg) => outcome.sends.push((usize::from(*to), *msg)),
            Command::Save(storage) => outcome.saved = Some(*storage),
            Command::SetTimer(SynodTimer::Retry, _) => outcome.timer_set = true,
            Command::CancelTimer(SynodTimer::Retry) => outcome.timer_cancelled = true,
            _ => {}
        }
    }
    outcome.sends.sort();
    outcome
}

fn outcome_from_impl(node: &Node, effects: &[Effect<u8>]) -> Option<StepOutcome> {
    let mut outcome = StepOutcome {
        state: abstraction(node)?,
        sends: Vec::new(),
        saved: None,
        timer_set: false,
        timer_cancelled: false,
    };
    for effect in effects {
        match effect {
            Effect::Send { to, msg } => outcome.sends.push((*to as usize, msg_to_model(msg)?)),
            Effect::Persist(d) => outcome.saved = Some(durable_to_model(d)?),
            Effect::SetRetryTimer => outcome.timer_set = true,
            Effect::CancelRetryTimer => outcome.timer_cancelled = true,
            Effect::Learned(_) => {}
        }
    }
    outcome.sends.sort();
    Some(outcome)
}

fn deliver(node: &mut Node, from: u32, msg: Message<u8>) -> Vec<Effect<u8>> {
    match (node, msg) {
        (Node::Acceptor(a), Message::Prepare { ballot }) => a.on_prepare(from, ballot),
        (Node::Acceptor(a), Message::Accept { ballot, value }) => a.on_accept(from, ballot, value),
        (Node::Proposer(p), Message::Promise { ballot, accepted }) => {
            p.on_promise(from, ballot, accepted)
        }
        (Node::Proposer(p), Message::Nack { ballot, promised }) => p.on_nack(ballot, promised),
        (Node::Learner(l), Message::Accepted { ballot, value }) => {
            l.on_accepted(from, ballot, value)
        }
        _ => Vec::new(),
    }
}

/// Replays one model action on the implementation. None: the action is not a single node's
/// step (a message drop or a crash), which changes no node.
pub(crate) fn replay(
    model: &SynodModel,
    state: &SynodModelState,
    action: &ActorModelAction<SynodMsg, SynodTimer, ()>,
) -> Option<(StepOutcome, Option<StepOutcome>)> {
    let cfg = &model.cfg;
    let (model_out, model_next, impl_result) = match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            let i = usize::from(*dst);
            let actor = &model.actors[i];
            let mut next = Cow::Borrowed(&*state.actor_states[i]);
            let mut out = Out::new();
            actor.on_msg(*dst, &mut next, *src, *msg, &mut out);
            let mut node = concretize(cfg, actor, &state.actor_states[i]);
            let effects = deliver(&mut node, node_id(*src), msg_to_impl(*msg));
            (out, next.into_owned(), outcome_from_impl(&node, &effects))
        }
        ActorModelAction::Timeout(id, timer) => {
            let i = usize::from(*id);
            let actor = &model.actors[i];
            let mut next = Cow::Borrowed(&*state.actor_states[i]);
            let mut out = Out::new();
            actor.on_timeout(*id, &mut next, timer, &mut out);
            let mut node = concretize(cfg, actor, &state.actor_states[i]);
            let effects = match &mut node {
                Node::Proposer(p) => p.on_retry_timeout(),
                _ => Vec::new(),
            };
            (out, next.into_owned(), outcome_from_impl(&node, &effects))
        }
        ActorModelAction::Recover(id) => {
            let i = usize::from(*id);
            let actor = &model.actors[i];
            let storage = &state.actor_storages[i];
            let mut out = Out::new();
            let next = actor.on_start(*id, storage, &mut out);
            let node = recovered(cfg, &actor.role, storage.as_ref().map(durable_to_impl));
            // The runtime arms the retry timer on start when rounds remain.
            let arm = matches!(&node, Node::Proposer(p) if p.can_retry());
            let effects = if arm {
                vec![Effect::SetRetryTimer]
            } else {
                Vec::new()
            };
            (out, next, outcome_from_impl(&node, &effects))
        }
        _ => return None,
    };
    let expected = outcome_from_model(model_next, &model_out);
    Some((expected, impl_result))
}

#[cfg(test)]
mod tests {
    use paxos_model::synod;

    use super::*;
    use crate::check::check_all;
    use paxos_model::types::BugCatalogue;

    #[test]
    fn every_reachable_transition_of_the_default_synod_matches_the_core() {
        let outcome = check_all(&synod::model(SynodConfig::default()), 1);
        assert_eq!(
            outcome.counts.states, 255_901,
            "the model's reachable states, without symmetry"
        );
        // Includes deliveries that change nothing (stateright prunes those from its 1,062,883).
        assert_eq!(
            outcome.counts.replayed, 1_493_427,
            "every enabled (state, action) pair"
        );
        assert_eq!(outcome.first_divergence(), None);
    }

    #[test]
    fn recovery_transitions_match_with_crashes() {
        let cfg = SynodConfig {
            proposers: 1,
            values: 1,
            crashes: 1,
            ..SynodConfig::default()
        };
        let outcome = check_all(&synod::model(cfg), 1);
        assert!(outcome.counts.replayed > 0);
        assert_eq!(outcome.first_divergence(), None);
    }

    /// Power: the implementation is correct, so replaying any seeded bug's model against it
    /// must diverge. A comparison that let a bug through would prove nothing.
    #[test]
    fn every_seeded_model_bug_is_a_divergence() {
        use paxos_model::synod::SynodBug;
        for &bug in SynodBug::ALL {
            let cfg = SynodConfig {
                bug: Some(bug),
                ..bug.witness_config()
            };
            let cfg = SynodConfig {
                proposers: cfg.proposers.min(2),
                values: cfg.values.min(2),
                ..cfg
            };
            let outcome = check_all(&synod::model(cfg), 1);
            assert_eq!(
                outcome.found.len(),
                1,
                "{bug}: no divergence in {} states",
                outcome.counts.states
            );
        }
    }
}
