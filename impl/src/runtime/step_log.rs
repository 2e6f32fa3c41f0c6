//! The step log (`serve --step-log FILE`): every transition the core takes in a real run, one
//! [`StepLine`] per JSON line (format `paxos-steps/8`, defined with the core in
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
//!
//! With [`Rotation`] (`serve --step-log-segment-mib`), a file that reached its size is closed
//! under a numbered name ([`segment_path`]) and a new one begins with a checkpoint line (the
//! replica's whole state, written by the node task once every record is durable), so that a
//! log's disk use is bounded by the segments kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use paxos_protocol::step_log::{LineBase, StepLine, StepState, STEP_LOG_FORMAT};

/// When a step log closes its file and begins another, and how many closed ones it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The file is closed at the first flush that leaves it at least this long.
    pub segment_bytes: u64,
    /// Closed segments kept, the oldest deleted first; `None`: every one.
    pub keep: Option<usize>,
}

/// The writer of one replica's step log (appends: a restarted replica continues its file).
#[derive(Debug)]
pub struct StepLog {
    file: File,
    path: PathBuf,
    /// Lines queued and not yet written, each ending in a newline.
    pending: Vec<u8>,
    /// Bytes in the file.
    written: u64,
    rotation: Option<Rotation>,
    /// The number of the segment the file is: 0 for a log's first, one more than the
    /// highest closed segment's after that.
    segment: u64,
}

/// Where segment `number` of the step log at `path` goes once closed: the number before a
/// `.steps.jsonl` suffix (`node-0.000003.steps.jsonl`, which sorts before the file being
/// written, `node-0.steps.jsonl`, and after the segments before it), or after the name.
pub fn segment_path(path: &Path, number: u64) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let closed = match name.strip_suffix(SUFFIX) {
        Some(stem) => format!("{stem}.{number:06}{SUFFIX}"),
        None => format!("{name}.{number:06}"),
    };
    path.with_file_name(closed)
}

const SUFFIX: &str = ".steps.jsonl";

