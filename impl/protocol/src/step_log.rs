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
        effects: Vec<Effect<Op, Out, Snap>>,
        state: StepState<Op, Out>,
    },
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
