//! Runs the checker on any of the crate's models and reports like a CI tool: progress lines, a
//! summary with one verdict per property, `--json`, counterexample traces, and the web explorer.
//!
//! Everything here is generic over [`CheckTarget`], so `synod`, `multi` and `lamport` share one
//! command-line behaviour. Facts about stateright 0.31 that shaped this module (read from its
//! source, see DESIGN.md §7):
//! - Symmetry reduction is applied by DFS only; BFS and simulation ignore it.
//! - `target_max_depth(d)` counts the initial state as depth 1 and skips (does not even
//!   property-check) every state at depth `d` or more: only states reached in at most `d - 2`
//!   steps are checked. A run was cut off by the bound exactly when the reported max depth
//!   reaches `d`.
//! - By default a run stops as soon as every property has a discovery, so such a run is not
//!   exhaustive (its verdicts are all definitive anyway).
//! - A property's discovery is the *last* one found before the run stopped (every new one
//!   overwrites it), so even single-threaded BFS paths run past the violation: the runner cuts
//!   each path at its first discovering state. Simulation stopped by a timeout therefore
//!   reports different paths from run to run; stop it by state target to reproduce a seed.
//!   Simulation checks its timeout once a second.
//! - The simulation checker's `is_done` is true once its thread handles were taken, and it
//!   never stops on its own unless it hits a state target, a timeout, or every property: this
//!   module polls the thread handles itself and always gives simulation a state target.
//! - `serve` never returns (it joins its HTTP thread) and panics when it cannot bind: the
//!   explorer runs it on its own thread after checking the address itself.

use std::collections::{BTreeSet, HashMap};
use std::fmt::{self, Debug, Display};
use std::fs;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path as FsPath, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stateright::{
    Checker, CheckerBuilder, Expectation, HasDiscoveries, Model, Path, Property, UniformChooser,
};

/// Version tag of [`CheckReport`] JSON; bump it when a field changes meaning.
pub const REPORT_FORMAT: &str = "paxos-check-report/1";
/// Version tag of [`Trace`] files (DESIGN.md §6); replayers refuse any other.
pub const TRACE_FORMAT: &str = "paxos-trace/2";
/// State target given to simulation when the user set neither a target nor a timeout, because
/// stateright's simulation would otherwise run forever.
pub const DEFAULT_SIMULATION_STATES: usize = 1_000_000;

const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
const EXPLORER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Maps a state to the canonical representative of its symmetry class.
pub type SymmetryFn<State> = fn(&State) -> State;

/// What the runner needs from a model beyond [`stateright::Model`].
///
/// The bounds on `State` and `Action` are associated-type bounds so that they are implied
/// wherever `M: CheckTarget` is written; generic code need not repeat them.
pub trait CheckTarget:
    Model<
        State: Clone + Debug + Hash + Eq + Send + Sync + 'static,
        Action: Clone + Debug + PartialEq + Send + Sync + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The variant's name on the command line and in traces: `synod`, `multi`, `lamport`.
    fn variant(&self) -> &'static str;
    /// The configuration, as written into summaries and trace files. A seeded bug, if any,
    /// belongs in its `"bug"` field (a string): trace file names are derived from it.
    fn config_json(&self) -> serde_json::Value;
    /// A state as written into trace files (complete: conformance replays from it).
    fn state_json(&self, state: &Self::State) -> serde_json::Value;
    /// An action as written into trace files.
    fn action_json(&self, action: &Self::Action) -> serde_json::Value;
    /// One readable line for a step: who received what, and what changed.
    fn describe_step(
        &self,
        prev: &Self::State,
        action: &Self::Action,
        next: &Self::State,
    ) -> String;
    /// The canonical representative of a state's symmetry class, when reduction is sound.
    fn symmetry(&self) -> Option<SymmetryFn<Self::State>>;
    /// An action as a person reads it in a counterexample listing; the explorer's path of
    /// actions uses the same words.
    fn action_label(&self, action: &Self::Action) -> String {
        self.format_action(action)
    }
    /// A state as a person reads it in a counterexample listing.
    fn render_state(&self, state: &Self::State) -> String {
        format!("{state:#?}")
    }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// How the state space is traversed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Breadth-first: short counterexamples (with one thread), a path kept per queued state.
    Bfs,
    /// Depth-first: fingerprints only, far less memory; the only strategy using symmetry.
    Dfs,
    /// Random walks from the initial states (seeded); never exhaustive.
    Simulation,
}

impl Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Strategy::Bfs => "bfs",
            Strategy::Dfs => "dfs",
            Strategy::Simulation => "simulation",
        })
    }
}

/// Everything the CLI can tune about one checker run.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOptions {
    pub strategy: Strategy,
    /// Checker threads (0 is treated as 1).
    pub threads: usize,
    /// stateright's target max depth: the initial state is depth 1, states at this depth or
    /// deeper are not checked. `None` (or 0) means unbounded.
    pub depth: Option<usize>,
    /// Print the summary as one JSON object instead of text.
    pub json: bool,
    /// Use the model's symmetry reduction if it offers one (DFS only).
    pub symmetry: bool,
    /// Where counterexample and example traces are written.
    pub trace_dir: PathBuf,
    /// Seed of the first simulation walk (later walks derive theirs from it).
    pub seed: u64,
    /// Stop checking after this long; the run is then not exhaustive.
    pub timeout: Option<Duration>,
    /// Stop after generating about this many states (a safety valve; simulation's budget).
    pub target_states: Option<usize>,
    /// Witnesses (named without [`WITNESS_PREFIX`]) the run must reach: one it does not is a
    /// failure, bounded run or not. See [`check_expected_witnesses`].
    pub expect_witnesses: Vec<String>,
}

impl Default for CheckOptions {
    /// DFS with symmetry on all cores: the cheapest exhaustive run in memory.
    fn default() -> Self {
        CheckOptions {
            strategy: Strategy::Dfs,
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            depth: None,
            json: false,
            symmetry: true,
            trace_dir: PathBuf::from("traces"),
            seed: 0,
            timeout: None,
            target_states: None,
            expect_witnesses: Vec::new(),
        }
    }
}

/// The options after resolving what stateright will actually do with them.
#[derive(Clone, Debug)]
struct Plan {
    strategy: Strategy,
    threads: usize,
    depth: Option<usize>,
    timeout: Option<Duration>,
    target_states: Option<usize>,
    seed: u64,
    symmetry: bool,
    notes: Vec<String>,
}

impl Plan {
    fn new<M: CheckTarget>(model: &M, opts: &CheckOptions) -> Self {
        let mut notes = Vec::new();
        let symmetry = Self::resolve_symmetry(model, opts, &mut notes);
        let mut target_states = opts.target_states.filter(|&n| n > 0);
        let timeout = opts.timeout.filter(|t| !t.is_zero());
        if opts.strategy == Strategy::Simulation && target_states.is_none() && timeout.is_none() {
            target_states = Some(DEFAULT_SIMULATION_STATES);
            notes.push(format!(
                "simulation has no natural end: stopping after {} states",
                group(DEFAULT_SIMULATION_STATES)
            ));
        }
        if opts.strategy == Strategy::Simulation {
            notes.push("simulation keeps no visited set: unique states = states generated".into());
        }
        if model.properties().is_empty() {
            notes.push(
                "the model has no properties: stateright explores only its initial states".into(),
            );
        }
        Plan {
            strategy: opts.strategy,
            threads: opts.threads.max(1),
            depth: opts.depth.filter(|&d| d > 0),
            timeout,
            target_states,
            seed: opts.seed,
            symmetry,
            notes,
        }
    }

