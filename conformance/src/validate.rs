//! Trace validation (implementation → model): the step logs of a real run (`paxos-node serve
//! --step-log`, format `paxos-steps/8`) checked transition by transition against the
//! Multi-Paxos model (`paxos-conform validate LOG...`).
//!
//! ```text
//!   node-0.steps.jsonl ─┐   per replica, in log order:
//!   node-1.steps.jsonl ─┼─►  model state ──(the logged input as a model action)──► model actor
//!   node-2.steps.jsonl ─┘        │                                                   │
//!                                └── must equal abstraction(logged state after) ◄────┘
//!                                    and the logged sends, records and timer must be the model's
//! ```
//!
//! What is checked, per replica:
//! - every logged step is a transition the model's replica actor takes from the replica's
//!   model state on the same input (a delivery, the election timer, a client request), with
//!   the same next state, the same messages (a multiset), the same durable state and the same
//!   election timer (the comparisons of [`crate::multi`]);
//! - a tick is the model's timers that were due at it: the election timer (M1) at a replica
//!   that does not lead, the catch-up timer (K5) at any; a leader's heartbeat and
//!   retransmissions (H1, R1) and a heartbeat's receipt (H2) change nothing the model sees,
//!   and what they send is checked against their rules;
//! - a snapshot (K1 taken, K4 installed, or carried by a message, K2, K6, K7) is the model's
//!   `(compaction point, executed commands)`: the commands are those the run's replicas
//!   executed below its applied prefix, and the key-value state and client table it holds
//!   must be what replaying them gives;
//! - every restart recovers a snapshot the replica took or installed (or none) and exactly the
//!   records it persisted after it (a prefix, when the crash lost records still queued for
//!   the disk; an older snapshot, when the crash came before the newest was durable), and
//!   then does what the model's recovery does from that durable state (M11);
//! - steps whose records a crash lost had no observable effect: no replica received a message
//!   only such a step sent (persist before you speak, R1).
//!
//! - a checkpoint (the first line of a rotated log's next file) is the state the lines before
//!   it rebuilt, with the durable state and snapshot the replica has.
//!
//! And across replicas: every message a replica received was sent to it by its sender.
//!
//! Rotated logs whose first files were deleted: a replica whose lines begin at a checkpoint is
//! validated from there, set up as recovery would set it up; when every replica's lines begin
//! with a snapshot, the commands below the lowest stand in every state machine as one command
//! per client, its last (`Domain::fillers`); a message its sender sent before its first line
//! is taken as sent when it arrives within `SENT_BEFORE_WINDOW_MS` of that line
//! (specs/trace-format.md, "Rotation").
//!
//! The model's replica runs in its [`Unbounded`] space (specs/proposals/unbounded-validation.md):
//! the same transition code the exhaustive check explores in `Small`, on persistent maps and
//! `u64` slots, command ids, read numbers and rounds, so a run of any length, with any number
//! of clients, slots, elections and reads, is validated. The model's slot bound is the run's
//! own `[limits] slot_limit` (none by default).
//!
//! Commands: real clients map to model clients in ascending id order, a client's `seq` is the
//! model's, so the command is `MultiConfig::command_of(client, seq)`, and the key-value
//! operation is dropped (the model's commands carry none; the state machine is not modelled).
//!
//! Time (L1–L6): a model tick is the core's millisecond. Before every step the model's clock
//! is ticked (its `Clock` timer, one millisecond at a time) to the logged state's clock, since
//! the node task does not log a tick that only moves the clock. Each process's clock starts at
//! 0 and the model's runs on across restarts, so a process's readings are the model's less an
//! offset fixed at its start (`model_reading`).
//!
//! Reads (Q1–Q5): a read the core received is the model's read `k`, the lowest number no
//! other read waiting at that replica holds. A read's answer must be what the key-value state
//! after the commands executed below the replica's applied slot gives for its operation, and
//! it stands for the model's answer with that prefix.

use std::borrow::Cow;
use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use paxos_model::multi::{
    self, ExecutedLog, MultiActor, MultiConfig, MultiMsg, MultiState, MultiTimer, ReplicaState,
    ReplicaStorage, Ticks, Unbounded,
};
use paxos_protocol::ballot::Ballot;
use paxos_protocol::multi::{
    AppliedState, ClientEntry, ClientId, ClientTable, Command, Config, Durable, Effect, Entry,
    Input, KvOp, KvOutput, KvStore, Lease, Message, Millis, Phase, ReadId,
    ReadIndex as ImplReadIndex, Record, Recorder, Replica, ReplicaState as ImplState, Slot,
    SlotMap, SnapshotOf, StateMachine, Timers, WaitingRead,
};
use paxos_protocol::step_log::{
    self, MergedBase, StepLine, STEP_LOG_FORMAT, STEP_LOG_FORMATS_READ,
};
use serde::Serialize;
use stateright::actor::{Actor, Command as OutCommand, Id, Out};

mod rejection_trace;

use crate::multi::{
    canonical, client_table, counted_recovery_view, fold_durable, msg_to_model,
    msg_to_model_knowing, outcome_after_fold, snapshot_to_model, touched_slots, votes_to_impl_in,
    ExecutedView, ImplEffect, ImplInput, ImplMessage, ImplReplica, ImplSnapshot, LogVectors, Near,
    Op, StepOutcome, VoteBallots, MAX_RUN, READ_OP,
};

/// The `format` of [`Report`].
pub const REPORT_FORMAT: &str = "paxos-validation-report/1";
/// At most this many rejections are kept in a report (all are counted).
pub const REJECTIONS_KEPT: usize = 20;

type KvSnapshot = SnapshotOf<KvStore>;
type KvLine = StepLine<KvOp, KvOutput, KvSnapshot>;
type KvMessage = Message<KvOp, KvSnapshot>;
type KvInput = Input<KvOp, KvSnapshot>;
type KvEffect = Effect<KvOp, KvOutput, KvSnapshot>;

type KvState = ImplState<KvOp, KvOutput>;
/// A vote in a step log, and in the conformance core's vocabulary.
type KvVote = (paxos_protocol::Ballot, Entry<KvOp>);
type ImplVote = (paxos_protocol::Ballot, Entry<Op>);
/// A replica's votes and its chosen entries.
type ImplLog = (
    SlotMap<(paxos_protocol::Ballot, Entry<Op>)>,
    SlotMap<Entry<Op>>,
);

/// One line of a step log, with where it came from.
#[derive(Clone, Debug)]
pub struct Logged {
    /// Shared by every line of the file: one allocation per file, not per line.
    pub file: Arc<Path>,
    /// 1-based.
    pub line: usize,
    pub entry: KvLine,
    /// How many start lines of this replica come before this line, this one included: read
    /// ids are the process's own (reads live in memory), so a read is named by its replica,
    /// its process and its id.
    pub incarnation: usize,
}

impl Logged {
    fn node(&self) -> u32 {
        match &self.entry {
            StepLine::Start { node, .. }
            | StepLine::Step { node, .. }
            | StepLine::Checkpoint { node, .. } => *node,
        }
    }

    fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    fn process(&self) -> Process {
        Process {
            node: self.node(),
            incarnation: self.incarnation,
        }
    }
}

/// One process of one replica: where a read id means one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Process {
    node: u32,
    incarnation: usize,
}

/// Reads step logs; lines are kept in file order. A malformed line is an error that names it.
/// A step line holds what the step changed ([`paxos_protocol::step_log::StepState`]): the
/// whole replica state after it is rebuilt during validation, never kept per line.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Logged>, String> {
    // Files are read and parsed on threads of their own (a run's logs are one per replica),
    // then put in the order given.
    let order: Vec<usize> = (0..paths.len()).collect();
    let parsed = on_threads(&order, |k| load_file(&paths[k]));
    let mut files = Vec::with_capacity(parsed.len());
    for file in parsed {
        files.push(file.ok_or("a step log was not read")??);
    }
    // Sized once: a long run's lines are hundreds of megabytes, and a vector grown by
    // doubling copies them again into pages touched for the first time.
    let mut lines = Vec::with_capacity(files.iter().map(Vec::len).sum());
    for file in files {
        lines.extend(file);
    }
    // A replica's starts are counted across its files, in the order given.
    let mut starts: BTreeMap<u32, usize> = BTreeMap::new();
    for logged in &mut lines {
        let incarnation = starts.entry(logged.node()).or_default();
        if matches!(logged.entry, StepLine::Start { .. }) {
            *incarnation += 1;
        }
        logged.incarnation = *incarnation;
    }
    Ok(lines)
}

/// The lines of one step log, in order (their `incarnation` is set by [`load`]). Read a line
/// at a time: holding a long run's whole file as text besides its parsed lines cost as much
/// time in page faults as the parsing did.
fn load_file(path: &Path) -> Result<Vec<Logged>, String> {
    let cannot_read = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let not_a_line = |number: usize, e: &dyn fmt::Display| {
        format!(
            "{}:{number}: not a {STEP_LOG_FORMAT} line: {e}",
            path.display()
        )
    };
    let mut reader = BufReader::with_capacity(1 << 20, fs::File::open(path).map_err(cannot_read)?);
    let mut lines = Vec::new();
    let file: Arc<Path> = Arc::from(path);
    let mut raw = String::new();
    // A line that did not parse, waiting for the line after it to tell whether it is the torn
    // end of a killed process's log: the last line of its file, or followed by the next
    // process's start line. The node performs a batch's effects only once its lines are
    // written, so that step was never performed (as a WAL's torn tail), and its process's
    // next start begins a new line (`StepLog::open`).
    let mut torn: Option<(usize, serde_json::Error)> = None;
    let mut number = 0;
    loop {
        raw.clear();
        if reader.read_line(&mut raw).map_err(cannot_read)? == 0 {
            break;
        }
        number += 1;
        if raw.trim().is_empty() {
            continue;
        }
        if let Some((at, e)) = torn.take() {
            if !raw.trim_start().starts_with(r#"{"start":"#) {
                return Err(not_a_line(at, &e));
            }
        }
        let entry: KvLine = match serde_json::from_str::<KvLine>(&raw) {
            Ok(entry) => entry.expanded().map_err(|e| not_a_line(number, &e))?,
            Err(e) => {
                torn = Some((number, e));
                continue;
            }
        };
        if let StepLine::Start { format, .. } | StepLine::Checkpoint { format, .. } = &entry {
            if !STEP_LOG_FORMATS_READ.contains(&format.as_str()) {
                return Err(format!(
                    "{}:{number}: format {format:?}, expected one of {STEP_LOG_FORMATS_READ:?}",
                    path.display(),
                ));
            }
        }
        lines.push(Logged {
            file: Arc::clone(&file),
            line: number,
            entry,
            incarnation: 0,
        });
    }
    Ok(lines)
}

/// `work(k)` for every `k` in `order` (a permutation of `0..order.len()`), on a thread per
/// core, jobs taken in that order; the results indexed by `k` (`None` only if `order` is not
/// a permutation).
fn on_threads<T: Send>(order: &[usize], work: impl Fn(usize) -> T + Sync) -> Vec<Option<T>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(order.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<T>> = order.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(&k) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        done.push((k, work(k)));
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(done) => {
                    for (k, result) in done {
                        if let Some(slot) = results.get_mut(k) {
                            *slot = Some(result);
                        }
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results
}

/// Each replica's whole state after its latest line, which its next step line changes.
#[derive(Default)]
struct States(BTreeMap<u32, KvState>);

impl States {
    /// The replica state after `logged`: a start line's own, a step line's rebuilt from the
    /// replica's previous line ([`paxos_protocol::step_log::StepState::after`]).
    fn after(&mut self, logged: &Logged) -> Result<&KvState, String> {
        let node = logged.node();
        let state = match &logged.entry {
            StepLine::Start { state, .. } | StepLine::Checkpoint { state, .. } => (**state).clone(),
            StepLine::Step { state, effects, .. } => {
                let before = self.0.remove(&node).ok_or_else(|| {
                    format!(
                        "{}: a step of n{node} before its first start line: the log is \
                         incomplete",
                        logged.place()
                    )
                })?;
                state.clone().after(before, effects).map_err(|e| {
                    format!(
                        "{}: the step's records do not fold onto the replica's votes: {e:?}",
                        logged.place()
                    )
                })?
            }
        };
        Ok(self.0.entry(node).insert_entry(state).into_mut())
    }
}

// ------------------------------------------------------------------------------ the report

/// A logged transition the model does not allow.
#[derive(Clone, Debug, Serialize)]
pub struct Rejection {
    pub node: u32,
    /// `file:line` of the step.
    pub at: String,
    /// The logged event, in the model's words where it has them.
    pub event: String,
    pub reason: String,
    /// The replica's model state before the step.
    pub model_before: String,
    /// What the model does (`None` when the model has no such step).
    pub expected: Option<String>,
    /// What the log shows.
    pub actual: Option<String>,
    /// The trace file written for it (`validate --trace-dir`): the run's state around the
    /// step, for `paxos-model explore --trace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "n{} at {}: {}", self.node, self.at, self.event)?;
        writeln!(f, "  {}", self.reason)?;
        writeln!(f, "  model state before: {}", self.model_before)?;
        if let Some(expected) = &self.expected {
            writeln!(f, "  model:  {expected}")?;
        }
        if let Some(actual) = &self.actual {
            writeln!(f, "  logged: {actual}")?;
        }
        if let Some(trace) = &self.trace {
            writeln!(f, "  trace:  {trace} (paxos-model explore --trace {trace})")?;
        }
        Ok(())
    }
}

/// What `paxos-conform validate` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: String,
    pub files: Vec<String>,
    /// The model configuration the run was checked against (derived from the logs).
    pub model_config: MultiConfig,
    pub replicas: usize,
    /// Process starts (the first start and every restart) of all replicas.
    pub starts: usize,
    /// Transitions validated: steps and starts.
    pub transitions: usize,
    /// Transitions by kind, as the core's trace events name their inputs (`accept`, `request`,
    /// `tick`, `catch_up`, ...), and `recover` for restarts.
    pub by_kind: BTreeMap<String, usize>,
    /// Peer messages received (each checked to have been sent).
    pub messages_received: usize,
    /// Steps whose input stood for several model steps: a run of slots (`Accept`, `Accepted`,
    /// `Decide` for more than one) or requests that arrived together.
    pub runs: usize,
    /// Records persisted that a crash lost before they reached the disk.
    pub records_lost_in_crashes: usize,
    /// Checkpoint lines (a rotated log's later segments begin with one), each checked to be
    /// the state the lines before it rebuilt.
    pub checkpoints: usize,
    /// Replicas whose lines begin at a checkpoint (their earlier files deleted), validated
    /// from there.
    pub windows: usize,
    /// Messages received that their sender's lines do not show sent, taken as sent before
    /// the sender's lines begin (a checkpoint: its earlier files deleted).
    pub received_before_windows: usize,
    /// Ranges of slots whose commands no line shows (below where the replicas' lines begin,
    /// or ended by a snapshot a replica installed there), each standing in the state machines
    /// as its clients' last commands.
    pub unknown_ranges: usize,
    /// Step lines of a replica whose lines begin at a checkpoint it could not be validated
    /// from (rejected), skipped up to its next checkpoint.
    pub skipped_before_windows: usize,
    pub rejections_total: usize,
    /// The first [`REJECTIONS_KEPT`].
    pub rejections: Vec<Rejection>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.rejections_total == 0
    }

    pub fn render(&self) -> String {
        let mut out = String::from("== paxos-conform validate ==\n");
        out += &format!("logs:         {}\n", self.files.join(" "));
        let c = &self.model_config;
        let slots = match c.slots {
            usize::MAX => "unbounded".to_string(),
            limit => format!("at most {limit}"),
        };
        out += &format!(
            "model:        {} replicas, {} clients, {} commands, slots {slots}, window {}\n",
            c.replicas, c.clients, c.commands, c.window
        );
        out += &format!(
            "transitions:  {} validated ({} starts), {} peer messages received and found sent\n",
            self.transitions, self.starts, self.messages_received
        );
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out += &format!("by kind:      {}\n", kinds.join(", "));
        out += &format!(
            "runs:         {} steps on a run of slots or of requests, each checked as the model's \
             steps on its parts\n",
            self.runs
        );
        out += &format!(
            "crashes:      {} persisted records lost before the disk had them\n",
            self.records_lost_in_crashes
        );
        if self.windows > 0 || self.skipped_before_windows > 0 {
            out += &format!(
                "windows:      {} replica(s) validated from a checkpoint (earlier files \
                 deleted); {} message(s) received taken as sent before their sender's first \
                 line; {} range(s) of slots whose commands no line shows; {} step(s) skipped \
                 after a checkpoint validation could not start from\n",
                self.windows,
                self.received_before_windows,
                self.unknown_ranges,
                self.skipped_before_windows
            );
        }
        if self.checkpoints > 0 {
            out += &format!(
                "checkpoints:  {} (rotated logs), each the state the lines before it rebuilt\n",
                self.checkpoints
            );
        }
        if self.passed() {
            out += "verdict:      every transition is one the model allows (0 rejections)\n";
        } else {
            out += &format!(
                "verdict:      {} REJECTED transition(s); the first:\n",
                self.rejections_total
            );
            for rejection in &self.rejections {
                out += &rejection.to_string();
            }
        }
        out
    }
}

