//! `paxos-model`: model-check Synod, Multi-Paxos and the `lamport` variant, browse their state
//! spaces and counterexamples in stateright's explorer, and list the seeded bugs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use paxos_model::explorer_view::Readable;
use paxos_model::lamport::{LamportBug, LamportConfig, LamportModel};
use paxos_model::multi::{self, MultiBug, MultiConfig};
use paxos_model::runner::{self, CheckOptions, CheckTarget, Strategy};
use paxos_model::synod::{self, SynodBug, SynodConfig};

const EXAMPLES: &str = "\
Examples:
  paxos-model check                                   # every variant's default configuration
  paxos-model check synod --proposers 2 --rounds 2 --crashes 1
  paxos-model check synod --bug ignore-promise-values # see a seeded bug's counterexample
  paxos-model check multi --replicas 3 --slots 2 --commands 2 --rounds 2
  paxos-model check multi --bug promise-merge-off-by-one
  paxos-model check lamport --acceptors 3 --values 2 --max-ballot 2
  paxos-model explore synod --bug learner-mixed-ballots --addr 127.0.0.1:3000
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
    /// Without a variant, checks every variant's default configuration (the main job).
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
    Explore {
        #[command(subcommand)]
        variant: Variant,
        /// Address the explorer listens on (loopback by default).
        #[arg(long, global = true, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
    },
    /// List the seeded bugs, one line each, with the property each one breaks.
    Bugs,
}

#[derive(Subcommand, Debug, Clone)]
enum Variant {
    /// Single-decree Paxos: proposers, acceptors and learners exchanging messages.
    Synod(SynodArgs),
    /// Multi-Paxos: replicas with a stable leader, a replicated log and clients that retry.
    Multi(MultiArgs),
    /// A state-for-state mirror of Lamport's Paxos.tla, for comparing state counts with TLC.
    Lamport(LamportArgs),
}

#[derive(Args, Debug, Clone)]
struct SynodArgs {
    /// Proposers (1-3); proposer i proposes value v(i mod values + 1).
    #[arg(long, default_value_t = SynodConfig::default().proposers)]
    proposers: usize,
    /// Acceptors (usually 3 or 5).
    #[arg(long, default_value_t = SynodConfig::default().acceptors)]
    acceptors: usize,
    /// Learners (1-3).
    #[arg(long, default_value_t = SynodConfig::default().learners)]
    learners: usize,
    /// Distinct input values (1 to the number of proposers) [default: the number of proposers].
    #[arg(long)]
    values: Option<usize>,
    /// Highest round a proposer may start (the bound that keeps the state space finite).
    #[arg(long, default_value_t = SynodConfig::default().max_round)]
    rounds: u8,
    /// Nodes that may be crashed at the same time; a crash keeps only durable state.
    #[arg(long, default_value_t = 0)]
    crashes: usize,
    /// The network may lose messages.
    #[arg(long)]
    lossy: bool,
    /// The network may deliver a message more than once.
    #[arg(long)]
    duplicating: bool,
    /// Check a seeded bug instead of the correct protocol (see `paxos-model bugs`).
    #[arg(long, value_name = "NAME")]
    bug: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug, Clone)]
