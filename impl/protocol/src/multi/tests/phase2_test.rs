//! Phase 2 one slot at a time: requests (M5, M5b), Accept (M6), Accepted (M7), Decide (M8), applying (M9).

use super::*;

#[test]
fn m5_the_stable_leader_skips_phase_1_and_pipelines_up_to_the_window() {
    let mut r = leader();
    let a0 = accept(b(1, 0), 0, c(1, 1));
    assert_eq!(
        r.step(request(1, 1)),
        vec![
            accept_record(0, b(1, 0), c(1, 1)),
            send(1, a0.clone()),
            send(2, a0)
        ]
    );
    let a1 = accept(b(1, 0), 1, c(2, 1));
    assert_eq!(
        r.step(request(2, 1)),
        vec![
            accept_record(1, b(1, 0), c(2, 1)),
            send(1, a1.clone()),
            send(2, a1)
        ]
    );
    assert_eq!(r.step(request(3, 1)), vec![], "window of 2 is full");
    assert_eq!(r.pending().cloned().collect::<Vec<_>>(), vec![cmd(3, 1)]);
}

#[test]
fn m5_a_request_already_in_the_log_or_pending_changes_nothing() {
    let mut r = start(config_of(0, 3, 1));
    r.step(request(1, 1));
    r.step(request(2, 1));
    let before = r.clone();
    assert_eq!(r.step(request(1, 1)), vec![], "accepted at the own ballot");
    assert_eq!(r.step(request(2, 1)), vec![], "pending");
    assert_eq!(r, before);
    r.step(deliver(1, accepted(b(1, 0), 0)));
    r.step(deliver(1, accepted(b(1, 0), 1)));
    let before = r.clone();
    let retried = Input::ClientRequest(Command {
        op: 999,
        ..cmd(2, 1)
    });
    assert_eq!(
        r.step(retried),
        vec![reply(2, 1, Some(1))],
        "a request is its (client, seq), whatever the op"
    );
    assert_eq!(r, before);
}

/// Found by random conformance: a Decide (M8) can free room in a leader's window while
/// commands wait. As modelled, only a new request (M5) or a vote (M7) refills it: a retried
/// request proposes nothing, and requests arriving together propose what they would one by
/// one in `(client, seq)` order, each filling the window as it comes.
#[test]
fn m5_room_a_decide_freed_is_refilled_by_new_requests_one_by_one() {
    let mut r = start(config_of(0, 3, 3));
    for client in [5, 6, 7, 8] {
        r.step(request(client, 1));
    }
    assert_eq!(r.pending().cloned().collect::<Vec<_>>(), vec![cmd(8, 1)]);
    r.step(deliver(1, decide_run(0, vec![c(5, 1), c(6, 1)])));
    assert_eq!(r.pending().count(), 1, "M8 proposes nothing");
    let before = r.clone();
    assert_eq!(r.step(request(8, 1)), vec![], "a retried pending request");
    assert_eq!(r, before);
    let effects = r.step(Input::ClientRequests(vec![cmd(2, 1), cmd(1, 1)]));
    let run = accept_run(b(1, 0), 3, vec![c(1, 1), c(8, 1)]);
    assert!(effects.contains(&send(1, run.clone())), "{effects:?}");
    assert!(effects.contains(&send(2, run)), "{effects:?}");
    assert_eq!(
        r.pending().cloned().collect::<Vec<_>>(),
        vec![cmd(2, 1)],
        "(1, 1) came first and filled the window with the least pending"
    );
}

/// The same at M7: where a Decide freed room, a vote short of a majority proposes nothing;
/// the vote that chooses refills the window.
#[test]
fn m7_room_a_decide_freed_is_refilled_only_by_a_vote_that_chooses() {
    let mut r = start(config_of(0, 5, 2));
    for client in [5, 6, 7] {
        r.step(request(client, 1));
    }
    r.step(deliver(1, decide(0, c(5, 1))));
    let effects = r.step(deliver(1, accepted(b(1, 0), 1)));
    assert_eq!(effects, vec![], "two of five votes choose nothing");
    assert_eq!(r.pending().cloned().collect::<Vec<_>>(), vec![cmd(7, 1)]);
    let effects = r.step(deliver(2, accepted(b(1, 0), 1)));
    let a2 = accept(b(1, 0), 2, c(7, 1));
    assert!(effects.contains(&send(1, a2)), "{effects:?}");
    assert_eq!(r.pending().count(), 0);
}