// ------------------------------------------------------------------------------ the domain

/// Maps the run's key-value commands into the model's command ids.
struct Domain {
    cfg: MultiConfig,
    clients: BTreeMap<ClientId, usize>,
    /// The command each slot executed, from every replica's `Executed` effects (the first
    /// report of a slot; a replica that executed another command there is told apart when its
    /// snapshot is checked): what a snapshot below a slot must hold.
    executed: BTreeMap<Slot, Command<KvOp>>,
    /// The state after the executed commands below a slot, every [`CHECKPOINT_EVERY`]
    /// commands, ascending: a read's answer or a snapshot is checked against the state below
    /// its slot, replayed from the checkpoint under it rather than from the beginning.
    checkpoints: Vec<Checkpoint>,
    /// Every read a replica's core received (Q1), as the model's read `k`: the lowest `k`
    /// that no other read waiting at that replica holds when it arrives (the model's replica
    /// knows a read only by its place among the reads waiting there).
    reads: BTreeMap<(Process, ReadId), ModelRead>,
    /// The conformance core's snapshot at each applied prefix a logged snapshot named, built
    /// once, with the logged snapshot it was checked from: a snapshot holds every command
    /// below it, and a catch-up sends the same one hundreds of times. Another logged snapshot
    /// at that prefix with the same content is the same; one with other content is checked
    /// (and refused) by replaying the run again.
    snapshots: std::sync::Mutex<BTreeMap<Slot, (KvSnapshot, ImplSnapshot)>>,
    /// Those snapshots as the model's, abstracted once each, for the `Snapshot` messages the
    /// replicas receive ([`msg_to_model_knowing`]).
    model_snapshots: std::sync::Mutex<BTreeMap<Slot, (ImplSnapshot, ExecutedLog)>>,
    /// Where replicas' lines begin mid-run (their earlier files deleted), the commands no
    /// line shows, by the slot they end at: below the lowest snapshot every replica's lines
    /// begin at, and below each snapshot that ends slots no replica was seen executing.
    /// `(client, seq)` of each client's last command there, in client order, stands for them
    /// in every replica's state machine (specs/proposals/step-log-deltas.md, "One
    /// representation of the state machine"). Empty for a run whose lines begin at slot 0.
    fillers: BTreeMap<Slot, Vec<(ClientId, u64)>>,
}

/// The highest ballot a message names (`None`: it names none).
fn highest_ballot(msg: &KvMessage) -> Option<Ballot> {
    match msg {
        Message::Prepare { ballot, .. }
        | Message::Promise { ballot, .. }
        | Message::Accept { ballot, .. }
        | Message::Accepted { ballot, .. }
        | Message::Heartbeat { ballot }
        | Message::Confirm { ballot, .. }
        | Message::Confirmed { ballot, .. } => Some(*ballot),
        Message::Nack { ballot, promised } => Some((*ballot).max(*promised)),
        Message::Decide { .. }
        | Message::Status { .. }
        | Message::CatchUp { .. }
        | Message::Snapshot { .. } => None,
    }
}

/// How long after a sender's lines begin at a checkpoint a message it sent before may still
/// be received (by the receiver's host clock, read through its own checkpoint): messages a
/// partition or a proxy held, and retransmission queues, deliver within seconds.
const SENT_BEFORE_WINDOW_MS: u64 = 60_000;

/// How many executed commands apart [`Domain::checkpoints`] are.
const CHECKPOINT_EVERY: usize = 64;

/// The key-value store and client table after the `count` commands executed below slot
/// `below`.
#[derive(Clone)]
struct Checkpoint {
    below: Slot,
    count: usize,
    kv: KvStore,
    table: ClientTable<KvOutput>,
}

impl Checkpoint {
    fn empty() -> Self {
        Checkpoint {
            below: 0,
            count: 0,
            kv: KvStore::new(),
            table: ClientTable::default(),
        }
    }

    /// Executes `c`, in slot `slot` (above every slot executed so far).
    fn execute(&mut self, slot: Slot, c: &Command<KvOp>) {
        let output = self.kv.apply(c);
        let row = ClientEntry {
            last_seq: c.seq,
            output,
        };
        self.table.insert(c.client, row);
        self.count += 1;
        self.below = slot + 1;
    }
}

/// What the lines tell of the state machine's history: where every replica's lines begin
/// (the snapshot of the replica whose first line holds the lowest, when every replica's first
/// line holds one; `None` when some replica's lines begin at slot 0), the commands chosen
/// below `applied` in every `start` and `checkpoint` line (executed there unless retries,
/// which [`History::of`] tells apart), every snapshot the lines hold by its applied prefix,
/// and the slots some replica is known to have executed in order (its chosen entries at a
/// `start` or `checkpoint` line, and every step that moved its applied prefix without
/// installing a snapshot), as ascending disjoint ranges.
struct Lines<'a> {
    base: Option<&'a KvSnapshot>,
    /// The command each slot executed, as the first `Executed` effect of it reports.
    reported: BTreeMap<Slot, &'a Command<KvOp>>,
    chosen: BTreeMap<Slot, &'a Command<KvOp>>,
    snapshots: BTreeMap<Slot, &'a KvSnapshot>,
    covered: Vec<(Slot, Slot)>,
    /// Whether some replica's lines begin at a checkpoint (its earlier files deleted).
    windows: bool,
}

impl<'a> Lines<'a> {
    fn of(lines: &'a [Logged]) -> Self {
        let mut first: BTreeMap<u32, &Logged> = BTreeMap::new();
        let mut applied: BTreeMap<u32, Slot> = BTreeMap::new();
        let mut chosen = BTreeMap::new();
        let mut reported = BTreeMap::new();
        let mut snapshots = BTreeMap::new();
        let mut ranges = Vec::new();
        for logged in lines {
            first.entry(logged.node()).or_insert(logged);
            let before = applied.get(&logged.node()).copied();
            if let StepLine::Start { effects, .. } | StepLine::Step { effects, .. } = &logged.entry
            {
                for effect in effects {
                    if let Effect::Executed { slot, command, .. } = effect {
                        reported.entry(*slot).or_insert(command);
                    }
                }
            }
            match &logged.entry {
                StepLine::Start {
                    snapshot, state, ..
                }
                | StepLine::Checkpoint {
                    snapshot, state, ..
                } => {
                    if let Some(s) = snapshot {
                        snapshots.entry(s.applied).or_insert(s);
                    }
                    for (slot, entry) in state.chosen.range(..state.applied) {
                        if let Entry::Command(c) = entry {
                            chosen.entry(slot).or_insert(c);
                        }
                    }
                    ranges.push((state.compacted, state.applied));
                    applied.insert(logged.node(), state.applied);
                }
                StepLine::Step {
                    input,
                    effects,
                    state,
                    ..
                } => {
                    let mut installed = false;
                    for effect in effects {
                        if let Effect::Snapshot(s) = effect {
                            snapshots.entry(s.applied).or_insert(s);
                            installed |= !matches!(input, Input::Compact);
                        }
                    }
                    if let Input::Message {
                        msg: Message::Snapshot { state: s },
                        ..
                    } = input
                    {
                        snapshots.entry(s.applied).or_insert(s);
                    }
                    if let Some(before) = before.filter(|b| *b < state.applied && !installed) {
                        ranges.push((before, state.applied));
                    }
                    applied.insert(logged.node(), state.applied);
                }
            }
        }
        let mut base: Option<&KvSnapshot> = None;
        let mut from_zero = false;
        let mut windows = false;
        for logged in first.values() {
            let snapshot = match &logged.entry {
                StepLine::Start { snapshot, .. } => snapshot.as_ref(),
                StepLine::Checkpoint { snapshot, .. } => {
                    windows = true;
                    snapshot.as_ref()
                }
                StepLine::Step { .. } => continue,
            };
            match snapshot {
                Some(s) if base.is_none_or(|b| s.applied < b.applied) => base = Some(s),
                Some(_) => {}
                None => from_zero = true,
            }
        }
        ranges.sort_unstable();
        let mut covered: Vec<(Slot, Slot)> = Vec::new();
        for (from, to) in ranges.into_iter().filter(|(from, to)| from < to) {
            match covered.last_mut() {
                Some(last) if from <= last.1 => last.1 = last.1.max(to),
                _ => covered.push((from, to)),
            }
        }
        Lines {
            base: base.filter(|_| !from_zero),
            reported,
            chosen,
            snapshots,
            covered,
            windows,
        }
    }

    /// Whether some replica executed every slot of `from..to`.
    fn covers(&self, from: Slot, to: Slot) -> bool {
        from >= to
            || self
                .covered
                .iter()
                .any(|(start, end)| *start <= from && to <= *end)
    }
}

/// The run's state machine history as validation represents it ([`Domain::executed`],
/// [`Domain::fillers`], [`Domain::checkpoints`]).
struct History {
    executed: BTreeMap<Slot, Command<KvOp>>,
    fillers: BTreeMap<Slot, Vec<(ClientId, u64)>>,
    checkpoints: Vec<Checkpoint>,
}

impl History {
    /// The command each slot executed, from the base on: every replica's `Executed`
    /// reports, and, for a slot none reports, the command chosen there in a `start` or
    /// `checkpoint` line, unless its client's later command had run before it (a retry the
    /// client table skips). Where replicas' lines begin mid-run, commands no line shows stand
    /// in as fillers: at the base, and at each snapshot that ends slots no replica was seen
    /// executing (a replica that installed it, and none that executed them, in the lines
    /// kept), each client's last command, the snapshot's state taken as it holds it.
    fn of(lines: &Lines<'_>) -> History {
        let mut fillers = BTreeMap::new();
        let mut at = match lines.base {
            Some(base) => {
                let filler = last_commands(&base.clients, &ClientTable::default());
                let state = anchored(base, filler.len());
                fillers.insert(base.applied, filler);
                state
            }
            None => Checkpoint::empty(),
        };
        let mut checkpoints = vec![at.clone()];
        let mut executed = BTreeMap::new();
        let mut anchors = lines
            .snapshots
            .range(at.below + 1..)
            .filter(|_| lines.windows)
            .peekable();
        let mut anchor_from = at.below;
        let slots: BTreeSet<Slot> = lines
            .reported
            .keys()
            .chain(lines.chosen.keys())
            .copied()
            .filter(|slot| *slot >= at.below)
            .collect();
        let mut slots = slots.into_iter().peekable();
        loop {
            // A snapshot below the next slot comes first.
            let next_slot = slots.peek().copied();
            if let Some((&y, snapshot)) =
                anchors.next_if(|(y, _)| next_slot.is_none_or(|s| **y <= s))
            {
                if !lines.covers(anchor_from, y) {
                    let filler = last_commands(&snapshot.clients, &at.table);
                    at = anchored(snapshot, at.count + filler.len());
                    fillers.insert(y, filler);
                    checkpoints.push(at.clone());
                }
                anchor_from = y;
                continue;
            }
            let Some(slot) = slots.next() else { break };
            let command = match lines.reported.get(&slot) {
                Some(c) => *c,
                None => match lines.chosen.get(&slot) {
                    Some(c)
                        if at
                            .table
                            .get(&c.client)
                            .is_none_or(|row| c.seq > row.last_seq) =>
                    {
                        *c
                    }
                    _ => continue,
                },
            };
            executed.insert(slot, command.clone());
            at.execute(slot, command);
            if at.count.is_multiple_of(CHECKPOINT_EVERY) {
                checkpoints.push(at.clone());
            }
        }
        History {
            executed,
            fillers,
            checkpoints,
        }
    }
}

/// The last command of each client of `table` whose row is newer than in `before`, as
/// `(client, seq)` in client order: what stands in for commands no line shows.
fn last_commands(
    table: &ClientTable<KvOutput>,
    before: &ClientTable<KvOutput>,
) -> Vec<(ClientId, u64)> {
    let mut last: Vec<(ClientId, u64)> = table
        .iter()
        .filter(|(client, row)| before.get(client).is_none_or(|b| b.last_seq < row.last_seq))
        .map(|(client, row)| (*client, row.last_seq))
        .collect();
    last.sort_unstable();
    last
}

