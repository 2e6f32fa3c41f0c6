//! `paxos-node chaos`: a real cluster (one process per replica, real TCP, real WALs) under
//! concurrent clients while faults are injected, and the recorded client history checked for
//! linearizability (`crate::history`).
//!
//! ```text
//!   clients ──HTTP──► node i ──TCP──► proxy(i→j) ──TCP──► node j      (one proxy per ordered
//!                                     cut / delay                       pair: each peer
//!   fault loop: kill -9 + restart, torn WAL tail + restart,             connection carries
//!               partition a node, cut one direction, add latency         one direction)
//! ```
//!
//! One fault at a time: applied, held for a while, healed, then a quiet gap, so that the
//! cluster makes progress between faults. At the end every fault is healed, every replica is
//! running, and a final read of every key joins the history. The run passes when the history
//! is linearizable and no acknowledged write is lost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::history::{self, History, KvAnswer, KvCall, Operation, Outcome, Verdict};
use clap::{Args, ValueEnum};
use paxos_impl::multi::KvOp;
use paxos_impl::runtime::auth::PeerSecret;
use paxos_impl::runtime::client::{fetch_metrics, http_client, Client, ClientError};
use paxos_impl::runtime::config::{ClusterConfig, ReadPolicy, Tls};
use paxos_impl::runtime::node::{SNAPSHOT_INSTALLED, SNAPSHOT_TAKEN};
use paxos_impl::runtime::step_log::closed_segments;
use paxos_impl::runtime::tls::ensure_loopback_certs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The `format` of the JSON report.
pub const REPORT_FORMAT: &str = "paxos-chaos-report/1";

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Plain TCP between replicas (by default they talk mutual TLS, through the fault
    /// proxies, with certificates made in `certs/` of the data directory).
    #[arg(long)]
    pub insecure: bool,
    /// Replicas.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(3..=7))]
    pub nodes: u32,
    /// How long clients run and faults are injected, in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    pub clients: u32,
    /// Distinct keys the clients use (fewer keys: more contention per key).
    #[arg(long, default_value_t = 4)]
    pub keys: u32,
    /// Faults to inject, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<FaultKind>,
    /// The longest a fault is held before it is healed, in milliseconds (each hold is drawn
    /// from a fifth of this up to this).
    #[arg(long, default_value_t = 2500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub hold_ms: u64,
    /// How often a fault aims at the current leader rather than at a random replica (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    pub leader_bias: f64,
    /// Seed of the fault schedule and the clients' choices (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the configuration, WALs and logs go (default: a new temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the recorded history (`paxos-history/1`) here.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Have every replica log each core transition to `<data-dir>/node-<id>.steps.jsonl`
    /// (`serve --step-log`), for `paxos-conform validate`.
    #[arg(long)]
    pub step_logs: bool,
    /// With `--step-logs`: each replica's log starts a new file every this many MiB
    /// (`serve --step-log-segment-mib`), every file kept.
    #[arg(long, value_name = "MIB", requires = "step_logs",
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub step_log_segment_mib: Option<u64>,
    /// Each client issues at most this many operations, and a client whose operation ends
    /// unknown stops instead of going on under a new id: with `--slot-limit 4` a run stays
    /// within the Multi-Paxos model's bounds (at most 3 clients, 6 commands, 4 slots,
    /// counting the final reads), so its step logs can be validated.
    #[arg(long)]
    pub ops_per_client: Option<u64>,
    /// With `--ops-per-client`: every client issues its operations at the same moments (no
    /// random offset), so that their requests reach the leader together and it proposes them
    /// as one run of slots (specs/protocol.md "Runs of slots"), which validation then checks.
    #[arg(long, requires = "ops_per_client")]
    pub together: bool,
    /// With `--ops-per-client`: the read-only clients (every other one) issue this many reads
    /// instead, paced over the run. Reads are no commands, so the model bounds only how many
    /// wait at once, not how many there are: many reads close together are how a bounded
    /// run meets leases (a read answered at once while the last round's lease holds, L5).
    #[arg(long, requires = "ops_per_client")]
    pub reader_ops: Option<u64>,
    /// The replicas propose no command at or above this slot (`[limits] slot_limit`).
    #[arg(long)]
    pub slot_limit: Option<u64>,
    /// Slots in flight at the leader (`[limits] window`; default: the configuration's).
    #[arg(long)]
    pub window: Option<u64>,
    /// Each replica snapshots and compacts its log every this many applied slots
    /// (`[limits] snapshot_interval_slots`; default: the configuration's). Small values make
    /// a killed or cut-off replica fall behind the others' snapshots, so that it must
    /// install one to catch up.
    #[arg(long)]
    pub snapshot_interval_slots: Option<u64>,
    /// How the replicas serve reads (`[reads] policy`: read-index, log or lease).
    #[arg(long, default_value = "read-index", value_parser = ReadPolicy::from_name)]
    pub read_policy: ReadPolicy,
    /// The initial leader's protocol clock runs this many parts per million faster than the
    /// host's (negative: slower; `serve --clock-drift-ppm`), the others' at the host's rate.
    /// A slow leader is the case leases guard against: within `[reads] max_clock_drift_ppm`
    /// a lease run must stay linearizable; far beyond it, a deposed leader may answer stale
    /// reads, and the history check must say so.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i64).range(-999_999..=1_000_000))]
    pub clock_drift_ppm: i64,
    /// How long a client waits for one replica's answer before it tries another, in
    /// milliseconds (an operation is retried for up to 3 s in all).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=3000))]
    pub attempt_timeout_ms: u64,
    /// The leader's heartbeat interval (`[timing] heartbeat_interval_ms`; default: the
    /// configuration's). A short one keeps a leader whose clock runs slow in office.
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Start the replicas with a deliberate bug (builds with the `mutants` feature only): the
    /// run must then fail.
    #[cfg(feature = "mutants")]
    #[arg(long, value_parser = paxos_impl::runtime::SeededBug::from_name)]
    pub seeded_bug: Option<paxos_impl::runtime::SeededBug>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` a replica (the leader half the time), restart it later.
    Kill,
    /// `kill -9` a replica, append a torn record to its WAL, restart it.
    TornWal,
    /// Cut a replica (the leader half the time) off from every peer, both ways.
    Partition,
    /// Cut the messages from one replica to another, one way only.
    OneWay,
    /// Delay every peer message by 5 to 50 ms.
    Latency,
}

const ALL_FAULTS: [FaultKind; 5] = [
    FaultKind::Kill,
    FaultKind::TornWal,
    FaultKind::Partition,
    FaultKind::OneWay,
    FaultKind::Latency,
];

/// How long one client operation may take, retries included, before it counts as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the cluster gets to elect a leader after the last fault is healed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Serialize)]
pub struct OperationCounts {
    pub total: u64,
    pub answered: u64,
    pub refused: u64,
    pub unknown: u64,
    pub reads: u64,
    pub writes: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub format: String,
    pub nodes: u32,
    pub clients: u32,
    pub keys: u32,
    pub seed: u64,
    pub duration_secs: f64,
    pub operations: OperationCounts,
    pub faults: BTreeMap<String, u64>,
    /// Distinct leading ballots seen by polling `/status`, minus one.
    pub leader_changes: u64,
    pub linearizable: Option<bool>,
    pub acknowledged_writes_lost: u64,
    pub check_ms: u64,
    /// Operations checked (refused ones left out), keys, and search steps.
    pub checked_operations: usize,
    pub checked_keys: usize,
    pub search_steps: u64,
    pub violation: Option<ViolationSummary>,
    pub seeded_bug: Option<String>,
    /// `[reads] policy` of every replica.
    pub read_policy: String,
    /// Whether the replicas talked mutual TLS (`--insecure`: plain TCP).
    pub peer_tls: bool,
    /// Each replica's injected clock drift (`--clock-drift-ppm`), in parts per million.
    pub clock_drift_ppm: Vec<i64>,
    /// Reads answered under a lease (`paxos_lease_reads_total`), summed over the replicas'
    /// processes running at the end (a restarted process counts from its restart).
    pub lease_reads: u64,
    /// The replicas' step logs (`--step-logs`), one per replica, for `paxos-conform validate`.
    pub step_logs: Vec<PathBuf>,
    /// Snapshots the replicas took (K1) and installed from a peer (K4), over every process
    /// of the run (counted in their logs).
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
}

/// Where the history stops being linearizable: the key, how far the longest linearization
/// got, and the earliest-invoked operations it could not place (the full history is written
/// with `--history`).
#[derive(Debug, Serialize)]
pub struct ViolationSummary {
    pub key: String,
    pub operations: usize,
    pub linearized: usize,
    pub first_unplaced: Vec<Operation>,
}

fn summarize(verdict: &Verdict) -> Option<ViolationSummary> {
    let violation = verdict.violation.as_ref()?;
    let placed: std::collections::BTreeSet<usize> = violation
        .longest_linearized_prefix
        .iter()
        .copied()
        .collect();
    let first_unplaced = (0..violation.operations.len())
        .filter(|i| !placed.contains(i))
        .take(6)
        .map(|i| violation.operations[i].clone())
        .collect();
    Some(ViolationSummary {
        key: violation.key.clone(),
        operations: violation.operations.len(),
        linearized: placed.len(),
        first_unplaced,
    })
}

/// One direction between two replicas, as the proxy sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Link {
    cut: bool,
    delay_ms: u64,
}

struct Proxy {
    from: u32,
    to: u32,
    /// Bound when the configuration is written, so no other process can take the port.
    listener: std::sync::Mutex<Option<TcpListener>>,
    /// The real listener of replica `to`.
    target: SocketAddr,
    state: watch::Sender<Link>,
}

/// The replicas' processes and everything needed to restart them.
struct Nodes {
    exe: PathBuf,
    dir: PathBuf,
    children: Vec<Option<Child>>,
    seeded_bug: Option<String>,
    step_logs: bool,
    step_log_segment_mib: Option<u64>,
    /// Per replica: `serve --clock-drift-ppm`.
    clock_drift_ppm: Vec<i64>,
}

impl Nodes {
    fn config_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node-{id}.toml"))
    }

    fn data_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn step_log(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node-{id}.steps.jsonl"))
    }

    fn start(&mut self, id: u32) -> Result<(), String> {
        let log_path = self.dir.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut command = std::process::Command::new(&self.exe);
        command
            .args(["--log-format", "json", "serve", "--config"])
            .arg(self.config_path(id))
            .args(["--id", &id.to_string(), "--data-dir"])
            .arg(self.data_dir(id));
        if let Some(bug) = &self.seeded_bug {
            command.args(["--seeded-bug", bug]);
        }
        if self.step_logs {
            command.arg("--step-log").arg(self.step_log(id));
            if let Some(mib) = self.step_log_segment_mib {
                command.args(["--step-log-segment-mib", &mib.to_string()]);
            }
        }
        let drift = self.clock_drift_ppm[id as usize];
        if drift != 0 {
            command.arg(format!("--clock-drift-ppm={drift}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        self.children[id as usize] = Some(child);
        Ok(())
    }

    /// Snapshots taken and installed, counted in every replica's log.
    fn snapshots(&self) -> (u64, u64) {
        let (mut taken, mut installed) = (0, 0);
        for id in 0..self.children.len() {
            let path = self.dir.join(format!("node-{id}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            taken += text.matches(SNAPSHOT_TAKEN).count() as u64;
            installed += text.matches(SNAPSHOT_INSTALLED).count() as u64;
        }
        (taken, installed)
    }

    fn kill9(&mut self, id: u32) {
        if let Some(mut child) = self.children[id as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn running(&self, id: u32) -> bool {
        self.children[id as usize].is_some()
    }

    /// SIGTERM to all, then kill what is left after 10 s.
    fn stop_all(&mut self) {
        for child in self.children.iter().flatten() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let started = Instant::now();
        for child in self.children.iter_mut().flatten() {
            while matches!(child.try_wait(), Ok(None))
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn run(args: ChaosArgs) -> ExitCode {
    match chaos(args).await {
        Ok(report) => {
            let passed = report.linearizable == Some(true) && report.acknowledged_writes_lost == 0;
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs one chaos experiment and prints (and optionally writes) its report.
pub async fn chaos(args: ChaosArgs) -> Result<Report, String> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let faults = if args.faults.is_empty() {
        ALL_FAULTS.to_vec()
    } else {
        args.faults.clone()
    };
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("paxos-chaos-{}-{seed}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(feature = "mutants")]
    let seeded_bug = args.seeded_bug.map(|bug| bug.name().to_string());
    #[cfg(not(feature = "mutants"))]
    let seeded_bug: Option<String> = None;
    say!(
        "chaos: {} replicas, {} clients, {} keys, {} s, faults {:?}, reads {}, seed {seed}, in {}",
        args.nodes,
        args.clients,
        args.keys,
        args.duration_secs,
        faults,
        args.read_policy.name(),
        dir.display()
    );

    let adjust = |config: &mut ClusterConfig| {
        let limits = &mut config.limits;
        limits.slot_limit = args.slot_limit.or(limits.slot_limit);
        limits.window = args.window.unwrap_or(limits.window);
        limits.snapshot_interval_slots = args
            .snapshot_interval_slots
            .unwrap_or(limits.snapshot_interval_slots);
        config.reads.policy = args.read_policy;
        let timing = &mut config.timing;
        timing.heartbeat_interval_ms = args
            .heartbeat_interval_ms
            .unwrap_or(timing.heartbeat_interval_ms);
    };
    let tls = !args.insecure;
    let (proxies, client_addrs) = write_configs(&dir, args.nodes, tls, adjust).await?;
    let proxies = Arc::new(proxies);
    let mut proxy_tasks = Vec::new();
    for proxy in proxies.iter() {
        proxy_tasks.push(start_proxy(proxy).await?);
    }
    // The initial leader is the lowest id, 0 (`write_configs` sets no other).
    let clock_drift_ppm: Vec<i64> = (0..args.nodes)
        .map(|id| if id == 0 { args.clock_drift_ppm } else { 0 })
        .collect();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let nodes = Arc::new(Mutex::new(Nodes {
        exe,
        dir: dir.clone(),
        children: (0..args.nodes).map(|_| None).collect(),
        seeded_bug: seeded_bug.clone(),
        step_logs: args.step_logs,
        step_log_segment_mib: args.step_log_segment_mib,
        clock_drift_ppm: clock_drift_ppm.clone(),
    }));
    for id in 0..args.nodes {
        lock(&nodes).start(id)?;
    }
    let endpoints: Vec<String> = client_addrs.iter().map(ToString::to_string).collect();
    let http =
        http_client(Duration::from_millis(args.attempt_timeout_ms)).map_err(|e| e.to_string())?;
    wait_for_leader(&http, &endpoints, SETTLE_TIMEOUT)
        .await
        .ok_or("no leader elected at start")?;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let history = Arc::new(Mutex::new(History::default()));
    let ballots = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let observer = tokio::spawn(observe_leaders(
        http.clone(),
        endpoints.clone(),
        Arc::clone(&ballots),
        deadline + SETTLE_TIMEOUT,
    ));
    let mut clients = Vec::new();
    for c in 0..args.clients {
        // Each client starts at another replica, and every other one only reads: a reader
        // never blocks on a write, so it stays with the replica that answers it, as
        // dashboards and caches do; that is how stale reads from a deposed leader would reach
        // a user.
        let mut own = endpoints.clone();
        own.rotate_left(c as usize % endpoints.len());
        let reads_percent = if c % 2 == 1 { 100 } else { 40 };
        let ops_max = match reads_percent {
            100 => args.reader_ops.or(args.ops_per_client),
            _ => args.ops_per_client,
        };
        let plan = ClientPlan {
            endpoints: own,
            reads_percent,
            keys: args.keys,
            seed: seed.wrapping_add(u64::from(c) + 1),
            ops_max,
            // A bounded client spreads its few operations over the run, so that they meet
            // the faults; the first waits a random part of the gap.
            pace: ops_max.map(|ops| {
                Duration::from_secs(args.duration_secs) / u32::try_from(ops + 1).unwrap_or(u32::MAX)
            }),
            together: args.together,
        };
        clients.push(tokio::spawn(run_client(
            http.clone(),
            plan,
            started,
            deadline,
            Arc::clone(&history),
        )));
    }
    let plan = FaultPlan {
        faults: faults.clone(),
        hold_ms: args.hold_ms,
        leader_bias: args.leader_bias.clamp(0.0, 1.0),
        seed,
        deadline,
    };
    let injected = inject_faults(&plan, &nodes, &proxies, &http, &endpoints).await?;
    for client in clients {
        let _ = client.await;
    }

    // Heal, restart, settle, and read every key once more.
    for proxy in proxies.iter() {
        proxy.state.send_replace(Link::default());
    }
    for id in 0..args.nodes {
        let mut nodes = lock(&nodes);
        if !nodes.running(id) {
            nodes.start(id)?;
        }
    }
    let settled = wait_for_leader(&http, &endpoints, SETTLE_TIMEOUT).await;
    if settled.is_none() {
        say!("warning: no leader within {SETTLE_TIMEOUT:?} after healing");
    }
    // A bounded run may have used every slot below the slot limit: its final reads may never
    // be chosen, so they get an ordinary operation's timeout.
    let final_timeout = match args.ops_per_client {
        Some(_) => OP_TIMEOUT,
        None => SETTLE_TIMEOUT,
    };
    final_reads(
        &http,
        &endpoints,
        args.keys,
        started,
        &history,
        final_timeout,
    )
    .await;
    observer.abort();
    let elapsed = started.elapsed();
    let mut lease_reads = 0.0;
    for endpoint in &endpoints {
        if let Ok(samples) = fetch_metrics(&http, endpoint).await {
            lease_reads += samples
                .iter()
                .find(|(name, _)| name == "paxos_lease_reads_total")
                .map_or(0.0, |(_, value)| *value);
        }
    }
    lock(&nodes).stop_all();
    // Each replica's closed segments, oldest first, then the file it was writing.
    let mut step_logs = Vec::new();
    if args.step_logs {
        for id in 0..args.nodes {
            let active = lock(&nodes).step_log(id);
            let closed = closed_segments(&active)
                .map_err(|e| format!("cannot list the segments of {}: {e}", active.display()))?;
            step_logs.extend(closed.into_iter().map(|(_, path)| path));
            // A replica killed between closing a file and beginning the next, and not
            // started again, has none being written.
            if active.exists() {
                step_logs.push(active);
            }
        }
    }
    for task in proxy_tasks {
        task.abort();
    }

    let (snapshots_taken, snapshots_installed) = lock(&nodes).snapshots();
    let history = lock(&history).clone();
    let check_started = Instant::now();
    let verdict = history::check(&history);
    let check_ms = check_started.elapsed().as_millis() as u64;
    let lost = lost_acknowledged_writes(&history);
    let leader_changes = (lock(&ballots).len() as u64).saturating_sub(1);
    let report = Report {
        format: REPORT_FORMAT.to_string(),
        nodes: args.nodes,
        clients: args.clients,
        keys: args.keys,
        seed,
        duration_secs: elapsed.as_secs_f64(),
        operations: count(&history),
        faults: injected,
        leader_changes,
        linearizable: verdict.linearizable,
        acknowledged_writes_lost: lost,
        check_ms,
        checked_operations: verdict.operations,
        checked_keys: verdict.keys,
        search_steps: verdict.steps,
        violation: summarize(&verdict),
        seeded_bug,
        read_policy: args.read_policy.name().to_string(),
        peer_tls: tls,
        clock_drift_ppm,
        lease_reads: lease_reads as u64,
        step_logs,
        snapshots_taken,
        snapshots_installed,
    };
    print_report(&report);
    if let Some(path) = &args.history {
        write_json(path, &history)?;
    }
    if let Some(path) = &args.report {
        write_json(path, &report)?;
    }
    Ok(report)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A port no other listener holds now. The caller keeps the listener until every address of
/// the run is chosen, so that no two of them are the same port, and drops it before the
/// replica that uses the port starts.
async fn free_addr() -> Result<(SocketAddr, TcpListener), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((addr, listener))
}

/// One configuration per replica: replica `i` reaches replica `j` through `proxy(i→j)`.
async fn write_configs(
    dir: &Path,
    n: u32,
    tls: bool,
    adjust: impl Fn(&mut ClusterConfig),
) -> Result<(Vec<Proxy>, Vec<SocketAddr>), String> {
    let mut peer_addrs = Vec::new();
    let mut client_addrs = Vec::new();
    // Held until the proxies are bound too, then dropped with this function's locals.
    let mut held = Vec::new();
    for _ in 0..n {
        for addrs in [&mut peer_addrs, &mut client_addrs] {
            let (addr, listener) = free_addr().await?;
            addrs.push(addr);
            held.push(listener);
        }
    }
    let secret = dir.join("cluster.secret");
    if !secret.exists() {
        PeerSecret::generate()
            .write_new(&secret)
            .map_err(|e| format!("cannot write {}: {e}", secret.display()))?;
    }
    let certs = dir.join("certs");
    if tls {
        ensure_loopback_certs(&certs, n)
            .map_err(|e| format!("cannot make certificates in {}: {e}", certs.display()))?;
    }
    let mut proxies = Vec::new();
    for from in 0..n {
        let mut addresses = Vec::new();
        for to in 0..n {
            let peer_addr = if to == from {
                peer_addrs[to as usize]
            } else {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| format!("cannot find a free port: {e}"))?;
                let listen = listener.local_addr().map_err(|e| e.to_string())?;
                let (state, _) = watch::channel(Link::default());
                proxies.push(Proxy {
                    from,
                    to,
                    listener: std::sync::Mutex::new(Some(listener)),
                    target: peer_addrs[to as usize],
                    state,
                });
                listen
            };
            addresses.push((peer_addr, client_addrs[to as usize]));
        }
        let mut config = ClusterConfig::with_addresses("chaos", addresses);
        if let Some(auth) = config.auth.as_mut() {
            auth.secret_file = secret.clone();
        }
        if tls {
            config.tls = Some(Tls { dir: certs.clone() });
        }
        adjust(&mut config);
        config.validate().map_err(|e| e.to_string())?;
        let path = dir.join(format!("node-{from}.toml"));
        let text = config.to_toml().map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok((proxies, client_addrs))
}

/// Accepts the dialler's connections for one ordered pair and forwards them to the real
/// listener, honouring the link's state: a cut link closes its connections and refuses new
/// ones; a delayed link holds every chunk for the delay.
async fn start_proxy(proxy: &Proxy) -> Result<tokio::task::JoinHandle<()>, String> {
    let target = proxy.target;
    let listener = lock(&proxy.listener)
        .take()
        .ok_or_else(|| format!("proxy {}→{} started twice", proxy.from, proxy.to))?;
    let state = proxy.state.subscribe();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                continue;
            };
            if state.borrow().cut {
                drop(inbound);
                continue;
            }
            let state = state.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                // Dialler → listener carries the messages (delayed, cut); the other way only
                // the handshake replies (cut with it).
                tokio::select! {
                    _ = pump(in_read, out_write, state.clone(), true) => {}
                    _ = pump(out_read, in_write, state, false) => {}
                }
            });
        }
    }))
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<Link>,
    delayed: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if state.borrow().cut {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = state.borrow().delay_ms;
        if delayed && delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if state.borrow().cut || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The ballot `endpoint` leads at, if its `/status` answers and says it leads.
async fn leading_ballot(http: &reqwest::Client, endpoint: &str) -> Option<String> {
    let url = format!("http://{endpoint}/status");
    let status = http.get(&url).send().await.ok()?;
    let status = status.json::<serde_json::Value>().await.ok()?;
    (status["role"] == "leading").then(|| status["ballot"].as_str().unwrap_or_default().to_string())
}

/// The first endpoint (index and ballot) that says it leads.
async fn leader(http: &reqwest::Client, endpoints: &[String]) -> Option<(usize, String)> {
    for (i, endpoint) in endpoints.iter().enumerate() {
        if let Some(ballot) = leading_ballot(http, endpoint).await {
            return Some((i, ballot));
        }
    }
    None
}

async fn wait_for_leader(
    http: &reqwest::Client,
    endpoints: &[String],
    timeout: Duration,
) -> Option<usize> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Some((i, _)) = leader(http, endpoints).await {
            return Some(i);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn observe_leaders(
    http: reqwest::Client,
    endpoints: Vec<String>,
    ballots: Arc<Mutex<std::collections::BTreeSet<String>>>,
    until: Instant,
) {
    while Instant::now() < until {
        for endpoint in &endpoints {
            if let Some(ballot) = leading_ballot(&http, endpoint).await {
                lock(&ballots).insert(ballot);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ns_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn to_call(op: &KvOp) -> KvCall {
    match op.clone() {
        KvOp::Put { key, value } => KvCall::Put { key, value },
        KvOp::Get { key } => KvCall::Get { key },
        KvOp::Delete { key } => KvCall::Delete { key },
        KvOp::Cas { key, expected, new } => KvCall::Cas { key, expected, new },
    }
}

/// Executes `op` and records it.
async fn record(
    client: &mut Client,
    op: &KvOp,
    started: Instant,
    history: &Mutex<History>,
) -> Outcome {
    let invoked_ns = ns_since(started);
    let outcome = match client.execute(op).await {
        Ok(reply) => Outcome::Answered {
            returned_ns: ns_since(started),
            answer: KvAnswer {
                value: reply.value,
                swapped: reply.swapped,
            },
        },
        Err(ClientError::Refused { status, message }) if (400..500).contains(&status) => {
            Outcome::Refused {
                reason: format!("{status}: {message}"),
            }
        }
        Err(e) => Outcome::Unknown {
            reason: e.to_string(),
        },
    };
    lock(history).operations.push(Operation {
        client: client.client_id(),
        call: to_call(op),
        invoked_ns,
        outcome: outcome.clone(),
    });
    outcome
}

fn new_client(http: &reqwest::Client, endpoints: &[String], rng: &mut StdRng) -> Option<Client> {
    let mut client = Client::new(http.clone(), endpoints, rng.random()).ok()?;
    client.op_timeout = OP_TIMEOUT;
    Some(client)
}

/// What one client does: where it starts, how often it reads, over how many keys.
struct ClientPlan {
    endpoints: Vec<String>,
    reads_percent: u32,
    keys: u32,
    seed: u64,
    /// Stop after this many operations, or at the first unknown one (bounded runs).
    ops_max: Option<u64>,
    /// Wait this long before each operation (bounded runs).
    pace: Option<Duration>,
    /// The first wait is half a `pace` for every client, not a random part of it.
    together: bool,
}

async fn run_client(
    http: reqwest::Client,
    plan: ClientPlan,
    started: Instant,
    deadline: Instant,
    history: Arc<Mutex<History>>,
) {
    let ClientPlan {
        endpoints,
        reads_percent,
        keys,
        seed,
        ops_max,
        pace,
        together,
    } = plan;
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(mut client) = new_client(&http, &endpoints, &mut rng) else {
        return;
    };
    if let Some(pace) = pace {
        // A bounded client cannot go on under a new id after an unknown operation, so it
        // keeps retrying the same request (same seq) for as long as the whole run.
        client.op_timeout = pace * u32::try_from(ops_max.unwrap_or(1) + 1).unwrap_or(u32::MAX);
    }
    let mut written = 0u64;
    let mut last_seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    while Instant::now() < deadline && ops_max.is_none_or(|max| written < max) {
        if let Some(pace) = pace {
            let jitter = match (written, together) {
                (0, true) => 0.5,
                (0, false) => rng.random_range(0.0..1.0),
                _ => 1.0,
            };
            tokio::time::sleep(pace.mul_f64(jitter)).await;
        }
        let key = format!("k{}", rng.random_range(0..keys.max(1)));
        written += 1;
        let value = format!("c{}-{written}", client.client_id());
        let dice = rng.random_range(0..100u32);
        let write = (dice - dice.min(reads_percent)) * 100 / (100 - reads_percent).max(1);
        let op = match write {
            _ if dice < reads_percent => KvOp::Get { key: key.clone() },
            0..60 => KvOp::Put {
                key: key.clone(),
                value,
            },
            60..85 => KvOp::Cas {
                key: key.clone(),
                expected: last_seen.get(&key).cloned().flatten(),
                new: Some(value),
            },
            _ => KvOp::Delete { key: key.clone() },
        };
        match record(&mut client, &op, started, &history).await {
            Outcome::Answered { answer, .. } => {
                let now = match &op {
                    KvOp::Get { .. } => answer.value,
                    KvOp::Put { value, .. } => Some(value.clone()),
                    KvOp::Delete { .. } => None,
                    KvOp::Cas { new, .. } if answer.swapped == Some(true) => new.clone(),
                    KvOp::Cas { .. } => answer.value,
                };
                last_seen.insert(key, now);
            }
            Outcome::Refused { .. } => {}
            Outcome::Unknown { .. } if ops_max.is_some() => return,
            Outcome::Unknown { .. } => {
                // The unknown operation may still execute; a fresh client id keeps it from
                // being confused with this client's later operations.
                match new_client(&http, &endpoints, &mut rng) {
                    Some(fresh) => client = fresh,
                    None => return,
                }
            }
        }
    }
}

async fn final_reads(
    http: &reqwest::Client,
    endpoints: &[String],
    keys: u32,
    started: Instant,
    history: &Mutex<History>,
    timeout: Duration,
) {
    let mut rng = StdRng::seed_from_u64(u64::MAX);
    let Some(mut client) = new_client(http, endpoints, &mut rng) else {
        return;
    };
    client.op_timeout = timeout;
    for k in 0..keys.max(1) {
        let op = KvOp::Get {
            key: format!("k{k}"),
        };
        record(&mut client, &op, started, history).await;
    }
}

/// Applies one fault at a time until the deadline; returns how many of each kind.
/// Which faults, how long each is held, how often aimed at the leader, until when.
struct FaultPlan {
    faults: Vec<FaultKind>,
    hold_ms: u64,
    leader_bias: f64,
    seed: u64,
    deadline: Instant,
}

async fn inject_faults(
    plan: &FaultPlan,
    nodes: &Mutex<Nodes>,
    proxies: &[Proxy],
    http: &reqwest::Client,
    endpoints: &[String],
) -> Result<BTreeMap<String, u64>, String> {
    let FaultPlan {
        faults,
        hold_ms,
        leader_bias,
        seed,
        deadline,
    } = plan;
    let (hold_ms, leader_bias, deadline) = (*hold_ms, *leader_bias, *deadline);
    let mut rng = StdRng::seed_from_u64(*seed);
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    let n = u32::try_from(endpoints.len()).map_err(|e| e.to_string())?;
    loop {
        let gap = Duration::from_millis(rng.random_range(300..1200));
        if Instant::now() + gap >= deadline {
            break;
        }
        tokio::time::sleep(gap).await;
        let kind = faults[rng.random_range(0..faults.len())];
        let hold = Duration::from_millis(rng.random_range(hold_ms / 5..=hold_ms));
        let target = if rng.random_bool(leader_bias) {
            match leader(http, endpoints).await {
                Some((i, _)) => i as u32,
                None => rng.random_range(0..n),
            }
        } else {
            rng.random_range(0..n)
        };
        let name = kind
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        *injected.entry(name.clone()).or_default() += 1;
        tracing::info!(fault = %name, target, hold_ms = hold.as_millis() as u64, "fault");
        match kind {
            FaultKind::Kill | FaultKind::TornWal => {
                lock(nodes).kill9(target);
                if kind == FaultKind::TornWal {
                    let data_dir = lock(nodes).data_dir(target);
                    tear_wal_tail(&data_dir, &mut rng)?;
                }
                tokio::time::sleep(hold).await;
                lock(nodes).start(target)?;
            }
            FaultKind::Partition => {
                let cut: Vec<&Proxy> = proxies
                    .iter()
                    .filter(|p| p.from == target || p.to == target)
                    .collect();
                set(&cut, |l| l.cut = true);
                tokio::time::sleep(hold).await;
                set(&cut, |l| l.cut = false);
            }
            FaultKind::OneWay => {
                let proxy = &proxies[rng.random_range(0..proxies.len())];
                set(&[proxy], |l| l.cut = true);
                tokio::time::sleep(hold).await;
                set(&[proxy], |l| l.cut = false);
            }
            FaultKind::Latency => {
                let delay = rng.random_range(5..50);
                let all: Vec<&Proxy> = proxies.iter().collect();
                set(&all, |l| l.delay_ms = delay);
                tokio::time::sleep(hold).await;
                set(&all, |l| l.delay_ms = 0);
            }
        }
    }
    Ok(injected)
}

fn set(proxies: &[&Proxy], change: impl Fn(&mut Link)) {
    for proxy in proxies {
        proxy.state.send_modify(&change);
    }
}

/// Appends half a record to the newest WAL segment: what a crash in the middle of a write
/// leaves. (Only a write that was never acknowledged can be torn; cutting into records that
/// were fsynced would be losing durable state, which no crash does.)
fn tear_wal_tail(data_dir: &Path, rng: &mut StdRng) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(()); // never started: nothing to tear
    };
    let newest = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max();
    let Some(segment) = newest else {
        return Ok(());
    };
    let claimed: u32 = rng.random_range(16..512);
    let mut torn = claimed.to_le_bytes().to_vec();
    torn.extend(rng.random::<u32>().to_le_bytes());
    let present = rng.random_range(0..claimed as usize);
    torn.extend((0..present).map(|_| rng.random::<u8>()));
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .map_err(|e| format!("cannot open {}: {e}", segment.display()))?;
    file.write_all(&torn)
        .map_err(|e| format!("cannot tear {}: {e}", segment.display()))
}

fn count(history: &History) -> OperationCounts {
    let mut counts = OperationCounts::default();
    for op in &history.operations {
        counts.total += 1;
        if op.call.is_write() {
            counts.writes += 1;
        } else {
            counts.reads += 1;
        }
        match op.outcome {
            Outcome::Answered { .. } => counts.answered += 1,
            Outcome::Refused { .. } => counts.refused += 1,
            Outcome::Unknown { .. } => counts.unknown += 1,
        }
    }
    counts
}

/// Acknowledged writes whose effect the final read of their key does not show although
/// nothing could have overwritten them: every other write to the key (answered or not)
/// was invoked and answered before it. The history check finds these too; this count names
/// the durability failure on its own.
fn lost_acknowledged_writes(history: &History) -> u64 {
    let ops = &history.operations;
    let returned = |op: &Operation| match op.outcome {
        Outcome::Answered { returned_ns, .. } => Some(returned_ns),
        _ => None,
    };
    let mut lost = 0;
    for (i, write) in ops.iter().enumerate() {
        let KvCall::Put { key, value } = &write.call else {
            continue;
        };
        let Some(done) = returned(write) else {
            continue;
        };
        let last = ops.iter().enumerate().all(|(j, other)| {
            j == i
                || other.call.key() != key
                || !other.call.is_write()
                || matches!(other.outcome, Outcome::Refused { .. })
                || returned(other).is_some_and(|r| r < write.invoked_ns)
        });
        if !last {
            continue;
        }
        // The final read: the last answered read of the key invoked after the write returned.
        let final_read = ops
            .iter()
            .filter(|op| op.call.key() == key && !op.call.is_write() && op.invoked_ns > done)
            .filter_map(|op| match &op.outcome {
                Outcome::Answered { answer, .. } => Some((op.invoked_ns, answer)),
                _ => None,
            })
            .max_by_key(|(invoked, _)| *invoked);
        if let Some((_, answer)) = final_read {
            if answer.value.as_deref() != Some(value.as_str()) {
                lost += 1;
            }
        }
    }
    lost
}

fn print_report(report: &Report) {
    let ops = &report.operations;
    say!(
        "operations: {} ({} answered, {} refused, {} unknown; {} reads, {} writes) in {:.1} s",
        ops.total,
        ops.answered,
        ops.refused,
        ops.unknown,
        ops.reads,
        ops.writes,
        report.duration_secs
    );
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    say!("faults: {}", faults.join(", "));
    say!("leader changes: {}", report.leader_changes);
    if report.read_policy == ReadPolicy::Lease.name() {
        say!(
            "lease reads: {} (processes running at the end); clock drift (ppm) {:?}",
            report.lease_reads,
            report.clock_drift_ppm
        );
    }
    say!(
        "snapshots: {} taken, {} installed from a peer",
        report.snapshots_taken,
        report.snapshots_installed
    );
    let verdict = match report.linearizable {
        Some(true) => "linearizable",
        Some(false) => "NOT linearizable",
        None => "unknown (search budget exhausted)",
    };
    say!(
        "history: {verdict} ({} operations on {} keys, {} search steps, {} ms)",
        report.checked_operations,
        report.checked_keys,
        report.search_steps,
        report.check_ms
    );
    if let Some(violation) = &report.violation {
        say!(
            "  key {:?}: at most {} of its {} operations fit one order; the first that do not:",
            violation.key,
            violation.linearized,
            violation.operations
        );
        for op in &violation.first_unplaced {
            let outcome = match &op.outcome {
                Outcome::Answered {
                    returned_ns,
                    answer,
                } => format!(
                    "answered {:?}{} at {:.6} s",
                    answer.value,
                    answer
                        .swapped
                        .map(|s| format!(" swapped {s}"))
                        .unwrap_or_default(),
                    *returned_ns as f64 / 1e9
                ),
                other => format!("{other:?}"),
            };
            say!(
                "    client {} at {:.6} s: {:?} -> {outcome}",
                op.client,
                op.invoked_ns as f64 / 1e9,
                op.call
            );
        }
    }
    say!(
        "acknowledged writes lost: {}",
        report.acknowledged_writes_lost
    );
    if !report.step_logs.is_empty() {
        let logs: Vec<String> = report
            .step_logs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        say!(
            "step logs (check with paxos-conform validate): {}",
            logs.join(" ")
        );
    }
}
