//! The exhaustive check behind `paxos-conform check`: every reachable model state (within the
//! model's boundary, no symmetry reduction) and every action enabled in it, each node step
//! replayed on the implementation ([`Conformance::replay_pair`]); and, for each divergence,
//! the shortest trace that reaches it.
//!
//! The search is depth-first with a visited set of 128-bit fingerprints: a breadth-first queue
//! would hold a whole level of states (gigabytes at the default Multi-Paxos configuration).
//! It is the one exhaustive driver: the unit tests, the power tests and the CLI all run it. Depth-first paths are long
//! and arbitrary, so a divergence report does not use them. When something diverged,
//! [`shortest_divergences`] runs a second, breadth-first search from the initial states that
//! replays every pair as it goes, keeps one parent pointer (fingerprint and action) per state,
//! and stops at the N-th divergence, N being the number the first search found: its traces are
//! the shortest traces to any divergence. They may show a shallower divergence than the one
//! the depth-first search met first, never a deeper one, and the search stops at the depth of
//! the shallowest divergences, which is small for the bugs seen so far (6 to 12 steps).
//! [`shortest_paths`] finds shortest paths to given states instead.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use paxos_model::runner::ExpectationKind;
use stateright::Model;

use crate::conform::{Conformance, Mismatch, PairResult};

/// Counters of a check, as the progress line and the summary show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Reachable model states visited.
    pub states: usize,
    /// Enabled (state, action) pairs visited.
    pub pairs: usize,
    /// Pairs whose node step was replayed on the implementation and compared.
    pub replayed: usize,
    /// Pairs in which no node steps (lost messages, crashes, deliveries to crashed nodes).
    pub no_step: usize,
    /// Pairs of client actors, which have no implementation counterpart.
    pub client: usize,
    /// Implementation steps the model takes as stuttering steps, replayed in every state
    /// ([`Conformance::replay_stutters`]).
    pub stutters: usize,
    /// Nodes' first starts, which build the initial states and no action takes, replayed
    /// ([`Conformance::replay_starts`]).
    pub starts: usize,
    pub divergences: usize,
}

/// A divergent pair: the model state, the action taken in it, and the disagreement.
pub struct Found<M: Model> {
    pub state: M::State,
    pub action: M::Action,
    pub mismatch: Mismatch,
}

/// A stuttering step that diverged: the model state it was replayed in, and what stepped.
pub struct StutterFound<M: Model> {
    pub state: M::State,
    pub label: String,
    pub mismatch: Mismatch,
}

/// The result of [`check`].
pub struct Outcome<M: Model> {
    pub counts: Counts,
    /// How far the search went.
    pub reach: Reach,
    /// The model's scenario witnesses (`paxos_model::runner::ExpectationKind::Witness`) in the model's
    /// order, each with whether a visited state reached it.
    pub witnesses: Vec<(&'static str, bool)>,
    pub elapsed: Duration,
    pub found: Vec<Found<M>>,
    pub stutters_found: Vec<StutterFound<M>>,
}

impl<M: Model> Outcome<M> {
    /// Whether every reachable pair was visited (not when stopped at `max_divergences` or cut
    /// by a depth bound).
    pub fn complete(&self) -> bool {
        self.reach == Reach::Complete
    }

    /// Every divergence found, the pairs' first: what stepped (`n1 on <action>`, or a stuttering
    /// step's label) and the mismatch.
    pub fn divergences(&self) -> Vec<(String, &Mismatch)>
    where
        M::Action: std::fmt::Debug,
    {
        let pairs = self.found.iter().map(|f| {
            let what = format!("n{} on {:?}", f.mismatch.node, f.action);
            (what, &f.mismatch)
        });
        let stutters = self
            .stutters_found
            .iter()
            .map(|f| (f.label.clone(), &f.mismatch));
        pairs.chain(stutters).collect()
    }

