//! The step log's line format (`paxos-steps/8`): every transition a replica's core takes in a
//! real run, as JSON lines, so that `paxos-conform validate` can check the run against the
//! model (`specs/trace-format.md`, "Step logs"). The node crate writes them
//! (`paxos_impl::runtime::step_log`).
//!
//! ```text
//!   {"start":{"format":"paxos-steps/8","node":0,"pid":..,"config":..,"recovered":..,"effects":[..],"state":..}}
//!   {"step":{"node":0,"input":..,"effects":[..],"state":..}}     one per core step
//!   ... a restarted process appends another "start" line and goes on
//!   {"checkpoint":{"format":"paxos-steps/8","node":0,"pid":..,"segment":1,..,"state":..}}
//!   ... the first line of each later segment of a rotated log
//! ```
//!
//! A `start` line holds the whole replica state; a `step` line only what the step changed
//! beyond its records ([`StepState`]), so that a line does not grow with the log: the votes
//! and chosen entries are the previous line's moved by the step's records, the client table
//! the previous one with the rows the step changed ([`StepState::after`]).
//!
//! (Externally tagged: serde cannot read the slot-keyed maps of an internally tagged enum.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ballot::{Ballot, NodeId};
use crate::multi::{
    ClientTable, Command, CommandId, Config, Durable, Effect, Entry, Input, Lease, Phase,
    ReadIndex, RecordError, ReplicaState, Slot, SlotMap, Timers,
};

/// The format name every `start` line carries.
pub const STEP_LOG_FORMAT: &str = "paxos-steps/8";

/// The formats a reader takes: `/6` lines hold a `Preparing` phase's `merged` whole, which
/// a later reader reads as such (no `merged_base`); `/7` logs have no `checkpoint` lines.
pub const STEP_LOG_FORMATS_READ: [&str; 3] = ["paxos-steps/6", "paxos-steps/7", STEP_LOG_FORMAT];

/// A phase-1 candidate's merged votes: per slot, the highest-ballot vote it has counted.
type Merged<Op> = SlotMap<(Ballot, Entry<Op>)>;

fn none<T>() -> Option<T> {
    None
}

/// One line of a step log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "the largest variant, a step, is nearly every line: boxing it would add an allocation per step (the rare start and checkpoint lines box their state)"
)]
pub enum StepLine<Op, Out, Snap> {
    /// A process started the replica: from empty storage (`recovered` is empty) or by
    /// recovering what its WAL held (M11). `effects` are the recovery's own.
    Start {
        format: String,
        node: NodeId,
        pid: u32,
        config: Config,
        recovered: Durable<Op>,
        /// The snapshot recovery started from (K1, K4), when the storage held one:
        /// `recovered` is then the log from it on.
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snap>,
        effects: Vec<Effect<Op, Out, Snap>>,
        /// Boxed: a start or checkpoint line is rare, and a reader holds every line of a run,
        /// each as large as its largest variant.
        state: Box<ReplicaState<Op, Out>>,
    },
    /// One core step: its input, its effects in order, and what of the replica state after
    /// it the effects do not say.
    Step {
        node: NodeId,
        input: Input<Op, Snap>,
        /// As [`StepLine::step`] collapses them: a message sent to several peers in a row
        /// appears once, with its first recipient.
        effects: Vec<Effect<Op, Out, Snap>>,
        /// The other recipients of those messages: `(i, peers)` sends `effects[i]`'s message
        /// to each of `peers` too, right after it, in that order ([`StepLine::expanded`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also_to: Vec<(usize, Vec<NodeId>)>,
        state: StepState<Op, Out>,
    },
    /// The first line of every segment of a rotated log but the first: the replica's whole
    /// state, written where every record the replica had persisted was durable, so that its
    /// storage holds `snapshot` and the durable state `state` gives
    /// ([`ReplicaState::durable`]). Not a transition: a reader with the lines before it checks
    /// they rebuilt this state; one without them can start from it.
    Checkpoint {
        format: String,
        node: NodeId,
        /// The process that wrote it (a `start` line of that process comes before it).
        pid: u32,
        /// The segment this line begins (1 for the first rotation).
        segment: u64,
        /// Milliseconds since the Unix epoch, from the host's clock, when it was written.
        wall_ms: u64,
        config: Config,
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snap>,
        /// Boxed: a start or checkpoint line is rare, and a reader holds every line of a run,
        /// each as large as its largest variant.
        state: Box<ReplicaState<Op, Out>>,
    },
}

