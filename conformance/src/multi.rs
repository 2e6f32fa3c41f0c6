//! Multi-Paxos conformance, step by step: every (reachable model state, enabled action) pair
//! whose actor is a replica is replayed on the implementation's replica core
//! ([`paxos_protocol::multi::Replica`]), and the two must agree on the replica's next state, the
//! messages it sends (as a multiset), what it persists and whether its election timer is
//! armed (`specs/protocol.md`, M1–M12; DESIGN.md §5).
//!
//! ```text
//!   model state ──concretize──► Replica::from_state ─┐
//!   model action ──────────────► one core Input ─────┼─► step ─► effects ─► StepOutcome (actual)
//!   model storage ─────────────► Replica::recover ───┘                          │ ==
//!   model: on_msg / on_timeout / on_start, next_state ─────────────────► StepOutcome (expected)
//! ```
//!
//! The mapping:
//! - replicas are impl nodes with the model's actor indices as ids; ballots map 1:1
//!   ([`crate::ballot_to_impl`]);
//! - model command `c0` is [`Entry::Noop`]; `ck` is the client command
//!   `(client, seq) = MultiConfig::command_owner(ck)` whose operation is `k` (so the mapping
//!   back is exact, and checked); the state machine is a [`Recorder`], whose executed sequence
//!   is the model's `executed`, and whose client table is rebuilt from it;
//! - `Deliver Request(c)` is [`Input::ClientRequest`], any other delivery at a replica is
//!   [`Input::Message`], the `Election` timer is an [`Input::Tick`] at the replica's clock
//!   (the concretised replica's armed timers are all due then), and `Recover` rebuilds the
//!   replica from the model's durable storage alone with [`Replica::recover_from`];
//! - time (leases, L1–L6): a model tick is a millisecond. The model's clock is the core's
//!   [`Timers::now_ms`], its deadlines the core's [`Lease`] (0 is `None`), its `Clock` timer a
//!   `Tick` one millisecond on with no timer due ([`Due::Clock`]); the lease is `L` ms and
//!   the margin `2D`. The clock the model keeps in storage is the host's, which the core
//!   reads at recovery (`Replica::recover_from`'s `now_ms`); the drift bound is the
//!   environment's, the model's alone;
//! - the model's `Compact` timer is [`Input::Compact`] (K1), its `CatchUp` timer a `Tick` at
//!   which only the concretised replica's catch-up deadline is due (K5, [`Due`]);
//! - the core's timer-driven steps that the model takes as stuttering steps (the leader's
//!   heartbeat H1 and retransmission R1, a heartbeat's receipt H2) are replayed in every state
//!   by [`stutters`]: they must leave the model state as it was, persist nothing, and send
//!   exactly what the rules say: retransmitted Accepts that are proposals the model has made
//!   (duplicates), and heartbeats, which the model does not see;
//! - an impl `Reply { client, seq }` is the model's `Reply(c)` to `MultiConfig::client_id`;
//! - the persisted state is compared as recovery reads it (M11): the impl's records are folded
//!   onto the durable state before the step, and on both sides the promise is read as
//!   `max(promised, highest accepted ballot)`, the bootstrap promise `1.0` when none was
//!   written (the two sides may write the bootstrap promise at different moments);
//! - the impl has no round bound, so its timer counts as armed when it is armed *and* a
//!   campaign is within the model's `max_round` (the model disarms it otherwise);
//! - a leader's voters of chosen slots are dead state, cleared by both sides when the slot is
//!   chosen but set by the model (not the core) when a leader proposes into a slot it already
//!   learned as chosen: both sides are compared in [`canonical`] form, without them.
//!
//! Every disagreement is a divergence of [`crate::check::check`], the one exhaustive driver.
//!
//! Client actions (a Reply delivered to a client, the client's Retry timer) have no impl
//! counterpart and are counted as skipped. Drops, crashes and deliveries to a crashed replica
//! change no replica: they are counted as `no_step` and only explored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use paxos_model::multi::{
    self, AppliedSet, BallotOf, Cmd, CmdOf, CommandSet, LeaderPhase, LeaseClock, MultiConfig,
    MultiModel, MultiModelState, MultiMsg, MultiState, MultiTimer, Number, ReadIndex, ReplicaState,
    ReplicaStorage, SlotEntry, SlotVec, SlotsOf, Small, Space, StateMachine, Ticks, Vote, VoteOf,
    WaitingReads,
};
use paxos_model::types::{Ballot, IdSet};
use paxos_protocol::multi::{
    AppliedState, ClientEntry, ClientId, ClientTable, Command, Config, Durable, Effect, Entry,
    Input, InputOf, Lease, Message, MessageOf, Millis, Phase, ReadIndex as ImplReadIndex, Recorder,
    Replica, ReplicaEffect, ReplicaState as ImplState, Slot, SlotMap, SnapshotOf, Timers, Timing,
    WaitingRead,
};
use paxos_protocol::Ballot as ImplBallot;
use stateright::actor::{Actor, ActorModelAction, Command as OutCommand, Id, Out};

use crate::{ballot_to_impl, ballot_to_model};

/// A command's operation under conformance: the model command's id (the recorder executes
/// it as an opaque value, and the mapping reads the command back from it).
pub type Op = u64;
/// The implementation's state machine under conformance: it records what it executes.
pub type Sm = Recorder<Op>;
/// The implementation replica under conformance.
pub type ImplReplica = Replica<Sm>;
pub(crate) type ImplEffect = ReplicaEffect<Sm>;
pub(crate) type ImplMessage = MessageOf<Sm>;
pub(crate) type ImplInput = InputOf<Sm>;
/// The core's snapshot under conformance: the applied prefix, the executed commands and the
/// client table derived from them.
pub(crate) type ImplSnapshot = SnapshotOf<Sm>;
pub(crate) type ModelAction = ActorModelAction<MultiMsg, MultiTimer, ()>;

/// What one replica step did, in the model's vocabulary, for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepOutcome<S: Space = Small> {
    /// The replica's state after the step.
    pub state: ReplicaState<S>,
    /// `(destination actor, message)`, sorted: compared as a multiset.
    pub sends: Vec<(usize, MultiMsg<S>)>,
    /// The durable state after the step as recovery reads it (M11): `promised` is
    /// `max(promised, highest accepted ballot)`, `1.0` when never written.
    pub persisted: ReplicaStorage<S>,
    /// Whether the election timer is armed after the step (and, impl side, a campaign is
    /// within the model's round bound).
    pub election_timer: bool,
}

impl<S: Space> StepOutcome<S> {
    /// The parts of the two outcomes that differ.
    pub fn differences(&self, other: &StepOutcome<S>) -> Vec<&'static str> {
        let mut parts = Vec::new();
        if self.state != other.state {
            parts.push("state");
        }
        if self.sends != other.sends {
            parts.push("sends");
        }
        if self.persisted != other.persisted {
            parts.push("persisted");
        }
        if self.election_timer != other.election_timer {
            parts.push("election timer");
        }
        parts
    }
}

// ------------------------------------------------------------------------------ vocabulary

/// The implementation configuration of replica `id`: replica 0 is the initial leader, the
/// window and the slot bound are the model's.
pub fn impl_config(cfg: &MultiConfig, id: usize) -> Config {
    Config {
        id: node_id(id),
        replicas: (0..cfg.replicas).map(node_id).collect(),
        initial_leader: 0,
        window: cfg.window as u64,
        slot_limit: Some(cfg.slots as u64),
        timing: Timing {
            lease_ms: Millis::from(cfg.leases),
            lease_margin_ms: Millis::from(cfg.lease_margin()),
            ..Timing::default()
        },
        catch_up_entries_max: cfg.catch_up_max.unwrap_or(usize::MAX),
    }
}

/// How far past the clock a concretised replica's timers that are not due stand: past any
/// tick conformance gives.
const TIMERS_NOT_DUE_MS: Millis = 1_000_000;

/// Which of a concretised replica's timers are due at its clock's reading: those its phase
/// arms (the election timer, or a leader's heartbeat and retransmission), the catch-up timer
/// (K5) alone, or none (the clock's tick). The model has a timer for each; the core one clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Phase,
    CatchUp,
    Clock,
}

/// The tick a replica whose clock reads `now` is stepped with for `timer`: at `now` for the
/// timers that are due then, one millisecond on for the clock's (leases' time passing).
fn tick_for(now: Millis, due: Due) -> ImplInput {
    let now_ms = match due {
        Due::Phase | Due::CatchUp => now,
        Due::Clock => now + 1,
    };
    Input::Tick { now_ms }
}

/// The timers of a concretised replica whose clock reads `now`: those its phase arms and the
/// catch-up timer, the ones `due` names due at `now`; a leader's retransmission covers every
/// slot in flight (the most R1 can re-send).
fn timers_due(phase: &Phase<Op>, due: Due, now: Millis) -> Timers {
    let (due_at, later) = (now, now + TIMERS_NOT_DUE_MS);
    let (phase_at, catch_up_at) = match due {
        Due::Phase => (due_at, later),
        Due::CatchUp => (later, due_at),
        Due::Clock => (later, later),
    };
    let mut timers = Timers {
        now_ms: now,
        election_timeout_ms: Timing::default().election_timeout_min_ms,
        catch_up_at_ms: Some(catch_up_at),
        ..Timers::default()
    };
    match phase {
        Phase::Leading { next_slot, .. } => {
            timers.heartbeat_at_ms = Some(phase_at);
            timers.retransmit_at_ms = Some(phase_at);
            timers.retransmit_below = *next_slot;
        }
        _ => timers.election_at_ms = Some(phase_at),
    }
    timers
}

fn node_id(i: usize) -> u32 {
    u32::try_from(i).expect("models have fewer than 16 actors")
}

/// The client command that model command `cmd` (not the no-op) stands for: its operation is
/// the command's id.
pub fn command_to_impl<N: Number>(cfg: &MultiConfig, cmd: Cmd<N>) -> Command<Op> {
    let (client, seq) = cfg.command_owner(cmd);
    Command {
        client: ClientId(client as u64),
        seq: seq.get(),
        op: cmd.id(),
    }
}

pub fn entry_to_impl<N: Number>(cfg: &MultiConfig, cmd: Cmd<N>) -> Entry<Op> {
    if cmd.is_noop() {
        Entry::Noop
    } else {
        Entry::Command(command_to_impl(cfg, cmd))
    }
}

/// The model command of an impl command: its operation names it (one of the configuration's
/// commands, or the one a seeded bug fabricates), and its `(client, seq)` must be that
/// command's.
pub fn command_to_model<N: Number>(cfg: &MultiConfig, c: &Command<Op>) -> Result<Cmd<N>, String> {
    let known =
        |cmd: &Cmd<N>| !cmd.is_noop() && (c.op <= cfg.commands as u64 || *cmd == Cmd::fabricated());
    let cmd = N::try_from(c.op).ok().map(Cmd).filter(known);
    match cmd.map(|cmd| (cmd, cfg.command_owner(cmd))) {
        Some((cmd, (client, seq))) if (client as u64, seq.get()) == (c.client.0, c.seq) => Ok(cmd),
        _ => Err(format!("command {c:?} is no model command")),
    }
}

