//! A replica of any deterministic state machine, on the network: [`Node::start`] recovers
//! the replica from its WAL, connects it to its peers and runs its node task; a
//! [`NodeHandle`] submits commands and reads the local state. The key-value service
//! (`paxos-node serve`, [`super::serve`]) is one user of it, adding an HTTP API; a Rust
//! program can replicate its own [`StateMachine`] the same way (`impl/examples/ledger.rs`).
//!
//! ```no_run
//! # use paxos_impl::multi::{ClientId, Command, KvOp, KvStore};
//! # use paxos_impl::runtime::config::{Auth, ClusterConfig};
//! # use paxos_impl::runtime::replicated::{Node, NodeOptions};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ClusterConfig::loopback("demo", 3, 17000, 18000);
//! // Replicas prove to each other that they hold the cluster's secret (`paxos-node secret`).
//! config.auth = Some(Auth { secret_file: "/etc/demo/cluster.secret".into() });
//! let options = NodeOptions::new(config, 0, "/var/lib/demo/0".into());
//! let node = Node::start(options, KvStore::new()).await?;
//! let op = KvOp::Put { key: "k".into(), value: "v".into() };
//! let command = Command { client: ClientId(1), seq: 1, op };
//! let outcome = node.handle().submit(command).await?;
//! println!("{outcome:?}");
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::config::{ClusterConfig, ConfigError};
use super::metrics::Metrics;
use super::node::{
    self, ClientOutcome, NodeError, NodeEvent, NodeParts, NodeStatus, NodeTask, ReadOutcome,
};
use super::step_log::{self, Rotation, StepLine, StepLog};
use super::transport::{self, PeerAuth, PeerTls};
use super::{ServeError, INBOX_EVENTS_MAX};
use crate::ballot::NodeId;
use crate::multi::mutants::Mutant;
use crate::multi::{AppliedState, Command, Effect, Replica, ReplicaEffect, Slot, StateMachine};
use crate::storage::replica_log::decode_state_machine;
use crate::storage::{ReplicaGroupCommit, ReplicaLog, ReplicaLogError};

/// What crosses the wire, the WAL and the step log: a state machine's operations and outputs.
pub trait Payload:
    Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<T> Payload for T where
    T: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

/// A state machine the node can replicate: its operations, outputs and snapshots are
/// [`Payload`]s, and it lives in the node task.
pub trait Replicated:
    StateMachine<Op: Payload, Output: Payload, Snapshot: Payload> + Send + 'static
{
}

impl<S> Replicated for S where
    S: StateMachine<Op: Payload, Output: Payload, Snapshot: Payload> + Send + 'static
{
}

/// What a snapshot file's state-machine bytes hold: the replica's applied state (K1, K4).
type SnapshotState<S> = AppliedState<<S as StateMachine>::Snapshot, <S as StateMachine>::Output>;

/// What a replica needs to start.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The cluster: every replica's peer address (client addresses are the key-value
    /// service's; a node started here does not bind them).
    pub config: ClusterConfig,
    pub id: NodeId,
    /// The replica's WAL and snapshots.
    pub data_dir: PathBuf,
    /// Seeds the core's election jitter (logged at start, so a run can be repeated).
    pub seed: u64,
    /// Append every core transition to this file (`paxos-steps/8`), for `paxos-conform
    /// validate`. `None` unless asked for (`serve --step-log`).
    pub step_log: Option<PathBuf>,
    /// When the step log starts a new file (`None`: never).
    pub step_log_rotation: Option<Rotation>,
    /// A core mutant switched on around every step, for the power tests (only builds with
    /// the `mutants` feature have mutants to switch on). `None` in production.
    pub core_mutant: Option<Mutant>,
    /// The core's clock runs this many parts per million off the host's (fault injection,
    /// `serve --clock-drift-ppm`; 0 in production).
    pub clock_drift_ppm: i64,
}

impl NodeOptions {
    /// Replica `id` of `config`, its state in `data_dir`, seed 0, no step log, no mutant.
    pub fn new(config: ClusterConfig, id: NodeId, data_dir: PathBuf) -> Self {
        NodeOptions {
            config,
            id,
            data_dir,
            seed: 0,
            step_log: None,
            step_log_rotation: None,
            core_mutant: None,
            clock_drift_ppm: 0,
        }
    }
}

