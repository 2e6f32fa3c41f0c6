//! Trace files (`paxos-trace/2`, specs/trace-format.md) replayed against the implementation.
//!
//! A trace is walked on the model rebuilt from its recorded configuration: each step's action
//! must be enabled where it is taken (matched by its JSON), and the model's next state must be
//! the recorded one, so a trace that no longer describes the model is an error rather than a
//! silent pass. Every step is then replayed on the implementation with the same per-pair
//! comparison as the exhaustive check ([`Conformance::replay_pair`]); the first disagreement
//! ends the walk as a [`DivergenceRecord`].
//!
//! What a trace must do depends on its model: a trace of the correct protocol must conform; a
//! trace of a seeded model bug (its `config.bug` is set) must diverge, because the
//! implementation must not do what the bug does.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use paxos_model::multi::{self, MultiConfig};
use paxos_model::runner::{self, Classification, Trace};
use paxos_model::synod::{self, SynodConfig};
use paxos_model::types::BugCatalogue;
use serde_json::Value;

use crate::conform::{
    field_diff, Conformance, DivergenceRecord, Mismatch, PairResult, DIVERGENCE_FORMAT,
};

/// The `property` of divergence traces.
pub const DIVERGENCE_PROPERTY: &str = "conformance";

/// How the walk of a trace on the model and the implementation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Walked {
    /// Every step agreed.
    Conforms {
        /// Steps in which a node stepped on both sides and the two agreed.
        replayed: usize,
    },
    /// The first step on which the two disagree.
    Diverges(DivergenceRecord),
}

/// What a trace must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A trace of the correct protocol: every step conforms.
    Conform,
    /// A counterexample (or divergence) trace of a seeded model bug: the implementation must
    /// diverge from it somewhere.
    Diverge { bug: String },
    /// Any other trace of a seeded model bug (an example of a `sometimes` property, a random
    /// walk): it may or may not pass where the bug acts, so either outcome is accepted.
    Either { bug: String },
}

/// The replay of one trace file.
#[derive(Clone, Debug)]
pub struct ReplayReport {
    pub file: PathBuf,
    pub variant: String,
    pub steps: usize,
    pub expected: Expected,
    pub walked: Walked,
    /// The divergence the file recorded when it was written, if it is a divergence trace.
    pub recorded: Option<DivergenceRecord>,
}

impl ReplayReport {
    /// Whether the trace did what it must (see [`Expected`]).
    pub fn passed(&self) -> bool {
        matches!(
            (&self.expected, &self.walked),
            (Expected::Conform, Walked::Conforms { .. })
                | (Expected::Diverge { .. }, Walked::Diverges(_))
                | (Expected::Either { .. }, _)
        )
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "ok  " } else { "FAIL" };
        let file = self.file.display();
        match (&self.expected, &self.walked) {
            (Expected::Conform, Walked::Conforms { replayed }) => writeln!(
                f,
                "{verdict} {file}: conforms ({} steps, {replayed} node steps replayed)",
                self.steps
            )?,
            (Expected::Conform, Walked::Diverges(d)) => {
                writeln!(f, "{verdict} {file}: the implementation diverges at {d}")?
            }
            (Expected::Diverge { bug }, Walked::Diverges(d)) => writeln!(
                f,
                "{verdict} {file}: diverges from seeded bug {bug} as it must (the \
                 implementation does not do what the bug does) at step {}, n{}: {}",
                d.step,
                d.node,
                d.parts().join(", ")
            )?,
            (Expected::Either { bug }, Walked::Diverges(d)) => writeln!(
                f,
                "{verdict} {file}: not a counterexample of seeded bug {bug} (no expectation); \
                 diverges at step {}, n{}: {}",
                d.step,
                d.node,
                d.parts().join(", ")
            )?,
            (Expected::Either { bug }, Walked::Conforms { .. }) => writeln!(
                f,
                "{verdict} {file}: not a counterexample of seeded bug {bug} (no expectation); \
                 conforms ({} steps)",
                self.steps
            )?,
            (Expected::Diverge { bug }, Walked::Conforms { .. }) => writeln!(
                f,
                "{verdict} {file}: conforms to seeded bug {bug}'s trace: the implementation \
                 does what the bug does ({} steps)",
                self.steps
            )?,
        }
        if let Some(recorded) = &self.recorded {
            if !self.passed() || !matches!(self.walked, Walked::Diverges(ref d) if d == recorded) {
                write!(f, "     recorded when written: {recorded}")?;
            }
        }
        Ok(())
    }
}

/// Reads a trace file: its format must be `paxos-trace/2`, and a `divergence` object, if any,
/// `paxos-divergence/1`. Errors name the file.
pub fn load(path: &Path) -> anyhow::Result<(Trace, Option<DivergenceRecord>)> {
    let trace = runner::read_trace(path)?;
    let recorded = match &trace.divergence {
        None => None,
        Some(value) => {
            let format = value.get("format").and_then(Value::as_str);
            if format != Some(DIVERGENCE_FORMAT) {
                bail!(
                    "{}: divergence format {format:?} is not supported; expected \
                     {DIVERGENCE_FORMAT:?}",
                    path.display()
                );
            }
            let record = serde_json::from_value(value.clone()).with_context(|| {
                format!(
                    "{}: the divergence object is not a valid {DIVERGENCE_FORMAT} record",
                    path.display()
                )
            })?;
            Some(record)
        }
    };
    Ok((trace, recorded))
}

