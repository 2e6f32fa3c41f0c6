//! The step log (`serve --step-log FILE`): every transition the core takes in a real run, one
//! [`StepLine`] per JSON line (format `paxos-steps/4`, defined with the core in
//! `paxos_protocol::step_log`), so that `paxos-conform validate` can check the run against the
//! model.
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

use serde::Serialize;

pub use paxos_protocol::step_log::{StepLine, STEP_LOG_FORMAT};

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
    pub fn write<Op: Serialize, Out: Serialize, Snap: Serialize>(
        &mut self,
        line: &StepLine<Op, Out, Snap>,
    ) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, line)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line)
    }
}
