//! The Synod protocol (single-decree Paxos) as a stateright actor model, exactly as
//! `DESIGN.md` §2 describes it, with the invariants of §3 as properties.
//!
//! ```text
//!   proposer p            acceptor a                     learner l
//!   timer Retry ─► Prepare(b) ─► promised ≤ b? persist ─► Promise(b, last_accepted)
//!                  Nack(b, promised) ◄─ otherwise
//!   majority of Promises ─► Accept(b, v) ─► promised ≤ b? persist ─► Accepted(b, v) ─► l
//!   majority of Accepted(b, v) for one b: l learns v
//! ```
//!
//! Accepted goes to the learners only. DESIGN.md §2 also sends it to the proposer, but no
//! invariant reads what the proposer would do with it (it only stops retrying), and that extra
//! traffic multiplies the default configuration's state space tenfold (647,160 → 60,915 unique
//! states). Multi-Paxos, where the leader commits, does count Accepted at the leader.
//!
//! Actor layout: proposers are ids `0..P`, acceptors `P..P+A`, learners after them. Durable
//! state (stateright `Storage`): acceptor `promised` and `accepted`, proposer highest round used,
//! learner learned value. Everything else is lost by a crash.
//!
//! Ghost history ([`SynodHistory`]) records every proposal issued, every vote cast and every
//! promise made, so the invariants can be stated over the whole run as the papers state them.
//!
//! Symmetry: acceptors are interchangeable and so are learners; proposers are not (each has its
//! own value and ballots name them). The state enum orders proposers first and each proposer's
//! state starts with its index, so stateright's sort-based representative never moves a
//! proposer, and [`Ballot`]s never need rewriting.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stateright::actor::{
    model_timeout, Actor, ActorModel, ActorModelState, Envelope, Id, LossyNetwork, Network, Out,
};
use stateright::{Expectation, Representative, Rewrite, RewritePlan};

use crate::actor_trace::{self, NodeNames};
use crate::explorer_view::{ReadableAction, View};
use crate::runner::{CheckTarget, SymmetryFn};
use crate::types::{majority, minimal_majorities, Ballot, BugCatalogue, IdSet, Value};

/// The bounds and fault model of one Synod model instance.
/// Serialized into summaries and trace files; trace replay reads it back (fields missing
/// from a file take their default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynodConfig {
    pub proposers: usize,
    pub acceptors: usize,
    pub learners: usize,
    /// Distinct input values; proposer `i` proposes `v(i % values + 1)`.
    pub values: usize,
    /// The highest round a proposer may start: the bound that keeps the state space finite.
    pub max_round: u8,
    /// How many nodes may be crashed at the same time (0 disables crashes).
    pub crashes: usize,
    pub lossy: bool,
    pub duplicating: bool,
    pub bug: Option<SynodBug>,
}

impl Default for SynodConfig {
    fn default() -> Self {
        SynodConfig {
            proposers: 2,
            acceptors: 3,
            learners: 1,
            values: 2,
            max_round: 1,
            crashes: 0,
            lossy: false,
            duplicating: false,
            bug: None,
        }
    }
}

impl SynodConfig {
    /// Checks the bounds; the message names the offending option and what it accepts.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3).contains(&self.proposers) {
            return Err(format!(
                "--proposers must be 1, 2 or 3 (got {})",
                self.proposers
            ));
        }
        if !(1..=7).contains(&self.acceptors) {
            return Err(format!(
                "--acceptors must be between 1 and 7, usually 3 or 5 (got {})",
                self.acceptors
            ));
        }
        // 0 learners: a targeted configuration about phases 1 and 2 only (no Accepted is
        // sent, so far fewer interleavings); nothing is learned, so Non-vacuity fails on a
        // complete run.
        if self.learners > 3 {
            return Err(format!(
                "--learners must be between 0 and 3 (got {})",
                self.learners
            ));
        }
        if self.values == 0 || self.values > self.proposers {
            return Err(format!(
                "--values must be between 1 and the number of proposers ({}) (got {})",
                self.proposers, self.values
            ));
        }
        if !(1..=6).contains(&self.max_round) {
            return Err(format!(
                "--rounds must be between 1 and 6 (got {}); each round adds a ballot per proposer",
                self.max_round
            ));
        }
        let nodes = self.proposers + self.acceptors + self.learners;
        if self.crashes > nodes {
            return Err(format!(
                "--crashes must be at most the number of nodes ({nodes}) (got {})",
                self.crashes
            ));
        }
        Ok(())
    }

    pub fn proposer_ids(&self) -> Vec<Id> {
        Id::vec_from(0..self.proposers)
    }

    pub fn acceptor_ids(&self) -> Vec<Id> {
        Id::vec_from(self.proposers..self.proposers + self.acceptors)
    }

    pub fn learner_ids(&self) -> Vec<Id> {
        let first = self.proposers + self.acceptors;
        Id::vec_from(first..first + self.learners)
    }

    /// The value proposer `index` proposes when the Promises it holds carry none.
    pub fn input_value(&self, index: usize) -> Value {
        Value((index % self.values + 1) as u8)
    }

    pub fn input_values(&self) -> impl Iterator<Item = Value> + '_ {
        (0..self.proposers).map(|p| self.input_value(p))
    }

    pub fn majority(&self) -> usize {
        majority(self.acceptors)
    }
}