/// Found by conformance: M5 looks for the request in flight, i.e. in a slot that is not
/// chosen yet. A request chosen in a slot that is not applied yet (a slot below it is still
/// open) is not in flight, so it is proposed again; M9 executes it once.
#[test]
fn m5_a_request_chosen_but_not_yet_applied_is_proposed_again() {
    let mut r = start(config_of(0, 3, 3));
    r.step(request(1, 1));
    r.step(request(2, 1));
    r.step(deliver(1, accepted(b(1, 0), 1)));
    assert_eq!(r.applied(), 0, "slot 0 is still open");
    let a2 = accept(b(1, 0), 2, c(2, 1));
    assert_eq!(
        r.step(request(2, 1)),
        vec![
            accept_record(2, b(1, 0), c(2, 1)),
            send(1, a2.clone()),
            send(2, a2)
        ]
    );
}

/// Found by conformance (the core panicked on a reversed slot range): a leader that learns
/// slots at or above its `next_slot` from a higher leader's Decide (M8, before that leader's
/// Accept makes it step down) still takes requests, and M5b proposes at `next_slot`.
#[test]
fn m5_a_leader_behind_a_decided_slot_proposes_at_next_slot() {
    let mut r = leader();
    let decide = decide(0, c(1, 1));
    assert_eq!(
        r.step(deliver(1, decide)),
        vec![
            chosen_record(0, c(1, 1)),
            executed(0, cmd(1, 1), 0),
            reply(1, 1, Some(0))
        ]
    );
    assert_eq!(r.applied(), 1, "applied is past next_slot 0");
    let a0 = accept(b(1, 0), 0, c(2, 1));
    assert_eq!(
        r.step(request(2, 1)),
        vec![
            accept_record(0, b(1, 0), c(2, 1)),
            send(1, a0.clone()),
            send(2, a0)
        ]
    );
}

#[test]
fn m5_an_executed_request_is_answered_from_the_client_table() {
    let mut r = leader();
    r.step(request(1, 1));
    r.step(deliver(2, accepted(b(1, 0), 0)));
    r.step(request(1, 2));
    r.step(deliver(2, accepted(b(1, 0), 1)));
    assert_eq!(r.clients()[&ClientId(1)].last_seq, 2);
    let before = r.clone();
    assert_eq!(r.step(request(1, 2)), vec![reply(1, 2, Some(1))]);
    assert_eq!(
        r.step(request(1, 1)),
        vec![reply(1, 1, None)],
        "older than the last: executed, output no longer kept"
    );
    assert_eq!(r, before);
}

#[test]
fn m5b_the_slot_limit_stops_new_proposals() {
    let mut r = start(Config {
        slot_limit: Some(1),
        ..config(0)
    });
    assert_eq!(r.step(request(1, 1)).len(), 3);
    assert_eq!(r.step(request(2, 1)), vec![]);
    assert_eq!(r.pending().count(), 1);
}

#[test]
fn m5_preparing_a_request_waits_in_pending_in_client_seq_order() {
    let mut r = candidate(1);
    r.step(deliver(0, decide(0, c(9, 1))));
    assert_eq!(r.step(request(2, 1)), vec![]);
    assert_eq!(r.step(request(1, 1)), vec![]);
    let before = r.clone();
    assert_eq!(r.step(request(1, 1)), vec![], "already pending");
    assert_eq!(
        r.step(request(9, 1)),
        vec![],
        "executed: no reply while preparing"
    );
    assert_eq!(r, before);
    let pending: Vec<_> = r.pending().cloned().collect();
    assert_eq!(pending, vec![cmd(1, 1), cmd(2, 1)]);
}

#[test]
fn m5_follower_ignores_requests() {
    let mut r = follower(1);
    let before = r.clone();
    assert_eq!(r.step(request(1, 1)), vec![]);
    assert_eq!(r, before);
}