/// The state a snapshot holds, as a [`Checkpoint`] after `count` commands.
fn anchored(snapshot: &KvSnapshot, count: usize) -> Checkpoint {
    let mut kv = KvStore::new();
    kv.restore(snapshot.state_machine.clone());
    Checkpoint {
        below: snapshot.applied,
        count,
        kv,
        table: snapshot.clients.clone(),
    }
}

/// A read as the model's: its number, and the operation it asked for.
struct ModelRead {
    k: u64,
    op: KvOp,
}

/// Every read the run's cores received, as the model's reads (see [`Domain::reads`]).
fn reads_of(lines: &[Logged]) -> BTreeMap<(Process, ReadId), ModelRead> {
    let mut reads = BTreeMap::new();
    // Per replica: the reads waiting in its current process, and their model numbers.
    let mut waiting: BTreeMap<u32, BTreeMap<ReadId, u64>> = BTreeMap::new();
    for logged in lines {
        let held = waiting.entry(logged.node()).or_default();
        let (input, state) = match &logged.entry {
            StepLine::Step { input, state, .. } => (input, state),
            // A checkpoint is the same process, its waiting reads still waiting; one that
            // begins a replica's lines (its earlier files deleted) names them first.
            StepLine::Checkpoint { state, .. } => {
                for read in &state.reads.waiting {
                    if let btree_map::Entry::Vacant(entry) =
                        reads.entry((logged.process(), read.id))
                    {
                        let k = lowest_free(held);
                        held.insert(read.id, k);
                        entry.insert(ModelRead {
                            k,
                            op: read.op.clone(),
                        });
                    }
                }
                continue;
            }
            StepLine::Start { .. } => {
                held.clear();
                continue;
            }
        };
        if let Input::Read { id, op } = input {
            if let btree_map::Entry::Vacant(entry) = reads.entry((logged.process(), *id)) {
                let k = lowest_free(held);
                held.insert(*id, k);
                entry.insert(ModelRead { k, op: op.clone() });
            }
        }
        held.retain(|id, _| state.reads.waiting.iter().any(|w| w.id == *id));
    }
    reads
}

/// The lowest model read number no read in `held` has.
fn lowest_free(held: &BTreeMap<ReadId, u64>) -> u64 {
    let taken: BTreeSet<u64> = held.values().copied().collect();
    (1..).find(|k| !taken.contains(k)).unwrap_or(u64::MAX)
}