struct MultiArgs {
    /// Replicas (2-5, usually 3 or 5); each is acceptor, leader candidate, learner and state
    /// machine. Replica 0 leads first.
    #[arg(long, default_value_t = MultiConfig::default().replicas)]
    replicas: usize,
    /// Log slots (1-4).
    #[arg(long, default_value_t = MultiConfig::default().slots)]
    slots: usize,
    /// Client commands in all (1-6), dealt round-robin to the clients.
    #[arg(long, default_value_t = MultiConfig::default().commands)]
    commands: usize,
    /// Clients (1 to min(3, commands)); each sends its commands one at a time.
    #[arg(long)]
    clients: Option<usize>,
    /// Highest round an election may use: 1 keeps the initial leader, 2 allows every replica
    /// one election, and so on.
    #[arg(long, default_value_t = MultiConfig::default().max_round)]
    rounds: u8,
    /// Elections the whole run may hold (any replica may campaign; each uses a higher round).
    #[arg(long, default_value_t = MultiConfig::default().elections)]
    elections: u8,
    /// Slots the leader may have in flight for new commands [default: --slots].
    #[arg(long)]
    window: Option<usize>,
    /// How often a client may resend its outstanding request to every replica.
    #[arg(long, default_value_t = MultiConfig::default().retries)]
    retries: u8,
    /// Replicas that may be crashed at the same time; a crash keeps only durable state.
    #[arg(long, default_value_t = 0)]
    crashes: usize,
    /// The network may lose messages.
    #[arg(long)]
    lossy: bool,
    /// The network may deliver a message more than once.
    #[arg(long)]
    duplicating: bool,
    /// Check a seeded bug instead of the correct protocol (see `paxos-model bugs`).
    #[arg(long, value_name = "NAME")]
    bug: Option<String>,
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
    let bug = args
        .bug
        .as_deref()
        .map(str::parse::<SynodBug>)
        .transpose()?;
    let cfg = SynodConfig {
        proposers: args.proposers,
        acceptors: args.acceptors,
        learners: args.learners,
        values: args.values.unwrap_or(args.proposers),
        max_round: args.rounds,
        crashes: args.crashes,
        lossy: args.lossy,
        duplicating: args.duplicating,
        bug,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn multi_config(args: &MultiArgs) -> Result<MultiConfig, UsageError> {
    let bug = args
        .bug
        .as_deref()
        .map(str::parse::<MultiBug>)
        .transpose()?;
    let defaults = MultiConfig::default();
    let cfg = MultiConfig {
        replicas: args.replicas,
        clients: args
            .clients
            .unwrap_or_else(|| defaults.clients.min(args.commands)),
        commands: args.commands,
        slots: args.slots,
        window: args.window.unwrap_or(args.slots),
        max_round: args.rounds,
        elections: args.elections,
        retries: args.retries,
        crashes: args.crashes,
        lossy: args.lossy,
        duplicating: args.duplicating,
        bug,
    };
    cfg.validate()?;
    Ok(cfg)
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
    property: Option<&'static str>,
) -> Result<i32, Failure> {
    let path = match property {
        None => None,
        Some(property) => {
            // One BFS thread gives the shortest counterexample to step through.
            let opts = CheckOptions {
                strategy: Strategy::Bfs,
                threads: 1,
                symmetry: false,
                ..CheckOptions::default()
            };
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
            let property = cfg.bug.map(|b| b.violates()[0]);
            explore_with(
                synod::model(cfg),
                |inner| Readable { inner },
                addr,
                property,
            )
        }
        Variant::Multi(args) => {
            let cfg = multi_config(&args)?;
            let property = cfg.bug.map(|b| b.violates()[0]);
            explore_with(
                multi::model(cfg),
                |inner| Readable { inner },
                addr,
                property,
            )
        }
        Variant::Lamport(args) => {
            let cfg = lamport_config(&args)?;
            let property = cfg.bug.map(|b| b.violates());
            explore_with(LamportModel::new(cfg), |m| m, addr, property)
        }
    }
}

fn bugs() {
    println!("Synod (paxos-model check synod --bug NAME):");
    for bug in SynodBug::ALL {
        println!(
            "  {:<28} breaks {:<16} {}",
            bug.name(),
            bug.violates()[0],
            bug.description()
        );
    }
    println!("\nMulti-Paxos (paxos-model check multi --bug NAME):");
    for bug in MultiBug::ALL {
        println!(
            "  {:<28} breaks {:<22} {}{}",
            bug.name(),
            bug.violates()[0],
            bug.description(),
            witness_flags(&bug.witness_config())
        );
    }
    println!("\nLamport variant (paxos-model check lamport --bug NAME):");
    for bug in LamportBug::all() {
        println!(
            "  {:<28} breaks {:<16} {}",
            bug.name(),
            bug.violates(),
            bug.description()
        );
    }
}

/// The options beyond the defaults that a bug's counterexample needs, as a hint.
fn witness_flags(cfg: &MultiConfig) -> String {
    let d = MultiConfig::default();
    let mut flags = Vec::new();
    if cfg.clients != d.clients {
        flags.push(format!("--clients {}", cfg.clients));
    }
    if cfg.commands != d.commands {
        flags.push(format!("--commands {}", cfg.commands));
    }
    if cfg.retries != d.retries {
        flags.push(format!("--retries {}", cfg.retries));
    }
    if cfg.crashes != d.crashes {
        flags.push(format!("--crashes {}", cfg.crashes));
    }
    if flags.is_empty() {
        String::new()
    } else {
        format!(" (with {})", flags.join(" "))
    }
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
        Command::Explore { variant, addr } => explore(variant, addr),
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
