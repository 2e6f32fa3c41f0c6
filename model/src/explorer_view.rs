//! A readable face for stateright's web explorer.
//!
//! The explorer shows a state as its `{:#?}` text, and stateright's `ActorModelState` prints
//! every internal field, empty random-choice maps and timer wrappers included. [`Readable`]
//! wraps a model without changing its behaviour (same actions in the same order, so
//! counterexample paths found on the inner model open unchanged) and prints a state as a
//! Paxos reader wants it: one line per node, the messages in flight, durable storage, timers
//! and the ghost history.
//!
//! The explorer only marks a property as violated once its own checker has found it (after
//! "Run to completion"), so a counterexample opened by URL would show every property as
//! "Searching". Each step's view therefore starts with the verdict of every property on that
//! state, evaluated on the spot, and with one sentence saying what the step did.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::hash::Hash;

use stateright::actor::{Actor, ActorModelAction, ActorModelState};
use stateright::{Expectation, Model, Path, Property};

use crate::runner::{CheckTarget, SymmetryFn};

/// States that know how to print themselves for a person.
pub trait ReadableState {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<A, H> ReadableState for ActorModelState<A, H>
where
    A: Actor,
    A::Msg: Ord,
    H: Debug,
{
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "nodes:")?;
        for (i, state) in self.actor_states.iter().enumerate() {
            let down = if self.crashed[i] { " (crashed)" } else { "" };
            // A replica's line has three parts (role, log, applied) separated by " | "; one
            // line each keeps the view narrow enough to read without wrapping.
            let state = format!("{state:?}").replace(" | ", "\n      ");
            writeln!(f, "  n{i}{down}: {state}")?;
        }
        let mut in_flight: BTreeMap<(usize, usize, &A::Msg), usize> = BTreeMap::new();
        for env in self.network.iter_all() {
            *in_flight
                .entry((usize::from(env.src), usize::from(env.dst), env.msg))
                .or_default() += 1;
        }
        writeln!(f, "in flight ({}):", in_flight.values().sum::<usize>())?;
        for ((src, dst, msg), copies) in in_flight {
            let copies = if copies > 1 {
                format!(" ×{copies}")
            } else {
                String::new()
            };
            writeln!(f, "  n{src} → n{dst}: {msg:?}{copies}")?;
        }
        writeln!(f, "durable:")?;
        for (i, storage) in self.actor_storages.iter().enumerate() {
            if let Some(storage) = storage {
                writeln!(f, "  n{i}: {storage:?}")?;
            }
        }
        write!(f, "timers:")?;
        for (i, timers) in self.timers_set.iter().enumerate() {
            for timer in timers.iter() {
                write!(f, " n{i}:{timer:?}")?;
            }
        }
        writeln!(f)?;
        write!(f, "history: {:?}", self.history)
    }
}

/// Actions that know how to name themselves the way [`ReadableState`] names nodes and messages.
pub trait ReadableAction {
    fn render(&self) -> String;
}

impl<M: Debug, T: Debug, R: Debug> ReadableAction for ActorModelAction<M, T, R> {
    fn render(&self) -> String {
        let n = usize::from;
        match self {
            ActorModelAction::Deliver { src, dst, msg } => {
                format!("n{} → n{}: {msg:?}", n(*src), n(*dst))
            }
            ActorModelAction::Drop(env) => {
                format!("lose n{} → n{}: {:?}", n(env.src), n(env.dst), env.msg)
            }
            ActorModelAction::Timeout(id, timer) => format!("n{}: timer {timer:?}", n(*id)),
            ActorModelAction::Crash(id) => format!("n{} crashes", n(*id)),
            ActorModelAction::Recover(id) => format!("n{} recovers", n(*id)),
            ActorModelAction::SelectRandom { actor, random, .. } => {
                format!("n{} chooses {random:?}", n(*actor))
            }
        }
    }
}

/// A model state shown through [`ReadableState`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct View<S>(pub S);

impl<S: ReadableState> Debug for View<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render(f)
    }
}

/// `inner` with readable states; use it for `explore` only.
pub struct Readable<M: Model> {
    pub inner: M,
    /// The one state the explorer starts from instead of `inner`'s initial states: a state
    /// of a real run, around a step trace validation rejected
    /// (specs/proposals/rejection-traces.md).
    pub start: Option<M::State>,
}

impl<M: Model> Readable<M> {
    pub fn new(inner: M) -> Self {
        Readable { inner, start: None }
    }

    /// `inner`'s rules, from `start` on.
    pub fn starting_at(inner: M, start: M::State) -> Self {
        Readable {
            inner,
            start: Some(start),
        }
    }
}

impl<M: Model + Clone> Clone for Readable<M>
where
    M::State: Clone,
{
    fn clone(&self) -> Self {
        Readable {
            inner: self.inner.clone(),
            start: self.start.clone(),
        }
    }
}

