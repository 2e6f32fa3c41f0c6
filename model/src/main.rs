//! `paxos-model`: model-check Synod, Multi-Paxos and the `lamport` variant, browse their state
//! spaces and counterexamples in stateright's explorer, and list the seeded bugs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use paxos_model::actor_trace;
use paxos_model::cli::{MultiBounds, SynodBounds};
use paxos_model::explorer_view::Readable;
use paxos_model::lamport::{LamportBug, LamportConfig, LamportModel};
use paxos_model::multi::{self, MultiBug, MultiConfig};
use paxos_model::runner::{self, CheckOptions, CheckTarget, Strategy};
use paxos_model::synod::{self, SynodBug, SynodConfig};
use paxos_model::types::BugCatalogue;

const EXAMPLES: &str = "\
Examples:
  paxos-model check                                   # every variant's default configuration
  paxos-model check synod --proposers 2 --rounds 2 --crashes 1
  paxos-model check synod --bug ignore-promise-values # see a seeded bug's counterexample
  paxos-model check multi --replicas 3 --slots 2 --commands 2 --rounds 2
  paxos-model check multi --bug promise-merge-off-by-one
  paxos-model check lamport --acceptors 3 --values 2 --max-ballot 2
  paxos-model explore synod --bug learner-mixed-ballots --addr 127.0.0.1:3000
  paxos-model explore --trace traces-out/synod-divergence-default-value-1.json
  paxos-model export-traces multi --crashes 1 --lossy --out traces-out --walks 3
  paxos-model bugs

Exit codes: 0 every property holds (and every `sometimes` example is reachable), 1 a property
failed (the counterexample is printed and saved as a trace file), 2 bad arguments.";

#[derive(Parser, Debug)]
#[command(name = "paxos-model", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Model-check a variant exhaustively and report every property's verdict.
    ///
    /// Without a variant, checks the default Synod and Multi-Paxos configurations (the main
    /// job).
    #[command(after_help = CHECK_EXAMPLES)]
    Check {
        #[command(subcommand)]
        variant: Option<Variant>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Serve stateright's web explorer on a variant's state space.
    ///
    /// With --bug, first finds the bug's counterexample and prints a URL that opens the
    /// explorer on it.
    #[command(after_help = EXPLORE_EXAMPLES)]
    Explore {
        #[command(subcommand)]
        variant: Option<Variant>,
        /// Open the explorer on a trace file's path (a paxos-trace/2 file: a counterexample, a
        /// walk, a divergence from `paxos-conform`), on the model of its configuration.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Address the explorer listens on (loopback by default).
        #[arg(long, global = true, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
    },
    /// List the seeded bugs, one line each, with the property each one breaks.
    #[command(after_help = "\
Examples:
  paxos-model bugs
  paxos-model check synod --bug default-value     # exit 1 with the bug's counterexample
  paxos-model explore synod --bug default-value   # the counterexample in the browser

A bug listed \"(with FLAGS)\" needs those flags to be reachable at the default bounds.")]
    Bugs,
    /// Write model traces as paxos-trace/2 files (specs/trace-format.md) for
    /// `paxos-conform replay`: seeded random walks and, with --bug, the bug's counterexample.
    #[command(after_help = EXPORT_EXAMPLES)]
    ExportTraces {
        #[command(subcommand)]
        variant: ExportVariant,
    },
}

const CHECK_EXAMPLES: &str = "\
Examples:
  paxos-model check                                   # default Synod and Multi-Paxos (main job)
  paxos-model check synod --proposers 1 --rounds 2 --crashes 1 --lossy
  paxos-model check synod --bug default-value         # exit 1, numbered counterexample, trace file
  paxos-model check multi --replicas 5 --commands 1 --crashes 1 --lossy
  paxos-model check multi --strategy simulation --timeout 60 --seed 3
  paxos-model check lamport --max-ballot 2 --json

Run flags (--strategy, --threads, --json, --trace-dir, ...) go after the variant. Each
counterexample is printed step by step and saved under --trace-dir as a paxos-trace/2 file
(specs/trace-format.md); `paxos-model explore --trace FILE` opens it in the browser.