/// Seeded bugs: each breaks the protocol in one realistic way, and the checker must find a
/// counterexample for every property in [`SynodBug::violates`].
/// Serialized as its [`SynodBug::name`] (the `--bug` argument), in both directions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumMessage,
)]
#[serde(into = "&'static str", try_from = "String")]
#[strum(serialize_all = "kebab-case")]
pub enum SynodBug {
    #[strum(message = "acceptor accepts an Accept whose ballot is below its promise")]
    AcceptBelowPromise,
    #[strum(message = "acceptor does not persist its promise; a restart forgets it")]
    ForgetPromise,
    #[strum(message = "proposer proposes its own value even when Promises carry accepted values")]
    IgnorePromiseValues,
    #[strum(
        message = "proposer sends Accept after Promises from n/2 acceptors, one short of a majority"
    )]
    PromiseQuorumOffByOne,
    #[strum(
        message = "acceptor updates only the ballot of its accepted proposal, keeping the old value"
    )]
    AcceptedKeepsOldValue,
    #[strum(
        message = "proposer with no value in its Promises proposes the default value v0, which nobody proposed"
    )]
    DefaultValue,
    #[strum(message = "learner counts Accepted for a value across different ballots")]
    LearnerMixedBallots,
}

impl SynodBug {
    /// The properties this bug must violate (the first is the one it was written for).
    pub fn violates(self) -> &'static [&'static str] {
        match self {
            SynodBug::AcceptBelowPromise => &["P1a"],
            SynodBug::ForgetPromise => &["P1a"],
            SynodBug::IgnorePromiseValues => &["R2'", "R2", "R2a", "Agreement", "I1"],
            SynodBug::PromiseQuorumOffByOne => &["I1", "Agreement"],
            SynodBug::AcceptedKeepsOldValue => &["R2a"],
            SynodBug::DefaultValue => &["Validity"],
            SynodBug::LearnerMixedBallots => &["Learner safety"],
        }
    }

    /// Whether exhaustive search of [`SynodBug::witness_config`] takes too long to find the
    /// counterexample and simulation (random walks) should look for it instead.
    pub fn needs_random_search(self) -> bool {
        self == SynodBug::AcceptedKeepsOldValue
    }

    /// The smallest configuration in which the checker finds this bug's counterexample.
    pub fn witness_config(self) -> SynodConfig {
        let base = SynodConfig {
            bug: Some(self),
            ..SynodConfig::default()
        };
        match self {
            SynodBug::ForgetPromise => SynodConfig { crashes: 1, ..base },
            // Keeping the old value shows only when a third ballot meets an old vote: 1.0's
            // voter takes 1.2's Accept after 1.1 was chosen. The state space is large
            // (over 20M states), so [`SynodBug::needs_random_search`] says to look by random walks.
            SynodBug::AcceptedKeepsOldValue => SynodConfig {
                proposers: 3,
                ..base
            },
            _ => base,
        }
    }
}

impl BugCatalogue for SynodBug {
    const SUBJECT: &'static str = "Synod";
}

crate::types::bug_names!(SynodBug);

/// Protocol messages, per ballot as in the papers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum SynodMsg {
    Prepare(Ballot),
    Promise(Ballot, Option<(Ballot, Value)>),
    Nack(Ballot, Ballot),
    Accept(Ballot, Value),
    Accepted(Ballot, Value),
}

impl fmt::Debug for SynodMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SynodMsg::Prepare(b) => write!(f, "Prepare({b})"),
            SynodMsg::Promise(b, None) => write!(f, "Promise({b}, none)"),
            SynodMsg::Promise(b, Some((vb, v))) => write!(f, "Promise({b}, {vb}={v:?})"),
            SynodMsg::Nack(b, promised) => write!(f, "Nack({b}, promised {promised})"),
            SynodMsg::Accept(b, v) => write!(f, "Accept({b}, {v:?})"),
            SynodMsg::Accepted(b, v) => write!(f, "Accepted({b}, {v:?})"),
        }
    }
}

impl Rewrite<Id> for SynodMsg {
    fn rewrite<S>(&self, _: &RewritePlan<Id, S>) -> Self {
        *self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum SynodTimer {
    /// Fires at any time: the proposer gives up its current ballot and starts the next round.
    Retry,
}

/// A proposer's progress with its current ballot `(round, index)`. It keeps retrying with
/// higher rounds until `max_round`, when its timer fires, whatever happened to its last ballot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Phase {
    Idle,
    Preparing {
        promises: IdSet,
        highest: Option<(Ballot, Value)>,
    },
    Accepting {
        value: Value,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProposerState {
    /// First field on purpose: symmetry sorting keeps every proposer in place.
    pub index: u8,
    /// The highest round used, or known to be superseded by a Nack.
    pub round: u8,
    pub phase: Phase,
}

impl ProposerState {
    pub fn ballot(&self) -> Ballot {
        Ballot {
            round: self.round,
            proposer: self.index,
        }
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AcceptorState {
    pub promised: Option<Ballot>,
    pub accepted: Option<(Ballot, Value)>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LearnerState {
    pub learned: Option<Value>,
    /// Accepted messages heard, per (ballot, value): which acceptors sent them.
    pub votes: Vec<(Ballot, Value, IdSet)>,
}

/// Variant order matters: proposers sort before acceptors before learners, matching the
/// actor layout, so symmetry sorting only permutes within a role.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum SynodState {
    Proposer(ProposerState),
    Acceptor(AcceptorState),
    Learner(LearnerState),
}

impl Rewrite<Id> for SynodState {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            SynodState::Proposer(p) => {
                let phase = match p.phase {
                    Phase::Preparing { promises, highest } => Phase::Preparing {
                        promises: promises.rewrite(plan),
                        highest,
                    },
                    other => other,
                };
                SynodState::Proposer(ProposerState { phase, ..*p })
            }
            SynodState::Acceptor(a) => SynodState::Acceptor(*a),
            SynodState::Learner(l) => SynodState::Learner(LearnerState {
                learned: l.learned,
                votes: l
                    .votes
                    .iter()
                    .map(|&(b, v, from)| (b, v, from.rewrite(plan)))
                    .collect(),
            }),
        }
    }
}

fn fmt_vote(f: &mut fmt::Formatter<'_>, vote: &Option<(Ballot, Value)>) -> fmt::Result {
    match vote {
        None => f.write_str("none"),
        Some((b, v)) => write!(f, "{b}={v:?}"),
    }
}

impl fmt::Debug for SynodState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SynodState::Proposer(p) => {
                write!(f, "Proposer p{} round {} ", p.index, p.round)?;
                match p.phase {
                    Phase::Idle => f.write_str("idle"),
                    Phase::Preparing { promises, highest } => {
                        write!(f, "preparing {} promises {promises:?} highest ", p.ballot())?;
                        fmt_vote(f, &highest)
                    }
                    Phase::Accepting { value } => write!(f, "accepting {}={value:?}", p.ballot()),
                }
            }
            SynodState::Acceptor(a) => {
                f.write_str("Acceptor promised ")?;
                match a.promised {
                    None => f.write_str("none")?,
                    Some(b) => write!(f, "{b}")?,
                }
                f.write_str(" accepted ")?;
                fmt_vote(f, &a.accepted)
            }
            SynodState::Learner(l) => {
                f.write_str("Learner learned ")?;
                match l.learned {
                    None => f.write_str("nothing")?,
                    Some(v) => write!(f, "{v:?}")?,
                }
                for (b, v, from) in &l.votes {
                    write!(f, " {b}={v:?}:{from:?}")?;
                }
                Ok(())
            }
        }
    }
}

