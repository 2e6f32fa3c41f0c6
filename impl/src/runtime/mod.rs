//! The networked service: the [`node`] task drives the sans-IO core with real timers, the
//! group-commit WAL and the peer [`transport`]; [`http`] serves clients; [`serve`] wires them
//! together for `paxos-node serve`.
//!
//! ```text
//!   peers ──TCP frames──► transport::Inbound ─┐
//!   clients ──HTTP/JSON──► http handlers ─────┼─► node inbox ─► NodeTask ─► Replica::step
//!   timers (election, heartbeat, retransmit) ─┘        │
//!                      records ─► GroupCommit (fsync) ─┤ durable ─► sends, client replies
//!                                                      └─► transport::Outbound ─TCP─► peers
//! ```

pub mod auth;
pub mod client;
pub mod config;
pub mod gate;
pub mod http;
pub mod idle;
pub mod metrics;
pub mod node;
pub mod step_log;
pub mod transport;
pub mod wire;

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::ballot::NodeId;
use crate::multi::{KvOp, KvStore, Replica};
use crate::storage::{ReplicaLog, ReplicaLogError, ReplicaLogOptions};
use config::ClusterConfig;
use metrics::Metrics;
use node::{NodeParts, NodeStatus, NodeTask};
use step_log::{StepLine, StepLog};

/// Events waiting for the node task; senders (peer readers, HTTP handlers) wait when full.
pub const INBOX_EVENTS_MAX: usize = 16_384;
/// How long shutdown waits for HTTP requests in flight.
pub const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What `paxos-node serve` needs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub config: ClusterConfig,
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Seeds the election-timeout RNG (logged at start, so a run can be repeated).
    pub seed: u64,
    /// A deliberate bug, for showing that the chaos harness catches one (`paxos-node serve
    /// --seeded-bug`, only in builds with the `mutants` feature). `None` in production.
    pub seeded_bug: Option<SeededBug>,
    /// Append every core transition to this file (`paxos-steps/3`), for `paxos-conform
    /// validate`. `None` in production: each line holds the whole replica state.
    pub step_log: Option<PathBuf>,
}

/// Deliberate runtime bugs (see [`ServeOptions::seeded_bug`]), named on the command line by
/// [`SeededBug::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeededBug {
    /// A node that believes it leads answers `GET` from its own applied state instead of
    /// through the log: a deposed leader that has not heard of its successor serves stale
    /// values (the classic lease-less read).
    StaleLeaderReads,
    /// The core counts a majority as `n / 2` (core mutant `quorum-one-short`): a leader
    /// of three chooses a slot on its own vote.
    QuorumOneShort,
    /// The core executes a decided command at once, ahead of unchosen slots (core mutant
    /// `apply-out-of-order`).
    ApplyOutOfOrder,
    /// The core never consults its client table (core mutant `ignore-client-table`): a
    /// retried command is proposed and executed again.
    IgnoreClientTable,
}

impl SeededBug {
    pub const ALL: [SeededBug; 4] = [
        SeededBug::StaleLeaderReads,
        SeededBug::QuorumOneShort,
        SeededBug::ApplyOutOfOrder,
        SeededBug::IgnoreClientTable,
    ];

    /// The name `--seeded-bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            SeededBug::StaleLeaderReads => "stale-leader-reads",
            SeededBug::QuorumOneShort => "quorum-one-short",
            SeededBug::ApplyOutOfOrder => "apply-out-of-order",
            SeededBug::IgnoreClientTable => "ignore-client-table",
        }
    }

    /// The bug named `name`, or an error listing the names.
    pub fn from_name(name: &str) -> Result<Self, String> {
        let names = || Self::ALL.map(Self::name).join(", ");
        Self::ALL
            .into_iter()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| format!("no seeded bug {name:?}; the bugs are {}", names()))
    }

    /// The core mutant this bug switches on in every step, if it is one.
    pub fn core_mutant(self) -> Option<crate::multi::mutants::Mutant> {
        use crate::multi::mutants::Mutant;
        match self {
            SeededBug::StaleLeaderReads => None,
            SeededBug::QuorumOneShort => Some(Mutant::QuorumOneShort),
            SeededBug::ApplyOutOfOrder => Some(Mutant::ApplyOutOfOrder),
            SeededBug::IgnoreClientTable => Some(Mutant::IgnoreClientTable),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("data directory {dir}: {source}")]
    DataDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the write-ahead log in {dir}: {source}")]
    Storage {
        dir: String,
        #[source]
        source: ReplicaLogError,
    },
    #[error("step log {file}: {source}")]
    StepLog {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error("{0}")]
    Internal(String),
}