pub fn entry_to_model<N: Number>(cfg: &MultiConfig, entry: &Entry<Op>) -> Result<Cmd<N>, String> {
    match entry {
        Entry::Noop => Ok(Cmd::noop()),
        Entry::Command(c) => command_to_model(cfg, c),
    }
}

fn ballot_out<N: Number>(b: ImplBallot) -> Result<Ballot<N>, String> {
    ballot_to_model(b).ok_or_else(|| format!("ballot {b} is beyond the model's bounds"))
}

/// `x` in the model's type for it (a `u8` of [`Small`], a `u64` of [`Unbounded`], a clock).
fn within<T: TryFrom<u64>>(what: &str, x: u64) -> Result<T, String> {
    T::try_from(x).map_err(|_| format!("{what} {x} is beyond the model's bounds"))
}

/// Slot `slot` as an index into the slot vectors of space `S`.
fn slot_in<S: Space>(slot: u64) -> Result<S::N, String> {
    S::N::try_from(slot)
        .ok()
        .filter(|_| slot < S::SLOTS)
        .ok_or_else(|| format!("slot {slot} is beyond the model's {} slots", S::SLOTS))
}

fn vote_to_impl<N: Number>(cfg: &MultiConfig, (b, cmd): Vote<N>) -> (ImplBallot, Entry<Op>) {
    (ballot_to_impl(b), entry_to_impl(cfg, cmd))
}

/// A model replica's votes in the slots of `run` as the core holds them: what
/// [`msg_to_model`] resolves an `Accepted` run's entries from.
pub fn votes_to_impl_in<S: Space>(
    cfg: &MultiConfig,
    votes: &SlotsOf<S, Option<VoteOf<S>>>,
    run: std::ops::Range<u64>,
) -> SlotMap<(ImplBallot, Entry<Op>)> {
    run.filter_map(|s| {
        let vote = votes.get(S::N::try_from(s).ok()?)?;
        Some((s, vote_to_impl(cfg, vote)))
    })
    .collect()
}

fn vote_to_model<N: Number>(
    cfg: &MultiConfig,
    (b, entry): &(ImplBallot, Entry<Op>),
) -> Result<Vote<N>, String> {
    Ok((ballot_out(*b)?, entry_to_model(cfg, entry)?))
}

/// A model slot vector as a sparse map keyed by slot.
fn slots_to_map<N: Number, T, U, C: FromIterator<(u64, U)>>(
    slots: &impl SlotVec<N, Option<T>>,
    f: impl Fn(T) -> U,
) -> C
where
    Option<T>: SlotEntry,
{
    slots
        .entries()
        .filter_map(|(s, x)| x.map(|x| (s.get(), f(x))))
        .collect()
}

/// A sparse map keyed by slot as a slot vector of space `S`.
fn map_to_slots<S: Space, T, U>(
    map: &SlotMap<T>,
    f: impl Fn(&T) -> Result<U, String>,
) -> Result<SlotsOf<S, Option<U>>, String>
where
    Option<U>: SlotEntry,
{
    let mut slots = SlotsOf::<S, Option<U>>::default();
    for (slot, x) in map.iter() {
        slots.set(slot_in::<S>(slot)?, Some(f(x)?));
    }
    Ok(slots)
}

/// [`map_to_slots`], built from `near` (a vector expected to be equal or close: the model's
/// side of the same step) by changing only the slots where the two differ. The result depends
/// on `map` alone; `near` spares building every entry of a long log anew at every step of
/// trace validation, and an equal result shares `near`'s tree, which compares in O(1).
fn map_to_slots_near<S: Space, T, U>(
    map: &SlotMap<T>,
    f: impl Fn(&T) -> Result<U, String>,
    near: Option<&SlotsOf<S, Option<U>>>,
) -> Result<SlotsOf<S, Option<U>>, String>
where
    Option<U>: SlotEntry,
{
    let Some(near) = near else {
        return map_to_slots::<S, _, _>(map, f);
    };
    let mut out = near.clone();
    let mut theirs = near.entries().peekable();
    for (slot, x) in map.iter() {
        let at = slot_in::<S>(slot)?;
        let mine = Some(f(x)?);
        while let Some((gone, _)) = theirs.next_if(|(t, _)| *t < at) {
            out.set(gone, None);
        }
        match theirs.next_if(|(t, _)| *t == at) {
            Some((_, same)) if same == mine => {}
            _ => out.set(at, mine),
        }
    }
    for (gone, _) in theirs {
        out.set(gone, None);
    }
    Ok(out)
}

/// [`executed_to_model`], `near` itself when it is the same sequence (see
/// [`map_to_slots_near`]).
fn executed_near<S: Space>(
    cfg: &MultiConfig,
    done: &[Command<Op>],
    near: Option<&S::Executed>,
) -> Result<S::Executed, String> {
    match near {
        Some(near)
            if near.len() == done.len()
                && near
                    .iter()
                    .zip(done)
                    .all(|(m, c)| command_to_impl(cfg, m) == *c) =>
        {
            Ok(near.clone())
        }
        _ => executed_to_model::<S>(cfg, done),
    }
}

/// A set of node ids as the core holds it: Promises counted or an Accept's voters.
fn ids_to_impl<Ids: FromIterator<u32>>(set: IdSet) -> Ids {
    set.iter().map(|id| node_id(usize::from(id))).collect()
}

fn ids_to_model(ids: impl IntoIterator<Item = u32>) -> IdSet {
    ids.into_iter().map(|n| Id::from(n as usize)).collect()
}

/// The model's snapshot `(c, executed)` as the core holds it (`None` at compaction point 0,
/// where the model holds none).
pub fn snapshot_to_impl<S: Space>(
    cfg: &MultiConfig,
    c: S::N,
    executed: &S::Executed,
) -> Option<ImplSnapshot> {
    if c == S::N::default() {
        return None;
    }
    let executed: Vec<Command<Op>> = executed
        .iter()
        .map(|cmd| command_to_impl(cfg, cmd))
        .collect();
    Some(Arc::new(AppliedState {
        applied: c.get(),
        clients: client_table(&executed),
        state_machine: executed,
    }))
}

/// The core's snapshot as the model's `(c, executed)`: its client table must be the one its
/// executed commands give.
pub fn snapshot_to_model<S: Space>(
    cfg: &MultiConfig,
    s: &AppliedState<Vec<Command<Op>>, u64>,
) -> Result<(S::N, S::Executed), String> {
    snapshot_near::<S>(cfg, s, None)
}

/// [`snapshot_to_model`] built near the model's snapshot (see [`map_to_slots_near`]).
fn snapshot_near<S: Space>(
    cfg: &MultiConfig,
    s: &AppliedState<Vec<Command<Op>>, u64>,
    near: Option<&S::Executed>,
) -> Result<(S::N, S::Executed), String> {
    let executed = executed_near::<S>(cfg, &s.state_machine, near)?;
    if s.clients != client_table(&s.state_machine) {
        return Err(format!(
            "snapshot at {}: client table {:?} is not the executed sequence's",
            s.applied, s.clients
        ));
    }
    Ok((within("snapshot", s.applied)?, executed))
}

/// [`snapshot_near`], or the model's snapshot `known` already holds for this very core
/// snapshot (the same `Arc`, so the same content, abstracted at an earlier step): a
/// replica keeps one snapshot across thousands of steps, and it holds the whole state machine.
fn snapshot_known<S: Space>(
    cfg: &MultiConfig,
    s: &ImplSnapshot,
    near: Option<&S::Executed>,
    known: Option<&(ImplSnapshot, S::Executed)>,
) -> Result<(S::N, S::Executed), String> {
    match known {
        Some((k, executed)) if Arc::ptr_eq(k, s) => {
            Ok((within("snapshot", s.applied)?, executed.clone()))
        }
        _ => snapshot_near::<S>(cfg, s, near),
    }
}

/// What trace validation knows of a step before abstracting the core's side of it, from
/// which the abstraction is built where it is equal (see [`map_to_slots_near`]); the result
/// does not depend on it.
pub(crate) struct Near<'a, S: Space> {
    /// The model's outcome of the same step.
    pub outcome: &'a StepOutcome<S>,
    /// A core snapshot already abstracted, and its model counterpart.
    pub snapshot: Option<&'a (ImplSnapshot, S::Executed)>,
    /// The view of the replica's executed sequence, kept from step to step.
    pub executed: &'a mut ExecutedView<S>,
    /// The abstraction of the replica's log before the step, which the step's records move
    /// (`None`: abstract the whole log).
    pub log: Option<&'a LogVectors<S>>,
}

/// A replica's votes and chosen entries as the model's slot vectors: those of its state and
/// those of its durable state (M11). Trace validation keeps the abstraction of the step
/// before and moves it by the slots the step's records touch
/// ([`Record::slots`](paxos_protocol::multi::Record::slots)): both logs
/// change only there and below the compaction point, and walking every slot since the last
/// snapshot at every step made a step's cost grow with the snapshot interval.
#[derive(Clone, Debug)]
pub(crate) struct LogVectors<S: Space> {
    pub accepted: SlotsOf<S, Option<VoteOf<S>>>,
    pub chosen: SlotsOf<S, Option<CmdOf<S>>>,
    pub durable_chosen: SlotsOf<S, Option<CmdOf<S>>>,
    /// The durable votes ([`VoteBallots::votes`]) and their ballots, for M11's recovered
    /// promise.
    pub durable_ballots: VoteBallots<S>,
}

impl<S: Space> LogVectors<S> {
    /// The vectors of `outcome`, the ballots counted by moving those of `before` (the
    /// vectors of the step before, if any).
    pub fn of(outcome: &StepOutcome<S>, before: Option<Self>) -> Self {
        let mut durable_ballots = before.map(|b| b.durable_ballots).unwrap_or_default();
        durable_ballots.move_to(&outcome.persisted.accepted);
        LogVectors {
            accepted: outcome.state.accepted.clone(),
            chosen: outcome.state.chosen.clone(),
            durable_chosen: outcome.persisted.chosen.clone(),
            durable_ballots,
        }
    }
}

/// The slots whose vote or chosen entry the step's records may change, ascending, once each.
pub(crate) fn touched_slots(effects: &[ImplEffect]) -> Vec<Slot> {
    let mut slots: Vec<Slot> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(record) => Some(record.slots()),
            _ => None,
        })
        .flatten()
        .collect();
    slots.sort_unstable();
    slots.dedup();
    slots
}

