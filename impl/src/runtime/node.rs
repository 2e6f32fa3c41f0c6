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
//! repeated Promise must not overtake the write of the promise it repeats). Runtime messages
//! that read replica state (catch-up Decides, retransmitted Accepts) wait the same way.
//! Timer effects take effect at once: they are not messages.
//!
//! **Timers.** The election timer is armed exactly when the replica is not leading (the core's
//! rule); its delay is drawn from `[min, max)` with the seeded RNG, again after each firing, and
//! pushed back whenever the leader is heard from (a heartbeat or an Accept at the promised
//! ballot) or a higher ballot is promised. The core has no heartbeat, and proposing no-ops
//! would cost a slot and an fsync per beat on every replica, so a leader sends a runtime
//! [`PeerMsg::Heartbeat`] every `heartbeat_interval` instead: a failure detector outside the
//! protocol, which the model represents by letting the timer fire at any time.
//!
//! **Liveness helpers.** A follower whose applied prefix is behind the leader's heartbeat (it
//! missed Decides while down or disconnected) steps the core with [`Input::Tick`]: the core's
//! catch-up rules (C1–C3 of `specs/protocol.md`) send `Status` to the leader, whose core
//! answers with the chosen entries the follower lacks, which the follower's core persists and
//! applies. A leader
//! re-sends the `Accept` of a slot in flight for a whole retransmit interval to the replicas
//! that have not accepted it: a duplicate of a message already sent, which the model allows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::config::ClusterConfig;
use super::gate::DurabilityGate;
use super::metrics::{add, inc, Metrics};
use super::step_log::{StepLine, StepLog};
use super::transport::PeerLink;
use super::wire::PeerMsg;
use crate::ballot::{Ballot, NodeId};
use crate::core::mutants::Mutant;
use crate::core::{
    ClientId, Command, CommandId, Effect, Input, KvOp, KvOutput, KvStore, Message, Phase, Record,
    Replica, ReplicaEffect, Slot,
};
use crate::storage::replica_log::encode_records;
use crate::storage::{GroupCommitStats, ReplicaGroupCommit};

/// Events drained from the inbox per batch (one WAL submission covers them all).
pub const EVENTS_PER_BATCH_MAX: usize = 1024;
/// How long shutdown waits for in-flight fsyncs.
pub const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node task is told.
#[derive(Debug)]
pub enum NodeEvent {
    /// A message from a peer (already handshaken).
    Peer { from: NodeId, msg: PeerMsg },
    /// A client request; answered once its command is executed, or at once with a redirect.
    Client {
        command: Command<KvOp>,
        reply: oneshot::Sender<ClientOutcome>,
    },
    /// The local state machine's value for `key`: not linearizable (debugging, tests).
    LocalRead {
        key: String,
        reply: oneshot::Sender<LocalValue>,
    },
}

/// The answer to a [`NodeEvent::Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    Done(KvOutput),
    /// The client retried a request older than its last executed one.
    Stale,
    /// This node does not lead; `leader` is the one it knows, if any.
    NotLeader {
        leader: Option<NodeId>,
    },
}

/// The answer to a [`NodeEvent::LocalRead`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalValue {
    pub value: Option<String>,
    pub applied: Slot,
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
    pub next_slot: Option<Slot>,
    pub pending: usize,
    pub waiting_clients: usize,
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
#[derive(Debug)]
enum Action {
    Core(ReplicaEffect<KvStore>),
    Send { to: NodeId, msg: PeerMsg },
}

/// A WAL submission became durable (or failed).
#[derive(Debug)]
struct Durability {
    submission: u64,
    result: Result<(), String>,
    submitted_at: Instant,
}

/// Everything the node task needs at start.
pub struct NodeParts {
    pub config: Arc<ClusterConfig>,
    pub replica: Replica<KvStore>,
    pub wal: ReplicaGroupCommit<KvOp>,
    pub links: Vec<PeerLink>,
    pub metrics: Arc<Metrics>,
    pub status: watch::Sender<NodeStatus>,
    pub inbox: mpsc::Receiver<NodeEvent>,
    pub seed: u64,
    /// Where every core step is logged, if anywhere (`serve --step-log`).
    pub step_log: Option<StepLog>,
    /// A seeded bug's core mutant, switched on around every step (`serve --seeded-bug`).
    pub core_mutant: Option<Mutant>,
}