    /// Symmetry is used only when asked for, offered by the model, and the strategy is DFS.
    fn resolve_symmetry<M: CheckTarget>(
        model: &M,
        opts: &CheckOptions,
        notes: &mut Vec<String>,
    ) -> bool {
        if !opts.symmetry {
            return false;
        }
        if model.symmetry().is_none() {
            notes.push("symmetry requested but this model offers no reduction; ignored".into());
            return false;
        }
        if opts.strategy != Strategy::Dfs {
            notes.push(format!(
                "symmetry requested but ignored: stateright applies it in DFS only, not {}",
                opts.strategy
            ));
            return false;
        }
        true
    }

    /// The builder with every option applied; the strategy is chosen by the caller.
    fn builder<M: CheckTarget>(&self, model: M, finish: HasDiscoveries) -> CheckerBuilder<M> {
        let symmetry = if self.symmetry {
            model.symmetry()
        } else {
            None
        };
        let mut builder = model.checker().threads(self.threads).finish_when(finish);
        if let Some(depth) = self.depth {
            builder = builder.target_max_depth(depth);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(count) = self.target_states {
            builder = builder.target_state_count(count);
        }
        if let Some(representative) = symmetry {
            builder = builder.symmetry_fn(representative);
        }
        builder
    }
}

// ---------------------------------------------------------------------------------------------
// Running the checker
// ---------------------------------------------------------------------------------------------

/// Counters of a run, as shown in progress lines and the summary.
#[derive(Clone, Copy, Debug)]
struct Progress {
    states: usize,
    unique: usize,
    max_depth: usize,
    elapsed: Duration,
}

impl Progress {
    fn of<M: CheckTarget, C: Checker<M>>(checker: &C, start: Instant) -> Self {
        Progress {
            states: checker.state_count(),
            unique: checker.unique_state_count(),
            max_depth: checker.max_depth(),
            elapsed: start.elapsed(),
        }
    }

    /// Overall generated states per second since the start.
    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.states as f64 / secs
        } else {
            0.0
        }
    }

    fn line(&self) -> String {
        format!(
            "[{:>7.1}s] {} states, {} unique, max depth {}, {} states/s",
            self.elapsed.as_secs_f64(),
            group(self.states),
            group(self.unique),
            self.max_depth,
            group(self.rate() as usize)
        )
    }
}

/// What a finished run leaves behind.
struct RunOutcome<M: CheckTarget> {
    progress: Progress,
    discoveries: HashMap<&'static str, Path<M::State, M::Action>>,
}

/// Spawns the planned strategy and waits for it, printing progress.
fn run<M: CheckTarget>(
    model: M,
    plan: &Plan,
    finish: HasDiscoveries,
) -> anyhow::Result<RunOutcome<M>> {
    let builder = plan.builder(model, finish);
    match plan.strategy {
        Strategy::Bfs => drive(builder.spawn_bfs()),
        Strategy::Dfs => drive(builder.spawn_dfs()),
        Strategy::Simulation => drive(builder.spawn_simulation(plan.seed, UniformChooser)),
    }
}

/// Waits for the checker threads themselves rather than `is_done`, which is wrong for
/// simulation once the handles are taken and early for DFS/BFS (true when all properties have
/// discoveries while threads still run). Joins each thread as soon as it ends, so that a panic
/// in the model is reported at once instead of leaving the other threads waiting for its work.
/// Prints a progress line to stderr every 2 seconds.
fn drive<M: CheckTarget, C: Checker<M>>(mut checker: C) -> anyhow::Result<RunOutcome<M>> {
    let start = Instant::now();
    let mut running = checker.handles();
    let mut next_report = start + PROGRESS_INTERVAL;
    while !running.is_empty() {
        thread::sleep(POLL_INTERVAL);
        let (finished, rest): (Vec<_>, Vec<_>) =
            running.into_iter().partition(JoinHandle::is_finished);
        running = rest;
        if finished.into_iter().any(|h| h.join().is_err()) {
            bail!("a checker thread panicked (its message is above); the model is at fault");
        }
        if Instant::now() >= next_report {
            eprintln!("{}", Progress::of(&checker, start).line());
            next_report += PROGRESS_INTERVAL;
        }
    }
    Ok(RunOutcome {
        progress: Progress::of(&checker, start),
        discoveries: checker.discoveries(),
    })
}

/// Why a run ended; only `Exhausted` means every reachable state was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Every reachable state was checked.
    Exhausted,
    /// Every property had a discovery, so the checker stopped early.
    AllDiscovered,
    /// States at the depth bound were not checked.
    DepthBound,
    /// The state target was reached.
    StateTarget,
    /// The timeout expired.
    Timeout,
}

impl StopReason {
    /// Stateright does not say why it stopped; this infers it from the counters, checking the
    /// conclusive reasons first.
    fn infer<M: CheckTarget>(plan: &Plan, outcome: &RunOutcome<M>, properties: usize) -> Self {
        let p = &outcome.progress;
        if properties > 0 && outcome.discoveries.len() == properties {
            StopReason::AllDiscovered
        } else if plan.strategy != Strategy::Simulation
            && plan.depth.is_some_and(|d| p.max_depth >= d)
        {
            StopReason::DepthBound
        } else if plan.target_states.is_some_and(|n| p.states >= n) {
            StopReason::StateTarget
        } else if plan.timeout.is_some_and(|t| p.elapsed >= t) {
            StopReason::Timeout
        } else if plan.strategy == Strategy::Simulation {
            StopReason::StateTarget
        } else {
            StopReason::Exhausted
        }
    }

    fn describe(self, plan: &Plan) -> String {
        match self {
            StopReason::Exhausted => "complete: every reachable state was checked".into(),
            StopReason::AllDiscovered => {
                "stopped early: every property has a discovery (verdicts are definitive)".into()
            }
            StopReason::DepthBound => format!(
                "incomplete: states at depth {} and beyond (the initial state is depth 1) \
                 were not checked",
                plan.depth.unwrap_or_default()
            ),
            StopReason::StateTarget => format!(
                "incomplete: stopped at the state target ({})",
                group(plan.target_states.unwrap_or_default())
            ),
            StopReason::Timeout => format!(
                "incomplete: stopped at the timeout ({:.1} s)",
                plan.timeout.unwrap_or_default().as_secs_f64()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// Properties named with this prefix are *scenario witnesses*: `sometimes` properties naming a
/// behaviour a configuration must reach for a rule to be exercised (a candidate preempted in
/// phase 1, Promises carrying votes from two ballots, ...). A witness reached is reported with
/// its example trace; one not reached is reported too, but does not fail the run: each CI
/// configuration pins the witnesses it reaches in the model's tests.
pub const WITNESS_PREFIX: &str = "witness: ";

/// A property's expectation, named as in the summary and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectationKind {
    Always,
    Sometimes,
    Eventually,
    /// A `sometimes` property named with [`WITNESS_PREFIX`].
    Witness,
}

/// The witnesses of `model`, named without [`WITNESS_PREFIX`].
pub fn witness_names<M: Model>(model: &M) -> Vec<&'static str> {
    model
        .properties()
        .iter()
        .filter(|p| ExpectationKind::of(p) == ExpectationKind::Witness)
        .filter_map(|p| p.name.strip_prefix(WITNESS_PREFIX))
        .collect()
}

/// Refuses an expected witness that `model` does not have (a typo would otherwise pass
/// silently); the message lists the ones it has.
pub fn check_expected_witnesses<M: Model>(model: &M, expected: &[String]) -> Result<(), String> {
    let known = witness_names(model);
    match expected
        .iter()
        .find(|name| !known.contains(&name.trim_start_matches(WITNESS_PREFIX)))
    {
        Some(name) => Err(format!(
            "--expect-witness {name:?}: this model's witnesses are {}",
            known
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => Ok(()),
    }
}

/// Whether `property` is one of the `expected` witnesses (named with or without the prefix).
pub fn is_expected_witness(property_name: &str, expected: &[String]) -> bool {
    property_name
        .strip_prefix(WITNESS_PREFIX)
        .is_some_and(|name| {
            expected
                .iter()
                .any(|e| e.trim_start_matches(WITNESS_PREFIX) == name)
        })
}

impl ExpectationKind {
    /// The kind of `property`: its stateright expectation, and a witness by its name.
    pub fn of<M: Model>(property: &Property<M>) -> Self {
        match property.expectation {
            Expectation::Sometimes if property.name.starts_with(WITNESS_PREFIX) => {
                ExpectationKind::Witness
            }
            ref expectation => ExpectationKind::from(expectation),
        }
    }
}

impl From<&Expectation> for ExpectationKind {
    fn from(e: &Expectation) -> Self {
        match e {
            Expectation::Always => ExpectationKind::Always,
            Expectation::Sometimes => ExpectationKind::Sometimes,
            Expectation::Eventually => ExpectationKind::Eventually,
        }
    }
}

impl Display for ExpectationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ExpectationKind::Always => "always",
            ExpectationKind::Sometimes => "sometimes",
            ExpectationKind::Eventually => "eventually",
            ExpectationKind::Witness => "witness",
        })
    }
}

