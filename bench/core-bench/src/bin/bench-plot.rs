//! `bench-plot`: the Markdown tables and SVG plots of `bench/etcd-compare.sh` from the CSV
//! `paxos-node bench --csv` appended to.
//!
//!   target/release/bench-plot --csv specs/etcd-compare.csv --out specs

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use paxos_bench::plot;

#[derive(Parser)]
struct Args {
    /// Rows of `paxos-node bench --csv`.
    #[arg(long)]
    csv: PathBuf,
    /// `name,value` lines of the disk and network probes (fsync_us, loopback_rtt_us).
    #[arg(long)]
    probes: Option<PathBuf>,
    /// Directory for the SVG files.
    #[arg(long, default_value = "specs")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.csv)
        .with_context(|| format!("reading {}", args.csv.display()))?;
    let rows = plot::parse_csv(&text)?;
    if let Some(path) = &args.probes {
        let probes =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for line in probes.lines() {
            if let Some((name, value)) = line.split_once(',') {
                println!("{name}: {value}");
            }
        }
        println!();
    }
    print!("{}", plot::markdown(&rows));
    let throughput = args.out.join("etcd-compare-throughput.svg");
    plot::throughput_svg(&rows, &throughput)?;
    println!("\nwrote {}", throughput.display());
    for (mix, file) in [
        ("writes only", "etcd-compare-latency-writes.svg"),
        ("90% reads", "etcd-compare-latency-reads.svg"),
    ] {
        if plot::by_mix(&rows).contains_key(mix) {
            let path = args.out.join(file);
            plot::latency_svg(&rows, mix, &path)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