/// What survives a crash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SynodStorage {
    Proposer {
        round: u8,
    },
    Acceptor {
        promised: Option<Ballot>,
        accepted: Option<(Ballot, Value)>,
    },
    Learner {
        learned: Value,
    },
}

/// In the words of [`SynodState`]'s view, since counterexamples and the explorer print both.
impl fmt::Debug for SynodStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SynodStorage::Proposer { round } => write!(f, "Proposer round {round}"),
            SynodStorage::Acceptor { promised, accepted } => {
                f.write_str("Acceptor promised ")?;
                match promised {
                    None => f.write_str("none")?,
                    Some(b) => write!(f, "{b}")?,
                }
                f.write_str(" accepted ")?;
                fmt_vote(f, accepted)
            }
            SynodStorage::Learner { learned } => write!(f, "Learner learned {learned:?}"),
        }
    }
}

impl Rewrite<Id> for SynodStorage {
    fn rewrite<S>(&self, _: &RewritePlan<Id, S>) -> Self {
        *self
    }
}

/// The parts of the configuration every actor needs, shared rather than copied per actor.
#[derive(Debug)]
struct Topology {
    acceptors: Vec<Id>,
    learners: Vec<Id>,
    majority: usize,
    max_round: u8,
    bug: Option<SynodBug>,
}

impl Topology {
    fn has_bug(&self, bug: SynodBug) -> bool {
        self.bug == Some(bug)
    }
}

#[derive(Clone, Debug)]
pub enum Role {
    Proposer { index: u8, value: Value },
    Acceptor,
    Learner,
}

#[derive(Clone, Debug)]
pub struct SynodActor {
    pub role: Role,
    topology: Arc<Topology>,
}

impl Actor for SynodActor {
    type Msg = SynodMsg;
    type Timer = SynodTimer;
    type State = SynodState;
    type Storage = SynodStorage;
    type Random = ();

    /// Labels the explorer's sequence diagram columns ("0 proposer", "2 acceptor").
    fn name(&self) -> String {
        match self.role {
            Role::Proposer { .. } => "proposer",
            Role::Acceptor => "acceptor",
            Role::Learner => "learner",
        }
        .to_string()
    }

    fn on_start(&self, _id: Id, storage: &Option<SynodStorage>, o: &mut Out<Self>) -> SynodState {
        match self.role {
            Role::Proposer { index, .. } => {
                let round = match storage {
                    Some(SynodStorage::Proposer { round }) => *round,
                    _ => 0,
                };
                if round < self.topology.max_round {
                    o.set_timer(SynodTimer::Retry, model_timeout());
                }
                SynodState::Proposer(ProposerState {
                    index,
                    round,
                    phase: Phase::Idle,
                })
            }
            Role::Acceptor => match storage {
                Some(SynodStorage::Acceptor { promised, accepted }) => {
                    // A vote is also a promise: the accepted ballot bounds what may be accepted.
                    let promised = (*promised).max(accepted.map(|(b, _)| b));
                    SynodState::Acceptor(AcceptorState {
                        promised,
                        accepted: *accepted,
                    })
                }
                _ => SynodState::Acceptor(AcceptorState::default()),
            },
            Role::Learner => {
                let learned = match storage {
                    Some(SynodStorage::Learner { learned }) => Some(*learned),
                    _ => None,
                };
                SynodState::Learner(LearnerState {
                    learned,
                    votes: Vec::new(),
                })
            }
        }
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<SynodState>,
        src: Id,
        msg: SynodMsg,
        o: &mut Out<Self>,
    ) {
        match (&self.role, msg) {
            (Role::Acceptor, SynodMsg::Prepare(b)) => self.on_prepare(state, src, b, o),
            (Role::Acceptor, SynodMsg::Accept(b, v)) => self.on_accept(state, src, b, v, o),
            (Role::Proposer { value, .. }, SynodMsg::Promise(b, last)) => {
                self.on_promise(state, src, b, last, *value, o)
            }
            (Role::Proposer { .. }, SynodMsg::Nack(b, promised)) => {
                self.on_nack(state, b, promised, o)
            }
            (Role::Learner, SynodMsg::Accepted(b, v)) => {
                self.on_accepted_at_learner(state, src, b, v, o)
            }
            _ => {}
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<SynodState>,
        _timer: &SynodTimer,
        o: &mut Out<Self>,
    ) {
        self.on_retry_timeout(state, o);
    }
}

fn proposer(state: &SynodState) -> &ProposerState {
    match state {
        SynodState::Proposer(p) => p,
        _ => unreachable!("the actor's role fixes its state's role"),
    }
}

fn proposer_mut<'a>(state: &'a mut Cow<'_, SynodState>) -> &'a mut ProposerState {
    match state.to_mut() {
        SynodState::Proposer(p) => p,
        _ => unreachable!("the actor's role fixes its state's role"),
    }
}

fn acceptor(state: &SynodState) -> &AcceptorState {
    match state {
        SynodState::Acceptor(a) => a,
        _ => unreachable!("the actor's role fixes its state's role"),
    }
}

fn learner(state: &SynodState) -> &LearnerState {
    match state {
        SynodState::Learner(l) => l,
        _ => unreachable!("the actor's role fixes its state's role"),
    }
}

impl SynodActor {
    fn on_retry_timeout(&self, state: &mut Cow<SynodState>, o: &mut Out<Self>) {
        let t = &self.topology;
        let p = proposer(state);
        if p.round >= t.max_round {
            return;
        }
        let p = proposer_mut(state);
        p.round += 1;
        p.phase = Phase::Preparing {
            promises: IdSet::default(),
            highest: None,
        };
        o.save(SynodStorage::Proposer { round: p.round });
        o.broadcast(&t.acceptors, &SynodMsg::Prepare(p.ballot()));
        if p.round < t.max_round {
            o.set_timer(SynodTimer::Retry, model_timeout());
        }
    }