/// The outcome for one property. The `-bounded` verdicts come from runs that were not
/// exhaustive: nothing was found, but not everything was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Holds,
    HoldsBounded,
    Violated,
    Reachable,
    NotFound,
    NotFoundBounded,
    /// A witness the run did not reach: reported, not a failure.
    NotReached,
    NotReachedBounded,
    /// A witness the run was told to reach (`--expect-witness`) and did not: a failure.
    Missed,
}

impl Verdict {
    fn decide(expectation: ExpectationKind, discovered: bool, complete: bool) -> Self {
        match (expectation, discovered, complete) {
            (ExpectationKind::Sometimes | ExpectationKind::Witness, true, _) => Verdict::Reachable,
            (ExpectationKind::Witness, false, true) => Verdict::NotReached,
            (ExpectationKind::Witness, false, false) => Verdict::NotReachedBounded,
            (ExpectationKind::Sometimes, false, true) => Verdict::NotFound,
            (ExpectationKind::Sometimes, false, false) => Verdict::NotFoundBounded,
            (_, true, _) => Verdict::Violated,
            (_, false, true) => Verdict::Holds,
            (_, false, false) => Verdict::HoldsBounded,
        }
    }

    /// Whether this verdict makes the run fail (exit code 1).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Verdict::Violated | Verdict::NotFound | Verdict::Missed
        )
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Holds => "holds",
            Verdict::HoldsBounded => "holds (bounded)",
            Verdict::Violated => "violated",
            Verdict::Reachable => "reachable",
            Verdict::NotFound => "not found",
            Verdict::NotFoundBounded => "not found (bounded)",
            Verdict::NotReached => "not reached",
            Verdict::NotReachedBounded => "not reached (bounded)",
            Verdict::Missed => "NOT REACHED (expected)",
        })
    }
}

/// Whether a trace disproves an always/eventually property or demonstrates a sometimes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    /// Disproves an `always` or `eventually` property.
    Counterexample,
    /// Demonstrates a `sometimes` property.
    Example,
    /// A random walk (`paxos-model export-traces`): no property involved.
    Walk,
    /// A path to a state where the implementation diverges from the model (`paxos-conform`);
    /// the trace's `divergence` object says how.
    Divergence,
}

impl Classification {
    fn of(expectation: ExpectationKind) -> Self {
        match expectation {
            ExpectationKind::Sometimes | ExpectationKind::Witness => Classification::Example,
            _ => Classification::Counterexample,
        }
    }
}

/// Where a discovery was saved and how to open it in the explorer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryReport {
    pub classification: Classification,
    pub trace_file: PathBuf,
    /// stateright's action-index path (`Path::encode`): init-state index, then action indices.
    pub explorer_path: String,
    pub steps: usize,
}

/// One property's line of the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropertyReport {
    pub name: String,
    pub expectation: ExpectationKind,
    pub verdict: Verdict,
    pub discovery: Option<DiscoveryReport>,
}

/// The result of one `check`, printed as text or as one JSON object.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// Always [`REPORT_FORMAT`].
    pub format: &'static str,
    pub variant: String,
    pub config: Value,
    pub strategy: Strategy,
    pub threads: usize,
    /// Whether symmetry reduction was actually applied (see `notes` when it was not).
    pub symmetry: bool,
    pub depth_bound: Option<usize>,
    pub timeout_seconds: Option<f64>,
    pub target_states: Option<usize>,
    /// The simulation seed; absent for exhaustive strategies.
    pub seed: Option<u64>,
    pub states: usize,
    pub unique_states: usize,
    /// In stateright's convention: the initial state is depth 1.
    pub max_depth: usize,
    pub elapsed_seconds: f64,
    pub states_per_second: f64,
    /// True only when every reachable state was checked.
    pub complete: bool,
    pub stop_reason: StopReason,
    pub notes: Vec<String>,
    pub properties: Vec<PropertyReport>,
    /// The numbered step listings of the discoveries, printed before the text summary.
    #[serde(skip)]
    pub listings: Vec<String>,
    #[serde(skip)]
    coverage: String,
}

impl CheckReport {
    fn new<M: CheckTarget>(model: &M, plan: &Plan, progress: Progress, stop: StopReason) -> Self {
        let simulation = plan.strategy == Strategy::Simulation;
        CheckReport {
            format: REPORT_FORMAT,
            variant: model.variant().to_string(),
            config: model.config_json(),
            strategy: plan.strategy,
            threads: plan.threads,
            symmetry: plan.symmetry,
            depth_bound: plan.depth,
            timeout_seconds: plan.timeout.map(|t| t.as_secs_f64()),
            target_states: plan.target_states,
            seed: simulation.then_some(plan.seed),
            states: progress.states,
            unique_states: progress.unique,
            max_depth: progress.max_depth,
            elapsed_seconds: progress.elapsed.as_secs_f64(),
            states_per_second: progress.rate(),
            complete: stop == StopReason::Exhausted,
            stop_reason: stop,
            notes: plan.notes.clone(),
            properties: Vec::new(),
            listings: Vec::new(),
            coverage: stop.describe(plan),
        }
    }

    /// 0 when nothing failed; 1 when an always/eventually property is violated or, on a
    /// complete run, a sometimes property was never reached. A bounded run that found nothing
    /// is not a failure: it is inconclusive, and its verdicts say so. (The CLI uses 2 for bad
    /// arguments.)
    pub fn exit_code(&self) -> i32 {
        if self.properties.iter().any(|p| p.verdict.is_failure()) {
            1
        } else {
            0
        }
    }

    /// The report as one pretty-printed JSON object.
    pub fn to_json(&self) -> anyhow::Result<String> {
        serde_json::to_string_pretty(self).context("serializing the check report")
    }

