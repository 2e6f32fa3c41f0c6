//! The step log (`serve --step-log FILE`): every transition the core takes in a real run, one
//! [`StepLine`] per JSON line (format `paxos-steps/7`, defined with the core in
//! `paxos_protocol::step_log`), so that `paxos-conform validate` can check the run against the
//! model.
//!
//! A `step` line carries what its step changed ([`StepState`]), so it does not grow with the
//! log.
//!
//! Lines are written before any effect of their steps is performed, so a message a peer
//! received, or a record the WAL holds, always has its step in the log: a `kill -9` loses
//! nothing the kernel accepted. The node task queues the lines of a batch of steps
//! ([`StepLog::push`]) and writes them with one `write` call ([`StepLog::flush`]) before it
//! performs the batch's effects, as it hands the batch's records to the WAL in one group.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;

pub use paxos_protocol::step_log::{LineBase, StepLine, StepState, STEP_LOG_FORMAT};

/// The writer of one replica's step log (appends: a restarted replica continues its file).
#[derive(Debug)]
pub struct StepLog {
    file: File,
    /// Lines queued and not yet written, each ending in a newline.
    pending: Vec<u8>,
}

impl StepLog {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        // A process killed in the middle of a write left a torn last line: this process's
        // lines start on a line of their own.
        if file.seek(SeekFrom::End(0))? > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(StepLog {
            file,
            pending: Vec::new(),
        })
    }

    /// Queues `line`; [`StepLog::flush`] writes it.
    pub fn push<Op: Serialize, Out: Serialize, Snap: Serialize>(
        &mut self,
        line: &StepLine<Op, Out, Snap>,
    ) -> io::Result<()> {
        serde_json::to_writer(&mut self.pending, line)?;
        self.pending.push(b'\n');
        Ok(())
    }

    /// Writes every queued line with one `write` call (no user-space buffer a `kill -9` could
    /// lose once it returns).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.pending);
        self.pending.clear();
        written
    }

    /// Queues `line` and writes it with those before it.
    pub fn write<Op: Serialize, Out: Serialize, Snap: Serialize>(
        &mut self,
        line: &StepLine<Op, Out, Snap>,
    ) -> io::Result<()> {
        self.push(line)?;
        self.flush()
    }
}