impl<Op, Out, Snap> StepLine<Op, Out, Snap>
where
    Op: Clone + PartialEq,
    Out: Clone,
    Snap: Clone + PartialEq,
{
    /// The line of one step. A leader's Accept carries the same entries to every peer, and
    /// with one effect per peer those copies were most of its lines' bytes: a message sent to
    /// several peers in a row is logged once, the other recipients in `also_to`.
    pub fn step(
        node: NodeId,
        input: Input<Op, Snap>,
        effects: &[Effect<Op, Out, Snap>],
        state: StepState<Op, Out>,
    ) -> Self {
        let mut logged: Vec<Effect<Op, Out, Snap>> = Vec::with_capacity(effects.len());
        let mut also_to: Vec<(usize, Vec<NodeId>)> = Vec::new();
        for effect in effects {
            if let (Effect::Send { to, msg }, Some(Effect::Send { msg: last, .. })) =
                (effect, logged.last())
            {
                if msg == last {
                    let at = logged.len() - 1;
                    match also_to.last_mut() {
                        Some((i, peers)) if *i == at => peers.push(*to),
                        _ => also_to.push((at, vec![*to])),
                    }
                    continue;
                }
            }
            logged.push(effect.clone());
        }
        StepLine::Step {
            node,
            input,
            effects: logged,
            also_to,
            state,
        }
    }

    /// The line with every effect the step had: each message of `also_to` sent again to each
    /// of its peers (a `start` line, and a step line without `also_to`, are unchanged). A
    /// line whose `also_to` names no `Send`, or names one twice or out of order, is refused.
    pub fn expanded(self) -> Result<Self, String> {
        if matches!(&self, StepLine::Step { also_to, .. } if also_to.is_empty()) {
            return Ok(self);
        }
        let StepLine::Step {
            node,
            input,
            effects,
            also_to,
            state,
        } = self
        else {
            return Ok(self);
        };
        let mut all = Vec::with_capacity(effects.len() + also_to.len());
        let mut more = also_to.into_iter().peekable();
        for (i, effect) in effects.into_iter().enumerate() {
            let peers = more.next_if(|(at, _)| *at == i).map(|(_, peers)| peers);
            if let Some((at, _)) = more.peek() {
                if *at <= i {
                    return Err(format!("also_to names effect {at} twice or out of order"));
                }
            }
            all.push(effect);
            if let Some(peers) = peers {
                let Some(Effect::Send { msg, .. }) = all.last() else {
                    return Err(format!("also_to names effect {i}, not a send"));
                };
                let msg = msg.clone();
                all.extend(peers.into_iter().map(|to| Effect::Send {
                    to,
                    msg: msg.clone(),
                }));
            }
        }
        if let Some((at, _)) = more.next() {
            return Err(format!(
                "also_to names effect {at}, past the step's effects"
            ));
        }
        Ok(StepLine::Step {
            node,
            input,
            effects: all,
            also_to: Vec::new(),
            state,
        })
    }
}