    /// The text summary: configuration, counters, coverage, notes, one aligned line per
    /// property.
    pub fn render_human(&self) -> String {
        let mut out = format!("== paxos-model check: {} ==\n", self.variant);
        let mut field = |name: &str, value: String| out.push_str(&format!("{name:<11}{value}\n"));
        field("config:", self.config.to_string());
        field("strategy:", self.strategy_line());
        field(
            "states:",
            format!(
                "{} generated, {} unique, max depth {}",
                group(self.states),
                group(self.unique_states),
                self.max_depth
            ),
        );
        field(
            "time:",
            format!(
                "{:.2} s, {} states/s",
                self.elapsed_seconds,
                group(self.states_per_second as usize)
            ),
        );
        field("coverage:", self.coverage.clone());
        for note in &self.notes {
            field("note:", note.clone());
        }
        out.push_str(&self.render_properties());
        out
    }

    fn strategy_line(&self) -> String {
        let mut line = format!(
            "{}, {} thread{}, symmetry {}",
            self.strategy,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            if self.symmetry { "on" } else { "off" }
        );
        if let Some(seed) = self.seed {
            line.push_str(&format!(", seed {seed}"));
        }
        if let Some(depth) = self.depth_bound {
            line.push_str(&format!(", depth bound {depth}"));
        }
        line
    }

    fn render_properties(&self) -> String {
        let width = self
            .properties
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(0);
        let indent = " ".repeat(2 + 11 + width + 2);
        let mut out = String::from("properties:\n");
        for p in &self.properties {
            let line = format!("  {:<11}{:<width$}  {}", p.expectation, p.name, p.verdict);
            out.push_str(&line);
            if let Some(d) = &p.discovery {
                out.push_str(&format!(" ({} steps)\n", d.steps));
                out.push_str(&format!("{indent}trace:    {}\n", d.trace_file.display()));
                out.push_str(&format!("{indent}explorer: {}", d.explorer_path));
            }
            out.push('\n');
        }
        out
    }
}

/// Prints the report on stdout: the discovery listings and the text summary when `human`,
/// otherwise exactly one JSON object.
pub fn print_summary(report: &CheckReport, human: bool) -> anyhow::Result<()> {
    if human {
        for listing in &report.listings {
            println!("{listing}");
        }
        print!("{}", report.render_human());
    } else {
        println!("{}", report.to_json()?);
    }
    Ok(())
}

/// Checks every property of `model` as `opts` says, writes a trace per discovery into
/// `opts.trace_dir`, and returns the report (print it with [`print_summary`]).
pub fn check<M: CheckTarget>(model: M, opts: &CheckOptions) -> anyhow::Result<CheckReport> {
    let plan = Plan::new(&model, opts);
    let outcome = run(model.clone(), &plan, HasDiscoveries::All)?;
    let properties = model.properties();
    let stop = StopReason::infer(&plan, &outcome, properties.len());
    let mut report = CheckReport::new(&model, &plan, outcome.progress, stop);
    for property in &properties {
        let path = outcome.discoveries.get(property.name);
        let settled = path.map(|p| settle_path(&model, property, p));
        if let Some((_, false)) = settled {
            report.notes.push(format!(
                "the path found for {:?} does not reproduce it (nondeterministic model?)",
                property.name
            ));
        }
        let path = settled.as_ref().map(|(p, _)| p);
        let (line, listing) = report_property(&model, property, path, report.complete, opts)?;
        report.properties.push(line);
        report.listings.extend(listing);
    }
    Ok(report)
}

/// One property's verdict, plus its trace file and listing when it has a discovery.
fn report_property<M: CheckTarget>(
    model: &M,
    property: &Property<M>,
    path: Option<&Path<M::State, M::Action>>,
    complete: bool,
    opts: &CheckOptions,
) -> anyhow::Result<(PropertyReport, Option<String>)> {
    let expectation = ExpectationKind::of(property);
    let verdict = match Verdict::decide(expectation, path.is_some(), complete) {
        Verdict::NotReached | Verdict::NotReachedBounded
            if is_expected_witness(property.name, &opts.expect_witnesses) =>
        {
            Verdict::Missed
        }
        verdict => verdict,
    };
    let mut line = PropertyReport {
        name: property.name.to_string(),
        expectation,
        verdict,
        discovery: None,
    };
    let Some(path) = path else {
        return Ok((line, None));
    };
    let trace = build_trace(model, property, path);
    let trace_file = write_trace(&opts.trace_dir, &trace)?;
    let listing = render_listing(model, property, path, &trace_file);
    line.discovery = Some(DiscoveryReport {
        classification: trace.classification,
        trace_file,
        explorer_path: trace.explorer_path,
        steps: trace.steps.len(),
    });
    Ok((line, Some(listing)))
}

/// Cuts a discovery path at its first state that is itself a discovery, and says whether any
/// state on it is one. stateright keeps the *last* discovery it makes for a property, not the
/// first (every thread overwrites it until the run stops), so even single-threaded BFS paths
/// run on past the violation; the prefix is the short, readable counterexample. A path on
/// which the property never fails means the path does not lead where the checker said:
/// paths are rebuilt from action indices, which needs a deterministic model, and simulation
/// records wrong indices after an action whose `next_state` is `None`.
fn settle_path<M: CheckTarget>(
    model: &M,
    property: &Property<M>,
    path: &Path<M::State, M::Action>,
) -> (Path<M::State, M::Action>, bool) {
    let is_discovery = |s: &M::State| match property.expectation {
        Expectation::Always => !(property.condition)(model, s),
        Expectation::Sometimes => (property.condition)(model, s),
        Expectation::Eventually => false,
    };
    if property.expectation == Expectation::Eventually {
        return (path.clone(), true);
    }
    let pairs = path.clone().into_vec();
    let Some(cut) = pairs.iter().position(|(s, _)| is_discovery(s)) else {
        return (path.clone(), false);
    };
    let actions: Vec<&M::Action> = pairs[..cut]
        .iter()
        .filter_map(|(_, a)| a.as_ref())
        .collect();
    let prefix = Path::from_actions(model, pairs[0].0.clone(), actions);
    (prefix.unwrap_or_else(|| path.clone()), true)
}

/// The numbered, human-readable steps of a discovery, ending with the property and the final
/// state.
fn render_listing<M: CheckTarget>(
    model: &M,
    property: &Property<M>,
    path: &Path<M::State, M::Action>,
    trace_file: &FsPath,
) -> String {
    let expectation = ExpectationKind::of(property);
    let (title, ending) = match expectation {
        ExpectationKind::Sometimes | ExpectationKind::Witness => ("Example of", "Reached"),
        _ => ("Counterexample to", "Violated"),
    };
    let pairs = path.clone().into_vec();
    let mut out = format!(
        "{title} {:?} ({expectation}), {} steps:\n",
        property.name,
        pairs.len().saturating_sub(1)
    );
    for (i, (prev, action, next)) in steps_of(&pairs).enumerate() {
        out.push_str(&format!("  {}. {}\n", i + 1, model.action_label(action)));
        out.push_str(&format!(
            "       {}\n",
            model.describe_step(prev, action, next)
        ));
    }
    out.push_str(&format!("  {ending}: {}\n  Final state:\n", property.name));
    for line in model.render_state(path.last_state()).lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str(&format!("  Trace: {}\n", trace_file.display()));
    out.push_str(&format!("  Explorer path: {}\n", path.encode(model)));
    out
}

/// `(state before, action, state after)` for each step of a path.
fn steps_of<S, A>(pairs: &[(S, Option<A>)]) -> impl Iterator<Item = (&S, &A, &S)> {
    pairs
        .windows(2)
        .filter_map(|w| w[0].1.as_ref().map(|a| (&w[0].0, a, &w[1].0)))
}

// ---------------------------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------------------------

