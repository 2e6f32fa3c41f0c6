//! The cluster configuration file (`cluster.toml`): node ids, addresses, timing and limits,
//! parsed with unknown keys refused and validated as a whole with errors that say what to fix.
//!
//! ```toml
//! cluster_id = "demo"
//! # initial_leader = 0          # default: the lowest node id
//!
//! [auth]                        # required: peers prove they hold the cluster's secret
//! secret_file = "cluster.secret" # relative to this file; `paxos-node secret --out` makes one
//!
//! [timing]                      # every field optional; the defaults are shown
//! election_timeout_min_ms = 300
//! election_timeout_max_ms = 600
//! heartbeat_interval_ms = 50
//! retransmit_interval_ms = 200
//! catch_up_interval_ms = 50
//! request_timeout_ms = 3000
//! client_idle_timeout_ms = 30000
//!
//! [limits]                      # every field optional; the defaults are shown
//! window = 256
//! frame_bytes_max = 67108864
//! frame_messages_max = 1024
//! peer_queue_messages_max = 65536
//! wal_batch_records_max = 16384
//! wal_commit_delay_us = 0
//! request_bytes_max = 1048576
//! snapshot_interval_slots = 10000 # 0: never snapshot
//! wal_segment_bytes_max = 67108864
//! snapshot_chunk_bytes = 1048576
//! snapshot_bytes_max = 1073741824
//!
//! [reads]                       # optional; the default is shown
//! policy = "read-index"         # or "log": every read takes a slot; or "lease" (specs/service.md)
//! # lease_ms = 200              # "lease" only; default 2/3 of election_timeout_min_ms
//! # max_clock_drift_ppm = 1000  # "lease" only: the most a clock's rate strays from real time
//!
//! [[nodes]]
//! id = 0
//! peer_addr = "127.0.0.1:7000"
//! client_addr = "127.0.0.1:8000"
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::{PeerSecret, SecretError};
use super::tls::{Identity, TlsError, TlsFiles};
use super::wire::LeaseTerms;
use crate::ballot::NodeId;
use crate::multi::{Config as CoreConfig, Timing as CoreTiming, TimingError, CATCH_UP_ENTRIES_MAX};
use crate::storage::{GroupCommitOptions, ReplicaLogOptions, WalOptions};

/// The smallest WAL segment allowed: below it a segment holds a handful of records and every
/// batch opens and fsyncs files.
pub const WAL_SEGMENT_BYTES_MIN: u64 = 4096;

/// One replica's addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where the replica listens for its peers (TCP, framed protocol messages).
    pub peer_addr: SocketAddr,
    /// Where the replica serves the client HTTP/JSON API.
    pub client_addr: SocketAddr,
}

/// How peers prove they belong to the cluster (`runtime::auth`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// A file holding the secret every replica shares (at least 32 bytes; surrounding
    /// whitespace ignored). Relative to the directory of the configuration file.
    pub secret_file: PathBuf,
}

/// Timers, in milliseconds. The first five are the protocol core's ([`CoreTiming`], which
/// documents and bounds them); the last two are the HTTP server's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub retransmit_interval_ms: u64,
    pub catch_up_interval_ms: u64,
    /// A client request not answered within this long gets `503` (the client retries).
    pub request_timeout_ms: u64,
    /// A client connection with no traffic for this long is closed (half-sent requests
    /// included); at least twice `request_timeout_ms`, so a waiting request is never cut.
    pub client_idle_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        let core = CoreTiming::default();
        Timing {
            election_timeout_min_ms: core.election_timeout_min_ms,
            election_timeout_max_ms: core.election_timeout_max_ms,
            heartbeat_interval_ms: core.heartbeat_interval_ms,
            retransmit_interval_ms: core.retransmit_interval_ms,
            catch_up_interval_ms: core.catch_up_interval_ms,
            request_timeout_ms: 3000,
            client_idle_timeout_ms: 30_000,
        }
    }
}