    fn on_promise(
        &self,
        state: &mut Cow<SynodState>,
        src: Id,
        b: Ballot,
        last: Option<(Ballot, Value)>,
        own_value: Value,
        o: &mut Out<Self>,
    ) {
        let t = &self.topology;
        let p = proposer(state);
        let Phase::Preparing {
            mut promises,
            mut highest,
        } = p.phase
        else {
            return;
        };
        if b != p.ballot() || promises.contains(src) {
            return;
        }
        promises.insert(src);
        highest = highest.max(last);
        let quorum = if t.has_bug(SynodBug::PromiseQuorumOffByOne) {
            t.majority - 1
        } else {
            t.majority
        };
        let p = proposer_mut(state);
        if promises.len() < quorum {
            p.phase = Phase::Preparing { promises, highest };
            return;
        }
        let value = match highest {
            Some((_, v)) if !t.has_bug(SynodBug::IgnorePromiseValues) => v,
            None if t.has_bug(SynodBug::DefaultValue) => Value(0),
            _ => own_value,
        };
        p.phase = Phase::Accepting { value };
        o.broadcast(&t.acceptors, &SynodMsg::Accept(b, value));
    }

    fn on_nack(&self, state: &mut Cow<SynodState>, b: Ballot, promised: Ballot, o: &mut Out<Self>) {
        let p = proposer(state);
        let in_progress = matches!(p.phase, Phase::Preparing { .. } | Phase::Accepting { .. });
        if !in_progress || b != p.ballot() {
            return;
        }
        let p = proposer_mut(state);
        p.phase = Phase::Idle;
        p.round = p.round.max(promised.round);
        if p.round >= self.topology.max_round {
            o.cancel_timer(SynodTimer::Retry);
        }
    }

    fn on_prepare(&self, state: &mut Cow<SynodState>, src: Id, b: Ballot, o: &mut Out<Self>) {
        let a = *acceptor(state);
        match a.promised {
            Some(promised) if promised > b => o.send(src, SynodMsg::Nack(b, promised)),
            Some(promised) if promised == b => o.send(src, SynodMsg::Promise(b, a.accepted)),
            _ => {
                *state.to_mut() = SynodState::Acceptor(AcceptorState {
                    promised: Some(b),
                    ..a
                });
                if !self.topology.has_bug(SynodBug::ForgetPromise) {
                    o.save(SynodStorage::Acceptor {
                        promised: Some(b),
                        accepted: a.accepted,
                    });
                }
                o.send(src, SynodMsg::Promise(b, a.accepted));
            }
        }
    }

    fn on_accept(
        &self,
        state: &mut Cow<SynodState>,
        src: Id,
        b: Ballot,
        v: Value,
        o: &mut Out<Self>,
    ) {
        let t = &self.topology;
        let a = *acceptor(state);
        if let Some(promised) = a.promised {
            if promised > b && !t.has_bug(SynodBug::AcceptBelowPromise) {
                o.send(src, SynodMsg::Nack(b, promised));
                return;
            }
        }
        let value = match a.accepted {
            Some((_, old)) if t.has_bug(SynodBug::AcceptedKeepsOldValue) => old,
            _ => v,
        };
        let next = AcceptorState {
            promised: a.promised.max(Some(b)),
            accepted: Some((b, value)),
        };
        if next != a {
            *state.to_mut() = SynodState::Acceptor(next);
            let promised = if t.has_bug(SynodBug::ForgetPromise) {
                None
            } else {
                next.promised
            };
            o.save(SynodStorage::Acceptor {
                promised,
                accepted: next.accepted,
            });
        }
        o.broadcast(&t.learners, &SynodMsg::Accepted(b, value));
    }

