//! Runs of slots: phase 2 messages for several slots do what their slots do one by one.

use super::*;

// ---------------------------------------------------------------- runs of slots (phase 2 batched)

#[test]
fn m5_requests_arriving_together_are_proposed_as_one_run_least_first() {
    let mut r = start(config_of(0, 3, 2));
    let batch = Input::ClientRequests(vec![cmd(3, 1), cmd(1, 1), cmd(2, 1), cmd(1, 1)]);
    let run = accept_run(b(1, 0), 0, vec![c(1, 1), c(2, 1)]);
    assert_eq!(
        r.step(batch),
        vec![
            accept_record(0, b(1, 0), c(1, 1)),
            accept_record(1, b(1, 0), c(2, 1)),
            send(1, run.clone()),
            send(2, run),
        ],
        "a window of 2: the two least commands, each once"
    );
    assert_eq!(r.pending().cloned().collect::<Vec<_>>(), vec![cmd(3, 1)]);
}

#[test]
fn m6_a_run_is_accepted_slot_by_slot_and_answered_once() {
    let mut r = follower(1);
    assert_eq!(
        r.step(deliver(
            0,
            accept_run(b(1, 0), 4, vec![c(1, 1), Entry::Noop])
        )),
        vec![
            persist(Record::Promise(b(1, 0))),
            accept_record(4, b(1, 0), c(1, 1)),
            accept_record(5, b(1, 0), Entry::Noop),
            send(0, accepted_run(b(1, 0), 4, 2)),
        ]
    );
}

#[test]
fn m6_nack_a_run_below_the_promise_is_refused_once() {
    let mut r = follower(2);
    r.step(deliver(
        1,
        Message::Prepare {
            ballot: b(2, 1),
            applied: 0,
        },
    ));
    let nack = Message::Nack {
        ballot: b(1, 0),
        promised: b(2, 1),
    };
    let run = accept_run(b(1, 0), 0, vec![c(1, 1), c(2, 1), c(3, 1)]);
    assert_eq!(r.step(deliver(0, run)), vec![send(0, nack)]);
    assert!(r.accepted().is_empty());
}

#[test]
fn m6_m8_an_empty_run_or_one_past_the_last_slot_is_ignored() {
    let mut r = follower(1);
    let before = r.clone();
    let noops = || vec![Entry::Noop, Entry::Noop];
    assert_eq!(r.step(deliver(0, accept_run(b(1, 0), 0, vec![]))), vec![]);
    let past_the_end = accept_run(b(1, 0), u64::MAX, noops());
    assert_eq!(r.step(deliver(0, past_the_end)), vec![]);
    assert_eq!(r.step(deliver(0, decide_run(u64::MAX, noops()))), vec![]);
    assert_eq!(r, before, "nothing changed");
    let to_the_end = accept_run(b(1, 0), u64::MAX - 1, noops());
    assert_eq!(
        r.step(deliver(0, to_the_end)).last(),
        Some(&send(0, accepted_run(b(1, 0), u64::MAX - 1, 2))),
        "a run that ends on the last slot is a run"
    );
    let decided = r.step(deliver(0, decide_run(u64::MAX - 1, noops())));
    assert_eq!(
        decided,
        vec![
            chosen_votes(u64::MAX - 1, 1),
            chosen_record(u64::MAX, Entry::Noop)
        ],
        "the votes are named, except the last slot's: no run can end after it"
    );
}

#[test]
fn m7_a_run_of_votes_chooses_its_slots_and_decides_them_as_one_run() {
    let mut r = start(config_of(0, 3, 4));
    r.step(Input::ClientRequests(vec![cmd(1, 1), cmd(2, 1), cmd(3, 1)]));
    r.step(request(4, 1));
    let entries = vec![c(1, 1), c(2, 1), c(3, 1), c(4, 1)];
    let decide = decide_run(0, entries.clone());
    let mut expected = vec![chosen_votes(0, 4), send(1, decide.clone()), send(2, decide)];
    for client in 1..=4 {
        let slot = client - 1;
        expected.push(executed(slot, cmd(client, 1), slot));
        expected.push(reply(client, 1, Some(slot)));
    }
    assert_eq!(
        r.step(deliver(1, accepted_run(b(1, 0), 0, 4))),
        expected,
        "the run the vote covers spans two Accepts"
    );
    assert_eq!(r.applied(), 4);
}