/// A discovery as a versioned, self-contained JSON file (DESIGN.md §6): enough to replay it
/// against the implementation and to open it in the explorer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Always [`TRACE_FORMAT`].
    pub format: String,
    pub variant: String,
    pub config: Value,
    pub property: String,
    pub classification: Classification,
    /// stateright's action-index path, e.g. `0/3/1`: init-state index, then action indices.
    pub explorer_path: String,
    pub initial_state: Value,
    pub steps: Vec<TraceStep>,
    /// For [`Classification::Divergence`] traces: the conformance harness's report of the last
    /// step (its own versioned object; the model does not interpret it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Value>,
}

/// One step of a [`Trace`]: the action taken and the complete state after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// 1-based, as in the printed listing.
    pub index: usize,
    pub action: Value,
    pub description: String,
    /// The state after the step; `null` (or absent) when the writer left it out to keep a long
    /// trace small (see [`Trace::keep_states_every`]).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub state: Value,
}

impl Trace {
    /// Keeps the recorded state of every `k`-th step and of the last one only, dropping the
    /// rest: replay then checks the model's state at those steps. `k` of 0 or 1 keeps all.
    pub fn keep_states_every(&mut self, k: usize) {
        let last = self.steps.len();
        for step in &mut self.steps {
            if k > 1 && step.index % k != 0 && step.index != last {
                step.state = Value::Null;
            }
        }
    }
}

/// Converts a checker path into a trace.
fn build_trace<M: CheckTarget>(
    model: &M,
    property: &Property<M>,
    path: &Path<M::State, M::Action>,
) -> Trace {
    let pairs = path.clone().into_vec();
    let steps = steps_of(&pairs)
        .enumerate()
        .map(|(i, (prev, action, next))| TraceStep {
            index: i + 1,
            action: model.action_json(action),
            description: model.describe_step(prev, action, next),
            state: model.state_json(next),
        })
        .collect();
    Trace {
        format: TRACE_FORMAT.to_string(),
        variant: model.variant().to_string(),
        config: model.config_json(),
        property: property.name.to_string(),
        classification: Classification::of(ExpectationKind::of(property)),
        explorer_path: path.encode(model),
        initial_state: pairs
            .first()
            .map_or(Value::Null, |(s, _)| model.state_json(s)),
        steps,
        divergence: None,
    }
}

/// The trace of the walk that takes `actions`, in order, from the initial state `init`.
///
/// Unlike a checker path, a step may be an action that changes nothing (stateright's
/// `next_state` returns `None`, e.g. a delivery the receiver ignores): its recorded state is the
/// state before it. Fails when an action is not enabled where it is taken.
pub fn trace_of_actions<M: CheckTarget>(
    model: &M,
    property: &str,
    classification: Classification,
    init: &M::State,
    actions: &[M::Action],
) -> anyhow::Result<Trace> {
    let init_index = model
        .init_states()
        .iter()
        .position(|s| s == init)
        .context("the walk does not start in an initial state")?;
    let mut path = vec![init_index.to_string()];
    let mut steps = Vec::new();
    let mut state = init.clone();
    let mut enabled = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        enabled.clear();
        model.actions(&state, &mut enabled);
        let index = enabled
            .iter()
            .position(|a| a == action)
            .with_context(|| format!("step {}: action {action:?} is not enabled", i + 1))?;
        path.push(index.to_string());
        let next = model
            .next_state(&state, action.clone())
            .unwrap_or_else(|| state.clone());
        steps.push(TraceStep {
            index: i + 1,
            action: model.action_json(action),
            description: model.describe_step(&state, action, &next),
            state: model.state_json(&next),
        });
        state = next;
    }
    Ok(Trace {
        format: TRACE_FORMAT.to_string(),
        variant: model.variant().to_string(),
        config: model.config_json(),
        property: property.to_string(),
        classification,
        explorer_path: path.join("/"),
        initial_state: model.state_json(init),
        steps,
        divergence: None,
    })
}

/// A seeded random walk of at most `depth` steps from the first initial state: each step takes
/// one of the actions that lead to a new state within the model's boundary (SplitMix64 on
/// `seed`, so a seed always gives the same walk). Faults — actions whose JSON `kind` is `drop`
/// or `crash` — are taken with probability `fault_percent`% when both kinds are enabled, the
/// other actions otherwise, each uniformly: a uniform choice over all actions drifts into
/// crash/recover cycles where nothing else happens. Stops early where no action is enabled.
pub fn random_walk<M: CheckTarget>(
    model: &M,
    seed: u64,
    depth: usize,
    fault_percent: u8,
) -> anyhow::Result<Trace> {
    let init = model
        .init_states()
        .into_iter()
        .next()
        .context("the model has no initial state")?;
    let mut rng = SplitMix64(seed);
    let mut state = init.clone();
    let mut actions = Vec::new();
    for _ in 0..depth {
        let (mut faults, mut others): (Vec<_>, Vec<_>) = model
            .next_steps(&state)
            .into_iter()
            .filter(|(_, next)| model.within_boundary(next))
            .partition(|(action, _)| {
                let kind = model.action_json(action);
                matches!(kind["kind"].as_str(), Some("drop" | "crash"))
            });
        let fault = rng.next() % 100 < u64::from(fault_percent);
        let steps = match (faults.is_empty(), others.is_empty()) {
            (true, true) => break,
            (false, false) if fault => &mut faults,
            (false, _) if others.is_empty() => &mut faults,
            _ => &mut others,
        };
        let pick = (rng.next() % steps.len() as u64) as usize;
        let (action, next) = steps.swap_remove(pick);
        actions.push(action);
        state = next;
    }
    trace_of_actions(
        model,
        &format!("random walk (seed {seed})"),
        Classification::Walk,
        &init,
        &actions,
    )
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-distributed generator for seeded walks.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The file name a trace is saved under: `<variant>-<property>-<bug or "correct">.json`, the
/// bug being the `"bug"` string of the configuration.
pub fn trace_file_name(trace: &Trace) -> String {
    let bug = match trace.config.get("bug") {
        None | Some(Value::Null) => "correct".to_string(),
        Some(Value::String(name)) => slug(name),
        Some(other) => slug(&other.to_string()),
    };
    format!(
        "{}-{}-{bug}.json",
        slug(&trace.variant),
        slug(&trace.property)
    )
}

/// Writes `trace` into `dir` (created if missing) and returns the file's path.
pub fn write_trace(dir: &FsPath, trace: &Trace) -> anyhow::Result<PathBuf> {
    let path = dir.join(trace_file_name(trace));
    write_trace_as(&path, trace)?;
    Ok(path)
}

/// Writes `trace` to `path`, creating its directory if missing.
pub fn write_trace_as(path: &FsPath, trace: &Trace) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating the trace directory {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(trace).context("serializing a trace")?;
    fs::write(path, json + "\n").with_context(|| format!("writing the trace {}", path.display()))
}

/// Reads a trace file, refusing any `format` other than [`TRACE_FORMAT`].
pub fn read_trace(path: &FsPath) -> anyhow::Result<Trace> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading the trace {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    match value.get("format").and_then(Value::as_str) {
        Some(TRACE_FORMAT) => {}
        Some(other) => bail!(
            "{}: trace format {other:?} is not supported; expected {TRACE_FORMAT:?}",
            path.display()
        ),
        None => bail!(
            "{}: no \"format\" field; expected \"format\": {TRACE_FORMAT:?}",
            path.display()
        ),
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid {TRACE_FORMAT} trace", path.display()))
}

/// A file-name-safe lowercase name: `LearnerMixedBallots` → `learner-mixed-ballots`,
/// `R2'` → `r2-prime` (so `R2'` and `R2` do not collide).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '\'' {
            out.push_str("-prime-");
        } else if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push('-');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    let parts: Vec<&str> = out.split('-').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        "unnamed".into()
    } else {
        parts.join("-")
    }
}