/// Runs `body` with `mutant` switched on in the core (builds with the `mutants` feature; in
/// others no mutant exists to switch on, and `mutant` is always `None`).
pub(crate) fn with_core_mutant<R>(mutant: Option<Mutant>, body: impl FnOnce() -> R) -> R {
    match mutant {
        #[cfg(feature = "mutants")]
        Some(mutant) => crate::core::mutants::with_mutant(mutant, body),
        _ => body(),
    }
}

pub struct NodeTask {
    id: NodeId,
    config: Arc<ClusterConfig>,
    replica: Replica<KvStore>,
    wal: Option<ReplicaGroupCommit<KvOp>>,
    links: BTreeMap<NodeId, PeerLink>,
    metrics: Arc<Metrics>,
    status: watch::Sender<NodeStatus>,
    inbox: mpsc::Receiver<NodeEvent>,
    durable_tx: mpsc::UnboundedSender<Durability>,
    durable_rx: mpsc::UnboundedReceiver<Durability>,
    rng: StdRng,
    gate: DurabilityGate<Action>,
    records: Vec<Record<KvOp>>,
    actions: Vec<Action>,
    /// The core's effects of one step; drained after each, so one allocation serves them all.
    effects: Vec<Effect<KvOp, KvOutput>>,
    /// Client requests of the events being drained, stepped together once the drain ends, so
    /// that what they make the leader propose goes out as one run.
    requests: Vec<Command<KvOp>>,
    waiters: HashMap<CommandId, Vec<oneshot::Sender<ClientOutcome>>>,
    election_deadline: Option<tokio::time::Instant>,
    /// The highest ballot heard from a leader, and when.
    leader_seen: Option<(Ballot, Instant)>,
    last_catch_up: Option<Instant>,
    /// Slots in flight at the previous retransmit check.
    in_flight_before: BTreeSet<Slot>,
    last_retransmit: Instant,
    failure: Option<NodeError>,
    step_log: Option<StepLog>,
    core_mutant: Option<Mutant>,
}

impl NodeTask {
    pub fn new(parts: NodeParts) -> Self {
        let (durable_tx, durable_rx) = mpsc::unbounded_channel();
        let links = parts.links.into_iter().map(|l| (l.id, l)).collect();
        let mut task = NodeTask {
            id: parts.replica.id(),
            config: parts.config,
            replica: parts.replica,
            wal: Some(parts.wal),
            links,
            metrics: parts.metrics,
            status: parts.status,
            inbox: parts.inbox,
            durable_tx,
            durable_rx,
            rng: StdRng::seed_from_u64(parts.seed),
            gate: DurabilityGate::default(),
            records: Vec::new(),
            actions: Vec::new(),
            effects: Vec::new(),
            requests: Vec::new(),
            waiters: HashMap::new(),
            election_deadline: None,
            leader_seen: None,
            last_catch_up: None,
            in_flight_before: BTreeSet::new(),
            last_retransmit: Instant::now(),
            failure: None,
            step_log: parts.step_log,
            core_mutant: parts.core_mutant,
        };
        task.sync_timer(true);
        if let Some(deadline) = &mut task.election_deadline {
            // The first timeout after a start waits one more maximum timeout: a restarted
            // replica gives the leader time to reconnect and be heard before it campaigns.
            *deadline += task.config.timing.election_timeout_range().1;
        }
        task.publish();
        task
    }

