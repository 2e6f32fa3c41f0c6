//! One interface over the Synod and Multi-Paxos step replays, for the code that drives them
//! (trace replay, the exhaustive `paxos-conform check`): replay one (state, action) pair, and
//! report a disagreement as JSON with a field-by-field diff.
//!
//! The comparisons themselves are [`crate::synod`]'s and [`crate::multi`]'s.

use std::fmt;

use paxos_model::multi::MultiModel;
use paxos_model::runner::CheckTarget;
use paxos_model::synod::SynodModel;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stateright::actor::ActorModelAction;

use crate::{multi, synod};

/// Version tag of [`DivergenceRecord`]; bump it when a field changes meaning.
pub const DIVERGENCE_FORMAT: &str = "paxos-divergence/1";

/// What replaying one (state, action) pair on the implementation gave.
#[derive(Clone, Debug, PartialEq)]
pub enum PairResult {
    /// A node stepped on both sides, and the two agree.
    Agrees,
    /// A node stepped on both sides, and the two disagree.
    Diverges(Mismatch),
    /// No node steps (a message lost, a node crashing, a delivery to a crashed node): nothing
    /// to compare.
    NoStep,
    /// A client actor steps: it has no implementation counterpart.
    Client,
}

/// A disagreement on one pair: what the model's node did and what the implementation's did,
/// each as JSON (`state`, `sends`, and the variant's persisted state and timers).
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The actor index of the node that stepped.
    pub node: usize,
    pub expected: Value,
    /// `Err`: the implementation's result has no model image, or it panicked.
    pub actual: Result<Value, String>,
}

impl Mismatch {
    /// The fields that differ, deepest first-level path first (see [`field_diff`]).
    pub fn differences(&self) -> Vec<FieldDiff> {
        match &self.actual {
            Ok(actual) => field_diff(&self.expected, actual),
            Err(_) => Vec::new(),
        }
    }
}

/// A model whose node steps the implementation can replay.
pub trait Conformance: CheckTarget {
    /// Replays `action`, taken in `state`, on the implementation; `next` is the model's next
    /// state (`state` itself when the action changes nothing).
    fn replay_pair(
        &self,
        state: &Self::State,
        action: &Self::Action,
        next: &Self::State,
    ) -> PairResult;

    /// The implementation's steps that the model takes as stuttering steps in `state` (timers
    /// and heartbeats), each replayed: what stepped, and the mismatch if it diverged.
    fn replay_stutters(&self, _state: &Self::State) -> Vec<(String, Option<Mismatch>)> {
        Vec::new()
    }

    /// Each node's first start in the initial state `init` (which no action takes: the
    /// initial state is the nodes' `on_start` results), replayed on the implementation:
    /// what started, and the mismatch if it diverged.
    fn replay_starts(&self, _init: &Self::State) -> Vec<(String, Option<Mismatch>)> {
        Vec::new()
    }
}

fn actor_of<M, T, R>(action: &ActorModelAction<M, T, R>) -> usize {
    match action {
        ActorModelAction::Deliver { dst: id, .. }
        | ActorModelAction::Timeout(id, _)
        | ActorModelAction::Crash(id)
        | ActorModelAction::Recover(id) => usize::from(*id),
        ActorModelAction::Drop(env) => usize::from(env.dst),
        ActorModelAction::SelectRandom { actor, .. } => usize::from(*actor),
    }
}

fn sends_json<M: Serialize>(sends: &[(usize, M)]) -> Value {
    Value::Array(
        sends
            .iter()
            .map(|(to, msg)| json!({"to": to, "msg": msg}))
            .collect(),
    )
}

fn synod_json(o: &synod::StepOutcome) -> Value {
    json!({
        "state": o.state,
        "sends": sends_json(&o.sends),
        "saved": o.saved,
        "timer_set": o.timer_set,
        "timer_cancelled": o.timer_cancelled,
    })
}

/// A Multi-Paxos step outcome as the JSON a divergence record holds.
pub fn multi_json(o: &multi::StepOutcome) -> Value {
    json!({
        "state": o.state,
        "sends": sends_json(&o.sends),
        "persisted": o.persisted,
        "election_timer": o.election_timer,
    })
}

impl Conformance for SynodModel {
    fn replay_pair(
        &self,
        state: &Self::State,
        action: &Self::Action,
        _next: &Self::State,
    ) -> PairResult {
        let Some((expected, actual)) = synod::replay(self, state, action) else {
            return PairResult::NoStep;
        };
        if actual.as_ref() == Some(&expected) {
            return PairResult::Agrees;
        }
        PairResult::Diverges(Mismatch {
            node: actor_of(action),
            expected: synod_json(&expected),
            actual: actual.as_ref().map(synod_json).ok_or_else(|| {
                "the implementation's result has no model image (a ballot, round or value \
                 beyond the model's bounds)"
                    .to_string()
            }),
        })
    }
}

impl Conformance for MultiModel {
    fn replay_pair(
        &self,
        state: &Self::State,
        action: &Self::Action,
        next: &Self::State,
    ) -> PairResult {
        match multi::replay(self, state, action, next) {
            multi::Pair::Client => PairResult::Client,
            multi::Pair::NoStep => PairResult::NoStep,
            multi::Pair::Replayed {
                node,
                expected,
                actual,
            } => {
                if actual.as_ref() == Ok(&expected) {
                    return PairResult::Agrees;
                }
                PairResult::Diverges(Mismatch {
                    node,
                    expected: multi_json(&expected),
                    actual: actual.as_ref().map(multi_json).map_err(Clone::clone),
                })
            }
        }
    }