/// Why a command got no answer from the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    #[error("the node is shutting down")]
    Stopped,
    /// The node dropped the request without an answer (it is stopping, or failed): whether
    /// the command will execute is unknown, so retry it with the same `(client, seq)`.
    #[error("the node dropped the request; retry with the same seq")]
    Dropped,
}

/// Submits commands to a running node and reads its state; cheap to clone.
pub struct NodeHandle<S: Replicated> {
    id: NodeId,
    inbox: mpsc::Sender<NodeEvent<S>>,
    status: watch::Receiver<NodeStatus>,
    metrics: Arc<Metrics>,
    peers: Arc<Vec<(NodeId, Arc<AtomicBool>)>>,
}

impl<S: Replicated> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        NodeHandle {
            id: self.id,
            inbox: self.inbox.clone(),
            status: self.status.clone(),
            metrics: Arc::clone(&self.metrics),
            peers: Arc::clone(&self.peers),
        }
    }
}

impl<S: Replicated> NodeHandle<S> {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Submits `command` and waits until it is executed (with the state machine's output),
    /// found stale, or refused because this node does not lead. A client issues one command
    /// at a time with increasing `seq` and retries with the same `seq`: the replicas'
    /// client table executes it once.
    pub async fn submit(
        &self,
        command: Command<S::Op>,
    ) -> Result<ClientOutcome<S::Output>, Unanswered> {
        self.ask(|reply| NodeEvent::Client { command, reply }).await
    }

    /// A linearizable read of `op`, which must be one the state machine answers without
    /// changing anything ([`StateMachine::query`]): the leader answers once a majority
    /// confirmed its ballot after the read arrived (`specs/protocol.md`, Q1–Q5), and writes
    /// nothing; any other replica answers [`ReadOutcome::NotLeader`]. A read changes nothing,
    /// so the caller may retry it anywhere.
    pub async fn read(&self, op: S::Op) -> Result<ReadOutcome<S::Output>, Unanswered> {
        self.ask(|reply| NodeEvent::Read { op, reply }).await
    }

    /// `read` of this replica's state machine and its applied point. Not linearizable: a
    /// follower, or a leader that was deposed, may be behind (debugging and tests).
    pub async fn read_local<R: Send + 'static>(
        &self,
        read: impl FnOnce(&S, Slot) -> R + Send + 'static,
    ) -> Result<R, Unanswered> {
        self.ask(|reply| {
            NodeEvent::ReadLocal(Box::new(move |state: &S, applied: Slot| {
                let _ = reply.send(read(state, applied));
            }))
        })
        .await
    }

    /// Sends the node task the event `event` makes of a reply channel, and waits for the reply.
    async fn ask<T>(
        &self,
        event: impl FnOnce(oneshot::Sender<T>) -> NodeEvent<S>,
    ) -> Result<T, Unanswered> {
        let (reply, answer) = oneshot::channel();
        self.inbox
            .send(event(reply))
            .await
            .map_err(|_| Unanswered::Stopped)?;
        answer.await.map_err(|_| Unanswered::Dropped)
    }

    /// The node's status after its last batch of events.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Each peer and whether this node's connection to it is up.
    pub fn peers(&self) -> &[(NodeId, Arc<AtomicBool>)] {
        &self.peers
    }
}

/// A running replica: its node task, peer listener and outbound connections.
pub struct Node<S: Replicated> {
    handle: NodeHandle<S>,
    stop: Arc<watch::Sender<bool>>,
    stopped: watch::Receiver<bool>,
    task: JoinHandle<Result<(), NodeError>>,
    listener: JoinHandle<()>,
    outbound: Vec<JoinHandle<()>>,
}