/// The replica state after a step, less what the step's effects say: every field of
/// [`ReplicaState`] but the votes and chosen entries, which the step's `Persist` records move
/// (every change the core makes to them is persisted, and compaction is the `compacted`
/// field), and of the client table only the rows the step changed (those of the commands it
/// executed), or the whole table when the step took or installed a snapshot; and of a
/// phase-1 candidate's merged votes only the slots that differ from a base the reader has
/// ([`MergedBase`]). Everything here is bounded by the window, the waiting reads and the
/// step's own input and effects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState<Op, Out> {
    pub round: u64,
    pub promised: Ballot,
    /// A `Preparing` phase's `merged` holds, with `merged_base`, only the slots that differ
    /// from that base.
    pub phase: Phase<Op>,
    /// Absent: a `Preparing` phase's `merged` is whole (always so in `paxos-steps/6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_base: Option<MergedBase>,
    /// The slots the base holds and the phase's `merged` does not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_removed: Vec<Slot>,
    #[serde(with = "crate::multi::types::pending_as_list")]
    pub pending: BTreeMap<CommandId, Command<Op>>,
    pub applied: Slot,
    /// The rows the step changed, or the whole table after a snapshot (`whole_clients`).
    pub clients: ClientTable<Out>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole_clients: bool,
    pub persisted_round: u64,
    pub persisted_promise: Option<Ballot>,
    pub compacted: Slot,
    pub timers: Timers,
    pub reads: ReadIndex<Op>,
    pub lease: Lease,
}

/// What a phase-1 candidate's `merged` votes on a step line are written against. A candidate
/// stuck in phase 1 (cut off from a majority) steps on every tick and message, and its whole
/// `merged` (every vote since its snapshot) on each line was most of a run's step log
/// (specs/results.md, "Validation at the cost of the step"); its changes are what the step's
/// Promise brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergedBase {
    /// The previous line's `merged` (its phase was `Preparing` too).
    Previous,
    /// The replica's own votes after the step, which M1 starts phase 1 with.
    Accepted,
}

/// Why a step line does not rebuild a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// A `Persist` record does not fold onto the previous votes.
    Record(RecordError),
    /// `merged_base` is `previous`, but the previous line's phase was not `Preparing`.
    NoPreviousMerged,
}

/// The `merged` votes of a `Preparing` phase.
pub fn merged<Op>(phase: &Phase<Op>) -> Option<&Merged<Op>> {
    match phase {
        Phase::Preparing { merged, .. } => Some(merged),
        _ => None,
    }
}

/// What a step log's writer keeps from its last line for the next: a `Preparing` phase's
/// merged votes, which the next line writes as changes ([`MergedBase::Previous`]).
#[derive(Clone, Debug)]
pub struct LineBase<Op> {
    merged: Option<Merged<Op>>,
}

impl<Op> Default for LineBase<Op> {
    fn default() -> Self {
        LineBase { merged: None }
    }
}

impl<Op: Clone + PartialEq> LineBase<Op> {
    /// The base a `start` line leaves: it holds the whole `state`.
    pub fn started<Out>(state: &ReplicaState<Op, Out>) -> Self {
        LineBase {
            merged: merged(&state.phase).cloned(),
        }
    }

    /// The `state` of a step line for `state`, the replica after a step with `effects`; the
    /// base becomes that line's.
    pub fn line<Out: Clone, Snap>(
        &mut self,
        state: &ReplicaState<Op, Out>,
        effects: &[Effect<Op, Out, Snap>],
    ) -> StepState<Op, Out> {
        let line = StepState::of(state, effects, self.merged.as_ref());
        let unchanged = line.merged_base == Some(MergedBase::Previous)
            && merged(&line.phase).is_some_and(SlotMap::is_empty)
            && line.merged_removed.is_empty();
        if !unchanged {
            self.merged = merged(&state.phase).cloned();
        }
        line
    }
}

