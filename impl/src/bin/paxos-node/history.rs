//! Client histories of the key-value service and a linearizability checker for them.
//!
//! A history records every operation a client invoked, when (nanoseconds since the run
//! began), and how it ended: answered (with what), refused (certainly not executed: a `4xx`),
//! or unknown (no answer before the deadline: it may have been executed, now or later).
//!
//! [`check`] decides whether some total order of the operations (i) respects real time — an
//! operation that returned before another was invoked comes first — (ii) gives every answered
//! operation the answer a single register per key would give, and (iii) places unknown
//! operations anywhere after their invocation, or nowhere. Operations on different keys
//! commute, so each key is checked on its own (linearizability is compositional). Per key the
//! search is Wing and Gong's, with Lowe's memoisation of (linearized set, register value), as
//! in Porcupine.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// The `format` of a serialised [`History`].
pub const HISTORY_FORMAT: &str = "paxos-history/1";

/// What a client asked. Deliberately not the core's `KvOp`, and [`KvCall::step`] deliberately
/// not `KvStore::apply`: the checker is the oracle for the service, so it states the register's
/// semantics on its own (a bug in the state machine must not be mirrored in its judge), and
/// the history file's schema does not change when the WAL's does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KvCall {
    Put {
        key: String,
        value: String,
    },
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    Cas {
        key: String,
        expected: Option<String>,
        new: Option<String>,
    },
}

impl KvCall {
    pub fn key(&self) -> &str {
        match self {
            KvCall::Put { key, .. }
            | KvCall::Get { key }
            | KvCall::Delete { key }
            | KvCall::Cas { key, .. } => key,
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, KvCall::Get { .. })
    }

    /// The register after this call from `state`, and the answer it gives.
    pub fn step(&self, state: &Option<String>) -> (Option<String>, KvAnswer) {
        match self {
            KvCall::Put { value, .. } => (Some(value.clone()), KvAnswer::value(state.clone())),
            KvCall::Get { .. } => (state.clone(), KvAnswer::value(state.clone())),
            KvCall::Delete { .. } => (None, KvAnswer::value(state.clone())),
            KvCall::Cas { expected, new, .. } => {
                let swapped = state == expected;
                let next = if swapped { new.clone() } else { state.clone() };
                let answer = KvAnswer {
                    value: state.clone(),
                    swapped: Some(swapped),
                };
                (next, answer)
            }
        }
    }
}

/// What the service answered: the value before (put, delete, cas) or the current value (get),
/// and for a cas whether it swapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvAnswer {
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<bool>,
}

