//! Reads through the read index (Q1–Q5, specs/protocol.md): a leader answers a read once a
//! majority confirmed its ballot after the read arrived and it applied every slot in play at
//! its election.

use super::*;

fn read_reply(id: ReadId, output: Option<u64>) -> E {
    Effect::ReadReply { id, output }
}

fn sent_to_others(msg: MessageOf<Sm>) -> Vec<E> {
    vec![send(1, msg.clone()), send(2, msg)]
}

#[test]
fn q1_a_read_at_the_leader_waits_for_a_confirmation_round_it_starts() {
    let mut l = leader_with_slot_0_chosen();
    assert_eq!(l.step(read(7)), sent_to_others(confirm(b(1, 0), 1)));
    let reads = &l.state().reads;
    assert_eq!((reads.started, reads.confirmed), (1, 0));
    assert_eq!(reads.waiting.len(), 1);
    assert_eq!(
        l.step(read(7)),
        vec![],
        "the same read again changes nothing"
    );
    assert_eq!(l.state().reads.waiting.len(), 1);
}

#[test]
fn q1_a_read_at_a_replica_that_does_not_lead_does_nothing() {
    let mut f = follower(1);
    let before = f.clone();
    assert_eq!(f.step(read(1)), vec![]);
    assert_eq!(
        f, before,
        "no state: the service redirects the client (Q1')"
    );
    let mut cand = candidate(1);
    let before = cand.clone();
    assert_eq!(cand.step(read(1)), vec![]);
    assert_eq!(cand, before, "a candidate does not answer reads either");
}

#[test]
fn q1_reads_arriving_during_a_round_wait_for_the_next_one_not_the_outstanding_one() {
    let mut l = leader_with_slot_0_chosen();
    l.step(read(1));
    assert_eq!(l.step(read(2)), vec![], "no second round while one is out");
    // Replica 1 may have answered round 1 before read 2 arrived: it answers only read 1,
    // and round 2 starts at once for read 2.
    let mut effects = l.step(deliver(1, confirmed(b(1, 0), 1)));
    let answered = effects.pop();
    assert_eq!(answered, Some(read_reply(1, Some(1))));
    assert_eq!(effects, sent_to_others(confirm(b(1, 0), 2)));
    assert_eq!(
        l.step(deliver(2, confirmed(b(1, 0), 1))),
        vec![],
        "a late answer to round 1 does not confirm round 2"
    );
    assert_eq!(
        l.step(deliver(2, confirmed(b(1, 0), 2))),
        vec![read_reply(2, Some(1))]
    );
    assert!(l.state().reads.waiting.is_empty());
}

#[test]
fn q2_a_replica_confirms_a_ballot_at_or_above_its_promise_and_changes_nothing_durable() {
    let mut f = follower(1);
    let effects = f.step(deliver(0, confirm(b(1, 0), 3)));
    assert_eq!(effects, vec![send(0, confirmed(b(1, 0), 3))]);
    assert_eq!(f.promised(), b(1, 0));
    // A ballot above the promise is confirmed too (nothing higher was promised), and
    // confirming promises nothing.
    let effects = f.step(deliver(2, confirm(b(2, 2), 1)));
    assert_eq!(effects, vec![send(2, confirmed(b(2, 2), 1))]);
    assert_eq!(f.promised(), b(1, 0), "no promise raised");
    assert!(records(&effects).is_empty());
}

#[test]
fn q2_a_confirmation_below_the_promise_is_refused_and_the_leader_steps_down_with_its_reads() {
    let mut f = follower(1);
    f.step(deliver(
        2,
        Message::Prepare {
            ballot: b(2, 2),
            applied: 0,
        },
    ));
    let refusal = Message::Nack {
        ballot: b(1, 0),
        promised: b(2, 2),
    };
    assert_eq!(
        f.step(deliver(0, confirm(b(1, 0), 1))),
        vec![send(0, refusal.clone())]
    );
    let mut l = leader_with_slot_0_chosen();
    l.step(read(1));
    l.step(deliver(1, refusal));
    assert!(!l.is_leading(), "M10");
    assert_eq!(l.state().reads, ReadIndex::default(), "its reads dropped");
    assert_eq!(
        l.step(deliver(2, confirmed(b(1, 0), 1))),
        vec![],
        "an answer to the deposed leader's round answers nothing"
    );
}

#[test]
fn q3_a_round_needs_a_majority_of_distinct_replicas_at_the_leader_s_ballot_and_round() {
    let mut l = start(config_of(0, 5, 2));
    l.step(request(1, 1));
    for voter in [1, 2] {
        l.step(deliver(voter, accepted(b(1, 0), 0)));
    }
    assert_eq!(l.applied(), 1);
    l.step(read(1));
    assert_eq!(l.step(deliver(1, confirmed(b(1, 0), 1))), vec![]);
    assert_eq!(
        l.step(deliver(1, confirmed(b(1, 0), 1))),
        vec![],
        "the same replica twice is one confirmation"
    );
    assert_eq!(
        l.step(deliver(2, confirmed(b(1, 0), 2))),
        vec![],
        "a round not started"
    );
    assert_eq!(
        l.step(deliver(2, confirmed(b(2, 0), 1))),
        vec![],
        "another ballot"
    );
    assert_eq!(
        l.step(deliver(2, confirmed(b(1, 0), 1))),
        vec![read_reply(1, Some(1))],
        "the leader and two others: three of five"
    );
    assert_eq!(l.state().reads.confirmed, 1);
}