#[test]
fn m6_accept_persists_the_promise_and_vote_then_answers_the_leader() {
    let mut r = follower(1);
    // The bootstrap promise was never written: storage holds it from the first vote on.
    assert_eq!(
        r.step(deliver(0, accept(b(1, 0), 0, c(1, 1)))),
        vec![
            persist(Record::Promise(b(1, 0))),
            accept_record(0, b(1, 0), c(1, 1)),
            send(0, accepted(b(1, 0), 0)),
        ]
    );
    assert_eq!(
        r.step(deliver(0, accept(b(1, 0), 0, c(1, 1)))),
        vec![send(0, accepted(b(1, 0), 0))],
        "a repeated Accept writes nothing new"
    );
    assert_eq!(r.accepted().get(&0), Some(&(b(1, 0), c(1, 1))));
}

#[test]
fn m6_m12_a_higher_accept_makes_the_leader_step_down() {
    let mut r = start(config_of(0, 3, 1));
    r.step(request(1, 1));
    r.step(request(2, 1));
    assert_eq!(
        r.step(deliver(1, accept(b(2, 1), 0, Entry::Noop))),
        vec![
            persist(Record::Promise(b(2, 1))),
            accept_record(0, b(2, 1), Entry::Noop),
            send(1, accepted(b(2, 1), 0)),
        ]
    );
    assert_eq!(*r.phase(), Phase::Follower);
    assert_eq!(r.pending().count(), 0);
}

#[test]
fn m6_nack_an_accept_below_the_promise_is_refused() {
    let mut r = follower(2);
    r.step(deliver(
        1,
        Message::Prepare {
            ballot: b(2, 1),
            applied: 0,
        },
    ));
    assert_eq!(
        r.step(deliver(0, accept(b(1, 0), 0, c(1, 1)))),
        vec![send(
            0,
            Message::Nack {
                ballot: b(1, 0),
                promised: b(2, 1)
            }
        )]
    );
    assert!(r.accepted().is_empty());
}

#[test]
fn m7_m9_a_majority_chooses_decides_applies_replies_and_refills_the_window() {
    let mut r = leader();
    for client in [1, 2, 3] {
        r.step(request(client, 1));
    }
    let decide = decide(0, c(1, 1));
    let a2 = accept(b(1, 0), 2, c(3, 1));
    assert_eq!(
        r.step(deliver(1, accepted(b(1, 0), 0))),
        vec![
            chosen_votes(0, 1),
            accept_record(2, b(1, 0), c(3, 1)),
            send(1, decide.clone()),
            send(2, decide),
            executed(0, cmd(1, 1), 0),
            reply(1, 1, Some(0)),
            send(1, a2.clone()),
            send(2, a2),
        ]
    );
    assert_eq!(r.applied(), 1);
}

#[test]
fn m7_votes_for_other_ballots_repeats_and_chosen_slots_are_ignored() {
    let mut r = start(config_of(0, 5, 2));
    r.step(request(1, 1));
    let vote = |from, ballot| deliver(from, accepted(ballot, 0));
    assert_eq!(r.step(vote(1, b(2, 1))), vec![], "another ballot");
    assert_eq!(r.step(vote(1, b(1, 0))), vec![]);
    assert_eq!(r.step(vote(1, b(1, 0))), vec![], "counted once");
    assert_eq!(r.step(vote(0, b(1, 0))), vec![], "not from itself");
    let Phase::Leading { votes, .. } = r.phase() else {
        panic!("leading");
    };
    assert_eq!(votes.get(&0), Some(&voters(&[0, 1])));
    assert_eq!(r.step(vote(3, b(1, 0)))[0], chosen_votes(0, 1));
    assert_eq!(r.step(vote(4, b(1, 0))), vec![], "already chosen");
}

#[test]
fn m8_m9_decide_persists_and_applies_in_slot_order() {
    let mut r = follower(1);
    let decide = |slot, entry| deliver(0, decide(slot, entry));
    assert_eq!(r.step(decide(1, c(2, 1))), vec![chosen_record(1, c(2, 1))]);
    assert_eq!(r.applied(), 0, "slot 0 is not chosen yet");
    assert_eq!(
        r.step(decide(0, c(1, 1))),
        vec![
            chosen_record(0, c(1, 1)),
            executed(0, cmd(1, 1), 0),
            executed(1, cmd(2, 1), 1)
        ]
    );
    assert_eq!(r.applied(), 2);
    assert_eq!(r.step(decide(0, c(1, 1))), vec![], "duplicate Decide");
}

