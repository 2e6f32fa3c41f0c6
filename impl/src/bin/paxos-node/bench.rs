//! `paxos-node bench`: closed-loop load. Each client issues one request at a time (a put of
//! `--value-size` bytes, or with probability `--read-ratio` a linearizable get) over random
//! keys, with its own client id and sequence numbers; latencies go into an HdrHistogram. A
//! progress line is printed every second; at the end, throughput, percentiles, and the WAL
//! fsyncs per committed command read from every node's `/metrics` before and after.
//!
//! `--system etcd` drives an etcd cluster instead, through its JSON gateway (`POST
//! /v3/kv/put`, `POST /v3/kv/range`, keys and values base64), with the same clients, keys,
//! values and mix, so that the two systems are measured by one load generator. Every etcd
//! request goes to the first endpoint (make it the leader: a follower would add a forward);
//! the fsyncs are etcd's `etcd_disk_wal_fsync_duration_seconds_count` over all endpoints.
//! `--csv FILE` appends one row per run for `bench/etcd-compare.sh` and its plots.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use paxos_impl::multi::KvOp;
use paxos_impl::runtime::client::{fetch_json, fetch_metrics, http_client, Client};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    target: crate::Target,
    /// Concurrent clients, each with one request outstanding.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    clients: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Fraction of requests that are reads (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Seed for keys and the read/write mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What the endpoints serve.
    #[arg(long, value_enum, default_value_t = System::Paxos)]
    system: System,
    /// Append one CSV row with the results to this file (a header first if it is empty).
    #[arg(long)]
    csv: Option<PathBuf>,
}

/// The system under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// `paxos-node serve` replicas (HTTP API of `runtime/http.rs`).
    Paxos,
    /// etcd v3 members, through the JSON gateway of their client URLs.
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Paxos => "paxos",
            System::Etcd => "etcd",
        }
    }

    /// The metric counting WAL fsyncs on one node.
    fn fsync_metric(self) -> &'static str {
        match self {
            System::Paxos => "paxos_wal_fsyncs_total",
            System::Etcd => "etcd_disk_wal_fsync_duration_seconds_count",
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    ok_writes: AtomicU64,
    errors: AtomicU64,
}

/// What a run measured beyond the histogram: the growth of the nodes' metrics.
#[derive(Default)]
struct Disk {
    /// WAL fsyncs of the leader (ours only) and of every node, per committed command.
    leader_fsyncs_per_command: Option<f64>,
    cluster_fsyncs_per_command: Option<f64>,
    /// Ours: records per group commit (one write and one fsync) at the leader.
    leader_records_per_fsync: Option<f64>,
    /// Ours: commands committed per leader fsync.
    commands_per_leader_fsync: Option<f64>,
    /// Ours: protocol messages per peer frame sent by the leader.
    leader_messages_per_frame: Option<f64>,
}