/// Bounds on every queue, window, batch and frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Slots in flight for new commands (the core's `window`).
    pub window: u64,
    /// Propose no new command at or above this slot (the core's `slot_limit`). Unset in
    /// production; a run bounded like the model's 4-slot log can be checked against the model
    /// by `paxos-conform validate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_limit: Option<u64>,
    /// A frame longer than this is malformed: the connection is closed. A Promise carries the
    /// acceptor's votes at and above its compaction point, so `snapshot_interval_slots` bounds
    /// it; snapshots travel in chunks of `snapshot_chunk_bytes`.
    pub frame_bytes_max: u32,
    /// At most this many protocol messages in one frame.
    pub frame_messages_max: usize,
    /// Messages queued for one peer; beyond it new messages to that peer are dropped (the
    /// protocol tolerates loss; the drop is counted in the metrics).
    pub peer_queue_messages_max: usize,
    /// At most this many records in one group commit (one write, one fsync).
    pub wal_batch_records_max: usize,
    /// How long the WAL writer waits for more records after the first of a batch (trades
    /// latency for fewer fsyncs; 0 relies on the batching that happens during an fsync).
    pub wal_commit_delay_us: u64,
    /// A client request body above this is refused (`413`): a command must fit in a peer frame
    /// and a WAL record with room to spare, so at most a quarter of `frame_bytes_max`.
    pub request_bytes_max: usize,
    /// K1: once this many slots are applied beyond the last snapshot, the replica snapshots
    /// its applied prefix and forgets the log below it (0: never). Bounds the WAL, the memory
    /// the log holds and the size of a Promise; a replica that falls further behind than the
    /// others' snapshots catches up by receiving one.
    pub snapshot_interval_slots: u64,
    /// A WAL segment is closed and a new one started at this size. Compaction deletes whole
    /// segments below the older snapshot kept, so a replica's storage stays within about two
    /// snapshots' worth of log plus two segments.
    pub wal_segment_bytes_max: u64,
    /// A snapshot is sent to a peer in chunks of at most this many bytes (each in a frame of
    /// its own), so that no frame holds a whole large snapshot and a transfer cut by a dropped
    /// connection resumes from the last chunk acknowledged.
    pub snapshot_chunk_bytes: u32,
    /// The largest snapshot a replica sends or receives (the receiver holds a transfer in
    /// memory until it is whole); a larger one is refused with an error, and the replica that
    /// needed it stays behind until the limit is raised.
    pub snapshot_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: 256,
            slot_limit: None,
            frame_bytes_max: 64 << 20,
            frame_messages_max: 1024,
            peer_queue_messages_max: 65_536,
            wal_batch_records_max: 16_384,
            wal_commit_delay_us: 0,
            request_bytes_max: 1 << 20,
            snapshot_interval_slots: 10_000,
            wal_segment_bytes_max: 64 << 20,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_bytes_max: 1 << 30,
        }
    }
}

/// How the service answers linearizable reads (`GET /v1/kv/{key}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPolicy {
    /// The leader answers from its applied state once a majority has confirmed, after the read
    /// arrived, that its ballot still stands (`specs/protocol.md`, Q1–Q5): no slot, no WAL
    /// write, one round of messages shared by every read that waits for it.
    #[default]
    ReadIndex,
    /// Every read is a command: it takes a slot and is executed in log order (two fsyncs
    /// at the leader, one at each follower that accepts it).
    Log,
    /// The read index, and a leader whose confirmation round a majority answered answers
    /// reads at once, with no round, while the lease that round bought holds
    /// (`specs/protocol.md`, L1–L6). Correct only while every replica's clock rate stays
    /// within `max_clock_drift_ppm` of real time.
    Lease,
}

impl ReadPolicy {
    pub const ALL: [ReadPolicy; 3] = [ReadPolicy::ReadIndex, ReadPolicy::Log, ReadPolicy::Lease];