#[test]
fn m9_a_command_chosen_twice_is_executed_once_and_noop_is_skipped() {
    let mut r = follower(1);
    for (slot, entry) in [(0, c(1, 1)), (1, Entry::Noop), (2, c(1, 1))] {
        r.step(deliver(0, decide(slot, entry)));
    }
    assert_eq!(r.applied(), 3);
    assert_eq!(r.state_machine().executed, vec![cmd(1, 1)]);
}

/// A chosen entry is recorded by naming the replica's vote only where the vote is that entry:
/// a Decide for an entry the replica did not vote for (another leader's, after a lost Accept)
/// writes the entry itself, and the fold of the log learns the chosen entry either way.
#[test]
fn m8_the_record_names_the_vote_only_when_the_vote_is_what_was_chosen() {
    let mut r = follower(1);
    let mut log = Vec::new();
    log.extend(records(
        &r.step(deliver(0, accept_run(b(1, 0), 0, vec![c(1, 1), c(2, 1)]))),
    ));
    let decided = r.step(deliver(0, decide_run(0, vec![c(1, 1), c(3, 1)])));
    assert_eq!(
        decided[..2],
        [chosen_votes(0, 1), chosen_record(1, c(3, 1))],
        "slot 0 is the vote, slot 1 is not"
    );
    log.extend(records(&decided));
    let durable = Durable::from_records(log).unwrap();
    assert_eq!(durable.chosen.get(&0), Some(&c(1, 1)));
    assert_eq!(durable.chosen.get(&1), Some(&c(3, 1)));
    assert_eq!(durable, r.durable());
}

/// A chosen-votes record over a slot with no vote before it, or past the last slot, is a
/// damaged log: refused with the slot, and nothing learned from it.
#[test]
fn a_chosen_votes_record_without_its_votes_does_not_fold() {
    let vote = |slot| Record::Accept {
        slot,
        ballot: b(1, 0),
        entry: c(1, slot),
    };
    let mut durable = Durable::from_records([vote(0), vote(2)]).unwrap();
    let before = durable.clone();
    let gap = Record::ChosenVotes { slot: 0, count: 3 };
    assert_eq!(durable.apply(gap), Err(RecordError::NoVote { slot: 1 }));
    let beyond = Record::ChosenVotes { slot: 2, count: 2 };
    assert_eq!(durable.apply(beyond), Err(RecordError::NoVote { slot: 3 }));
    let none = Record::ChosenVotes {
        slot: 5,
        count: 1 << 60,
    };
    assert_eq!(durable.apply(none), Err(RecordError::NoVote { slot: 5 }));
    let past = Record::ChosenVotes {
        slot: u64::MAX,
        count: 1,
    };
    assert_eq!(
        durable.apply(past),
        Err(RecordError::RunOverflow {
            slot: u64::MAX,
            count: 1
        })
    );
    assert_eq!(durable, before, "a refused record changes nothing");
    durable
        .apply(Record::ChosenVotes { slot: 2, count: 1 })
        .unwrap();
    assert_eq!(durable.chosen.get(&2), Some(&c(1, 2)));
    assert!(RecordError::NoVote { slot: 1 }
        .to_string()
        .contains("slot 1"));
}

#[test]
fn m9_an_older_retry_chosen_after_a_newer_request_is_skipped() {
    let mut r = leader();
    r.step(request(1, 2));
    r.step(deliver(1, accepted(b(1, 0), 0)));
    r.step(deliver(
        2,
        Message::Prepare {
            ballot: b(2, 2),
            applied: 0,
        },
    ));
    r.step(deliver(2, accept(b(2, 2), 1, c(1, 1))));
    assert_eq!(
        r.step(deliver(2, decide(1, c(1, 1)))),
        vec![chosen_votes(1, 1)],
        "seq 1 <= last_seq 2: skipped, no reply"
    );
    assert_eq!(r.state_machine().executed, vec![cmd(1, 2)]);
}