impl KvAnswer {
    fn value(value: Option<String>) -> KvAnswer {
        KvAnswer {
            value,
            swapped: None,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Answered {
        returned_ns: u64,
        answer: KvAnswer,
    },
    /// Refused by the service: certainly not executed.
    Refused {
        reason: String,
    },
    /// No answer in time: executed or not, now or later.
    Unknown {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client (one operation at a time per client).
    pub client: u64,
    pub call: KvCall,
    pub invoked_ns: u64,
    pub outcome: Outcome,
}

/// A whole run's operations, in no particular order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub format: String,
    pub operations: Vec<Operation>,
}

impl Default for History {
    fn default() -> Self {
        History {
            format: HISTORY_FORMAT.to_string(),
            operations: Vec::new(),
        }
    }
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `Some(true)`: linearizable; `Some(false)`: not; `None`: a key's search ran out of budget.
    pub linearizable: Option<bool>,
    pub keys: usize,
    /// Answered and unknown operations checked (refused ones are left out).
    pub operations: usize,
    /// Search steps taken, over all keys.
    pub steps: u64,
    /// The first key that has no linearization, with its operations in invocation order.
    pub violation: Option<Violation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub key: String,
    pub operations: Vec<Operation>,
    /// The longest prefix of a linearization the search found, as indices into `operations`:
    /// the operation that cannot follow it is where to start reading.
    pub longest_linearized_prefix: Vec<usize>,
}

/// Search steps allowed per key before giving up with an unknown verdict.
pub const STEPS_PER_KEY_MAX: u64 = 50_000_000;

/// Checks a whole history, key by key.
pub fn check(history: &History) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.operations {
        if !matches!(op.outcome, Outcome::Refused { .. }) {
            by_key.entry(op.call.key()).or_default().push(op);
        }
    }
    let mut verdict = Verdict {
        linearizable: Some(true),
        keys: by_key.len(),
        operations: by_key.values().map(Vec::len).sum(),
        steps: 0,
        violation: None,
    };
    for (key, mut ops) in by_key {
        ops.sort_by_key(|op| op.invoked_ns);
        let (result, steps) = check_key(&ops, STEPS_PER_KEY_MAX);
        verdict.steps += steps;
        match result {
            KeyResult::Linearizable => {}
            KeyResult::OutOfBudget => verdict.linearizable = None,
            KeyResult::Violation { longest } => {
                verdict.linearizable = Some(false);
                verdict.violation = Some(Violation {
                    key: key.to_string(),
                    operations: ops.into_iter().cloned().collect(),
                    longest_linearized_prefix: longest,
                });
                return verdict;
            }
        }
    }
    verdict
}

enum KeyResult {
    Linearizable,
    OutOfBudget,
    Violation { longest: Vec<usize> },
}

/// One call or return in the time-ordered event list.
#[derive(Clone, Copy, Debug)]
struct Event {
    op: usize,
    is_call: bool,
    /// The matching event (call ↔ return).
    other: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Wing–Gong–Lowe search over one key's operations (sorted by invocation).
fn check_key(ops: &[&Operation], budget: u64) -> (KeyResult, u64) {
    // Events sorted by time; at equal times calls first, so operations that touch are
    // concurrent (the lenient reading of equal timestamps).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.invoked_ns, false, i));
        let returned = match &op.outcome {
            Outcome::Answered { returned_ns, .. } => (*returned_ns).max(op.invoked_ns),
            _ => u64::MAX,
        };
        order.push((returned, true, i));
    }
    order.sort();
    let mut events: Vec<Event> = Vec::with_capacity(order.len());
    let mut call_of = vec![usize::MAX; ops.len()];
    let mut return_of = vec![usize::MAX; ops.len()];
    for (index, &(_, is_return, op)) in order.iter().enumerate() {
        events.push(Event {
            op,
            is_call: !is_return,
            other: usize::MAX,
            prev: index.checked_sub(1),
            next: (index + 1 < order.len()).then_some(index + 1),
        });
        if is_return {
            return_of[op] = index;
        } else {
            call_of[op] = index;
        }
    }
    for op in 0..ops.len() {
        events[call_of[op]].other = return_of[op];
        events[return_of[op]].other = call_of[op];
    }
    let answered: Vec<Option<&KvAnswer>> = ops
        .iter()
        .map(|op| match &op.outcome {
            Outcome::Answered { answer, .. } => Some(answer),
            _ => None,
        })
        .collect();

    let mut head = (!events.is_empty()).then_some(0);
    let mut state: Option<String> = None;
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut cache: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut cursor = head;
    let mut steps = 0u64;

    // Unlinks an operation's call and return events; `relink` undoes it (in reverse order).
    fn unlink(events: &mut [Event], head: &mut Option<usize>, e: usize) {
        let Event { prev, next, .. } = events[e];
        match prev {
            Some(p) => events[p].next = next,
            None => *head = next,
        }
        if let Some(n) = next {
            events[n].prev = prev;
        }
    }
    fn relink(events: &mut [Event], head: &mut Option<usize>, e: usize) {
        let Event { prev, next, .. } = events[e];
        match prev {
            Some(p) => events[p].next = Some(e),
            None => *head = Some(e),
        }
        if let Some(n) = next {
            events[n].prev = Some(e);
        }
    }