/// How a log's abstraction after a step is built: from the whole log, near the model's
/// vector ([`map_to_slots_near`]), or by moving the abstraction before the step
/// ([`map_to_slots_moved`]).
enum LogSource<'a, S: Space, U>
where
    Option<U>: SlotEntry,
{
    Whole,
    Moved {
        before: &'a SlotsOf<S, Option<U>>,
        touched: &'a [Slot],
        below: Slot,
    },
}

/// The abstraction of `map` from `source`, shared with `near` where equal.
fn log_to_slots<S: Space, T, U>(
    map: &SlotMap<T>,
    f: impl Fn(&T) -> Result<U, String>,
    near: Option<&SlotsOf<S, Option<U>>>,
    source: LogSource<'_, S, U>,
) -> Result<SlotsOf<S, Option<U>>, String>
where
    Option<U>: SlotEntry,
{
    match source {
        LogSource::Whole => map_to_slots_near::<S, _, _>(map, f, near),
        LogSource::Moved {
            before,
            touched,
            below,
        } => map_to_slots_moved::<S, _, _>(map, f, before, touched, below, near),
    }
}

/// [`map_to_slots`] of `map`, given `before`, the abstraction of the map a step changed at
/// `touched` only and then cleared below `below`: `before` cleared there and its `touched`
/// slots read from `map` again. `near` itself when equal, so that the next step moves (and
/// compares) a tree it shares with the model.
fn map_to_slots_moved<S: Space, T, U>(
    map: &SlotMap<T>,
    f: impl Fn(&T) -> Result<U, String>,
    before: &SlotsOf<S, Option<U>>,
    touched: &[Slot],
    below: Slot,
    near: Option<&SlotsOf<S, Option<U>>>,
) -> Result<SlotsOf<S, Option<U>>, String>
where
    Option<U>: SlotEntry,
{
    let mut out = before.clone();
    out.clear_below(within("compaction point", below)?);
    for &slot in touched {
        let entry = map.get(&slot).map(&f).transpose()?;
        out.set(slot_in::<S>(slot)?, entry);
    }
    Ok(match near {
        Some(near) if *near == out => near.clone(),
        _ => out,
    })
}

/// A sequence of executed commands as the model's state machine.
fn executed_to_model<S: Space>(
    cfg: &MultiConfig,
    done: &[Command<Op>],
) -> Result<S::Executed, String> {
    let commands = done
        .iter()
        .map(|c| command_to_model(cfg, c))
        .collect::<Result<Vec<_>, _>>()?;
    S::Executed::from_commands(commands)
        .ok_or_else(|| format!("{} commands executed, beyond the model's", done.len()))
}

pub fn msg_to_impl<S: Space>(cfg: &MultiConfig, msg: MultiMsg<S>) -> Option<ImplMessage> {
    let b = ballot_to_impl;
    Some(match msg {
        MultiMsg::Prepare(ballot, applied) => Message::Prepare {
            ballot: b(ballot),
            applied: applied.get(),
        },
        MultiMsg::Promise(ballot, accepted, compacted) => Message::Promise {
            ballot: b(ballot),
            accepted: slots_to_map::<_, _, _, Vec<_>>(&accepted, |v| vote_to_impl(cfg, v))
                .into_iter()
                .map(|(slot, (vb, entry))| (slot, vb, entry))
                .collect(),
            compacted: compacted.get(),
        },
        MultiMsg::Nack(ballot, promised) => Message::Nack {
            ballot: b(ballot),
            promised: b(promised),
        },
        MultiMsg::Accept(ballot, s, cmd) => Message::Accept {
            ballot: b(ballot),
            slot: s.get(),
            entries: vec![entry_to_impl(cfg, cmd)],
        },
        // The command is dropped: the leader counts the vote for its own proposal.
        MultiMsg::Accepted(ballot, s, _) => Message::Accepted {
            ballot: b(ballot),
            slot: s.get(),
            count: 1,
        },
        MultiMsg::Decide(s, cmd) => Message::Decide {
            slot: s.get(),
            entries: vec![entry_to_impl(cfg, cmd)],
        },
        // A client's messages are inputs and effects, not replica messages (`input_of`).
        MultiMsg::Request(_) | MultiMsg::Reply(_) | MultiMsg::Read(_) | MultiMsg::ReadReply(..) => {
            return None
        }
        MultiMsg::Confirm(ballot, round) => Message::Confirm {
            ballot: b(ballot),
            round: round.get(),
        },
        MultiMsg::Confirmed(ballot, round) => Message::Confirmed {
            ballot: b(ballot),
            round: round.get(),
        },
        MultiMsg::Snapshot(c, executed) => Message::Snapshot {
            state: snapshot_to_impl::<S>(cfg, c, &executed)?,
        },
        MultiMsg::Status(applied) => Message::Status {
            applied: applied.get(),
        },
        MultiMsg::CatchUp(entries) => Message::CatchUp {
            entries: slots_to_map(&entries, |cmd| entry_to_impl(cfg, cmd)),
        },
    })
}

/// The most slots one message of a real run may stand for: more is a tampered or foreign
/// message (a window is far smaller), refused before it is split slot by slot.
pub(crate) const MAX_RUN: usize = 1 << 20;

/// An implementation message as the model's messages: a run of `n` slots (an `Accept`,
/// `Accepted` or `Decide` for several slots) is the `n` one-slot messages the model sends for
/// it, in slot order; any other message is one model message. `votes` resolves what an
/// `Accepted` run (which carries no entries) voted for: the `accepted` map of the replica that
/// sent it, or of the leader it reached, whose own proposals those are.
pub fn msg_to_model<S: Space>(
    cfg: &MultiConfig,
    msg: &ImplMessage,
    votes: &SlotMap<(ImplBallot, Entry<Op>)>,
) -> Result<Vec<MultiMsg<S>>, String> {
    msg_to_model_knowing(cfg, msg, votes, None)
}

/// [`msg_to_model`], with a core snapshot already abstracted and its model counterpart: a
/// `Snapshot` message carrying that very snapshot takes the counterpart
/// ([`snapshot_known`]) rather than abstracting every command below it again. Trace
/// validation sends and receives the same snapshot many times (K2, K6, K7), and abstracting
/// it at each was a tenth of validating a long run.
pub(crate) fn msg_to_model_knowing<S: Space>(
    cfg: &MultiConfig,
    msg: &ImplMessage,
    votes: &SlotMap<(ImplBallot, Entry<Op>)>,
    known: Option<&(ImplSnapshot, S::Executed)>,
) -> Result<Vec<MultiMsg<S>>, String> {
    if let Message::Snapshot { state } = msg {
        let (c, executed) = snapshot_known::<S>(cfg, state, None, known)?;
        return Ok(vec![MultiMsg::Snapshot(c, executed)]);
    }
    let most = cfg.slots.min(MAX_RUN);
    let parts: Vec<ImplMessage> = msg.per_slot().take(most.saturating_add(1)).collect();
    if parts.is_empty() || parts.len() > most {
        return Err(format!(
            "{msg:?}: a run of {} slots (the model's log has {})",
            if parts.is_empty() { "no" } else { "too many" },
            cfg.slots
        ));
    }
    parts
        .iter()
        .map(|part| one_slot_to_model(cfg, part, votes))
        .collect()
}

/// One message of at most one slot ([`Message::per_slot`]) as the model's message.
fn one_slot_to_model<S: Space>(
    cfg: &MultiConfig,
    msg: &ImplMessage,
    votes: &SlotMap<(ImplBallot, Entry<Op>)>,
) -> Result<MultiMsg<S>, String> {
    let b = |ballot| ballot_out(ballot);
    // A slot past the model's log would index past its arrays: a tampered or foreign message.
    let slot = |s: u64| match slot_in::<S>(s) {
        Ok(n) if s < cfg.slots as u64 => Ok(n),
        _ => Err(format!(
            "{msg:?}: slot {s} is beyond the model's {} slots",
            cfg.slots
        )),
    };
    let cmd = |entry: &Entry<Op>| entry_to_model(cfg, entry);
    let only = |entries: &[Entry<Op>]| match entries {
        [entry] => cmd(entry),
        _ => Err(format!("{msg:?}: not one slot")),
    };
    Ok(match msg {
        // The model carries the applied prefix only where some replica may compact (no one
        // reads it otherwise, specs/protocol.md), so without compaction it is 0 here too.
        Message::Prepare { ballot, applied } => {
            let applied = if cfg.compactions > 0 {
                within("applied", *applied)?
            } else {
                S::N::default()
            };
            MultiMsg::Prepare(b(*ballot)?, applied)
        }
        Message::Promise {
            ballot,
            accepted,
            compacted,
        } => {
            let mut votes = SlotsOf::<S, Option<VoteOf<S>>>::default();
            for (s, vb, entry) in accepted {
                votes.set(slot_in::<S>(*s)?, Some((b(*vb)?, cmd(entry)?)));
            }
            MultiMsg::Promise(b(*ballot)?, votes, within("compacted", *compacted)?)
        }
        Message::Nack { ballot, promised } => MultiMsg::Nack(b(*ballot)?, b(*promised)?),
        Message::Accept {
            ballot,
            slot: s,
            entries,
        } => MultiMsg::Accept(b(*ballot)?, slot(*s)?, only(entries)?),
        Message::Accepted {
            ballot, slot: s, ..
        } => match votes.get(s) {
            Some((vb, entry)) if vb == ballot => {
                MultiMsg::Accepted(b(*ballot)?, slot(*s)?, cmd(entry)?)
            }
            other => {
                return Err(format!(
                    "{msg:?}: slot {s} holds {other:?}, no vote at ballot {ballot}"
                ))
            }
        },
        Message::Decide { slot: s, entries } => MultiMsg::Decide(slot(*s)?, only(entries)?),
        Message::Status { applied } => MultiMsg::Status(within("applied", *applied)?),
        Message::CatchUp { entries } => {
            let mut slots = SlotsOf::<S, Option<CmdOf<S>>>::default();
            for (s, entry) in entries {
                slots.set(slot(*s)?, Some(cmd(entry)?));
            }
            MultiMsg::CatchUp(slots)
        }
        Message::Snapshot { state } => {
            let (c, executed) = snapshot_to_model::<S>(cfg, state)?;
            MultiMsg::Snapshot(c, executed)
        }
        Message::Heartbeat { .. } => {
            return Err(format!(
                "{msg:?} is a heartbeat (H1), which the model takes as a stuttering step"
            ))
        }
        Message::Confirm { ballot, round } => {
            MultiMsg::Confirm(b(*ballot)?, within("round", *round)?)
        }
        Message::Confirmed { ballot, round } => {
            MultiMsg::Confirmed(b(*ballot)?, within("round", *round)?)
        }
    })
}

// ------------------------------------------------------------------------------ durable state