// ---------------------------------------------------------------------------------------------
// Finding one discovery, and the explorer
// ---------------------------------------------------------------------------------------------

/// A single property's discovery, for opening the explorer on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovery {
    pub property: String,
    pub classification: Classification,
    /// The action-index path; append it to `#/steps/` in the explorer URL.
    pub explorer_path: String,
    pub trace: Trace,
}

/// How a seeded bug's counterexample is looked for, to be shown or exported: one BFS thread
/// finds a shortest one; a bug whose witness configuration takes minutes to explore names a
/// depth, to which one DFS thread searches (the counterexample found may be longer than the
/// shortest); a bug that only random walks reach in reasonable time is looked for by them.
pub fn counterexample_search(depth: Option<usize>, random: bool) -> CheckOptions {
    let base = CheckOptions {
        threads: 1,
        symmetry: false,
        ..CheckOptions::default()
    };
    match (depth, random) {
        (_, true) => CheckOptions {
            strategy: Strategy::Simulation,
            seed: 7,
            target_states: Some(50_000_000),
            ..base
        },
        (Some(depth), false) => CheckOptions {
            strategy: Strategy::Dfs,
            depth: Some(depth),
            ..base
        },
        (None, false) => CheckOptions {
            strategy: Strategy::Bfs,
            ..base
        },
    }
}

/// Runs the checker until `property` has a discovery (it stops as soon as it has one), and
/// returns it, or `None` when the run ended without one. Use BFS with one thread for the
/// shortest path. Writes no files and prints only progress.
pub fn find_discovery<M: CheckTarget>(
    model: M,
    opts: &CheckOptions,
    property: &str,
) -> anyhow::Result<Option<Discovery>> {
    let properties = model.properties();
    let Some(target) = properties.iter().find(|p| p.name == property) else {
        let names: Vec<&str> = properties.iter().map(|p| p.name).collect();
        bail!(
            "{} has no property {property:?}; it has: {}",
            model.variant(),
            names.join(", ")
        );
    };
    let plan = Plan::new(&model, opts);
    let finish = HasDiscoveries::AnyOf(BTreeSet::from([target.name]));
    let outcome = run(model.clone(), &plan, finish)?;
    Ok(outcome.discoveries.get(target.name).map(|path| {
        let (path, _) = settle_path(&model, target, path);
        let trace = build_trace(&model, target, &path);
        Discovery {
            property: target.name.to_string(),
            classification: trace.classification,
            explorer_path: trace.explorer_path.clone(),
            trace,
        }
    }))
}

/// Whether `path` (`I/A1/A2/...`, as [`Trace::explorer_path`]) names an initial state of
/// `model` and then, at each step, one of the actions enabled there: a path the explorer
/// could not follow is refused before it is served.
pub fn path_is_enabled<M: Model>(model: &M, path: &str) -> Result<(), String> {
    let mut indices = path.trim_matches('/').split('/').map(|i| {
        i.parse::<usize>()
            .map_err(|_| format!("{i:?} in {path:?} is not an index"))
    });
    let init = indices.next().ok_or("an empty path")??;
    let mut state = model
        .init_states()
        .into_iter()
        .nth(init)
        .ok_or_else(|| format!("no initial state {init}"))?;
    for (step, index) in indices.enumerate() {
        let index = index?;
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let enabled = actions.len();
        let action = actions
            .into_iter()
            .nth(index)
            .ok_or_else(|| format!("step {}: action {index} of {enabled} enabled", step + 1))?;
        if let Some(next) = model.next_state(&state, action) {
            state = next;
        }
    }
    Ok(())
}

/// The explorer URL for `addr`, opened on `explorer_path` when given. The UI routes
/// `#/steps/<init index>/<action index>/…` by following the indices from its init-state list,
/// exactly the components of `Path::encode`. An unspecified listen address (0.0.0.0) is shown
/// as the loopback address so that the URL can be opened.
pub fn explorer_url(addr: SocketAddr, explorer_path: Option<&str>) -> String {
    let shown = SocketAddr::new(connectable_ip(addr.ip()), addr.port());
    match explorer_path {
        Some(path) => format!("http://{shown}/#/steps/{}", path.trim_matches('/')),
        None => format!("http://{shown}/"),
    }
}

fn connectable_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// A running explorer. Its server thread never ends on its own (stateright's `serve` loops
/// forever); dropping this handle leaves it running until the process exits.
#[derive(Debug)]
pub struct Explorer {
    addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl Explorer {
    /// The address the explorer listens on (port 0 resolved to the real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The explorer's URL, opened on an action-index path when given.
    pub fn url(&self, explorer_path: Option<&str>) -> String {
        explorer_url(self.addr, explorer_path)
    }

    /// Blocks until the server thread ends, which in practice is never (Ctrl-C ends the CLI).
    pub fn wait(self) -> anyhow::Result<()> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the explorer's server thread panicked"))
    }
}

/// Starts stateright's web explorer for `model` on `addr` and returns once it accepts
/// connections. Port 0 picks a free port (see [`Explorer::addr`]); stateright cannot report
/// the port it bound, so this binds a listener first to learn a free one, then hands it over.
pub fn spawn_explorer<M: CheckTarget>(model: M, addr: SocketAddr) -> anyhow::Result<Explorer> {
    let addr = reserve(addr)?;
    let handle = thread::Builder::new()
        .name("explorer".into())
        .spawn(move || {
            let _checker = model.checker().serve(addr);
        })
        .context("spawning the explorer thread")?;
    wait_until_listening(addr, &handle)?;
    Ok(Explorer { addr, handle })
}

/// Serves the explorer on `addr`, prints its URL (opened on `open_path` when given) and runs
/// until the process is interrupted.
pub fn explore<M: CheckTarget>(
    model: M,
    addr: SocketAddr,
    open_path: Option<&str>,
) -> anyhow::Result<()> {
    let explorer = spawn_explorer(model, addr)?;
    println!("Explorer: {}", explorer.url(None));
    if let Some(path) = open_path {
        println!("Discovery: {}", explorer.url(Some(path)));
    }
    println!("Press Ctrl-C to stop.");
    explorer.wait()
}

/// Checks that `addr` can be bound (stateright would panic otherwise) and resolves port 0.
fn reserve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (address in use?)"))?;
    listener
        .local_addr()
        .with_context(|| format!("reading the address bound for {addr}"))
}

