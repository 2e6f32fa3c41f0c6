//! The node task: the one owner of the [`Replica`], driving it with peer messages, client
//! requests and timers, and performing its effects — records to the group-commit WAL, and
//! everything else only once the records before it are durable.
//!
//! ```text
//!   inbox ─► step ─► Persist records ─────────► one group-commit submission per batch
//!                    other effects ─► held (after: submission n) ─┐
//!   durable(n) ◄── WAL writer thread (fsync) ◄────────────────────┘ release in order:
//!                                         sends to peer queues, replies to waiting clients
//! ```
//!
//! **Persist before you speak.** Every effect of a step waits until the records of that step
//! and of every earlier step are durable, including effects of steps that wrote nothing (a
//! repeated Promise must not overtake the write of the promise it repeats).
//!
//! **Time.** The task makes no protocol decision of its own: the election timer, the leader's
//! heartbeat, retransmission of Accepts and the catch-up request are the core's
//! (`specs/protocol.md`, M1, H1, H2, R1, K5). The task passes its monotonic clock to the core
//! as [`Input::Tick`] (milliseconds since the task started) before each batch of events, and
//! sleeps until [`Replica::next_deadline`] when there is nothing else to do. What it still
//! times on its own is IO: how long it waits for fsyncs at shutdown, and dropping the
//! answers of clients that gave up (specs/service.md, "What the runtime decides").

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::replicated::Replicated;

use super::gate::DurabilityGate;
use super::metrics::{add, inc, Metrics};
use super::step_log::{LineBase, StepLine, StepLog, STEP_LOG_FORMAT};
use super::transport::PeerLink;
use super::wire::{PeerMsg, PeerMsgOf};
use crate::ballot::NodeId;
use crate::multi::mutants::Mutant;
use crate::multi::{
    ClientId, Command, CommandId, Effect, Input, InputOf, Message, Millis, Phase, ReadId, Record,
    Replica, ReplicaEffect, Slot, SnapshotOf, Timers,
};
use crate::storage::replica_log::{encode_records, encode_state_machine};
use crate::storage::{GroupCommitStats, ReplicaGroupCommit, WalError};

/// Events drained from the inbox per batch (one WAL submission covers them all).
pub const EVENTS_PER_BATCH_MAX: usize = 1024;
/// The log line of a snapshot this node took (K1), which `paxos-node chaos` counts.
pub const SNAPSHOT_TAKEN: &str = "snapshot taken: the log below the applied prefix is forgotten";
/// The log line of a snapshot received from a peer and installed (K4).
pub const SNAPSHOT_INSTALLED: &str = "snapshot installed from a peer";
/// How long shutdown waits for in-flight fsyncs.
pub const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node task is told.
pub enum NodeEvent<S: Replicated> {
    /// A message from a peer (already handshaken).
    Peer { from: NodeId, msg: PeerMsgOf<S> },
    /// A client request; answered once its command is executed, or at once with a redirect.
    Client {
        command: Command<S::Op>,
        reply: oneshot::Sender<ClientOutcome<S::Output>>,
    },
    /// A linearizable read through the read index (Q1–Q5): answered from the applied state
    /// once a majority confirmed this leader's ballot after the read arrived, or at once with a
    /// redirect. Nothing is written.
    Read {
        op: S::Op,
        reply: oneshot::Sender<ReadOutcome<S::Output>>,
    },
    /// Runs `read` on the local state machine and the applied point: not linearizable (what
    /// this replica has applied, which may be behind the leader; for debugging and tests).
    ReadLocal(LocalRead<S>),
}

/// A read of the local state machine (see [`NodeEvent::ReadLocal`]).
pub type LocalRead<S> = Box<dyn FnOnce(&S, Slot) + Send>;

impl<S: Replicated> std::fmt::Debug for NodeEvent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeEvent::Peer { from, msg } => write!(f, "Peer {{ from: {from}, msg: {msg:?} }}"),
            NodeEvent::Client { command, .. } => write!(f, "Client {{ command: {command:?} }}"),
            NodeEvent::Read { op, .. } => write!(f, "Read {{ op: {op:?} }}"),
            NodeEvent::ReadLocal(_) => write!(f, "ReadLocal"),
        }
    }
}

/// The answer to a [`NodeEvent::Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome<Output> {
    Done(Output),
    /// The client retried a request older than its last executed one.
    Stale,
    /// This node does not lead; `leader` is the one it knows, if any.
    NotLeader {
        leader: Option<NodeId>,
    },
}

/// The answer to a [`NodeEvent::Read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome<Output> {
    /// The state machine's answer, linearizable.
    Done(Output),
    /// The state machine answers this operation only through the log (it is not a query):
    /// submit it as a command.
    NotAQuery,
    /// This node does not lead, or stopped leading before the read was confirmed; `leader`
    /// is the one it knows, if any.
    NotLeader { leader: Option<NodeId> },
}

/// A read waiting for its answer from the core.
struct ReadWaiter<Output> {
    reply: oneshot::Sender<ReadOutcome<Output>>,
    arrived: Instant,
}

/// What `/status` shows, published after every batch of events.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeStatus {
    pub id: NodeId,
    /// The serving process.
    pub pid: u32,
    pub role: &'static str,
    /// The own ballot `round.id` (the one in use while preparing or leading).
    pub ballot: String,
    pub promised: String,
    /// The leader this node knows (itself when leading).
    pub leader: Option<NodeId>,
    /// Every slot below this is chosen and applied: the commit index (the core applies a slot
    /// as soon as every slot up to it is chosen).
    pub applied: Slot,
    /// Chosen slots held (below and above `applied`).
    pub chosen: u64,
    /// The highest chosen slot; above `applied` when a slot below it is still open.
    pub highest_chosen: Option<Slot>,
    /// The compaction point: the replica's snapshot covers every slot below it, and its log
    /// starts there (K1, K4).
    pub compacted: Slot,
    pub next_slot: Option<Slot>,
    pub pending: usize,
    pub waiting_clients: usize,
    /// Reads waiting at this leader for a confirmation round or for the applied prefix.
    pub waiting_reads: usize,
    /// WAL submissions not yet durable. The core applies a chosen slot within its step, before
    /// the step's records are durable, so `applied` can run ahead of `wal_records`: a reader
    /// that needs both settled waits for this to be 0.
    pub wal_submissions_undurable: u64,
    pub wal_fsyncs: u64,
    pub wal_records: u64,
    pub wal_batches: u64,
    pub wal_batch_records_max: u64,
}