    pub fn name(self) -> &'static str {
        match self {
            ReadPolicy::ReadIndex => "read-index",
            ReadPolicy::Log => "log",
            ReadPolicy::Lease => "lease",
        }
    }

    /// Whether the leader answers reads itself (Q1–Q5, and L1–L6 for leases), rather than
    /// through the log.
    pub fn reads_at_the_leader(self) -> bool {
        matches!(self, ReadPolicy::ReadIndex | ReadPolicy::Lease)
    }

    /// The policy named `name` as `[reads] policy` spells it.
    pub fn from_name(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "no read policy {name:?}; the policies are {}",
                    names.join(", ")
                )
            })
    }
}

/// How reads are served; every replica of a cluster must use the same (the file is shared).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reads {
    pub policy: ReadPolicy,
    /// `lease` only: how long a replica that confirmed the leader's ballot promises no other
    /// (L1), on its own clock. Default [`Reads::default_lease_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// `lease` only: the most any replica's clock rate differs from real time, in parts per
    /// million (A-clock). Default [`DEFAULT_MAX_CLOCK_DRIFT_PPM`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clock_drift_ppm: Option<u64>,
}

/// The drift a lease assumes when `max_clock_drift_ppm` is not given: 0.1%, ten times what an
/// NTP-disciplined or even a free-running quartz clock strays by; a VM paused and resumed, or
/// a suspended host, is outside any bound (specs/protocol.md, A-clock).
pub const DEFAULT_MAX_CLOCK_DRIFT_PPM: u64 = 1_000;

/// The core hears the time in whole milliseconds: a clock's reading may be up to 1 ms behind
/// it (the leader's when it answers a read, a grantor's when it grants).
pub const CLOCK_READING_MS: u64 = 1;

/// The drift bound, as a margin of `2D` (specs/protocol.md, A-clock): while one clock
/// advances by `lease_ms`, another within `ppm` of real time advances by at least `lease_ms
/// (1 - ρ) / (1 + ρ)`, so each clock's share `D` is `⌈lease_ms · ρ / (1 + ρ)⌉` and its
/// reading's millisecond, and two clocks disagree about the lease by at most twice that. The
/// model's margin is `2D` too, so a run's lease maps onto the model's (trace validation).
pub fn lease_margin_ms(lease_ms: u64, max_clock_drift_ppm: u64) -> u64 {
    let (lease, ppm) = (u128::from(lease_ms), u128::from(max_clock_drift_ppm));
    let share = (lease * ppm).div_ceil(1_000_000 + ppm);
    u64::try_from(share)
        .unwrap_or(u64::MAX)
        .saturating_add(CLOCK_READING_MS)
        .saturating_mul(2)
}

impl Reads {
    /// Two thirds of the least election timeout: the lease must end before a follower's
    /// election timer can fire (L2'), and a third is left for the round trip of renewal.
    pub fn default_lease_ms(timing: &Timing) -> u64 {
        timing.election_timeout_min_ms * 2 / 3
    }

    /// The core's `(lease_ms, lease_margin_ms)`: `(0, 0)` unless the policy is `lease`.
    pub fn lease(&self, timing: &Timing) -> (u64, u64) {
        if self.policy != ReadPolicy::Lease {
            return (0, 0);
        }
        let lease = self
            .lease_ms
            .unwrap_or_else(|| Self::default_lease_ms(timing));
        let ppm = self
            .max_clock_drift_ppm
            .unwrap_or(DEFAULT_MAX_CLOCK_DRIFT_PPM);
        (lease, lease_margin_ms(lease, ppm))
    }