/// Polls until the explorer accepts a connection, failing if its thread died (a bind panic)
/// or it takes too long.
fn wait_until_listening(addr: SocketAddr, handle: &JoinHandle<()>) -> anyhow::Result<()> {
    let target = SocketAddr::new(connectable_ip(addr.ip()), addr.port());
    let deadline = Instant::now() + EXPLORER_START_TIMEOUT;
    loop {
        if handle.is_finished() {
            bail!("the explorer stopped before listening on {addr} (see the message above)");
        }
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the explorer did not start listening on {addr} within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `1234567` → `1,234,567`.
pub fn group(n: usize) -> String {
    let digits = n.to_string().into_bytes();
    let chunks: Vec<&str> = digits
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    chunks.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Two counters `a` and `b`, each incremented up to `max`. "sum below bound" fails once
    /// `a + b` reaches `bad_sum`; "a reaches goal" is reachable only when `goal <= max`.
    /// Swapping `a` and `b` preserves "sum below bound" but not "a reaches goal", so the
    /// symmetry tests use `goal = max` where both orders reach it.
    #[derive(Clone, Debug)]
    struct Toy {
        max: u8,
        bad_sum: Option<u8>,
        goal: u8,
        bug: Option<&'static str>,
        /// Makes `next_state` panic on reaching this sum, like a model bug.
        panic_at_sum: Option<u8>,
    }

    #[derive(Clone, Debug, PartialEq)]
    enum Inc {
        A,
        B,
    }

    impl Toy {
        fn correct(max: u8) -> Self {
            Toy {
                max,
                bad_sum: None,
                goal: max,
                bug: None,
                panic_at_sum: None,
            }
        }
    }

    impl Model for Toy {
        type State = (u8, u8);
        type Action = Inc;

        fn init_states(&self) -> Vec<(u8, u8)> {
            vec![(0, 0)]
        }

        fn actions(&self, s: &(u8, u8), actions: &mut Vec<Inc>) {
            if s.0 < self.max {
                actions.push(Inc::A);
            }
            if s.1 < self.max {
                actions.push(Inc::B);
            }
        }

        fn next_state(&self, s: &(u8, u8), action: Inc) -> Option<(u8, u8)> {
            let next = match action {
                Inc::A => (s.0 + 1, s.1),
                Inc::B => (s.0, s.1 + 1),
            };
            assert_ne!(Some(next.0 + next.1), self.panic_at_sum, "toy model bug");
            Some(next)
        }

        fn properties(&self) -> Vec<Property<Self>> {
            vec![
                Property::always(
                    "sum below bound",
                    |m: &Toy, s: &(u8, u8)| !matches!(m.bad_sum, Some(b) if s.0 + s.1 >= b),
                ),
                Property::sometimes("a reaches goal", |m: &Toy, s: &(u8, u8)| s.0 == m.goal),
            ]
        }
    }

    impl CheckTarget for Toy {
        fn variant(&self) -> &'static str {
            "toy"
        }
        fn config_json(&self) -> Value {
            serde_json::json!({"max": self.max, "bad_sum": self.bad_sum, "goal": self.goal, "bug": self.bug})
        }
        fn state_json(&self, s: &(u8, u8)) -> Value {
            serde_json::json!({"a": s.0, "b": s.1})
        }
        fn action_json(&self, action: &Inc) -> Value {
            serde_json::json!(format!("{action:?}"))
        }
        fn describe_step(&self, prev: &(u8, u8), _: &Inc, next: &(u8, u8)) -> String {
            format!("({}, {}) -> ({}, {})", prev.0, prev.1, next.0, next.1)
        }
        fn symmetry(&self) -> Option<fn(&(u8, u8)) -> (u8, u8)> {
            Some(|s| (s.0.min(s.1), s.0.max(s.1)))
        }
    }

    /// A fresh directory per test (parallel tests and concurrent `cargo test` runs must not
    /// share trace files), removed when the test ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = format!("paxos-runner-{}-{name}-{n}", std::process::id());
            Scratch(std::env::temp_dir().join(dir))
        }

        /// One thread, no symmetry, traces into this directory.
        fn opts(&self, strategy: Strategy) -> CheckOptions {
            CheckOptions {
                strategy,
                threads: 1,
                symmetry: false,
                trace_dir: self.0.clone(),
                ..CheckOptions::default()
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn verdict(report: &CheckReport, name: &str) -> Option<Verdict> {
        report
            .properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.verdict)
    }

    #[test]
    fn violation_writes_a_readable_trace_and_fails() -> anyhow::Result<()> {
        let scratch = Scratch::new("violation");
        let model = Toy {
            bad_sum: Some(3),
            bug: Some("OffByOne"),
            ..Toy::correct(3)
        };
        let report = check(model, &scratch.opts(Strategy::Bfs))?;
        assert_eq!(verdict(&report, "sum below bound"), Some(Verdict::Violated));
        assert_eq!(report.exit_code(), 1);
        let discovery = report.properties[0]
            .discovery
            .clone()
            .context("no discovery")?;
        assert_eq!(discovery.classification, Classification::Counterexample);
        assert!(discovery
            .trace_file
            .ends_with("toy-sum-below-bound-off-by-one.json"));
        let trace = read_trace(&discovery.trace_file)?;
        assert_eq!(
            trace.steps.len(),
            3,
            "BFS with one thread finds the shortest path"
        );
        assert_eq!(discovery.steps, 3);
        assert_eq!(
            trace.explorer_path.split('/').count(),
            4,
            "init index + 3 actions"
        );
        assert_eq!(trace.explorer_path, discovery.explorer_path);
        assert_eq!(trace.initial_state, serde_json::json!({"a": 0, "b": 0}));
        let last = &trace.steps[2].state;
        assert_eq!(
            last["a"].as_u64().unwrap_or(0) + last["b"].as_u64().unwrap_or(0),
            3
        );
        assert!(report
            .listings
            .iter()
            .any(|l| l.contains("  3. ") && l.contains("Violated")));
        Ok(())
    }

    #[test]
    fn correct_run_is_complete_and_passes() -> anyhow::Result<()> {
        let scratch = Scratch::new("correct");
        let report = check(Toy::correct(3), &scratch.opts(Strategy::Dfs))?;
        assert!(report.complete, "{:?}", report.stop_reason);
        assert_eq!(verdict(&report, "sum below bound"), Some(Verdict::Holds));
        assert_eq!(verdict(&report, "a reaches goal"), Some(Verdict::Reachable));
        assert_eq!(report.unique_states, 16);
        assert_eq!(report.exit_code(), 0);
        Ok(())
    }

    #[test]
    fn unreachable_sometimes_fails_only_on_complete_runs() -> anyhow::Result<()> {
        let scratch = Scratch::new("unreachable");
        let model = Toy {
            goal: 9,
            ..Toy::correct(3)
        };
        let complete = check(model.clone(), &scratch.opts(Strategy::Bfs))?;
        assert_eq!(
            verdict(&complete, "a reaches goal"),
            Some(Verdict::NotFound)
        );
        assert_eq!(complete.exit_code(), 1);
        let bounded_opts = CheckOptions {
            depth: Some(3),
            ..scratch.opts(Strategy::Bfs)
        };
        let bounded = check(model, &bounded_opts)?;
        assert!(!bounded.complete);
        assert_eq!(bounded.stop_reason, StopReason::DepthBound);
        assert_eq!(
            verdict(&bounded, "a reaches goal"),
            Some(Verdict::NotFoundBounded)
        );
        assert_eq!(
            verdict(&bounded, "sum below bound"),
            Some(Verdict::HoldsBounded)
        );
        assert_eq!(bounded.exit_code(), 0);
        Ok(())
    }

    #[test]
    fn discoveries_are_cut_at_their_first_discovery_state() -> anyhow::Result<()> {
        let scratch = Scratch::new("cut");
        // stateright would report the last state with a == 2 that BFS met, e.g. (2, 6).
        let report = check(
            Toy {
                goal: 2,
                ..Toy::correct(6)
            },
            &scratch.opts(Strategy::Bfs),
        )?;
        let discovery = report.properties[1]
            .discovery
            .clone()
            .context("no example")?;
        assert_eq!(discovery.steps, 2);
        assert_eq!(discovery.explorer_path, "0/0/0");
        assert!(report.notes.is_empty(), "{:?}", report.notes);
        Ok(())
    }

    #[test]
    fn bfs_and_dfs_agree_and_symmetry_applies_to_dfs_only() -> anyhow::Result<()> {
        let scratch = Scratch::new("bfs");
        let bfs = check(Toy::correct(4), &scratch.opts(Strategy::Bfs))?;
        let dfs_opts = CheckOptions {
            threads: 3,
            ..scratch.opts(Strategy::Dfs)
        };
        let dfs = check(Toy::correct(4), &dfs_opts)?;
        assert_eq!(bfs.unique_states, 25);
        assert_eq!(bfs.unique_states, dfs.unique_states);
        let sym_opts = CheckOptions {
            symmetry: true,
            ..scratch.opts(Strategy::Dfs)
        };
        let sym = check(Toy::correct(4), &sym_opts)?;
        assert!(sym.symmetry);
        assert_eq!(sym.unique_states, 15, "pairs a <= b");
        let ignored_opts = CheckOptions {
            symmetry: true,
            ..scratch.opts(Strategy::Bfs)
        };
        let ignored = check(Toy::correct(4), &ignored_opts)?;
        assert!(!ignored.symmetry);
        assert!(ignored.notes.iter().any(|n| n.contains("DFS only")));
        assert_eq!(ignored.unique_states, 25);
        Ok(())
    }

    #[test]
    fn simulation_stops_at_its_state_target() -> anyhow::Result<()> {
        let scratch = Scratch::new("simulation");
        let sim_opts = CheckOptions {
            target_states: Some(500),
            seed: 7,
            ..scratch.opts(Strategy::Simulation)
        };
        let report = check(
            Toy {
                goal: 9,
                ..Toy::correct(3)
            },
            &sim_opts,
        )?;
        assert!(!report.complete);
        assert_eq!(report.seed, Some(7));
        assert!(report.states >= 500);
        assert_eq!(
            verdict(&report, "a reaches goal"),
            Some(Verdict::NotFoundBounded)
        );
        assert_eq!(report.exit_code(), 0);
        Ok(())
    }

    #[test]
    fn a_panicking_model_is_an_error_not_a_hang() {
        let scratch = Scratch::new("panic");
        let model = Toy {
            panic_at_sum: Some(5),
            ..Toy::correct(6)
        };
        let opts = CheckOptions {
            threads: 4,
            ..scratch.opts(Strategy::Dfs)
        };
        let err = check(model, &opts).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("panicked")));
    }

    #[test]
    fn json_report_has_its_format_and_verdicts() -> anyhow::Result<()> {
        let scratch = Scratch::new("json");
        let model = Toy {
            bad_sum: Some(2),
            ..Toy::correct(2)
        };
        let report = check(model, &scratch.opts(Strategy::Bfs))?;
        let json: Value = serde_json::from_str(&report.to_json()?)?;
        assert_eq!(json["format"], REPORT_FORMAT);
        assert_eq!(json["variant"], "toy");
        assert_eq!(json["strategy"], "bfs");
        assert_eq!(json["properties"][0]["verdict"], "violated");
        assert_eq!(json["properties"][0]["expectation"], "always");
        assert!(json["properties"][0]["discovery"]["explorer_path"].is_string());
        assert!(json.get("listings").is_none());
        let text = report.render_human();
        assert!(
            text.contains("sum below bound") && text.contains("violated"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn read_trace_rejects_other_formats() -> anyhow::Result<()> {
        let scratch = Scratch::new("format");
        let dir = scratch.0.clone();
        fs::create_dir_all(&dir)?;
        let path = dir.join("old.json");
        fs::write(&path, r#"{"format": "paxos-trace/0", "steps": []}"#)?;
        let err = read_trace(&path)
            .err()
            .context("an old format was accepted")?;
        assert!(format!("{err:#}").contains(TRACE_FORMAT), "{err:#}");
        fs::write(&path, "{}")?;
        let err = read_trace(&path)
            .err()
            .context("a missing format was accepted")?;
        assert!(format!("{err:#}").contains("no \"format\""), "{err:#}");
        Ok(())
    }

    #[test]
    fn slugs_are_file_safe_and_distinct() {
        assert_eq!(slug("LearnerMixedBallots"), "learner-mixed-ballots");
        assert_eq!(slug("R2'"), "r2-prime");
        assert_ne!(slug("R2'"), slug("R2"));
        assert_eq!(slug("P1a"), "p1a");
        assert_eq!(slug("value is chosen"), "value-is-chosen");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(12), "12");
    }

    /// A plain HTTP/1.0 GET, bounded by socket timeouts so a stuck server fails the test.
    fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("no HTTP header end")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .context("no status")?
            .parse()?;
        Ok((status, body.to_string()))
    }

    #[test]
    fn explorer_serves_the_discovery_path() -> anyhow::Result<()> {
        let scratch = Scratch::new("explore");
        let model = Toy {
            bad_sum: Some(2),
            ..Toy::correct(2)
        };
        let found = find_discovery(
            model.clone(),
            &scratch.opts(Strategy::Bfs),
            "sum below bound",
        )?
        .context("no counterexample")?;
        assert_eq!(found.classification, Classification::Counterexample);
        let explorer = spawn_explorer(model, "127.0.0.1:0".parse()?)?;
        let addr = explorer.addr();
        assert_ne!(addr.port(), 0);
        assert_eq!(
            explorer.url(Some(&found.explorer_path)),
            format!("http://{addr}/#/steps/{}", found.explorer_path)
        );

        let (code, body) = http_get(addr, "/.status")?;
        assert_eq!(code, 200);
        let status: Value = serde_json::from_str(&body)?;
        assert_eq!(
            status["properties"].as_array().map(Vec::len),
            Some(2),
            "{status}"
        );
        assert_eq!(status["properties"][0][1], "sum below bound");

        let (_, body) = http_get(addr, "/.states")?;
        let inits: Value = serde_json::from_str(&body)?;
        assert_eq!(inits[0]["state"], format!("{:#?}", (0u8, 0u8)));
        assert_eq!(inits[0]["actionIndex"], 0);

        // The UI opens `#/steps/<path>` by fetching `/.states/<prefix>` and picking the entry
        // whose actionIndex is the next component: do the same for the last component.
        let (prefix, last) = found
            .explorer_path
            .rsplit_once('/')
            .context("path too short")?;
        let (code, body) = http_get(addr, &format!("/.states/{prefix}"))?;
        assert_eq!(code, 200, "{body}");
        let nexts: Value = serde_json::from_str(&body)?;
        let last: u64 = last.parse()?;
        let entry = nexts
            .as_array()
            .and_then(|a| a.iter().find(|e| e["actionIndex"] == last))
            .context("no entry for the last action index")?;
        let final_state = &found.trace.steps.last().context("empty trace")?.state;
        let (a, b) = (final_state["a"].as_u64(), final_state["b"].as_u64());
        let expected = (a.context("a")? as u8, b.context("b")? as u8);
        assert_eq!(entry["state"], format!("{expected:#?}"));

        let (code, _) = http_get(addr, "/.states/0/9/9")?;
        assert_eq!(code, 404);
        Ok(())
    }

    #[test]
    fn explorer_reports_a_busy_address() -> anyhow::Result<()> {
        let busy = TcpListener::bind("127.0.0.1:0")?;
        let err = spawn_explorer(Toy::correct(1), busy.local_addr()?)
            .err()
            .context("bound a busy address")?;
        assert!(format!("{err:#}").contains("cannot listen"), "{err:#}");
        Ok(())
    }

    #[test]
    fn find_discovery_names_valid_properties() {
        let scratch = Scratch::new("names");
        let err = find_discovery(Toy::correct(1), &scratch.opts(Strategy::Bfs), "nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sum below bound"), "{err}");
    }
}
