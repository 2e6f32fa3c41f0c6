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
pub mod replicated;
pub mod snapshot_transfer;
pub mod step_log;
pub mod tls;
pub mod transport;
pub mod wire;

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::ballot::NodeId;
use crate::multi::KvStore;
use crate::storage::ReplicaLogError;
use config::ClusterConfig;
use replicated::{Node, NodeOptions};

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
    /// Append every core transition to this file (`paxos-steps/8`), for `paxos-conform
    /// validate`. `None` unless asked for (`serve --step-log`).
    pub step_log: Option<PathBuf>,
    /// When the step log starts a new file (`serve --step-log-segment-mib`; `None`: never).
    pub step_log_rotation: Option<step_log::Rotation>,
    /// Run the core's clock this many parts per million faster than the host's (negative:
    /// slower): fault injection for chaos runs of the lease read policy (`paxos-node serve
    /// --clock-drift-ppm`). 0 in production.
    pub clock_drift_ppm: i64,
}

/// Deliberate runtime bugs (see [`ServeOptions::seeded_bug`]), named on the command line by
/// [`SeededBug::name`]. The list and names are derived (strum), as in every catalogue of
/// deliberate bugs in the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
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
    /// The leader trusts a lease for the whole grant, with no margin for the clocks' drift
    /// (core mutant `lease-beyond-drift`, L3): what trace validation of a lease run must see.
    LeaseBeyondDrift,
}

impl SeededBug {
    pub const ALL: &'static [SeededBug] = <SeededBug as strum::VariantArray>::VARIANTS;

    /// The name `--seeded-bug` takes.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The bug named `name`, or an error listing the names.
    pub fn from_name(name: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|b| b.name()).collect();
                format!("no seeded bug {name:?}; the bugs are {}", names.join(", "))
            })
    }

    /// The core mutant this bug switches on in every step, if it is one.
    pub fn core_mutant(self) -> Option<crate::multi::mutants::Mutant> {
        use crate::multi::mutants::Mutant;
        match self {
            SeededBug::StaleLeaderReads => None,
            SeededBug::QuorumOneShort => Some(Mutant::QuorumOneShort),
            SeededBug::ApplyOutOfOrder => Some(Mutant::ApplyOutOfOrder),
            SeededBug::IgnoreClientTable => Some(Mutant::IgnoreClientTable),
            SeededBug::LeaseBeyondDrift => Some(Mutant::LeaseBeyondDrift),
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

/// Runs one replica of the key-value service until `shutdown` completes (or the WAL fails):
/// a [`Node`] of [`KvStore`] with the HTTP API in front. On shutdown it stops the node
/// (in-flight fsyncs finish, peer connections close) and drains HTTP.
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
        step_log_rotation,
        clock_drift_ppm,
    } = options;
    if clock_drift_ppm != 0 {
        tracing::warn!(
            clock_drift_ppm,
            "the protocol clock runs off the host's on purpose (fault injection)"
        );
    }
    if let Some(bug) = seeded_bug {
        tracing::warn!(
            ?bug,
            "running with a SEEDED BUG: this node is wrong on purpose"
        );
    }
    config.validate()?;
    let me = config.member(id)?.clone();
    let http_listener =
        TcpListener::bind(me.client_addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "clients",
                addr: me.client_addr,
                source,
            })?;
    let options = NodeOptions {
        config: config.clone(),
        id,
        data_dir,
        seed,
        step_log,
        step_log_rotation,
        core_mutant: seeded_bug.and_then(SeededBug::core_mutant),
        clock_drift_ppm,
    };
    let node = Node::start(options, KvStore::new()).await?;
    let config = Arc::new(config);
    let app = http::router(http::AppState {
        config: Arc::clone(&config),
        node: node.handle(),
        seeded_bug,
    });
    let http = tokio::spawn(
        axum::serve(
            idle::IdleTimeoutListener::new(http_listener, config.timing.client_idle_timeout()),
            app,
        )
        .with_graceful_shutdown(node.stopped())
        .into_future(),
    );
    tracing::info!(node = id, clients = %me.client_addr, "serving clients");

    tokio::select! {
        _ = shutdown => tracing::info!("shutdown requested"),
        _ = node.stopped() => {}
    }
    let result = node.shutdown().await;
    if tokio::time::timeout(HTTP_DRAIN_TIMEOUT, http)
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still open after the drain timeout");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::SeededBug;

    #[test]
    fn seeded_bugs_are_named_on_the_command_line_and_back() {
        for &bug in SeededBug::ALL {
            assert_eq!(SeededBug::from_name(bug.name()), Ok(bug));
        }
        let refused = SeededBug::from_name("no-such-bug").expect_err("refused");
        assert!(
            refused.contains("stale-leader-reads, quorum-one-short"),
            "{refused}"
        );
    }
}
