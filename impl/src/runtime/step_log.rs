//! The step log (`serve --step-log FILE`): every transition the core takes in a real run, as
//! JSON lines in the format `paxos-steps/2`, so that `paxos-conform validate` can check the
//! run against the model (`specs/trace-format.md`, "Step logs").
//!
//! ```text
//!   {"start":{"format":"paxos-steps/2","node":0,"pid":..,"config":..,"recovered":..,"effects":[..],"state":..}}
//!   {"step":{"node":0,"input":..,"effects":[..],"state":..}}     one per core step
//!   ... a restarted process appends another "start" line and goes on
//! ```
//!
//! (Externally tagged: serde cannot read the slot-keyed maps of an internally tagged enum.)
//!
//! Each line carries the whole replica state after the transition, so a line costs as much as
//! the log is long: the step log is for bounded runs that are checked, not for production.
//!
//! A line is written with one `write` call before any effect of its step is performed, so a
//! message a peer received, or a record the WAL holds, always has its step in the log: a
//! `kill -9` loses nothing the kernel accepted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ballot::NodeId;
use crate::core::{Config, Durable, Effect, Input, ReplicaState};

/// The format name every `start` line carries.
pub const STEP_LOG_FORMAT: &str = "paxos-steps/2";

/// One line of a step log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "a line lives only while it is written or read; boxing would add an allocation per step"
)]
pub enum StepLine<Op, Out> {
    /// A process started the replica: from empty storage (`recovered` is empty) or by
    /// recovering what its WAL held (M11). `effects` are the recovery's own.
    Start {
        format: String,
        node: NodeId,
        pid: u32,
        config: Config,
        recovered: Durable<Op>,
        effects: Vec<Effect<Op, Out>>,
        state: ReplicaState<Op, Out>,
    },
    /// One core step: its input, its effects in order, and the replica state after it.
    Step {
        node: NodeId,
        input: Input<Op>,
        effects: Vec<Effect<Op, Out>>,
        state: ReplicaState<Op, Out>,
    },
}

/// The writer of one replica's step log (appends: a restarted replica continues its file).
#[derive(Debug)]
pub struct StepLog {
    file: File,
    line: Vec<u8>,
}

impl StepLog {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(StepLog {
            file,
            line: Vec::new(),
        })
    }

    /// Writes `line` with one `write` call (no user-space buffer a `kill -9` could lose).
    pub fn write<Op: Serialize, Out: Serialize>(
        &mut self,
        line: &StepLine<Op, Out>,
    ) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, line)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line)
    }
}