impl NodeStatus {
    pub fn wal_stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            records_written: self.wal_records,
            batches: self.wal_batches,
            fsyncs: self.wal_fsyncs,
            batch_records_max: self.wal_batch_records_max,
        }
    }
}

/// Why the node task stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("write-ahead log failed, the node stops rather than speak without persisting: {0}")]
    Wal(String),
    #[error("cannot write the step log, the node stops rather than leave a gap in it: {0}")]
    StepLog(String),
}

/// An effect waiting to be performed.
type Action<S> = ReplicaEffect<S>;

/// Whether `action` is the answer to read `id`.
fn answers<S: Replicated>(action: &Action<S>, id: ReadId) -> bool {
    matches!(action, Effect::ReadReply { id: read, .. } if *read == id)
}

/// A WAL submission became durable (or failed).
#[derive(Debug)]
struct Durability {
    submission: u64,
    result: Result<(), String>,
    submitted_at: Instant,
    what: Submitted,
}

/// What a WAL submission held.
#[derive(Debug)]
enum Submitted {
    Records,
    /// A snapshot of the applied prefix (`bytes` of state-machine snapshot), after which the
    /// WAL was compacted.
    Snapshot {
        applied: Slot,
        bytes: usize,
    },
}

/// Everything the node task needs at start.
pub struct NodeParts<S: Replicated> {
    pub replica: Replica<S>,
    pub wal: ReplicaGroupCommit<S::Op>,
    pub links: Vec<PeerLink<S::Op, SnapshotOf<S>>>,
    pub metrics: Arc<Metrics>,
    pub status: watch::Sender<NodeStatus>,
    pub inbox: mpsc::Receiver<NodeEvent<S>>,
    /// Where every core step is logged, if anywhere (`serve --step-log`).
    pub step_log: Option<StepLog>,
    /// A seeded bug's core mutant, switched on around every step (`serve --seeded-bug`).
    pub core_mutant: Option<Mutant>,
    /// K1's trigger: snapshot once this many slots are applied past the compaction point
    /// (`limits.snapshot_interval_slots`; 0: never).
    pub snapshot_interval_slots: u64,
    /// The core's clock runs this many parts per million faster than the host's (negative:
    /// slower). 0 in production; `serve --clock-drift-ppm` injects drift for chaos runs.
    pub clock_drift_ppm: i64,
    /// What the replica's start-up step asked to send (L5''s bootstrap confirmation round),
    /// performed when the task starts; its records are already durable.
    pub startup_sends: Vec<Action<S>>,
}

/// The clock the core hears (`Tick { now_ms }`): milliseconds of the host's monotonic clock
/// since the node task started, scaled by `1 + drift_ppm / 10⁶`. Leases (L1–L6) assume
/// every replica's clock rate within `max_clock_drift_ppm` of real time; a drift injected
/// here is how chaos runs test that assumption from both sides of the bound.
#[derive(Clone, Copy, Debug)]
pub struct ProtocolClock {
    origin: tokio::time::Instant,
    /// Parts per million of rate, `1_000_000 + drift_ppm`; at least 1.
    rate_ppm: u128,
}

impl ProtocolClock {
    /// A clock reading 0 now. A drift at or below -10⁶ (a clock that stops or runs
    /// backwards) is taken as the slowest clock that still moves.
    pub fn starting_now(drift_ppm: i64) -> Self {
        let rate = 1_000_000_i128 + i128::from(drift_ppm);
        ProtocolClock {
            origin: tokio::time::Instant::now(),
            rate_ppm: u128::try_from(rate.max(1)).unwrap_or(1),
        }
    }

    pub fn now_ms(&self) -> Millis {
        let micros = self.origin.elapsed().as_micros();
        let ms = micros.saturating_mul(self.rate_ppm) / 1_000_000_000;
        Millis::try_from(ms).unwrap_or(Millis::MAX)
    }

    /// When the host's clock reaches the core's reading `at` (rounded up, so a deadline is
    /// never woken for early).
    pub fn instant_at(&self, at: Millis) -> tokio::time::Instant {
        let micros = (u128::from(at) * 1_000_000_000).div_ceil(self.rate_ppm);
        let after = Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX));
        // A deadline beyond the host clock's range: waking a year on is harmless (a tick that
        // fires nothing changes nothing).
        let year = Duration::from_secs(365 * 24 * 3600);
        self.origin
            .checked_add(after)
            .unwrap_or_else(|| tokio::time::Instant::now() + year)
    }
}

/// Runs `body` with `mutant` switched on in the core (builds with the `mutants` feature; in
/// others no mutant exists to switch on, and `mutant` is always `None`).
pub(crate) fn with_core_mutant<R>(mutant: Option<Mutant>, body: impl FnOnce() -> R) -> R {
    match mutant {
        #[cfg(feature = "mutants")]
        Some(mutant) => crate::multi::mutants::with_mutant(mutant, body),
        _ => body(),
    }
}

pub struct NodeTask<S: Replicated> {
    id: NodeId,
    replica: Replica<S>,
    wal: Option<ReplicaGroupCommit<S::Op>>,
    links: BTreeMap<NodeId, PeerLink<S::Op, SnapshotOf<S>>>,
    metrics: Arc<Metrics>,
    status: watch::Sender<NodeStatus>,
    inbox: mpsc::Receiver<NodeEvent<S>>,
    durable_tx: mpsc::UnboundedSender<Durability>,
    durable_rx: mpsc::UnboundedReceiver<Durability>,
    gate: DurabilityGate<Action<S>>,
    records: Vec<Record<S::Op>>,
    actions: Vec<Action<S>>,
    /// The core's effects of one step; drained after each, so one allocation serves them all.
    effects: Vec<Action<S>>,
    /// Client requests of the events being drained, stepped together once the drain ends, so
    /// that what they make the leader propose goes out as one run.
    requests: Vec<Command<S::Op>>,
    waiters: HashMap<CommandId, Vec<oneshot::Sender<ClientOutcome<S::Output>>>>,
    read_waiters: HashMap<ReadId, ReadWaiter<S::Output>>,
    /// The id the next read gets; reads live only in memory, so ids need only be unique
    /// while this process runs.
    next_read_id: ReadId,
    /// The clock the core is ticked with.
    clock: ProtocolClock,
    /// The leader the core pointed to after the previous step (for the log and a metric).
    leader: Option<NodeId>,
    failure: Option<NodeError>,
    step_log: Option<StepLog>,
    /// What the step log's next line is written against (its previous line's phase-1 votes).
    line_base: LineBase<S::Op>,
    core_mutant: Option<Mutant>,
    snapshot_interval_slots: u64,
    /// The newest snapshot the core asked to make durable (K1, K4) and not yet handed to the
    /// WAL writer. Snapshots only move forward, so a later one replaces an earlier one of the
    /// same batch: it covers everything the earlier one did.
    snapshot_pending: Option<SnapshotOf<S>>,
}

