//! `paxos-conform`: prove, transition by transition, that the implementation's protocol cores
//! do what the model does — exhaustively at given bounds (`check`), or along trace files
//! (`replay`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use paxos_conformance::check::{self, Counts, Outcome};
use paxos_conformance::conform::{Conformance, DivergenceRecord};
use paxos_conformance::trace::{self, ReplayReport};
use paxos_conformance::validate;
use paxos_model::cli::{MultiBounds, SynodBounds};
use paxos_model::runner::{self, group};
use paxos_model::{multi, synod};
use serde::Serialize;
use serde_json::Value;

/// Version tag of the `check --json` report; bump it when a field changes meaning.
const REPORT_FORMAT: &str = "paxos-conform-report/1";
/// Version tag of the `replay --json` report; bump it when a field changes meaning.
const REPLAY_FORMAT: &str = "paxos-replay-report/1";
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

const EXAMPLES: &str = "\
Examples:
  paxos-conform check synod                       # every Synod transition at the default bounds
  paxos-conform check synod --proposers 1 --crashes 1 --lossy
  paxos-conform check multi                       # every replica transition, default Multi-Paxos
  paxos-conform check multi --commands 1 --retries 1 --crashes 1 --json
  paxos-conform check multi --bug apply-out-of-order --out traces-out
                                                  # a seeded model bug: must diverge (exit 1)
  paxos-conform replay specs/traces/*.json        # the regression traces CI replays
  paxos-conform replay --json specs/traces/*.json # one JSON object (paxos-replay-report/1)
  paxos-conform replay traces-out/multi-divergence-1.json

A divergence is saved as a paxos-trace/2 file (specs/trace-format.md) holding the shortest
trace to it; `paxos-conform replay FILE` re-runs it, and `paxos-model explore --trace FILE`
opens stateright's explorer on it.

Exit codes: 0 no divergence (replay: every trace did what it must), 1 a divergence (replay: a
trace of the correct protocol diverged, a seeded bug's trace did not, or a trace no longer
follows the model), 2 bad arguments or a file that is not a paxos-trace/2 trace.";

const CHECK_EXAMPLES: &str = "\
Examples:
  paxos-conform check synod                       # seconds
  paxos-conform check synod --proposers 1 --values 1 --crashes 1 --lossy
  paxos-conform check multi                       # about 3 minutes on 2 cores
  paxos-conform check multi --commands 1 --retries 1 --crashes 1 --json
  paxos-conform check synod --bug default-value --out traces-out   # must diverge: exit 1

The bound flags are those of `paxos-model check` (the same flags give the same
configuration). Each divergence is saved under --out as the shortest trace to it.

Exit codes: 0 no divergence, 1 a divergence, 2 bad arguments.";

const REPLAY_EXAMPLES: &str = "\
Examples:
  paxos-conform replay specs/traces/*.json
  paxos-conform replay --json traces-out/synod-validity-default-value.json

Exit codes: 0 every trace did what it must, 1 one did not, 2 a file that is not a
paxos-trace/2 trace.";

const VALIDATE_EXAMPLES: &str = "\
Examples:
  paxos-node chaos --step-logs --clients 2 --keys 1 --ops-per-client 2 --slot-limit 4 \\
      --window 2 --duration-secs 5 --data-dir /tmp/run
  paxos-conform validate /tmp/run            # every *.steps.jsonl in the directory, rotated
                                             # files (node-0.000003.steps.jsonl) in order
  paxos-conform validate --json /tmp/run/node-0.steps.jsonl /tmp/run/node-1.steps.jsonl
  paxos-node chaos --step-logs --read-policy lease --reader-ops 40 --clients 2 --keys 1 \
      --ops-per-client 2 --slot-limit 4 --window 2 --duration-secs 6 --data-dir /tmp/lease
  paxos-conform validate /tmp/lease          # leases: the clock ticked to every step's

A run of any length validates (the model's replica runs in its unbounded space): replicas
0..R (2 to 5) with replica 0 the initial leader, any number of clients, commands, slots,
elections, snapshots and reads; every read policy, leases included. With --trace-dir, each
rejection shown gets a trace file of the run's state around the step (its causal past):
  paxos-conform validate --trace-dir /tmp/rejected /tmp/run
  paxos-model explore --trace /tmp/rejected/validation-n1-node-1_steps_jsonl-line-812.json

Exit codes: 0 every transition is one the model allows, 1 a transition was rejected, 2 logs
that cannot be read or a run the model cannot stand for (6 replicas, another initial leader).";

#[derive(Parser, Debug)]
#[command(name = "paxos-conform", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay every reachable (state, action) pair of a model configuration on the
    /// implementation and compare state, sent messages and persisted state.
    #[command(after_help = CHECK_EXAMPLES)]
    Check {
        #[command(subcommand)]
        variant: Variant,
    },
    /// Replay trace files (paxos-trace/2) on the model and the implementation together.
    ///
    /// A trace of the correct protocol must conform; a counterexample (or divergence) trace
    /// whose configuration has a seeded model bug must diverge (the implementation must not do
    /// what the bug does); other traces of a seeded bug pass either way.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay {
        /// Trace files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print one JSON object (paxos-replay-report/1) instead of a line per file.
        #[arg(long)]
        json: bool,
    },
    /// Check the step logs of a real run (`paxos-node serve --step-log`, paxos-steps/8)
    /// against the Multi-Paxos model, transition by transition.
    ///
    /// Every logged step must be a transition the model's replica takes from the same state
    /// on the same input, with the same next state, messages, durable state and timer; every
    /// restart must recover what was persisted; every message received must have been sent.
    #[command(after_help = VALIDATE_EXAMPLES)]
    Validate {
        /// Step logs, or directories holding `*.steps.jsonl` files (as `paxos-node chaos
        /// --step-logs` leaves them). All replicas of one run.
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<PathBuf>,
        /// Print one JSON object (paxos-validation-report/1).
        #[arg(long)]
        json: bool,
        /// Write a trace file for each rejection shown (the run's state around the step, as
        /// a state of the model) into this directory; `paxos-model explore --trace FILE`
        /// opens it.
        #[arg(long, value_name = "DIR")]
        trace_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum Variant {
    /// Synod: proposers, acceptors and learners against the implementation's Synod core.
    #[command(after_help = CHECK_EXAMPLES)]
    Synod {
        #[command(flatten)]
        bounds: SynodBounds,
        #[command(flatten)]
        opts: CheckArgs,
    },
    /// Multi-Paxos: every replica step against the implementation's replica core.
    #[command(after_help = CHECK_EXAMPLES)]
    Multi {
        #[command(flatten)]
        bounds: MultiBounds,
        #[command(flatten)]
        opts: CheckArgs,
    },
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Print the summary as one JSON object (paxos-conform-report/1).
    #[arg(long)]
    json: bool,
    /// Stop after this many divergences (each is saved as a trace).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_divergences: u64,
    /// Directory divergence traces are written to.
    #[arg(long, default_value = "traces-out", value_name = "DIR")]
    out: PathBuf,
    /// Visit only states fewer than N-1 steps from the start (the initial state is depth 1,
    /// as in `paxos-model check --depth`), breadth first: for a targeted configuration whose
    /// scenario lies within a few steps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    depth: Option<u64>,
    /// A scenario witness of the model (see `paxos-model check`) the visited states must reach
    /// (e.g. "candidate preempted"); exit 1 if they do not. Repeatable.
    #[arg(long, value_name = "NAME")]
    expect_witness: Vec<String>,
}

/// One divergence in the summary.
#[derive(Serialize)]
struct DivergenceLine {
    trace_file: PathBuf,
    explorer_path: String,
    #[serde(flatten)]
    record: DivergenceRecord,
}

/// The `check` summary, printed as text or as one JSON object.
#[derive(Serialize)]
struct Report {
    format: &'static str,
    variant: &'static str,
    config: Value,
    states: usize,
    pairs: usize,
    replayed: usize,
    no_step: usize,
    client: usize,
    complete: bool,
    /// Share of the model's reachable (state, action) pairs visited; known only when complete.
    coverage: Option<f64>,
    /// Share of the visited pairs replayed on the implementation (the rest have no node step
    /// or no implementation counterpart).
    replayed_share: f64,
    elapsed_seconds: f64,
    divergences: Vec<DivergenceLine>,
    /// Whether the Multi-Paxos core checked its own invariants after every step replayed
    /// (`paxos_protocol::multi::INVARIANTS_CHECKED`: the `invariants` feature); `None` for
    /// Synod, whose core has none of its own.
    core_invariants: Option<bool>,
    /// Set when `--depth` bounded the search.
    depth_bound: Option<u64>,
    /// The model's scenario witnesses: which the visited states reached.
    witnesses: Vec<WitnessLine>,
    /// Stuttering steps (timers, heartbeats) replayed in every state visited.
    stutters: usize,
    /// Nodes' first starts (which build the initial states) replayed.
    starts: usize,
    stutter_divergences: Vec<StutterLine>,
}

/// A stuttering step that diverged, with the model state it was replayed in.
#[derive(Serialize)]
struct StutterLine {
    step: String,
    state: String,
    differences: Vec<String>,
    expected: Value,
    actual: Result<Value, String>,
}

/// One scenario witness in the summary.
#[derive(Serialize)]
struct WitnessLine {
    name: &'static str,
    reached: bool,
    /// Named by `--expect-witness`: not reaching it fails the check.
    expected: bool,
}

impl Report {
    fn exit_code(&self) -> u8 {
        let missed = self.witnesses.iter().any(|w| w.expected && !w.reached);
        u8::from(!self.divergences.is_empty() || !self.stutter_divergences.is_empty() || missed)
    }

    fn render(&self) -> String {
        let mut out = format!("== paxos-conform check: {} ==\n", self.variant);
        let mut field = |name: &str, value: String| out.push_str(&format!("{name:<13}{value}\n"));
        field("config:", self.config.to_string());
        field(
            "states:",
            format!(
                "{} reachable model states visited (no symmetry reduction)",
                group(self.states)
            ),
        );
        field(
            "pairs:",
            format!(
                "{} enabled (state, action) pairs: {} node steps replayed on the \
                 implementation, {} without a node step (lost messages, crashes, deliveries \
                 to crashed nodes), {} client steps (no implementation counterpart)",
                group(self.pairs),
                group(self.replayed),
                group(self.no_step),
                group(self.client)
            ),
        );
        field(
            "coverage:",
            match self.coverage {
                Some(share) => format!(
                    "complete: {:.1}% of the model's reachable (state, action) pairs visited, \
                     {:.1}% replayed on the implementation (every node step)",
                    share * 100.0,
                    self.replayed_share * 100.0
                ),
                None if self.divergences.is_empty() && self.stutter_divergences.is_empty() => {
                    format!(
                        "bounded: every pair within the depth bound visited, {:.1}% replayed \
                         on the implementation (every node step); none beyond it",
                        self.replayed_share * 100.0
                    )
                }
                None => format!(
                    "incomplete: stopped after {} divergence(s); the share of the reachable \
                     pairs visited is unknown",
                    self.divergences.len() + self.stutter_divergences.len()
                ),
            },
        );
        field(
            "stutters:",
            format!(
                "{} steps the model takes as stuttering steps (heartbeats, retransmission) \
                 and {} first starts of nodes replayed, {} diverged",
                group(self.stutters),
                group(self.starts),
                self.stutter_divergences.len()
            ),
        );
        if let Some(checked) = self.core_invariants {
            field(
                "core:",
                if checked {
                    "the core's invariants checked after every step replayed".to_string()
                } else {
                    "the core's invariants NOT checked (built without the `invariants` feature)"
                        .to_string()
                },
            );
        }
        if let Some(depth) = self.depth_bound {
            field(
                "bound:",
                format!(
                    "depth {depth}: every state fewer than {} steps from the start (breadth \
                     first); {}",
                    depth - 1,
                    if self.complete {
                        "no state lies beyond it"
                    } else {
                        "states beyond it were not visited"
                    }
                ),
            );
        }
        let name_list = |reached: bool| {
            let names: Vec<String> = self
                .witnesses
                .iter()
                .filter(|w| w.reached == reached)
                .map(|w| {
                    let mark = if w.expected && !reached {
                        " (EXPECTED)"
                    } else {
                        ""
                    };
                    format!("{}{mark}", w.name)
                })
                .collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        if !self.witnesses.is_empty() {
            field("witnesses:", format!("reached: {}", name_list(true)));
            field("", format!("not reached: {}", name_list(false)));
        }
        field("time:", format!("{:.2} s", self.elapsed_seconds));
        field("divergences:", self.divergences.len().to_string());
        for d in &self.stutter_divergences {
            out.push_str(&format!(
                "\nStuttering step diverged: {} ({})\n  model state:\n",
                d.step,
                d.differences.join(", ")
            ));
            for line in d.state.lines() {
                out.push_str(&format!("    {line}\n"));
            }
            out.push_str(&format!(
                "  expected: {}\n  actual:   {:?}\n",
                d.expected, d.actual
            ));
        }
        for d in &self.divergences {
            out.push_str(&format!("\nDivergence at {}", d.record));
            out.push_str(&format!("  trace:    {}\n", d.trace_file.display()));
            out.push_str(&format!(
                "  explorer: paxos-model explore --trace {} (path {})\n",
                d.trace_file.display(),
                d.explorer_path
            ));
        }
        out
    }
}

fn progress_line(counts: &Counts, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        counts.pairs as f64 / secs
    } else {
        0.0
    };
    eprintln!(
        "[{secs:>7.1}s] {} states, {} pairs ({} replayed), {} divergences, {} pairs/s",
        group(counts.states),
        group(counts.pairs),
        group(counts.replayed),
        counts.divergences,
        group(rate as usize)
    );
}

/// Runs the check, rebuilds a shortest trace to each divergence and writes it.
fn run_check<M: Conformance>(model: M, opts: &CheckArgs) -> anyhow::Result<Report> {
    let outcome: Outcome<M> = check::check(
        &model,
        usize::try_from(opts.max_divergences).unwrap_or(usize::MAX),
        opts.depth.map(|d| usize::try_from(d).unwrap_or(usize::MAX)),
        PROGRESS_INTERVAL,
        progress_line,
    );
    let mut divergences = Vec::new();
    if !outcome.found.is_empty() {
        eprintln!(
            "finding the shortest traces to {} divergence(s) (breadth-first)...",
            outcome.found.len()
        );
        let shortest = check::shortest_divergences(&model, outcome.found.len());
        if shortest.is_empty() {
            anyhow::bail!("the breadth-first search met no divergence (nondeterministic model?)");
        }
        for (i, found) in shortest.iter().enumerate() {
            let trace =
                trace::divergence_trace(&model, &found.init, &found.actions, &found.mismatch)?;
            let record: DivergenceRecord = trace
                .divergence
                .clone()
                .map(serde_json::from_value)
                .transpose()?
                .context("the divergence trace has no divergence record")?;
            let bug = model
                .config_json()
                .get("bug")
                .and_then(Value::as_str)
                .map_or(String::new(), |b| format!("-{b}"));
            let file = opts.out.join(format!(
                "{}-divergence{bug}-{}.json",
                model.variant(),
                i + 1
            ));
            runner::write_trace_as(&file, &trace)?;
            divergences.push(DivergenceLine {
                trace_file: file,
                explorer_path: trace.explorer_path.clone(),
                record,
            });
        }
    }
    let c = outcome.counts;
    let share = |n: usize| {
        if c.pairs == 0 {
            1.0
        } else {
            n as f64 / c.pairs as f64
        }
    };
    Ok(Report {
        format: REPORT_FORMAT,
        variant: model.variant(),
        config: model.config_json(),
        states: c.states,
        pairs: c.pairs,
        replayed: c.replayed,
        no_step: c.no_step,
        client: c.client,
        complete: outcome.complete(),
        depth_bound: opts.depth,
        coverage: outcome.complete().then_some(1.0),
        witnesses: outcome
            .witnesses
            .iter()
            .map(|&(name, reached)| WitnessLine {
                name: name.trim_start_matches(runner::WITNESS_PREFIX),
                reached,
                expected: runner::is_expected_witness(name, &opts.expect_witness),
            })
            .collect(),
        replayed_share: share(c.replayed),
        elapsed_seconds: outcome.elapsed.as_secs_f64(),
        divergences,
        core_invariants: (model.variant() == "multi")
            .then_some(paxos_protocol::multi::INVARIANTS_CHECKED),
        stutters: c.stutters,
        starts: c.starts,
        stutter_divergences: outcome
            .stutters_found
            .into_iter()
            .map(|found| StutterLine {
                step: found.label,
                state: format!("{:?}", found.state),
                differences: found
                    .mismatch
                    .differences()
                    .into_iter()
                    .map(|d| d.field)
                    .collect(),
                expected: found.mismatch.expected,
                actual: found.mismatch.actual,
            })
            .collect(),
    })
}

fn check_command(variant: Variant) -> Result<u8, Failure> {
    let (report, json) = match variant {
        Variant::Synod { bounds, opts } => {
            let model = synod::model(bounds.config().map_err(Failure::Usage)?);
            runner::check_expected_witnesses(&model, &opts.expect_witness)
                .map_err(Failure::Usage)?;
            (run_check(model, &opts)?, opts.json)
        }
        Variant::Multi { bounds, opts } => {
            let cfg = bounds.config().map_err(Failure::Usage)?;
            let model = multi::model(cfg);
            runner::check_expected_witnesses(&model, &opts.expect_witness)
                .map_err(Failure::Usage)?;
            (run_check(model, &opts)?, opts.json)
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serializing the report")?
        );
    } else {
        print!("{}", report.render());
    }
    Ok(report.exit_code())
}

/// One file's line of the `replay --json` report.
#[derive(Serialize)]
struct ReplayLine {
    file: PathBuf,
    passed: bool,
    /// `conform`, `diverge` or `either` (see specs/trace-format.md); absent on errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'static str>,
    /// `conforms` or `diverges`; absent on errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    divergence: Option<DivergenceRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl ReplayLine {
    fn of(file: &Path, result: &Result<ReplayReport, (anyhow::Error, u8)>) -> Self {
        let mut line = ReplayLine {
            file: file.to_path_buf(),
            passed: false,
            expected: None,
            outcome: None,
            steps: None,
            divergence: None,
            error: None,
        };
        match result {
            Ok(report) => {
                line.passed = report.passed();
                line.steps = Some(report.steps);
                line.expected = Some(match report.expected {
                    trace::Expected::Conform => "conform",
                    trace::Expected::Diverge { .. } => "diverge",
                    trace::Expected::Either { .. } => "either",
                });
                match &report.walked {
                    trace::Walked::Conforms { .. } => line.outcome = Some("conforms"),
                    trace::Walked::Diverges(d) => {
                        line.outcome = Some("diverges");
                        line.divergence = Some(d.clone());
                    }
                }
            }
            Err((why, _)) => line.error = Some(format!("{why:#}")),
        }
        line
    }
}

fn replay_command(files: &[PathBuf], json: bool) -> Result<u8, Failure> {
    let mut code = 0;
    let mut lines = Vec::new();
    for file in files {
        let result = replay_one(file);
        code = code.max(match &result {
            Ok(report) => u8::from(!report.passed()),
            Err((_, c)) => *c,
        });
        if json {
            lines.push(ReplayLine::of(file, &result));
            continue;
        }
        match result {
            Ok(report) => print!("{report}"),
            Err((why, _)) => println!("FAIL {}: {why:#}", file.display()),
        }
    }
    if json {
        let report = serde_json::json!({
            "format": REPLAY_FORMAT,
            "passed": code == 0,
            "files": lines,
        });
        let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        println!("{text}");
    } else {
        let word = if code == 0 {
            "passed"
        } else {
            "did not all pass"
        };
        println!("{} trace file(s) replayed: {word}", files.len());
    }
    Ok(code)
}

fn validate_command(
    paths: &[PathBuf],
    json: bool,
    trace_dir: Option<&Path>,
) -> Result<u8, Failure> {
    let mut logs = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = validate::step_logs_in(path).map_err(Failure::Usage)?;
            if found.is_empty() {
                return Err(Failure::Usage(format!(
                    "{} holds no *.steps.jsonl file",
                    path.display()
                )));
            }
            logs.extend(found);
        } else {
            logs.push(path.clone());
        }
    }
    let report = validate::validate_with_traces(&logs, trace_dir).map_err(Failure::Usage)?;
    if json {
        let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        println!("{text}");
    } else {
        print!("{}", report.render());
    }
    Ok(u8::from(!report.passed()))
}

/// A file that is not a trace is exit code 2; one that no longer follows the model, 1.
fn replay_one(file: &Path) -> Result<ReplayReport, (anyhow::Error, u8)> {
    trace::load(file).map_err(|e| (e, 2))?;
    trace::replay_file(file).map_err(|e| (e, 1))
}

enum Failure {
    Usage(String),
    Run(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Run(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { variant } => check_command(variant),
        Command::Replay { files, json } => replay_command(&files, json),
        Command::Validate {
            logs,
            json,
            trace_dir,
        } => validate_command(&logs, json, trace_dir.as_deref()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