impl<S: Replicated> Node<S> {
    /// Recovers replica `options.id` from `options.data_dir` (`state_machine` is its state
    /// before the first command; the WAL's snapshot and records bring it up to date), listens
    /// for peers and starts the node task.
    pub async fn start(options: NodeOptions, state_machine: S) -> Result<Self, ServeError> {
        options.config.validate()?;
        let me = options.config.member(options.id)?.clone();
        let tls = match options.config.peer_tls(options.id)? {
            Some(identity) => Some(PeerTls::new(&identity).map_err(ConfigError::from)?),
            None => {
                tracing::warn!(
                    "no [tls] section: peer connections are plain TCP, readable and forgeable \
                     on the path (paxos-node certs makes certificates)"
                );
                None
            }
        };
        let auth = PeerAuth {
            secret: Arc::new(options.config.peer_secret()?),
            tls,
        };
        let recovered = recover(&options, state_machine)?;
        let peer_listener =
            TcpListener::bind(me.peer_addr)
                .await
                .map_err(|source| ServeError::Bind {
                    what: "peers",
                    addr: me.peer_addr,
                    source,
                })?;
        let NodeOptions {
            config,
            id,
            core_mutant,
            clock_drift_ppm,
            ..
        } = options;
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_EVENTS_MAX);
        let (links, outbound) = transport::start_outbound(&config, &auth, id, &metrics);
        let peers = links
            .iter()
            .map(|l| (l.id, Arc::clone(&l.connected)))
            .collect();
        let listener = transport::start_listener(
            peer_listener,
            Arc::clone(&config),
            auth,
            id,
            inbox_tx.clone(),
            Arc::clone(&metrics),
            &links,
        );
        let (status_tx, status_rx) = watch::channel(NodeStatus::default());
        let task = NodeTask::new(NodeParts {
            replica: recovered.replica,
            wal: recovered.wal,
            links,
            metrics: Arc::clone(&metrics),
            status: status_tx,
            inbox: inbox_rx,
            step_log: recovered.step_log,
            core_mutant,
            snapshot_interval_slots: config.limits.snapshot_interval_slots,
            clock_drift_ppm,
            startup_sends: recovered.startup_sends,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop = Arc::new(stop_tx);
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            let stop_rx = stop_rx.clone();
            async move {
                let result = task.run(stop_rx).await;
                stop.send_replace(true);
                result
            }
        });
        tracing::info!(node = id, peers = %me.peer_addr, "replica running");
        Ok(Node {
            handle: NodeHandle {
                id,
                inbox: inbox_tx,
                status: status_rx,
                metrics,
                peers: Arc::new(peers),
            },
            stop,
            stopped: stop_rx,
            task,
            listener,
            outbound,
        })
    }

    pub fn handle(&self) -> NodeHandle<S> {
        self.handle.clone()
    }

    /// Completes once the node is stopping: asked to by [`Node::shutdown`], or on its own
    /// because its WAL failed.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }

    /// Stops the node: finishes in-flight fsyncs and performs what they release, closes the
    /// peer connections and the WAL. The error is why the node had stopped on its own, if it
    /// had.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.stop.send_replace(true);
        let result = match self.task.await {
            Ok(result) => result.map_err(ServeError::from),
            Err(e) => Err(ServeError::Internal(format!("node task failed: {e}"))),
        };
        self.listener.abort();
        for task in self.outbound {
            // The node task closed the peer queues: each outbound task shuts its connection
            // down and ends, unless it is between dials.
            if tokio::time::timeout(Duration::from_millis(500), task)
                .await
                .is_err()
            {
                tracing::debug!("outbound task still dialling at shutdown");
            }
        }
        tracing::info!(node = self.handle.id, "stopped");
        result
    }
}

/// A replica as its storage left it, ready to run.
pub(crate) struct RecoveredReplica<S: Replicated> {
    pub(crate) replica: Replica<S>,
    pub(crate) wal: ReplicaGroupCommit<S::Op>,
    pub(crate) step_log: Option<StepLog>,
    /// What the start-up step asked to send (L5''s bootstrap confirmation round), for the
    /// node task to perform once it runs.
    pub(crate) startup_sends: Vec<ReplicaEffect<S>>,
}