pub async fn run(args: BenchArgs) -> ExitCode {
    if !(0.0..=1.0).contains(&args.read_ratio) {
        eprintln!(
            "error: --read-ratio {} is not a fraction: give a number from 0.0 (writes only) to \
             1.0 (reads only)",
            args.read_ratio
        );
        return ExitCode::from(2);
    }
    if args.keys == 0 {
        eprintln!("error: --keys 0 leaves nothing to write: give at least 1");
        return ExitCode::from(2);
    }
    let http = match http_client(Duration::from_secs(5)) {
        Ok(http) => http,
        Err(e) => return crate::fail(e),
    };
    let endpoints = args.target.endpoints.clone();
    let Some(first) = endpoints.first().cloned() else {
        eprintln!("error: no endpoint");
        return ExitCode::from(2);
    };
    let before = scrape(&http, &endpoints).await;
    let counts = Arc::new(Counts::default());
    let duration = Duration::from_secs(args.duration);
    let started = Instant::now();
    let base_id = crate::random_client_id() & !0xFFFF;
    let mut workers = Vec::new();
    for i in 0..args.clients {
        let client = match args.system {
            System::Paxos => match Client::new(http.clone(), &endpoints, base_id + u64::from(i)) {
                Ok(client) => Backend::Paxos(client),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            },
            System::Etcd => match EtcdClient::new(http.clone(), &first) {
                Ok(client) => Backend::Etcd(client),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            },
        };
        let worker = Worker {
            client,
            rng: StdRng::seed_from_u64(args.seed.wrapping_add(u64::from(i))),
            value: "x".repeat(args.value_size),
            keys: args.keys,
            read_ratio: args.read_ratio,
            counts: Arc::clone(&counts),
        };
        workers.push(tokio::spawn(worker.run(started + duration)));
    }
    let progress = tokio::spawn(progress(Arc::clone(&counts), started, duration));
    let mut histogram = new_histogram();
    let mut retries = 0;
    for worker in workers {
        if let Ok((h, r)) = worker.await {
            let _ = histogram.add(&h);
            retries += r;
        }
    }
    progress.abort();
    let elapsed = started.elapsed();
    let after = scrape(&http, &endpoints).await;
    report(&args, &counts, &histogram, retries, elapsed);
    let disk = match args.system {
        System::Paxos => {
            let leader = find_leader(&http, &endpoints).await;
            report_fsyncs(&endpoints, &before, &after, leader)
        }
        System::Etcd => report_etcd_fsyncs(&endpoints, &before, &after, &counts),
    };
    let reads = match args.system {
        System::Paxos => read_policy(&http, &endpoints).await,
        // etcd's linearizable Range (its default) is served through Raft's ReadIndex.
        System::Etcd => "read-index".to_string(),
    };
    if let Some(path) = &args.csv {
        let run = Run {
            counts: &counts,
            histogram: &histogram,
            elapsed,
            disk: &disk,
            reads: &reads,
        };
        if let Err(e) = append_csv(path, &args, &run) {
            eprintln!("error: cannot append to {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if counts.ok.load(Ordering::Relaxed) == 0 {
        eprintln!("error: no request succeeded");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits: constant bounds, valid by construction.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// One closed-loop client of either system.
enum Backend {
    Paxos(Client),
    Etcd(EtcdClient),
}

impl Backend {
    async fn execute(&mut self, op: &KvOp) -> Result<(), String> {
        match self {
            Backend::Paxos(client) => client
                .execute(op)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Backend::Etcd(client) => client.execute(op).await,
        }
    }

    fn retries(&self) -> u64 {
        match self {
            Backend::Paxos(client) => client.retries,
            Backend::Etcd(_) => 0,
        }
    }
}

/// An etcd v3 client over the JSON gateway: one request at a time, no retry (a failure is
/// counted as an error). Range requests are linearizable, etcd's default.
struct EtcdClient {
    http: reqwest::Client,
    put_url: String,
    range_url: String,
}

impl EtcdClient {
    fn new(http: reqwest::Client, endpoint: &str) -> Result<Self, String> {
        let base = if endpoint.starts_with("http://") {
            endpoint.trim_end_matches('/').to_string()
        } else if endpoint.contains("://") {
            return Err(format!("{endpoint}: only http:// endpoints are supported"));
        } else {
            format!("http://{endpoint}")
        };
        Ok(EtcdClient {
            http,
            put_url: format!("{base}/v3/kv/put"),
            range_url: format!("{base}/v3/kv/range"),
        })
    }

    async fn execute(&mut self, op: &KvOp) -> Result<(), String> {
        let (url, body) = match op {
            KvOp::Put { key, value } => (
                &self.put_url,
                serde_json::json!({ "key": base64(key.as_bytes()), "value": base64(value.as_bytes()) }),
            ),
            KvOp::Get { key } => (
                &self.range_url,
                serde_json::json!({ "key": base64(key.as_bytes()) }),
            ),
            other => return Err(format!("not benchmarked on etcd: {other:?}")),
        };
        let response = self.http.post(url).json(&body).send().await;
        let response = response.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        // The whole body is read so the connection is reused for the next request.
        let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: {status}: {text}"));
        }
        Ok(())
    }
}

/// Standard base64 with padding (RFC 4648), as etcd's gateway expects for bytes fields.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Worker {
    client: Backend,
    rng: StdRng,
    value: String,
    keys: u64,
    read_ratio: f64,
    counts: Arc<Counts>,
}

impl Worker {
    async fn run(mut self, until: Instant) -> (Histogram<u64>, u64) {
        let mut histogram = new_histogram();
        if let Backend::Paxos(client) = &mut self.client {
            client.op_timeout = Duration::from_secs(10);
        }
        while Instant::now() < until {
            let key = format!("k{}", self.rng.random_range(0..self.keys));
            let op = if self.rng.random_bool(self.read_ratio) {
                KvOp::Get { key }
            } else {
                KvOp::Put {
                    key,
                    value: self.value.clone(),
                }
            };
            let t0 = Instant::now();
            let write = matches!(op, KvOp::Put { .. });
            match self.client.execute(&op).await {
                Ok(()) => {
                    let micros = t0.elapsed().as_micros().max(1) as u64;
                    let _ = histogram.record(micros.min(60_000_000));
                    self.counts.ok.fetch_add(1, Ordering::Relaxed);
                    if write {
                        self.counts.ok_writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    self.counts.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "request failed");
                }
            }
        }
        (histogram, self.client.retries())
    }
}

async fn progress(counts: Arc<Counts>, started: Instant, duration: Duration) {
    let mut last = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let ok = counts.ok.load(Ordering::Relaxed);
        let errors = counts.errors.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0}s/{}s] {:>7} ops/s   total {ok}   errors {errors}",
            started.elapsed().as_secs_f64(),
            duration.as_secs(),
            ok - last
        );
        last = ok;
    }
}