/// Runs one replica until `shutdown` completes (or the WAL fails): recovers from `data_dir`,
/// listens for peers and clients, and on shutdown drains HTTP, finishes in-flight fsyncs and
/// closes peer connections.
pub async fn serve(
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let ServeOptions {
        config,
        id,
        data_dir,
        seed,
        seeded_bug,
        step_log,
    } = options;
    if let Some(bug) = seeded_bug {
        tracing::warn!(
            ?bug,
            "running with a SEEDED BUG: this node is wrong on purpose"
        );
    }
    config.validate()?;
    let mut core_config = config.core_config(id)?;
    core_config.timing.jitter_seed = seed;
    let secret = Arc::new(config.peer_secret()?);
    let Some(me) = config.node(id).cloned() else {
        return Err(ServeError::Internal(format!("node {id} vanished")));
    };
    let config = Arc::new(config);
    let dir = data_dir.display().to_string();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::DataDir {
        dir: dir.clone(),
        source,
    })?;
    let storage_error = |source| ServeError::Storage {
        dir: dir.clone(),
        source,
    };
    let (mut log, recovered) =
        ReplicaLog::<KvOp>::open(&data_dir, ReplicaLogOptions::default()).map_err(storage_error)?;
    if let Some(torn) = &recovered.torn_tail {
        tracing::warn!(?torn, "truncated a torn final WAL record");
    }
    let fresh = recovered.records_replayed == 0 && recovered.snapshot.is_none();
    let core_mutant = seeded_bug.and_then(SeededBug::core_mutant);
    let recovered_durable = step_log.as_ref().map(|_| recovered.durable.clone());
    let (replica, effects) = node::with_core_mutant(core_mutant, || {
        if fresh {
            Replica::new(core_config.clone(), KvStore::new())
        } else {
            Replica::recover(core_config.clone(), recovered.durable, KvStore::new())
        }
    })
    .map_err(|e| ServeError::Internal(e.to_string()))?;
    let step_log = match (step_log, recovered_durable) {
        (Some(path), Some(recovered)) => {
            let log_error = |source| ServeError::StepLog {
                file: path.display().to_string(),
                source,
            };
            let mut log = StepLog::open(&path).map_err(log_error)?;
            log.write(&StepLine::Start {
                format: step_log::STEP_LOG_FORMAT.to_string(),
                node: id,
                pid: std::process::id(),
                config: core_config,
                recovered,
                effects: effects.clone(),
                state: replica.state().clone(),
            })
            .map_err(log_error)?;
            Some(log)
        }
        _ => None,
    };
    let records: Vec<_> = effects
        .into_iter()
        .filter_map(|e| match e {
            crate::multi::Effect::Persist(record) => Some(record),
            _ => None,
        })
        .collect();
    log.persist(&records).map_err(storage_error)?;
    tracing::info!(
        node = id,
        fresh,
        records_replayed = recovered.records_replayed,
        applied = replica.applied(),
        promised = %replica.promised(),
        role = replica.phase().name(),
        seed,
        "replica started"
    );
    let wal = log
        .into_group_commit(config.limits.group_commit())
        .map_err(storage_error)?;

    let peer_listener =
        TcpListener::bind(me.peer_addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "peers",
                addr: me.peer_addr,
                source,
            })?;
    let http_listener =
        TcpListener::bind(me.client_addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "clients",
                addr: me.client_addr,
                source,
            })?;

    let metrics = Arc::new(Metrics::default());
    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_EVENTS_MAX);
    let (links, outbound) = transport::start_outbound(&config, &secret, id, &metrics);
    let peers = links
        .iter()
        .map(|l| (l.id, Arc::clone(&l.connected)))
        .collect();
    let listener = transport::start_listener(
        peer_listener,
        Arc::clone(&config),
        secret,
        id,
        inbox_tx.clone(),
        Arc::clone(&metrics),
        &links,
    );
    let (status_tx, status_rx) = watch::channel(NodeStatus::default());
    let task = NodeTask::new(NodeParts {
        replica,
        wal,
        links,
        metrics: Arc::clone(&metrics),
        status: status_tx,
        inbox: inbox_rx,
        step_log,
        core_mutant,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let node_stop = Arc::clone(&stop_tx);
    let node = tokio::spawn({
        let stop_rx = stop_rx.clone();
        async move {
            let result = task.run(stop_rx).await;
            node_stop.send_replace(true);
            result
        }
    });
    let app = http::router(http::AppState {
        config: Arc::clone(&config),
        inbox: inbox_tx,
        status: status_rx,
        metrics,
        peers: Arc::new(peers),
        seeded_bug,
    });
    let http = tokio::spawn(
        axum::serve(
            idle::IdleTimeoutListener::new(http_listener, config.timing.client_idle_timeout()),
            app,
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future(),
    );
    tracing::info!(node = id, peers = %me.peer_addr, clients = %me.client_addr, "serving");

    tokio::select! {
        _ = shutdown => tracing::info!("shutdown requested"),
        _ = stopped(stop_rx.clone()) => {}
    }
    stop_tx.send_replace(true);
    let result = match node.await {
        Ok(result) => result.map_err(ServeError::from),
        Err(e) => Err(ServeError::Internal(format!("node task failed: {e}"))),
    };
    if tokio::time::timeout(HTTP_DRAIN_TIMEOUT, http)
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still open after the drain timeout");
    }
    listener.abort();
    for task in outbound {
        // The node task closed the peer queues: each outbound task shuts its connection
        // down and ends, unless it is between dials.
        if tokio::time::timeout(Duration::from_millis(500), task)
            .await
            .is_err()
        {
            tracing::debug!("outbound task still dialling at shutdown");
        }
    }
    tracing::info!(node = id, "stopped");
    result
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod tests {
    use super::SeededBug;

    #[test]
    fn seeded_bugs_are_named_on_the_command_line_and_back() {
        for bug in SeededBug::ALL {
            assert_eq!(SeededBug::from_name(bug.name()), Ok(bug));
        }
        let refused = SeededBug::from_name("no-such-bug").expect_err("refused");
        assert!(
            refused.contains("stale-leader-reads, quorum-one-short"),
            "{refused}"
        );
    }
}
