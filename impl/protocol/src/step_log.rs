//! The step log's line format (`paxos-steps/4`): every transition a replica's core takes in a
//! real run, as JSON lines, so that `paxos-conform validate` can check the run against the
//! model (`specs/trace-format.md`, "Step logs"). The node crate writes them
//! (`paxos_impl::runtime::step_log`).
//!
//! ```text
//!   {"start":{"format":"paxos-steps/4","node":0,"pid":..,"config":..,"recovered":..,"effects":[..],"state":..}}
//!   {"step":{"node":0,"input":..,"effects":[..],"state":..}}     one per core step
//!   ... a restarted process appends another "start" line and goes on
//! ```
//!
//! (Externally tagged: serde cannot read the slot-keyed maps of an internally tagged enum.)

use serde::{Deserialize, Serialize};

use crate::ballot::NodeId;
use crate::multi::{Config, Durable, Effect, Input, ReplicaState};

/// The format name every `start` line carries.
pub const STEP_LOG_FORMAT: &str = "paxos-steps/4";

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
    /// One core step: its input, its effects in order, and the replica state after it.
    Step {
        node: NodeId,
        input: Input<Op, Snap>,
        effects: Vec<Effect<Op, Out, Snap>>,
        state: ReplicaState<Op, Out>,
    },
}