#[test]
fn m7_a_run_of_votes_decides_only_the_slots_it_brings_to_a_majority() {
    let mut r = start(config_of(0, 5, 4));
    r.step(Input::ClientRequests((1..=4).map(|c| cmd(c, 1)).collect()));
    r.step(deliver(1, accepted_run(b(1, 0), 0, 4)));
    r.step(deliver(2, accepted(b(1, 0), 1)));
    r.step(deliver(2, accepted(b(1, 0), 3)));
    assert_eq!(r.chosen().len(), 2, "slots 1 and 3 had a majority of 3");
    let effects = r.step(deliver(3, accepted_run(b(1, 0), 0, 4)));
    let decides: Vec<&MessageOf<Sm>> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to: 1, msg } => Some(msg),
            _ => None,
        })
        .collect();
    assert_eq!(
        decides,
        vec![&decide(0, c(1, 1)), &decide(2, c(3, 1))],
        "one Decide per stretch of newly chosen slots"
    );
    assert_eq!(r.applied(), 4);
    assert_eq!(
        r.step(deliver(4, accepted_run(b(1, 0), 0, 4))),
        vec![],
        "every slot of the run is chosen"
    );
}

#[test]
fn m8_a_decided_run_learns_the_slots_not_chosen_yet() {
    let mut r = follower(1);
    r.step(deliver(0, decide(1, c(2, 1))));
    assert_eq!(
        r.step(deliver(0, decide_run(0, vec![c(1, 1), c(2, 1), c(3, 1)]))),
        vec![
            chosen_record(0, c(1, 1)),
            chosen_record(2, c(3, 1)),
            executed(0, cmd(1, 1), 0),
            executed(1, cmd(2, 1), 1),
            executed(2, cmd(3, 1), 2),
        ]
    );
}

/// An input of the run equivalence property below.
#[derive(Clone, Debug)]
enum RunStep {
    Requests(Vec<(u64, u64)>),
    Prepare {
        from: NodeId,
        round: u64,
    },
    Accept {
        from: NodeId,
        round: u64,
        slot: Slot,
        clients: Vec<u64>,
    },
    Accepted {
        from: NodeId,
        slot: Slot,
        count: u64,
    },
    Decide {
        slot: Slot,
        clients: Vec<u64>,
    },
    Timeout,
}

fn run_entry(client: u64) -> Entry<u32> {
    match client {
        0 => Entry::Noop,
        client => c(client, 1),
    }
}

impl RunStep {
    fn input(&self, leader_ballot: Ballot) -> InputOf<Sm> {
        match self {
            RunStep::Requests(ids) => {
                Input::ClientRequests(ids.iter().map(|&(c, s)| cmd(c, s)).collect())
            }
            RunStep::Prepare { from, round } => deliver(
                *from,
                Message::Prepare {
                    ballot: b(*round, *from),
                    applied: 0,
                },
            ),
            RunStep::Accept {
                from,
                round,
                slot,
                clients,
            } => deliver(
                *from,
                accept_run(
                    b(*round, *from),
                    *slot,
                    clients.iter().copied().map(run_entry).collect(),
                ),
            ),
            RunStep::Accepted { from, slot, count } => {
                deliver(*from, accepted_run(leader_ballot, *slot, *count))
            }
            RunStep::Decide { slot, clients } => deliver(
                0,
                decide_run(*slot, clients.iter().copied().map(run_entry).collect()),
            ),
            // Past every timer of every replica in these runs.
            RunStep::Timeout => Input::Tick {
                now_ms: 1_000_000_000,
            },
        }
    }

    /// The same input slot by slot, requests in `(client, seq)` order: what the run stands for.
    fn one_by_one(&self, leader_ballot: Ballot) -> Vec<InputOf<Sm>> {
        match self {
            RunStep::Requests(ids) => {
                let mut ids = ids.clone();
                ids.sort();
                let single = ids.into_iter().map(|(c, s)| request(c, s));
                single.collect()
            }
            RunStep::Accept {
                from,
                round,
                slot,
                clients,
            } => (0..)
                .zip(clients)
                .map(|(i, &client)| {
                    let msg = accept(b(*round, *from), slot + i, run_entry(client));
                    deliver(*from, msg)
                })
                .collect(),
            RunStep::Accepted { from, slot, count } => (0..*count)
                .map(|i| deliver(*from, accepted(leader_ballot, slot + i)))
                .collect(),
            RunStep::Decide { slot, clients } => (0..)
                .zip(clients)
                .map(|(i, &client)| deliver(0, decide(slot + i, run_entry(client))))
                .collect(),
            other => vec![other.input(leader_ballot)],
        }
    }
}