/// Opens the WAL in `options.data_dir` (created if missing), starts the replica fresh or
/// recovers it (M11), opens the step log with its `start` line, and makes the replica's own
/// start-up records durable before it may speak.
pub(crate) fn recover<S: Replicated>(
    options: &NodeOptions,
    state_machine: S,
) -> Result<RecoveredReplica<S>, ServeError> {
    let id = options.id;
    let mut core_config = options.config.core_config(id)?;
    core_config.timing.jitter_seed = options.seed;
    let data_dir = &options.data_dir;
    let dir = data_dir.display().to_string();
    std::fs::create_dir_all(data_dir).map_err(|source| ServeError::DataDir {
        dir: dir.clone(),
        source,
    })?;
    let storage_error = |source| ServeError::Storage {
        dir: dir.clone(),
        source,
    };
    let (mut log, recovered) =
        ReplicaLog::<S::Op>::open(data_dir, options.config.limits.replica_log())
            .map_err(storage_error)?;
    if let Some(torn) = &recovered.torn_tail {
        tracing::warn!(?torn, "truncated a torn final WAL record");
    }
    let fresh = recovered.records_replayed == 0 && recovered.snapshot.is_none();
    let applied_state = match &recovered.snapshot {
        Some(snapshot) => {
            let decoded = decode_state_machine::<SnapshotState<S>>(&snapshot.state_machine);
            let state = decoded.map_err(|source| {
                storage_error(ReplicaLogError::CorruptSnapshot {
                    file: snapshot.path.clone(),
                    source,
                })
            })?;
            Some(state)
        }
        None => None,
    };
    let recovered_durable = options.step_log.as_ref().map(|_| recovered.durable.clone());
    let recovered_snapshot = options
        .step_log
        .as_ref()
        .and(applied_state.clone())
        .map(Arc::new);
    // With leases, a follower with nothing on disk may be one that granted leases, crashed
    // before it ever wrote a record (answering a round writes nothing), and restarted: a
    // first start cannot be told from that, so every follower's first start recovers too and
    // takes L6's grant (the model's crash at once after start, with leases, reaches the same
    // state). The initial leader's first start writes its promise before it speaks.
    let leases_follower = core_config.timing.leases() && id != core_config.initial_leader;
    let (replica, effects) = node::with_core_mutant(options.core_mutant, || {
        if fresh && !leases_follower {
            Replica::new(core_config.clone(), state_machine)
        } else {
            Replica::recover_from(
                core_config.clone(),
                recovered.durable,
                applied_state,
                state_machine,
                // The node's clock starts now (its origin), and L6 counts from it.
                0,
            )
        }
    })
    .map_err(|e| ServeError::Internal(e.to_string()))?;
    let step_log = match (&options.step_log, recovered_durable) {
        (Some(path), Some(recovered)) => {
            let log_error = |source| ServeError::StepLog {
                file: path.display().to_string(),
                source,
            };
            let mut log =
                StepLog::open_rotating(path, options.step_log_rotation).map_err(log_error)?;
            log.write(&StepLine::Start {
                format: step_log::STEP_LOG_FORMAT.to_string(),
                node: id,
                pid: std::process::id(),
                config: core_config,
                recovered,
                snapshot: recovered_snapshot,
                effects: effects.clone(),
                state: Box::new(replica.state().clone()),
            })
            .map_err(log_error)?;
            Some(log)
        }
        _ => None,
    };
    let (mut records, mut startup_sends) = (Vec::new(), Vec::new());
    for effect in effects {
        match effect {
            Effect::Persist(record) => records.push(record),
            other => startup_sends.push(other),
        }
    }
    log.persist(&records).map_err(storage_error)?;
    tracing::info!(
        node = id,
        fresh,
        records_replayed = recovered.records_replayed,
        snapshot_applied = ?recovered.snapshot.as_ref().map(|s| s.applied),
        applied = replica.applied(),
        promised = %replica.promised(),
        role = replica.phase().name(),
        seed = options.seed,
        "replica started"
    );
    let wal = log
        .into_group_commit(options.config.limits.group_commit())
        .map_err(storage_error)?;
    Ok(RecoveredReplica {
        replica,
        wal,
        step_log,
        startup_sends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi::KvStore;
    use crate::runtime::config::ReadPolicy;

    /// With leases, a follower whose disk holds nothing (its first start, or a restart after
    /// it granted leases and wrote nothing) starts with L6's grant; the initial leader, whose
    /// first start writes its promise before it speaks, and every replica without leases do
    /// not.
    #[test]
    fn a_follower_with_an_empty_disk_starts_under_l6_only_with_leases() {
        for (policy, id, granted) in [
            (ReadPolicy::Lease, 1, true),
            (ReadPolicy::Lease, 0, false),
            (ReadPolicy::ReadIndex, 1, false),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut config = ClusterConfig::loopback("t", 3, 7000, 8000);
            config.reads.policy = policy;
            let options = NodeOptions::new(config, id, dir.path().to_path_buf());
            let started = recover(&options, KvStore::new()).expect("start");
            let lease = started.replica.state().lease;
            assert_eq!(
                lease.grant_until.is_some(),
                granted,
                "{policy:?}, node {id}"
            );
            // A restart: with leases every replica recovers under L6 (the follower's disk
            // still empty, the leader's holding its promise).
            drop(started);
            let again = recover(&options, KvStore::new()).expect("restart");
            let lease = again.replica.state().lease;
            let leases = policy == ReadPolicy::Lease;
            assert_eq!(lease.grant_until.is_some(), leases, "{policy:?}, node {id}");
        }
    }
}