    fn replay_stutters(&self, state: &Self::State) -> Vec<(String, Option<Mismatch>)> {
        let stutters = multi::stutters(self, state).into_iter();
        stutters
            .map(|stutter| {
                let mismatch = (!stutter.agrees()).then(|| Mismatch {
                    node: stutter.node,
                    expected: multi_json(&stutter.expected),
                    actual: stutter
                        .actual
                        .as_ref()
                        .map(multi_json)
                        .map_err(Clone::clone),
                });
                (format!("n{}: {}", stutter.node, stutter.label), mismatch)
            })
            .collect()
    }

    fn replay_starts(&self, init: &Self::State) -> Vec<(String, Option<Mismatch>)> {
        (0..self.cfg.replicas)
            .filter_map(|i| match multi::start(self, init, i) {
                multi::Pair::Replayed {
                    node,
                    expected,
                    actual,
                } => {
                    let mismatch = (actual.as_ref() != Ok(&expected)).then(|| Mismatch {
                        node,
                        expected: multi_json(&expected),
                        actual: actual.as_ref().map(multi_json).map_err(Clone::clone),
                    });
                    Some((format!("n{node}: first start"), mismatch))
                }
                multi::Pair::Client | multi::Pair::NoStep => None,
            })
            .collect()
    }
}

/// One field on which the model and the implementation differ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// A path into the outcome: `state.promised.round`, `sends`, `persisted.accepted[1]`.
    pub field: String,
    /// The model's value (`null` where the field is absent).
    pub expected: Value,
    /// The implementation's value (`null` where the field is absent).
    pub actual: Value,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: model {} | implementation {}",
            self.field, self.expected, self.actual
        )
    }
}

/// The leaves on which two JSON values differ. Objects are compared key by key and arrays of
/// equal length element by element; anything else that differs is one difference (so two
/// `sends` lists of different lengths are shown whole).
pub fn field_diff(expected: &Value, actual: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    diff_into("", expected, actual, &mut out);
    out
}

fn diff_into(path: &str, expected: &Value, actual: &Value, out: &mut Vec<FieldDiff>) {
    if expected == actual {
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let (e, a) = (
                    e.get(key).unwrap_or(&Value::Null),
                    a.get(key).unwrap_or(&Value::Null),
                );
                diff_into(&sub, e, a, out);
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                diff_into(&format!("{path}[{i}]"), e, a, out);
            }
        }
        _ => out.push(FieldDiff {
            field: if path.is_empty() { "." } else { path }.to_string(),
            expected: expected.clone(),
            actual: actual.clone(),
        }),
    }
}

/// A divergence as trace files record it (the `divergence` object of a paxos-trace/2 file):
/// the step of the trace whose replay diverged, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DivergenceRecord {
    /// Always [`DIVERGENCE_FORMAT`].
    pub format: String,
    /// The 1-based index of the trace step whose replay diverged.
    pub step: usize,
    /// The actor index of the node that stepped.
    pub node: usize,
    /// The step's action, as in the trace.
    pub action: Value,
    /// The step in words (the trace step's description).
    pub description: String,
    /// What the model's node did: its state after the step, its sends (a sorted multiset),
    /// and, by variant, what it persisted and its timers.
    pub expected: Value,
    /// What the implementation's node did, in the same form; absent when it has no model
    /// image (see `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
    /// Why the implementation's result cannot be compared (a panic, a value beyond the
    /// model's bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The fields that differ, as paths into `expected` and `actual`.
    pub differences: Vec<FieldDiff>,
}

impl DivergenceRecord {
    pub fn new(step: usize, action: Value, description: String, mismatch: &Mismatch) -> Self {
        let (actual, error) = match &mismatch.actual {
            Ok(actual) => (Some(actual.clone()), None),
            Err(why) => (None, Some(why.clone())),
        };
        DivergenceRecord {
            format: DIVERGENCE_FORMAT.to_string(),
            step,
            node: mismatch.node,
            action,
            description,
            expected: mismatch.expected.clone(),
            actual,
            error,
            differences: mismatch.differences(),
        }
    }

    /// The names of the outcome's top-level parts that differ: `state`, `sends`, ….
    pub fn parts(&self) -> Vec<String> {
        let mut parts: Vec<String> = self
            .differences
            .iter()
            .map(|d| {
                let end = d.field.find(['.', '[']).unwrap_or(d.field.len());
                d.field[..end].to_string()
            })
            .collect();
        parts.dedup();
        parts
    }
}

impl fmt::Display for DivergenceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "step {}, node n{}: {}",
            self.step, self.node, self.action
        )?;
        writeln!(f, "  {}", self.description)?;
        if let Some(why) = &self.error {
            writeln!(f, "  implementation: {why}")?;
            writeln!(f, "  model: {}", self.expected)?;
        }
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_diff_names_the_leaves_that_differ() {
        let expected = json!({"state": {"round": 1, "votes": [1, 2]}, "sends": [1], "t": true});
        let actual = json!({"state": {"round": 2, "votes": [1, 3]}, "sends": [], "t": true});
        let fields: Vec<String> = field_diff(&expected, &actual)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(fields, ["sends", "state.round", "state.votes[1]"]);
        assert!(field_diff(&expected, &expected).is_empty());
    }

    #[test]
    fn a_record_lists_the_parts_that_differ() {
        let mismatch = Mismatch {
            node: 2,
            expected: json!({"state": {"a": 1, "b": 1}, "sends": []}),
            actual: Ok(json!({"state": {"a": 2, "b": 2}, "sends": [0]})),
        };
        let record = DivergenceRecord::new(3, json!("x"), "d".into(), &mismatch);
        assert_eq!(record.parts(), ["sends", "state"]);
        assert_eq!(record.differences.len(), 3);
        let text = record.to_string();
        assert!(
            text.contains("state.a: model 1 | implementation 2"),
            "{text}"
        );
    }
}