/// Properties are plain `fn` pointers, so a wrapper cannot close over the inner ones: this
/// table has one monomorphised forwarder per property index instead.
fn forward<M: Model, const I: usize>(m: &Readable<M>, s: &View<M::State>) -> bool {
    (m.inner.properties()[I].condition)(&m.inner, &s.0)
}

/// How many properties [`Readable`] can forward (a `fn` pointer each, so a fixed table).
const MAX_PROPERTIES: usize = 32;

type Condition<M> = fn(&Readable<M>, &View<<M as Model>::State>) -> bool;

fn forwarders<M: Model>() -> [Condition<M>; MAX_PROPERTIES] {
    [
        forward::<M, 0>,
        forward::<M, 1>,
        forward::<M, 2>,
        forward::<M, 3>,
        forward::<M, 4>,
        forward::<M, 5>,
        forward::<M, 6>,
        forward::<M, 7>,
        forward::<M, 8>,
        forward::<M, 9>,
        forward::<M, 10>,
        forward::<M, 11>,
        forward::<M, 12>,
        forward::<M, 13>,
        forward::<M, 14>,
        forward::<M, 15>,
        forward::<M, 16>,
        forward::<M, 17>,
        forward::<M, 18>,
        forward::<M, 19>,
        forward::<M, 20>,
        forward::<M, 21>,
        forward::<M, 22>,
        forward::<M, 23>,
        forward::<M, 24>,
        forward::<M, 25>,
        forward::<M, 26>,
        forward::<M, 27>,
        forward::<M, 28>,
        forward::<M, 29>,
        forward::<M, 30>,
        forward::<M, 31>,
    ]
}

impl<M: CheckTarget> Readable<M> {
    /// One line per property that matters on `state`: the invariants it violates (or that all
    /// hold), and the `sometimes` properties it reaches.
    fn verdicts(&self, state: &M::State) -> String {
        let properties = self.inner.properties();
        let mut violated = Vec::new();
        let mut holding = 0;
        let mut reached = Vec::new();
        let mut unreached = Vec::new();
        for p in &properties {
            let holds = (p.condition)(&self.inner, state);
            match (&p.expectation, holds) {
                (Expectation::Always | Expectation::Eventually, true) => holding += 1,
                (Expectation::Always | Expectation::Eventually, false) => violated.push(p.name),
                (Expectation::Sometimes, true) => reached.push(p.name),
                (Expectation::Sometimes, false) => unreached.push(p.name),
            }
        }
        let mut out = String::new();
        if violated.is_empty() {
            out.push_str(&format!("✓ all {holding} invariants hold here\n"));
        } else {
            for name in &violated {
                out.push_str(&format!("✗ VIOLATED here: {name}\n"));
            }
            out.push_str(&format!("  ({holding} other invariants hold)\n"));
        }
        for name in reached {
            out.push_str(&format!("✓ reached here: {name}\n"));
        }
        for name in unreached {
            out.push_str(&format!("· not reached yet: {name}\n"));
        }
        out
    }
}

impl<M> Model for Readable<M>
where
    M: CheckTarget,
    M::State: ReadableState,
{
    type State = View<M::State>;
    type Action = M::Action;

    fn init_states(&self) -> Vec<Self::State> {
        match &self.start {
            Some(start) => vec![View(start.clone())],
            None => self.inner.init_states().into_iter().map(View).collect(),
        }
    }

    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>) {
        self.inner.actions(&state.0, actions)
    }

    fn next_state(&self, last: &Self::State, action: Self::Action) -> Option<Self::State> {
        self.inner.next_state(&last.0, action).map(View)
    }

    fn format_action(&self, action: &Self::Action) -> String {
        self.inner.action_label(action)
    }

    /// What the explorer shows for the state a step leads to: the verdicts, what happened,
    /// then the state.
    fn format_step(&self, last: &Self::State, action: Self::Action) -> Option<String> {
        let next = self.inner.next_state(&last.0, action.clone())?;
        Some(format!(
            "{}step: {}\n\n{:#?}",
            self.verdicts(&next),
            self.inner.describe_step(&last.0, &action, &next),
            View(next)
        ))
    }

    fn as_svg(&self, path: Path<Self::State, Self::Action>) -> Option<String> {
        // stateright draws a sequence diagram only for a path from the model's own initial
        // states (`Path::from_actions` checks it): none from a given start.
        if self.start.is_some() {
            return None;
        }
        let steps = path.into_vec();
        let init = steps.first()?.0 .0.clone();
        let actions: Vec<M::Action> = steps.into_iter().filter_map(|(_, a)| a).collect();
        self.inner
            .as_svg(Path::from_actions(&self.inner, init, &actions)?)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let inner = self.inner.properties();
        assert!(
            inner.len() <= MAX_PROPERTIES,
            "Readable forwards at most {MAX_PROPERTIES} properties"
        );
        inner
            .iter()
            .zip(forwarders::<M>())
            .map(|(p, condition)| Property {
                expectation: p.expectation.clone(),
                name: p.name,
                condition,
            })
            .collect()
    }

    fn within_boundary(&self, state: &Self::State) -> bool {
        self.inner.within_boundary(&state.0)
    }
}