    fn validate(&self, timing: &Timing) -> Result<(), ConfigError> {
        if self.policy != ReadPolicy::Lease {
            for (key, set) in [
                ("lease_ms", self.lease_ms.is_some()),
                ("max_clock_drift_ppm", self.max_clock_drift_ppm.is_some()),
            ] {
                if set {
                    return Err(invalid(format!(
                        "reads: {key} applies only to policy = \"lease\" (the policy is \"{}\")",
                        self.policy.name()
                    )));
                }
            }
            return Ok(());
        }
        if self.max_clock_drift_ppm.is_some_and(|ppm| ppm >= 1_000_000) {
            return Err(invalid(
                "reads: max_clock_drift_ppm must be below 1000000 (a clock that may stop \
                 bounds nothing)",
            ));
        }
        // The core states the rules (`Timing::validate`); here they are said in this file's
        // terms.
        self.protocol_timing(timing).validate().map_err(|e| {
            invalid(match e {
                TimingError::LeaseOutlastsElection {
                    lease,
                    election_min,
                } => format!(
                    "reads: lease_ms ({lease}) must be below [timing] election_timeout_min_ms \
                     ({election_min}): a replica that granted a lease neither campaigns nor \
                     promises until it ends, so a longer lease would hold back every election \
                     after the leader fails"
                ),
                TimingError::LeaseWithinMargin { lease, margin } => format!(
                    "reads: lease_ms ({lease}) must exceed its margin ({margin} ms: twice a \
                     clock's drift over the lease at max_clock_drift_ppm and its \
                     {CLOCK_READING_MS} ms of reading), or the leader could never trust a lease"
                ),
                other => other.to_string(),
            })
        })
    }

    /// The core's timers of `timing`, with the lease this policy asks for.
    fn protocol_timing(&self, timing: &Timing) -> CoreTiming {
        let (lease_ms, lease_margin_ms) = self.lease(timing);
        CoreTiming {
            lease_ms,
            lease_margin_ms,
            ..timing.protocol()
        }
    }
}

/// The secret file [`ClusterConfig::loopback`] names, relative to the configuration.
pub const LOOPBACK_SECRET_FILE: &str = "cluster.secret";

/// The whole `cluster.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Peers must present the same id in their handshake.
    pub cluster_id: String,
    /// The replica that leads ballot `1.<id>` from empty storage; default the lowest id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_leader: Option<NodeId>,
    /// Required; optional in the type only so that its absence gets an error that says what
    /// to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub reads: Reads,
    /// TLS between replicas (`runtime::tls`): absent, peers talk plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    pub nodes: Vec<NodeConfig>,
}

/// Where a replica finds its TLS files: a directory `paxos-node certs` wrote, holding the
/// cluster CA (`ca.pem`) and `node-<id>.pem` and `node-<id>.key` for each replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Relative to the directory of the configuration file.
    pub dir: PathBuf,
}

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid cluster configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

fn missing_auth() -> ConfigError {
    invalid(
        "no [auth] section: peers must prove they hold the cluster's secret. Add\n  \
         [auth]\n  secret_file = \"cluster.secret\"\nand create that file once with \
         `paxos-node secret --out cluster.secret`, then copy it beside every replica's \
         configuration",
    )
}

