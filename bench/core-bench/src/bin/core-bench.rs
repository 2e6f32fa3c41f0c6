//! `core-bench`: our Multi-Paxos core against OmniPaxos, in process, one thread, 3 replicas,
//! in-memory network and storage, a window of commands in flight. Prints one table row per
//! window (median of `--reps` runs, the two systems interleaved so that machine load hits both
//! alike). Run it in release: debug builds run the core's invariant scans.
//!
//!   cargo run --release -p paxos-bench --bin core-bench -- --commands 200000 --reps 5

use clap::Parser;
use paxos_bench::harness::{self, Cluster, Measurement};
use paxos_bench::omni::Omni;
use paxos_bench::ours::Ours;

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
    println!("| window | ours commits/s | omnipaxos commits/s | ratio (ours / omnipaxos) | messages per command, ours | messages per command, omnipaxos |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &window in &args.windows {
        let mut ours = Vec::new();
        let mut omni = Vec::new();
        for _ in 0..args.reps {
            let mut cluster = Ours::new(window)?;
            ours.push(measure(&mut cluster, window, &args)?);
            let mut cluster = Omni::new()?;
            omni.push(measure(&mut cluster, window, &args)?);
        }
        let (ours, omni) = (median(&mut ours), median(&mut omni));
        println!(
            "| {window} | {} | {} | {:.2} | {:.3} | {:.3} |",
            thousands(ours.commits_per_second()),
            thousands(omni.commits_per_second()),
            ours.commits_per_second() / omni.commits_per_second(),
            ours.messages as f64 / ours.commands as f64,
            omni.messages as f64 / omni.commands as f64,
        );
    }
    Ok(())
}

fn profile(only: &str, args: &Args) -> anyhow::Result<()> {
    for &window in &args.windows {
        for _ in 0..args.reps {
            match only {
                "ours" => measure(&mut Ours::new(window)?, window, args)?,
                "omnipaxos" => measure(&mut Omni::new()?, window, args)?,
                other => anyhow::bail!("--only takes ours or omnipaxos, not {other}"),
            };
        }
    }
    Ok(())
}

fn measure(cluster: &mut dyn Cluster, window: u64, args: &Args) -> anyhow::Result<Measurement> {
    let m = harness::run(cluster, window, args.commands, args.warmup)?;
    eprintln!(
        "{} window {window}: {:.0} commits/s",
        cluster.name(),
        m.commits_per_second()
    );
    Ok(m)
}

fn median(runs: &mut [Measurement]) -> Measurement {
    runs.sort_by(|a, b| a.commits_per_second().total_cmp(&b.commits_per_second()));
    runs[runs.len() / 2]
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