impl Domain {
    /// The model configuration a run fits in, or the bound it exceeds.
    fn of(lines: &[Logged]) -> Result<Domain, String> {
        let mut clients = BTreeSet::new();
        let mut nodes = BTreeSet::new();
        let mut config: Option<&Config> = None;
        let mut snapshots = false;
        let reads = reads_of(lines);
        let history_lines = Lines::of(lines);
        for logged in lines {
            nodes.insert(logged.node());
            let effects = match &logged.entry {
                StepLine::Start { effects, .. } | StepLine::Step { effects, .. } => effects,
                StepLine::Checkpoint { .. } => &Vec::new(),
            };
            snapshots |= effects.iter().any(|e| matches!(e, Effect::Snapshot(_)));
            match &logged.entry {
                StepLine::Start { config: c, .. } | StepLine::Checkpoint { config: c, .. } => {
                    if config.is_some_and(|seen| !same_cluster(seen, c)) {
                        return Err(format!(
                            "{}: replicas {:?} window {} slot limit {:?}, where an earlier start \
                             had replicas {:?} window {} slot limit {:?}: one run, one configuration",
                            logged.place(),
                            c.replicas,
                            c.window,
                            c.slot_limit,
                            config.map(|c| &c.replicas),
                            config.map_or(0, |c| c.window),
                            config.and_then(|c| c.slot_limit)
                        ));
                    }
                    config = Some(c);
                }
                StepLine::Step { input, .. } => {
                    clients.extend(requests_of(input).map(|c| c.client));
                }
            }
        }
        let config = config.ok_or("the logs hold no start line: nothing to validate")?;
        let replicas = config.replicas.len();
        let expected: Vec<u32> = (0..replicas as u32).collect();
        let mut sorted = config.replicas.clone();
        sorted.sort_unstable();
        if sorted != expected || config.initial_leader != 0 {
            return Err(format!(
                "replicas {:?} with initial leader {}: the model numbers replicas 0..{replicas} \
                 and starts with replica 0 leading",
                config.replicas, config.initial_leader
            ));
        }
        if !(2..=5).contains(&replicas) {
            return Err(format!("{replicas} replicas: the model has 2 to 5"));
        }
        if let Some(stranger) = nodes.iter().find(|n| **n as usize >= replicas) {
            return Err(format!(
                "the logs name node {stranger}, which is no replica"
            ));
        }
        // Time (L1–L6): a model tick is the core's millisecond, as in the exhaustive check,
        // and the model's margin `2D` must be the run's.
        let (leases, drift) = if config.timing.leases() {
            let (lease, margin) = (config.timing.lease_ms, config.timing.lease_margin_ms);
            let lease = Ticks::try_from(lease).map_err(|_| {
                format!(
                    "lease_ms {lease}: the model's clock counts to {}",
                    Ticks::MAX
                )
            })?;
            if margin % 2 != 0 {
                return Err(format!(
                    "lease margin {margin} ms: the model's margin is 2D, twice a clock's share, \
                     so an odd margin has no model counterpart (the service's is always even)"
                ));
            }
            (lease, Ticks::try_from(margin / 2).unwrap_or(Ticks::MAX))
        } else {
            (0, 0)
        };
        // The run's own bound on the log, if it has one: the model refuses what the core
        // refuses (M4).
        let slots = match config.slot_limit {
            None => usize::MAX,
            Some(0) => return Err("slot limit 0: a log with no slots".to_string()),
            Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        };
        let window = usize::try_from(config.window)
            .unwrap_or(usize::MAX)
            .min(slots);
        for snapshot in history_lines.snapshots.values() {
            clients.extend(snapshot.clients.keys().copied());
        }
        let clients: BTreeMap<ClientId, usize> = clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c, i))
            .collect();
        let mut domain = Domain {
            snapshots: Default::default(),
            model_snapshots: Default::default(),
            cfg: MultiConfig {
                replicas,
                clients: clients.len().max(1),
                // Set below: the highest command id the run uses.
                commands: 0,
                slots,
                window,
                max_round: u64::MAX,
                elections: u8::MAX,
                retries: 0,
                spread_clients: false,
                crashes: replicas,
                // The bounds only limit exploration; what matters here is that a run with
                // snapshots is checked by a model that has them (K2's applied prefix).
                compactions: if snapshots { 8 } else { 0 },
                catch_ups: 0,
                // The model's reader invokes reads in the exhaustive check; here only whether
                // there are any matters (Q1's fence).
                reads: if reads.is_empty() { 0 } else { u8::MAX },
                leases,
                drift,
                // Clocks run for as long as the run does.
                ticks: if leases > 0 { Ticks::MAX } else { 0 },
                lossy: true,
                duplicating: true,
                bug: None,
                catch_up_max: Some(config.catch_up_entries_max),
                ..MultiConfig::default()
            },
            clients,
            checkpoints: Vec::new(),
            executed: BTreeMap::new(),
            reads,
            fillers: BTreeMap::new(),
        };
        let history = History::of(&history_lines);
        domain.executed = history.executed;
        domain.fillers = history.fillers;
        domain.checkpoints = history.checkpoints;
        // The model's command count is the highest id the run uses.
        let mut highest = 1;
        for (client, seq) in domain.fillers.values().flatten() {
            highest = highest.max(domain.command_id(*client, *seq)?.op);
        }
        for logged in lines {
            if let StepLine::Step { input, .. } = &logged.entry {
                for c in requests_of(input) {
                    highest = highest.max(domain.command(c)?.op);
                }
            }
        }
        domain.cfg.commands = usize::try_from(highest).unwrap_or(usize::MAX);
        Ok(domain)
    }

    fn command(&self, c: &Command<KvOp>) -> Result<Command<Op>, String> {
        self.command_id(c.client, c.seq)
    }

    /// Client `client`'s command `seq` as the model's.
    fn command_id(&self, client_id: ClientId, seq: u64) -> Result<Command<Op>, String> {
        let client = *self.clients.get(&client_id).ok_or_else(|| {
            format!("{client_id:?} never sent a request, yet its command is in the log")
        })?;
        // Client `client`'s `seq`th command is the model's `(seq - 1) * clients + client + 1`
        // (`MultiConfig::command_of`).
        let clients = self.clients.len().max(1) as u64;
        let cmd = seq
            .checked_sub(1)
            .and_then(|s| s.checked_mul(clients))
            .and_then(|k| k.checked_add(client as u64 + 1))
            .filter(|&k| k != <u64 as multi::Number>::FABRICATED)
            .ok_or_else(|| {
                format!("{client_id:?} seq {seq}: no model command (sequence numbers count from 1)")
            })?;
        Ok(Command {
            client: ClientId(client as u64),
            seq,
            op: cmd,
        })
    }

    fn entry(&self, e: &Entry<KvOp>) -> Result<Entry<Op>, String> {
        e.try_map_command(|c| self.command(c))
    }

    fn votes(&self, map: &SlotMap<KvVote>) -> Result<SlotMap<ImplVote>, String> {
        map.iter()
            .map(|(slot, (b, e))| Ok((slot, (*b, self.entry(e)?))))
            .collect()
    }

    /// A phase-1 candidate's `merged` votes, converted: the previous line's conversion moved
    /// by the changes the line itself writes (`merged_base: previous`), when the previous
    /// line of the replica was converted; a candidate steps on every tick and message, and
    /// its merged votes (every slot since its snapshot) change only on a Promise.
    fn merged_votes(
        &self,
        merged: &SlotMap<KvVote>,
        node: &mut Node,
    ) -> Result<SlotMap<ImplVote>, String> {
        let previous = node
            .merged
            .take()
            .filter(|(line, _)| line.is_some() && *line == node.previous_line);
        let converted = match (node.merged_change.take(), previous) {
            (Some((changed, removed)), Some((_, converted))) => {
                converted.patched(&self.votes(&changed)?, &removed)
            }
            _ => self.votes(merged)?,
        };
        node.merged = Some((node.line, converted.clone()));
        Ok(converted)
    }

    fn message(&self, m: &KvMessage) -> Result<ImplMessage, String> {
        m.try_map_commands(|c| self.command(c), |s| self.snapshot(s))
    }

    /// A key-value snapshot as the conformance core's: its applied prefix and the commands
    /// executed below it. It must be the state after exactly those commands: the key-value
    /// store and the client table are replayed from them and compared.
    ///
    /// A snapshot below the base (some replicas' lines begin at checkpoints, and the commands
    /// below the lowest of their snapshots are unknown) is one a replica sent before its lines
    /// begin and another received after its own began: every replica's compaction point is
    /// at or above the base from its first line on, so none sends one. Its receiver has
    /// applied past it, and K4 changes nothing for it, whatever it holds: it stands in with
    /// no commands. A core that installed it would move its applied prefix backwards, which the
    /// model's step, changing nothing, rejects.
    fn snapshot(&self, s: &KvSnapshot) -> Result<ImplSnapshot, String> {
        let base = self.checkpoints.first().map_or(0, |c| c.below);
        if s.applied < base {
            return Ok(Arc::new(AppliedState {
                applied: s.applied,
                clients: client_table(&[]),
                state_machine: Vec::new(),
            }));
        }
        let cached = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&s.applied)
            .cloned();
        if let Some((checked, built)) = &cached {
            if checked.state_machine == s.state_machine && checked.clients == s.clients {
                return Ok(built.clone());
            }
        }
        let (commands, kv, table) = self.replayed_below(s.applied);
        if kv.snapshot() != s.state_machine || table != s.clients {
            return Err(format!(
                "the snapshot at slot {} is not the state after the {} commands executed below \
                 it: {:?} with clients {:?}, where replaying them gives {:?} with clients {:?}",
                s.applied,
                commands.len(),
                s.state_machine,
                s.clients,
                kv.snapshot(),
                table
            ));
        }
        let executed = self.sequence_below(s.applied)?;
        let built = Arc::new(AppliedState {
            applied: s.applied,
            clients: client_table(&executed),
            state_machine: executed,
        });
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(s.applied, (s.clone(), built.clone()));
        Ok(built)
    }

    /// `snapshot` (one [`Domain::snapshot`] built) and its model counterpart, abstracted once.
    fn model_snapshot(
        &self,
        snapshot: &ImplSnapshot,
    ) -> Result<(ImplSnapshot, ExecutedLog), String> {
        let mut cache = self
            .model_snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = cache.get(&snapshot.applied) {
            if Arc::ptr_eq(&known.0, snapshot) {
                return Ok(known.clone());
            }
        }
        let (_, executed) = snapshot_to_model::<Unbounded>(&self.cfg, snapshot)?;
        let known = (snapshot.clone(), executed);
        cache.insert(snapshot.applied, known.clone());
        Ok(known)
    }

    /// The commands executed below `applied`, and the key-value store and client table that
    /// executing them gives.
    fn replayed_below(
        &self,
        applied: Slot,
    ) -> (Vec<&Command<KvOp>>, KvStore, ClientTable<KvOutput>) {
        let commands: Vec<&Command<KvOp>> =
            self.executed.range(..applied).map(|(_, c)| c).collect();
        let state = self.state_below(applied);
        (commands, state.kv, state.table)
    }

    /// The state machine below `applied` as the sequence of commands the model's holds: the
    /// fillers and commands executed, in slot order (a filler at a slot before its command).
    fn sequence_below(&self, applied: Slot) -> Result<Vec<Command<Op>>, String> {
        let mut sequence = Vec::new();
        let fill = |sequence: &mut Vec<Command<Op>>, filler: &[(ClientId, u64)]| {
            for (client, seq) in filler {
                sequence.push(self.command_id(*client, *seq)?);
            }
            Ok::<(), String>(())
        };
        let mut fillers = self.fillers.range(..=applied).peekable();
        for (slot, c) in self.executed.range(..applied) {
            // A filler at a slot comes before the slot's command.
            while let Some((_, filler)) = fillers.next_if(|(at, _)| **at <= *slot) {
                fill(&mut sequence, filler)?;
            }
            sequence.push(self.command(c)?);
        }
        for (_, filler) in fillers {
            fill(&mut sequence, filler)?;
        }
        Ok(sequence)
    }

    /// The state after the commands executed below `applied`.
    fn state_below(&self, applied: Slot) -> Checkpoint {
        let under = self.checkpoints.partition_point(|c| c.below <= applied);
        let mut state = under
            .checked_sub(1)
            .and_then(|i| self.checkpoints.get(i))
            .cloned()
            .unwrap_or_else(Checkpoint::empty);
        for (slot, c) in self.executed.range(state.below..applied) {
            state.execute(*slot, c);
        }
        state
    }

    /// The model's read that read `id` of `process` is.
    fn read(&self, process: Process, id: ReadId) -> Result<&ModelRead, String> {
        self.reads.get(&(process, id)).ok_or_else(|| {
            format!(
                "read {id} of n{} is answered or waiting, but its core never received it",
                process.node
            )
        })
    }

    /// A read's answer as the recorder's (how many commands were executed when it was
    /// answered), once the logged answer is checked against the key-value state: a leader
    /// answers from its applied state (Q4), which is the state after the commands executed
    /// below `applied`.
    fn read_reply(
        &self,
        process: Process,
        id: ReadId,
        output: &Option<KvOutput>,
        applied: Slot,
    ) -> Result<ImplEffect, String> {
        let read = self.read(process, id)?;
        let state = self.state_below(applied);
        let expected = state.kv.query(&read.op);
        if *output != expected {
            return Err(format!(
                "read {id} of n{} ({:?}) answered {output:?}, but the state after the {} \
                 commands executed below its applied slot {applied} answers {expected:?}",
                process.node, read.op, state.count
            ));
        }
        Ok(Effect::ReadReply {
            id: read.k,
            output: Some(state.count as u64),
        })
    }

    fn record(&self, r: &Record<KvOp>) -> Result<Record<Op>, String> {
        Ok(match r {
            Record::Round(round) => Record::Round(*round),
            Record::Promise(b) => Record::Promise(*b),
            Record::Accept {
                slot,
                ballot,
                entry,
            } => Record::Accept {
                slot: *slot,
                ballot: *ballot,
                entry: self.entry(entry)?,
            },
            Record::Chosen { slot, entry } => Record::Chosen {
                slot: *slot,
                entry: self.entry(entry)?,
            },
            Record::ChosenVotes { slot, count } => Record::ChosenVotes {
                slot: *slot,
                count: *count,
            },
        })
    }

    fn durable(&self, d: &Durable<KvOp>) -> Result<Durable<Op>, String> {
        Ok(Durable {
            round: d.round,
            promised: d.promised,
            accepted: self.votes(&d.accepted)?,
            chosen: d
                .chosen
                .iter()
                .map(|(s, e)| Ok((s, self.entry(e)?)))
                .collect::<Result<_, String>>()?,
        })
    }

    /// The effect with the state machine's output replaced by the command's position in the
    /// executed sequence, as the model-side [`Recorder`] outputs (outputs are not modelled).
    fn effect(&self, e: &KvEffect, at: Process, applied: Slot) -> Result<ImplEffect, String> {
        Ok(match e {
            Effect::Persist(r) => Effect::Persist(self.record(r)?),
            Effect::Snapshot(s) => Effect::Snapshot(self.snapshot(s)?),
            Effect::Send { to, msg } => Effect::Send {
                to: *to,
                msg: self.message(msg)?,
            },
            Effect::Executed { slot, command, .. } => Effect::Executed {
                slot: *slot,
                command: self.command(command)?,
                output: 0,
            },
            Effect::Reply {
                client,
                seq,
                output,
                ..
            } => {
                let command = self.command(&Command {
                    client: *client,
                    seq: *seq,
                    op: KvOp::Get { key: String::new() },
                })?;
                Effect::Reply {
                    client: command.client,
                    seq: *seq,
                    output: output.as_ref().map(|_| 0),
                }
            }
            Effect::ReadReply { id, output } => self.read_reply(at, *id, output, applied)?,
        })
    }

    /// The effects of a step of process `at` that left the replica applied up to `applied`.
    fn effects(
        &self,
        effects: &[KvEffect],
        at: Process,
        applied: Slot,
    ) -> Result<Vec<ImplEffect>, String> {
        effects
            .iter()
            .map(|e| self.effect(e, at, applied))
            .collect()
    }

    fn input(&self, i: &KvInput, at: Process) -> Result<ImplInput, String> {
        Ok(match i {
            Input::Message { from, msg } => Input::Message {
                from: *from,
                msg: self.message(msg)?,
            },
            Input::ClientRequest(c) => Input::ClientRequest(self.command(c)?),
            Input::ClientRequests(cs) => Input::ClientRequests(
                cs.iter()
                    .map(|c| self.command(c))
                    .collect::<Result<_, String>>()?,
            ),
            Input::Tick { now_ms } => Input::Tick { now_ms: *now_ms },
            Input::Compact => Input::Compact,
            Input::Read { id, .. } => Input::Read {
                id: self.read(at, *id)?.k,
                op: READ_OP,
            },
        })
    }

    /// The logged replica `s` of `node` as a conformance replica (whose state machine records
    /// what it executed), for [`abstraction`]. The replica holds `node.executed` and
    /// `log_before` (taken, not copied: the whole run's sequence and log) until
    /// [`Replica::into_parts`] gives them back. `touched`: the slots the step's records moved,
    /// the only ones (with those below the compaction point) where `s`'s log differs from the
    /// one `log_before` holds, converted (the step log's state is the records' fold:
    /// [`paxos_protocol::step_log::StepState::after`]).
    fn replica(
        &self,
        config: &Config,
        s: &KvState,
        node: &mut Node,
        log_before: Option<ImplLog>,
        touched: &[Slot],
    ) -> Result<ImplReplica, String> {
        let (accepted, chosen) = match log_before {
            Some((mut accepted, mut chosen)) => {
                for &slot in touched {
                    match s.accepted.get(&slot) {
                        Some((b, e)) => accepted.insert(slot, (*b, self.entry(e)?)),
                        None => accepted.remove(&slot),
                    };
                    match s.chosen.get(&slot) {
                        Some(e) => chosen.insert(slot, self.entry(e)?),
                        None => chosen.remove(&slot),
                    };
                }
                accepted.remove_below(s.compacted);
                chosen.remove_below(s.compacted);
                (accepted, chosen)
            }
            None => (
                self.votes(&s.accepted)?,
                s.chosen
                    .iter()
                    .map(|(slot, e)| Ok((slot, self.entry(e)?)))
                    .collect::<Result<_, String>>()?,
            ),
        };
        let (at, clock_offset, snapshot) = (node.process, node.clock_offset, node.snapshot.clone());
        let phase = match &s.phase {
            Phase::Follower => Phase::Follower,
            Phase::Preparing {
                promises,
                merged,
                floor,
            } => Phase::Preparing {
                promises: promises.clone(),
                merged: self.merged_votes(merged, node)?,
                floor: *floor,
            },
            Phase::Leading { next_slot, votes } => Phase::Leading {
                next_slot: *next_slot,
                votes: votes.clone(),
            },
        };
        let mut clients = ClientTable::default();
        for (client, row) in &s.clients {
            let command = self.command(&Command {
                client: *client,
                seq: row.last_seq,
                op: KvOp::Get { key: String::new() },
            })?;
            // The client's last executed command is its highest (M9): a row naming an
            // earlier one is refused here rather than when the tables are compared.
            let row = node
                .executed_view
                .clients()
                .get(&command.client)
                .filter(|last| last.last_seq == command.seq)
                .ok_or_else(|| {
                    format!(
                        "the client table's row for {client:?} (seq {}) is not its last \
                         executed command",
                        row.last_seq
                    )
                })?
                .clone();
            clients.insert(command.client, row);
        }
        let state = ImplState {
            round: s.round,
            promised: s.promised,
            accepted,
            chosen,
            phase,
            pending: s
                .pending
                .values()
                .map(|c| self.command(c).map(|c| (c.id(), c)))
                .collect::<Result<_, String>>()?,
            applied: s.applied,
            clients,
            persisted_round: s.persisted_round,
            persisted_promise: s.persisted_promise,
            compacted: s.compacted,
            // Only the clock and the lease's deadlines are compared (L1–L6); the other timers
            // are the process's own.
            timers: Timers {
                now_ms: model_reading(s.timers.now_ms, clock_offset)?,
                ..s.timers.clone()
            },
            reads: ImplReadIndex {
                fence: s.reads.fence,
                started: s.reads.started,
                confirmed: s.reads.confirmed,
                acks: s.reads.acks.clone(),
                waiting: s
                    .reads
                    .waiting
                    .iter()
                    .map(|w| {
                        Ok(WaitingRead {
                            id: self.read(at, w.id)?.k,
                            op: READ_OP,
                            round: w.round,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            },
            lease: Lease {
                grant_until: model_deadline(s.lease.grant_until, clock_offset)?,
                round_lease: model_deadline(s.lease.round_lease, clock_offset)?,
                lease_until: model_deadline(s.lease.lease_until, clock_offset)?,
            },
        };
        if snapshot.as_ref().map_or(0, |s| s.applied) != s.compacted {
            return Err(format!(
                "compacted at slot {}, but the replica's last snapshot is at {:?}",
                s.compacted,
                snapshot.as_ref().map(|s| s.applied)
            ));
        }
        // Checked before the sequence is taken, so that a refusal loses nothing.
        config
            .validate()
            .map_err(|e| format!("the logged configuration is invalid: {e}"))?;
        let recorder = Recorder {
            executed: std::mem::take(&mut node.executed),
        };
        Replica::from_state(config.clone(), state, snapshot, recorder)
            .map_err(|e| format!("the logged configuration is invalid: {e}"))
    }
}

/// A reading of a process's clock as the model's clock: the service's clock starts afresh
/// with each process (it reads 0 at the start), the model's runs on across a restart, and
/// only durations on one clock matter (A-clock), so each process's clock is the model's less
/// an offset fixed at its start ([`Node::clock_offset`]).
fn model_reading(at: Millis, clock_offset: i64) -> Result<Millis, String> {
    Millis::try_from(i128::from(at) + i128::from(clock_offset)).map_err(|_| {
        format!("clock reading {at} ms is before the model's clock started (offset {clock_offset})")
    })
}

fn model_deadline(at: Option<Millis>, clock_offset: i64) -> Result<Option<Millis>, String> {
    at.map(|at| model_reading(at, clock_offset)).transpose()
}

fn same_cluster(a: &Config, b: &Config) -> bool {
    a.replicas == b.replicas
        && a.initial_leader == b.initial_leader
        && a.window == b.window
        && a.slot_limit == b.slot_limit
}

// ------------------------------------------------------------------------------ the model side

/// A replica as the model sees it, between two logged transitions.
#[derive(Clone)]
struct ModelReplica {
    state: ReplicaState<Unbounded>,
    storage: Option<ReplicaStorage<Unbounded>>,
    timer: bool,
    /// The ballots of the votes in `storage` (for M11's recovered promise); counted on
    /// another vector they are still right, only slower to ask.
    ballots: VoteBallots<Unbounded>,
}

/// What a model handler is run on.
#[derive(Clone)]
enum ModelEvent {
    Start,
    Deliver(Id, MultiMsg<Unbounded>),
    Timeout(MultiTimer),
    /// The `Clock` timer this many times: a tick of the model's clock per millisecond,
    /// without a vector of as many events.
    Clock(u64),
}

/// Runs the replica actor's handler for `event` from `before`; the outcome in
/// [`StepOutcome`] form and the replica after it.
fn model_step(
    actor: &MultiActor<Unbounded>,
    id: usize,
    before: &ModelReplica,
    events: &[ModelEvent],
) -> (StepOutcome<Unbounded>, ModelReplica) {
    let id = Id::from(id);
    let mut after = before.clone();
    let mut sends = Vec::new();
    // One handler call at a time: a `Clock(n)` is `n` calls of the `Clock` timer.
    let calls = events.iter().flat_map(|event| {
        let times = match event {
            ModelEvent::Clock(ticks) => *ticks,
            _ => 1,
        };
        (0..times).map(move |_| event)
    });
    for event in calls {
        let mut out = Out::new();
        let timer = match event {
            ModelEvent::Start => {
                match actor.on_start(id, &after.storage, &mut out) {
                    MultiState::Replica(r) => {
                        after.state = r;
                        after.timer = false;
                    }
                    MultiState::Client(_) | MultiState::Reader(_) => {
                        unreachable!("replica actors start as replicas")
                    }
                }
                None
            }
            ModelEvent::Deliver(src, msg) => {
                let replica = std::mem::replace(&mut after.state, ReplicaState::empty());
                let mut cow = Cow::Owned(MultiState::Replica(replica));
                actor.on_msg(id, &mut cow, *src, msg.clone(), &mut out);
                if let MultiState::Replica(r) = cow.into_owned() {
                    after.state = r;
                }
                None
            }
            ModelEvent::Timeout(timer) => Some(timer),
            ModelEvent::Clock(_) => Some(&MultiTimer::Clock),
        };
        if let Some(timer) = timer {
            let replica = std::mem::replace(&mut after.state, ReplicaState::empty());
            let mut cow = Cow::Owned(MultiState::Replica(replica));
            actor.on_timeout(id, &mut cow, timer, &mut out);
            if let MultiState::Replica(r) = cow.into_owned() {
                after.state = r;
            }
        }
        for command in out {
            match command {
                OutCommand::Send(to, msg) => sends.push((usize::from(to), msg)),
                OutCommand::Save(storage) => after.storage = Some(storage),
                OutCommand::SetTimer(MultiTimer::Election, _) => after.timer = true,
                OutCommand::CancelTimer(MultiTimer::Election) => after.timer = false,
                _ => {}
            }
        }
    }
    sends.sort();
    let outcome = StepOutcome {
        state: canonical(after.state.clone()),
        sends,
        persisted: {
            if let Some(storage) = &after.storage {
                after.ballots.move_to(&storage.accepted);
            }
            counted_recovery_view(after.storage.as_ref(), &after.ballots)
        },
        election_timer: after.timer,
    };
    (outcome, after)
}

// ------------------------------------------------------------------------------ validation

/// One replica's progress through its log.
struct Node {
    config: Option<Config>,
    /// The process id its current process's start line gave.
    pid: Option<u32>,
    /// The durable state and snapshot its lines begin with: empty storage, or a checkpoint's
    /// when its earlier files were deleted. Recovery folds the records after it.
    origin: (Durable<Op>, Option<ImplSnapshot>),
    /// Where its lines begin at a checkpoint: that process, the host's clock and the
    /// process's when the checkpoint was written, and the ballot it had promised.
    window: Option<(Process, u64, Millis, Ballot)>,
    /// Its lines begin at a checkpoint it could not be set up from (the rejection says
    /// why): its steps are skipped up to its next checkpoint.
    window_failed: bool,
    /// The process whose line is being validated: its read ids name its reads.
    process: Process,
    /// The model's view of the replica (`None` before its first start).
    model: Option<ModelReplica>,
    /// What the current process has executed, in order (from its snapshot on, if any).
    executed: Vec<Command<Op>>,
    /// `executed` as the abstraction needs it, extended with it.
    executed_view: ExecutedView<Unbounded>,
    /// The durable state as the records persisted so far fold it, below the snapshot dropped.
    durable: Durable<Op>,
    /// The replica's snapshot at its compaction point (K1, K4), durable with the step that
    /// took or installed it.
    snapshot: Option<ImplSnapshot>,
    /// `snapshot` and its abstraction, once a step has abstracted it.
    abstracted_snapshot: Option<(ImplSnapshot, ExecutedLog)>,
    /// The logged state's votes and chosen entries in the conformance core's vocabulary,
    /// after the replica's last line: each step's replica borrows them, moved by the step's
    /// records, rather than converting every slot since the last snapshot again.
    log_memory: Option<ImplLog>,
    /// Their abstraction and the durable state's after the replica's last line, which the
    /// next step moves the same way ([`LogVectors`]).
    log_vectors: Option<LogVectors<Unbounded>>,
    /// The index of the line being validated, and of the replica's line before it.
    line: Option<usize>,
    previous_line: Option<usize>,
    /// The last phase-1 `merged` votes converted, and the line they are of
    /// ([`Domain::merged_votes`]).
    merged: Option<(Option<usize>, SlotMap<ImplVote>)>,
    /// The changes to `merged` the line being validated writes, against the line before.
    merged_change: Option<(SlotMap<KvVote>, Vec<Slot>)>,
    /// Every record persisted, across processes, with the index of its step in `steps`.
    records: Vec<(Record<Op>, usize)>,
    /// Every snapshot taken or installed, with the number of records persisted before it and
    /// the index of its step in `steps`: recovery starts from one of them (or from nothing)
    /// and folds a prefix of the records after it.
    snapshots: Vec<(usize, usize, ImplSnapshot)>,
    /// Every logged transition of this replica: what it sent, and the model replica after it.
    steps: Vec<StepTrace>,
    /// The core's timers after the last logged transition of the current process: which
    /// of them a tick fires.
    timers: Timers,
    /// The model's clock less the current process's (see [`model_reading`]): at its start,
    /// the clock the model recovers with (or 0 at the first) less the process's reading.
    clock_offset: i64,
}

/// A replica's log after its previous line, as the step of the next line moves it (see
/// [`Node::log_memory`], [`Node::log_vectors`]); empty after a start line.
#[derive(Default)]
struct LogBefore {
    memory: Option<ImplLog>,
    vectors: Option<LogVectors<Unbounded>>,
}

struct StepTrace {
    sends: Vec<(u32, MessageKey)>,
    /// `None` when the step was never performed: a crash lost its records, or an earlier
    /// step's, before its effects could go out.
    model_after: Option<ModelReplica>,
}

impl Node {
    /// Records a validated transition: its records (for recovery's prefix check), its sends
    /// (for R1 across crashes) and the model replica after it.
    fn push_step(&mut self, effects: &[ImplEffect], model_after: ModelReplica) {
        let index = self.steps.len();
        for effect in effects {
            match effect {
                Effect::Persist(r) => self.records.push((r.clone(), index)),
                Effect::Snapshot(s) => self.snapshots.push((self.records.len(), index, s.clone())),
                _ => {}
            }
        }
        self.steps.push(StepTrace {
            sends: sends_of(effects),
            model_after: Some(model_after.clone()),
        });
        self.model = Some(model_after);
    }
}

/// Validates step logs against the Multi-Paxos model.
pub fn validate(paths: &[PathBuf]) -> Result<Report, String> {
    validate_with_traces(paths, None)
}

/// [`validate`], writing into `trace_dir` a trace file for each rejection shown
/// (specs/proposals/rejection-traces.md): the run's state around the rejected step, as
/// `paxos-model explore --trace` opens it.
pub fn validate_with_traces(paths: &[PathBuf], trace_dir: Option<&Path>) -> Result<Report, String> {
    let lines = load(paths)?;
    let report = validate_lines_with(paths, &lines, trace_dir);
    drop_elsewhere(lines);
    report
}

/// Drops `value` on a thread of its own. A long run's lines and validation state are
/// gigabytes in many small allocations, whose freeing took a tenth of validation's time; a
/// caller that exits once it has the report need not wait for it.
fn drop_elsewhere<T: Send + 'static>(value: T) {
    // Where no thread can be made, `spawn` drops `value` here instead.
    let _ = std::thread::Builder::new().spawn(move || drop(value));
}

/// [`validate`] on lines already read.
pub fn validate_lines(paths: &[PathBuf], lines: &[Logged]) -> Result<Report, String> {
    validate_lines_with(paths, lines, None)
}

/// [`validate_with_traces`] on lines already read.
pub fn validate_lines_with(
    paths: &[PathBuf],
    lines: &[Logged],
    trace_dir: Option<&Path>,
) -> Result<Report, String> {
    let domain = Domain::of(lines)?;
    let actor = MultiActor::<Unbounded>::replica(domain.cfg.clone());
    let mut report = Report {
        format: REPORT_FORMAT.to_string(),
        files: paths.iter().map(|p| p.display().to_string()).collect(),
        model_config: domain.cfg.clone(),
        replicas: domain.cfg.replicas,
        starts: 0,
        transitions: 0,
        by_kind: BTreeMap::new(),
        messages_received: 0,
        runs: 0,
        records_lost_in_crashes: 0,
        checkpoints: 0,
        windows: 0,
        received_before_windows: 0,
        unknown_ranges: domain.fillers.len(),
        skipped_before_windows: 0,
        rejections_total: 0,
        rejections: Vec::new(),
    };
    // Each replica's lines are validated in order, and replicas apart: on threads of their
    // own, the largest logs first. What they find is put together in the lines' order. A
    // received message is checked to have been sent once every replica's sends are known.
    let mut by_node: Vec<Vec<usize>> = vec![Vec::new(); domain.cfg.replicas];
    for (index, logged) in lines.iter().enumerate() {
        by_node
            .get_mut(logged.node() as usize)
            .ok_or_else(|| {
                format!(
                    "{}: n{} is no replica of the run",
                    logged.place(),
                    logged.node()
                )
            })?
            .push(index);
    }
    let mut order: Vec<usize> = (0..by_node.len()).collect();
    order.sort_by_key(|&n| std::cmp::Reverse(by_node[n].len()));
    let ctx = NodeContext {
        domain: &domain,
        actor: &actor,
        lines,
    };
    let runs = on_threads(&order, |n| validate_node(&ctx, n, &by_node[n]));
    let mut nodes: Vec<Node> = Vec::with_capacity(runs.len());
    let mut received: Vec<(usize, (u32, u32, MessageKey))> = Vec::new();
    let mut shown: Vec<(usize, Rejection, Option<Box<rejection_trace::Seed>>)> = Vec::new();
    let mut rejections = Rejections::default();
    let mut line_steps: Vec<Option<usize>> = vec![None; lines.len()];
    let mut sent = Sent(Vec::with_capacity(runs.len()));
    for run in runs {
        let run = run.ok_or("a replica's lines were not validated")??;
        report.starts += run.starts;
        report.transitions += run.transitions;
        report.messages_received += run.messages_received;
        report.runs += run.runs;
        report.records_lost_in_crashes += run.records_lost;
        report.checkpoints += run.checkpoints;
        report.windows += run.windows;
        report.skipped_before_windows += run.skipped;
        for (kind, count) in run.by_kind {
            *report.by_kind.entry(kind).or_default() += count;
        }
        rejections.total += run.rejections.total;
        shown.extend(run.rejections.shown);
        received.extend(run.received);
        for (index, step) in run.line_steps {
            line_steps[index] = step;
        }
        sent.0.push(run.sent);
        nodes.push(run.node);
    }
    // Counted all, rendered only as many as can be shown: a sender's file left out makes
    // every message it sent a rejection.
    let mut unsent: Vec<&(usize, (u32, u32, MessageKey))> = Vec::new();
    for receipt in &received {
        let (index, (from, to, key)) = receipt;
        if sent.first(*from, *to, *key).is_some() {
            continue;
        }
        // What a sender sent before its lines begin is not in them: a receipt from a
        // replica whose lines begin at a checkpoint, by a step not much later than that
        // checkpoint, naming no ballot above the one the sender had promised there (a
        // replica names none above its promise, which only grows), is taken as sent before
        // it. The step that received it is still the model's to check.
        let before_window = nodes
            .get(*from as usize)
            .and_then(|n| n.window)
            .is_some_and(|(_, sender_wall, _, promised)| {
                let logged = &lines[*index];
                let StepLine::Step { state, input, .. } = &logged.entry else {
                    return false;
                };
                if let Input::Message { msg, .. } = input {
                    if highest_ballot(msg).is_some_and(|b| b > promised) {
                        return false;
                    }
                }
                match nodes.get(*to as usize).and_then(|n| n.window) {
                    Some((process, wall, now, _)) if process == logged.process() => {
                        let at = wall.saturating_add(state.timers.now_ms.saturating_sub(now));
                        at <= sender_wall.saturating_add(SENT_BEFORE_WINDOW_MS)
                    }
                    // No reading of the receiver's host clock for that step.
                    _ => true,
                }
            });
        if before_window {
            report.received_before_windows += 1;
        } else {
            unsent.push(receipt);
        }
    }
    rejections.total += unsent.len();
    unsent.sort_by_key(|(index, _)| *index);
    for (index, (from, to, key)) in unsent.into_iter().take(REJECTIONS_KEPT) {
        let key = shown_key(&domain, &lines[*index], *key);
        let why = format!("n{from} never sent this message to n{to}: {key}");
        let model_before = ModelBefore(model_before_line(&nodes, &line_steps, lines, *index));
        let rejection = rejection(&lines[*index], &model_before, Failure::plain(why));
        shown.push((*index, rejection, None));
    }
    shown.sort_by_key(|(index, ..)| *index);
    shown.truncate(REJECTIONS_KEPT);
    received.sort_by_key(|(index, _)| *index);
    let mut seeds: Vec<(usize, usize, Box<rejection_trace::Seed>)> = Vec::new();
    for (index, rejection, seed) in shown {
        if let Some(seed) = seed {
            seeds.push((index, rejections.kept.len(), seed));
        }
        rejections.kept.push(rejection);
    }
    if let Some(dir) = trace_dir {
        let run = rejection_trace::Run {
            domain: &domain,
            lines,
            nodes: &nodes,
            line_steps: &line_steps,
            sent: &sent,
        };
        for (index, shown, seed) in seeds {
            let rejection = &mut rejections.kept[shown];
            match rejection_trace::write(dir, &run, index, *seed, rejection) {
                Ok(path) => rejection.trace = Some(path.display().to_string()),
                Err(e) => rejection.reason += &format!(" (no trace file: {e})"),
            }
        }
    }
    for late in unperformed_sends_received(&domain, lines, &nodes, &received) {
        rejections.add(|| late);
    }
    report.rejections_total = rejections.total;
    report.rejections = rejections.kept;
    drop_elsewhere((domain, nodes, sent, line_steps));
    Ok(report)
}

/// What every replica's validation reads.
struct NodeContext<'a> {
    domain: &'a Domain,
    actor: &'a MultiActor<Unbounded>,
    lines: &'a [Logged],
}

/// Every message each replica's steps sent (see [`Sent::first`]): per sender, per receiver,
/// each one-slot message's key with the index in `lines` of the first line that sent it.
pub(crate) struct Sent(Vec<Vec<KeyMap<usize>>>);

/// A map keyed by [`MessageKey`]s, which are digests already: hashed by taking their low
/// bits, not by SipHash again.
pub(crate) type KeyMap<V> = HashMap<MessageKey, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// The hasher of [`KeyMap`]: a message key's low 64 bits.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is called for a `MessageKey`; any other input is folded in.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        // Truncation is the point: the low half of a digest is as uniform as the whole.
        self.0 = key as u64;
    }
}

