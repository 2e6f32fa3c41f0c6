//! Runs the checker on any of the crate's models and reports like a CI tool: progress lines, a
//! summary with one verdict per property, `--json`, counterexample traces, and the web explorer.

use std::fmt::Debug;
use std::hash::Hash;

use stateright::Model;

/// What the runner needs from a model beyond [`stateright::Model`].
pub trait CheckTarget: Model + Clone + Send + Sync + 'static
where
    Self::State: Clone + Debug + Hash + Eq + Send + Sync + 'static,
    Self::Action: Clone + Debug + PartialEq + Send + Sync + 'static,
{
    /// The variant's name on the command line and in traces: `synod`, `multi`, `lamport`.
    fn variant(&self) -> &'static str;
    /// The configuration, as written into summaries and trace files.
    fn config_json(&self) -> serde_json::Value;
    /// A state as written into trace files (complete: conformance replays from it).
    fn state_json(&self, state: &Self::State) -> serde_json::Value;
    /// An action as written into trace files.
    fn action_json(&self, action: &Self::Action) -> serde_json::Value;
    /// One readable line for a step: who received what, and what changed.
    fn describe_step(&self, prev: &Self::State, action: &Self::Action, next: &Self::State)
        -> String;
    /// The canonical representative of a state's symmetry class, when reduction is sound.
    fn symmetry(&self) -> Option<fn(&Self::State) -> Self::State>;
}
