//! Group-commit throughput and latency of the WAL on the local disk.
//!
//! ```sh
//! cargo bench -p paxos-impl --bench wal_bench                      # 2 s per row, in the temp dir
//! cargo bench -p paxos-impl --bench wal_bench -- --seconds 5 --dir /var/lib/paxos-bench
//! ```
//!
//! For 1, 4, 16 and 64 concurrent writers, each appending 128-byte records with
//! `append_durable` (one record per call, blocking until it is fsynced), prints records/s,
//! fsyncs/s, mean records per fsync and the p50/p99 latency of one call. Run it on the disk the
//! service will use: a tmpfs or a disk with a volatile write cache makes fsync nearly free and
//! the numbers meaningless. Not run in CI.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use paxos_impl::storage::{GroupCommit, GroupCommitOptions, Wal, WalOptions};

const RECORD_BYTES: usize = 128;
const WRITERS: [usize; 4] = [1, 4, 16, 64];

struct Row {
    writers: usize,
    records_per_s: f64,
    fsyncs_per_s: f64,
    records_per_fsync: f64,
    latency_us_p50: u64,
    latency_us_p99: u64,
}

fn main() {
    let (seconds, dir) = arguments();
    println!(
        "WAL group commit: {RECORD_BYTES}-byte records, {seconds} s per row, in {}",
        dir.display()
    );
    println!(
        "{:>7} {:>11} {:>9} {:>13} {:>9} {:>9}",
        "writers", "records/s", "fsyncs/s", "records/fsync", "p50 µs", "p99 µs"
    );
    for writers in WRITERS {
        let row = run(writers, Duration::from_secs_f64(seconds), &dir);
        println!(
            "{:>7} {:>11.0} {:>9.0} {:>13.1} {:>9} {:>9}",
            row.writers,
            row.records_per_s,
            row.fsyncs_per_s,
            row.records_per_fsync,
            row.latency_us_p50,
            row.latency_us_p99
        );
    }
}

/// `--seconds S` and `--dir D`; anything else (such as cargo's `--bench`) is ignored.
fn arguments() -> (f64, PathBuf) {
    let mut seconds = 2.0;
    let mut dir = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds),
            "--dir" => dir = args.next().map(PathBuf::from).unwrap_or(dir),
            _ => {}
        }
    }
    (seconds, dir)
}

fn run(writers: usize, duration: Duration, parent: &std::path::Path) -> Row {
    std::fs::create_dir_all(parent).unwrap();
    let dir = tempfile::TempDir::new_in(parent).unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let group = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut latencies_us: Vec<u64> = thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (group, stop) = (&group, &stop);
                scope.spawn(move || {
                    let record = [w as u8; RECORD_BYTES];
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let call = Instant::now();
                        group.append_durable(&[&record]).unwrap();
                        latencies.push(call.elapsed().as_micros() as u64);
                    }
                    latencies
                })
            })
            .collect();
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stats = group.stats();
    drop(group);
    latencies_us.sort_unstable();
    let percentile = |p: f64| {
        let at = ((latencies_us.len() as f64 * p) as usize).min(latencies_us.len() - 1);
        latencies_us[at]
    };
    Row {
        writers,
        records_per_s: stats.records_written as f64 / elapsed,
        fsyncs_per_s: stats.fsyncs as f64 / elapsed,
        records_per_fsync: stats.records_written as f64 / stats.fsyncs.max(1) as f64,
        latency_us_p50: percentile(0.50),
        latency_us_p99: percentile(0.99),
    }
}