/// The durable state the implementation restarts from when the model's storage is `storage`.
pub fn durable_to_impl<S: Space>(
    cfg: &MultiConfig,
    storage: Option<&ReplicaStorage<S>>,
) -> Durable<Op> {
    match storage {
        None => Durable::default(),
        Some(s) => Durable {
            round: s.round.get(),
            promised: Some(ballot_to_impl(s.promised)),
            accepted: slots_to_map(&s.accepted, |v| vote_to_impl(cfg, v)),
            chosen: slots_to_map(&s.chosen, |c| entry_to_impl(cfg, c)),
        },
    }
}

/// The model's storage as the core's durable state and snapshot.
pub(crate) fn persisted_to_impl<S: Space>(
    cfg: &MultiConfig,
    storage: Option<&ReplicaStorage<S>>,
) -> (Durable<Op>, Option<ImplSnapshot>) {
    let snapshot = storage.and_then(|s| snapshot_to_impl::<S>(cfg, s.compacted, &s.snapshot));
    (durable_to_impl(cfg, storage), snapshot)
}

/// The bootstrap promise every replica holds before it writes one (M11 on empty storage).
fn bootstrap_ballot<N: Number>() -> Ballot<N> {
    Ballot::new(N::from(1), 0)
}

/// The model's storage as recovery reads it (M11).
pub fn model_recovery_view<S: Space>(storage: Option<&ReplicaStorage<S>>) -> ReplicaStorage<S> {
    let s = stored_or_empty(storage);
    ReplicaStorage {
        promised: s.recovered_promise(),
        ..s
    }
}

/// [`model_recovery_view`] with the highest vote's ballot counted by `ballots`, which walks
/// only the votes `storage` does not share with the vector they were counted on.
pub(crate) fn counted_recovery_view<S: Space>(
    storage: Option<&ReplicaStorage<S>>,
    ballots: &VoteBallots<S>,
) -> ReplicaStorage<S> {
    let s = stored_or_empty(storage);
    let promised = ballots
        .highest_for(&s.accepted)
        .map_or(s.promised, |b| s.promised.max(b));
    ReplicaStorage { promised, ..s }
}

/// The ballots of a replica's durable votes, counted, with the vote vector they were counted
/// on. Trace validation asks M11's recovered promise at every step of a run whose log holds
/// thousands of votes between snapshots; a step's vector shares all but that step's slots
/// with the one before, so counting moves by the difference (`SlotVec::changes_since`).
pub(crate) struct VoteBallots<S: Space> {
    votes: SlotsOf<S, Option<VoteOf<S>>>,
    count: BTreeMap<BallotOf<S>, usize>,
}

impl<S: Space> Default for VoteBallots<S> {
    fn default() -> Self {
        VoteBallots {
            votes: Default::default(),
            count: BTreeMap::new(),
        }
    }
}

impl<S: Space> std::fmt::Debug for VoteBallots<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.count.iter()).finish()
    }
}

impl<S: Space> Clone for VoteBallots<S> {
    fn clone(&self) -> Self {
        VoteBallots {
            votes: self.votes.clone(),
            count: self.count.clone(),
        }
    }
}

impl<S: Space> VoteBallots<S> {
    /// The vote vector counted.
    pub(crate) fn votes(&self) -> &SlotsOf<S, Option<VoteOf<S>>> {
        &self.votes
    }

    /// Counts the ballots of `votes` instead.
    pub(crate) fn move_to(&mut self, votes: &SlotsOf<S, Option<VoteOf<S>>>) {
        Self::count_changes(&mut self.count, &self.votes, votes);
        self.votes = votes.clone();
    }

    /// The highest ballot among `votes`, counted from those of this vector.
    pub(crate) fn highest_for(&self, votes: &SlotsOf<S, Option<VoteOf<S>>>) -> Option<BallotOf<S>> {
        let mut count = self.count.clone();
        Self::count_changes(&mut count, &self.votes, votes);
        count.last_key_value().map(|(b, _)| *b)
    }

    fn count_changes(
        count: &mut BTreeMap<BallotOf<S>, usize>,
        from: &SlotsOf<S, Option<VoteOf<S>>>,
        to: &SlotsOf<S, Option<VoteOf<S>>>,
    ) {
        for (_, was, is) in to.changes_since(from) {
            if let Some((b, _)) = was {
                if let Some(n) = count.get_mut(&b) {
                    *n -= 1;
                    if *n == 0 {
                        count.remove(&b);
                    }
                }
            }
            if let Some((b, _)) = is {
                *count.entry(b).or_default() += 1;
            }
        }
    }
}

fn stored_or_empty<S: Space>(storage: Option<&ReplicaStorage<S>>) -> ReplicaStorage<S> {
    storage.cloned().unwrap_or(ReplicaStorage {
        round: Default::default(),
        promised: bootstrap_ballot(),
        accepted: Default::default(),
        chosen: Default::default(),
        compacted: Default::default(),
        snapshot: Default::default(),
        clock: 0,
    })
}

/// The implementation's durable state as recovery reads it (M11): its log and its snapshot,
/// with the host's clock reading `clock` (the model keeps it in storage: a restart does not
/// reset it).
pub fn impl_recovery_view<S: Space>(
    cfg: &MultiConfig,
    d: &Durable<Op>,
    snapshot: Option<&ImplSnapshot>,
    clock: Millis,
) -> Result<ReplicaStorage<S>, String> {
    recovery_view_near(cfg, d, snapshot, clock, None, None, None)
}

/// [`impl_recovery_view`] built near the model's storage (see [`map_to_slots_near`]).
fn recovery_view_near<S: Space>(
    cfg: &MultiConfig,
    d: &Durable<Op>,
    snapshot: Option<&ImplSnapshot>,
    clock: Millis,
    near: Option<&ReplicaStorage<S>>,
    known: Option<&(ImplSnapshot, S::Executed)>,
    moved: Option<(&LogVectors<S>, &[Slot], Slot)>,
) -> Result<ReplicaStorage<S>, String> {
    let promised = d.promised.map(ballot_out).transpose()?;
    let (compacted, snapshot) = match snapshot {
        Some(s) => snapshot_known::<S>(cfg, s, near.map(|n| &n.snapshot), known)?,
        None => Default::default(),
    };
    let storage = ReplicaStorage {
        round: within("round", d.round)?,
        promised: promised.unwrap_or(bootstrap_ballot()),
        accepted: log_to_slots::<S, _, _>(
            &d.accepted,
            |v| vote_to_model(cfg, v),
            near.map(|n| &n.accepted),
            match moved {
                Some((log, touched, below)) => LogSource::Moved {
                    before: log.durable_ballots.votes(),
                    touched,
                    below,
                },
                None => LogSource::Whole,
            },
        )?,
        chosen: log_to_slots::<S, _, _>(
            &d.chosen,
            |e| entry_to_model(cfg, e),
            near.map(|n| &n.chosen),
            match moved {
                Some((log, touched, below)) => LogSource::Moved {
                    before: &log.durable_chosen,
                    touched,
                    below,
                },
                None => LogSource::Whole,
            },
        )?,
        compacted,
        snapshot,
        clock: clock_to_model(cfg, clock)?,
    };
    Ok(match moved {
        Some((log, ..)) => counted_recovery_view(Some(&storage), &log.durable_ballots),
        None => model_recovery_view(Some(&storage)),
    })
}

// ------------------------------------------------------------------------------ replica state

/// The client table a state machine that executed `executed`, in order, has: per client, its
/// last request and that request's output (a [`Recorder`] outputs positions).
pub(crate) fn client_table(executed: &[Command<Op>]) -> ClientTable<u64> {
    let mut table = ClientTable::default();
    for (position, c) in executed.iter().enumerate() {
        let row = ClientEntry {
            last_seq: c.seq,
            output: position as u64,
        };
        table.insert(c.client, row);
    }
    table
}

/// A core replica's executed sequence as the abstraction needs it: its length, its model
/// counterpart and the client table it gives. Trace validation keeps one per replica and
/// extends it by each step's executed commands, where building it from the sequence costs the
/// whole run at every step.
#[derive(Clone, Debug)]
pub(crate) struct ExecutedView<S: Space> {
    len: usize,
    /// `Err`: a command with no model counterpart, from that one on.
    model: Result<S::Executed, String>,
    clients: ClientTable<u64>,
}

impl<S: Space> ExecutedView<S> {
    pub(crate) fn of(cfg: &MultiConfig, executed: &[Command<Op>]) -> Self {
        let mut view = ExecutedView {
            len: 0,
            model: Ok(S::Executed::default()),
            clients: ClientTable::default(),
        };
        for command in executed {
            view.push(cfg, command);
        }
        view
    }