#[test]
fn q4_a_new_leader_answers_only_once_it_applied_the_slots_in_play_at_its_election() {
    let mut cand = candidate(1);
    let promise = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![(0, b(1, 0), c(1, 1))],
        compacted: 0,
    };
    cand.step(deliver(2, promise));
    assert!(cand.is_leading());
    assert_eq!(cand.state().reads.fence, 1, "slot 0 was in play");
    let confirm_sent = cand.step(read(4));
    assert_eq!(confirm_sent.len(), 2);
    assert_eq!(
        cand.step(deliver(2, confirmed(b(2, 1), 1))),
        vec![],
        "confirmed, but slot 0 (maybe acknowledged by the old leader) is not applied"
    );
    let effects = cand.step(deliver(2, accepted(b(2, 1), 0)));
    assert_eq!(
        effects.last(),
        Some(&read_reply(4, Some(1))),
        "answered in the step that applied the fence: {effects:?}"
    );
}

/// A run of slots is its one-slot steps in order ("Runs of slots"), and Q4 follows each: a read
/// made ready by the run's first slot is answered with the state after that slot, not after
/// the whole run.
#[test]
fn q4_a_run_that_reaches_the_fence_answers_at_the_slot_that_reached_it() {
    let mut cand = candidate(1);
    cand.step(request(7, 1));
    let promise = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![(0, b(1, 0), c(1, 1))],
        compacted: 0,
    };
    cand.step(deliver(2, promise));
    assert!(cand.is_leading());
    assert_eq!(cand.state().reads.fence, 1, "slot 0 was in play");
    cand.step(read(4));
    assert_eq!(cand.step(deliver(2, confirmed(b(2, 1), 1))), vec![]);
    let effects = cand.step(deliver(2, accepted_run(b(2, 1), 0, 2)));
    assert_eq!(cand.applied(), 2, "both slots chosen and applied");
    let answers: Vec<&E> = effects
        .iter()
        .filter(|e| matches!(e, Effect::ReadReply { .. }))
        .collect();
    assert_eq!(
        answers,
        vec![&read_reply(4, Some(1))],
        "the state after slot 0, the fence, as the model's step on slot 0 answers: {effects:?}"
    );
}

/// The same for a run of `Decide`s at a leader (M8 slot by slot, then Q4).
#[test]
fn q4_a_decide_run_that_reaches_the_fence_answers_at_the_slot_that_reached_it() {
    let mut cand = candidate(1);
    let promise = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![(0, b(1, 0), c(1, 1))],
        compacted: 0,
    };
    cand.step(deliver(2, promise));
    cand.step(read(4));
    cand.step(deliver(2, confirmed(b(2, 1), 1)));
    let run = decide_run(0, vec![c(1, 1), c(7, 1)]);
    let effects = cand.step(deliver(0, run));
    assert_eq!(cand.applied(), 2);
    let answers: Vec<&E> = effects
        .iter()
        .filter(|e| matches!(e, Effect::ReadReply { .. }))
        .collect();
    assert_eq!(answers, vec![&read_reply(4, Some(1))], "{effects:?}");
}

#[test]
fn q4_an_operation_the_state_machine_answers_only_through_the_log_gets_no_output() {
    let (mut l, _) = Replica::new(config(0), KvStore::new()).unwrap();
    let put = KvOp::Put {
        key: "k".into(),
        value: "v".into(),
    };
    l.step(Input::Read { id: 1, op: put });
    let effects = l.step(Input::Message {
        from: 1,
        msg: Message::Confirmed {
            ballot: b(1, 0),
            round: 1,
        },
    });
    assert_eq!(
        effects,
        vec![Effect::ReadReply {
            id: 1,
            output: None
        }]
    );
    let get = KvOp::Get { key: "k".into() };
    l.step(Input::Read { id: 2, op: get });
    let effects = l.step(Input::Message {
        from: 2,
        msg: Message::Confirmed {
            ballot: b(1, 0),
            round: 2,
        },
    });
    let value = Some(KvOutput::Value(None));
    assert_eq!(
        effects,
        vec![Effect::ReadReply {
            id: 2,
            output: value
        }]
    );
}

#[test]
fn q5_answers_for_another_ballot_or_at_a_follower_change_nothing() {
    let mut f = follower(1);
    let before = f.clone();
    assert_eq!(f.step(deliver(0, confirmed(b(1, 0), 1))), vec![]);
    assert_eq!(f, before);
    let mut l = leader_with_slot_0_chosen();
    let before = l.clone();
    assert_eq!(
        l.step(deliver(1, confirmed(b(1, 0), 1))),
        vec![],
        "no round out"
    );
    assert_eq!(l, before);
}

#[test]
fn r1_an_outstanding_confirmation_round_goes_again_to_the_replicas_that_have_not_confirmed_it() {
    let mut l = start(config_of(0, 5, 2));
    l.step(read(1));
    l.step(deliver(1, confirmed(b(1, 0), 1)));
    let interval = Timing::default().retransmit_interval_ms;
    let effects = l.step(tick(interval));
    let again: Vec<&E> = effects
        .iter()
        .filter(|e| matches!(e, Effect::Send { msg, .. } if msg.kind() == "confirm"))
        .collect();
    let round_1 = confirm(b(1, 0), 1);
    assert_eq!(
        again,
        vec![
            &send(2, round_1.clone()),
            &send(3, round_1.clone()),
            &send(4, round_1)
        ],
        "not to replica 1, which confirmed"
    );
    l.step(deliver(3, confirmed(b(1, 0), 1)));
    let effects = l.step(tick(2 * interval));
    assert!(
        effects
            .iter()
            .all(|e| !matches!(e, Effect::Send { msg, .. } if msg.kind() == "confirm")),
        "no round outstanding, nothing sent again: {effects:?}"
    );
}