impl<Op: Clone + PartialEq, Out: Clone> StepState<Op, Out> {
    /// What a step line holds of `state`, the replica after a step with `effects`;
    /// `previous` is the previous line's `merged`, when its phase was `Preparing`.
    pub fn of<Snap>(
        state: &ReplicaState<Op, Out>,
        effects: &[Effect<Op, Out, Snap>],
        previous: Option<&Merged<Op>>,
    ) -> Self {
        let whole_clients = effects.iter().any(|e| matches!(e, Effect::Snapshot(_)));
        let clients = if whole_clients {
            state.clients.clone()
        } else {
            let mut rows = ClientTable::default();
            for effect in effects {
                if let Effect::Executed { command, .. } = effect {
                    if let Some(row) = state.clients.get(&command.client) {
                        rows.insert(command.client, row.clone());
                    }
                }
            }
            rows
        };
        let (phase, merged_base, merged_removed) = match &state.phase {
            Phase::Preparing {
                promises,
                merged,
                floor,
            } => {
                let (base, against) = match previous {
                    Some(previous) => (MergedBase::Previous, previous),
                    None => (MergedBase::Accepted, &state.accepted),
                };
                let (changed, removed) = merged.changes_from(against);
                let (merged, base) = if changed.len() + removed.len() < merged.len() {
                    (changed, Some(base))
                } else {
                    (merged.clone(), None)
                };
                let phase = Phase::Preparing {
                    promises: promises.clone(),
                    merged,
                    floor: *floor,
                };
                let removed = if base.is_some() { removed } else { Vec::new() };
                (phase, base, removed)
            }
            phase => (phase.clone(), None, Vec::new()),
        };
        StepState {
            round: state.round,
            promised: state.promised,
            phase,
            merged_base,
            merged_removed,
            pending: state.pending.clone(),
            applied: state.applied,
            clients,
            whole_clients,
            persisted_round: state.persisted_round,
            persisted_promise: state.persisted_promise,
            compacted: state.compacted,
            timers: state.timers.clone(),
            reads: state.reads.clone(),
            lease: state.lease,
        }
    }