    /// The sequence after one more executed command.
    pub(crate) fn push(&mut self, cfg: &MultiConfig, command: &Command<Op>) {
        let row = ClientEntry {
            last_seq: command.seq,
            output: self.len as u64,
        };
        self.clients.insert(command.client, row);
        self.len += 1;
        if let Ok(model) = &mut self.model {
            match command_to_model(cfg, command) {
                Ok(cmd) => model.push(cmd),
                Err(e) => self.model = Err(e),
            }
        }
        if let Ok(model) = &self.model {
            if model.len() != self.len {
                self.model = Err(format!(
                    "{} commands executed, beyond the model's",
                    self.len
                ));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn clients(&self) -> &ClientTable<u64> {
        &self.clients
    }

    /// The model's sequence, `near` itself when equal (see [`map_to_slots_near`]); an equal
    /// `near` is kept, so that the next step's sequence, this one extended, shares its
    /// nodes with the model's next and compares without a walk over the run.
    fn near(&mut self, near: Option<&S::Executed>) -> Result<S::Executed, String> {
        let model = self.model.as_mut().map_err(|e| e.clone())?;
        if let Some(near) = near.filter(|near| **near == *model) {
            *model = near.clone();
        }
        Ok(model.clone())
    }

    /// The model's sequence after its first `len` commands, `near` itself when equal.
    fn prefix(&self, len: usize, near: Option<&S::Executed>) -> Result<S::Executed, String> {
        let model = self.model.as_ref().map_err(|e| e.clone())?;
        let prefix = model
            .prefix(len)
            .ok_or_else(|| format!("a prefix of {len} commands: past the {} executed", self.len))?;
        Ok(match near {
            Some(near) if *near == prefix => near.clone(),
            _ => prefix,
        })
    }
}

/// Concretisation: the implementation replica `id` whose abstraction is `r`, with the
/// persisted round and promise of the model's `storage`. From `r`'s canonical form: the
/// model keeps the leader's own vote in a slot it proposed into after a higher leader's
/// Decide chose it, which the core never records (its invariants refuse voters at a chosen
/// slot).
pub fn concretize(
    cfg: &MultiConfig,
    id: usize,
    r: &ReplicaState,
    storage: Option<&ReplicaStorage>,
    due: Due,
) -> ImplReplica {
    let r = &canonical(*r);
    let entry = |c| entry_to_impl(cfg, c);
    let phase = match r.phase {
        LeaderPhase::Follower => Phase::Follower,
        LeaderPhase::Preparing {
            promises,
            merged,
            floor,
        } => Phase::Preparing {
            promises: ids_to_impl(promises),
            merged: slots_to_map(&merged, |v| vote_to_impl(cfg, v)),
            floor: u64::from(floor),
        },
        LeaderPhase::Leading { next_slot, votes } => Phase::Leading {
            next_slot: u64::from(next_slot),
            votes: votes
                .entries()
                .map(|(s, voters)| (u64::from(s), ids_to_impl(voters)))
                .collect(),
        },
    };
    let executed: Vec<Command<Op>> = r.executed().map(|c| command_to_impl(cfg, c)).collect();
    let timers = timers_due(&phase, due, Millis::from(r.lease.now));
    let state = ImplState {
        round: u64::from(r.round),
        promised: ballot_to_impl(r.promised),
        accepted: slots_to_map(&r.accepted, |v| vote_to_impl(cfg, v)),
        chosen: slots_to_map(&r.chosen, entry),
        phase,
        pending: r
            .pending
            .iter()
            .map(|c| command_to_impl(cfg, c))
            .map(|c| (c.id(), c))
            .collect(),
        applied: u64::from(r.applied_prefix()),
        clients: client_table(&executed),
        persisted_round: storage.map_or(0, |s| u64::from(s.round)),
        persisted_promise: storage.map(|s| ballot_to_impl(s.promised)),
        compacted: u64::from(r.compacted),
        timers,
        reads: reads_to_impl(&r.reads),
        lease: Lease {
            grant_until: deadline_to_impl(r.lease.grant_until),
            round_lease: deadline_to_impl(r.lease.round_lease),
            lease_until: deadline_to_impl(r.lease.lease_until),
        },
    };
    let snapshot = snapshot_to_impl::<Small>(cfg, r.compacted, &r.snapshot);
    Replica::from_state(impl_config(cfg, id), state, snapshot, Recorder { executed })
        .expect("the model's configurations are valid implementation configurations")
}

/// Abstraction: the model state of an implementation replica (`Err`: it has none).
pub fn abstraction<S: Space>(
    cfg: &MultiConfig,
    replica: &ImplReplica,
) -> Result<ReplicaState<S>, String> {
    let mut executed = ExecutedView::of(cfg, &replica.state_machine().executed);
    abstraction_near(cfg, replica, &mut executed, None, None, None)
}

/// [`abstraction`] built near the model's state (see [`map_to_slots_near`]), `executed`
/// being the view of the replica's executed sequence.
fn abstraction_near<S: Space>(
    cfg: &MultiConfig,
    replica: &ImplReplica,
    executed: &mut ExecutedView<S>,
    near: Option<&ReplicaState<S>>,
    known: Option<&(ImplSnapshot, S::Executed)>,
    moved: Option<(&LogVectors<S>, &[Slot])>,
) -> Result<ReplicaState<S>, String> {
    let s = replica.state();
    let chosen = log_to_slots::<S, _, _>(
        &s.chosen,
        |e| entry_to_model(cfg, e),
        near.map(|n| &n.chosen),
        match moved {
            Some((log, touched)) => LogSource::Moved {
                before: &log.chosen,
                touched,
                below: s.compacted,
            },
            None => LogSource::Whole,
        },
    )?;
    let phase = match &s.phase {
        Phase::Follower => LeaderPhase::Follower,
        Phase::Preparing {
            promises,
            merged,
            floor,
        } => LeaderPhase::Preparing {
            promises: ids_to_model(promises.iter().copied()),
            merged: map_to_slots_near::<S, _, _>(
                merged,
                |v| vote_to_model(cfg, v),
                near.and_then(|n| match &n.phase {
                    LeaderPhase::Preparing { merged, .. } => Some(merged),
                    _ => None,
                }),
            )?,
            floor: within("floor", *floor)?,
        },
        Phase::Leading { next_slot, votes } => {
            // Voters of a chosen slot are dead state on both sides (see `canonical`).
            let mut model_votes = SlotsOf::<S, IdSet>::default();
            for (slot, voters) in votes {
                let slot = slot_in::<S>(slot)?;
                if chosen.get(slot).is_none() {
                    model_votes.set(slot, ids_to_model(voters.iter()));
                }
            }
            LeaderPhase::Leading {
                next_slot: within("next_slot", *next_slot)?,
                votes: model_votes,
            }
        }
    };
    let mut pending = S::CmdSet::default();
    for c in s.pending.values() {
        pending.insert(command_to_model(cfg, c)?);
    }
    debug_assert_eq!(executed.len(), replica.state_machine().executed.len());
    if s.clients != *executed.clients() {
        return Err(format!(
            "client table {:?} is not the executed sequence's {:?}",
            s.clients,
            executed.clients()
        ));
    }
    let executed = executed.near(near.map(|n| &n.executed))?;
    if s.applied > S::SLOTS {
        return Err(format!("applied {} is beyond the model's slots", s.applied));
    }
    let mut applied = S::Applied::default();
    applied.insert_below(within("applied", s.applied)?);
    Ok(ReplicaState {
        round: within("round", s.round)?,
        promised: ballot_out(s.promised)?,
        accepted: log_to_slots::<S, _, _>(
            &s.accepted,
            |v| vote_to_model(cfg, v),
            near.map(|n| &n.accepted),
            match moved {
                Some((log, touched)) => LogSource::Moved {
                    before: &log.accepted,
                    touched,
                    below: s.compacted,
                },
                None => LogSource::Whole,
            },
        )?,
        chosen,
        phase,
        pending,
        applied,
        executed,
        compacted: within("compacted", s.compacted)?,
        snapshot: match replica.snapshot() {
            Some(snapshot) => {
                snapshot_known::<S>(cfg, snapshot, near.map(|n| &n.snapshot), known)?.1
            }
            None => S::Executed::default(),
        },
        reads: reads_to_model::<S>(cfg, &s.reads)?,
        lease: LeaseClock {
            now: clock_to_model(cfg, s.timers.now_ms)?,
            grant_until: deadline_to_model("grant_until", s.lease.grant_until)?,
            round_lease: deadline_to_model("round_lease", s.lease.round_lease)?,
            lease_until: deadline_to_model("lease_until", s.lease.lease_until)?,
        },
    })
}

/// The model's clock is time for leases only: without them it stays 0 (so as not to split
/// equal states), and the core's clock, which the other timers move, is not compared.
fn clock_to_model(cfg: &MultiConfig, now: Millis) -> Result<Ticks, String> {
    if cfg.leases > 0 {
        within("clock", now)
    } else {
        Ok(0)
    }
}

/// A model deadline (0: none) as the core's.
fn deadline_to_impl(at: Ticks) -> Option<Millis> {
    (at > 0).then_some(Millis::from(at))
}

fn deadline_to_model(name: &str, at: Option<Millis>) -> Result<Ticks, String> {
    match at {
        None => Ok(0),
        Some(0) => Err(format!(
            "{name} at 0, which the model cannot tell from none"
        )),
        Some(at) => within(name, at),
    }
}

/// The model's read `k` is the core's read id `k`; its operation is immaterial (the
/// recorder answers every read with how many commands it executed).
pub(crate) const READ_OP: Op = 0;

fn reads_to_impl<S: Space>(reads: &ReadIndex<S>) -> ImplReadIndex<Op> {
    ImplReadIndex {
        fence: reads.fence.get(),
        started: reads.started.get(),
        confirmed: reads.confirmed.get(),
        acks: ids_to_impl(reads.acks),
        waiting: reads
            .waiting
            .entries()
            .map(|(k, round)| WaitingRead {
                id: k.get(),
                op: READ_OP,
                round: round.get(),
            })
            .collect(),
    }
}

/// The model's read `k` that the core's read id names (1 to [`multi::MAX_READS`] in
/// [`Small`]).
fn read_to_model<S: Space>(id: u64) -> Result<S::N, String> {
    S::N::try_from(id)
        .ok()
        .filter(|k| S::Waiting::holds(*k))
        .ok_or_else(|| format!("read id {id} is not one of the model's reads"))
}

/// The fence is set at every election and read by reads only: without reads the model keeps
/// it 0 (so as not to split equal states), and so does the abstraction.
fn reads_to_model<S: Space>(
    cfg: &MultiConfig,
    reads: &ImplReadIndex<Op>,
) -> Result<ReadIndex<S>, String> {
    let mut waiting = S::Waiting::default();
    for read in &reads.waiting {
        waiting.set(
            read_to_model::<S>(read.id)?,
            within("read round", read.round)?,
        );
    }
    Ok(ReadIndex {
        fence: if cfg.reads > 0 {
            within("fence", reads.fence)?
        } else {
            S::N::default()
        },
        started: within("started", reads.started)?,
        confirmed: within("confirmed", reads.confirmed)?,
        acks: ids_to_model(reads.acks.iter()),
        waiting,
    })
}

/// The replica state with the voters of chosen slots forgotten, the form both sides are
/// compared in. Those voters are dead state: no rule reads `votes[s]` once `chosen[s]` is set
/// (M7 ignores chosen slots, M5 and M5b count only unchosen ones). Both sides clear them when
/// M7 or M8 chooses the slot, but a leader can also propose into a slot it already learned as
/// chosen (M5b after an M8 at or above `next_slot`): the model then holds `votes[s] = {self}`
/// for a chosen `s`, and the core no voters (its voters are exactly the slots in flight).
pub fn canonical<S: Space>(mut r: ReplicaState<S>) -> ReplicaState<S> {
    if let LeaderPhase::Leading { ref mut votes, .. } = r.phase {
        // The slots with voters (in flight: a window's worth), not every chosen slot since
        // the last snapshot, which a step of trace validation walked for nothing.
        let dead: Vec<_> = votes
            .entries()
            .filter(|&(s, _)| r.chosen.get(s).is_some())
            .map(|(s, _)| s)
            .collect();
        for s in dead {
            votes.set(s, IdSet::default());
        }
    }
    r
}

/// Whether the model's round bound still allows a campaign from this replica (M1).
fn campaign_within_bound(cfg: &MultiConfig, replica: &ImplReplica) -> bool {
    let seen = replica.round().max(replica.promised().round);
    seen < cfg.max_round
}

// ------------------------------------------------------------------------------ one step

fn replica_of(state: &MultiState) -> Option<&ReplicaState> {
    match state {
        MultiState::Replica(r) => Some(r),
        MultiState::Client(_) | MultiState::Reader(_) => None,
    }
}

/// The model's side of a replica step: `out` from the actor's handler, the rest from the
/// model's next state.
fn outcome_from_model(
    next: &MultiModelState,
    i: usize,
    out: Out<multi::MultiActor>,
) -> Option<StepOutcome> {
    let mut sends = Vec::new();
    for command in out {
        if let OutCommand::Send(to, msg) = command {
            sends.push((usize::from(to), msg));
        }
    }
    sends.sort();
    Some(StepOutcome {
        state: canonical(*replica_of(&next.actor_states[i])?),
        sends,
        persisted: model_recovery_view(next.actor_storages[i].as_ref()),
        election_timer: next.timers_set[i]
            .iter()
            .any(|t| *t == MultiTimer::Election),
    })
}

/// The implementation's side: the replica after the step, the step's effects, and the
/// durable state before it (onto which the step's records are folded).
pub(crate) fn outcome_from_impl<S: Space>(
    cfg: &MultiConfig,
    replica: &ImplReplica,
    effects: Vec<ImplEffect>,
    (mut durable, mut snapshot): (Durable<Op>, Option<ImplSnapshot>),
    near: Option<Near<'_, S>>,
) -> Result<StepOutcome<S>, String> {
    let mut below = 0;
    for effect in &effects {
        below = below.max(fold_durable(&mut durable, &mut snapshot, effect)?);
    }
    outcome_after_fold(
        cfg,
        replica,
        effects,
        (&durable, snapshot.as_ref(), below),
        near,
    )
}

/// The durable state moved by one effect of a step: a record folded, or the log below a
/// snapshot dropped (the runtime does so once the snapshot is durable: K1, K4). The slot
/// below which the log was dropped, or 0.
pub(crate) fn fold_durable(
    durable: &mut Durable<Op>,
    snapshot: &mut Option<ImplSnapshot>,
    effect: &ImplEffect,
) -> Result<Slot, String> {
    match effect {
        Effect::Persist(record) => {
            durable
                .apply(record.clone())
                .map_err(|e| format!("the step's records do not fold: {e}"))?;
            Ok(0)
        }
        Effect::Snapshot(s) => {
            durable.accepted.remove_below(s.applied);
            durable.chosen.remove_below(s.applied);
            *snapshot = Some(s.clone());
            Ok(s.applied)
        }
        Effect::Send { .. } | Effect::Reply { .. } | Effect::ReadReply { .. } => Ok(0),
        Effect::Executed { .. } => Ok(0),
    }
}

/// [`outcome_from_impl`] once the step's effects are folded into the durable state:
/// `(durable, snapshot, below)` after the step, `below` the highest slot a snapshot of the
/// step dropped the log below.
pub(crate) fn outcome_after_fold<S: Space>(
    cfg: &MultiConfig,
    replica: &ImplReplica,
    effects: Vec<ImplEffect>,
    (durable, snapshot, below): (&Durable<Op>, Option<&ImplSnapshot>, Slot),
    near: Option<Near<'_, S>>,
) -> Result<StepOutcome<S>, String> {
    let touched = match near.as_ref().and_then(|n| n.log) {
        Some(_) => touched_slots(&effects),
        None => Vec::new(),
    };
    let mut own_view;
    let (near, known, view, log) = match near {
        Some(Near {
            outcome,
            snapshot,
            executed,
            log,
        }) => (Some(outcome), snapshot, executed, log),
        None => {
            own_view = ExecutedView::of(cfg, &replica.state_machine().executed);
            (None, None, &mut own_view, None)
        }
    };
    let mut sends = Vec::new();
    for effect in effects {
        match effect {
            Effect::Send { to, msg } => {
                let msgs = msg_to_model_knowing(cfg, &msg, replica.accepted(), known)?;
                sends.extend(msgs.into_iter().map(|m| (to as usize, m)));
            }
            Effect::Reply { client, seq, .. } => {
                let client = client.0 as usize;
                let cmd = S::N::try_from(seq)
                    .ok()
                    .filter(|&seq| seq.get() > 0 && client < cfg.clients)
                    .and_then(|seq| cfg.command_of(client, seq))
                    .ok_or_else(|| {
                        format!("reply to client {client} seq {seq}: no model command")
                    })?;
                sends.push((usize::from(cfg.client_id(client)), MultiMsg::Reply(cmd)));
            }
            // The recorder answers how many commands it executed: the model's answer is the
            // executed sequence, which must be that long (state-machine safety makes it that
            // prefix of the replica's).
            Effect::ReadReply { id, output } => {
                let k = read_to_model::<S>(id)?;
                let len = output.ok_or_else(|| format!("read {id} answered with no output"))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= view.len())
                    .ok_or_else(|| format!("read {id} answered {len}: past what was executed"))?;
                let modelled = near.and_then(|n| {
                    n.sends.iter().find_map(|(_, m)| match m {
                        MultiMsg::ReadReply(j, answer) if *j == k => Some(answer),
                        _ => None,
                    })
                });
                let state = view.prefix(len, modelled)?;
                sends.push((usize::from(cfg.reader_id()), MultiMsg::ReadReply(k, state)));
            }
            Effect::Persist(_) | Effect::Snapshot(_) | Effect::Executed { .. } => {}
        }
    }
    sends.sort();
    Ok(StepOutcome {
        state: abstraction_near(
            cfg,
            replica,
            view,
            near.map(|n| &n.state),
            known,
            log.map(|log| (log, touched.as_slice())),
        )?,
        sends,
        persisted: recovery_view_near(
            cfg,
            durable,
            snapshot,
            replica.now_ms(),
            near.map(|n| &n.persisted),
            known,
            log.map(|log| (log, touched.as_slice(), below)),
        )?,
        election_timer: replica.election_timer_armed() && campaign_within_bound(cfg, replica),
    })
}

/// Runs `f`, turning an implementation panic (a failed invariant) into an error.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let why = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        format!("the implementation panicked: {}", why.unwrap_or_default())
    })
}