    fn on_accepted_at_learner(
        &self,
        state: &mut Cow<SynodState>,
        src: Id,
        b: Ballot,
        v: Value,
        o: &mut Out<Self>,
    ) {
        let l = learner(state);
        if l.learned.is_some() {
            return;
        }
        let mut votes = l.votes.clone();
        match votes.iter_mut().find(|(vb, vv, _)| (*vb, *vv) == (b, v)) {
            Some((_, _, from)) if from.contains(src) => return,
            Some((_, _, from)) => from.insert(src),
            None => {
                votes.push((b, v, IdSet::default().with(src)));
                votes.sort();
            }
        }
        let supporters = if self.topology.has_bug(SynodBug::LearnerMixedBallots) {
            votes
                .iter()
                .filter(|(_, vv, _)| *vv == v)
                .flat_map(|(_, _, from)| from.iter())
                .collect()
        } else {
            votes
                .iter()
                .find(|(vb, vv, _)| (*vb, *vv) == (b, v))
                .map_or(IdSet::default(), |e| e.2)
        };
        let next = if supporters.len() >= self.topology.majority {
            o.save(SynodStorage::Learner { learned: v });
            LearnerState {
                learned: Some(v),
                votes: Vec::new(),
            }
        } else {
            LearnerState {
                learned: None,
                votes,
            }
        };
        *state.to_mut() = SynodState::Learner(next);
    }
}

/// Ghost variables: what the run has done so far, kept only by the model.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct SynodHistory {
    /// Every proposal `(ballot, value)` ever issued (an Accept sent), sorted.
    pub proposals: Vec<(Ballot, Value)>,
    /// Every vote `(acceptor, ballot, value)` ever cast (an Accepted sent), sorted.
    pub votes: Vec<(Id, Ballot, Value)>,
    /// The highest ballot each acceptor ever promised in a Promise, sorted by acceptor.
    pub promises: Vec<(Id, Ballot)>,
    /// The first vote cast against a promise: `(acceptor, voted ballot, promised ballot)`.
    pub broken_promise: Option<(Id, Ballot, Ballot)>,
}

/// One line, readable in the explorer: `proposals [1.0=v1] votes [n2:1.0=v1] promises [n2:1.0]`.
impl fmt::Debug for SynodHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("proposals [")?;
        for (i, (b, v)) in self.proposals.iter().enumerate() {
            write!(f, "{}{b}={v:?}", if i > 0 { ", " } else { "" })?;
        }
        f.write_str("] votes [")?;
        for (i, (a, b, v)) in self.votes.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            write!(f, "{sep}n{}:{b}={v:?}", usize::from(*a))?;
        }
        f.write_str("] promises [")?;
        for (i, (a, b)) in self.promises.iter().enumerate() {
            write!(
                f,
                "{}n{}:{b}",
                if i > 0 { ", " } else { "" },
                usize::from(*a)
            )?;
        }
        f.write_str("]")?;
        if let Some((a, voted, promised)) = self.broken_promise {
            let a = usize::from(a);
            write!(
                f,
                " broken promise: n{a} voted {voted} after promising {promised}"
            )?;
        }
        Ok(())
    }
}

impl Rewrite<Id> for SynodHistory {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        let mut votes: Vec<_> = self
            .votes
            .iter()
            .map(|&(a, b, v)| (plan.rewrite(&a), b, v))
            .collect();
        votes.sort();
        let mut promises: Vec<_> = self
            .promises
            .iter()
            .map(|&(a, b)| (plan.rewrite(&a), b))
            .collect();
        promises.sort();
        SynodHistory {
            proposals: self.proposals.clone(),
            votes,
            promises,
            broken_promise: self
                .broken_promise
                .map(|(a, b, p)| (plan.rewrite(&a), b, p)),
        }
    }
}

impl SynodHistory {
    fn promised(&self, acceptor: Id) -> Option<Ballot> {
        self.promises
            .iter()
            .find(|(a, _)| *a == acceptor)
            .map(|(_, b)| *b)
    }

    /// The `(ballot, value)` pairs voted for by at least `majority` acceptors.
    pub fn chosen(&self, majority: usize) -> Vec<(Ballot, Value)> {
        let mut pairs: Vec<(Ballot, Value)> = self.votes.iter().map(|&(_, b, v)| (b, v)).collect();
        pairs.sort();
        pairs.dedup();
        pairs.retain(|&(b, v)| {
            self.votes
                .iter()
                .filter(|&&(_, vb, vv)| (vb, vv) == (b, v))
                .count()
                >= majority
        });
        pairs
    }

    /// I1 for one issued proposal: some majority S has either no vote below `n`, or its
    /// highest vote below `n` is for `v`.
    fn safe_at(&self, quorums: &[IdSet], n: Ballot, v: Value) -> bool {
        quorums.iter().any(|q| {
            let below = self
                .votes
                .iter()
                .filter(|(a, b, _)| q.contains(*a) && *b < n);
            match below.max_by_key(|(_, b, _)| *b) {
                None => true,
                Some(&(_, top, _)) => self
                    .votes
                    .iter()
                    .filter(|(a, b, _)| q.contains(*a) && *b == top)
                    .all(|(_, _, w)| *w == v),
            }
        })
    }

    fn record_proposal(&self, b: Ballot, v: Value) -> Option<Self> {
        let at = self.proposals.binary_search(&(b, v)).err()?;
        let mut next = self.clone();
        next.proposals.insert(at, (b, v));
        Some(next)
    }

    fn record_vote(&self, acceptor: Id, b: Ballot, v: Value) -> Option<Self> {
        let at = self.votes.binary_search(&(acceptor, b, v)).err()?;
        let mut next = self.clone();
        next.votes.insert(at, (acceptor, b, v));
        if let Some(promised) = self.promised(acceptor) {
            if promised > b && next.broken_promise.is_none() {
                next.broken_promise = Some((acceptor, b, promised));
            }
        }
        Some(next)
    }

    fn record_promise(&self, acceptor: Id, b: Ballot) -> Option<Self> {
        if self.promised(acceptor).is_some_and(|p| p >= b) {
            return None;
        }
        let mut next = self.clone();
        next.promises.retain(|(a, _)| *a != acceptor);
        next.promises.push((acceptor, b));
        next.promises.sort();
        Some(next)
    }
}