    /// The whole replica state after the step: `before`'s votes and chosen entries moved by
    /// the step's records and dropped below the compaction point, its client table with the
    /// logged rows, a phase-1 candidate's merged votes from their base, and the rest as
    /// logged. A record that does not fold, or changes to a base the previous line does not
    /// have (a damaged or forged log), is an error.
    pub fn after<Snap>(
        self,
        before: ReplicaState<Op, Out>,
        effects: &[Effect<Op, Out, Snap>],
    ) -> Result<ReplicaState<Op, Out>, LineError> {
        let mut log = Durable {
            round: 0,
            promised: None,
            accepted: before.accepted,
            chosen: before.chosen,
        };
        for effect in effects {
            if let Effect::Persist(record) = effect {
                log.apply(record.clone()).map_err(LineError::Record)?;
            }
        }
        log.accepted.remove_below(self.compacted);
        log.chosen.remove_below(self.compacted);
        let phase = match (self.phase, self.merged_base) {
            (
                Phase::Preparing {
                    promises,
                    merged: changed,
                    floor,
                },
                Some(base),
            ) => {
                let base = match (base, before.phase) {
                    (MergedBase::Accepted, _) => log.accepted.clone(),
                    (MergedBase::Previous, Phase::Preparing { merged, .. }) => merged,
                    (MergedBase::Previous, _) => return Err(LineError::NoPreviousMerged),
                };
                Phase::Preparing {
                    promises,
                    merged: base.patched(&changed, &self.merged_removed),
                    floor,
                }
            }
            (phase, _) => phase,
        };
        let clients = if self.whole_clients {
            self.clients
        } else {
            let mut clients = before.clients;
            clients.extend(self.clients);
            clients
        };
        Ok(ReplicaState {
            round: self.round,
            promised: self.promised,
            accepted: log.accepted,
            chosen: log.chosen,
            phase,
            pending: self.pending,
            applied: self.applied,
            clients,
            persisted_round: self.persisted_round,
            persisted_promise: self.persisted_promise,
            compacted: self.compacted,
            timers: self.timers,
            reads: self.reads,
            lease: self.lease,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi::{Message, Recorder, Replica, Timing};

    type Line = StepLine<u64, u64, u64>;
    type Fx = Effect<u64, u64, u64>;

    /// Replica 0 of `replicas`, as it starts.
    fn started(replicas: Vec<NodeId>) -> ReplicaState<u64, u64> {
        let config = Config {
            id: 0,
            replicas,
            initial_leader: 0,
            window: 4,
            slot_limit: None,
            timing: Timing::default(),
            catch_up_entries_max: crate::multi::CATCH_UP_ENTRIES_MAX,
        };
        let (replica, _) = Replica::new(config, Recorder::<u64>::default()).expect("valid");
        replica.state().clone()
    }

    fn state() -> StepState<u64, u64> {
        StepState::of::<u64>(&started(vec![0, 1, 2, 3, 4]), &[], None)
    }

    fn heartbeat(to: NodeId, round: u64) -> Fx {
        Effect::Send {
            to,
            msg: Message::Heartbeat {
                ballot: Ballot { round, node: 0 },
            },
        }
    }

    fn effects_of(line: &Line) -> (&Vec<Fx>, &Vec<(usize, Vec<NodeId>)>) {
        match line {
            StepLine::Step {
                effects, also_to, ..
            } => (effects, also_to),
            StepLine::Start { .. } | StepLine::Checkpoint { .. } => unreachable!("a step line"),
        }
    }

    #[test]
    fn a_broadcast_is_logged_once_and_read_back_as_every_send() {
        let reply = Effect::Reply {
            client: crate::multi::ClientId(7),
            seq: 1,
            output: Some(3),
        };
        let effects = vec![
            heartbeat(1, 1),
            heartbeat(2, 1),
            heartbeat(3, 1),
            reply,
            heartbeat(4, 2),
            heartbeat(1, 2),
            heartbeat(2, 1),
        ];
        let line = Line::step(0, Input::Compact, &effects, state());
        let (logged, also_to) = effects_of(&line);
        assert_eq!(logged.len(), 4, "{logged:?}");
        assert_eq!(also_to, &vec![(0, vec![2, 3]), (2, vec![1])]);
        let json = serde_json::to_string(&line).expect("JSON");
        let read: Line = serde_json::from_str(&json).expect("reads back");
        let expanded = read.expanded().expect("expands");
        assert_eq!(effects_of(&expanded), (&effects, &Vec::new()));
    }

    /// A replica state whose own votes are `accepted` and whose phase is the given one.
    fn replica_in(phase: Phase<u64>, accepted: &[(Slot, u64)]) -> ReplicaState<u64, u64> {
        let mut state = started(vec![0, 1, 2]);
        for &(slot, round) in accepted {
            state
                .accepted
                .insert(slot, (Ballot { round, node: 1 }, Entry::Noop));
        }
        state.phase = phase;
        state
    }

    fn preparing(merged: &[(Slot, u64)], promises: &[NodeId]) -> Phase<u64> {
        Phase::Preparing {
            promises: promises.iter().copied().collect(),
            merged: merged
                .iter()
                .map(|&(slot, round)| (slot, (Ballot { round, node: 1 }, Entry::Noop)))
                .collect(),
            floor: 0,
        }
    }

    /// Writes the line of the step from `before` to `after` as the writer does, reads it back
    /// through JSON and rebuilds the state from `before`.
    fn rebuilt(
        base: &mut LineBase<u64>,
        before: &ReplicaState<u64, u64>,
        after: &ReplicaState<u64, u64>,
    ) -> (
        StepState<u64, u64>,
        Result<ReplicaState<u64, u64>, LineError>,
    ) {
        let line = base.line::<u64, u64>(after, &[]);
        let json = serde_json::to_string(&line).expect("JSON");
        let read: StepState<u64, u64> = serde_json::from_str(&json).expect("reads back");
        (line, read.after::<u64>(before.clone(), &[]))
    }

    /// A candidate stuck in phase 1 writes no votes on a step that changes none of them, and
    /// on a Promise's step the slots that Promise raised: its lines do not grow with the log.
    #[test]
    fn a_candidates_merged_votes_are_written_as_changes() {
        let own: Vec<(Slot, u64)> = (0..100).map(|slot| (slot, 1)).collect();
        let follower = replica_in(Phase::Follower, &own);
        let mut base = LineBase::started(&follower);

        // M1: phase 1 starts with the own votes, written against them.
        let started = replica_in(preparing(&own, &[0]), &own);
        let (line, after) = rebuilt(&mut base, &follower, &started);
        assert_eq!(line.merged_base, Some(MergedBase::Accepted));
        assert_eq!(merged(&line.phase).map(SlotMap::len), Some(0));
        assert_eq!(after.as_ref(), Ok(&started));

        // A tick: nothing changes.
        let (line, after) = rebuilt(&mut base, &started, &started);
        assert_eq!(line.merged_base, Some(MergedBase::Previous));
        assert_eq!(merged(&line.phase).map(SlotMap::len), Some(0));
        assert_eq!(after.as_ref(), Ok(&started));

        // A Promise with a higher vote in slot 7 and a vote in slot 100.
        let mut raised = own.clone();
        raised[7].1 = 5;
        raised.push((100, 3));
        let promised = replica_in(preparing(&raised, &[0, 1]), &own);
        let (line, after) = rebuilt(&mut base, &started, &promised);
        assert_eq!(line.merged_base, Some(MergedBase::Previous));
        assert_eq!(
            merged(&line.phase).map(|m| m.keys().collect::<Vec<_>>()),
            Some(vec![7, 100])
        );
        assert_eq!(after.as_ref(), Ok(&promised));

        // A slot of the base gone (written as removed), from a base that is not the own votes.
        let mut fewer = raised.clone();
        fewer.remove(3);
        let shrunk = replica_in(preparing(&fewer, &[0, 1]), &own);
        let (line, after) = rebuilt(&mut base, &promised, &shrunk);
        assert_eq!(line.merged_removed, vec![3]);
        assert_eq!(after.as_ref(), Ok(&shrunk));

        // Changes to a previous phase 1 the previous line does not have are refused.
        let (_, after) = rebuilt(&mut base, &follower, &shrunk);
        assert_eq!(after, Err(LineError::NoPreviousMerged));

        // Where the changes would outnumber the votes, the votes are written whole.
        let mut whole = LineBase::started(&follower);
        let other: Vec<(Slot, u64)> = (200..202).map(|slot| (slot, 1)).collect();
        let elsewhere = replica_in(preparing(&other, &[0]), &own);
        let (line, after) = rebuilt(&mut whole, &follower, &elsewhere);
        assert_eq!(line.merged_base, None);
        assert!(line.merged_removed.is_empty());
        assert_eq!(after.as_ref(), Ok(&elsewhere));
    }

    #[test]
    fn also_to_naming_no_send_or_out_of_order_is_refused() {
        let effects = vec![
            heartbeat(1, 1),
            Effect::Persist(crate::multi::Record::Round(1)),
        ];
        let with = |also_to: Vec<(usize, Vec<NodeId>)>| StepLine::Step {
            node: 0,
            input: Input::Compact,
            effects: effects.clone(),
            also_to,
            state: state(),
        };
        let refused = |also_to, why: &str| {
            let error = with(also_to).expanded().expect_err(why);
            assert!(error.contains(why), "{error}");
        };
        refused(vec![(1, vec![2])], "not a send");
        refused(vec![(2, vec![2])], "past the step's effects");
        refused(vec![(0, vec![2]), (0, vec![3])], "twice or out of order");
        assert!(with(vec![(0, vec![2])]).expanded().is_ok());
    }
}