impl<M> CheckTarget for Readable<M>
where
    M: CheckTarget,
    M::State: ReadableState,
{
    fn variant(&self) -> &'static str {
        self.inner.variant()
    }

    fn config_json(&self) -> serde_json::Value {
        self.inner.config_json()
    }

    fn state_json(&self, state: &Self::State) -> serde_json::Value {
        self.inner.state_json(&state.0)
    }

    fn action_json(&self, action: &Self::Action) -> serde_json::Value {
        self.inner.action_json(action)
    }

    fn describe_step(
        &self,
        prev: &Self::State,
        action: &Self::Action,
        next: &Self::State,
    ) -> String {
        self.inner.describe_step(&prev.0, action, &next.0)
    }

    fn action_label(&self, action: &Self::Action) -> String {
        self.inner.action_label(action)
    }

    /// None: the explorer's on-demand checker does not reduce by symmetry.
    fn symmetry(&self) -> Option<SymmetryFn<Self::State>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use stateright::{Checker, Model};

    use super::*;
    use crate::synod::{self, SynodBug, SynodConfig};

    #[test]
    fn wrapping_changes_no_verdict_and_no_state_count() {
        let cfg = SynodConfig {
            bug: Some(SynodBug::DefaultValue),
            ..SynodConfig::default()
        };
        let plain = synod::model(cfg.clone()).checker().spawn_bfs().join();
        let readable = Readable::new(synod::model(cfg))
            .checker()
            .spawn_bfs()
            .join();
        assert_eq!(plain.unique_state_count(), readable.unique_state_count());
        let mut a: Vec<_> = plain.discoveries().into_keys().collect();
        let mut b: Vec<_> = readable.discoveries().into_keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn a_state_reads_as_nodes_messages_and_storage() {
        let model = Readable::new(synod::model(SynodConfig::default()));
        let init = model.init_states().remove(0);
        let (_, next) = model.next_steps(&init).remove(0);
        let text = format!("{next:#?}");
        assert!(text.contains("n0: Proposer p0"), "{text}");
        assert!(text.contains("n2: Acceptor promised none"), "{text}");
        assert!(text.contains("in flight (3):"), "{text}");
        assert!(text.contains("→ n2: Prepare("), "{text}");
        assert!(!text.contains("RandomChoices"), "{text}");
    }

    #[test]
    fn a_replica_reads_as_role_log_and_applied_lines() {
        let model = Readable::new(crate::multi::model(crate::multi::MultiConfig::default()));
        let init = model.init_states().remove(0);
        let text = format!("{init:#?}");
        assert!(text.contains("  n0: Replica "), "{text}");
        assert!(text.contains("\n      round "), "{text}");
        assert!(text.contains("\n      applied [] executed []"), "{text}");
        assert!(!text.contains(" | "), "{text}");
    }

    /// Follows the shortest path to `bug`'s violation of Validity and returns the explorer's
    /// label for each step and its view of the last state.
    fn walk_to_violation(bug: SynodBug) -> (Vec<String>, Vec<String>) {
        let cfg = SynodConfig {
            bug: Some(bug),
            ..SynodConfig::default()
        };
        let model = Readable::new(synod::model(cfg));
        let opts = crate::runner::CheckOptions {
            strategy: crate::runner::Strategy::Bfs,
            threads: 1,
            symmetry: false,
            ..Default::default()
        };
        let found = crate::runner::find_discovery(model.inner.clone(), &opts, "Validity")
            .expect("a run")
            .expect("a counterexample");
        let mut indices = found.explorer_path.split('/').map(|i| i.parse::<usize>());
        let init = indices.next().expect("an init index").expect("a number");
        let mut state = model.init_states().swap_remove(init);
        let mut labels = Vec::new();
        let mut views = Vec::new();
        for index in indices {
            let mut actions = Vec::new();
            model.actions(&state, &mut actions);
            let action = actions.swap_remove(index.expect("a number"));
            labels.push(model.format_action(&action));
            views.push(model.format_step(&state, action.clone()).expect("a step"));
            state = model.next_state(&state, action).expect("an enabled action");
        }
        (labels, views)
    }

    #[test]
    fn a_step_names_its_nodes_and_shows_the_verdicts_on_its_state() {
        let (labels, views) = walk_to_violation(SynodBug::DefaultValue);
        assert_eq!(labels[0], "n0: timer Retry", "{labels:?}");
        assert!(
            labels.contains(&"n0 → n2: Prepare(1.0)".to_string()),
            "{labels:?}"
        );
        let (last, earlier) = views.split_last().expect("steps");
        assert!(last.starts_with("✗ VIOLATED here: Validity\n"), "{last}");
        assert!(last.contains("step: n"), "{last}");
        for view in earlier {
            assert!(view.starts_with("✓ all 8 invariants hold here"), "{view}");
            assert!(!view.contains("VIOLATED"), "{view}");
        }
    }
}
