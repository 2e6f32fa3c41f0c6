//! `core-bench`: our Multi-Paxos core against OmniPaxos, in process, one thread, 3 replicas,
//! in-memory network and storage, a window of commands in flight. Prints one table row per
//! window (median of `--reps` runs, the two systems interleaved so that machine load hits both
//! alike), with the most heap each system's run held and the page faults of its timed part. Run it in release: debug builds run the
//! core's invariant scans.
//!
//!   cargo run --release -p paxos-bench --bin core-bench -- --commands 200000 --reps 5

use clap::Parser;
use paxos_bench::harness::{self, Cluster, Measurement};
use paxos_bench::omni::Omni;
use paxos_bench::ours::Ours;
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};

/// Counts live heap bytes, so that each run reports the most it held. Peak RSS cannot: both
/// systems run in one process, interleaved, and freed memory stays with the process. The cost
/// is a few atomic operations per allocation, alike for both systems.
#[global_allocator]
static HEAP: &PeakMemAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// One run: its measurement and the most heap the cluster and the loop held during it.
#[derive(Clone, Copy)]
struct Run {
    measured: Measurement,
    peak_heap_bytes: usize,
}

#[derive(Parser)]
struct Args {
    /// Timed commands per run.
    #[arg(long, default_value_t = 200_000)]
    commands: u64,
    /// Untimed commands after the election, before the timed part.
    #[arg(long, default_value_t = 10_000)]
    warmup: u64,
    /// Runs per system and window; the table shows the median.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Commands in flight.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 64, 1024])]
    windows: Vec<u64>,
    /// Run only this system (`ours` or `omnipaxos`), for profiling; prints no table.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(only) = &args.only {
        return profile(only, &args);
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; the core scans its invariants on every step");
    }
    println!(
        "3 replicas, one thread, in-memory network and storage; {} timed commands per run \
         after {} warm-up, median of {} runs",
        args.commands, args.warmup, args.reps
    );
    println!();
    println!("| window | ours commits/s | omnipaxos commits/s | ratio (ours / omnipaxos) | messages per command, ours | messages per command, omnipaxos | peak heap MB, ours | peak heap MB, omnipaxos | page faults per 1,000 commands, ours | page faults per 1,000 commands, omnipaxos |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &window in &args.windows {
        let mut ours = Vec::new();
        let mut omni = Vec::new();
        for _ in 0..args.reps {
            ours.push(measure(|| Ours::new(window), window, &args)?);
            omni.push(measure(Omni::new, window, &args)?);
        }
        let (ours, omni) = (median(&mut ours), median(&mut omni));
        let (o, p) = (ours.measured, omni.measured);
        println!(
            "| {window} | {} | {} | {:.2} | {:.3} | {:.3} | {:.0} | {:.0} | {} | {} |",
            thousands(o.commits_per_second()),
            thousands(p.commits_per_second()),
            o.commits_per_second() / p.commits_per_second(),
            o.messages as f64 / o.commands as f64,
            p.messages as f64 / p.commands as f64,
            megabytes(ours.peak_heap_bytes),
            megabytes(omni.peak_heap_bytes),
            per_thousand(o.page_faults, o.commands),
            per_thousand(p.page_faults, p.commands),
        );
    }
    Ok(())
}

fn profile(only: &str, args: &Args) -> anyhow::Result<()> {
    for &window in &args.windows {
        for _ in 0..args.reps {
            match only {
                "ours" => measure(|| Ours::new(window), window, args)?,
                "omnipaxos" => measure(Omni::new, window, args)?,
                other => anyhow::bail!("--only takes ours or omnipaxos, not {other}"),
            };
        }
    }
    Ok(())
}

/// One run on a cluster `build` makes; the heap is counted from before the cluster exists.
fn measure<C: Cluster>(
    build: impl FnOnce() -> anyhow::Result<C>,
    window: u64,
    args: &Args,
) -> anyhow::Result<Run> {
    HEAP.reset_peak_memory();
    let mut cluster = build()?;
    let measured = harness::run(&mut cluster, window, args.commands, args.warmup)?;
    let peak_heap_bytes = HEAP.get_peak_memory();
    eprintln!(
        "{} window {window}: {:.0} commits/s, peak heap {:.0} MB, {} page faults per 1,000 commands",
        cluster.name(),
        measured.commits_per_second(),
        megabytes(peak_heap_bytes),
        per_thousand(measured.page_faults, measured.commands),
    );
    Ok(Run {
        measured,
        peak_heap_bytes,
    })
}

/// The run of median throughput (its heap figure with it).
fn median(runs: &mut [Run]) -> Run {
    runs.sort_by(|a, b| {
        let speed = |r: &Run| r.measured.commits_per_second();
        speed(a).total_cmp(&speed(b))
    });
    runs[runs.len() / 2]
}

fn per_thousand(count: Option<u64>, commands: u64) -> String {
    count.map_or("n/a".into(), |n| {
        format!("{:.1}", n as f64 * 1000.0 / commands as f64)
    })
}

fn megabytes(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
