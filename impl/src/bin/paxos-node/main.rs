//! `paxos-node`: run a replica (`serve`), a local loopback cluster (`cluster`), client commands
//! (`put`, `get`, `delete`, `cas`, `status`) and a load generator (`bench`).
//!
//! Exit codes: 0 success; 1 the operation failed (no answer, refused, node error); 2 bad
//! arguments or configuration.

/// `println!` for the CLI's output: a closed pipe (`paxos-node status | head`) ends the
/// program quietly with success, as Unix tools do, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

mod bench;
mod chaos;
mod cluster;
mod history;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use paxos_impl::multi::KvOp;
use paxos_impl::runtime::auth::PeerSecret;
use paxos_impl::runtime::client::{fetch_json, http_client, Client};
use paxos_impl::runtime::config::ClusterConfig;
use paxos_impl::runtime::step_log::Rotation;
use paxos_impl::runtime::{serve, ServeError, ServeOptions};
use tracing_subscriber::EnvFilter;

const EXAMPLES: &str = "\
Examples:
  paxos-node cluster --nodes 3                  # 3 replicas on loopback, clients on :8000-8002
  paxos-node put greeting hello                 # {\"key\":\"greeting\",\"value\":null,\"node\":0}
  paxos-node get greeting                       # a linearizable read, through the log
  paxos-node cas greeting hello bye             # \"\" as OLD means absent, \"\" as NEW deletes
  paxos-node delete greeting
  paxos-node status                             # per node: pid, role, ballot, leader, applied
  paxos-node bench --clients 16 --duration 10   # throughput and latency percentiles
  paxos-node serve --config cluster.toml --id 0 --data-dir data/0

Client commands go to --endpoints (default 127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002, the
ports `cluster` uses) and follow redirects to the leader. The configuration file format is in
impl/src/runtime/config.rs; RUST_LOG=debug shows the protocol's transitions.

Exit codes: 0 success; 1 the operation failed (no answer, refused, node error); 2 bad
arguments or configuration.";

const SERVE_EXAMPLES: &str = "\
Examples:
  paxos-node serve --config cluster.toml --id 0 --data-dir data/0
  paxos-node --log-format json serve --config cluster.toml --id 1 --data-dir data/1 --seed 7

A minimal cluster.toml (every [timing] and [limits] field is optional):
  cluster_id = \"demo\"
  [[nodes]]
  id = 0
  peer_addr = \"127.0.0.1:7000\"
  client_addr = \"127.0.0.1:8000\"
  (one [[nodes]] entry per replica)

The replica recovers from the write-ahead log in --data-dir when it holds one. SIGTERM or
Ctrl-C stops it cleanly.";

const CLIENT_EXAMPLES: &str = "\
Examples:
  paxos-node put greeting hello
  paxos-node get greeting --endpoints 127.0.0.1:8000,127.0.0.1:8001
  paxos-node cas greeting hello bye --client-id 42 --timeout-ms 2000

Prints the node's JSON reply on one line: the value before (put, delete, cas) or the value
(get), and the node that answered.";

#[derive(Parser, Debug)]
#[command(
    name = "paxos-node",
    version,
    about = "A Multi-Paxos replicated key-value store: replica, local cluster, client and benchmark",
    after_help = EXAMPLES
)]
struct Cli {
    /// Log lines as human-readable text or as JSON objects (one per line, on stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one replica of the cluster described in the configuration file.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve {
        /// The cluster's TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// This replica's id in the configuration.
        #[arg(long)]
        id: u32,
        /// Where this replica keeps its write-ahead log (created if missing).
        #[arg(long)]
        data_dir: PathBuf,
        /// Seed of the election-timeout RNG (default: random, logged at start).
        #[arg(long)]
        seed: Option<u64>,
        /// Run with a deliberate bug, to show the chaos harness catches it (builds with the
        /// `mutants` feature only).
        #[cfg(feature = "mutants")]
        #[arg(long, value_parser = paxos_impl::runtime::SeededBug::from_name)]
        seeded_bug: Option<paxos_impl::runtime::SeededBug>,
        /// Append every transition of the protocol core to this file as JSON lines
        /// (`paxos-steps/8`) for `paxos-conform validate`. A line holds what its step changed,
        /// so it does not grow with the log.
        #[arg(long, value_name = "FILE")]
        step_log: Option<PathBuf>,
        /// Close the step log once it holds this many MiB and begin a new file with a
        /// checkpoint line (the replica's whole state); the closed one is kept with its number
        /// before the suffix, `node-0.000003.steps.jsonl` (specs/trace-format.md, "Rotation").
        #[arg(long, value_name = "MIB", requires = "step_log",
              value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        step_log_segment_mib: Option<u64>,
        /// Keep this many closed step-log segments, deleting the oldest (default: all).
        /// `paxos-conform validate` starts a replica whose first files are gone at its
        /// earliest checkpoint.
        #[arg(long, value_name = "N", requires = "step_log_segment_mib",
              value_parser = clap::value_parser!(u64).range(1..))]
        step_log_keep: Option<u64>,
        /// Fault injection: run the protocol's clock this many parts per million faster than
        /// the host's (negative: slower), as a drifting clock would. Leases are correct only
        /// while every replica's drift stays within `[reads] max_clock_drift_ppm`.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true, hide = true,
              value_parser = clap::value_parser!(i64).range(-999_999..=1_000_000))]
        clock_drift_ppm: i64,
    },
    /// Start a local cluster on loopback, one process per replica; Ctrl-C stops it.
    #[command(after_help = "\