impl Sent {
    /// The first line that sent `key` from `from` to `to` (the earliest step of its sender,
    /// since a replica's lines are in step order).
    pub(crate) fn first(&self, from: u32, to: u32, key: MessageKey) -> Option<usize> {
        self.0
            .get(from as usize)?
            .get(to as usize)?
            .get(&key)
            .copied()
    }
}

/// The model replica before the step of line `index` (its replica's state after the step
/// before it), where one was validated.
fn model_before_line(
    nodes: &[Node],
    line_steps: &[Option<usize>],
    lines: &[Logged],
    index: usize,
) -> Option<ReplicaState<Unbounded>> {
    let node = nodes.get(lines[index].node() as usize)?;
    let step = line_steps[index]?;
    node.steps[..step.min(node.steps.len())]
        .iter()
        .rev()
        .find_map(|s| s.model_after.as_ref())
        .map(|m| m.state.clone())
}

/// What validating one replica's lines found.
struct NodeRun {
    node: Node,
    starts: usize,
    transitions: usize,
    by_kind: BTreeMap<String, usize>,
    messages_received: usize,
    runs: usize,
    records_lost: usize,
    checkpoints: usize,
    windows: usize,
    skipped: usize,
    /// The messages it received, each with the index of its line.
    received: Vec<(usize, (u32, u32, MessageKey))>,
    rejections: NodeRejections,
    /// Per line, the index of the step it pushed in the replica's `steps` (a start that
    /// failed early pushed none).
    line_steps: Vec<(usize, Option<usize>)>,
    /// What it sent, per receiver ([`Sent`]).
    sent: Vec<KeyMap<usize>>,
}

/// A replica's rejections: every one counted, the first [`REJECTIONS_KEPT`] rendered with
/// their lines and where their trace files would start.
#[derive(Default)]
struct NodeRejections {
    total: usize,
    shown: Vec<(usize, Rejection, Option<Box<rejection_trace::Seed>>)>,
}

impl NodeRejections {
    fn add(
        &mut self,
        index: usize,
        logged: &Logged,
        model_before: &ModelBefore,
        failure: Failure,
        seed: Option<Box<rejection_trace::Seed>>,
    ) {
        self.total += 1;
        if self.shown.len() < REJECTIONS_KEPT {
            self.shown
                .push((index, rejection(logged, model_before, failure), seed));
        }
    }
}