fn report(args: &BenchArgs, counts: &Counts, h: &Histogram<u64>, retries: u64, elapsed: Duration) {
    let ok = counts.ok.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    say!(
        "system {}  clients {}  duration {:.1}s  value {} B  read ratio {}",
        args.system.name(),
        args.clients,
        elapsed.as_secs_f64(),
        args.value_size,
        args.read_ratio
    );
    say!(
        "requests {ok} ok, {errors} failed, {retries} retried   throughput {:.0} ops/s",
        ok as f64 / elapsed.as_secs_f64()
    );
    say!(
        "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
}

type Scrape = Vec<Option<Vec<(String, f64)>>>;

async fn scrape(http: &reqwest::Client, endpoints: &[String]) -> Scrape {
    let mut out = Vec::new();
    for endpoint in endpoints {
        out.push(fetch_metrics(http, endpoint).await.ok());
    }
    out
}

fn sample(scrape: &Scrape, node: usize, name: &str) -> Option<f64> {
    let samples = scrape.get(node)?.as_ref()?;
    samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// The cluster's `[reads] policy`, as the first replica that answers `/status` reports it.
async fn read_policy(http: &reqwest::Client, endpoints: &[String]) -> String {
    for endpoint in endpoints {
        let status = fetch_json::<serde_json::Value>(http, endpoint, "/status").await;
        if let Some(policy) = status
            .ok()
            .and_then(|s| s["read_policy"].as_str().map(String::from))
        {
            return policy;
        }
    }
    "unknown".to_string()
}

async fn find_leader(http: &reqwest::Client, endpoints: &[String]) -> Option<usize> {
    for (i, endpoint) in endpoints.iter().enumerate() {
        let status = fetch_json::<serde_json::Value>(http, endpoint, "/status").await;
        if status.is_ok_and(|s| s["role"] == "leading") {
            return Some(i);
        }
    }
    None
}

fn report_fsyncs(
    endpoints: &[String],
    before: &Scrape,
    after: &Scrape,
    leader: Option<usize>,
) -> Disk {
    let delta = |node: usize, name: &str| -> Option<f64> {
        Some(sample(after, node, name)? - sample(before, node, name)?)
    };
    let Some(leader) = leader else {
        say!("fsyncs: no leader found at the end; not reported");
        return Disk::default();
    };
    let Some(committed) = delta(leader, "paxos_commands_executed_total") else {
        say!("fsyncs: metrics unavailable");
        return Disk::default();
    };
    let mut total = 0.0;
    for (i, endpoint) in endpoints.iter().enumerate() {
        let fsyncs = delta(i, "paxos_wal_fsyncs_total").unwrap_or(0.0);
        total += fsyncs;
        let role = if i == leader { " (leader)" } else { "" };
        say!("  {endpoint}{role}: {fsyncs:.0} fsyncs");
    }
    let leader_fsyncs = delta(leader, "paxos_wal_fsyncs_total").unwrap_or(0.0);
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b.filter(|b| *b > 0.0)?);
    let disk = Disk {
        leader_fsyncs_per_command: ratio(Some(leader_fsyncs), Some(committed)),
        cluster_fsyncs_per_command: ratio(Some(total), Some(committed)),
        leader_records_per_fsync: ratio(
            delta(leader, "paxos_wal_records_total"),
            delta(leader, "paxos_wal_batches_total"),
        ),
        commands_per_leader_fsync: ratio(Some(committed), Some(leader_fsyncs)),
        leader_messages_per_frame: ratio(
            delta(leader, "paxos_peer_messages_sent_total"),
            delta(leader, "paxos_peer_frames_sent_total"),
        ),
    };
    if committed > 0.0 {
        say!(
            "fsyncs per committed command: leader {:.3}, whole cluster {:.3} ({committed:.0} commands)",
            leader_fsyncs / committed,
            total / committed
        );
    }
    if let (Some(records), Some(commands), Some(messages)) = (
        disk.leader_records_per_fsync,
        disk.commands_per_leader_fsync,
        disk.leader_messages_per_frame,
    ) {
        say!(
            "leader batching: {records:.1} records per group commit, {commands:.1} commands per fsync, {messages:.1} messages per peer frame"
        );
    }
    disk
}

/// etcd: fsyncs over every member per acknowledged write (linearizable reads write nothing).
fn report_etcd_fsyncs(
    endpoints: &[String],
    before: &Scrape,
    after: &Scrape,
    counts: &Counts,
) -> Disk {
    let name = System::Etcd.fsync_metric();
    let mut total = 0.0;
    for (i, endpoint) in endpoints.iter().enumerate() {
        let (Some(a), Some(b)) = (sample(after, i, name), sample(before, i, name)) else {
            say!("  {endpoint}: {name} unavailable");
            return Disk::default();
        };
        say!("  {endpoint}: {:.0} fsyncs", a - b);
        total += a - b;
    }
    let writes = counts.ok_writes.load(Ordering::Relaxed) as f64;
    if writes == 0.0 {
        return Disk::default();
    }
    say!(
        "fsyncs per acknowledged write, all members: {:.3}",
        total / writes
    );
    Disk {
        cluster_fsyncs_per_command: Some(total / writes),
        ..Disk::default()
    }
}

const CSV_HEADER: &str = "system,clients,read_ratio,value_bytes,seconds,ok,errors,throughput_ops,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,leader_fsyncs_per_cmd,cluster_fsyncs_per_cmd,leader_records_per_fsync,cmds_per_leader_fsync,leader_msgs_per_frame,reads";

/// What one run measured, for its CSV row.
struct Run<'a> {
    counts: &'a Counts,
    histogram: &'a Histogram<u64>,
    elapsed: Duration,
    disk: &'a Disk,
    /// How the system served reads (`[reads] policy` for ours).
    reads: &'a str,
}

fn append_csv(path: &PathBuf, args: &BenchArgs, run: &Run<'_>) -> std::io::Result<()> {
    let Run {
        counts,
        histogram: h,
        elapsed,
        disk,
        reads,
    } = run;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if file.metadata()?.len() == 0 {
        writeln!(file, "{CSV_HEADER}")?;
    }
    let ok = counts.ok.load(Ordering::Relaxed);
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    writeln!(
        file,
        "{},{},{},{},{:.3},{ok},{},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{reads}",
        args.system.name(),
        args.clients,
        args.read_ratio,
        args.value_size,
        elapsed.as_secs_f64(),
        counts.errors.load(Ordering::Relaxed),
        ok as f64 / elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0,
        opt(disk.leader_fsyncs_per_command),
        opt(disk.cluster_fsyncs_per_command),
        opt(disk.leader_records_per_fsync),
        opt(disk.commands_per_leader_fsync),
        opt(disk.leader_messages_per_frame),
    )
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }
}