fn record_msg_out(
    _cfg: &SynodConfig,
    history: &SynodHistory,
    env: Envelope<&SynodMsg>,
) -> Option<SynodHistory> {
    match *env.msg {
        SynodMsg::Accept(b, v) => history.record_proposal(b, v),
        SynodMsg::Accepted(b, v) => history.record_vote(env.src, b, v),
        SynodMsg::Promise(b, _) => history.record_promise(env.src, b),
        _ => None,
    }
}

pub type SynodModel = ActorModel<SynodActor, SynodConfig, SynodHistory>;
pub type SynodModelState = ActorModelState<SynodActor, SynodHistory>;

/// Builds the model for `cfg` (call [`SynodConfig::validate`] first).
pub fn model(cfg: SynodConfig) -> SynodModel {
    let topology = Arc::new(Topology {
        acceptors: cfg.acceptor_ids(),
        learners: cfg.learner_ids(),
        majority: cfg.majority(),
        max_round: cfg.max_round,
        bug: cfg.bug,
    });
    let actor = |role| SynodActor {
        role,
        topology: Arc::clone(&topology),
    };
    let proposers = (0..cfg.proposers).map(|p| Role::Proposer {
        index: p as u8,
        value: cfg.input_value(p),
    });
    let roles: Vec<Role> = proposers
        .chain((0..cfg.acceptors).map(|_| Role::Acceptor))
        .chain((0..cfg.learners).map(|_| Role::Learner))
        .collect();
    let network = if cfg.duplicating {
        Network::new_unordered_duplicating([])
    } else {
        Network::new_unordered_nonduplicating([])
    };
    let lossy = if cfg.lossy {
        LossyNetwork::Yes
    } else {
        LossyNetwork::No
    };
    let crashes = cfg.crashes;
    ActorModel::new(cfg, SynodHistory::default())
        .actors(roles.into_iter().map(actor))
        .init_network(network)
        .lossy_network(lossy)
        .max_crashes(crashes)
        .record_msg_out(record_msg_out)
        .property(Expectation::Always, "Validity", validity)
        .property(Expectation::Always, "Agreement", agreement)
        .property(Expectation::Always, "R2", r2)
        .property(Expectation::Always, "R2a", r2a)
        .property(Expectation::Always, "R2'", r2_prime)
        .property(Expectation::Always, "I1", i1)
        .property(Expectation::Always, "P1a", p1a)
        .property(Expectation::Always, "Learner safety", learner_safety)
        .property(Expectation::Sometimes, "Non-vacuity", non_vacuity)
        .property(
            Expectation::Sometimes,
            "witness: promises from two ballots",
            promises_from_two_ballots,
        )
        .property(
            Expectation::Sometimes,
            "witness: proposer preempted",
            proposer_preempted,
        )
        .property(
            Expectation::Sometimes,
            "witness: duplicate vote",
            duplicate_vote,
        )
}

fn learned_values(state: &SynodModelState) -> impl Iterator<Item = Value> + '_ {
    state.actor_states.iter().filter_map(|s| match &**s {
        SynodState::Learner(l) => l.learned,
        _ => None,
    })
}

/// [C1] Only a proposed value may be chosen or learned.
fn validity(m: &SynodModel, s: &SynodModelState) -> bool {
    let proposed = |v: Value| m.cfg.input_values().any(|input| input == v);
    let chosen = s.history.chosen(m.cfg.majority());
    chosen.iter().all(|&(_, v)| proposed(v)) && learned_values(s).all(proposed)
}

/// [C2] At most one value is chosen.
fn agreement(m: &SynodModel, s: &SynodModelState) -> bool {
    let chosen = s.history.chosen(m.cfg.majority());
    chosen.windows(2).all(|w| w[0].1 == w[1].1)
}

/// [P2] If (n, v) is chosen, every chosen (m, w) with m > n has w = v.
fn r2(m: &SynodModel, s: &SynodModelState) -> bool {
    let chosen = s.history.chosen(m.cfg.majority());
    chosen
        .iter()
        .all(|&(n, v)| chosen.iter().all(|&(m, w)| m <= n || w == v))
}

/// [P2a] If (n, v) is chosen, every proposal (m, w) with m > n accepted by any acceptor has w = v.
fn r2a(m: &SynodModel, s: &SynodModelState) -> bool {
    let chosen = s.history.chosen(m.cfg.majority());
    chosen
        .iter()
        .all(|&(n, v)| s.history.votes.iter().all(|&(_, m, w)| m <= n || w == v))
}

/// [P2b] If (n, v) is chosen, every proposal (m, w) with m > n issued by any proposer has w = v.
fn r2_prime(m: &SynodModel, s: &SynodModelState) -> bool {
    let chosen = s.history.chosen(m.cfg.majority());
    chosen
        .iter()
        .all(|&(n, v)| s.history.proposals.iter().all(|&(m, w)| m <= n || w == v))
}

/// [P2c] Every issued proposal (n, v) is safe at n for some majority.
fn i1(m: &SynodModel, s: &SynodModelState) -> bool {
    let quorums = minimal_majorities(&m.cfg.acceptor_ids());
    s.history
        .proposals
        .iter()
        .all(|&(n, v)| s.history.safe_at(&quorums, n, v))
}

/// An acceptor accepts (n, v) only if it has not promised a ballot above n.
fn p1a(_: &SynodModel, s: &SynodModelState) -> bool {
    s.history.broken_promise.is_none()
}

/// A learner only learns a value that is chosen.
fn learner_safety(m: &SynodModel, s: &SynodModelState) -> bool {
    let chosen = s.history.chosen(m.cfg.majority());
    learned_values(s).all(|v| chosen.iter().any(|&(_, w)| w == v))
}