/// Validates replica `i`'s lines (`indices` into `ctx.lines`, in order).
fn validate_node(ctx: &NodeContext<'_>, i: usize, indices: &[usize]) -> Result<NodeRun, String> {
    let NodeContext {
        domain,
        actor,
        lines,
    } = *ctx;
    let mut run = NodeRun {
        node: Node {
            config: None,
            pid: None,
            origin: (Durable::default(), None),
            window: None,
            window_failed: false,
            process: Process {
                node: i as u32,
                incarnation: 0,
            },
            model: None,
            executed: Vec::new(),
            executed_view: ExecutedView::of(&domain.cfg, &[]),
            durable: Durable::default(),
            snapshot: None,
            abstracted_snapshot: None,
            log_memory: None,
            log_vectors: None,
            line: None,
            previous_line: None,
            merged: None,
            merged_change: None,
            records: Vec::new(),
            snapshots: Vec::new(),
            // At most a step per line: sized once, as a vector grown by doubling copies its
            // model states into pages touched for the first time.
            steps: Vec::with_capacity(indices.len()),
            timers: Timers::default(),
            clock_offset: 0,
        },
        starts: 0,
        transitions: 0,
        by_kind: BTreeMap::new(),
        messages_received: 0,
        runs: 0,
        records_lost: 0,
        checkpoints: 0,
        windows: 0,
        skipped: 0,
        received: Vec::new(),
        rejections: NodeRejections::default(),
        line_steps: Vec::with_capacity(indices.len()),
        sent: vec![KeyMap::default(); domain.cfg.replicas],
    };
    let mut states = States::default();
    for &index in indices {
        let logged = &lines[index];
        if let StepLine::Checkpoint { .. } = &logged.entry {
            // Not a transition: the replica's state as its writer had it, which the lines
            // before it must have rebuilt. The next step moves on from it.
            let node = &mut run.node;
            if node.pid.is_none() {
                // The replica's earlier files are gone: its validation begins here.
                let state = states.after(logged)?.clone();
                node.previous_line = node.line.replace(index);
                node.process = logged.process();
                let begun = start_window(domain, node, logged, &state);
                run.line_steps
                    .push((index, begun.is_ok().then(|| node.steps.len() - 1)));
                node.window_failed = begun.is_err();
                run.windows += usize::from(begun.is_ok());
                if let Err(failure) = begun {
                    let model_before = ModelBefore(None);
                    run.rejections
                        .add(index, logged, &model_before, failure, None);
                }
                continue;
            }
            run.checkpoints += 1;
            let checked = validate_checkpoint(domain, node, logged, states.0.get(&(i as u32)));
            states.after(logged)?;
            node.previous_line = node.line.replace(index);
            run.line_steps.push((index, None));
            if let Err(failure) = checked {
                // The next step goes on from the checkpoint's state, not from a log the lines
                // before it moved.
                node.log_memory = None;
                node.log_vectors = None;
                let model_before = ModelBefore(node.model.as_ref().map(|m| m.state.clone()));
                run.rejections
                    .add(index, logged, &model_before, failure, None);
            }
            continue;
        }
        if run.node.window_failed && run.node.pid.is_none() {
            if let StepLine::Step { .. } = &logged.entry {
                // Up to the next checkpoint, from which the window is tried again.
                states.after(logged)?;
                run.skipped += 1;
                run.line_steps.push((index, None));
                continue;
            }
        }
        if let StepLine::Start { pid, .. } = &logged.entry {
            run.node.pid = Some(*pid);
        }
        let state = states.after(logged)?;
        let node = &mut run.node;
        let steps_before = node.steps.len();
        node.previous_line = node.line.replace(index);
        node.merged_change = match &logged.entry {
            StepLine::Step { state, .. } if state.merged_base == Some(MergedBase::Previous) => {
                step_log::merged(&state.phase).map(|m| (m.clone(), state.merged_removed.clone()))
            }
            _ => None,
        };
        node.process = logged.process();
        // Shown only with a rejection: formatting a long run's state at every step would
        // cost more than validating it.
        let model_before = ModelBefore(node.model.as_ref().map(|m| m.state.clone()));
        // Taken at every line of the replica: a step's log can be moved from the one before
        // only when that one was followed to the end ([`logged_outcome`]), and a start line
        // holds its whole state.
        let log_before = LogBefore {
            memory: node.log_memory.take(),
            vectors: node.log_vectors.take(),
        };
        let mut rejected = |failure: Failure, seed: Option<Box<rejection_trace::Seed>>| {
            run.rejections
                .add(index, logged, &model_before, failure, seed);
        };
        let checked = match &logged.entry {
            StepLine::Start {
                config,
                recovered,
                snapshot,
                effects,
                state,
                ..
            } => {
                run.starts += 1;
                *run.by_kind.entry("recover".into()).or_default() += 1;
                let lost = node.records.len();
                let recovered = Recovered {
                    durable: recovered,
                    snapshot: snapshot.as_ref(),
                };
                let result =
                    validate_start(domain, actor, i, node, config, recovered, effects, state);
                run.records_lost += lost.saturating_sub(node.records.len());
                result
            }
            StepLine::Checkpoint { .. } => continue,
            StepLine::Step { input, effects, .. } => {
                *run.by_kind.entry(kind(input)).or_default() += 1;
                run.runs += usize::from(is_run(input));
                if let Input::Message { from, msg } = input {
                    run.messages_received += 1;
                    for key in message_keys(&domain.message(msg)?) {
                        run.received.push((index, (*from, i as u32, key)));
                    }
                }
                validate_step(domain, actor, i, node, input, effects, state, log_before)
            }
        };
        run.transitions += 1;
        let pushed = (node.steps.len() > steps_before).then(|| node.steps.len() - 1);
        run.line_steps.push((index, pushed));
        // The step's sends as its validation keyed them, or, for a step validation stopped
        // short of that, keyed here.
        let sends = match pushed.and_then(|step| node.steps.get(step)) {
            Some(step) => step.sends.clone(),
            None => line_sends(domain, logged)?,
        };
        // A send to no replica of the run is the model's to refuse, at the step.
        for (to, key) in sends {
            if let Some(to_node) = run.sent.get_mut(to as usize) {
                to_node.entry(key).or_insert(index);
            }
        }
        if let Err(mut failure) = checked {
            // Go on from what the log shows, so that later rejections are found too.
            if let Some(resync) = failure.resync.take() {
                node.model = Some(*resync);
            }
            let seed = failure.seed.take();
            rejected(failure, seed);
        }
    }
    Ok(run)
}

/// The rejections of a run: all counted, the first [`REJECTIONS_KEPT`] shown. A run with a
/// broken core rejects thousands of steps, each of which would otherwise be rendered with
/// the states on both sides.
#[derive(Default)]
struct Rejections {
    kept: Vec<Rejection>,
    total: usize,
}

impl Rejections {
    fn add(&mut self, rejection: impl FnOnce() -> Rejection) {
        self.total += 1;
        if self.kept.len() < REJECTIONS_KEPT {
            self.kept.push(rejection());
        }
    }
}

/// Why a transition was rejected, and the model replica to go on from.
struct Failure {
    reason: String,
    /// The model's outcome and the logged one, when both exist.
    outcomes: Option<Box<(StepOutcome<Unbounded>, StepOutcome<Unbounded>)>>,
    resync: Option<Box<ModelReplica>>,
    /// Where a trace file of the rejection starts ([`trace`]), when the model had a step.
    seed: Option<Box<rejection_trace::Seed>>,
}

impl Failure {
    fn plain(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            outcomes: None,
            resync: None,
            seed: None,
        }
    }
}

/// The model replica before a step, for a rejection's report.
struct ModelBefore(Option<ReplicaState<Unbounded>>);

/// The most characters of a state a rejection shows: a long run's replica holds thousands of
/// slots and commands.
const SHOWN_CHARS: usize = 2_000;

impl ModelBefore {
    fn shown(&self) -> String {
        match &self.0 {
            None => "(not started)".into(),
            Some(state) => shortened(&format!("{state:?}")),
        }
    }
}

/// `text`, or its first [`SHOWN_CHARS`] characters and how many more there are.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!(
            "{} … ({} more characters)",
            &text[..cut],
            text[cut..].chars().count()
        ),
    }
}

