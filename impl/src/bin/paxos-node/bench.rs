//! `paxos-node bench`: closed-loop load. Each client issues one request at a time (a put of
//! `--value-size` bytes, or with probability `--read-ratio` a linearizable get) over random
//! keys, with its own client id and sequence numbers; latencies go into an HdrHistogram. A
//! progress line is printed every second; at the end, throughput, percentiles, and the WAL
//! fsyncs per committed command read from every node's `/metrics` before and after.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use paxos_impl::runtime::client::{fetch_json, fetch_metrics, http_client, Client, Op};
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
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
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
    let before = scrape(&http, &endpoints).await;
    let counts = Arc::new(Counts::default());
    let duration = Duration::from_secs(args.duration);
    let started = Instant::now();
    let base_id = crate::random_client_id() & !0xFFFF;
    let mut workers = Vec::new();
    for i in 0..args.clients {
        let client = match Client::new(http.clone(), &endpoints, base_id + u64::from(i)) {
            Ok(client) => client,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
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
    let leader = find_leader(&http, &endpoints).await;
    report(&args, &counts, &histogram, retries, elapsed);
    report_fsyncs(&endpoints, &before, &after, leader);
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

struct Worker {
    client: Client,
    rng: StdRng,
    value: String,
    keys: u64,
    read_ratio: f64,
    counts: Arc<Counts>,
}

impl Worker {
    async fn run(mut self, until: Instant) -> (Histogram<u64>, u64) {
        let mut histogram = new_histogram();
        self.client.op_timeout = Duration::from_secs(10);
        while Instant::now() < until {
            let key = format!("k{}", self.rng.random_range(0..self.keys));
            let op = if self.rng.random_bool(self.read_ratio) {
                Op::Get { key }
            } else {
                Op::Put {
                    key,
                    value: self.value.clone(),
                }
            };
            let t0 = Instant::now();
            match self.client.execute(&op).await {
                Ok(_) => {
                    let micros = t0.elapsed().as_micros().max(1) as u64;
                    let _ = histogram.record(micros.min(60_000_000));
                    self.counts.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counts.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "request failed");
                }
            }
        }
        (histogram, self.client.retries)
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
        "clients {}  duration {:.1}s  value {} B  read ratio {}",
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

async fn find_leader(http: &reqwest::Client, endpoints: &[String]) -> Option<usize> {
    for (i, endpoint) in endpoints.iter().enumerate() {
        let status = fetch_json::<serde_json::Value>(http, endpoint, "/status").await;
        if status.is_ok_and(|s| s["role"] == "leading") {
            return Some(i);
        }
    }
    None
}

fn report_fsyncs(endpoints: &[String], before: &Scrape, after: &Scrape, leader: Option<usize>) {
    let delta = |node: usize, name: &str| -> Option<f64> {
        Some(sample(after, node, name)? - sample(before, node, name)?)
    };
    let Some(leader) = leader else {
        say!("fsyncs: no leader found at the end; not reported");
        return;
    };
    let Some(committed) = delta(leader, "paxos_commands_executed_total") else {
        say!("fsyncs: metrics unavailable");
        return;
    };
    let mut total = 0.0;
    for (i, endpoint) in endpoints.iter().enumerate() {
        let fsyncs = delta(i, "paxos_wal_fsyncs_total").unwrap_or(0.0);
        total += fsyncs;
        let role = if i == leader { " (leader)" } else { "" };
        say!("  {endpoint}{role}: {fsyncs:.0} fsyncs");
    }
    let leader_fsyncs = delta(leader, "paxos_wal_fsyncs_total").unwrap_or(0.0);
    if committed > 0.0 {
        say!(
            "fsyncs per committed command: leader {:.3}, whole cluster {:.3} ({committed:.0} commands)",
            leader_fsyncs / committed,
            total / committed
        );
    }
}