Exit codes: 0 every property holds (and every `sometimes` example is reachable), 1 a property
failed, 2 bad arguments.";

const EXPLORE_EXAMPLES: &str = "\
Examples:
  paxos-model explore synod --bug default-value       # prints the URL of its counterexample
  paxos-model explore multi --bug noop-overwrites-accepted --addr 127.0.0.1:8080
  paxos-model explore synod --proposers 1 --rounds 2  # browse a correct state space from its start
  paxos-model explore --trace traces-out/synod-validity-default-value.json

Open the printed \"Discovery:\" URL: the path of actions is on the left (click a step to go back
to it), the state after the selected step on the right, headed by every property's verdict on
it. --addr 127.0.0.1:0 picks a free port. Ctrl-C stops the server.";

const EXPORT_EXAMPLES: &str = "\
Examples:
  paxos-model export-traces synod --out traces/ --walks 5 --seed 1 --depth 60
  paxos-model export-traces multi --crashes 1 --lossy --out traces/ --walks 3 --depth 200
  paxos-model export-traces multi --bug apply-out-of-order --walks 0 --out traces/

Walk i (0-based) uses seed S+i and is written to DIR/NAME-seed-(S+i).json; the counterexample
of --bug is DIR/<variant>-<property>-<bug>.json, as `paxos-model check` names it.";

#[derive(Subcommand, Debug, Clone)]
enum ExportVariant {
    /// Traces of the Synod model.
    #[command(after_help = EXPORT_EXAMPLES)]
    Synod {
        #[command(flatten)]
        bounds: SynodBounds,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// Traces of the Multi-Paxos model.
    #[command(after_help = EXPORT_EXAMPLES)]
    Multi {
        #[command(flatten)]
        bounds: MultiBounds,
        #[command(flatten)]
        export: ExportArgs,
    },
}

#[derive(Args, Debug, Clone)]
struct ExportArgs {
    /// Directory the trace files are written to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Random walks to write.
    #[arg(long, default_value_t = 3)]
    walks: usize,
    /// Seed of the first walk; walk i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps per walk (a walk ends earlier where no action is enabled).
    #[arg(long, default_value_t = 100)]
    depth: usize,
    /// Percentage of steps that are faults (a message lost, a node crashing) where one is
    /// possible; the other steps are chosen among the remaining actions.
    #[arg(long, default_value_t = 10, value_name = "PERCENT",
          value_parser = clap::value_parser!(u8).range(0..=100))]
    faults: u8,
    /// Record the state after every K-th step (and the last) only, to keep long walks small;
    /// replay checks the model's state where it is recorded.
    #[arg(long, default_value_t = 1, value_name = "K")]
    state_every: usize,
    /// File name prefix of the walks [default: <variant>-walk].
    #[arg(long)]
    name: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
enum Variant {
    /// Single-decree Paxos: proposers, acceptors and learners exchanging messages.
    #[command(after_help = "\
Examples:
  paxos-model check synod                                  # 2 proposers, 3 acceptors, 1 learner
  paxos-model check synod --proposers 1 --rounds 2 --crashes 1 --lossy
  paxos-model check synod --bug ignore-promise-values      # exit 1 with the counterexample
  paxos-model explore synod --bug default-value            # the counterexample in the browser")]
    Synod(SynodArgs),
    /// Multi-Paxos: replicas with a stable leader, a replicated log and clients that retry.
    #[command(after_help = "\
Examples:
  paxos-model check multi                                  # 3 replicas, 2 slots, 2 commands
  paxos-model check multi --replicas 5 --commands 1 --crashes 1 --lossy
  paxos-model check multi --bug promise-merge-off-by-one   # exit 1 with the counterexample
  paxos-model explore multi --bug noop-overwrites-accepted # the counterexample in the browser")]
    Multi(MultiArgs),
    /// A state-for-state mirror of Lamport's Paxos.tla, for comparing state counts with TLC.
    #[command(after_help = "\
Examples:
  paxos-model check lamport --acceptors 3 --values 2 --max-ballot 2
  paxos-model check lamport --bug lamport-phase2a-ignores-votes")]
    Lamport(LamportArgs),
}