/// The model's and the log's versions of one thing, shortened to where they differ: what is
/// the same on both sides before and after the difference is elided, with some context.
fn where_they_differ(expected: &str, actual: &str) -> (String, String) {
    const CONTEXT: usize = 300;
    if expected.len() + actual.len() <= 2 * SHOWN_CHARS {
        return (expected.to_string(), actual.to_string());
    }
    let (e, a) = (expected.as_bytes(), actual.as_bytes());
    let same_start = e.iter().zip(a).take_while(|(x, y)| x == y).count();
    let same_end = e
        .iter()
        .rev()
        .zip(a.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
        .min(e.len().min(a.len()) - same_start);
    let excerpt = |text: &str| {
        let mut from = same_start.saturating_sub(CONTEXT);
        let mut to = (text.len() - same_end + CONTEXT).min(text.len());
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        while !text.is_char_boundary(to) {
            to += 1;
        }
        let before = if from > 0 { "… " } else { "" };
        let after = if to < text.len() { " …" } else { "" };
        shortened(&format!("{before}{}{after}", &text[from..to]))
    };
    (excerpt(expected), excerpt(actual))
}

fn rejection(logged: &Logged, model_before: &ModelBefore, failure: Failure) -> Rejection {
    let event = match &logged.entry {
        StepLine::Start { recovered, .. } if *recovered == Durable::default() => {
            "start on empty storage".to_string()
        }
        StepLine::Start { .. } => "restart from the WAL".to_string(),
        StepLine::Step { input, .. } => describe(input),
        StepLine::Checkpoint { segment, .. } => format!("checkpoint beginning segment {segment}"),
    };
    let shown = match failure.outcomes {
        Some(outcomes) => {
            let (expected, actual) = *outcomes;
            let (expected, actual) =
                where_they_differ(&format!("{expected:?}"), &format!("{actual:?}"));
            (Some(expected), Some(actual))
        }
        None => (None, None),
    };
    Rejection {
        node: logged.node(),
        at: logged.place(),
        event,
        reason: failure.reason,
        model_before: model_before.shown(),
        expected: shown.0,
        actual: shown.1,
        trace: None,
    }
}

/// The messages line `logged` sent, as `(to, one-slot message key)`.
fn line_sends(domain: &Domain, logged: &Logged) -> Result<Vec<(u32, MessageKey)>, String> {
    let effects = match &logged.entry {
        StepLine::Start { effects, .. } | StepLine::Step { effects, .. } => effects,
        StepLine::Checkpoint { .. } => return Ok(Vec::new()),
    };
    let mut sends = Vec::new();
    for effect in effects {
        if let Effect::Send { to, msg } = effect {
            sends.extend(
                message_keys(&domain.message(msg)?)
                    .into_iter()
                    .map(|k| (*to, k)),
            );
        }
    }
    Ok(sends)
}

/// A one-slot message as sends and receipts are matched: a 128-bit digest of its JSON (of
/// [`snapshot_key`] for a snapshot). A long run sends millions of them, and each kept as its
/// JSON, in the sends of its step, of its sender and of its receipt, was a tenth of
/// validation's memory. Two messages share a key by chance with probability about n²/2¹²⁹
/// for n keys. The text is made again for a rejection that shows one ([`shown_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct MessageKey(u128);

impl MessageKey {
    fn of(msg: &ImplMessage) -> Self {
        let mut digest = KeyDigest::default();
        write_key_text(msg, &mut digest);
        digest.finish()
    }
}

/// What a one-slot message is keyed by ([`MessageKey`]) and shown as ([`shown_key`]): its
/// JSON, or [`snapshot_key`] for a snapshot, written into `out` rather than made a string.
fn write_key_text(msg: &ImplMessage, out: &mut impl std::io::Write) {
    let written = match msg {
        Message::Snapshot { state } => out.write_all(snapshot_key(state).as_bytes()),
        _ => serde_json::to_writer(&mut *out, msg).map_err(std::io::Error::from),
    };
    // Serializing a message of our own types into memory cannot fail; were it to, its debug
    // text follows, so that the key still names the message.
    if written.is_err() {
        let _ = out.write_all(format!("unserializable {msg:?}").as_bytes());
    }
}

/// Two SipHash digests of one byte stream, one of them with a prefix: 128 bits. Only compared
/// within this process, so the hasher's fixed keys need not be secret.
struct KeyDigest(std::hash::DefaultHasher, std::hash::DefaultHasher);

impl Default for KeyDigest {
    fn default() -> Self {
        use std::hash::Hasher;
        let mut second = std::hash::DefaultHasher::new();
        second.write(b"paxos-conform message key");
        KeyDigest(std::hash::DefaultHasher::new(), second)
    }
}

impl KeyDigest {
    fn finish(&self) -> MessageKey {
        use std::hash::Hasher;
        MessageKey((u128::from(self.0.finish()) << 64) | u128::from(self.1.finish()))
    }
}

impl std::io::Write for KeyDigest {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        use std::hash::Hasher;
        self.0.write(bytes);
        self.1.write(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A message as the one-slot messages it stands for (a run of slots is one per slot; any
/// other message is itself), each as a key. A run is compared slot by slot because the leader
/// re-sends the Accept of a single slot left unanswered, which no step sent on its own.
fn message_keys(msg: &ImplMessage) -> Vec<MessageKey> {
    keyed_parts(msg).into_iter().map(|(key, _)| key).collect()
}

/// The one-slot messages of [`message_keys`], each with its key.
fn keyed_parts(msg: &ImplMessage) -> Vec<(MessageKey, ImplMessage)> {
    // A run longer than `MAX_RUN` is tampered or foreign, and `msg_to_model` refuses it.
    msg.per_slot()
        .take(MAX_RUN + 1)
        .map(|part| (MessageKey::of(&part), part))
        .collect()
}

/// The text of the one-slot message `key` of the message line `logged` received or sent, for
/// a rejection.
fn shown_key(domain: &Domain, logged: &Logged, key: MessageKey) -> String {
    let mut messages: Vec<&KvMessage> = Vec::new();
    if let StepLine::Step {
        input: Input::Message { msg, .. },
        ..
    } = &logged.entry
    {
        messages.push(msg);
    }
    if let StepLine::Start { effects, .. } | StepLine::Step { effects, .. } = &logged.entry {
        messages.extend(effects.iter().filter_map(|e| match e {
            Effect::Send { msg, .. } => Some(msg),
            _ => None,
        }));
    }
    for msg in messages {
        let Ok(msg) = domain.message(msg) else {
            continue;
        };
        if let Some((_, part)) = keyed_parts(&msg).into_iter().find(|(k, _)| *k == key) {
            let mut text = Vec::new();
            write_key_text(&part, &mut text);
            return String::from_utf8_lossy(&text).into_owned();
        }
    }
    format!("message {:032x}", key.0)
}

/// A snapshot message's key: its applied prefix (and its sizes, for the reader of a
/// rejection). What it holds below that prefix is no part of the key because it is
/// determined by it: every snapshot validation converts is [`Domain::snapshot`]'s, which
/// refuses one that is not the state after the run's commands below its prefix (or, below
/// where every replica's lines begin, stands in with nothing). A snapshot holds every command
/// below it, and hashing them at each catch-up that sends one was a twentieth of validation.
fn snapshot_key(state: &ImplSnapshot) -> String {
    format!(
        "{{\"Snapshot\":{{\"applied\":{},\"commands\":{},\"clients\":{}}}}}",
        state.applied,
        state.state_machine.len(),
        state.clients.len(),
    )
}

/// Whether `input` stands for several model steps.
fn is_run(input: &KvInput) -> bool {
    match input {
        Input::ClientRequests(cs) => cs.len() > 1,
        Input::Message { msg, .. } => match msg {
            Message::Accept { entries, .. } | Message::Decide { entries, .. } => entries.len() > 1,
            Message::Accepted { count, .. } => *count > 1,
            _ => false,
        },
        _ => false,
    }
}

/// The client commands an input carries.
fn requests_of(input: &KvInput) -> impl Iterator<Item = &Command<KvOp>> {
    let commands: &[Command<KvOp>] = match input {
        Input::ClientRequest(c) => std::slice::from_ref(c),
        Input::ClientRequests(cs) => cs,
        _ => &[],
    };
    commands.iter()
}

/// R1 across crashes: a message that only a step whose records were lost sent must not have
/// been received (its step's effects waited for those records).
fn unperformed_sends_received(
    domain: &Domain,
    lines: &[Logged],
    nodes: &[Node],
    received: &[(usize, (u32, u32, MessageKey))],
) -> Vec<Rejection> {
    // Steps that were never performed are few (a crash's last batch), so the sends only they
    // made are found from them: a long run's every send in a set, and every receipt checked
    // against every replica's, was most of the time after the replicas' passes.
    let lost: Vec<BTreeSet<(u32, MessageKey)>> = nodes
        .iter()
        .map(|node| {
            let mut lost: BTreeSet<(u32, MessageKey)> = node
                .steps
                .iter()
                .filter(|s| s.model_after.is_none())
                .flat_map(|s| s.sends.iter().copied())
                .collect();
            if !lost.is_empty() {
                for step in node.steps.iter().filter(|s| s.model_after.is_some()) {
                    for send in &step.sends {
                        lost.remove(send);
                    }
                }
            }
            lost
        })
        .collect();
    let mut rejections = Vec::new();
    for (index, (from, to, key)) in received {
        if !lost
            .get(*from as usize)
            .is_some_and(|lost| lost.contains(&(*to, *key)))
        {
            continue;
        }
        let key = shown_key(domain, &lines[*index], *key);
        rejections.push(Rejection {
            node: *from,
            at: "(across the run)".into(),
            event: format!("n{from} → n{to}: {key}"),
            reason: "received, but the only step that sent it had its records lost in \
                     a crash: an effect was performed before its records were durable \
                     (R1)"
                .into(),
            model_before: String::new(),
            expected: None,
            actual: None,
            trace: None,
        });
    }
    rejections
}

/// The input's kind, named as the core's trace events name it (`Message::kind`).
fn kind(input: &KvInput) -> String {
    match input {
        Input::Message { msg, .. } => msg.kind(),
        Input::ClientRequest(_) => "request",
        Input::ClientRequests(_) => "requests",
        Input::Tick { .. } => "tick",
        Input::Compact => "compact",
        Input::Read { .. } => "read",
    }
    .to_string()
}

fn describe(input: &KvInput) -> String {
    match input {
        Input::Message { from, msg } => format!("from n{from}: {msg:?}"),
        Input::ClientRequest(c) => format!("request {:?} seq {}: {:?}", c.client, c.seq, c.op),
        Input::ClientRequests(cs) => {
            let each = cs
                .iter()
                .map(|c| format!("{:?} seq {}: {:?}", c.client, c.seq, c.op));
            format!("requests {}", each.collect::<Vec<_>>().join(", "))
        }
        Input::Tick { now_ms } => format!("tick at {now_ms} ms"),
        Input::Compact => "compact".to_string(),
        Input::Read { id, op } => format!("read {id}: {op:?}"),
    }
}

/// Compares the model's outcome with the logged one; on a difference, the model replica to
/// go on from is the logged one.
fn compare(
    expected: &StepOutcome<Unbounded>,
    actual: &StepOutcome<Unbounded>,
) -> Result<(), Failure> {
    if expected == actual {
        return Ok(());
    }
    Err(Failure {
        reason: format!(
            "the model does otherwise: {} differ",
            expected.differences(actual).join(", ")
        ),
        outcomes: Some(Box::new((expected.clone(), actual.clone()))),
        resync: Some(Box::new(ModelReplica {
            state: actual.state.clone(),
            storage: Some(actual.persisted.clone()),
            timer: actual.election_timer,
            ballots: VoteBallots::default(),
        })),
        seed: None,
    })
}

/// What a start line says the storage gave back.
struct Recovered<'a> {
    durable: &'a Durable<KvOp>,
    snapshot: Option<&'a KvSnapshot>,
}

#[allow(clippy::too_many_arguments)]
fn validate_start(
    domain: &Domain,
    actor: &MultiActor<Unbounded>,
    i: usize,
    node: &mut Node,
    config: &Config,
    recovered: Recovered<'_>,
    effects: &[KvEffect],
    state: &KvState,
) -> Result<(), Failure> {
    node.config = Some(config.clone());
    node.timers = state.timers.clone();
    let snapshot = recovered.snapshot.map(|s| domain.snapshot(s));
    let snapshot = snapshot.transpose().map_err(Failure::plain)?;
    let recovered = domain.durable(recovered.durable).map_err(Failure::plain)?;
    let effects = domain
        .effects(effects, node.process, state.applied)
        .map_err(Failure::plain)?;
    // Which records survived: the longest prefix that folds to what the WAL gave back, after
    // the snapshot recovery started from. The steps from the first one with a lost record on
    // were never performed: their effects waited for those records.
    let (kept, lost_snapshot_step) = surviving_prefix(node, &recovered, snapshot.as_ref())?;
    let first_lost_step = node
        .records
        .get(kept)
        .map_or(node.steps.len(), |(_, step)| *step)
        .min(lost_snapshot_step.unwrap_or(usize::MAX));
    for step in &mut node.steps[first_lost_step..] {
        step.model_after = None;
    }
    node.records.truncate(kept);
    let before = node.steps[..first_lost_step]
        .iter()
        .rev()
        .find_map(|s| s.model_after.clone())
        .unwrap_or(ModelReplica {
            state: initial_placeholder(),
            storage: None,
            timer: false,
            ballots: VoteBallots::default(),
        });
    // Recovery re-applies the chosen prefix without reporting it (M11).
    node.executed = reexecuted(domain, state, snapshot.as_ref()).map_err(Failure::plain)?;
    node.executed_view = ExecutedView::of(&domain.cfg, &node.executed);
    node.durable = recovered;
    node.snapshot = snapshot;
    if domain.cfg.leases > 0 {
        // The model recovers with the clock its storage kept (a fresh start with 0).
        let model_clock = before.storage.as_ref().map_or(0, |s| s.clock);
        node.clock_offset =
            i64::from(model_clock) - i64::try_from(state.timers.now_ms).unwrap_or(i64::MAX);
    }
    // With leases a follower's first start cannot be told from a restart after a crash that
    // came before its first record (granting writes nothing), so the service recovers it
    // (L6; `runtime::replicated::recover`): the model's start, a crash at once, and recovery.
    let first_follower_start_with_leases =
        domain.cfg.leases > 0 && i as u32 != config.initial_leader && before.storage.is_none();
    let events: &[ModelEvent] = if first_follower_start_with_leases {
        &[ModelEvent::Start, ModelEvent::Start]
    } else {
        &[ModelEvent::Start]
    };
    let (expected, model_after) = model_step(actor, i, &before, events);
    node.push_step(&effects, model_after);
    let actual = logged_outcome(
        domain,
        node,
        config,
        state,
        effects,
        &expected,
        LogBefore::default(),
    )?;
    compare(&expected, &actual)
}

/// A checkpoint line ([`StepLine::Checkpoint`]) of the replica's current process, `rebuilt`
/// the state its lines before it rebuilt: the checkpoint must be that state, but for what the
/// ticks the node does not log moved (the clock, and the lease deadlines it passed); the
/// records folded since the replica's snapshot must give the durable state it states, and
/// its snapshot be the one the replica took or installed last.
fn validate_checkpoint(
    domain: &Domain,
    node: &Node,
    logged: &Logged,
    rebuilt: Option<&KvState>,
) -> Result<(), Failure> {
    let StepLine::Checkpoint {
        pid,
        segment,
        config,
        snapshot,
        state,
        ..
    } = &logged.entry
    else {
        return Ok(());
    };
    let (Some(rebuilt), Some(current)) = (rebuilt, node.pid) else {
        return Err(Failure::plain(format!(
            "no state of n{} before this checkpoint (segment {segment}) to check it against",
            node.process.node
        )));
    };
    if *pid != current {
        return Err(Failure::plain(format!(
            "written by process {pid}, where the replica's current process is {current}"
        )));
    }
    if !node
        .config
        .as_ref()
        .is_some_and(|c| same_cluster(c, config))
    {
        return Err(Failure::plain(
            "a configuration other than the one its process started with",
        ));
    }
    let now = state.timers.now_ms;
    if now < rebuilt.timers.now_ms {
        return Err(Failure::plain(format!(
            "clock {now} ms, where the line before it read {} ms",
            rebuilt.timers.now_ms
        )));
    }
    let mut expected = rebuilt.clone();
    expected.timers.now_ms = now;
    expected.lease.forget_passed(now);
    if expected != **state {
        let (expected, actual) = where_they_differ(&format!("{expected:?}"), &format!("{state:?}"));
        return Err(Failure::plain(format!(
            "the replica state is not the one its lines rebuilt: they give {expected}, the \
             checkpoint holds {actual}"
        )));
    }
    let durable = domain.durable(&state.durable()).map_err(Failure::plain)?;
    if durable != node.durable {
        let (expected, actual) =
            where_they_differ(&format!("{:?}", node.durable), &format!("{durable:?}"));
        return Err(Failure::plain(format!(
            "durable state {actual}, where the records persisted since the snapshot fold to \
             {expected}"
        )));
    }
    let snapshot = snapshot.as_ref().map(|s| domain.snapshot(s));
    let snapshot = snapshot.transpose().map_err(Failure::plain)?;
    if snapshot != node.snapshot {
        return Err(Failure::plain(format!(
            "snapshot at {:?}, where the replica's last taken or installed is at {:?}",
            snapshot.map(|s| s.applied),
            node.snapshot.as_ref().map(|s| s.applied)
        )));
    }
    Ok(())
}

/// Sets up a replica whose lines begin at checkpoint `logged` (its earlier files deleted):
/// its validation starts there, from the replica as the checkpoint states it, as a start
/// line's recovery would (specs/proposals/step-log-deltas.md, "What a window needs").
fn start_window(
    domain: &Domain,
    node: &mut Node,
    logged: &Logged,
    state: &KvState,
) -> Result<(), Failure> {
    let StepLine::Checkpoint {
        pid,
        wall_ms,
        config,
        snapshot,
        ..
    } = &logged.entry
    else {
        return Ok(());
    };
    let snapshot = snapshot.as_ref().map(|s| domain.snapshot(s));
    let snapshot = snapshot.transpose().map_err(Failure::plain)?;
    let durable = domain.durable(&state.durable()).map_err(Failure::plain)?;
    node.config = Some(config.clone());
    node.pid = Some(*pid);
    node.window = Some((
        logged.process(),
        *wall_ms,
        state.timers.now_ms,
        state.promised,
    ));
    node.timers = state.timers.clone();
    node.executed = reexecuted(domain, state, snapshot.as_ref()).map_err(Failure::plain)?;
    node.executed_view = ExecutedView::of(&domain.cfg, &node.executed);
    node.durable = durable.clone();
    node.snapshot = snapshot.clone();
    node.origin = (durable, snapshot);
    let replica = domain
        .replica(config, state, node, None, &[])
        .map_err(Failure::plain)?;
    let outcome = outcome_after_fold::<Unbounded>(
        &domain.cfg,
        &replica,
        Vec::new(),
        (&node.durable, node.snapshot.as_ref(), 0),
        None,
    )
    .map_err(Failure::plain)?;
    let (_, recorder) = replica.into_parts();
    node.executed = recorder.executed;
    let model = ModelReplica {
        state: outcome.state,
        storage: Some(outcome.persisted),
        timer: outcome.election_timer,
        ballots: VoteBallots::default(),
    };
    node.steps.push(StepTrace {
        sends: Vec::new(),
        model_after: Some(model.clone()),
    });
    node.model = Some(model);
    Ok(())
}

/// A model replica state the start handler overwrites (the model starts every replica from
/// its storage alone).
fn initial_placeholder() -> ReplicaState<Unbounded> {
    ReplicaState::empty()
}

/// How many of the persisted records the recovered state holds, and the first step whose
/// snapshot it does not: recovery starts from `snapshot` (one the replica took or installed,
/// or none: the empty state) and folds the records persisted after it; the longest prefix
/// that folds to `recovered`, which must end at a step boundary. The snapshots after the one
/// recovery started from were never durable (a crash came first) and are forgotten.
fn surviving_prefix(
    node: &mut Node,
    recovered: &Durable<Op>,
    snapshot: Option<&ImplSnapshot>,
) -> Result<(usize, Option<usize>), Failure> {
    // The durable state at each snapshot: the one before with the records between folded
    // in, and the log below the new snapshot dropped.
    let mut bases: Vec<(usize, Durable<Op>, Option<&ImplSnapshot>)> =
        vec![(0, node.origin.0.clone(), node.origin.1.as_ref())];
    for (at, _, s) in &node.snapshots {
        let (from, mut durable, _) = bases[bases.len() - 1].clone();
        for (record, _) in node.records.get(from..*at).unwrap_or_default() {
            // A record that does not fold is reported below, from the base it follows.
            let _ = durable.apply(record.clone());
        }
        durable.accepted.remove_below(s.applied);
        durable.chosen.remove_below(s.applied);
        bases.push((*at, durable, Some(s)));
    }
    let base = bases
        .iter()
        .rposition(|(_, _, s)| *s == snapshot)
        .ok_or_else(|| {
            Failure::plain(format!(
                "recovered from a snapshot at slot {:?} that this replica never took or \
                 installed",
                snapshot.map(|s| s.applied)
            ))
        })?;
    let (from, mut fold, _) = bases[base].clone();
    let mut kept = (*recovered == fold).then_some(from);
    for (k, (record, step)) in node.records.iter().enumerate().skip(from) {
        fold.apply(record.clone()).map_err(|e| {
            Failure::plain(format!(
                "record {k} does not fold onto the ones before it: {e}"
            ))
        })?;
        if *recovered != fold {
            continue;
        }
        let boundary = node.records.get(k + 1).is_none_or(|(_, next)| next != step);
        if !boundary {
            return Err(Failure::plain(format!(
                "the WAL gave back part of one step's records (up to record {k}): a crash \
                 may lose a step's records, but not some of them"
            )));
        }
        kept = Some(k + 1);
    }
    let kept = kept.ok_or_else(|| {
        Failure::plain(format!(
            "the recovered durable state {recovered:?} is what no prefix of the {} records \
             this replica persisted after its snapshot at slot {:?} folds to: the WAL lost or \
             invented records",
            node.records.len() - from,
            snapshot.map(|s| s.applied)
        ))
    })?;
    // `bases[0]` is the origin: snapshot `j` is `bases[j + 1]`.
    let lost = node.snapshots.get(base).map(|(_, step, _)| *step);
    node.snapshots.truncate(base);
    Ok((kept, lost))
}

fn sends_of(effects: &[ImplEffect]) -> Vec<(u32, MessageKey)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg } => Some(message_keys(msg).into_iter().map(|k| (*to, k))),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The logged transition as a [`StepOutcome`]: the abstraction of the state after it, its
/// sends, the durable state with its records folded in (also into `node.durable`), its timer.
fn logged_outcome(
    domain: &Domain,
    node: &mut Node,
    config: &Config,
    state: &KvState,
    effects: Vec<ImplEffect>,
    expected: &StepOutcome<Unbounded>,
    log_before: LogBefore,
) -> Result<StepOutcome<Unbounded>, Failure> {
    let mut below = 0;
    for effect in &effects {
        let dropped =
            fold_durable(&mut node.durable, &mut node.snapshot, effect).map_err(Failure::plain)?;
        below = below.max(dropped);
        match effect {
            Effect::Snapshot(s) => {
                node.executed = s.state_machine.clone();
                node.executed_view = ExecutedView::of(&domain.cfg, &node.executed);
            }
            Effect::Executed { command, .. } => {
                node.executed_view.push(&domain.cfg, command);
                node.executed.push(command.clone());
            }
            _ => {}
        }
    }
    let touched = touched_slots(&effects);
    let replica = domain
        .replica(config, state, node, log_before.memory, &touched)
        .map_err(Failure::plain)?;
    let near = Near {
        outcome: expected,
        snapshot: node.abstracted_snapshot.as_ref(),
        executed: &mut node.executed_view,
        log: log_before.vectors.as_ref(),
    };
    let outcome = outcome_after_fold(
        &domain.cfg,
        &replica,
        effects,
        (&node.durable, node.snapshot.as_ref(), below),
        Some(near),
    );
    let (after, recorder) = replica.into_parts();
    node.executed = recorder.executed;
    node.log_memory = Some((after.accepted, after.chosen));
    let outcome = outcome
        .map_err(|e| Failure::plain(format!("the logged state has no model counterpart: {e}")))?;
    node.log_vectors = Some(LogVectors::of(&outcome, log_before.vectors));
    node.abstracted_snapshot = node
        .snapshot
        .clone()
        .map(|s| (s, outcome.state.snapshot.clone()));
    Ok(outcome)
}

/// What a replica recovered with `state` has executed: its snapshot's commands, then those
/// of its applied prefix above the snapshot, each client's in `seq` order once (the client
/// table's rule, M9).
fn reexecuted(
    domain: &Domain,
    state: &KvState,
    snapshot: Option<&ImplSnapshot>,
) -> Result<Vec<Command<Op>>, String> {
    // Keyed by the model's client ids, which the snapshot's commands carry.
    let mut last_seq: BTreeMap<ClientId, u64> = BTreeMap::new();
    let mut executed = Vec::new();
    let mut from = 0;
    if let Some(s) = snapshot {
        executed = s.state_machine.clone();
        from = s.applied;
        last_seq.extend(executed.iter().map(|c| (c.client, c.seq)));
    }
    for (_, entry) in state.chosen.range(from..state.applied) {
        if let Entry::Command(c) = entry {
            let c = domain.command(c)?;
            let last = last_seq.entry(c.client).or_insert(0);
            if c.seq > *last {
                *last = c.seq;
                executed.push(c);
            }
        }
    }
    Ok(executed)
}

#[allow(clippy::too_many_arguments)]
fn validate_step(
    domain: &Domain,
    actor: &MultiActor<Unbounded>,
    i: usize,
    node: &mut Node,
    input: &KvInput,
    effects: &[KvEffect],
    state: &KvState,
    log_before: LogBefore,
) -> Result<(), Failure> {
    let timers = std::mem::replace(&mut node.timers, state.timers.clone());
    let Some(before) = node.model.clone() else {
        return Err(Failure::plain(
            "a step before the replica's first start line: the log is incomplete",
        ));
    };
    let config = node
        .config
        .clone()
        .ok_or_else(|| Failure::plain("a step before any start line"))?;
    let input = domain.input(input, node.process).map_err(Failure::plain)?;
    let effects = domain
        .effects(effects, node.process, state.applied)
        .map_err(Failure::plain)?;
    // A failure here is reported after the bookkeeping below, which later steps rely on.
    let now_during = state.timers.now_ms;
    let events = model_events(
        domain,
        &input,
        &before,
        &timers,
        now_during,
        node.clock_offset,
    );
    // Heartbeats and retransmissions are not the model's messages: what they send is checked
    // here, and the rest of the step is compared with the model's.
    let (unmodelled, compared): (Vec<ImplEffect>, Vec<ImplEffect>) = effects
        .iter()
        .cloned()
        .partition(|e| is_unmodelled_send(&input, e));
    let unmodelled_sends = check_unmodelled_sends(&input, &unmodelled, state, domain);
    // `before` is kept for a rejection's trace file; after a stuttering step it is the
    // replica after the step.
    let (mut expected, model_after, kept_before) = match &events {
        Ok(events) if !events.is_empty() => {
            let (expected, after) = model_step(actor, i, &before, events);
            (expected, after, Some(before))
        }
        Ok(_) | Err(_) => (stutter(&before), before, None),
    };
    // A refused run is refused once (M6'), and its slots below the compaction point answered
    // with one snapshot (K7); slot by slot the model sends the same Nack or Snapshot for each
    // slot. One model event never sends two equal ones, so only a run is affected.
    expected
        .sends
        .dedup_by(|a, b| a == b && matches!(a.1, MultiMsg::Nack(..) | MultiMsg::Snapshot(..)));
    let logged = logged_outcome(
        domain, node, &config, state, compared, &expected, log_before,
    );
    node.push_step(&effects, model_after);
    let events = events?;
    unmodelled_sends?;
    compare(&expected, &logged?).map_err(|mut failure| {
        let before = kept_before.or_else(|| node.steps.last()?.model_after.clone());
        failure.seed = before.map(|before| Box::new(rejection_trace::Seed { before, events }));
        failure
    })
}

/// The sends no model message stands for: a leader's heartbeat (H1), retransmitted Accepts
/// and the outstanding confirmation round's re-sent `Confirm` (R1) on a tick.
fn is_unmodelled_send(input: &ImplInput, effect: &ImplEffect) -> bool {
    matches!(
        (input, effect),
        (
            Input::Tick { .. },
            Effect::Send {
                msg: Message::Heartbeat { .. } | Message::Accept { .. } | Message::Confirm { .. },
                ..
            }
        )
    )
}

/// The model events a logged input stands for: a tick is the model's timers the core's
/// `timers` (before the step) had due at it, the election timer (M1) at a replica that does
/// not lead and the catch-up timer (K5) at any; none for the steps the model takes as
/// stuttering steps (a leader's heartbeat and retransmissions, H1 and R1; a heartbeat's
/// receipt, H2). A run of slots (an `Accept`, `Accepted` or `Decide` for several) is its
/// one-slot messages in slot order; requests that arrived together are the requests one by
/// one in `(client, seq)` order. `before` is the receiving replica as the model has it
/// before the step.
fn model_events(
    domain: &Domain,
    input: &ImplInput,
    before: &ModelReplica,
    timers: &Timers,
    now_during: Millis,
    clock_offset: i64,
) -> Result<Vec<ModelEvent>, Failure> {
    // An `Accepted` run carries no entries: what it votes for is the receiver's own proposals
    // at its ballot. A slot where the receiver holds no vote at that ballot is not in flight
    // there (the receiver does not lead at it, or the slot was never proposed, which no
    // follower answers), and the model ignores a vote for it whatever the command: no event.
    // No other message reads them (`msg_to_model`), and only the run's slots: converting every
    // vote since the last compaction at every step was a tenth of validation.
    let votes = match input {
        Input::Message {
            msg: Message::Accepted { slot, count, .. },
            ..
        } => {
            let run = *slot..slot.saturating_add((*count).min(MAX_RUN as u64 + 1));
            votes_to_impl_in::<Unbounded>(&domain.cfg, &before.state.accepted, run)
        }
        _ => SlotMap::new(),
    };
    let deliver = |from: u32, msg: &ImplMessage| -> Result<Vec<ModelEvent>, Failure> {
        let known = match msg {
            Message::Snapshot { state } => {
                Some(domain.model_snapshot(state).map_err(Failure::plain)?)
            }
            _ => None,
        };
        let msgs = msg_to_model_knowing::<Unbounded>(&domain.cfg, msg, &votes, known.as_ref())
            .map_err(Failure::plain)?;
        let src = Id::from(from as usize);
        Ok(msgs
            .into_iter()
            .map(|m| ModelEvent::Deliver(src, m))
            .collect())
    };
    let request = |c: &Command<Op>| {
        let client = domain.cfg.client_id(c.client.0 as usize);
        ModelEvent::Deliver(client, MultiMsg::Request(multi::Cmd(c.op)))
    };
    let leading = matches!(before.state.phase, multi::LeaderPhase::Leading { .. });
    // Time first (L1–L6): the model's clock, one `Clock` tick per millisecond, to where the
    // core's stood during the step. A tick moves it before its timers fire; any other input
    // leaves it where the ticks before it put it, which the log may not show (a tick that
    // changes nothing but the clock is not logged).
    let mut clock = Vec::new();
    if domain.cfg.leases > 0 {
        let to = model_reading(now_during, clock_offset).map_err(Failure::plain)?;
        if to > u64::from(Ticks::MAX) {
            return Err(Failure::plain(format!(
                "clock reading {to} ms is beyond the model's clock ({} ms)",
                Ticks::MAX
            )));
        }
        let ticks = to.saturating_sub(u64::from(before.state.lease.now));
        if ticks > 0 {
            clock.push(ModelEvent::Clock(ticks));
        }
    }
    let events = match input {
        Input::Tick { now_ms } => {
            let due = |at: Option<u64>| at.is_some_and(|at| at <= (*now_ms).max(timers.now_ms));
            let mut events = Vec::new();
            if !leading && due(timers.election_at_ms) {
                events.push(ModelEvent::Timeout(MultiTimer::Election));
            }
            if due(timers.catch_up_at_ms) {
                events.push(ModelEvent::Timeout(MultiTimer::CatchUp));
            }
            events
        }
        Input::Message {
            msg: Message::Heartbeat { .. },
            ..
        } => Vec::new(),
        Input::Compact => vec![ModelEvent::Timeout(MultiTimer::Compact)],
        Input::Message {
            from,
            msg:
                Message::Accepted {
                    ballot,
                    slot,
                    count,
                },
        } => {
            let mut events = Vec::new();
            let in_flight = votes.range(*slot..slot.saturating_add(*count));
            for (at, _) in in_flight.filter(|(_, (b, _))| b == ballot) {
                let one = Message::Accepted {
                    ballot: *ballot,
                    slot: at,
                    count: 1,
                };
                events.extend(deliver(*from, &one)?);
            }
            events
        }
        Input::Message { from, msg } => deliver(*from, msg)?,
        Input::ClientRequest(c) => vec![request(c)],
        Input::ClientRequests(cs) => {
            let mut cs: Vec<&Command<Op>> = cs.iter().collect();
            cs.sort_by_key(|c| c.id());
            cs.into_iter().map(request).collect()
        }
        Input::Read { id, .. } => vec![ModelEvent::Deliver(
            domain.cfg.reader_id(),
            MultiMsg::Read(*id),
        )],
    };
    clock.extend(events);
    Ok(clock)
}

/// The outcome of a transition that changes nothing the model sees.
fn stutter(before: &ModelReplica) -> StepOutcome<Unbounded> {
    StepOutcome {
        state: canonical(before.state.clone()),
        sends: Vec::new(),
        persisted: counted_recovery_view(before.storage.as_ref(), &before.ballots),
        election_timer: before.timer,
    }
}

/// What a tick may send besides the model's messages: a leader's heartbeat (H1, at its
/// ballot), Accepts it proposed at its ballot in slots still in flight and the `Confirm` of
/// its outstanding confirmation round (R1, duplicates).
/// `state` is the replica after the step.
fn check_unmodelled_sends(
    input: &ImplInput,
    effects: &[ImplEffect],
    state: &KvState,
    domain: &Domain,
) -> Result<(), Failure> {
    let leading_at = match state.phase {
        Phase::Leading { .. } => Some(state.promised),
        _ => None,
    };
    for effect in effects {
        let Effect::Send { msg, .. } = effect else {
            continue;
        };
        match (input, msg) {
            (Input::Tick { .. }, Message::Heartbeat { ballot }) if leading_at == Some(*ballot) => {}
            (Input::Tick { .. }, Message::Confirm { ballot, round })
                if leading_at == Some(*ballot)
                    && *round == state.reads.started
                    && state.reads.is_round_outstanding() => {}
            (Input::Tick { .. }, Message::Accept { ballot, .. }) if leading_at == Some(*ballot) => {
                for part in msg.per_slot() {
                    let Message::Accept { slot, entries, .. } = &part else {
                        continue;
                    };
                    let proposed = state
                        .accepted
                        .get(slot)
                        .map(|(b, e)| domain.entry(e).map(|e| (*b, e)))
                        .transpose()
                        .map_err(Failure::plain)?;
                    let in_flight = !state.chosen.contains_key(slot);
                    if !in_flight || proposed != Some((*ballot, entries[0].clone())) {
                        return Err(Failure::plain(format!(
                            "R1: the retransmitted Accept for slot {slot} is not this \
                             leader's proposal in flight there"
                        )));
                    }
                }
            }
            (_, msg) => {
                return Err(Failure::plain(format!(
                    "a tick sent {msg:?}, which neither H1 nor R1 sends"
                )))
            }
        }
    }
    Ok(())
}

/// Where `paxos-node chaos --step-logs` leaves a run's step logs.
pub fn step_logs_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".steps.jsonl"))
        .collect();
    logs.sort();
    Ok(logs)
}