    /// Runs until `stop` turns true or the WAL fails; then flushes and stops the WAL writer.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), NodeError> {
        let mut heartbeat = tokio::time::interval(self.config.timing.heartbeat_interval());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.election_deadline;
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
                    self.on_event(event);
                    for _ in 0..EVENTS_PER_BATCH_MAX {
                        match self.inbox.try_recv() {
                            Ok(event) => self.on_event(event),
                            Err(_) => break,
                        }
                    }
                    self.step_requests();
                }
                _ = sleep_until(deadline) => self.on_election_timeout(),
                _ = heartbeat.tick() => self.on_tick(),
            }
            self.flush();
            if self.failure.is_some() {
                break;
            }
            self.publish();
        }
        self.shutdown().await
    }

    // ------------------------------------------------------------ events

    fn on_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Peer { from, msg } => self.on_peer(from, msg),
            NodeEvent::Client { command, reply } => self.on_client(command, reply),
            NodeEvent::LocalRead { key, reply } => {
                let value = self.replica.state_machine().data.get(&key).cloned();
                let applied = self.replica.applied();
                let _ = reply.send(LocalValue { value, applied });
            }
        }
    }

    fn on_peer(&mut self, from: NodeId, msg: PeerMsg) {
        match msg {
            PeerMsg::Paxos(msg) => {
                let accept_ballot = match &msg {
                    Message::Accept { ballot, .. } => Some(*ballot),
                    _ => None,
                };
                self.step(Input::Message { from, msg });
                if accept_ballot == Some(self.replica.promised()) {
                    self.heard_leader(self.replica.promised());
                }
            }
            PeerMsg::Heartbeat { ballot, applied } => self.on_heartbeat(from, ballot, applied),
        }
    }

    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, applied: Slot) {
        if ballot < self.replica.promised() || ballot.node != from {
            return;
        }
        self.heard_leader(ballot);
        let behind = applied > self.replica.applied();
        let now = Instant::now();
        let due = self
            .last_catch_up
            .is_none_or(|at| now.duration_since(at) >= self.config.timing.heartbeat_interval());
        if behind && due {
            self.last_catch_up = Some(now);
            inc(&self.metrics.catch_up_requests);
            // C1: the core reports its applied prefix to the leader it is promised to.
            self.step(Input::Tick);
        }
    }

    fn on_client(&mut self, command: Command<KvOp>, reply: oneshot::Sender<ClientOutcome>) {
        inc(&self.metrics.client_requests);
        if matches!(self.replica.phase(), Phase::Follower) {
            inc(&self.metrics.client_redirects);
            let leader = self.leader();
            let _ = reply.send(ClientOutcome::NotLeader { leader });
            return;
        }
        self.waiters.entry(command.id()).or_default().push(reply);
        self.requests.push(command);
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

    fn on_election_timeout(&mut self) {
        self.step(Input::ElectionTimeout);
        if matches!(self.replica.phase(), Phase::Preparing { .. }) {
            inc(&self.metrics.elections_started);
            tracing::info!(ballot = %self.replica.ballot(), "election timeout: starting phase 1");
        }
        self.sync_timer(true);
    }

    /// Heartbeats when leading, retransmissions, and pruning clients that gave up.
    fn on_tick(&mut self) {
        if self.replica.is_leading() {
            let ballot = self.replica.ballot();
            let applied = self.replica.applied();
            let peers: Vec<NodeId> = self.links.keys().copied().collect();
            for to in peers {
                // Not held: the leader's ballot was durable before it could lead.
                self.send_now(to, PeerMsg::Heartbeat { ballot, applied });
            }
        }
        let now = Instant::now();
        if now.duration_since(self.last_retransmit) >= self.config.timing.retransmit_interval() {
            self.last_retransmit = now;
            self.retransmit();
        }
        self.waiters.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
    }

    /// Re-sends the Accept of every slot in flight since the previous check to the replicas
    /// whose Accepted has not been counted.
    fn retransmit(&mut self) {
        let own = self.replica.ballot();
        let Phase::Leading { votes, .. } = self.replica.phase() else {
            self.in_flight_before.clear();
            return;
        };
        let chosen = self.replica.chosen();
        // Every slot below `applied` is chosen: only the slots from there can be in flight.
        let in_flight: BTreeSet<Slot> = votes
            .range(self.replica.applied()..)
            .map(|(slot, _)| slot)
            .filter(|s| !chosen.contains_key(s))
            .collect();
        let mut resend = Vec::new();
        for slot in in_flight.intersection(&self.in_flight_before) {
            let (Some(voters), Some((ballot, entry))) =
                (votes.get(slot), self.replica.accepted().get(slot))
            else {
                continue;
            };
            if *ballot != own {
                continue;
            }
            for &to in self.links.keys().filter(|id| !voters.contains(**id)) {
                let accept = Message::Accept {
                    ballot: own,
                    slot: *slot,
                    entries: vec![entry.clone()],
                };
                resend.push((to, accept));
            }
        }
        self.in_flight_before = in_flight;
        for (to, accept) in resend {
            inc(&self.metrics.accept_retransmissions);
            self.send(to, PeerMsg::Paxos(accept));
        }
    }

    // ------------------------------------------------------------ stepping the core

    fn step(&mut self, input: Input<KvOp>) {
        let was_leading = self.replica.is_leading();
        let promised_before = self.replica.promised();
        let logged_input = self.step_log.as_ref().map(|_| input.clone());
        let replica = &mut self.replica;
        let mut effects = std::mem::take(&mut self.effects);
        with_core_mutant(self.core_mutant, || replica.step_into(input, &mut effects));
        if let (Some(log), Some(input)) = (&mut self.step_log, logged_input) {
            let line = StepLine::Step {
                node: self.id,
                input,
                effects: effects.clone(),
                state: self.replica.state().clone(),
            };
            if let Err(e) = log.write(&line) {
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
                Effect::SetElectionTimer | Effect::CancelElectionTimer => {}
                other => self.actions.push(Action::Core(other)),
            }
        }
        self.effects = effects;
        let promised = self.replica.promised();
        if promised > promised_before && promised.node != self.id {
            self.heard_leader(promised);
        }
        let leading = self.replica.is_leading();
        if leading && !was_leading {
            inc(&self.metrics.leader_changes);
            tracing::info!(ballot = %self.replica.ballot(), "leading");
        }
        if was_leading && !leading {
            tracing::info!(promised = %promised, "stepped down");
        }
        if matches!(self.replica.phase(), Phase::Follower) && !self.waiters.is_empty() {
            // Pending commands were dropped (M12): tell their clients to go elsewhere.
            let leader = self.leader();
            for (_, senders) in self.waiters.drain() {
                for sender in senders {
                    let _ = sender.send(ClientOutcome::NotLeader { leader });
                }
            }
        }
        self.sync_timer(false);
    }

    fn count_record(&self, record: &Record<KvOp>) {
        match record {
            Record::Accept { ballot, .. } if ballot.node == self.id => inc(&self.metrics.proposals),
            Record::Chosen { .. } => inc(&self.metrics.slots_chosen),
            Record::ChosenVotes { count, .. } => add(&self.metrics.slots_chosen, *count),
            _ => {}
        }
    }

    /// A leader at `ballot` was heard from: push the election deadline back.
    fn heard_leader(&mut self, ballot: Ballot) {
        let changed = self.leader_seen.is_none_or(|(b, _)| b.node != ballot.node);
        if self.leader_seen.is_none_or(|(b, _)| b <= ballot) {
            if changed && ballot.node != self.id {
                inc(&self.metrics.leader_changes);
                tracing::info!(leader = ballot.node, %ballot, "following");
            }
            self.leader_seen = Some((ballot, Instant::now()));
        }
        self.sync_timer(true);
    }

    /// Armed exactly when not leading; `restart` draws a new deadline.
    fn sync_timer(&mut self, restart: bool) {
        if self.replica.is_leading() {
            self.election_deadline = None;
            return;
        }
        if restart || self.election_deadline.is_none() {
            let (min, max) = self.config.timing.election_timeout_range();
            let delay = self.rng.random_range(min..max);
            self.election_deadline = Some(tokio::time::Instant::now() + delay);
        }
    }

    /// The leader to send clients to: this node when leading, else the highest-ballot leader
    /// heard from within an election timeout, else the promised ballot's node.
    pub fn leader(&self) -> Option<NodeId> {
        if self.replica.is_leading() {
            return Some(self.id);
        }
        let fresh = self.config.timing.election_timeout_range().1;
        let seen = self
            .leader_seen
            .filter(|(_, at)| at.elapsed() < fresh)
            .map(|(b, _)| b.node);
        let promised = self.replica.promised().node;
        seen.or(Some(promised)).filter(|&l| l != self.id)
    }

    // ------------------------------------------------------------ persist, then speak

    /// Queues a message behind everything submitted to the WAL so far.
    fn send(&mut self, to: NodeId, msg: PeerMsg) {
        self.actions.push(Action::Send { to, msg });
    }

    /// Submits this batch's records as one group-commit request and holds its other effects
    /// until that request (and every earlier one) is durable.
    fn flush(&mut self) {
        if !self.records.is_empty() {
            let records = std::mem::take(&mut self.records);
            match encode_records(&records) {
                Ok(payloads) => self.submit(payloads, records.len()),
                Err(e) => {
                    self.failure = Some(NodeError::Wal(format!("cannot encode records: {e}")))
                }
            }
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
        let submission = self.gate.submit();
        let tx = self.durable_tx.clone();
        let submitted_at = Instant::now();
        self.metrics.wal_batch_records.observe(records as f64);
        wal.group_commit().submit_with(payloads, move |result| {
            let result = result.map(|_| ()).map_err(|e| e.to_string());
            let _ = tx.send(Durability {
                submission,
                result,
                submitted_at,
            });
        });
    }

    fn on_durable(&mut self, note: Durability) {
        if let Err(e) = note.result {
            tracing::error!(error = %e, "WAL write failed");
            self.failure = Some(NodeError::Wal(e));
            return;
        }
        let latency = note.submitted_at.elapsed();
        self.metrics.wal_commit_latency.observe_duration(latency);
        self.gate.durable(note.submission);
        self.release();
    }

    /// Performs held effects, oldest first, while what they wait for is durable.
    fn release(&mut self) {
        for action in self.gate.ready() {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Send { to, msg } => self.send_now(to, msg),
            Action::Core(Effect::Send { to, msg }) => self.send_now(to, PeerMsg::Paxos(msg)),
            Action::Core(Effect::Executed { .. }) => inc(&self.metrics.commands_executed),
            Action::Core(Effect::Reply {
                client,
                seq,
                output,
            }) => self.reply(client, seq, output),
            Action::Core(_) => {}
        }
    }

    fn reply(&mut self, client: ClientId, seq: u64, output: Option<KvOutput>) {
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

    fn send_now(&self, to: NodeId, msg: PeerMsg) {
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
            leader: self
                .leader()
                .or(self.replica.is_leading().then_some(self.id)),
            applied: self.replica.applied(),
            chosen: self.replica.chosen().len() as u64,
            highest_chosen: self.replica.chosen().last_slot(),
            next_slot,
            pending: self.replica.pending().count(),
            waiting_clients: self.waiters.len(),
            wal_fsyncs: stats.fsyncs,
            wal_records: stats.records_written,
            wal_batches: stats.batches,
            wal_batch_records_max: stats.batch_records_max,
        };
        self.status.send_replace(status);
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
    use crate::core::Entry;
    use crate::storage::{GroupCommitOptions, ReplicaLog, ReplicaLogOptions};

    /// A node task for replica `id` of a 3-replica cluster, its peers simulated by channels.
    struct Harness {
        inbox: mpsc::Sender<NodeEvent>,
        peers: BTreeMap<NodeId, mpsc::Receiver<PeerMsg>>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<(), NodeError>>,
        _dir: tempfile::TempDir,
    }

    fn start(id: NodeId) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Arc::new(ClusterConfig::loopback("t", 3, 7000, 8000));
        let (mut log, _) =
            ReplicaLog::<KvOp>::open(dir.path(), ReplicaLogOptions::default()).expect("open");
        let core = config.core_config(id).expect("core config");
        let (replica, effects) = Replica::new(core, KvStore::new()).expect("replica");
        let records: Vec<_> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Persist(r) => Some(r),
                _ => None,
            })
            .collect();
        log.persist(&records).expect("persist bootstrap");
        let wal = log
            .into_group_commit(GroupCommitOptions::default())
            .expect("group commit");
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
            });
            peers.insert(peer, receiver);
        }
        let (inbox, inbox_rx) = mpsc::channel(1024);
        let (status, _) = watch::channel(NodeStatus::default());
        let task = NodeTask::new(NodeParts {
            config,
            replica,
            wal,
            links,
            metrics: Arc::new(Metrics::default()),
            status,
            inbox: inbox_rx,
            seed: 7,
            step_log: None,
            core_mutant: None,
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
        async fn next_to(&mut self, peer: NodeId) -> PeerMsg {
            let receiver = self.peers.get_mut(&peer).expect("peer");
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
                    .await
                    .expect("a message in time")
                    .expect("queue open");
                if !matches!(msg, PeerMsg::Heartbeat { .. }) {
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
        let heartbeat = PeerMsg::Heartbeat {
            ballot: B10,
            applied: 2,
        };
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
            ballot: B10,
            entries: (1..=2)
                .map(|seq| (seq - 1, Entry::Command(put(seq))))
                .collect(),
            all_applied: 0,
        };
        let event = NodeEvent::Peer {
            from: 0,
            msg: PeerMsg::Paxos(catch_up),
        };
        node.inbox.send(event).await.expect("send");
        let (reply, answer) = oneshot::channel();
        let event = NodeEvent::LocalRead {
            key: "k".into(),
            reply,
        };
        node.inbox.send(event).await.expect("send");
        let value = answer.await.expect("answered");
        assert_eq!(
            value,
            LocalValue {
                value: Some("v2".into()),
                applied: 2
            }
        );
        node.stop().await;
    }
}