#[derive(Args, Debug, Clone)]
struct SynodArgs {
    #[command(flatten)]
    bounds: SynodBounds,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug, Clone)]
struct MultiArgs {
    #[command(flatten)]
    bounds: MultiBounds,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug, Clone)]
struct LamportArgs {
    /// Acceptors (3 in Lamport's comparison run).
    #[arg(long, default_value_t = LamportConfig::default().acceptors)]
    acceptors: usize,
    /// Values (2 in Lamport's comparison run).
    #[arg(long, default_value_t = LamportConfig::default().values)]
    values: usize,
    /// Ballots are 0..=max-ballot.
    #[arg(long, default_value_t = LamportConfig::default().max_ballot)]
    max_ballot: u8,
    /// Check a seeded bug instead of the correct spec (see `paxos-model bugs`).
    #[arg(long, value_name = "NAME")]
    bug: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Search strategy; only dfs applies symmetry reduction.
    #[arg(long, value_enum, default_value_t = Strategy::Dfs)]
    strategy: Strategy,
    /// Checker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Stop exploring at this depth (stateright's target max depth; the initial state is 1).
    #[arg(long)]
    depth: Option<usize>,
    /// Print the summary as one JSON object per variant.
    #[arg(long)]
    json: bool,
    /// Turn symmetry reduction off (it is on by default where sound).
    #[arg(long)]
    no_symmetry: bool,
    /// Directory for counterexample traces.
    #[arg(long, default_value = "traces-out")]
    trace_dir: PathBuf,
    /// Seed of the simulation strategy.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many seconds (the run is then not exhaustive).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Stop after about this many states (the simulation strategy's budget).
    #[arg(long)]
    target_states: Option<usize>,
    /// A scenario witness this configuration must reach (e.g. "candidate preempted"); exit 1
    /// if it does not. Repeatable; needs a variant.
    #[arg(long, value_name = "NAME")]
    expect_witness: Vec<String>,
}

impl RunArgs {
    fn options(&self) -> Result<CheckOptions, String> {
        if self.threads == Some(0) {
            return Err("--threads must be at least 1".into());
        }
        if self.depth == Some(0) {
            return Err("--depth must be at least 1 (the initial state is depth 1)".into());
        }
        if self.timeout == Some(0) {
            return Err("--timeout must be at least 1 second".into());
        }
        let defaults = CheckOptions::default();
        Ok(CheckOptions {
            strategy: self.strategy,
            threads: self.threads.unwrap_or(defaults.threads),
            depth: self.depth,
            json: self.json,
            symmetry: !self.no_symmetry,
            trace_dir: self.trace_dir.clone(),
            seed: self.seed,
            timeout: self.timeout.map(Duration::from_secs),
            target_states: self.target_states,
            expect_witnesses: self.expect_witness.clone(),
        })
    }
}

/// A user mistake: reported on stderr with exit code 2.
struct UsageError(String);

impl From<String> for UsageError {
    fn from(message: String) -> Self {
        UsageError(message)
    }
}

fn synod_config(args: &SynodArgs) -> Result<SynodConfig, UsageError> {
    Ok(args.bounds.config()?)
}

fn multi_config(args: &MultiArgs) -> Result<MultiConfig, UsageError> {
    Ok(args.bounds.config()?)
}