/// Non-vacuity: a value is chosen and learned.
fn non_vacuity(m: &SynodModel, s: &SynodModelState) -> bool {
    !s.history.chosen(m.cfg.majority()).is_empty() && learned_values(s).next().is_some()
}

// Scenario witnesses (`runner::WITNESS_PREFIX`): behaviours a configuration must reach for a
// rule to be exercised at all. Each reads the actors and the messages in flight only, so
// adding them changes no state count.

/// The proposer states with their ids.
fn proposers_by_id(s: &SynodModelState) -> impl Iterator<Item = (Id, &ProposerState)> + '_ {
    s.actor_states
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match &**a {
            SynodState::Proposer(p) => Some((Id::from(i), p)),
            _ => None,
        })
}

/// P2c must choose: a preparing proposer already holds a vote from one ballot, and a Promise
/// for its ballot in flight to it carries a vote from another ballot for another value. Only
/// here does "the value of the highest-ballot vote" differ from other choices.
fn promises_from_two_ballots(_: &SynodModel, s: &SynodModelState) -> bool {
    proposers_by_id(s).any(|(id, p)| {
        let Phase::Preparing {
            highest: Some((b1, v1)),
            ..
        } = p.phase
        else {
            return false;
        };
        s.network.iter_all().any(|env| match env.msg {
            SynodMsg::Promise(b, Some((b2, v2))) => {
                env.dst == id && *b == p.ballot() && *b2 != b1 && *v2 != v1
            }
            _ => false,
        })
    })
}

/// A proposer's ballot is overtaken while it is in progress: a Nack for it is in flight.
fn proposer_preempted(_: &SynodModel, s: &SynodModelState) -> bool {
    proposers_by_id(s).any(|(id, p)| {
        matches!(p.phase, Phase::Preparing { .. } | Phase::Accepting { .. })
            && s.network.iter_all().any(
                |env| matches!(env.msg, SynodMsg::Nack(b, _) if env.dst == id && *b == p.ballot()),
            )
    })
}

/// With a duplicating network: an Accepted a learner has counted is in flight to it again
/// where one more distinct vote would make it learn, so counting it twice would make a false
/// majority.
fn duplicate_vote(m: &SynodModel, s: &SynodModelState) -> bool {
    s.actor_states.iter().enumerate().any(|(i, a)| {
        let SynodState::Learner(l) = &**a else {
            return false;
        };
        s.network.iter_all().any(|env| match env.msg {
            SynodMsg::Accepted(b, v) if env.dst == Id::from(i) => {
                l.votes.iter().any(|(vb, vv, from)| {
                    (vb, vv) == (b, v)
                        && from.contains(env.src)
                        && from.len() + 1 == m.cfg.majority()
                })
            }
            _ => false,
        })
    })
}

/// Symmetry reduction: acceptors (and learners) permuted into a canonical order.
pub fn representative(state: &SynodModelState) -> SynodModelState {
    state.representative()
}

impl NodeNames for SynodConfig {
    fn node_name(&self, id: Id) -> String {
        let i = usize::from(id);
        if i < self.proposers {
            format!("n{i} (proposer p{i})")
        } else if i < self.proposers + self.acceptors {
            format!("n{i} (acceptor)")
        } else {
            format!("n{i} (learner)")
        }
    }
}

