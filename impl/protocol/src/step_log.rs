//! The step log's line format (`paxos-steps/6`): every transition a replica's core takes in a
//! real run, as JSON lines, so that `paxos-conform validate` can check the run against the
//! model (`specs/trace-format.md`, "Step logs"). The node crate writes them
//! (`paxos_impl::runtime::step_log`).
//!
//! ```text
//!   {"start":{"format":"paxos-steps/6","node":0,"pid":..,"config":..,"recovered":..,"effects":[..],"state":..}}
//!   {"step":{"node":0,"input":..,"effects":[..],"state":..}}     one per core step
//!   ... a restarted process appends another "start" line and goes on
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
    ClientTable, Command, CommandId, Config, Durable, Effect, Input, Lease, Phase, ReadIndex,
    RecordError, ReplicaState, Slot, Timers,
};

/// The format name every `start` line carries.
pub const STEP_LOG_FORMAT: &str = "paxos-steps/6";

fn none<T>() -> Option<T> {
    None
}

/// One line of a step log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "a line lives only while it is written or read; boxing would add an allocation per step"
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
        state: ReplicaState<Op, Out>,
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
/// executed), or the whole table when the step took or installed a snapshot. Everything here
/// is bounded by the window, the waiting reads and the clients of one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState<Op, Out> {
    pub round: u64,
    pub promised: Ballot,
    pub phase: Phase<Op>,
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

impl<Op: Clone, Out: Clone> StepState<Op, Out> {
    /// What a step line holds of `state`, the replica after a step with `effects`.
    pub fn of<Snap>(state: &ReplicaState<Op, Out>, effects: &[Effect<Op, Out, Snap>]) -> Self {
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
        StepState {
            round: state.round,
            promised: state.promised,
            phase: state.phase.clone(),
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
    /// logged rows, and the rest as logged. A record that does not fold (a damaged or forged
    /// log) is an error.
    pub fn after<Snap>(
        self,
        before: ReplicaState<Op, Out>,
        effects: &[Effect<Op, Out, Snap>],
    ) -> Result<ReplicaState<Op, Out>, RecordError> {
        let mut log = Durable {
            round: 0,
            promised: None,
            accepted: before.accepted,
            chosen: before.chosen,
        };
        for effect in effects {
            if let Effect::Persist(record) = effect {
                log.apply(record.clone())?;
            }
        }
        log.accepted.remove_below(self.compacted);
        log.chosen.remove_below(self.compacted);
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
            phase: self.phase,
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

    fn state() -> StepState<u64, u64> {
        let config = Config {
            id: 0,
            replicas: vec![0, 1, 2, 3, 4],
            initial_leader: 0,
            window: 4,
            slot_limit: None,
            timing: Timing::default(),
            catch_up_entries_max: crate::multi::CATCH_UP_ENTRIES_MAX,
        };
        let (replica, _) = Replica::new(config, Recorder::<u64>::default()).expect("valid");
        StepState::of::<u64>(replica.state(), &[])
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
            StepLine::Start { .. } => unreachable!("a step line"),
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