    /// The first divergence, described for a test's failure message.
    pub fn first_divergence(&self) -> Option<String>
    where
        M::Action: std::fmt::Debug,
    {
        let divergences = self.divergences();
        let (what, mismatch) = divergences.first()?;
        Some(format!(
            "{what}: differs in {:?}\n  expected (model): {}\n  actual (impl):    {:?}",
            mismatch
                .differences()
                .iter()
                .map(|d| d.field.as_str())
                .collect::<Vec<_>>(),
            mismatch.expected,
            mismatch.actual
        ))
    }
}

/// [`check`] without progress reports: for tests, and callers that only want the outcome.
pub fn check_all<M: Conformance>(model: &M, max_divergences: usize) -> Outcome<M> {
    check(model, max_divergences, None, Duration::MAX, |_, _| {})
}

/// A 128-bit fingerprint of a state: the visited sets keep these, not the states.
pub fn fingerprint<S: Hash>(state: &S) -> u128 {
    let half = |salt: u64| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        state.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// What [`explore`] shows its visitor.
pub enum Visit<'a, M: Model> {
    /// A reachable state within the boundary, before its actions.
    State(&'a M::State),
    /// An enabled action of `state`, and the state it leads to (`None`: the action changes
    /// nothing).
    Pair {
        state: &'a M::State,
        action: &'a M::Action,
        next: Option<&'a M::State>,
    },
}

/// How far [`explore`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every reachable state within the model's boundary was visited.
    Complete,
    /// Every state within the depth bound was visited, and some beyond it were not.
    Bounded,
    /// The visitor stopped the search.
    Stopped,
}

/// The one exhaustive search every check uses: each reachable state within the model's
/// boundary once (no symmetry reduction) and each action enabled in it, depth first with a
/// visited set of fingerprints (see the module notes). With a `depth` bound (stateright's
/// convention: the initial states are depth 1, states at depth `depth` or deeper are not
/// visited) the search is breadth first, so that a state is visited at its shallowest depth
/// and the bounded space is covered whole; the bound is for targeted configurations whose
/// scenario lies within a few steps of the start. `visit` stops the search by returning
/// `ControlFlow::Break`.
pub fn explore<M: Model>(
    model: &M,
    depth: Option<usize>,
    mut visit: impl FnMut(Visit<'_, M>) -> ControlFlow<()>,
) -> Reach
where
    M::State: Hash,
    M::Action: Clone,
{
    let mut seen: HashSet<u128> = HashSet::new();
    // Depth-first pops the back, breadth-first the front; each entry carries its depth.
    let mut pending: VecDeque<(M::State, usize)> = VecDeque::new();
    for init in model.init_states() {
        if model.within_boundary(&init) && seen.insert(fingerprint(&init)) {
            pending.push_back((init, 1));
        }
    }
    let mut cut = false;
    let mut actions = Vec::new();
    loop {
        let next_entry = match depth {
            None => pending.pop_back(),
            Some(_) => pending.pop_front(),
        };
        let Some((state, state_depth)) = next_entry else {
            break;
        };
        if depth.is_some_and(|bound| state_depth >= bound) {
            cut = true;
            continue;
        }
        if visit(Visit::State(&state)).is_break() {
            return Reach::Stopped;
        }
        actions.clear();
        model.actions(&state, &mut actions);
        for action in actions.drain(..) {
            let next = model.next_state(&state, action.clone());
            let pair = Visit::Pair {
                state: &state,
                action: &action,
                next: next.as_ref(),
            };
            if visit(pair).is_break() {
                return Reach::Stopped;
            }
            let Some(next) = next else { continue };
            if model.within_boundary(&next) && seen.insert(fingerprint(&next)) {
                pending.push_back((next, state_depth + 1));
            }
        }
    }
    if cut {
        Reach::Bounded
    } else {
        Reach::Complete
    }
}

/// Visits every reachable (state, action) pair of `model` (within `depth`, see [`explore`])
/// and replays its node step on the implementation, stopping after `max_divergences`
/// divergences (at least one); notes which of the model's scenario witnesses the visited
/// states reach. Calls `progress` about every `every`.
pub fn check<M: Conformance>(
    model: &M,
    max_divergences: usize,
    depth: Option<usize>,
    every: Duration,
    mut progress: impl FnMut(&Counts, Duration),
) -> Outcome<M> {
    let start = Instant::now();
    let mut next_report = every;
    let mut counts = Counts::default();
    let mut found = Vec::new();
    let mut stutters_found = Vec::new();
    let max_divergences = max_divergences.max(1);
    let witnesses: Vec<_> = model
        .properties()
        .into_iter()
        .filter(|p| ExpectationKind::of(p) == ExpectationKind::Witness)
        .collect();
    let mut reached = vec![false; witnesses.len()];
    // The nodes' first starts, which build the initial states and no action takes.
    for init in model.init_states() {
        for (label, mismatch) in model.replay_starts(&init) {
            counts.starts += 1;
            let Some(mismatch) = mismatch else { continue };
            counts.divergences += 1;
            stutters_found.push(StutterFound {
                state: init.clone(),
                label,
                mismatch,
            });
        }
    }
    if stutters_found.len() >= max_divergences {
        return Outcome {
            counts,
            reach: Reach::Stopped,
            witnesses: witnesses.iter().map(|w| (w.name, false)).collect(),
            elapsed: start.elapsed(),
            found,
            stutters_found,
        };
    }
    let reach = explore(model, depth, |visit| {
        let (state, action, next) = match visit {
            Visit::State(state) => {
                counts.states += 1;
                for (witness, reached) in witnesses.iter().zip(reached.iter_mut()) {
                    *reached = *reached || (witness.condition)(model, state);
                }
                for (label, mismatch) in model.replay_stutters(state) {
                    counts.stutters += 1;
                    let Some(mismatch) = mismatch else { continue };
                    counts.divergences += 1;
                    stutters_found.push(StutterFound {
                        state: state.clone(),
                        label,
                        mismatch,
                    });
                    if found.len() + stutters_found.len() >= max_divergences {
                        return ControlFlow::Break(());
                    }
                }
                if counts.states % 1024 == 0 && start.elapsed() >= next_report {
                    progress(&counts, start.elapsed());
                    next_report += every;
                }
                return ControlFlow::Continue(());
            }
            Visit::Pair {
                state,
                action,
                next,
            } => (state, action, next),
        };
        counts.pairs += 1;
        match model.replay_pair(state, action, next.unwrap_or(state)) {
            PairResult::Agrees => counts.replayed += 1,
            PairResult::NoStep => counts.no_step += 1,
            PairResult::Client => counts.client += 1,
            PairResult::Diverges(mismatch) => {
                counts.replayed += 1;
                counts.divergences += 1;
                found.push(Found {
                    state: state.clone(),
                    action: action.clone(),
                    mismatch,
                });
                if found.len() + stutters_found.len() >= max_divergences {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    Outcome {
        counts,
        reach,
        witnesses: witnesses.iter().map(|w| w.name).zip(reached).collect(),
        elapsed: start.elapsed(),
        found,
        stutters_found,
    }
}

/// A divergence at the end of a shortest path.
pub struct ShortestDivergence<M: Model> {
    /// The initial state the path starts in.
    pub init: M::State,
    /// The actions taken; the last one diverges.
    pub actions: Vec<M::Action>,
    pub mismatch: Mismatch,
}

/// Breadth-first parent pointers: each visited state's parent (its fingerprint and the action
/// from it), `None` for initial states, which are kept in `roots`.
struct Parents<M: Model> {
    parents: HashMap<u128, Option<(u128, M::Action)>>,
    roots: HashMap<u128, M::State>,
}

impl<M: Model> Parents<M>
where
    M::State: Hash + Clone,
    M::Action: Clone,
{
    /// The within-boundary initial states, recorded as roots, with their fingerprints.
    fn new(model: &M) -> (Self, VecDeque<(u128, M::State)>) {
        let mut this = Parents {
            parents: HashMap::new(),
            roots: HashMap::new(),
        };
        let mut queue = VecDeque::new();
        for init in model.init_states() {
            let fp = fingerprint(&init);
            if model.within_boundary(&init) && !this.parents.contains_key(&fp) {
                this.parents.insert(fp, None);
                this.roots.insert(fp, init.clone());
                queue.push_back((fp, init));
            }
        }
        (this, queue)
    }

    /// Records `next` as reached from `parent` by `action`; false if it was reached before.
    fn visit(&mut self, next: u128, parent: u128, action: &M::Action) -> bool {
        if self.parents.contains_key(&next) {
            return false;
        }
        self.parents.insert(next, Some((parent, action.clone())));
        true
    }

    /// The path to a visited state: its initial state and the actions from there.
    fn path_to(&self, mut fp: u128) -> Option<Walk<M>> {
        let mut path = Vec::new();
        while let Some((parent, action)) = self.parents.get(&fp)? {
            path.push(action.clone());
            fp = *parent;
        }
        path.reverse();
        Some((self.roots.get(&fp)?.clone(), path))
    }
}

/// The first `n` divergences a breadth-first search meets (see the module notes): each at the
/// end of a shortest path from an initial state. Fewer when there are fewer.
pub fn shortest_divergences<M: Conformance>(model: &M, n: usize) -> Vec<ShortestDivergence<M>> {
    let (mut parents, mut queue) = Parents::new(model);
    let mut found = Vec::new();
    let mut actions = Vec::new();
    while let Some((fp, state)) = queue.pop_front() {
        actions.clear();
        model.actions(&state, &mut actions);
        for action in actions.drain(..) {
            let next = model.next_state(&state, action.clone());
            let pair = model.replay_pair(&state, &action, next.as_ref().unwrap_or(&state));
            if let PairResult::Diverges(mismatch) = pair {
                if let Some((init, mut path)) = parents.path_to(fp) {
                    path.push(action.clone());
                    found.push(ShortestDivergence {
                        init,
                        actions: path,
                        mismatch,
                    });
                    if found.len() >= n {
                        return found;
                    }
                }
            }
            let Some(next) = next else { continue };
            let next_fp = fingerprint(&next);
            if model.within_boundary(&next) && parents.visit(next_fp, fp, &action) {
                queue.push_back((next_fp, next));
            }
        }
    }
    found
}

/// A path from an initial state: that state and the actions taken from it.
pub type Walk<M> = (<M as Model>::State, Vec<<M as Model>::Action>);

/// For each target state, a shortest path to it from an initial state (`None` if it is not
/// reachable within the boundary). Breadth-first, keeping a parent pointer per state; ends as
/// soon as every target is reached.
pub fn shortest_paths<M: Model>(model: &M, targets: &[M::State]) -> Vec<Option<Walk<M>>>
where
    M::State: Hash + Clone,
    M::Action: Clone,
{
    let wanted: HashSet<u128> = targets.iter().map(fingerprint).collect();
    let (mut parents, mut queue) = Parents::new(model);
    let mut remaining = wanted
        .iter()
        .filter(|fp| !parents.parents.contains_key(fp))
        .count();
    let mut actions = Vec::new();
    while remaining > 0 {
        let Some((fp, state)) = queue.pop_front() else {
            break;
        };
        actions.clear();
        model.actions(&state, &mut actions);
        for action in actions.drain(..) {
            let Some(next) = model.next_state(&state, action.clone()) else {
                continue;
            };
            let next_fp = fingerprint(&next);
            if model.within_boundary(&next) && parents.visit(next_fp, fp, &action) {
                if wanted.contains(&next_fp) {
                    remaining -= 1;
                }
                queue.push_back((next_fp, next));
            }
        }
    }
    targets
        .iter()
        .map(|target| parents.path_to(fingerprint(target)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use paxos_model::multi::{self, MultiConfig};
    use paxos_model::synod::{self, SynodBug, SynodConfig};

    use super::*;

    /// The driver's counts add up: every enabled pair is replayed, without a node step, or a
    /// client's, and the stuttering steps are replayed where leaders are (none in Synod).
    #[test]
    fn the_counts_add_up() {
        let outcome = check_all(&synod::model(SynodConfig::default()), 1);
        assert!(outcome.complete() && outcome.found.is_empty());
        assert_eq!(
            outcome.counts.pairs,
            outcome.counts.replayed + outcome.counts.no_step + outcome.counts.client
        );
        assert_eq!(outcome.counts.stutters, 0);
        // No election, so that crashes and client retries stay cheap (4,904 states).
        let cfg = MultiConfig {
            max_round: 1,
            elections: 0,
            retries: 1,
            crashes: 1,
            ..MultiConfig::default()
        };
        let outcome = check_all(&multi::model(cfg), 1);
        assert!(outcome.complete() && outcome.divergences().is_empty());
        let c = outcome.counts;
        assert_eq!(c.pairs, c.replayed + c.no_step + c.client);
        assert!(c.no_step > 0 && c.client > 0 && c.stutters > 0);
        assert_eq!(c.starts, 3, "each replica's first start");
    }

    /// The breadth-first report finds a divergence no deeper than the depth-first one, and
    /// its path replays to a state where the same pair diverges.
    #[test]
    fn shortest_divergences_are_no_longer_than_the_paths_to_found_ones() {
        let model = multi::model(MultiConfig {
            bug: Some(paxos_model::multi::MultiBug::ApplyOutOfOrder),
            ..MultiConfig::default()
        });
        let outcome = check(&model, 1, None, Duration::MAX, |_, _| {});
        let to_found = shortest_paths(&model, std::slice::from_ref(&outcome.found[0].state));
        let (_, to_found) = to_found[0].clone().unwrap();
        let shortest = shortest_divergences(&model, 1);
        let d = &shortest[0];
        assert!(d.actions.len() <= to_found.len() + 1);
        let mut state = d.init.clone();
        let (last, prefix) = d.actions.split_last().unwrap();
        for action in prefix {
            state = model.next_state(&state, action.clone()).unwrap();
        }
        let next = model
            .next_state(&state, last.clone())
            .unwrap_or(state.clone());
        assert!(matches!(
            model.replay_pair(&state, last, &next),
            PairResult::Diverges(_)
        ));
    }

    #[test]
    fn shortest_paths_lead_to_their_targets_and_are_shortest() {
        let model = synod::model(SynodConfig {
            bug: Some(SynodBug::DefaultValue),
            ..SynodConfig::default()
        });
        let outcome = check(&model, 1, None, Duration::MAX, |_, _| {});
        let found = &outcome.found[0];
        let paths = shortest_paths(&model, std::slice::from_ref(&found.state));
        let (init, actions) = paths[0].clone().unwrap();
        let mut state = init;
        for action in &actions {
            state = model.next_state(&state, action.clone()).unwrap();
        }
        assert_eq!(state, found.state);
        // No state is reachable in fewer steps than its BFS depth: check against a plain
        // level-by-level search.
        let mut level = model.init_states();
        let mut seen: HashSet<_> = level.iter().cloned().collect();
        let mut depth = 0;
        while !level.contains(&found.state) {
            depth += 1;
            let mut next_level = Vec::new();
            for s in &level {
                for (_, n) in model.next_steps(s) {
                    if seen.insert(n.clone()) {
                        next_level.push(n);
                    }
                }
            }
            level = next_level;
        }
        assert_eq!(actions.len(), depth);
    }
}