/// The implementation replica before the step: concretised from the model replica, which
/// must map back to itself.
fn before_step(
    cfg: &MultiConfig,
    i: usize,
    r: &ReplicaState,
    storage: Option<&ReplicaStorage>,
    due: Due,
) -> Result<ImplReplica, String> {
    let replica = concretize(cfg, i, r, storage, due);
    match abstraction(cfg, &replica) {
        Ok(back) if back == canonical(*r) => Ok(replica),
        back => Err(format!(
            "the model state before the step has no implementation counterpart: \
             abstraction(concretize(s)) = {back:?}"
        )),
    }
}

pub(crate) fn input_of(cfg: &MultiConfig, src: Id, msg: MultiMsg) -> Option<ImplInput> {
    match msg {
        MultiMsg::Request(cmd) => Some(Input::ClientRequest(command_to_impl(cfg, cmd))),
        MultiMsg::Read(k) => Some(Input::Read {
            id: u64::from(k),
            op: READ_OP,
        }),
        msg => Some(Input::Message {
            from: node_id(usize::from(src)),
            msg: msg_to_impl(cfg, msg)?,
        }),
    }
}

/// One (state, action) pair, classified. Built and consumed at once, never stored: the size
/// difference between its variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Pair {
    /// A replica step: the model's outcome and the implementation's.
    Replayed {
        node: usize,
        expected: StepOutcome,
        actual: Result<StepOutcome, String>,
    },
    /// A client actor's step.
    Client,
    /// No actor steps.
    NoStep,
}

/// Replays `action` from `state` on the implementation; `next` is the model's next state
/// (`state` itself when the action changes nothing).
pub(crate) fn replay(
    model: &MultiModel,
    state: &MultiModelState,
    action: &ModelAction,
    next: &MultiModelState,
) -> Pair {
    let cfg = &model.cfg;
    let tick = |id: Id, due: Due| {
        let now = replica_of(&state.actor_states[usize::from(id)]).map_or(0, |r| r.lease.now);
        Some(tick_for(Millis::from(now), due))
    };
    let (i, input, due) = match action {
        ActorModelAction::Deliver { dst, .. } | ActorModelAction::Timeout(dst, _)
            if usize::from(*dst) >= cfg.replicas =>
        {
            return Pair::Client
        }
        ActorModelAction::Deliver { dst, .. } if state.crashed[usize::from(*dst)] => {
            return Pair::NoStep
        }
        ActorModelAction::Deliver { src, dst, msg } => {
            (usize::from(*dst), input_of(cfg, *src, *msg), Due::Phase)
        }
        ActorModelAction::Timeout(id, MultiTimer::Election) => {
            (usize::from(*id), tick(*id, Due::Phase), Due::Phase)
        }
        ActorModelAction::Timeout(id, MultiTimer::Compact) => {
            (usize::from(*id), Some(Input::Compact), Due::Phase)
        }
        ActorModelAction::Timeout(id, MultiTimer::CatchUp) => {
            (usize::from(*id), tick(*id, Due::CatchUp), Due::CatchUp)
        }
        ActorModelAction::Timeout(id, MultiTimer::Clock) => {
            (usize::from(*id), tick(*id, Due::Clock), Due::Clock)
        }
        ActorModelAction::Timeout(id, MultiTimer::Retry) => (usize::from(*id), None, Due::Phase),
        ActorModelAction::Recover(id) if usize::from(*id) < cfg.replicas => {
            return recover(model, state, usize::from(*id), next)
        }
        ActorModelAction::Recover(_) => return Pair::Client,
        _ => return Pair::NoStep,
    };
    let expected = model_outcome(model, state, action, i, next);
    let r = replica_of(&state.actor_states[i]).expect("actors below `replicas` are replicas");
    let storage = state.actor_storages[i].as_ref();
    let actual = before_step(cfg, i, r, storage, due).and_then(|mut replica| {
        let effects = match input {
            Some(input) => guarded(|| replica.step(input))?,
            None => Vec::new(),
        };
        outcome_from_impl(
            cfg,
            &replica,
            effects,
            persisted_to_impl(cfg, storage),
            None,
        )
    });
    Pair::Replayed {
        node: i,
        expected,
        actual,
    }
}

/// A step of the core that the model takes as a stuttering step, replayed from one model state.
#[derive(Clone, Debug)]
pub struct Stutter {
    pub node: usize,
    /// What stepped: `tick at a leader (H1, R1)` or `heartbeat from nL (H2)`.
    pub label: String,
    pub expected: StepOutcome,
    /// `Err` also when a message the model does not see (a heartbeat, a catch-up report) is
    /// not exactly the one the rules send.
    pub actual: Result<StepOutcome, String>,
}

impl Stutter {
    pub fn agrees(&self) -> bool {
        self.actual.as_ref() == Ok(&self.expected)
    }
}