impl<S: Replicated> NodeTask<S> {
    pub fn new(parts: NodeParts<S>) -> Self {
        let (durable_tx, durable_rx) = mpsc::unbounded_channel();
        let links = parts.links.into_iter().map(|l| (l.id, l)).collect();
        // The replica as the start line shows it.
        let line_base = LineBase::started(parts.replica.state());
        let mut task = NodeTask {
            id: parts.replica.id(),
            replica: parts.replica,
            wal: Some(parts.wal),
            links,
            metrics: parts.metrics,
            status: parts.status,
            inbox: parts.inbox,
            durable_tx,
            durable_rx,
            gate: DurabilityGate::default(),
            records: Vec::new(),
            effects: Vec::new(),
            requests: Vec::new(),
            waiters: HashMap::new(),
            read_waiters: HashMap::new(),
            next_read_id: 1,
            clock: ProtocolClock::starting_now(parts.clock_drift_ppm),
            actions: parts.startup_sends,
            leader: None,
            failure: None,
            line_base,
            step_log: parts.step_log,
            core_mutant: parts.core_mutant,
            snapshot_interval_slots: parts.snapshot_interval_slots,
            snapshot_pending: None,
        };
        task.leader = task.replica.leader();
        task.publish();
        task
    }

    /// Runs until `stop` turns true or the WAL fails; then flushes and stops the WAL writer.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), NodeError> {
        // The start-up step's sends: a lost bootstrap round would leave the initial leader
        // without a lease, and its reads waiting, until R1 re-sends it.
        self.flush();
        loop {
            let deadline = self
                .replica
                .next_deadline()
                .map(|at| self.clock.instant_at(at));
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                note = self.durable_rx.recv() => {
                    if let Some(note) = note {
                        self.on_durable(note);
                    }
                }
                event = self.inbox.recv() => {
                    let Some(event) = event else { break };
                    // Deadlines that messages push back are measured from the present.
                    self.tick();
                    self.on_event(event);
                    // With leases every event is stepped at the present, not at the batch's
                    // start: a lease read (L5) must not be answered, nor a grant (L1)
                    // counted, at a reading older than its own step.
                    let leases = self.replica.config().timing.leases();
                    for _ in 0..EVENTS_PER_BATCH_MAX {
                        match self.inbox.try_recv() {
                            Ok(event) => {
                                if leases {
                                    self.tick();
                                }
                                self.on_event(event);
                            }
                            Err(_) => break,
                        }
                    }
                    self.step_requests();
                }
                _ = sleep_until(deadline) => self.on_deadline(),
            }
            self.compact_if_due();
            self.flush();
            if self.step_log.as_ref().is_some_and(StepLog::rotation_due) {
                self.rotate_step_log().await;
            }
            if self.failure.is_some() {
                break;
            }
            self.publish();
        }
        self.shutdown().await
    }

    // ------------------------------------------------------------ events

    fn on_event(&mut self, event: NodeEvent<S>) {
        match event {
            NodeEvent::Peer { from, msg } => self.on_peer(from, msg),
            NodeEvent::Client { command, reply } => self.on_client(command, reply),
            NodeEvent::Read { op, reply } => self.on_read(op, reply),
            NodeEvent::ReadLocal(read) => {
                read(self.replica.state_machine(), self.replica.applied())
            }
        }
    }

    fn on_peer(&mut self, from: NodeId, msg: PeerMsgOf<S>) {
        match msg {
            PeerMsg::Paxos(msg) => self.step(Input::Message { from, msg }),
            // The transport reassembles snapshot transfers; none reaches the node task.
            PeerMsg::SnapshotChunk(_) | PeerMsg::SnapshotAck(_) => {
                tracing::debug!(
                    peer = from,
                    "snapshot transfer message ignored by the node task"
                )
            }
        }
    }

    fn on_client(
        &mut self,
        command: Command<S::Op>,
        reply: oneshot::Sender<ClientOutcome<S::Output>>,
    ) {
        inc(&self.metrics.client_requests);
        if matches!(self.replica.phase(), Phase::Follower) {
            inc(&self.metrics.client_redirects);
            let leader = self.replica.leader();
            let _ = reply.send(ClientOutcome::NotLeader { leader });
            return;
        }
        self.waiters.entry(command.id()).or_default().push(reply);
        self.requests.push(command);
    }

    /// Q1 at a leader; anywhere else the client is sent to the leader (Q1' would leave the read
    /// unanswered, and a candidate cannot answer it before it leads).
    fn on_read(&mut self, op: S::Op, reply: oneshot::Sender<ReadOutcome<S::Output>>) {
        inc(&self.metrics.reads);
        if !self.replica.is_leading() {
            inc(&self.metrics.client_redirects);
            let leader = self.replica.leader();
            let _ = reply.send(ReadOutcome::NotLeader { leader });
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        let arrived = Instant::now();
        self.read_waiters.insert(id, ReadWaiter { reply, arrived });
        let lease_until = self.replica.state().lease.lease_until;
        let retry = lease_until.map(|_| op.clone());
        self.step(Input::Read { id, op });
        // Q1 answers no read in the step it arrives in: an answer there is L5's. The core
        // heard the time before the step and took the answer's state inside it; only a reading
        // after the step shows that moment was inside the lease (a pause between the two, the
        // thread preempted or a long step, would otherwise stretch the lease by its length).
        if !self.actions.iter().any(|action| answers::<S>(action, id)) {
            return;
        }
        match (lease_until, retry) {
            (Some(until), Some(op)) if self.now_ms() >= until => self.withhold_lease_read(id, op),
            _ => inc(&self.metrics.lease_reads),
        }
    }

    /// A lease answer to read `id` whose step ended past the lease: withheld, and the read
    /// stepped again at the present, where it waits for a round (Q1).
    fn withhold_lease_read(&mut self, id: ReadId, op: S::Op) {
        self.actions.retain(|action| !answers::<S>(action, id));
        inc(&self.metrics.lease_reads_withheld);
        let Some(waiter) = self.read_waiters.remove(&id) else {
            return;
        };
        let retry = self.next_read_id;
        self.next_read_id += 1;
        self.read_waiters.insert(retry, waiter);
        self.tick();
        self.step(Input::Read { id: retry, op });
    }

    /// M5 for the requests the drain collected, in one step (one if there was one).
    fn step_requests(&mut self) {
        let mut requests = std::mem::take(&mut self.requests);
        match requests.len() {
            0 => {}
            1 => {
                if let Some(command) = requests.pop() {
                    self.step(Input::ClientRequest(command));
                }
            }
            _ => self.step(Input::ClientRequests(requests)),
        }
    }

    /// The time on the core's clock.
    fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Tells the core the time, if it has moved on since the core last heard it.
    fn tick(&mut self) {
        let now_ms = self.now_ms();
        if now_ms > self.replica.now_ms() {
            self.step(Input::Tick { now_ms });
        }
    }

    /// A core deadline came: tick it, and drop the answers of clients that gave up.
    fn on_deadline(&mut self) {
        self.tick();
        self.waiters.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        self.read_waiters
            .retain(|_, waiter| !waiter.reply.is_closed());
    }

    /// K1 on the runtime's schedule: snapshot the applied prefix once it has grown
    /// `snapshot_interval_slots` past the compaction point.
    fn compact_if_due(&mut self) {
        let interval = self.snapshot_interval_slots;
        let grown = self.replica.applied() - self.replica.compacted();
        if interval > 0 && grown >= interval && self.failure.is_none() {
            self.step(Input::Compact);
        }
    }

    // ------------------------------------------------------------ stepping the core

    fn step(&mut self, input: InputOf<S>) {
        let was_leading = self.replica.is_leading();
        let was_preparing = matches!(self.replica.phase(), Phase::Preparing { .. });
        let tick = matches!(input, Input::Tick { .. });
        let compact = matches!(input, Input::Compact);
        let rounds_before = self.replica.state().reads.started;
        let logged_input = self.step_log.as_ref().map(|_| input.clone());
        // The timers but the clock, to tell a tick that only moves the clock.
        let timers_before = logged_input
            .as_ref()
            .filter(|_| tick)
            .map(|_| self.replica.state().timers.clone());
        let replica = &mut self.replica;
        let mut effects = std::mem::take(&mut self.effects);
        with_core_mutant(self.core_mutant, || replica.step_into(input, &mut effects));
        // A tick that sends nothing and re-arms no timer changes the core's clock and what the
        // clock ends (passed lease deadlines): not worth a line, since the next line's clock
        // says how far it moved. One that re-arms a timer with no effect (an election held
        // back by a grant, L2') is logged, or validation would fire that timer again.
        let quiet_tick = timers_before.is_some_and(|before| {
            let after = &self.replica.state().timers;
            effects.is_empty()
                && Timers {
                    now_ms: after.now_ms,
                    ..before
                } == *after
        });
        let logged_input = logged_input.filter(|_| !quiet_tick);
        if let (Some(log), Some(input)) = (&mut self.step_log, logged_input) {
            let state = self.line_base.line(self.replica.state(), &effects);
            let line = StepLine::step(self.id, input, &effects, state);
            if let Err(e) = log.push(&line) {
                // A validated run with a gap in its log proves nothing: stop, like a WAL failure.
                self.failure = Some(NodeError::StepLog(e.to_string()));
            }
        }
        for effect in effects.drain(..) {
            match effect {
                Effect::Persist(record) => {
                    self.count_record(&record);
                    self.records.push(record);
                }
                Effect::Snapshot(snapshot) => {
                    if compact {
                        inc(&self.metrics.snapshots_taken);
                        tracing::info!(applied = snapshot.applied, "{SNAPSHOT_TAKEN}");
                    } else {
                        inc(&self.metrics.snapshots_installed);
                        tracing::info!(applied = snapshot.applied, "{SNAPSHOT_INSTALLED}");
                    }
                    self.snapshot_pending = Some(snapshot);
                }
                other => {
                    self.count_send(&other, tick);
                    self.actions.push(other);
                }
            }
        }
        self.effects = effects;
        let rounds_after = self.replica.state().reads.started;
        if rounds_after > rounds_before {
            add(&self.metrics.read_rounds, rounds_after - rounds_before);
        }
        self.observe_roles(was_leading, was_preparing);
        if matches!(self.replica.phase(), Phase::Follower) && !self.waiters.is_empty() {
            // Pending commands were dropped (M12): tell their clients to go elsewhere.
            let leader = self.replica.leader();
            for (_, senders) in self.waiters.drain() {
                for sender in senders {
                    let _ = sender.send(ClientOutcome::NotLeader { leader });
                }
            }
        }
        if !self.replica.is_leading() && !self.read_waiters.is_empty() {
            // The core dropped its waiting reads (M12). An answer already held for durability
            // finds no waiter: the client retries at the leader, which is still linearizable.
            let leader = self.replica.leader();
            for (_, waiter) in self.read_waiters.drain() {
                let _ = waiter.reply.send(ReadOutcome::NotLeader { leader });
            }
        }
    }

    /// Logs and counts what the step did to the roles: an election started, leadership won
    /// or lost, another leader followed.
    fn observe_roles(&mut self, was_leading: bool, was_preparing: bool) {
        let leading = self.replica.is_leading();
        let preparing = matches!(self.replica.phase(), Phase::Preparing { .. });
        if preparing && !was_preparing {
            inc(&self.metrics.elections_started);
            tracing::info!(ballot = %self.replica.ballot(), "election timeout: starting phase 1");
        }
        if leading && !was_leading {
            tracing::info!(ballot = %self.replica.ballot(), "leading");
        }
        if was_leading && !leading {
            tracing::info!(promised = %self.replica.promised(), "stepped down");
        }
        let leader = self.replica.leader();
        if leader != self.leader {
            if leading || leader.is_some() {
                inc(&self.metrics.leader_changes);
            }
            if let Some(leader) = leader.filter(|_| !leading) {
                tracing::info!(leader, "following");
            }
            self.leader = leader;
        }
    }

    /// Counts the messages the core decided on a timer or for catch-up.
    fn count_send(&self, effect: &Action<S>, tick: bool) {
        match effect {
            Effect::Send {
                msg: Message::Accept { .. },
                ..
            } if tick => inc(&self.metrics.accept_retransmissions),
            Effect::Send {
                msg: Message::Status { .. },
                ..
            } => inc(&self.metrics.catch_up_requests),
            Effect::Send {
                msg: Message::Snapshot { .. },
                ..
            } => inc(&self.metrics.snapshots_sent),
            _ => {}
        }
    }

    fn count_record(&self, record: &Record<S::Op>) {
        match record {
            Record::Accept { ballot, .. } if ballot.node == self.id => inc(&self.metrics.proposals),
            Record::Chosen { .. } => inc(&self.metrics.slots_chosen),
            Record::ChosenVotes { count, .. } => add(&self.metrics.slots_chosen, *count),
            _ => {}
        }
    }

    // ------------------------------------------------------------ persist, then speak

    /// Submits this batch's records as one group-commit request, then its snapshot if the
    /// core took or installed one, and holds its other effects until what was submitted (and
    /// every earlier submission) is durable.
    fn flush(&mut self) {
        // The batch's step lines go out before any of its effects (specs/trace-format.md): a
        // log that cannot be written stops the node before it speaks, like a crash.
        if let Some(log) = &mut self.step_log {
            if let Err(e) = log.flush() {
                self.failure = Some(NodeError::StepLog(e.to_string()));
            }
        }
        if matches!(self.failure, Some(NodeError::StepLog(_))) {
            self.records.clear();
            self.actions.clear();
            self.snapshot_pending = None;
            return;
        }
        if !self.records.is_empty() {
            let records = std::mem::take(&mut self.records);
            match encode_records(&records) {
                Ok(payloads) => self.submit(payloads, records.len()),
                Err(e) => {
                    self.failure = Some(NodeError::Wal(format!("cannot encode records: {e}")))
                }
            }
        }
        if let Some(snapshot) = self.snapshot_pending.take() {
            self.submit_snapshot(&snapshot);
        }
        let actions = std::mem::take(&mut self.actions);
        self.gate.hold(actions);
        self.release();
    }

    fn submit(&mut self, payloads: Vec<Vec<u8>>, records: usize) {
        let Some(wal) = &self.wal else {
            self.failure = Some(NodeError::Wal("the WAL is closed".into()));
            return;
        };
        let done = Self::gated(&mut self.gate, &self.durable_tx, Submitted::Records);
        self.metrics.wal_batch_records.observe(records as f64);
        wal.group_commit().submit_with(payloads, done);
    }

    /// Opens a gate submission for `what`: effects held from now on wait for it. Returns the
    /// WAL writer's callback, which reports it durable (or failed) to the node task.
    fn gated<T>(
        gate: &mut DurabilityGate<Action<S>>,
        durable_tx: &mpsc::UnboundedSender<Durability>,
        what: Submitted,
    ) -> impl FnOnce(Result<T, WalError>) + Send + 'static {
        let submission = gate.submit();
        let tx = durable_tx.clone();
        let submitted_at = Instant::now();
        move |result| {
            let result = result.map(|_| ()).map_err(|e| e.to_string());
            let _ = tx.send(Durability {
                submission,
                result,
                submitted_at,
                what,
            });
        }
    }

    /// Hands `snapshot` to the WAL writer, after every record submitted so far: the file
    /// holds the applied state and the replica's durable state now, which is the fold of
    /// exactly those records, and the WAL below it is compacted once it is durable.
    fn submit_snapshot(&mut self, snapshot: &SnapshotOf<S>) {
        let Some(wal) = &self.wal else {
            self.failure = Some(NodeError::Wal("the WAL is closed".into()));
            return;
        };
        let state_machine = match encode_state_machine(snapshot.as_ref()) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.failure = Some(NodeError::Wal(format!("cannot encode the snapshot: {e}")));
                return;
            }
        };
        let what = Submitted::Snapshot {
            applied: snapshot.applied,
            bytes: state_machine.len(),
        };
        let done = Self::gated(&mut self.gate, &self.durable_tx, what);
        let durable = self.replica.durable();
        let queued = wal.snapshot_with(snapshot.applied, &state_machine, &durable, done);
        if let Err(e) = queued {
            self.failure = Some(NodeError::Wal(e.to_string()));
        }
    }

    fn on_durable(&mut self, note: Durability) {
        if let Err(e) = note.result {
            tracing::error!(error = %e, "WAL write failed");
            self.failure = Some(NodeError::Wal(e));
            return;
        }
        let latency = note.submitted_at.elapsed();
        match note.what {
            Submitted::Records => self.metrics.wal_commit_latency.observe_duration(latency),
            Submitted::Snapshot { applied, bytes } => {
                self.metrics
                    .snapshot_write_latency
                    .observe_duration(latency);
                add(&self.metrics.snapshot_bytes_written, bytes as u64);
                tracing::info!(applied, bytes, ?latency, "snapshot durable, WAL compacted");
            }
        }
        self.gate.durable(note.submission);
        self.release();
    }

    /// Performs held effects, oldest first, while what they wait for is durable.
    fn release(&mut self) {
        for action in self.gate.ready() {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action<S>) {
        match action {
            Effect::Send { to, msg } => self.send_now(to, PeerMsg::Paxos(msg)),
            Effect::Executed { .. } => inc(&self.metrics.commands_executed),
            Effect::Reply {
                client,
                seq,
                output,
            } => self.reply(client, seq, output),
            Effect::ReadReply { id, output } => self.answer_read(id, output),
            Effect::Persist(_) | Effect::Snapshot(_) => {}
        }
    }

    fn reply(&mut self, client: ClientId, seq: u64, output: Option<S::Output>) {
        let Some(senders) = self.waiters.remove(&(client, seq)) else {
            return;
        };
        let outcome = match output {
            Some(output) => ClientOutcome::Done(output),
            None => ClientOutcome::Stale,
        };
        for sender in senders {
            let _ = sender.send(outcome.clone());
        }
    }

    fn answer_read(&mut self, id: ReadId, output: Option<S::Output>) {
        // Gone: its client gave up, or the node stepped down since (the client was redirected).
        let Some(waiter) = self.read_waiters.remove(&id) else {
            return;
        };
        inc(&self.metrics.reads_answered);
        self.metrics
            .read_latency
            .observe_duration(waiter.arrived.elapsed());
        let outcome = match output {
            Some(output) => ReadOutcome::Done(output),
            None => ReadOutcome::NotAQuery,
        };
        let _ = waiter.reply.send(outcome);
    }

    fn send_now(&self, to: NodeId, msg: PeerMsgOf<S>) {
        let Some(link) = self.links.get(&to) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = link.sender.try_send(msg) {
            inc(&self.metrics.peer_messages_dropped);
            tracing::debug!(peer = to, "peer queue full: message dropped");
        }
    }

    // ------------------------------------------------------------ status and shutdown

    fn publish(&self) {
        let stats = self
            .wal
            .as_ref()
            .map(|w| w.group_commit().stats())
            .unwrap_or_default();
        let next_slot = match self.replica.phase() {
            Phase::Leading { next_slot, .. } => Some(*next_slot),
            _ => None,
        };
        let status = NodeStatus {
            id: self.id,
            pid: std::process::id(),
            role: self.replica.phase().name(),
            ballot: self.replica.ballot().to_string(),
            promised: self.replica.promised().to_string(),
            leader: self.replica.leader(),
            applied: self.replica.applied(),
            chosen: self.replica.chosen().len() as u64,
            highest_chosen: self.replica.chosen().last_slot(),
            compacted: self.replica.compacted(),
            next_slot,
            pending: self.replica.pending().count(),
            waiting_clients: self.waiters.len(),
            waiting_reads: self.read_waiters.len(),
            wal_submissions_undurable: self.gate.undurable(),
            wal_fsyncs: stats.fsyncs,
            wal_records: stats.records_written,
            wal_batches: stats.batches,
            wal_batch_records_max: stats.batch_records_max,
        };
        self.status.send_replace(status);
    }

    /// Closes the step log's file and begins the next with a checkpoint line, once every
    /// submission to the WAL is durable: the checkpoint's state then says what the storage
    /// holds (its persisted fields and snapshot), which a reader that starts from it needs.
    /// The node waits for one group commit at most, once per segment.
    async fn rotate_step_log(&mut self) {
        while self.failure.is_none() && self.gate.outstanding() {
            match self.durable_rx.recv().await {
                Some(note) => self.on_durable(note),
                None => break,
            }
        }
        if self.failure.is_some() {
            return;
        }
        let Some(log) = &mut self.step_log else {
            return;
        };
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let checkpoint: StepLine<S::Op, S::Output, SnapshotOf<S>> = StepLine::Checkpoint {
            format: STEP_LOG_FORMAT.to_string(),
            node: self.id,
            pid: std::process::id(),
            segment: log.next_segment(),
            wall_ms,
            config: self.replica.config().clone(),
            snapshot: self.replica.snapshot().cloned(),
            state: Box::new(self.replica.state().clone()),
        };
        match log.rotate(&checkpoint) {
            Ok(()) => self.line_base = LineBase::started(self.replica.state()),
            Err(e) => self.failure = Some(NodeError::StepLog(e.to_string())),
        }
    }

    /// Finishes in-flight fsyncs (bounded), performs what they release, closes the peer
    /// queues and stops the WAL writer (which commits anything still queued).
    async fn shutdown(mut self) -> Result<(), NodeError> {
        self.flush();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH_TIMEOUT;
        while self.failure.is_none() && self.gate.outstanding() {
            match tokio::time::timeout_at(deadline, self.durable_rx.recv()).await {
                Ok(Some(note)) => self.on_durable(note),
                _ => break,
            }
        }
        self.publish();
        self.links.clear();
        self.waiters.clear();
        self.read_waiters.clear();
        if let Some(wal) = self.wal.take() {
            let stopped = tokio::task::spawn_blocking(move || wal.shutdown()).await;
            match stopped {
                Ok(Ok(_)) => tracing::info!("write-ahead log closed"),
                Ok(Err(e)) => tracing::error!(error = %e, "closing the write-ahead log"),
                Err(e) => tracing::error!(error = %e, "WAL shutdown task failed"),
            }
        }
        match self.failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use crate::multi::{Entry, KvOp, KvOutput, KvStore};
    use crate::runtime::config::ClusterConfig;
    use crate::runtime::replicated::{recover, NodeOptions, RecoveredReplica};
    use std::sync::atomic::Ordering;

    #[tokio::test(start_paused = true)]
    async fn the_protocol_clock_runs_at_the_injected_drift_and_wakes_deadlines_in_host_time() {
        let host = ProtocolClock::starting_now(0);
        let slow = ProtocolClock::starting_now(-800_000);
        let fast = ProtocolClock::starting_now(250_000);
        tokio::time::advance(Duration::from_millis(1_000)).await;
        assert_eq!(
            (host.now_ms(), slow.now_ms(), fast.now_ms()),
            (1_000, 200, 1_250)
        );
        // The host instant at which each clock reads 500: never before it does.
        let origin = tokio::time::Instant::now() - Duration::from_millis(1_000);
        assert_eq!(host.instant_at(500) - origin, Duration::from_millis(500));
        assert_eq!(slow.instant_at(500) - origin, Duration::from_millis(2_500));
        assert_eq!(fast.instant_at(500) - origin, Duration::from_millis(400));
        assert_eq!(
            ProtocolClock::starting_now(1_000).instant_at(1) - tokio::time::Instant::now(),
            Duration::from_micros(1_000)
        );
        // A clock told to stop still moves (at a millionth of the rate), and a deadline past
        // the host clock's range is woken for a year on, harmlessly.
        let stopped = ProtocolClock::starting_now(-1_000_000);
        tokio::time::advance(Duration::from_secs(1_000)).await;
        assert_eq!(stopped.now_ms(), 1);
        assert!(stopped.instant_at(Millis::MAX) > tokio::time::Instant::now());
    }

    /// Replica `id` of `config` started as `serve` starts it, its WAL in `dir`.
    fn started(
        config: ClusterConfig,
        id: NodeId,
        dir: &tempfile::TempDir,
    ) -> RecoveredReplica<KvStore> {
        let options = NodeOptions::new(config, id, dir.path().to_path_buf());
        recover(&options, KvStore::new()).expect("start")
    }

    /// The initial leader of a 3-replica cluster with leases (lease 200 ms, margin 4 ms), not
    /// running: the test steps it and reads its clock. Replica 1 confirmed its bootstrap
    /// round (L5') at time 0, so it holds a lease until 196 ms.
    fn leased_leader() -> (NodeTask<KvStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ClusterConfig::loopback("t", 3, 7000, 8000);
        config.reads.policy = crate::runtime::config::ReadPolicy::Lease;
        let RecoveredReplica { replica, wal, .. } = started(config, 0, &dir);
        let (_, inbox) = mpsc::channel(16);
        let (status, _) = watch::channel(NodeStatus::default());
        let mut task = NodeTask::new(NodeParts {
            replica,
            wal,
            links: Vec::new(),
            metrics: Arc::new(Metrics::default()),
            status,
            inbox,
            step_log: None,
            core_mutant: None,
            snapshot_interval_slots: 0,
            clock_drift_ppm: 0,
            startup_sends: Vec::new(),
        });
        let confirmed = PeerMsg::Paxos(Message::Confirmed {
            ballot: B10,
            round: 1,
        });
        task.on_peer(1, confirmed);
        assert_eq!(task.replica.state().lease.lease_until, Some(196));
        (task, dir)
    }

    fn get() -> KvOp {
        KvOp::Get { key: "k".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_read_whose_step_ends_inside_the_lease_is_answered_at_arrival() {
        let (mut task, _dir) = leased_leader();
        tokio::time::advance(Duration::from_millis(100)).await;
        task.tick();
        let (reply, mut answer) = oneshot::channel();
        task.on_read(get(), reply);
        task.flush();
        assert!(matches!(answer.try_recv(), Ok(ReadOutcome::Done(_))));
        assert_eq!(task.metrics.lease_reads.load(Ordering::Relaxed), 1);
        assert_eq!(task.metrics.lease_reads_withheld.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_answer_whose_step_ends_past_the_lease_is_withheld_and_the_read_waits() {
        let (mut task, _dir) = leased_leader();
        // The core last heard the time at 0, so L5 answers in the read's step; the clock
        // already reads 500 (as after a pause between the reading and the step).
        tokio::time::advance(Duration::from_millis(500)).await;
        let (reply, mut answer) = oneshot::channel();
        task.on_read(get(), reply);
        task.flush();
        assert!(answer.try_recv().is_err(), "answered past the lease");
        assert_eq!(task.metrics.lease_reads.load(Ordering::Relaxed), 0);
        assert_eq!(task.metrics.lease_reads_withheld.load(Ordering::Relaxed), 1);
        // Stepped again at the present: it waits for the round it started (Q1).
        let reads = &task.replica.state().reads;
        assert_eq!((reads.started, reads.confirmed), (2, 1));
        assert_eq!(task.read_waiters.len(), 1);
        assert_eq!(task.replica.state().lease.lease_until, None);
    }

    /// A node task for replica `id` of a 3-replica cluster, its peers simulated by channels.
    struct Harness {
        inbox: mpsc::Sender<NodeEvent<KvStore>>,
        peers: BTreeMap<NodeId, mpsc::Receiver<PeerMsgOf<KvStore>>>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<(), NodeError>>,
        _dir: tempfile::TempDir,
    }

    fn start(id: NodeId) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ClusterConfig::loopback("t", 3, 7000, 8000);
        let RecoveredReplica { replica, wal, .. } = started(config, id, &dir);
        let mut links = Vec::new();
        let mut peers = BTreeMap::new();
        for peer in (0..3).filter(|&p| p != id) {
            let (sender, receiver) = mpsc::channel(1024);
            let connected = Arc::new(std::sync::atomic::AtomicBool::new(true));
            links.push(PeerLink {
                id: peer,
                sender,
                connected,
                wake: Arc::new(tokio::sync::Notify::new()),
                acks: Default::default(),
            });
            peers.insert(peer, receiver);
        }
        let (inbox, inbox_rx) = mpsc::channel(1024);
        let (status, _) = watch::channel(NodeStatus::default());
        let task = NodeTask::new(NodeParts {
            replica,
            wal,
            links,
            metrics: Arc::new(Metrics::default()),
            status,
            inbox: inbox_rx,
            step_log: None,
            core_mutant: None,
            snapshot_interval_slots: 0,
            clock_drift_ppm: 0,
            startup_sends: Vec::new(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(task.run(stop_rx));
        Harness {
            inbox,
            peers,
            stop,
            task,
            _dir: dir,
        }
    }

    impl Harness {
        /// The next message to `peer` that is not a heartbeat.
        async fn next_to(&mut self, peer: NodeId) -> PeerMsgOf<KvStore> {
            let receiver = self.peers.get_mut(&peer).expect("peer");
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
                    .await
                    .expect("a message in time")
                    .expect("queue open");
                if !matches!(msg, PeerMsg::Paxos(Message::Heartbeat { .. })) {
                    return msg;
                }
            }
        }

        async fn stop(self) {
            self.stop.send_replace(true);
            let result = self.task.await.expect("task");
            assert!(result.is_ok(), "{result:?}");
        }
    }

    fn put(seq: u64) -> Command<KvOp> {
        Command {
            client: ClientId(1),
            seq,
            op: KvOp::Put {
                key: "k".into(),
                value: format!("v{seq}"),
            },
        }
    }

    const B10: Ballot = Ballot { round: 1, node: 0 };

    #[tokio::test]
    async fn the_leader_answers_its_client_once_a_majority_accepted() {
        let mut node = start(0);
        let (reply, answer) = oneshot::channel();
        let command = put(1);
        let event = NodeEvent::Client {
            command: command.clone(),
            reply,
        };
        node.inbox.send(event).await.expect("send");
        let entry = Entry::Command(command);
        let accept = PeerMsg::Paxos(Message::Accept {
            ballot: B10,
            slot: 0,
            entries: vec![entry.clone()],
        });
        assert_eq!(node.next_to(1).await, accept);
        assert_eq!(node.next_to(2).await, accept);
        let accepted = Message::Accepted {
            ballot: B10,
            slot: 0,
            count: 1,
        };
        let event = NodeEvent::Peer {
            from: 2,
            msg: PeerMsg::Paxos(accepted),
        };
        node.inbox.send(event).await.expect("send");
        let outcome = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("in time")
            .expect("answered");
        assert_eq!(outcome, ClientOutcome::Done(KvOutput::Value(None)));
        let decide = PeerMsg::Paxos(Message::Decide {
            slot: 0,
            entries: vec![entry],
        });
        assert_eq!(node.next_to(1).await, decide);
        assert_eq!(node.next_to(2).await, decide);
        node.stop().await;
    }

    #[tokio::test]
    async fn the_leader_re_sends_an_accept_left_unanswered_for_a_retransmit_interval() {
        let mut node = start(0);
        let (reply, _answer) = oneshot::channel();
        let command = put(1);
        let event = NodeEvent::Client {
            command: command.clone(),
            reply,
        };
        node.inbox.send(event).await.expect("send");
        let accept = PeerMsg::Paxos(Message::Accept {
            ballot: B10,
            slot: 0,
            entries: vec![Entry::Command(command)],
        });
        let sent = Instant::now();
        assert_eq!(node.next_to(1).await, accept);
        assert_eq!(node.next_to(1).await, accept, "the duplicate");
        // In flight at two checks one retransmit interval (200 ms) apart.
        assert!(sent.elapsed() >= Duration::from_millis(150));
        assert_eq!(node.next_to(2).await, accept);
        assert_eq!(node.next_to(2).await, accept);
        node.stop().await;
    }

    async fn read(node: &Harness, key: &str) -> oneshot::Receiver<ReadOutcome<KvOutput>> {
        let (reply, answer) = oneshot::channel();
        let op = KvOp::Get { key: key.into() };
        node.inbox
            .send(NodeEvent::Read { op, reply })
            .await
            .expect("send");
        answer
    }

    async fn answered<T>(answer: oneshot::Receiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("in time")
            .expect("answered")
    }

    #[tokio::test]
    async fn the_leader_answers_a_read_once_a_majority_confirmed_and_writes_nothing() {
        let mut node = start(0);
        let mut first = read(&node, "k").await;
        let confirm = PeerMsg::Paxos(Message::Confirm {
            ballot: B10,
            round: 1,
        });
        assert_eq!(node.next_to(1).await, confirm);
        assert_eq!(node.next_to(2).await, confirm);
        // A read arriving while round 1 is out waits for round 2 (Q1).
        let mut second = read(&node, "k").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(first.try_recv().is_err(), "answered before confirmation");
        let confirmed = |round| NodeEvent::Peer {
            from: 2,
            msg: PeerMsg::Paxos(Message::Confirmed { ballot: B10, round }),
        };
        node.inbox.send(confirmed(1)).await.expect("send");
        assert_eq!(
            answered(first).await,
            ReadOutcome::Done(KvOutput::Value(None))
        );
        assert_eq!(
            node.next_to(2).await,
            PeerMsg::Paxos(Message::Confirm {
                ballot: B10,
                round: 2
            })
        );
        assert!(second.try_recv().is_err(), "answered by round 1");
        node.inbox.send(confirmed(2)).await.expect("send");
        assert_eq!(
            answered(second).await,
            ReadOutcome::Done(KvOutput::Value(None))
        );
        node.stop().await;
    }

    #[tokio::test]
    async fn a_leader_that_steps_down_turns_its_waiting_reads_away() {
        let mut node = start(0);
        let answer = read(&node, "k").await;
        let _confirm = node.next_to(1).await;
        // Replica 2 promised a higher ballot: it refuses the confirmation (Q2'), and the
        // leader steps down (M10) without answering from a ballot that may be superseded.
        let promised = Ballot { round: 2, node: 2 };
        let nack = NodeEvent::Peer {
            from: 2,
            msg: PeerMsg::Paxos(Message::Nack {
                ballot: B10,
                promised,
            }),
        };
        node.inbox.send(nack).await.expect("send");
        // A Nack names a ballot, not a leader anyone has heard from: no redirect target yet.
        assert_eq!(
            answered(answer).await,
            ReadOutcome::NotLeader { leader: None }
        );
        node.stop().await;
    }

    #[tokio::test]
    async fn a_follower_redirects_and_catches_up_from_the_leaders_decides() {
        let mut node = start(1);
        let (reply, answer) = oneshot::channel();
        let event = NodeEvent::Client {
            command: put(1),
            reply,
        };
        node.inbox.send(event).await.expect("send");
        let leader = Some(0);
        assert_eq!(
            answer.await.expect("answered"),
            ClientOutcome::NotLeader { leader }
        );
        let reading = read(&node, "k").await;
        assert_eq!(answered(reading).await, ReadOutcome::NotLeader { leader });
        let heartbeat = PeerMsg::Paxos(Message::Heartbeat { ballot: B10 });
        let event = NodeEvent::Peer {
            from: 0,
            msg: heartbeat,
        };
        node.inbox.send(event).await.expect("send");
        assert_eq!(
            node.next_to(0).await,
            PeerMsg::Paxos(Message::Status { applied: 0 })
        );
        let catch_up = Message::CatchUp {
            entries: (1..=2)
                .map(|seq| (seq - 1, Entry::Command(put(seq))))
                .collect(),
        };
        let event = NodeEvent::Peer {
            from: 0,
            msg: PeerMsg::Paxos(catch_up),
        };
        node.inbox.send(event).await.expect("send");
        let (reply, answer) = oneshot::channel();
        let read = Box::new(move |kv: &KvStore, applied| {
            let _ = reply.send((kv.data.get("k").cloned(), applied));
        });
        node.inbox
            .send(NodeEvent::ReadLocal(read))
            .await
            .expect("send");
        assert_eq!(answer.await.expect("answered"), (Some("v2".into()), 2));
        node.stop().await;
    }
}