Examples:
  paxos-node cluster --nodes 3
  paxos-node cluster --nodes 5 --data-dir /tmp/demo --peer-port 9000 --client-port 9100

Prints each replica's pid, client URL and log file. A replica that dies (kill -9 <pid>) is
reported with the command that restarts it from its write-ahead log.")]
    Cluster(cluster::ClusterArgs),
    /// Write a new random cluster secret (the file `[auth] secret_file` names); every
    /// replica of the cluster needs a copy of the same file.
    Secret {
        /// The file to create; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a cluster CA and, signed by it, a certificate and key per replica and per
    /// client (TLS between replicas and for clients). Keys are readable by their owner only;
    /// existing files are never overwritten.
    #[command(after_help = "\
Examples:
  paxos-node certs --out certs --config cluster.toml --client ops:admin --client web:write
  paxos-node certs --out certs --nodes 3 --client reader:read

Writes ca.pem and ca.key (keep ca.key off the replicas' machines: it issues certificates),
node-<id>.pem/.key for each replica (naming node-<id>.paxos and the replica's addresses) and
client-<name>.pem/.key for each client (naming <name>.<role>.client.paxos).")]
    Certs {
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The cluster's TOML configuration: one certificate per replica, naming its peer and
        /// client addresses.
        #[arg(long, conflicts_with = "nodes", required_unless_present = "nodes")]
        config: Option<PathBuf>,
        /// Replicas 0..N on loopback (instead of --config): their certificates name
        /// 127.0.0.1 and localhost.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        nodes: Option<u32>,
        /// A client certificate, NAME:ROLE with ROLE read, write or admin (repeatable).
        #[arg(long = "client", value_name = "NAME:ROLE", value_parser = parse_client)]
        clients: Vec<(String, paxos_impl::runtime::tls::Role)>,
        /// How many days the certificates are valid.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36_500))]
        days: u64,
    },
    /// Set KEY to VALUE (prints the value before).
    #[command(after_help = CLIENT_EXAMPLES)]
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Read KEY (a linearizable read, through the log).
    #[command(after_help = CLIENT_EXAMPLES)]
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete KEY (prints the value before).
    #[command(after_help = CLIENT_EXAMPLES)]
    Delete {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set KEY to NEW if it holds OLD. An empty OLD means "absent", an empty NEW deletes.
    #[command(after_help = CLIENT_EXAMPLES)]
    Cas {
        key: String,
        old: String,
        new: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print every endpoint's /status (one JSON object per line).
    #[command(
        after_help = "Examples:\n  paxos-node status\n  paxos-node status --endpoints 127.0.0.1:8000 | jq .role"
    )]
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Load generator: throughput and latency percentiles.
    #[command(after_help = "\
Examples:
  paxos-node bench --clients 16 --duration 10 --value-size 100
  paxos-node bench --clients 64 --read-ratio 0.5 --keys 100 --endpoints 127.0.0.1:8000

Needs a running cluster (paxos-node cluster). Prints a progress line a second, then
throughput, latency percentiles (p50 to p99.9) and WAL fsyncs per committed command.")]
    Bench(bench::BenchArgs),
    /// Fault injection with a checked history: a local cluster under concurrent clients while
    /// replicas are killed, WALs torn, links cut and slowed; the history must be linearizable.
    #[command(after_help = "\
Examples:
  paxos-node chaos --nodes 3 --duration-secs 30
  paxos-node chaos --nodes 5 --duration-secs 60 --seed 7 --report report.json --history history.json
  paxos-node chaos --faults partition,one-way --leader-bias 1 --hold-ms 4000

Starts its own cluster (one process per replica, ports chosen free on 127.0.0.1) behind
fault-injecting proxies. Exit codes: 0 linearizable with no acknowledged write lost; 1 the
check failed (the report names the key and the operations that fit no order); 2 the run could
not be set up.")]
    Chaos(chaos::ChaosArgs),
}

/// Where a client command goes.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Client API addresses, comma-separated (host:port or http://host:port).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002"
    )]
    pub endpoints: Vec<String>,
    /// The client id (default: random). Retries reuse it with the same sequence number.
    #[arg(long)]
    pub client_id: Option<u64>,
    /// Give up after this many milliseconds, retries included.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } | Command::Cluster(_) => "info",
        Command::Chaos(_) => "warn",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve {
            config,
            id,
            data_dir,
            seed,
            #[cfg(feature = "mutants")]
            seeded_bug,
            step_log,
            step_log_segment_mib,
            step_log_keep,
            clock_drift_ppm,
        } => {
            #[cfg(not(feature = "mutants"))]
            let seeded_bug = None;
            let options = |config| ServeOptions {
                config,
                id,
                data_dir,
                seed: seed.unwrap_or_else(rand::random),
                seeded_bug,
                step_log,
                step_log_rotation: step_log_segment_mib.map(|mib| Rotation {
                    segment_bytes: mib << 20,
                    keep: step_log_keep.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
                }),
                clock_drift_ppm,
            };
            run_serve(&config, options).await
        }
        Command::Cluster(args) => cluster::run(args, cli.log_format == LogFormat::Json).await,
        Command::Secret { out } => match PeerSecret::generate().write_new(&out) {
            Ok(()) => {
                say!("wrote a new cluster secret to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: cannot create {}: {e} (an existing secret is never overwritten)",
                    out.display()
                );
                ExitCode::from(2)
            }
        },
        Command::Certs {
            out,
            config,
            nodes,
            clients,
            days,
        } => certs(&out, config.as_deref(), nodes, clients, days),
        Command::Put { key, value, target } => client_op(&target, KvOp::Put { key, value }).await,
        Command::Get { key, target } => client_op(&target, KvOp::Get { key }).await,
        Command::Delete { key, target } => client_op(&target, KvOp::Delete { key }).await,
        Command::Cas {
            key,
            old,
            new,
            target,
        } => {
            let absent_if_empty = |s: String| (!s.is_empty()).then_some(s);
            let op = KvOp::Cas {
                key,
                expected: absent_if_empty(old),
                new: absent_if_empty(new),
            };
            client_op(&target, op).await
        }
        Command::Status { target } => status(&target).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
    }
}