impl ClusterConfig {
    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut config = ClusterConfig::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: shown,
                message,
            },
            other => other,
        })?;
        if let (Some(auth), Some(dir)) = (config.auth.as_mut(), path.parent()) {
            if auth.secret_file.is_relative() {
                auth.secret_file = dir.join(&auth.secret_file);
            }
        }
        if let (Some(tls), Some(dir)) = (config.tls.as_mut(), path.parent()) {
            if tls.dir.is_relative() {
                tls.dir = dir.join(&tls.dir);
            }
        }
        Ok(config)
    }

    /// Replica `id`'s TLS material, read and checked, if the configuration has `[tls]`.
    pub fn peer_tls(&self, id: NodeId) -> Result<Option<Identity>, ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        Ok(Some(TlsFiles::replica(&tls.dir, id).load()?))
    }

    /// Reads the peer secret named by `[auth]`.
    pub fn peer_secret(&self) -> Result<PeerSecret, ConfigError> {
        let auth = self.auth.as_ref().ok_or_else(missing_auth)?;
        Ok(PeerSecret::read(&auth.secret_file)?)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "cluster configuration".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML (what `paxos-node cluster` writes).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| invalid(format!("cannot write TOML: {e}")))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_id.trim().is_empty() {
            return Err(invalid("cluster_id must not be empty"));
        }
        if self.nodes.is_empty() {
            return Err(invalid("at least one [[nodes]] entry is needed"));
        }
        if self.auth.is_none() {
            return Err(missing_auth());
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for node in &self.nodes {
            if !ids.insert(node.id) {
                return Err(invalid(format!("node id {} appears twice", node.id)));
            }
            for addr in [node.peer_addr, node.client_addr] {
                if !addrs.insert(addr) {
                    return Err(invalid(format!("address {addr} is used twice")));
                }
            }
        }
        if let Some(leader) = self.initial_leader {
            if !ids.contains(&leader) {
                return Err(invalid(format!(
                    "initial_leader = {leader} is not a node id (nodes: {ids:?})"
                )));
            }
        }
        self.timing.validate()?;
        self.reads.validate(&self.timing)?;
        self.limits.validate()
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The initial leader: configured, or the lowest id.
    pub fn initial_leader(&self) -> NodeId {
        let lowest = self.nodes.iter().map(|n| n.id).min();
        self.initial_leader.or(lowest).unwrap_or(0)
    }

    /// Node `id`, or an error naming the nodes there are.
    pub fn member(&self, id: NodeId) -> Result<&NodeConfig, ConfigError> {
        self.node(id).ok_or_else(|| {
            let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
            invalid(format!(
                "--id {id} is not a node of this cluster (nodes: {ids:?})"
            ))
        })
    }

    /// The core's configuration for replica `id`.
    pub fn core_config(&self, id: NodeId) -> Result<CoreConfig, ConfigError> {
        self.member(id)?;
        let config = CoreConfig {
            id,
            replicas: self.nodes.iter().map(|n| n.id).collect(),
            initial_leader: self.initial_leader(),
            window: self.limits.window,
            slot_limit: self.limits.slot_limit,
            timing: self.protocol_timing(),
            catch_up_entries_max: CATCH_UP_ENTRIES_MAX,
        };
        config.validate().map_err(|e| invalid(e.to_string()))?;
        Ok(config)
    }

    /// The core's timers, with the lease the read policy asks for.
    pub fn protocol_timing(&self) -> CoreTiming {
        self.reads.protocol_timing(&self.timing)
    }

    /// The lease this replica grants and trusts, as its peers must agree on it.
    pub fn lease_terms(&self) -> LeaseTerms {
        let timing = self.protocol_timing();
        LeaseTerms {
            lease_ms: timing.lease_ms,
            margin_ms: timing.lease_margin_ms,
        }
    }

    /// A loopback cluster of `nodes` replicas on consecutive ports, its secret in
    /// [`LOOPBACK_SECRET_FILE`] beside the configuration (the caller writes it).
    pub fn loopback(cluster_id: &str, nodes: u32, peer_port: u16, client_port: u16) -> Self {
        let addr = |base: u16, i: u32| {
            let port = base.saturating_add(u16::try_from(i).unwrap_or(u16::MAX));
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        let addresses = (0..nodes).map(|i| (addr(peer_port, i), addr(client_port, i)));
        Self::with_addresses(cluster_id, addresses)
    }

    /// A cluster of replicas `0, 1, ...` listening on the given `(peer, client)` addresses, in
    /// that order, with default timing and limits and its secret in [`LOOPBACK_SECRET_FILE`]
    /// beside the configuration (the caller writes it).
    pub fn with_addresses(
        cluster_id: &str,
        addresses: impl IntoIterator<Item = (SocketAddr, SocketAddr)>,
    ) -> Self {
        let nodes = addresses.into_iter().zip(0..);
        ClusterConfig {
            cluster_id: cluster_id.to_string(),
            initial_leader: None,
            auth: Some(Auth {
                secret_file: PathBuf::from(LOOPBACK_SECRET_FILE),
            }),
            timing: Timing::default(),
            limits: Limits::default(),
            reads: Reads::default(),
            tls: None,
            nodes: nodes
                .map(|((peer_addr, client_addr), id)| NodeConfig {
                    id,
                    peer_addr,
                    client_addr,
                })
                .collect(),
        }
    }
}

impl Timing {
    /// The protocol core's timers without leases (the read policy's:
    /// [`ClusterConfig::protocol_timing`]); its jitter seed is the node's, set by `serve`.
    pub fn protocol(&self) -> CoreTiming {
        CoreTiming {
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            retransmit_interval_ms: self.retransmit_interval_ms,
            catch_up_interval_ms: self.catch_up_interval_ms,
            jitter_seed: 0,
            lease_ms: 0,
            lease_margin_ms: 0,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let t = self;
        t.protocol()
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        if t.request_timeout_ms == 0 {
            return Err(invalid("timing: request_timeout_ms must be positive"));
        }
        if t.client_idle_timeout_ms < t.request_timeout_ms.saturating_mul(2) {
            return Err(invalid(format!(
                "timing: client_idle_timeout_ms ({}) must be at least twice request_timeout_ms \
                 ({}), or requests waiting for their slot would be cut off",
                t.client_idle_timeout_ms, t.request_timeout_ms
            )));
        }
        Ok(())
    }

    pub fn client_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.client_idle_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl Limits {
    /// The group-commit options these limits give.
    pub fn group_commit(&self) -> GroupCommitOptions {
        GroupCommitOptions {
            batch_records_max: self.wal_batch_records_max,
            commit_delay: Duration::from_micros(self.wal_commit_delay_us),
            ..GroupCommitOptions::default()
        }
    }

    /// The replica log's options these limits give.
    pub fn replica_log(&self) -> ReplicaLogOptions {
        ReplicaLogOptions {
            wal: WalOptions {
                segment_bytes_max: self.wal_segment_bytes_max,
                ..WalOptions::default()
            },
            ..ReplicaLogOptions::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.wal_segment_bytes_max < WAL_SEGMENT_BYTES_MIN {
            return Err(invalid(format!(
                "limits: wal_segment_bytes_max ({}) must be at least {WAL_SEGMENT_BYTES_MIN}",
                self.wal_segment_bytes_max
            )));
        }
        if self.window == 0 {
            return Err(invalid("limits: window must be at least 1"));
        }
        if self.snapshot_chunk_bytes < 1024 || self.snapshot_chunk_bytes > self.frame_bytes_max / 2
        {
            return Err(invalid(format!(
                "limits: snapshot_chunk_bytes ({}) must be at least 1024 and at most half of \
                 frame_bytes_max ({})",
                self.snapshot_chunk_bytes, self.frame_bytes_max
            )));
        }
        if self.snapshot_bytes_max < u64::from(self.snapshot_chunk_bytes) {
            return Err(invalid(format!(
                "limits: snapshot_bytes_max ({}) must be at least snapshot_chunk_bytes ({})",
                self.snapshot_bytes_max, self.snapshot_chunk_bytes
            )));
        }
        if self.frame_bytes_max < 1024 {
            return Err(invalid(format!(
                "limits: frame_bytes_max ({}) must be at least 1024",
                self.frame_bytes_max
            )));
        }
        if self.frame_messages_max == 0
            || self.peer_queue_messages_max == 0
            || self.wal_batch_records_max == 0
        {
            return Err(invalid(
                "limits: frame_messages_max, peer_queue_messages_max and wal_batch_records_max \
                 must be positive",
            ));
        }
        if self.request_bytes_max == 0 || self.request_bytes_max > self.frame_bytes_max as usize / 4
        {
            return Err(invalid(format!(
                "limits: request_bytes_max ({}) must be positive and at most a quarter of \
                 frame_bytes_max ({})",
                self.request_bytes_max, self.frame_bytes_max
            )));
        }
        if self.wal_commit_delay_us > 1_000_000 {
            return Err(invalid(format!(
                "limits: wal_commit_delay_us ({}) above one second would stall every write",
                self.wal_commit_delay_us
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"
        cluster_id = "t"
        [auth]
        secret_file = "cluster.secret"
        [[nodes]]
        id = 0
        peer_addr = "127.0.0.1:7000"
        client_addr = "127.0.0.1:8000"
        [[nodes]]
        id = 1
        peer_addr = "127.0.0.1:7001"
        client_addr = "127.0.0.1:8001"
        [[nodes]]
        id = 2
        peer_addr = "127.0.0.1:7002"
        client_addr = "127.0.0.1:8002"
    "#;

    fn error_of(text: &str) -> String {
        match ClusterConfig::parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_minimal_three_node_file_parses_with_defaults() {
        let config = ClusterConfig::parse(THREE).expect("valid");
        assert_eq!(config.nodes.len(), 3);
        assert_eq!(config.initial_leader(), 0);
        assert_eq!(config.timing, Timing::default());
        let core = config.core_config(2).expect("node 2");
        assert_eq!(core.replicas, vec![0, 1, 2]);
        assert_eq!(core.window, 256);
        assert_eq!(config.reads.policy, ReadPolicy::ReadIndex);
        let log = format!("{THREE}\n[reads]\npolicy = \"log\"\n");
        let log = ClusterConfig::parse(&log).expect("valid");
        assert_eq!(log.reads.policy, ReadPolicy::Log);
    }

    #[test]
    fn the_secret_is_required_and_found_beside_the_file() {
        let without = THREE.replace("[auth]\n        secret_file = \"cluster.secret\"", "");
        let error = error_of(&without);
        assert!(error.contains("no [auth] section"), "{error}");
        assert!(error.contains("paxos-node secret --out"), "{error}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, THREE).expect("write");
        let config = ClusterConfig::load(&path).expect("valid");
        let auth = config.auth.as_ref().expect("auth");
        assert_eq!(auth.secret_file, dir.path().join("cluster.secret"));
        let missing = config.peer_secret().expect_err("no secret yet").to_string();
        assert!(
            missing.contains("cannot read the cluster secret"),
            "{missing}"
        );
        PeerSecret::generate()
            .write_new(&auth.secret_file)
            .expect("write secret");
        config.peer_secret().expect("secret");
    }

    #[test]
    fn loopback_round_trips_through_toml() {
        let config = ClusterConfig::loopback("x", 5, 7100, 8100);
        let text = config.to_toml().expect("toml");
        assert_eq!(ClusterConfig::parse(&text).expect("valid"), config);
    }

    #[test]
    fn errors_name_what_to_fix() {
        let dup = THREE.replace("id = 2", "id = 1");
        assert!(error_of(&dup).contains("node id 1 appears twice"));
        let addr = THREE.replace("127.0.0.1:8002", "127.0.0.1:8001");
        assert!(error_of(&addr).contains("127.0.0.1:8001 is used twice"));
        let unknown = THREE.replace("cluster_id = \"t\"", "cluster_id = \"t\"\nleader = 1");
        assert!(error_of(&unknown).contains("unknown field `leader`"));
        let leader = THREE.replace(
            "cluster_id = \"t\"",
            "cluster_id = \"t\"\ninitial_leader = 9",
        );
        assert!(error_of(&leader).contains("initial_leader = 9 is not a node id"));
        let timing = format!("{THREE}\n[timing]\nheartbeat_interval_ms = 400\n");
        assert!(error_of(&timing).contains("at most half"));
        let bad_addr = THREE.replace("127.0.0.1:7000", "localhost");
        assert!(error_of(&bad_addr).contains("invalid socket address"));
        let policy = format!("{THREE}\n[reads]\npolicy = \"leases\"\n");
        let policy = error_of(&policy);
        assert!(
            policy
                .contains("unknown variant `leases`, expected one of `read-index`, `log`, `lease`"),
            "{policy}"
        );
        let config = ClusterConfig::parse(THREE).expect("valid");
        let not_a_node = config.core_config(7).map(|_| ()).map_err(|e| e.to_string());
        assert!(not_a_node.is_err_and(|e| e.contains("--id 7 is not a node")));
    }

    #[test]
    fn the_lease_policy_sets_the_cores_lease_and_its_margin_from_the_drift_bound() {
        let lease = format!("{THREE}\n[reads]\npolicy = \"lease\"\n");
        let config = ClusterConfig::parse(&lease).expect("valid");
        let timing = config.core_config(1).expect("node 1").timing;
        // Two thirds of the 300 ms election timeout; 1000 ppm over 200 ms is 0.2 ms, rounded
        // up, and 1 ms of reading, per clock: twice 2 ms.
        assert_eq!((timing.lease_ms, timing.lease_margin_ms), (200, 4));
        let set = format!(
            "{THREE}\n[reads]\npolicy = \"lease\"\nlease_ms = 250\nmax_clock_drift_ppm = 50000\n"
        );
        let timing = ClusterConfig::parse(&set)
            .expect("valid")
            .core_config(0)
            .expect("0")
            .timing;
        // 250 · 0.05 / 1.05 = 11.9: 12, and 1, twice.
        assert_eq!((timing.lease_ms, timing.lease_margin_ms), (250, 26));
        let read_index = ClusterConfig::parse(THREE)
            .expect("valid")
            .core_config(0)
            .expect("0");
        assert_eq!(
            (
                read_index.timing.lease_ms,
                read_index.timing.lease_margin_ms
            ),
            (0, 0)
        );
        assert_eq!(lease_margin_ms(0, 0), 2 * CLOCK_READING_MS);
        assert_eq!(lease_margin_ms(1_000, 0), 2 * CLOCK_READING_MS);
        // Always even: the model's 2D.
        assert_eq!(lease_margin_ms(199, 1_000) % 2, 0);
        assert_eq!(lease_margin_ms(u64::MAX, 1_000_000), u64::MAX);
    }

    #[test]
    fn a_lease_the_election_timeout_or_the_drift_cannot_honour_is_refused_at_start() {
        let long = format!("{THREE}\n[reads]\npolicy = \"lease\"\nlease_ms = 300\n");
        let long = error_of(&long);
        assert!(
            long.contains("lease_ms (300) must be below [timing] election_timeout_min_ms (300)"),
            "{long}"
        );
        let short = format!("{THREE}\n[reads]\npolicy = \"lease\"\nlease_ms = 3\n");
        let short = error_of(&short);
        assert!(
            short.contains("lease_ms (3) must exceed its margin (4 ms"),
            "{short}"
        );
        let drift =
            format!("{THREE}\n[reads]\npolicy = \"lease\"\nmax_clock_drift_ppm = 1000000\n");
        assert!(error_of(&drift).contains("max_clock_drift_ppm must be below 1000000"));
        // A timeout shortened under the default lease moves the default with it.
        let fast = format!(
            "{THREE}\n[timing]\nelection_timeout_min_ms = 90\nelection_timeout_max_ms = \
             180\nheartbeat_interval_ms = 30\n[reads]\npolicy = \"lease\"\n"
        );
        let fast = ClusterConfig::parse(&fast).expect("valid");
        assert_eq!(fast.core_config(0).expect("0").timing.lease_ms, 60);
        for key in ["lease_ms = 100", "max_clock_drift_ppm = 10"] {
            let stray = format!("{THREE}\n[reads]\n{key}\n");
            let stray = error_of(&stray);
            assert!(
                stray.contains("applies only to policy = \"lease\" (the policy is \"read-index\")"),
                "{stray}"
            );
        }
    }
}