/// The core's timer-driven steps in model state `state`, each of which the model takes as a
/// stuttering step (specs/mapping.md, "Timers and heartbeats"):
/// - at every leader, a tick with its heartbeat and retransmission due (H1, R1): it sends
///   every other replica `Heartbeat(b)` and, for each slot in flight that replica has not
///   voted for, the leader's `Accept(b, s, cmd)` again, which the model has sent already (a
///   duplicate delivery);
/// - at every other replica, the heartbeat of each leader at or above its promise (H2): the
///   election timer restarts, and nothing else happens.
///
/// Each must leave the model state, the durable state and the election timer as they were.
pub fn stutters(model: &MultiModel, state: &MultiModelState) -> Vec<Stutter> {
    let cfg = &model.cfg;
    let replicas: Vec<(usize, &ReplicaState)> = (0..cfg.replicas)
        .filter(|&i| !state.crashed[i])
        .filter_map(|i| Some((i, replica_of(&state.actor_states[i])?)))
        .collect();
    let mut checks = Vec::new();
    for &(i, r) in &replicas {
        let storage = state.actor_storages[i].as_ref();
        let armed = state.timers_set[i]
            .iter()
            .any(|t| *t == MultiTimer::Election);
        let unchanged = |sends| StepOutcome {
            state: canonical(*r),
            sends,
            persisted: model_recovery_view(storage),
            election_timer: armed,
        };
        if let LeaderPhase::Leading { votes, .. } = r.phase {
            let others = (0..cfg.replicas).filter(|&j| j != i);
            let beats: Vec<(u32, ImplMessage)> = others
                .clone()
                .map(|j| {
                    let beat = Message::Heartbeat {
                        ballot: ballot_to_impl(r.promised),
                    };
                    (node_id(j), beat)
                })
                .collect();
            let mut resent = Vec::new();
            let reads = r.reads;
            for j in others {
                for (s, voters) in votes.entries() {
                    let in_flight = r.chosen.get(s).is_none() && usize::from(s) < cfg.slots;
                    if let (true, Some((b, cmd))) = (in_flight, r.accepted.get(s)) {
                        if !voters.contains(Id::from(j)) {
                            resent.push((j, MultiMsg::Accept(b, s, cmd)));
                        }
                    }
                }
                // The outstanding confirmation round, to whoever has not confirmed it.
                if reads.is_round_outstanding() && !reads.acks.contains(Id::from(j)) {
                    let ballot = Ballot::new(r.round, i);
                    resent.push((j, MultiMsg::Confirm(ballot, reads.started)));
                }
            }
            resent.sort();
            let input = tick_for(Millis::from(r.lease.now), Due::Phase);
            checks.push(Stutter {
                node: i,
                label: "tick at a leader (H1, R1)".into(),
                expected: unchanged(resent),
                actual: stutter_in_impl(cfg, i, r, storage, input, &beats),
            });
            continue;
        }
        for &(l, leader) in &replicas {
            let LeaderPhase::Leading { .. } = leader.phase else {
                continue;
            };
            if leader.promised < r.promised {
                continue;
            }
            let beat = Message::Heartbeat {
                ballot: ballot_to_impl(leader.promised),
            };
            let input = Input::Message {
                from: node_id(l),
                msg: beat,
            };
            checks.push(Stutter {
                node: i,
                label: format!("heartbeat from n{l} (H2)"),
                expected: unchanged(Vec::new()),
                actual: stutter_in_impl(cfg, i, r, storage, input, &[]),
            });
        }
    }
    checks
}

/// The implementation's side of a stuttering step: `input` at the concretised replica `i`;
/// the messages the model does not see must be exactly `unseen` (in any order), and the rest
/// are compared in the model's vocabulary.
fn stutter_in_impl(
    cfg: &MultiConfig,
    i: usize,
    r: &ReplicaState,
    storage: Option<&ReplicaStorage>,
    input: ImplInput,
    unseen: &[(u32, ImplMessage)],
) -> Result<StepOutcome, String> {
    let mut replica = before_step(cfg, i, r, storage, Due::Phase)?;
    let effects = guarded(|| replica.step(input))?;
    let (mut outside, seen): (Vec<_>, Vec<_>) = effects.into_iter().partition(|e| {
        matches!(
            e,
            Effect::Send {
                msg: Message::Heartbeat { .. },
                ..
            }
        )
    });
    let mut expected: Vec<ImplEffect> = unseen
        .iter()
        .map(|(to, msg)| Effect::Send {
            to: *to,
            msg: msg.clone(),
        })
        .collect();
    let key = |e: &ImplEffect| format!("{e:?}");
    outside.sort_by_key(key);
    expected.sort_by_key(key);
    if outside != expected {
        return Err(format!(
            "messages outside the model: expected {expected:?}, sent {outside:?}"
        ));
    }
    outcome_from_impl(cfg, &replica, seen, persisted_to_impl(cfg, storage), None)
}

/// The model's side of replica `i`'s step `action` (a delivery or a timeout) from `state`
/// to `next`.
pub(crate) fn model_outcome(
    model: &MultiModel,
    state: &MultiModelState,
    action: &ModelAction,
    i: usize,
    next: &MultiModelState,
) -> StepOutcome {
    let id = Id::from(i);
    let actor = &model.actors[i];
    let mut cow = Cow::Borrowed(&*state.actor_states[i]);
    let mut out = Out::new();
    match action {
        ActorModelAction::Deliver { src, msg, .. } => {
            actor.on_msg(id, &mut cow, *src, *msg, &mut out)
        }
        ActorModelAction::Timeout(_, timer) => actor.on_timeout(id, &mut cow, timer, &mut out),
        ActorModelAction::Recover(_) => {
            actor.on_start(id, &state.actor_storages[i], &mut out);
        }
        _ => unreachable!("only deliveries, timeouts and recoveries step a replica"),
    }
    outcome_from_model(next, i, out).expect("a replica's next state is a replica state")
}

/// Replica `i`'s first start, which no action of the model takes (its initial state is
/// `on_start`'s result): the model's `on_start` with empty storage, as it built `init`,
/// against the core's `Replica::new` (M0's bootstrap, L5''s first round, the timers armed).
pub(crate) fn start(model: &MultiModel, init: &MultiModelState, i: usize) -> Pair {
    let cfg = &model.cfg;
    let mut out = Out::new();
    model.actors[i].on_start(Id::from(i), &None, &mut out);
    let expected =
        outcome_from_model(init, i, out).expect("a replica's initial state is a replica state");
    let fresh = persisted_to_impl::<Small>(cfg, None);
    let actual = guarded(|| Replica::new(impl_config(cfg, i), Sm::default())).and_then(|result| {
        let (replica, effects) = result.map_err(|e| format!("start refused: {e}"))?;
        outcome_from_impl(cfg, &replica, effects, fresh, None)
    });
    Pair::Replayed {
        node: i,
        expected,
        actual,
    }
}