fn lamport_config(args: &LamportArgs) -> Result<LamportConfig, UsageError> {
    let bug = args
        .bug
        .as_deref()
        .map(str::parse::<LamportBug>)
        .transpose()?;
    let cfg = LamportConfig {
        acceptors: args.acceptors,
        values: args.values,
        max_ballot: args.max_ballot,
        bug,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn check_one<M: CheckTarget>(model: M, run: &RunArgs) -> Result<i32, Failure> {
    let opts = run.options()?;
    runner::check_expected_witnesses(&model, &opts.expect_witnesses)?;
    let report = runner::check(model, &opts)?;
    runner::print_summary(&report, !opts.json)?;
    Ok(report.exit_code())
}

fn check(variant: Option<Variant>, run: &RunArgs) -> Result<i32, Failure> {
    run.options()?;
    match variant {
        Some(Variant::Synod(args)) => check_one(synod::model(synod_config(&args)?), &args.run),
        Some(Variant::Multi(args)) => check_one(multi::model(multi_config(&args)?), &args.run),
        Some(Variant::Lamport(args)) => {
            check_one(LamportModel::new(lamport_config(&args)?), &args.run)
        }
        None => {
            let synod = check_one(synod::model(SynodConfig::default()), run)?;
            let multi = check_one(multi::model(MultiConfig::default()), run)?;
            Ok(synod.max(multi))
        }
    }
}

/// Finds `property`'s counterexample on `model` (when given), then serves `shown`, which must
/// take the same actions in the same order so the path opens unchanged.
fn explore_with<M: CheckTarget, V: CheckTarget>(
    model: M,
    shown: impl FnOnce(M) -> V,
    addr: SocketAddr,
    property: Option<(&'static str, CheckOptions)>,
) -> Result<i32, Failure> {
    let path = match property {
        None => None,
        Some((property, opts)) => {
            let found = runner::find_discovery(model.clone(), &opts, property)?;
            match found {
                Some(discovery) => {
                    println!(
                        "Found a counterexample for {property} in {} steps.",
                        discovery.trace.steps.len()
                    );
                    Some(discovery.explorer_path)
                }
                None => {
                    eprintln!("no counterexample for {property} at these bounds; serving anyway");
                    None
                }
            }
        }
    };
    runner::explore(shown(model), addr, path.as_deref())?;
    Ok(0)
}

fn explore(variant: Variant, addr: SocketAddr) -> Result<i32, Failure> {
    // The explorer opens on the counterexample of the property the bug was written to break.
    match variant {
        Variant::Synod(args) => {
            let cfg = synod_config(&args)?;
            // Random search finds no short path to step through: BFS even for those bugs.
            let property = cfg
                .bug
                .map(|b| (b.violates()[0], runner::counterexample_search(None, false)));
            explore_with(synod::model(cfg), Readable::new, addr, property)
        }
        Variant::Multi(args) => {
            let cfg = multi_config(&args)?;
            let property = cfg.bug.map(|b| {
                if b.search_is_costly() {
                    eprintln!(
                        "note: finding {b}'s counterexample single-threaded takes many minutes; \
                         `paxos-model explore --trace {}` opens the committed one at once",
                        b.committed_trace()
                    );
                }
                let search = runner::counterexample_search(b.search_depth(), false);
                (b.violates()[0], search)
            });
            explore_with(multi::model(cfg), Readable::new, addr, property)
        }
        Variant::Lamport(args) => {
            let cfg = lamport_config(&args)?;
            let property = cfg
                .bug
                .map(|b| (b.violates(), runner::counterexample_search(None, false)));
            explore_with(LamportModel::new(cfg), |m| m, addr, property)
        }
    }
}

/// Serves the explorer on the model of a trace file's configuration, opened on its path.
fn explore_trace(file: &std::path::Path, addr: SocketAddr) -> Result<i32, Failure> {
    let trace = runner::read_trace(file).map_err(|e| Failure::from(format!("{e:#}")))?;
    let config = |what: &str| format!("{}: the configuration is not a {what} one", file.display());
    match trace.variant.as_str() {
        "synod" => {
            let cfg: SynodConfig = serde_json::from_value(trace.config.clone())
                .map_err(|e| Failure::from(format!("{}: {e}", config("Synod"))))?;
            cfg.validate()?;
            let inner = synod::model(cfg);
            runner::explore(Readable::new(inner), addr, Some(&trace.explorer_path))?;
        }
        "multi" => {
            let cfg: MultiConfig = serde_json::from_value(trace.config.clone())
                .map_err(|e| Failure::from(format!("{}: {e}", config("Multi-Paxos"))))?;
            // A random walk's trace may go past the exhaustive bounds; the explorer only
            // follows its path.
            cfg.validate_walk()?;
            let inner = multi::model(cfg);
            runner::explore(Readable::new(inner), addr, Some(&trace.explorer_path))?;
        }
        "multi-unbounded" => {
            let cfg: MultiConfig = serde_json::from_value(trace.config.clone())
                .map_err(|e| Failure::from(format!("{}: {e}", config("Multi-Paxos"))))?;
            cfg.validate_unbounded()?;
            // The state of a real run the trace starts from (paxos-conform validate
            // --trace-dir), not the model's initial state.
            let inner = multi::unbounded_model(cfg);
            let start = actor_trace::state_from_json(&inner, trace.initial_state.clone())
                .map_err(|e| Failure::from(format!("{}: initial_state: {e}", file.display())))?;
            // Its actors are the replicas: a client's or the reader's state is no state of it.
            if let Some(i) = start
                .actor_states
                .iter()
                .position(|s| !matches!(**s, multi::MultiState::Replica(_)))
            {
                return Err(Failure::from(format!(
                    "{}: initial_state: actor {i} is not a replica",
                    file.display()
                )));
            }
            let explorer = Readable::starting_at(inner, start);
            runner::path_is_enabled(&explorer, &trace.explorer_path)
                .map_err(|e| Failure::from(format!("{}: explorer_path: {e}", file.display())))?;
            runner::explore(explorer, addr, Some(&trace.explorer_path))?;
        }
        other => {
            return Err(Failure::from(format!(
                "{}: --trace opens synod, multi and multi-unbounded traces, not {other:?} \
                 (use explore {other})",
                file.display()
            )))
        }
    }
    Ok(0)
}

fn bugs() {
    println!("Synod (paxos-model check synod --bug NAME):");
    for &bug in SynodBug::ALL {
        println!(
            "  {:<28} breaks {:<16} {}{}",
            bug.name(),
            bug.violates()[0],
            bug.description(),
            synod_witness_flags(&bug.witness_config())
        );
    }
    println!("\nMulti-Paxos (paxos-model check multi --bug NAME):");
    for &bug in MultiBug::ALL {
        println!(
            "  {:<28} breaks {:<22} {}{}",
            bug.name(),
            bug.violates()[0],
            bug.description(),
            witness_flags(&bug.witness_config(), bug.search_depth())
        );
    }
    println!("\nLamport variant (paxos-model check lamport --bug NAME):");
    for &bug in LamportBug::ALL {
        println!(
            "  {:<28} breaks {:<16} {}",
            bug.name(),
            bug.violates(),
            bug.description()
        );
    }
}

/// Writes the walks and, when the configuration has a bug, the bug's counterexample, looked
/// for as [`runner::counterexample_search`] says.
fn export_traces<M: CheckTarget>(
    model: M,
    bug_property: Option<(&'static str, CheckOptions)>,
    export: &ExportArgs,
) -> Result<i32, Failure> {
    if export.depth == 0 && export.walks > 0 {
        return Err(Failure::from("--depth must be at least 1".to_string()));
    }
    let name = export
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-walk", model.variant()));
    for i in 0..export.walks {
        let seed = export.seed.wrapping_add(i as u64);
        let mut trace = runner::random_walk(&model, seed, export.depth, export.faults)?;
        trace.keep_states_every(export.state_every);
        let path = export.out.join(format!("{name}-seed-{seed}.json"));
        runner::write_trace_as(&path, &trace)?;
        println!("{} ({} steps)", path.display(), trace.steps.len());
    }
    let Some((property, opts)) = bug_property else {
        return Ok(0);
    };
    match runner::find_discovery(model, &opts, property)? {
        Some(discovery) => {
            let path = runner::write_trace(&export.out, &discovery.trace)?;
            println!(
                "{} (counterexample to {property}, {} steps)",
                path.display(),
                discovery.trace.steps.len()
            );
            Ok(0)
        }
        None => {
            eprintln!("error: no counterexample to {property} at these bounds");
            Ok(1)
        }
    }
}

fn export(variant: ExportVariant) -> Result<i32, Failure> {
    match variant {
        ExportVariant::Synod { bounds, export } => {
            let cfg = bounds.config()?;
            let property = cfg.bug.map(|b| {
                let search = runner::counterexample_search(None, b.needs_random_search());
                (b.violates()[0], search)
            });
            export_traces(synod::model(cfg), property, &export)
        }
        ExportVariant::Multi { bounds, export } => {
            let cfg = bounds.config()?;
            let property = cfg.bug.map(|b| {
                let search = runner::counterexample_search(b.search_depth(), false);
                (b.violates()[0], search)
            });
            export_traces(multi::model(cfg), property, &export)
        }
    }
}

/// `flags` as the hint " (with --a 1 --b 2)", or nothing.
fn with_flags(flags: &[String]) -> String {
    if flags.is_empty() {
        String::new()
    } else {
        format!(" (with {})", flags.join(" "))
    }
}

/// The Synod options beyond the defaults that a bug's counterexample needs, as a hint.
fn synod_witness_flags(cfg: &SynodConfig) -> String {
    let d = SynodConfig::default();
    let mut flags = Vec::new();
    if cfg.proposers != d.proposers {
        flags.push(format!("--proposers {}", cfg.proposers));
    }
    if cfg.values != cfg.proposers {
        // The command line defaults --values to the number of proposers.
        flags.push(format!("--values {}", cfg.values));
    }
    if cfg.crashes != d.crashes {
        flags.push(format!("--crashes {}", cfg.crashes));
    }
    with_flags(&flags)
}

/// The options beyond the defaults that a bug's counterexample needs, as a hint: every
/// bound that differs from the command line's default, so the hint reproduces the check.
/// `depth`: the bound of [`MultiBug::search_depth`], shown as `--depth`.
fn witness_flags(cfg: &MultiConfig, depth: Option<usize>) -> String {
    let d = MultiConfig::default();
    let mut flags = Vec::new();
    let numbers = [
        ("--replicas", cfg.replicas, d.replicas),
        ("--clients", cfg.clients, d.clients.min(cfg.commands)),
        ("--commands", cfg.commands, d.commands),
        ("--slots", cfg.slots, d.slots),
        // The command line defaults --window to --slots.
        ("--window", cfg.window, cfg.slots),
        ("--rounds", cfg.max_round as usize, d.max_round as usize),
        ("--elections", cfg.elections.into(), d.elections.into()),
        ("--retries", cfg.retries.into(), d.retries.into()),
        ("--crashes", cfg.crashes, d.crashes),
        (
            "--compactions",
            cfg.compactions.into(),
            d.compactions.into(),
        ),
        ("--catch-ups", cfg.catch_ups.into(), d.catch_ups.into()),
        ("--reads", cfg.reads.into(), d.reads.into()),
        ("--leases", cfg.leases as usize, d.leases as usize),
        ("--drift", cfg.drift as usize, d.drift as usize),
        ("--ticks", cfg.ticks as usize, d.ticks as usize),
    ];
    for (flag, value, default) in numbers {
        if value != default {
            flags.push(format!("{flag} {value}"));
        }
    }
    flags.extend(cfg.reader_at.map(|r| format!("--reader-at {r}")));
    for (flag, on) in [
        ("--spread-clients", cfg.spread_clients),
        ("--lossy", cfg.lossy),
        ("--duplicating", cfg.duplicating),
    ] {
        if on {
            flags.push(flag.to_string());
        }
    }
    flags.extend(depth.map(|d| format!("--depth {d}")));
    with_flags(&flags)
}

enum Failure {
    Usage(UsageError),
    Run(anyhow::Error),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Failure::Usage(e)
    }
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Usage(UsageError(e))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Run(e)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { variant, run } => check(variant, &run),
        Command::Explore {
            variant,
            trace,
            addr,
        } => match (variant, trace) {
            (Some(variant), None) => explore(variant, addr),
            (None, Some(file)) => explore_trace(&file, addr),
            (None, None) => Err(Failure::from(
                "explore needs a variant (synod, multi, lamport) or --trace FILE; \
                 e.g. paxos-model explore synod --bug default-value"
                    .to_string(),
            )),
            (Some(_), Some(_)) => Err(Failure::from(
                "explore takes a variant (synod, multi, lamport) or --trace FILE, not both \
                 (a trace file names its own variant and configuration)"
                    .to_string(),
            )),
        },
        Command::ExportTraces { variant } => export(variant),
        Command::Bugs => {
            bugs();
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(Failure::Usage(UsageError(message))) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
