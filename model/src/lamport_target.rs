//! The `lamport` variant as a [`CheckTarget`] of the runner.

use crate::lamport::{LamportAction, LamportModel, LamportState};
use crate::runner::{CheckTarget, SymmetryFn};

impl CheckTarget for LamportModel {
    fn variant(&self) -> &'static str {
        "lamport"
    }

    fn config_json(&self) -> serde_json::Value {
        LamportModel::config_json(self)
    }

    fn state_json(&self, state: &LamportState) -> serde_json::Value {
        LamportModel::state_json(self, state)
    }

    fn action_json(&self, action: &LamportAction) -> serde_json::Value {
        LamportModel::action_json(self, action)
    }

    fn describe_step(
        &self,
        prev: &LamportState,
        action: &LamportAction,
        next: &LamportState,
    ) -> String {
        LamportModel::describe_step(self, prev, action, next)
    }

    /// None: the comparison with TLC counts states without symmetry reduction.
    fn symmetry(&self) -> Option<SymmetryFn<LamportState>> {
        None
    }
}