    loop {
        steps += 1;
        if steps > budget {
            return (KeyResult::OutOfBudget, steps);
        }
        let Some(e) = cursor else {
            // Only reachable with every event lifted: everything linearized.
            return (KeyResult::Linearizable, steps);
        };
        let event = events[e];
        if event.is_call {
            let op = event.op;
            let (next_state, answer) = ops[op].call.step(&state);
            let fits = answered[op].is_none_or(|expected| *expected == answer);
            if fits {
                let mut next_linearized = linearized.clone();
                next_linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((next_linearized.clone(), next_state.clone())) {
                    stack.push((e, state));
                    state = next_state;
                    linearized = next_linearized;
                    let ret = event.other;
                    unlink(&mut events, &mut head, ret);
                    unlink(&mut events, &mut head, e);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(c, _)| events[c].op).collect();
                    }
                    cursor = head;
                    continue;
                }
            }
            cursor = event.next;
        } else {
            // The earliest pending return: its operation must already be linearized, and is
            // not. An unknown operation's return is at the end of time: reaching it means
            // every answered operation is linearized, and the unknown ones may stay out.
            if answered[event.op].is_none() {
                return (KeyResult::Linearizable, steps);
            }
            let Some((call, previous)) = stack.pop() else {
                return (KeyResult::Violation { longest }, steps);
            };
            let op = events[call].op;
            state = previous;
            linearized[op / 64] &= !(1 << (op % 64));
            let ret = events[call].other;
            relink(&mut events, &mut head, call);
            relink(&mut events, &mut head, ret);
            cursor = events[call].next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op(
        client: u64,
        call: KvCall,
        invoked: u64,
        returned: Option<u64>,
        answer: KvAnswer,
    ) -> Operation {
        let outcome = match returned {
            Some(returned_ns) => Outcome::Answered {
                returned_ns,
                answer,
            },
            None => Outcome::Unknown {
                reason: "timeout".into(),
            },
        };
        Operation {
            client,
            call,
            invoked_ns: invoked,
            outcome,
        }
    }

    fn put(v: &str) -> KvCall {
        KvCall::Put {
            key: "k".into(),
            value: v.into(),
        }
    }

    fn get() -> KvCall {
        KvCall::Get { key: "k".into() }
    }

    fn val(v: Option<&str>) -> KvAnswer {
        KvAnswer::value(v.map(str::to_string))
    }

    fn history(operations: Vec<Operation>) -> History {
        History {
            operations,
            ..History::default()
        }
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_not_linearizable() {
        let h = history(vec![
            op(1, put("a"), 0, Some(10), val(None)),
            op(2, get(), 20, Some(30), val(None)),
        ]);
        let verdict = check(&h);
        assert_eq!(verdict.linearizable, Some(false));
        let violation = verdict.violation.expect("violation");
        assert_eq!(violation.key, "k");
        assert_eq!(violation.longest_linearized_prefix, vec![0]);
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = history(vec![
            op(1, put("a"), 0, Some(30), val(None)),
            op(2, get(), 10, Some(20), val(None)),
            op(3, get(), 11, Some(21), val(Some("a"))),
        ]);
        assert_eq!(check(&h).linearizable, Some(true));
    }

    #[test]
    fn a_lost_acknowledged_write_is_not_linearizable() {
        let h = history(vec![
            op(1, put("a"), 0, Some(10), val(None)),
            op(1, put("b"), 20, Some(30), val(Some("a"))),
            op(2, get(), 40, Some(50), val(Some("a"))),
        ]);
        assert_eq!(check(&h).linearizable, Some(false));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let late = history(vec![
            op(1, put("a"), 0, None, val(None)),
            op(2, get(), 10, Some(20), val(None)),
            op(2, get(), 30, Some(40), val(Some("a"))),
        ]);
        assert_eq!(check(&late).linearizable, Some(true));
        let never = history(vec![
            op(1, put("a"), 0, None, val(None)),
            op(2, get(), 30, Some(40), val(None)),
        ]);
        assert_eq!(check(&never).linearizable, Some(true));
        // But not before it was invoked.
        let early = history(vec![
            op(2, get(), 0, Some(5), val(Some("a"))),
            op(1, put("a"), 10, None, val(None)),
        ]);
        assert_eq!(check(&early).linearizable, Some(false));
    }

    #[test]
    fn cas_answers_and_effects_follow_the_register() {
        let cas = |expected: Option<&str>, new: Option<&str>| KvCall::Cas {
            key: "k".into(),
            expected: expected.map(str::to_string),
            new: new.map(str::to_string),
        };
        let swapped = |prev: Option<&str>, s: bool| KvAnswer {
            value: prev.map(str::to_string),
            swapped: Some(s),
        };
        let ok = history(vec![
            op(1, put("a"), 0, Some(1), val(None)),
            op(
                1,
                cas(Some("a"), Some("b")),
                2,
                Some(3),
                swapped(Some("a"), true),
            ),
            op(
                1,
                cas(Some("a"), Some("c")),
                4,
                Some(5),
                swapped(Some("b"), false),
            ),
            op(1, get(), 6, Some(7), val(Some("b"))),
        ]);
        assert_eq!(check(&ok).linearizable, Some(true));
        let double = history(vec![
            op(1, put("a"), 0, Some(1), val(None)),
            op(
                1,
                cas(Some("a"), Some("b")),
                2,
                Some(10),
                swapped(Some("a"), true),
            ),
            op(
                2,
                cas(Some("a"), Some("c")),
                2,
                Some(10),
                swapped(Some("a"), true),
            ),
        ]);
        assert_eq!(check(&double).linearizable, Some(false));
    }

    #[test]
    fn keys_are_checked_apart_and_refused_operations_are_left_out() {
        let other = KvCall::Get { key: "x".into() };
        let h = history(vec![
            op(1, put("a"), 0, Some(10), val(None)),
            op(2, other, 0, Some(10), val(None)),
            Operation {
                client: 3,
                call: put("z"),
                invoked_ns: 11,
                outcome: Outcome::Refused {
                    reason: "stale".into(),
                },
            },
            op(2, get(), 20, Some(30), val(Some("a"))),
        ]);
        let verdict = check(&h);
        assert_eq!(verdict.linearizable, Some(true));
        assert_eq!((verdict.keys, verdict.operations), (2, 3));
    }

    /// Brute force: every order of the operations that respects real time, with each unknown
    /// operation either in or out.
    fn linearizable_by_brute_force(ops: &[Operation]) -> bool {
        fn go(ops: &[Operation], used: &mut Vec<bool>, state: Option<String>) -> bool {
            let answered_left = ops
                .iter()
                .zip(used.iter())
                .any(|(op, u)| !u && matches!(op.outcome, Outcome::Answered { .. }));
            if !answered_left {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // `i` may go next only if no unused answered op returned before it was invoked.
                let blocked = ops.iter().zip(used.iter()).any(|(other, u)| {
                    !u && matches!(&other.outcome, Outcome::Answered { returned_ns, .. } if *returned_ns < ops[i].invoked_ns)
                });
                if blocked {
                    continue;
                }
                let (next, answer) = ops[i].call.step(&state);
                let fits = match &ops[i].outcome {
                    Outcome::Answered { answer: a, .. } => *a == answer,
                    _ => true,
                };
                if fits {
                    used[i] = true;
                    let found = go(ops, used, next);
                    used[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], None)
    }

    fn any_op() -> impl Strategy<Value = Operation> {
        let value = prop::option::of(prop::sample::select(vec!["a", "b"]));
        let call = prop_oneof![
            prop::sample::select(vec!["a", "b"]).prop_map(put),
            Just(get()),
            Just(KvCall::Delete { key: "k".into() }),
            (value.clone(), value.clone()).prop_map(|(e, n)| KvCall::Cas {
                key: "k".into(),
                expected: e.map(str::to_string),
                new: n.map(str::to_string),
            }),
        ];
        (
            call,
            0u64..20,
            prop::option::of(0u64..10),
            value,
            any::<bool>(),
        )
            .prop_map(|(call, invoked, took, answered, swapped)| {
                let answer = KvAnswer {
                    value: answered.map(str::to_string),
                    swapped: matches!(call, KvCall::Cas { .. }).then_some(swapped),
                };
                op(0, call, invoked, took.map(|t| invoked + t), answer)
            })
    }

    proptest! {
        /// The search agrees with brute force on small random histories (most of which are
        /// not linearizable: the answers are random).
        #[test]
        fn the_search_agrees_with_brute_force(ops in prop::collection::vec(any_op(), 0..7)) {
            let mut sorted = ops.clone();
            sorted.sort_by_key(|op| op.invoked_ns);
            let expected = linearizable_by_brute_force(&sorted);
            let verdict = check(&history(ops));
            prop_assert_eq!(verdict.linearizable, Some(expected));
        }
    }
}