/// M11: the implementation replica rebuilt from the model's durable storage alone.
fn recover(model: &MultiModel, state: &MultiModelState, i: usize, next: &MultiModelState) -> Pair {
    let cfg = &model.cfg;
    let storage = state.actor_storages[i].as_ref();
    let expected = model_outcome(
        model,
        state,
        &ActorModelAction::Recover(Id::from(i)),
        i,
        next,
    );
    let (durable, snapshot) = persisted_to_impl(cfg, storage);
    // The host's clock, which the crash did not reset.
    let clock = storage.map_or(0, |s| Millis::from(s.clock));
    let recover = || {
        let from = snapshot.as_deref().cloned();
        let config = impl_config(cfg, i);
        Replica::recover_from(config, durable.clone(), from, Sm::default(), clock)
    };
    let actual = guarded(recover).and_then(|result| {
        let (replica, effects) = result.map_err(|e| format!("recovery refused: {e}"))?;
        outcome_from_impl(cfg, &replica, effects, (durable, snapshot), None)
    });
    Pair::Replayed {
        node: i,
        expected,
        actual,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::ops::ControlFlow;

    use stateright::{Checker, Model};

    use super::*;
    use crate::check::{check_all, explore, Outcome, Visit};
    use paxos_model::multi::{ExecutedLog, MultiBug, Unbounded};
    use paxos_model::types::BugCatalogue;

    /// One election, one command, one client retry: every rule but the window runs.
    fn small() -> MultiConfig {
        MultiConfig {
            max_round: 2,
            elections: 1,
            commands: 1,
            clients: 1,
            retries: 1,
            ..MultiConfig::default()
        }
    }

    fn with_crashes() -> MultiConfig {
        MultiConfig {
            crashes: 1,
            ..small()
        }
    }

    fn run(name: &str, cfg: &MultiConfig, max: usize) -> Outcome<MultiModel> {
        let outcome = check_all(&multi::model(cfg.clone()), max);
        let c = outcome.counts;
        eprintln!(
            "{name}: {} states, {} pairs replayed, {} stuttering steps, {} divergences in {:?}",
            c.states, c.replayed, c.stutters, c.divergences, outcome.elapsed
        );
        outcome
    }

    fn assert_conforms(outcome: &Outcome<MultiModel>) {
        assert!(outcome.counts.replayed > 0, "nothing replayed");
        if let Some(first) = outcome.first_divergence() {
            panic!("{first}");
        }
    }

    #[test]
    fn every_replica_transition_of_a_small_configuration_matches_the_core() {
        assert_conforms(&run("small", &small(), 1));
    }

    /// K6 with the model's cap and the core's at one entry: a follower two chosen slots
    /// behind is answered the lower one only (a core that sends both diverges here).
    #[test]
    fn a_catch_up_capped_at_one_entry_conforms() {
        let cfg = MultiConfig {
            commands: 2,
            max_round: 1,
            elections: 0,
            catch_ups: 1,
            catch_up_max: Some(1),
            ..MultiConfig::default()
        };
        assert_conforms(&run("capped catch-up", &cfg, 1));
    }

    #[test]
    fn recovery_transitions_match_with_crashes() {
        assert_conforms(&run("small with crashes", &with_crashes(), 1));
    }

    /// A run is its one-slot messages in slot order; what the model's log cannot hold, and
    /// what the model has no message for, is refused with a reason, never a panic.
    #[test]
    fn runs_become_one_slot_model_messages_and_the_rest_is_refused() {
        let cfg = MultiConfig::default();
        let mb = Ballot::new(1, 0);
        let b = ballot_to_impl(mb);
        let entry = |cmd| entry_to_impl(&cfg, Cmd(cmd));
        let none = SlotMap::new();
        let accept = |slot, cmds: &[u8]| Message::Accept {
            ballot: b,
            slot,
            entries: cmds.iter().map(|&c| entry(c)).collect(),
        };
        assert_eq!(
            msg_to_model::<Small>(&cfg, &accept(0, &[1, 2]), &none),
            Ok(vec![
                MultiMsg::Accept(mb, 0, Cmd(1)),
                MultiMsg::Accept(mb, 1, Cmd(2))
            ])
        );
        let mut votes = SlotMap::new();
        votes.insert(1, (b, entry(2)));
        let accepted = |count| Message::Accepted {
            ballot: b,
            slot: 1,
            count,
        };
        assert_eq!(
            msg_to_model::<Small>(&cfg, &accepted(1), &votes),
            Ok(vec![MultiMsg::Accepted(mb, 1, Cmd(2))])
        );
        let last = cfg.slots as u64 - 1;
        let refused = [
            (accept(0, &[]), "no"),
            (accept(last, &[1, 2]), "beyond"),
            (accept(u64::MAX, &[1]), "beyond"),
            (accepted(2), "no vote"),
            (accepted(u64::MAX), "too many"),
            (Message::Heartbeat { ballot: b }, "heartbeat"),
        ];
        for (msg, why) in refused {
            let error = msg_to_model::<Small>(&cfg, &msg, &votes).expect_err(&format!("{msg:?}"));
            assert!(error.contains(why), "{msg:?}: {error}");
        }
    }

    fn to_u64(b: Ballot<u8>) -> Ballot<u64> {
        Ballot::new(u64::from(b.round), usize::from(b.proposer))
    }

    proptest::proptest! {
        /// Building the abstraction near the model's side is an optimisation only: for any
        /// core map and any model vector, the result is the one built from the map alone.
        #[test]
        fn building_near_the_model_changes_no_abstraction(
            mine in proptest::collection::btree_map(0u64..40, 0u64..5, 0..24),
            theirs in proptest::collection::btree_map(0u64..40, 0u64..5, 0..24),
            executed in proptest::collection::vec(1u64..5, 0..6),
            near_executed in proptest::collection::vec(1u64..5, 0..6),
        ) {
            let cfg = MultiConfig { clients: 2, commands: 4, ..MultiConfig::default() };
            let mut map = SlotMap::new();
            for (&slot, &c) in &mine {
                map.insert(slot, entry_to_impl(&cfg, Cmd(c)));
            }
            let mut near = SlotsOf::<Unbounded, Option<Cmd<u64>>>::default();
            for (&slot, &c) in &theirs {
                near.set(slot, Some(Cmd(c)));
            }
            let f = |e: &Entry<Op>| entry_to_model::<u64>(&cfg, e);
            proptest::prop_assert_eq!(
                map_to_slots_near::<Unbounded, _, _>(&map, f, Some(&near)),
                map_to_slots::<Unbounded, _, _>(&map, f)
            );
            // Each client's commands in `seq` order, as a replica executes them.
            let done: Vec<Command<Op>> =
                executed.iter().map(|&c| command_to_impl(&cfg, Cmd(c))).collect();
            let near = ExecutedLog::of(near_executed.iter().map(|&c| Cmd(c)));
            proptest::prop_assert_eq!(
                executed_near::<Unbounded>(&cfg, &done, Some(&near)),
                executed_to_model::<Unbounded>(&cfg, &done)
            );
            let same = ExecutedLog::of(executed.iter().map(|&c| Cmd(c)));
            proptest::prop_assert_eq!(
                executed_near::<Unbounded>(&cfg, &done, Some(&same)),
                Ok(same)
            );
            // The view trace validation extends command by command is the one built from
            // the whole sequence, whatever the model's side it is built near.
            let (split, whole) = (done.len() / 2, executed_to_model::<Unbounded>(&cfg, &done));
            let mut view = ExecutedView::<Unbounded>::of(&cfg, &done[..split]);
            proptest::prop_assert!(view.near(Some(&near)).is_ok());
            for command in &done[split..] {
                view.push(&cfg, command);
            }
            let built = ExecutedView::<Unbounded>::of(&cfg, &done);
            proptest::prop_assert_eq!(view.clients(), &client_table(&done));
            proptest::prop_assert_eq!(built.clients(), &client_table(&done));
            proptest::prop_assert_eq!(view.near(Some(&near)), whole.clone());
            proptest::prop_assert_eq!(view.near(None), whole.clone());
            for len in 0..=done.len() {
                proptest::prop_assert_eq!(
                    view.prefix(len, Some(&near)),
                    executed_to_model::<Unbounded>(&cfg, &done[..len])
                );
            }
            proptest::prop_assert!(view.prefix(done.len() + 1, None).is_err());
        }

        /// Counting ballots by the difference between vote vectors is an optimisation
        /// only: after any sequence of vectors, each built by changing or compacting the one
        /// before (sharing its nodes) or from nothing (sharing none), the recovered promise
        /// is the one M11 computes from the storage alone, in both spaces.
        #[test]
        fn counted_ballots_recover_the_promise_m11_computes(
            steps in proptest::collection::vec(
                (
                    proptest::collection::vec(
                        (0u8..4, proptest::option::of(((0u8..4, 0u8..3), 1u8..4))),
                        0..4,
                    ),
                    0u8..3,
                    proptest::bool::ANY,
                ),
                1..12,
            ),
            promised in (0u8..4, 0u8..3),
        ) {
            let ballot = |(round, id): (u8, u8)| Ballot::new(round, usize::from(id));
            let mut sparse = SlotsOf::<Unbounded, Option<VoteOf<Unbounded>>>::default();
            let mut small = SlotsOf::<Small, Option<VoteOf<Small>>>::default();
            let (mut counted, mut counted_small) =
                (VoteBallots::<Unbounded>::default(), VoteBallots::<Small>::default());
            for (changes, compact, fresh) in steps {
                if fresh {
                    sparse = SlotsOf::<Unbounded, _>::default();
                    for (s, v) in small.entries() {
                        sparse.set(u64::from(s), v.map(|(b, c)| (to_u64(b), Cmd(u64::from(c.0)))));
                    }
                }
                for (s, vote) in changes {
                    let vote = vote.map(|(b, c)| (ballot(b), c));
                    small.set(s, vote.map(|(b, c)| (b, Cmd(c))));
                    sparse.set(u64::from(s), vote.map(|(b, c)| (to_u64(b), Cmd(u64::from(c)))));
                }
                small.clear_below(compact);
                sparse.clear_below(u64::from(compact));
                let storage = ReplicaStorage::<Unbounded> {
                    promised: to_u64(ballot(promised)),
                    accepted: sparse.clone(),
                    ..stored_or_empty(None)
                };
                let storage_small = ReplicaStorage::<Small> {
                    promised: ballot(promised),
                    accepted: small,
                    ..stored_or_empty(None)
                };
                proptest::prop_assert_eq!(
                    counted_recovery_view(Some(&storage), &counted),
                    model_recovery_view(Some(&storage))
                );
                proptest::prop_assert_eq!(
                    counted_recovery_view(Some(&storage_small), &counted_small),
                    model_recovery_view(Some(&storage_small))
                );
                counted.move_to(&sparse);
                counted_small.move_to(&small);
                proptest::prop_assert_eq!(
                    counted_recovery_view(Some(&storage), &counted),
                    model_recovery_view(Some(&storage))
                );
            }
        }

        /// Moving the abstraction of a log by the slots a step touched, and clearing it below
        /// the compaction point, gives the abstraction of the log after the step, whatever the
        /// model's vector it is shared with.
        #[test]
        fn moving_the_abstraction_by_the_touched_slots_is_abstracting_anew(
            before in proptest::collection::btree_map(0u64..40, 0u64..5, 0..24),
            changes in proptest::collection::vec((0u64..40, proptest::option::of(0u64..5)), 0..8),
            below in 0u64..12,
            theirs in proptest::collection::btree_map(0u64..40, 0u64..5, 0..24),
        ) {
            let cfg = MultiConfig { clients: 2, commands: 4, ..MultiConfig::default() };
            let f = |e: &Entry<Op>| entry_to_model::<u64>(&cfg, e);
            let mut map = SlotMap::new();
            for (&slot, &c) in &before {
                map.insert(slot, entry_to_impl(&cfg, Cmd(c)));
            }
            let abstracted = map_to_slots::<Unbounded, _, _>(&map, f).expect("in bounds");
            let mut touched = Vec::new();
            for &(slot, c) in &changes {
                match c {
                    Some(c) => map.insert(slot, entry_to_impl(&cfg, Cmd(c))),
                    None => map.remove(&slot),
                };
                touched.push(slot);
            }
            touched.sort_unstable();
            touched.dedup();
            map.remove_below(below);
            let mut near = SlotsOf::<Unbounded, Option<Cmd<u64>>>::default();
            for (&slot, &c) in &theirs {
                near.set(slot, Some(Cmd(c)));
            }
            let whole = map_to_slots::<Unbounded, _, _>(&map, f);
            for near in [None, Some(&near), whole.as_ref().ok()] {
                proptest::prop_assert_eq!(
                    map_to_slots_moved::<Unbounded, _, _>(&map, f, &abstracted, &touched, below, near),
                    whole.clone()
                );
            }
        }
    }

    /// The harness visits exactly the states stateright's checker counts.
    #[test]
    fn the_visited_states_are_the_checkers() {
        let outcome = run("small", &small(), usize::MAX);
        let checker = multi::model(small()).checker().spawn_bfs().join();
        assert_eq!(outcome.counts.states, checker.unique_state_count());
        assert_eq!(
            outcome.counts.states, 65_434,
            "specs/results.md, --no-symmetry"
        );
    }

    /// Concretisation and abstraction are inverse on every replica state reached, and the
    /// durable state the concretised replica reports reads back as the model's storage.
    #[test]
    fn every_model_replica_maps_to_the_core_and_back() {
        let cfg = with_crashes();
        let model = multi::model(cfg.clone());
        let mut states = 0;
        explore(&model, None, |visit| {
            let Visit::State(state) = visit else {
                return ControlFlow::Continue(());
            };
            states += 1;
            for (i, a) in state.actor_states.iter().enumerate() {
                let MultiState::Replica(r) = &**a else {
                    continue;
                };
                let storage = state.actor_storages[i].as_ref();
                let replica = concretize(&cfg, i, r, storage, Due::Phase);
                assert_eq!(abstraction(&cfg, &replica).unwrap(), canonical(*r));
                assert_eq!(
                    impl_recovery_view(
                        &cfg,
                        &replica.durable(),
                        replica.snapshot(),
                        replica.now_ms()
                    )
                    .unwrap(),
                    model_recovery_view(storage)
                );
            }
            ControlFlow::Continue(())
        });
        assert_eq!(states, 653_432, "every state of the crash configuration");
    }

    /// Power: the implementation is correct, so replaying any seeded bug's model against it
    /// must diverge. A comparison that let a bug through would prove nothing.
    #[test]
    fn every_seeded_model_bug_is_a_divergence() {
        let mut missed = Vec::new();
        for &bug in MultiBug::ALL {
            let outcome = run(bug.name(), &bug.witness_config(), 1);
            match outcome.first_divergence() {
                None => missed.push(bug.name()),
                Some(d) => eprintln!("  {d}"),
            }
        }
        assert!(missed.is_empty(), "no divergence for {missed:?}");
    }

    /// The full default configuration (2,966,505 states without symmetry): run it in release
    /// mode with
    /// `cargo test --release -p paxos-conformance --lib -- --ignored --nocapture default`.
    #[test]
    #[ignore = "minutes: the full default configuration"]
    fn every_replica_transition_of_the_default_configuration_matches_the_core() {
        let outcome = run("default", &MultiConfig::default(), 10);
        assert_eq!(
            outcome.counts.states, 2_966_505,
            "specs/results.md, --no-symmetry"
        );
        assert_conforms(&outcome);
    }
}