impl CheckTarget for SynodModel {
    fn variant(&self) -> &'static str {
        "synod"
    }

    fn config_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(&self.cfg).unwrap_or_default();
        json["bug"] = self
            .cfg
            .bug
            .map_or(serde_json::Value::Null, |b| b.name().into());
        json
    }

    fn state_json(&self, state: &Self::State) -> serde_json::Value {
        actor_trace::state_json(state)
    }

    fn action_json(&self, action: &Self::Action) -> serde_json::Value {
        actor_trace::action_json(action)
    }

    fn describe_step(
        &self,
        prev: &Self::State,
        action: &Self::Action,
        next: &Self::State,
    ) -> String {
        actor_trace::describe_step(self, prev, action, next)
    }

    fn symmetry(&self) -> Option<SymmetryFn<Self::State>> {
        Some(representative)
    }

    fn render_state(&self, state: &Self::State) -> String {
        format!("{:#?}", View(state.clone()))
    }

    fn action_label(&self, action: &Self::Action) -> String {
        ReadableAction::render(action)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use stateright::{Checker, HasDiscoveries, Model};

    use super::*;

    /// Runs DFS to exhaustion (or until every property in `stop_at` is discovered) and returns
    /// the discovered property names and the unique state count.
    fn run(
        cfg: SynodConfig,
        symmetry: bool,
        stop_at: &[&'static str],
    ) -> (Vec<&'static str>, usize) {
        let mut checker = model(cfg).checker().threads(2);
        if symmetry {
            checker = checker.symmetry_fn(representative);
        }
        if !stop_at.is_empty() {
            checker = checker.finish_when(HasDiscoveries::AllOf(stop_at.iter().copied().collect()));
        }
        let checker = checker.spawn_dfs().join();
        let mut names: Vec<_> = checker.discoveries().into_keys().collect();
        names.sort();
        (names, checker.unique_state_count())
    }

    /// Random walks (seeded, so failures replay) until every property in `stop_at` is
    /// discovered or the state budget is spent.
    fn simulate(cfg: SynodConfig, stop_at: &[&'static str]) -> (Vec<&'static str>, usize) {
        let checker = model(cfg)
            .checker()
            .threads(1)
            .finish_when(HasDiscoveries::AllOf(stop_at.iter().copied().collect()))
            .target_state_count(50_000_000)
            .spawn_simulation(7, stateright::UniformChooser)
            .join();
        let mut names: Vec<_> = checker.discoveries().into_keys().collect();
        names.sort();
        (names, checker.state_count())
    }

    /// Scenario witnesses (`runner::WITNESS_PREFIX`) each small configuration reaches. Promises
    /// from two ballots needs three ballots in play: CI reaches it with `paxos-conform check
    /// synod --proposers 3 --values 2 --depth 18` (specs/results.md, "Scenario witnesses").
    #[test]
    fn witnesses_each_configuration_reaches() {
        let duplicating = SynodConfig {
            proposers: 1,
            values: 1,
            duplicating: true,
            ..SynodConfig::default()
        };
        let cases = [
            (SynodConfig::default(), vec!["witness: proposer preempted"]),
            (duplicating, vec!["witness: duplicate vote"]),
        ];
        for (cfg, expected) in cases {
            let (discovered, _) = run(cfg.clone(), false, &[]);
            let witnesses: Vec<_> = discovered
                .into_iter()
                .filter(|name| name.starts_with(crate::runner::WITNESS_PREFIX))
                .collect();
            assert_eq!(witnesses, expected, "{cfg:?}");
        }
    }

    #[test]
    fn correct_protocol_satisfies_every_invariant_and_reaches_a_decision() {
        let (discovered, unique) = run(SynodConfig::default(), false, &[]);
        assert_eq!(
            discovered,
            vec!["Non-vacuity", "witness: proposer preempted"]
        );
        // Pinned: a change here is a change in the model, made on purpose or caught. (With
        // symmetry the count depends on thread interleaving: sorting does not break ties.)
        assert_eq!(unique, 255_901);
    }

    #[test]
    fn breadth_first_search_reaches_the_same_states() {
        let checker = model(SynodConfig::default())
            .checker()
            .threads(2)
            .spawn_bfs()
            .join();
        assert_eq!(checker.unique_state_count(), 255_901);
        checker.assert_no_discovery("Agreement");
        checker.assert_any_discovery("Non-vacuity");
    }

    #[test]
    fn correct_protocol_with_five_acceptors_one_proposer() {
        let cfg = SynodConfig {
            proposers: 1,
            values: 1,
            acceptors: 5,
            ..SynodConfig::default()
        };
        let (discovered, _) = run(cfg, true, &[]);
        assert_eq!(discovered, vec!["Non-vacuity"]);
    }

    #[test]
    fn every_seeded_bug_violates_what_it_claims() {
        let mut missed = Vec::new();
        for &bug in SynodBug::ALL {
            let started = std::time::Instant::now();
            let (discovered, unique) = if bug.needs_random_search() {
                simulate(bug.witness_config(), bug.violates())
            } else {
                run(bug.witness_config(), true, bug.violates())
            };
            eprintln!(
                "{bug}: {discovered:?} after {unique} states in {:?}",
                started.elapsed()
            );
            for property in bug.violates() {
                if !discovered.contains(property) {
                    missed.push(format!("{bug}: no {property} after {unique} states"));
                }
            }
        }
        assert!(missed.is_empty(), "{missed:#?}");
    }

    #[test]
    fn every_invariant_has_a_seeded_bug() {
        let targeted: BTreeSet<&str> = SynodBug::ALL
            .iter()
            .flat_map(|bug| bug.violates().iter().copied())
            .collect();
        let model = model(SynodConfig::default());
        for property in model.properties() {
            if property.expectation == Expectation::Always {
                assert!(
                    targeted.contains(property.name),
                    "no bug violates {}",
                    property.name
                );
            }
        }
    }

    /// Symmetry reduction must merge states without changing any verdict: the same properties
    /// are discovered with and without it, for the correct protocol and for every bug whose
    /// witness fits in a full exploration.
    #[test]
    fn symmetry_reduction_changes_no_verdict() {
        let configs = std::iter::once(SynodConfig::default())
            .chain(
                SynodBug::ALL
                    .iter()
                    .filter(|bug| !bug.needs_random_search())
                    .map(|bug| bug.witness_config()),
            )
            .filter(|cfg| cfg.crashes == 0);
        for cfg in configs {
            let (with, reduced) = run(cfg.clone(), true, &[]);
            let (without, full) = run(cfg.clone(), false, &[]);
            assert_eq!(with, without, "verdicts differ for {cfg:?}");
            assert!(reduced <= full, "{cfg:?}: symmetry grew the state space");
        }
    }

    #[test]
    fn bad_configurations_are_rejected_with_the_option_named() {
        let bad = [
            (
                SynodConfig {
                    proposers: 0,
                    ..SynodConfig::default()
                },
                "--proposers",
            ),
            (
                SynodConfig {
                    acceptors: 0,
                    ..SynodConfig::default()
                },
                "--acceptors",
            ),
            (
                SynodConfig {
                    max_round: 0,
                    ..SynodConfig::default()
                },
                "--rounds",
            ),
            (
                SynodConfig {
                    values: 3,
                    ..SynodConfig::default()
                },
                "--values",
            ),
            (
                SynodConfig {
                    crashes: 9,
                    ..SynodConfig::default()
                },
                "--crashes",
            ),
        ];
        for (cfg, option) in bad {
            let error = cfg.validate().expect_err("invalid configuration accepted");
            assert!(error.contains(option), "{error}");
        }
        assert!(SynodConfig::default().validate().is_ok());
    }

    #[test]
    fn bug_names_round_trip_and_unknown_names_list_the_known_ones() {
        for &bug in SynodBug::ALL {
            assert_eq!(bug.name().parse::<SynodBug>(), Ok(bug));
        }
        let error = "no-such-bug"
            .parse::<SynodBug>()
            .expect_err("unknown bug accepted");
        assert!(error.contains("accept-below-promise"), "{error}");
    }
}