/// Loads and replays one trace file.
pub fn replay_file(path: &Path) -> anyhow::Result<ReplayReport> {
    let (trace, recorded) = load(path)?;
    let (expected, walked) =
        replay_trace(&trace).with_context(|| format!("replaying {}", path.display()))?;
    Ok(ReplayReport {
        file: path.to_path_buf(),
        variant: trace.variant.clone(),
        steps: trace.steps.len(),
        expected,
        walked,
        recorded,
    })
}

/// Rebuilds the trace's model from its configuration and walks it (see the module notes).
pub fn replay_trace(trace: &Trace) -> anyhow::Result<(Expected, Walked)> {
    match trace.variant.as_str() {
        "synod" => {
            let cfg: SynodConfig = serde_json::from_value(trace.config.clone())
                .context("the configuration is not a Synod configuration")?;
            cfg.validate().map_err(anyhow::Error::msg)?;
            let expected = expected_of(cfg.bug.map(|b| b.name()), trace.classification);
            Ok((expected, walk(&synod::model(cfg), trace)?))
        }
        "multi" => {
            let cfg: MultiConfig = serde_json::from_value(trace.config.clone())
                .context("the configuration is not a Multi-Paxos configuration")?;
            cfg.validate_walk().map_err(anyhow::Error::msg)?;
            let expected = expected_of(cfg.bug.map(|b| b.name()), trace.classification);
            Ok((expected, walk(&multi::model(cfg), trace)?))
        }
        other => bail!(
            "variant {other:?} has no implementation to replay against (synod and multi have)"
        ),
    }
}

/// What a trace must do, by its model's bug and its kind (see [`Expected`]).
pub fn expected_of(bug: Option<&str>, classification: Classification) -> Expected {
    let Some(bug) = bug else {
        return Expected::Conform;
    };
    let bug = bug.to_string();
    match classification {
        Classification::Counterexample | Classification::Divergence => Expected::Diverge { bug },
        Classification::Example | Classification::Walk => Expected::Either { bug },
    }
}

/// Walks `trace` on `model` and the implementation together.
pub fn walk<M: Conformance>(model: &M, trace: &Trace) -> anyhow::Result<Walked> {
    let mut state = model
        .init_states()
        .into_iter()
        .find(|s| model.state_json(s) == trace.initial_state)
        .context("the initial state is not one of the model's for this configuration")?;
    let mut replayed = 0;
    for (label, mismatch) in model.replay_starts(&state) {
        let Some(mismatch) = mismatch else {
            replayed += 1;
            continue;
        };
        // Step 0: the start that built the initial state.
        let record = DivergenceRecord::new(0, Value::Null, label, &mismatch);
        return Ok(Walked::Diverges(record));
    }
    let mut enabled = Vec::new();
    for (k, step) in trace.steps.iter().enumerate() {
        let n = k + 1;
        enabled.clear();
        model.actions(&state, &mut enabled);
        let action = enabled
            .drain(..)
            .find(|a| model.action_json(a) == step.action)
            .with_context(|| format!("step {n}: action not enabled: {}", step.action))?;
        let next = model
            .next_state(&state, action.clone())
            .unwrap_or_else(|| state.clone());
        let next_json = model.state_json(&next);
        if !step.state.is_null() && next_json != step.state {
            let diffs = field_diff(&step.state, &next_json);
            let shown: Vec<String> = diffs.iter().take(5).map(|d| d.to_string()).collect();
            bail!(
                "step {n}: the model's next state is not the recorded one (was the model \
                 changed since the trace was written?); recorded vs model: {}",
                shown.join("; ")
            );
        }
        match model.replay_pair(&state, &action, &next) {
            PairResult::Agrees => replayed += 1,
            PairResult::Diverges(mismatch) => {
                let record = DivergenceRecord::new(
                    n,
                    step.action.clone(),
                    step.description.clone(),
                    &mismatch,
                );
                return Ok(Walked::Diverges(record));
            }
            PairResult::NoStep | PairResult::Client => {}
        }
        state = next;
    }
    Ok(Walked::Conforms { replayed })
}

/// The divergence trace of `actions` from `init`, whose last action diverges as `mismatch`
/// says: a paxos-trace/2 trace with a `divergence` object, replayable by
/// `paxos-conform replay` and whose `explorer_path` opens in `paxos-model explore`.
pub fn divergence_trace<M: Conformance>(
    model: &M,
    init: &M::State,
    actions: &[M::Action],
    mismatch: &Mismatch,
) -> anyhow::Result<Trace> {
    let mut trace = runner::trace_of_actions(
        model,
        DIVERGENCE_PROPERTY,
        Classification::Divergence,
        init,
        actions,
    )?;
    let last = trace
        .steps
        .last()
        .context("a divergence trace needs at least one step")?;
    let record = DivergenceRecord::new(
        trace.steps.len(),
        last.action.clone(),
        last.description.clone(),
        mismatch,
    );
    trace.divergence =
        Some(serde_json::to_value(&record).context("serializing the divergence record")?);
    Ok(trace)
}