/// The closed segments of the step log at `path`, by number, ascending.
pub fn closed_segments(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A closed segment's name is `segment_path`'s: the stem, a dot and the number (6 digits
    // or more), then the suffix, if the name had it.
    let (stem, suffix) = match name.strip_suffix(SUFFIX) {
        Some(stem) => (format!("{stem}."), SUFFIX),
        None => (format!("{name}."), ""),
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let candidate = entry?.path();
        let Some(other) = candidate
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        let digits = other
            .strip_prefix(stem.as_str())
            .and_then(|rest| rest.strip_suffix(suffix))
            .filter(|d| d.len() >= 6 && d.bytes().all(|b| b.is_ascii_digit()));
        if let Some(number) = digits.and_then(|d| d.parse::<u64>().ok()) {
            found.push((number, candidate));
        }
    }
    found.sort();
    Ok(found)
}

impl StepLog {
    /// Appends to `path`, never rotating.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_rotating(path, None)
    }

    /// Appends to `path`, closing it and beginning another as `rotation` says.
    pub fn open_rotating(path: &Path, rotation: Option<Rotation>) -> io::Result<Self> {
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
        let written = file.seek(SeekFrom::End(0))?;
        let segment = match rotation {
            Some(_) => closed_segments(path)?.last().map_or(0, |(n, _)| n + 1),
            None => 0,
        };
        Ok(StepLog {
            file,
            path: path.to_path_buf(),
            pending: Vec::new(),
            written,
            rotation,
            segment,
        })
    }

    /// Whether the file is due to be closed ([`StepLog::rotate`]): it reached its size and
    /// every queued line is written.
    pub fn rotation_due(&self) -> bool {
        self.pending.is_empty()
            && self
                .rotation
                .is_some_and(|r| self.written >= r.segment_bytes)
    }

    /// The number of the segment [`StepLog::rotate`] begins.
    pub fn next_segment(&self) -> u64 {
        self.segment + 1
    }

    /// Closes the file under its segment's name ([`segment_path`]), begins a new one with
    /// `checkpoint` (a [`StepLine::Checkpoint`] naming [`StepLog::next_segment`]), and
    /// deletes the oldest closed segments beyond those kept.
    pub fn rotate<Op: Serialize, Out: Serialize, Snap: Serialize>(
        &mut self,
        checkpoint: &StepLine<Op, Out, Snap>,
    ) -> io::Result<()> {
        self.flush()?;
        let closed = segment_path(&self.path, self.segment);
        // A closed segment is never replaced: a numbering that went wrong is an error.
        if closed.try_exists()? {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists already", closed.display()),
            ));
        }
        fs::rename(&self.path, closed)?;
        self.file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.segment += 1;
        self.written = 0;
        self.write(checkpoint)?;
        if let Some(keep) = self.rotation.and_then(|r| r.keep) {
            let closed = closed_segments(&self.path)?;
            // A file someone else moved or deleted first is no reason to stop the replica.
            for (_, old) in closed.iter().take(closed.len().saturating_sub(keep)) {
                if let Err(e) = fs::remove_file(old) {
                    tracing::warn!(file = %old.display(), error = %e,
                                   "cannot delete an old step-log segment");
                }
            }
        }
        Ok(())
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
        if written.is_ok() {
            self.written += self.pending.len() as u64;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    type Line = StepLine<u64, u64, u64>;

    /// A tick's line, tagged with its clock: rotation looks at sizes, not at what lines say.
    fn line(tag: u64) -> Line {
        serde_json::from_value(serde_json::json!({"step": {
            "node": 0,
            "input": {"Tick": {"now_ms": tag}},
            "effects": [],
            "state": serde_json::to_value(StepState::<u64, u64>::of::<u64>(
                &paxos_protocol::multi::Replica::new(
                    paxos_protocol::multi::Config {
                        id: 0,
                        replicas: vec![0, 1, 2],
                        initial_leader: 0,
                        window: 4,
                        slot_limit: None,
                        timing: Default::default(),
                        catch_up_entries_max: paxos_protocol::multi::CATCH_UP_ENTRIES_MAX,
                    },
                    paxos_protocol::multi::Recorder::<u64>::default(),
                )
                .expect("a valid configuration")
                .0
                .state()
                .clone(),
                &[],
                None,
            ))
            .expect("serializable"),
        }}))
        .expect("a step line")
    }

    fn first_line(path: &Path) -> String {
        let text = fs::read_to_string(path).expect("read");
        text.lines().next().unwrap_or_default().to_string()
    }

    #[test]
    fn segments_are_numbered_before_the_suffix_and_sort_before_the_file_written() {
        let path = Path::new("/logs/node-3.steps.jsonl");
        assert_eq!(
            segment_path(path, 7),
            Path::new("/logs/node-3.000007.steps.jsonl")
        );
        assert_eq!(
            segment_path(Path::new("/logs/steps"), 12),
            Path::new("/logs/steps.000012")
        );
        let mut names = vec![
            path.to_path_buf(),
            segment_path(path, 10),
            segment_path(path, 2),
        ];
        names.sort();
        assert_eq!(
            names,
            [
                segment_path(path, 2),
                segment_path(path, 10),
                path.to_path_buf()
            ]
        );
    }

    /// A file closes once a flush leaves it at its size; the next begins with the
    /// checkpoint given, the oldest closed ones beyond those kept are deleted, and a process
    /// that opens the log again goes on numbering after the highest closed segment.
    #[test]
    fn a_log_rotates_at_its_size_keeps_what_it_is_told_and_numbers_on_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node-0.steps.jsonl");
        let one = serde_json::to_vec(&line(1)).expect("json").len() as u64 + 1;
        let rotation = Rotation {
            segment_bytes: 3 * one,
            keep: Some(2),
        };
        let mut log = StepLog::open_rotating(&path, Some(rotation)).expect("open");
        let mut segments = 0;
        for tag in 0..20 {
            log.write(&line(tag)).expect("write");
            if log.rotation_due() {
                assert_eq!(log.next_segment(), segments + 1);
                log.rotate(&line(1_000 + log.next_segment()))
                    .expect("rotate");
                segments += 1;
            }
        }
        // The first file fills at its 3rd line; a later one at the 2nd after its checkpoint
        // (a checkpoint counts towards its file's size, and is a few bytes longer).
        assert_eq!(segments, 9);
        // Another replica's segments, and names that only look alike, are not this log's.
        for decoy in [
            "node-10.000001.steps.jsonl",
            "node-0.12.steps.jsonl",
            "node-0.000001.steps.jsonl.tmp",
        ] {
            fs::write(dir.path().join(decoy), "").expect("write a decoy");
        }
        let closed = closed_segments(&path).expect("list");
        let numbers: Vec<u64> = closed.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [7, 8], "two kept, the oldest deleted");
        assert!(first_line(&path).contains(r#""now_ms":1009"#));
        assert!(first_line(&closed[1].1).contains(r#""now_ms":1008"#));
        drop(log);
        let mut again = StepLog::open_rotating(&path, Some(rotation)).expect("reopen");
        assert_eq!(again.next_segment(), 10);
        // Without rotation a log never closes its file.
        let mut plain = StepLog::open(&dir.path().join("plain.steps.jsonl")).expect("open");
        for tag in 0..10 {
            plain.write(&line(tag)).expect("write");
            assert!(!plain.rotation_due());
        }
        again.write(&line(99)).expect("write after a restart");
    }
}
