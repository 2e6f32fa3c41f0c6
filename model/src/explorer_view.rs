//! A readable face for stateright's web explorer.
//!
//! The explorer shows a state as its `{:#?}` text, and stateright's `ActorModelState` prints
//! every internal field, empty random-choice maps and timer wrappers included. [`Readable`]
//! wraps a model without changing its behaviour (same actions in the same order, so
//! counterexample paths found on the inner model open unchanged) and prints a state as a
//! Paxos reader wants it: one line per node, the messages in flight, durable storage, timers
//! and the ghost history.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::hash::Hash;

use stateright::actor::{Actor, ActorModelState};
use stateright::{Model, Path, Property};

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
            writeln!(f, "  n{i}{down}: {state:?}")?;
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

/// A model state shown through [`ReadableState`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct View<S>(pub S);

impl<S: ReadableState> Debug for View<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render(f)
    }
}

/// `inner` with readable states; use it for `explore` only.
#[derive(Clone)]
pub struct Readable<M> {
    pub inner: M,
}

/// Properties are plain `fn` pointers, so a wrapper cannot close over the inner ones: this
/// table has one monomorphised forwarder per property index instead.
fn forward<M: Model, const I: usize>(m: &Readable<M>, s: &View<M::State>) -> bool {
    (m.inner.properties()[I].condition)(&m.inner, &s.0)
}

type Condition<M> = fn(&Readable<M>, &View<<M as Model>::State>) -> bool;

fn forwarders<M: Model>() -> [Condition<M>; 16] {
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
    ]
}

impl<M> Model for Readable<M>
where
    M: Model,
    M::State: Clone + PartialEq,
    M::Action: Clone + PartialEq + Debug,
{
    type State = View<M::State>;
    type Action = M::Action;

    fn init_states(&self) -> Vec<Self::State> {
        self.inner.init_states().into_iter().map(View).collect()
    }

    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>) {
        self.inner.actions(&state.0, actions)
    }

    fn next_state(&self, last: &Self::State, action: Self::Action) -> Option<Self::State> {
        self.inner.next_state(&last.0, action).map(View)
    }

    fn format_action(&self, action: &Self::Action) -> String {
        self.inner.format_action(action)
    }

    fn as_svg(&self, path: Path<Self::State, Self::Action>) -> Option<String> {
        let steps = path.into_vec();
        let init = steps.first()?.0 .0.clone();
        let actions: Vec<M::Action> = steps.into_iter().filter_map(|(_, a)| a).collect();
        self.inner
            .as_svg(Path::from_actions(&self.inner, init, &actions)?)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let inner = self.inner.properties();
        assert!(inner.len() <= 16, "Readable forwards at most 16 properties");
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
        let readable = Readable {
            inner: synod::model(cfg),
        }
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
        let model = Readable {
            inner: synod::model(SynodConfig::default()),
        };
        let init = model.init_states().remove(0);
        let (_, next) = model.next_steps(&init).remove(0);
        let text = format!("{next:#?}");
        assert!(text.contains("n0: Proposer p0"), "{text}");
        assert!(text.contains("n2: Acceptor promised none"), "{text}");
        assert!(text.contains("in flight (3):"), "{text}");
        assert!(text.contains("→ n2: Prepare("), "{text}");
        assert!(!text.contains("RandomChoices"), "{text}");
    }
}