async fn run_serve(config: &Path, options: impl FnOnce(ClusterConfig) -> ServeOptions) -> ExitCode {
    let config = match ClusterConfig::load(config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = options(config);
    match serve(options, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ServeError::Config(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "node stopped");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A client id below 2^53 (exact in JSON numbers everywhere).
pub fn random_client_id() -> u64 {
    rand::random::<u64>() >> 11
}

async fn client_op(target: &Target, op: KvOp) -> ExitCode {
    let http = match http_client(Duration::from_secs(5)) {
        Ok(http) => http,
        Err(e) => return fail(e),
    };
    let id = target.client_id.unwrap_or_else(random_client_id);
    let mut client = match Client::new(http, &target.endpoints, id) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    client.op_timeout = Duration::from_millis(target.timeout_ms);
    match client.execute(&op).await {
        Ok(reply) => match serde_json::to_string(&reply) {
            Ok(line) => {
                say!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}

async fn status(target: &Target) -> ExitCode {
    let http = match http_client(Duration::from_secs(2)) {
        Ok(http) => http,
        Err(e) => return fail(e),
    };
    let mut code = ExitCode::SUCCESS;
    for endpoint in &target.endpoints {
        match fetch_json::<serde_json::Value>(&http, endpoint, "/status").await {
            Ok(status) => say!("{status}"),
            Err(e) => {
                eprintln!("{endpoint}: no status: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    code
}

fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(1)
}

fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

fn parse_client(text: &str) -> Result<(String, paxos_impl::runtime::tls::Role), String> {
    let (name, role) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME:ROLE, e.g. ops:admin"))?;
    let role = role
        .parse()
        .map_err(|_| format!("{role:?}: the role is read, write or admin"))?;
    Ok((name.to_string(), role))
}

/// `paxos-node certs`.
fn certs(
    out: &Path,
    config: Option<&Path>,
    nodes: Option<u32>,
    clients: Vec<(String, paxos_impl::runtime::tls::Role)>,
    days: u64,
) -> ExitCode {
    use paxos_impl::runtime::tls::{write_certs, CertsPlan};
    let replicas = match (config, nodes) {
        (Some(path), _) => match ClusterConfig::load(path) {
            Ok(cluster) => cluster
                .nodes
                .iter()
                .map(|node| {
                    // An unspecified address (0.0.0.0) names no host a client could check.
                    let mut ips = vec![node.peer_addr.ip(), node.client_addr.ip()];
                    ips.retain(|ip| !ip.is_unspecified());
                    ips.dedup();
                    let mut addrs: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
                    if ips.iter().any(|ip| ip.is_loopback()) {
                        addrs.push("localhost".into());
                    }
                    (node.id, addrs)
                })
                .collect(),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(n)) => (0..n)
            .map(|id| (id, vec!["127.0.0.1".to_string(), "localhost".to_string()]))
            .collect(),
        (None, None) => unreachable!("clap requires --config or --nodes"),
    };
    let plan = CertsPlan {
        replicas,
        clients,
        valid_for: Duration::from_secs(days * 86_400),
    };
    match write_certs(out, &plan) {
        Ok(written) => {
            for path in written {
                say!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e} (existing files are never overwritten)");
            ExitCode::from(2)
        }
    }
}
