//! The replicated state machine the log drives (M9): a trait the service plugs its key-value
//! store into and conformance plugs a recorder into, plus both.
//!
//! The replica applies each chosen command at most once, in slot order; deduplication of
//! retried requests happens in the replica's client table, before the state machine sees them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::types::Command;

/// A deterministic state machine: the same commands in the same order give the same outputs.
pub trait StateMachine {
    type Op: Clone + fmt::Debug + PartialEq;
    type Output: Clone + fmt::Debug + PartialEq;
    /// The whole state, for snapshots: what K1 saves and K4 installs.
    type Snapshot: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;

    /// Executes one command. Must not panic on any operation a client can send.
    fn apply(&mut self, command: &Command<Self::Op>) -> Self::Output;

    /// Answers `op` without changing anything, for a read that goes through no slot (Q4):
    /// what [`StateMachine::apply`] would answer now, for an operation that changes nothing.
    /// `None` for an operation that changes the state: that one must go through the log.
    fn query(&self, op: &Self::Op) -> Option<Self::Output>;

    fn snapshot(&self) -> Self::Snapshot;

    /// Replaces the whole state by `snapshot`.
    fn restore(&mut self, snapshot: Self::Snapshot);
}

/// An operation on [`KvStore`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Compare and swap: if the key's value is `expected` (`None`: absent), set it to `new`
    /// (`None`: delete it).
    Cas {
        key: String,
        expected: Option<String>,
        new: Option<String>,
    },
}

/// The result of a [`KvOp`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOutput {
    /// Get: the current value; Put and Delete: the value before.
    Value(Option<String>),
    /// Cas: whether it swapped, and the value before.
    Cas {
        swapped: bool,
        previous: Option<String>,
    },
}

/// A small in-memory key-value store: the service's state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    pub data: BTreeMap<String, String>,
}

impl KvStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one operation (what [`StateMachine::apply`] does without the command wrapper).
    pub fn execute(&mut self, op: &KvOp) -> KvOutput {
        match op {
            KvOp::Get { key } => KvOutput::Value(self.data.get(key).cloned()),
            KvOp::Put { key, value } => {
                KvOutput::Value(self.data.insert(key.clone(), value.clone()))
            }
            KvOp::Delete { key } => KvOutput::Value(self.data.remove(key)),
            KvOp::Cas { key, expected, new } => {
                let previous = self.data.get(key).cloned();
                let swapped = previous == *expected;
                if swapped {
                    match new {
                        Some(value) => self.data.insert(key.clone(), value.clone()),
                        None => self.data.remove(key),
                    };
                }
                KvOutput::Cas { swapped, previous }
            }
        }
    }
}

impl StateMachine for KvStore {
    type Op = KvOp;
    type Output = KvOutput;
    type Snapshot = BTreeMap<String, String>;

    fn apply(&mut self, command: &Command<KvOp>) -> KvOutput {
        self.execute(&command.op)
    }

    fn query(&self, op: &KvOp) -> Option<KvOutput> {
        match op {
            KvOp::Get { key } => Some(KvOutput::Value(self.data.get(key).cloned())),
            KvOp::Put { .. } | KvOp::Delete { .. } | KvOp::Cas { .. } => None,
        }
    }

    fn snapshot(&self) -> Self::Snapshot {
        self.data.clone()
    }

    fn restore(&mut self, snapshot: Self::Snapshot) {
        self.data = snapshot;
    }
}

/// A state machine that records every command it executes, in order; its output is the
/// command's position in that sequence. For conformance and the simulation tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorder<Op> {
    pub executed: Vec<Command<Op>>,
}

impl<Op> Default for Recorder<Op> {
    fn default() -> Self {
        Recorder {
            executed: Vec::new(),
        }
    }
}

impl<Op> StateMachine for Recorder<Op>
where
    Op: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned,
{
    type Op = Op;
    type Output = u64;
    type Snapshot = Vec<Command<Op>>;

    fn apply(&mut self, command: &Command<Op>) -> u64 {
        self.executed.push(command.clone());
        self.executed.len() as u64 - 1
    }

    /// Any operation reads how many commands were executed: the length of the log prefix
    /// the state is after, which is what a read's answer is to the model.
    fn query(&self, _op: &Op) -> Option<u64> {
        Some(self.executed.len() as u64)
    }

    fn snapshot(&self) -> Self::Snapshot {
        self.executed.clone()
    }

    fn restore(&mut self, snapshot: Self::Snapshot) {
        self.executed = snapshot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi::types::ClientId;

    fn s(text: &str) -> String {
        text.to_string()
    }

    #[test]
    fn kv_put_get_delete_return_the_value_before() {
        let mut kv = KvStore::new();
        let get = KvOp::Get { key: s("k") };
        assert_eq!(kv.execute(&get), KvOutput::Value(None));
        let put = |value: &str| KvOp::Put {
            key: s("k"),
            value: s(value),
        };
        assert_eq!(kv.execute(&put("a")), KvOutput::Value(None));
        assert_eq!(kv.execute(&put("b")), KvOutput::Value(Some(s("a"))));
        assert_eq!(kv.execute(&get), KvOutput::Value(Some(s("b"))));
        let delete = KvOp::Delete { key: s("k") };
        assert_eq!(kv.execute(&delete), KvOutput::Value(Some(s("b"))));
        assert_eq!(kv.execute(&delete), KvOutput::Value(None));
        assert!(kv.data.is_empty());
    }

    #[test]
    fn kv_cas_swaps_only_on_the_expected_value() {
        let mut kv = KvStore::new();
        let cas = |expected: Option<&str>, new: Option<&str>| KvOp::Cas {
            key: s("k"),
            expected: expected.map(s),
            new: new.map(s),
        };
        let out = |swapped, previous: Option<&str>| KvOutput::Cas {
            swapped,
            previous: previous.map(s),
        };
        assert_eq!(kv.execute(&cas(None, Some("a"))), out(true, None));
        assert_eq!(kv.execute(&cas(None, Some("b"))), out(false, Some("a")));
        assert_eq!(kv.execute(&cas(Some("x"), None)), out(false, Some("a")));
        assert_eq!(kv.data.get("k"), Some(&s("a")));
        assert_eq!(kv.execute(&cas(Some("a"), None)), out(true, Some("a")));
        assert!(kv.data.is_empty());
    }

    #[test]
    fn kv_snapshot_restores_the_same_store() {
        let mut kv = KvStore::new();
        let command = Command {
            client: ClientId(1),
            seq: 1,
            op: KvOp::Put {
                key: s("k"),
                value: s("v"),
            },
        };
        kv.apply(&command);
        let mut other = KvStore::new();
        other.restore(kv.snapshot());
        assert_eq!(other, kv);
    }

    #[test]
    fn recorder_outputs_positions_in_execution_order() {
        let mut recorder = Recorder::default();
        let command = |seq| Command {
            client: ClientId(7),
            seq,
            op: seq as u8,
        };
        assert_eq!(recorder.apply(&command(1)), 0);
        assert_eq!(recorder.apply(&command(2)), 1);
        assert_eq!(recorder.executed, vec![command(1), command(2)]);
    }
}