fn run_step() -> impl proptest::strategy::Strategy<Value = RunStep> {
    use proptest::prelude::*;
    let ids = prop::collection::vec((1u64..5, 1u64..3), 0..6);
    let clients = || prop::collection::vec(0u64..5, 0..4);
    prop_oneof![
        3 => ids.prop_map(RunStep::Requests),
        1 => (1u32..3, 2u64..4).prop_map(|(from, round)| RunStep::Prepare { from, round }),
        2 => (1u32..3, 1u64..4, 0u64..6, clients()).prop_map(|(from, round, slot, clients)| {
            RunStep::Accept { from, round, slot, clients }
        }),
        3 => (1u32..3, 0u64..6, 0u64..5)
            .prop_map(|(from, slot, count)| RunStep::Accepted { from, slot, count }),
        1 => (0u64..6, clients()).prop_map(|(slot, clients)| RunStep::Decide { slot, clients }),
        1 => Just(RunStep::Timeout),
    ]
}

/// What conformance compares, with every run split into its slots: messages as a multiset of
/// one-slot messages, the records as the durable state they fold to, the executions in order,
/// replies as a multiset.
#[derive(Debug, PartialEq)]
struct SlotWise {
    sends: Vec<String>,
    durable: Durable<u32>,
    executed: Vec<E>,
    replies: Vec<String>,
}

/// `effects` slot by slot; their records folded onto `before`, the durable state they extend.
fn slot_wise(before: &Durable<u32>, effects: &[E]) -> SlotWise {
    let mut sends = Vec::new();
    let mut replies = Vec::new();
    let mut executed = Vec::new();
    for effect in effects {
        match effect {
            Effect::Send { to, msg } => {
                let split = msg.per_slot();
                sends.extend(split.map(|m| format!("{to} {m:?}")));
            }
            Effect::Executed { .. } => executed.push(effect.clone()),
            Effect::Reply { .. } => replies.push(format!("{effect:?}")),
            _ => {}
        }
    }
    // A refused run is refused once; slot by slot, once per slot, with the same Nack.
    sends.sort();
    sends.dedup_by(|a, b| a == b && a.contains("Nack"));
    replies.sort();
    let mut durable = before.clone();
    for record in records(effects) {
        durable.apply(record).unwrap();
    }
    SlotWise {
        sends,
        durable,
        executed,
        replies,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The claim conformance rests on: a run (requests arriving together, an Accept, an
    /// Accepted or a Decide for several slots) does what its slots one by one do, from any
    /// state the inputs reach, at the leader and at a follower.
    #[test]
    fn a_run_does_what_its_slots_do_one_by_one(
        id in 0u32..2,
        window in 1u64..5,
        prefix in proptest::collection::vec(run_step(), 0..12),
        last in run_step(),
    ) {
        let mut r = start(config_of(id, 3, window));
        for step in &prefix {
            let ballot = r.ballot();
            r.step(step.input(ballot));
        }
        // A genuine run of votes answers an Accept the leader sent, so it covers only slots
        // proposed before it arrives. Slot by slot, a vote past `next_slot` could count for a
        // slot the earlier votes' M5b opened meanwhile; no follower can send such a vote.
        if let (RunStep::Accepted { slot, count, .. }, Phase::Leading { next_slot, .. }) =
            (&last, r.phase())
        {
            proptest::prop_assume!(slot + count <= *next_slot);
        }
        let ballot = r.ballot();
        let before = r.durable();
        let mut batched = r.clone();
        let together = batched.step(last.input(ballot));
        let mut split = r;
        let mut one_by_one = Vec::new();
        for input in last.one_by_one(ballot) {
            one_by_one.extend(split.step(input));
        }
        // The timers are not compared: each step that hears the leader draws a new election
        // delay, so one step and its slots one by one draw different ones.
        let without_timers = |r: &R| ReplicaState {
            timers: Timers::default(),
            ..r.state().clone()
        };
        proptest::prop_assert_eq!(without_timers(&batched), without_timers(&split));
        proptest::prop_assert_eq!(batched.state_machine(), split.state_machine());
        proptest::prop_assert_eq!(slot_wise(&before, &together), slot_wise(&before, &one_by_one));
    }
}

#[test]
fn per_slot_splits_a_run_and_stops_at_the_last_slot() {
    let run = accept_run(b(1, 0), 4, vec![c(1, 1), Entry::Noop]);
    let parts: Vec<_> = run.per_slot().collect();
    assert_eq!(
        parts,
        vec![accept(b(1, 0), 4, c(1, 1)), accept(b(1, 0), 5, Entry::Noop)]
    );
    let past_the_end = accepted_run(b(1, 0), u64::MAX - 1, u64::MAX);
    assert_eq!(
        past_the_end.per_slot().collect::<Vec<_>>(),
        vec![accepted(b(1, 0), u64::MAX - 1), accepted(b(1, 0), u64::MAX)]
    );
    let prepare: MessageOf<Sm> = Message::Prepare {
        ballot: b(2, 1),
        applied: 0,
    };
    assert_eq!(
        prepare.per_slot().collect::<Vec<_>>(),
        vec![prepare.clone()]
    );
}
