//! `paxos-node cluster`: a local loopback cluster in one command. Writes `cluster.toml`, a
//! new `cluster.secret` and the replicas' certificates (`certs/`) in the data directory, starts one `paxos-node serve` process per replica (logs to
//! `node-<id>.log`), and stops them all with SIGTERM on Ctrl-C. A replica that exits (or is
//! killed) is reported with the command that restarts it; the others keep serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use paxos_impl::runtime::auth::PeerSecret;
use paxos_impl::runtime::config::{ClusterConfig, ReadPolicy, Tls, LOOPBACK_SECRET_FILE};
use paxos_impl::runtime::tls::ensure_loopback_certs;

/// Where in the data directory the cluster's certificates go.
const CERTS_DIR: &str = "certs";

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Replicas (3 or 5 are the useful sizes; at least 2).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=9))]
    nodes: u32,
    /// Where the configuration, the WALs and the logs go (default: a new directory under the
    /// system's temporary directory). Reusing a directory restarts the same cluster.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Peer port of replica 0; replica i uses this + i.
    #[arg(long, default_value_t = 7000)]
    peer_port: u16,
    /// Client (HTTP) port of replica 0; replica i uses this + i.
    #[arg(long, default_value_t = 8000)]
    client_port: u16,
    /// Cluster name written into the configuration; replicas refuse peers of another cluster.
    #[arg(long, default_value = "local")]
    cluster_id: String,
    /// How the replicas serve reads (`[reads] policy`: read-index, log or lease).
    #[arg(long, default_value = "read-index", value_parser = ReadPolicy::from_name)]
    read_policy: ReadPolicy,
    /// Every replica writes a step log (`serve --step-log`) to `node-<id>.steps.jsonl` in the
    /// data directory, for `paxos-conform validate` (and to measure what logging costs).
    #[arg(long)]
    step_logs: bool,
    /// With `--step-logs`: each step log starts a new file every this many MiB
    /// (`serve --step-log-segment-mib`).
    #[arg(long, value_name = "MIB", requires = "step_logs",
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    step_log_segment_mib: Option<u64>,
    /// With `--step-log-segment-mib`: closed files kept per replica, the oldest deleted
    /// (`serve --step-log-keep`; default: all).
    #[arg(long, value_name = "N", requires = "step_log_segment_mib",
          value_parser = clap::value_parser!(u64).range(1..))]
    step_log_keep: Option<u64>,
    /// Plain TCP between replicas (by default they talk mutual TLS with certificates made in
    /// `certs/` of the data directory).
    #[arg(long)]
    insecure: bool,
}

/// How long stopped replicas get to exit before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: ClusterArgs, json_logs: bool) -> ExitCode {
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("paxos-cluster-{}", std::process::id()))
    });
    let mut config = ClusterConfig::loopback(
        &args.cluster_id,
        args.nodes,
        args.peer_port,
        args.client_port,
    );
    config.reads.policy = args.read_policy;
    if args.insecure {
        tracing::warn!("--insecure: replicas talk plain TCP, readable and forgeable on the path");
    } else {
        config.tls = Some(Tls {
            dir: PathBuf::from(CERTS_DIR),
        });
    }
    let config_path = match write_config(&dir, &config) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut children = Vec::new();
    for node in &config.nodes {
        match spawn_node(&dir, &config_path, node.id, json_logs, &args) {
            Ok(child) => children.push((node.id, child)),
            Err(e) => {
                eprintln!("error: cannot start node {}: {e}", node.id);
                stop_all(&mut children);
                return ExitCode::from(1);
            }
        }
    }
    let endpoints: Vec<String> = config
        .nodes
        .iter()
        .map(|n| n.client_addr.to_string())
        .collect();
    say!(
        "cluster {:?}: {} replicas, reads {}, data and logs in {}",
        args.cluster_id,
        args.nodes,
        args.read_policy.name(),
        dir.display()
    );
    for (node, (_, child)) in config.nodes.iter().zip(&children) {
        say!(
            "  node {}: pid {}  client http://{}  peers {}  log {}",
            node.id,
            child.id(),
            node.client_addr,
            node.peer_addr,
            dir.join(format!("node-{}.log", node.id)).display()
        );
    }
    let endpoints = endpoints.join(",");
    say!("try:  paxos-node put greeting hello --endpoints {endpoints}");
    say!("      paxos-node get greeting --endpoints {endpoints}");
    say!("      paxos-node status --endpoints {endpoints}");
    say!("Ctrl-C stops the cluster.");
    let mut exited = BTreeSet::new();
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (id, child) in children.iter_mut() {
            if exited.contains(id) {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                exited.insert(*id);
                let exe = std::env::current_exe().unwrap_or_else(|_| "paxos-node".into());
                eprintln!(
                    "node {id} exited ({status}); the others keep serving. Restart it with:\n  \
                     {} serve --config {} --id {id} --data-dir {}",
                    exe.display(),
                    config_path.display(),
                    dir.join(format!("node-{id}")).display()
                );
            }
        }
    }
    stop_all(&mut children);
    say!("cluster stopped");
    ExitCode::SUCCESS
}

/// Writes `cluster.toml` and, the first time, the cluster's secret beside it (a restarted
/// cluster keeps its secret).
fn write_config(dir: &Path, config: &ClusterConfig) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let secret = dir.join(LOOPBACK_SECRET_FILE);
    if !secret.exists() {
        PeerSecret::generate()
            .write_new(&secret)
            .map_err(|e| format!("cannot write {}: {e}", secret.display()))?;
    }
    if config.tls.is_some() {
        let certs = dir.join(CERTS_DIR);
        ensure_loopback_certs(&certs, config.nodes.len() as u32)
            .map_err(|e| format!("cannot make certificates in {}: {e}", certs.display()))?;
    }
    let path = dir.join("cluster.toml");
    let text = config.to_toml().map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn spawn_node(
    dir: &Path,
    config: &Path,
    id: u32,
    json_logs: bool,
    args: &ClusterArgs,
) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let log_path = dir.join(format!("node-{id}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let format = if json_logs { "json" } else { "text" };
    let mut command = std::process::Command::new(exe);
    command
        .args(["--log-format", format, "serve", "--config"])
        .arg(config)
        .args(["--id", &id.to_string(), "--data-dir"])
        .arg(dir.join(format!("node-{id}")));
    if args.step_logs {
        command
            .arg("--step-log")
            .arg(dir.join(format!("node-{id}.steps.jsonl")));
    }
    if let Some(mib) = args.step_log_segment_mib {
        command.args(["--step-log-segment-mib", &mib.to_string()]);
    }
    if let Some(keep) = args.step_log_keep {
        command.args(["--step-log-keep", &keep.to_string()]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())
}

/// SIGTERM to every replica, then wait; kill whatever is left after the timeout.
fn stop_all(children: &mut [(u32, Child)]) {
    for (_, child) in children.iter_mut() {
        // A replica already dead (killed by hand) is not signalled: `kill` would complain.
        if matches!(child.try_wait(), Ok(None)) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }
    let started = Instant::now();
    for (id, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if started.elapsed() > STOP_TIMEOUT => {
                    eprintln!("node {id} did not stop in time: killed");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
