//! Phase 1 and leadership: bootstrap, the election (M1), Prepare and Promise (M2, M3), becoming leader (M4), Nack (M10), recovery (M11), stepping down (M12).

use super::*;

#[test]
fn bootstrap_the_initial_leader_persists_round_and_promise_and_leads_without_phase_1() {
    let (r, effects) = Replica::new(config(0), Sm::default()).unwrap();
    assert_eq!(
        effects,
        vec![persist(Record::Round(1)), persist(Record::Promise(b(1, 0)))]
    );
    assert_eq!(
        *r.phase(),
        Phase::Leading {
            next_slot: 0,
            votes: SlotMap::new()
        }
    );
    assert_eq!((r.round(), r.promised()), (1, b(1, 0)));
    assert!(!r.election_timer_armed());
    assert_eq!(
        r.durable(),
        Durable::from_records(records(&effects)).unwrap()
    );
}

#[test]
fn bootstrap_followers_are_promised_to_the_initial_leader_with_nothing_persisted() {
    let (r, effects) = Replica::new(config(2), Sm::default()).unwrap();
    assert_eq!(effects, vec![]);
    assert_eq!(*r.phase(), Phase::Follower);
    assert_eq!((r.round(), r.promised()), (0, b(1, 0)));
    assert!(r.election_timer_armed());
    assert_eq!(r.durable(), Durable::default());
}

#[test]
fn m1_timeout_persists_round_and_promise_then_prepares_the_others() {
    let mut r = follower(1);
    r.step(deliver(0, accept(b(1, 0), 0, c(1, 1))));
    let prepare: MessageOf<Sm> = Message::Prepare {
        ballot: b(2, 1),
        applied: 0,
    };
    assert_eq!(
        r.step(election_due(&r)),
        vec![
            persist(Record::Round(2)),
            persist(Record::Promise(b(2, 1))),
            send(0, prepare.clone()),
            send(2, prepare),
        ],
        "no timer effect: it stays armed"
    );
    assert_eq!(
        *r.phase(),
        Phase::Preparing {
            promises: voters(&[1]),
            merged: SlotMap::from_iter([(0, (b(1, 0), c(1, 1)))]),
            floor: 0,
        }
    );
}

#[test]
fn m1_a_leader_ignores_the_election_timer() {
    let mut r = leader();
    let before = r.clone();
    assert_eq!(r.step(election_due(&r)), vec![]);
    assert_eq!(r, before);
}

#[test]
fn m1_a_new_campaign_goes_above_the_last_and_keeps_pending() {
    let mut r = candidate(1);
    r.step(request(1, 1));
    let effects = r.step(election_due(&r));
    assert_eq!(
        effects[..2],
        [persist(Record::Round(3)), persist(Record::Promise(b(3, 1)))]
    );
    assert_eq!(r.pending().cloned().collect::<Vec<_>>(), vec![cmd(1, 1)]);
}

#[test]
fn m1_a_recovered_replica_never_reuses_a_ballot() {
    let durable = Durable::from_records([Record::Round(4), Record::Promise(b(4, 0))]).unwrap();
    let (mut r, _) = Replica::recover(config(0), durable, Sm::default()).unwrap();
    let effects = r.step(election_due(&r));
    assert_eq!(effects[0], persist(Record::Round(5)));
}

#[test]
fn m2_a_higher_prepare_is_promised_with_every_vote_in_slot_order() {
    let mut r = follower(1);
    r.step(deliver(0, accept(b(1, 0), 2, c(2, 1))));
    r.step(deliver(0, accept(b(1, 0), 0, c(1, 1))));
    let promise = Message::Promise {
        ballot: b(2, 2),
        accepted: vec![(0, b(1, 0), c(1, 1)), (2, b(1, 0), c(2, 1))],
        compacted: 0,
    };
    assert_eq!(
        r.step(deliver(
            2,
            Message::Prepare {
                ballot: b(2, 2),
                applied: 0
            }
        )),
        vec![persist(Record::Promise(b(2, 2))), send(2, promise)]
    );
    assert_eq!(r.promised(), b(2, 2));
}

#[test]
fn m2_m12_a_higher_prepare_makes_the_leader_step_down_and_drop_pending() {
    let mut r = start(config_of(0, 3, 1));
    r.step(request(1, 1));
    r.step(request(2, 1));
    assert_eq!(r.pending().count(), 1, "window 1: the second waits");
    let promise = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![(0, b(1, 0), c(1, 1))],
        compacted: 0,
    };
    assert_eq!(
        r.step(deliver(
            1,
            Message::Prepare {
                ballot: b(2, 1),
                applied: 0
            }
        )),
        vec![persist(Record::Promise(b(2, 1))), send(1, promise),]
    );
    assert_eq!(*r.phase(), Phase::Follower);
    assert_eq!(r.pending().count(), 0);
}

/// M2 and M12 while Preparing: a candidate that hears a higher Prepare promises it, steps
/// down and drops what it held pending.
#[test]
fn m2_m12_a_higher_prepare_makes_a_candidate_step_down_and_drop_pending() {
    let mut r = candidate(1);
    r.step(request(1, 1));
    assert_eq!(r.pending().count(), 1);
    let promise = Message::Promise {
        ballot: b(3, 2),
        accepted: vec![],
        compacted: 0,
    };
    assert_eq!(
        r.step(deliver(
            2,
            Message::Prepare {
                ballot: b(3, 2),
                applied: 0
            }
        )),
        vec![persist(Record::Promise(b(3, 2))), send(2, promise)]
    );
    assert_eq!(*r.phase(), Phase::Follower);
    assert_eq!(r.pending().count(), 0);
}

/// M12's guard: a leader refuses a lower Prepare and a lower Accept (M2'', M6') and stays
/// leader with what it holds pending.
#[test]
fn m12_a_leader_refuses_lower_ballots_and_stays_leader() {
    let mut r = start(config_of(1, 3, 1));
    r.step(election_due(&r));
    r.step(deliver(
        2,
        Message::Promise {
            ballot: b(2, 1),
            accepted: vec![],
            compacted: 0,
        },
    ));
    r.step(request(1, 1));
    r.step(request(2, 1));
    assert_eq!(r.pending().count(), 1, "window 1: the second waits");
    let before = r.clone();
    let nack = Message::Nack {
        ballot: b(1, 0),
        promised: b(2, 1),
    };
    assert_eq!(
        r.step(deliver(
            0,
            Message::Prepare {
                ballot: b(1, 0),
                applied: 0
            }
        )),
        vec![send(0, nack.clone())]
    );
    assert_eq!(
        r.step(deliver(0, accept(b(1, 0), 1, c(9, 1)))),
        vec![send(0, nack)]
    );
    assert_eq!(r, before);
}

#[test]
fn m2_repeat_an_equal_prepare_is_answered_again_without_a_write() {
    let mut r = follower(1);
    let promise = Message::Promise {
        ballot: b(1, 0),
        accepted: vec![],
        compacted: 0,
    };
    assert_eq!(
        r.step(deliver(
            0,
            Message::Prepare {
                ballot: b(1, 0),
                applied: 0
            }
        )),
        vec![send(0, promise)]
    );
}

#[test]
fn m2_nack_a_lower_prepare_is_refused_with_the_promise() {
    let mut r = follower(2);
    r.step(deliver(
        1,
        Message::Prepare {
            ballot: b(2, 1),
            applied: 0,
        },
    ));
    let before = r.clone();
    assert_eq!(
        r.step(deliver(
            0,
            Message::Prepare {
                ballot: b(1, 0),
                applied: 0
            }
        )),
        vec![send(
            0,
            Message::Nack {
                ballot: b(1, 0),
                promised: b(2, 1)
            }
        )]
    );
    assert_eq!(r, before);
}

#[test]
fn m3_a_promise_counts_once_per_replica_and_only_for_the_own_ballot() {
    let mut r = start(config_of(1, 5, 2));
    r.step(election_due(&r));
    let promise = |ballot| Message::Promise {
        ballot,
        accepted: vec![],
        compacted: 0,
    };
    assert_eq!(r.step(deliver(2, promise(b(2, 1)))), vec![]);
    let counted = r.clone();
    assert_eq!(r.step(deliver(2, promise(b(2, 1)))), vec![], "duplicate");
    assert_eq!(r.step(deliver(3, promise(b(1, 0)))), vec![], "stale ballot");
    assert_eq!(r, counted);
    let Phase::Preparing { promises, .. } = r.phase() else {
        panic!("still preparing");
    };
    assert_eq!(*promises, voters(&[1, 2]));
    assert_eq!(
        r.step(deliver(4, promise(b(2, 1)))),
        vec![],
        "a majority of 3 out of 5: leading, nothing to re-propose"
    );
    assert_eq!(
        *r.phase(),
        Phase::Leading {
            next_slot: 0,
            votes: SlotMap::new()
        }
    );
}

#[test]
fn m3_m4_merging_picks_the_highest_ballot_per_slot_and_fills_gaps_with_noop() {
    let mut r = follower(2);
    r.step(deliver(0, accept(b(1, 0), 1, c(1, 1))));
    r.step(deliver(0, accept(b(1, 0), 3, c(3, 1))));
    r.step(deliver(
        1,
        Message::Prepare {
            ballot: b(2, 1),
            applied: 0,
        },
    ));
    r.step(deliver(1, accept(b(2, 1), 1, c(2, 1))));
    r.step(election_due(&r));
    assert_eq!(r.ballot(), b(3, 2));
    let promise = Message::Promise {
        ballot: b(3, 2),
        accepted: vec![
            (1, b(1, 0), c(1, 1)),
            (3, b(2, 1), c(4, 1)),
            (4, b(1, 0), c(5, 1)),
        ],
        compacted: 0,
    };
    let entries = [Entry::Noop, c(2, 1), Entry::Noop, c(4, 1), c(5, 1)];
    let mut expected: Vec<E> = (0..5)
        .map(|s| accept_record(s, b(3, 2), entries[s as usize].clone()))
        .collect();
    let run = accept_run(b(3, 2), 0, entries.to_vec());
    expected.extend([send(0, run.clone()), send(1, run)]);
    assert_eq!(
        r.step(deliver(0, promise)),
        expected,
        "one Accept for the run"
    );
    assert_eq!(
        *r.phase(),
        Phase::Leading {
            next_slot: 5,
            votes: (0..5).map(|s| (s, voters(&[2]))).collect(),
        }
    );
}

#[test]
fn m4_skips_chosen_slots_drops_reproposed_and_executed_pending_then_proposes_the_rest() {
    let mut r = candidate(1);
    for client in [1, 2, 3] {
        r.step(request(client, 1));
    }
    assert_eq!(
        r.step(deliver(0, decide(0, c(1, 1)))),
        vec![chosen_record(0, c(1, 1)), executed(0, cmd(1, 1), 0)],
        "no reply: only a leader replies"
    );
    let promise = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![(1, b(1, 0), c(2, 1))],
        compacted: 0,
    };
    let (a1, a2) = (accept(b(2, 1), 1, c(2, 1)), accept(b(2, 1), 2, c(3, 1)));
    assert_eq!(
        r.step(deliver(2, promise)),
        vec![
            accept_record(1, b(2, 1), c(2, 1)),
            accept_record(2, b(2, 1), c(3, 1)),
            send(0, a1.clone()),
            send(2, a1),
            send(0, a2.clone()),
            send(2, a2),
        ]
    );
    assert_eq!(r.pending().count(), 0);
    assert_eq!(
        *r.phase(),
        Phase::Leading {
            next_slot: 3,
            votes: SlotMap::from_iter([(1, voters(&[1])), (2, voters(&[1]))]),
        }
    );
}

#[test]
fn m10_a_nack_steps_down_and_the_next_ballot_jumps_above_the_refusal() {
    let mut r = candidate(1);
    r.step(request(1, 1));
    let nack = Message::Nack {
        ballot: b(2, 1),
        promised: b(5, 2),
    };
    assert_eq!(
        r.step(deliver(2, nack)),
        vec![persist(Record::Round(5))],
        "the timer stays armed"
    );
    assert_eq!((r.phase().clone(), r.round()), (Phase::Follower, 5));
    assert_eq!(r.pending().count(), 0);
    assert_eq!(r.durable().round, 5, "the jump is persisted");
    let effects = r.step(election_due(&r));
    assert_eq!(effects[0], persist(Record::Round(6)));
}

#[test]
fn m10_a_refusal_in_the_own_round_steps_down_without_a_write() {
    // Ballots of one round are ordered by proposer: the refusal outranks b(2, 1) without
    // raising the round, so there is nothing new to make durable (no fsync on this path).
    let mut r = candidate(1);
    let nack = Message::Nack {
        ballot: b(2, 1),
        promised: b(2, 2),
    };
    assert_eq!(r.step(deliver(2, nack)), vec![]);
    assert_eq!((r.phase().clone(), r.round()), (Phase::Follower, 2));
}

#[test]
fn m10_a_leader_nacked_steps_down_and_arms_the_timer() {
    let mut r = leader();
    let nack = Message::Nack {
        ballot: b(1, 0),
        promised: b(2, 1),
    };
    assert_eq!(r.step(deliver(1, nack)), vec![persist(Record::Round(2))]);
    assert_eq!(*r.phase(), Phase::Follower);
}

/// M10's guard: a duplicate Nack reaching a replica that already stepped down changes
/// nothing; in particular the round is not raised again (no write).
#[test]
fn m10_a_nack_at_a_follower_is_ignored() {
    let mut r = candidate(1);
    let nack = Message::Nack {
        ballot: b(2, 1),
        promised: b(2, 2),
    };
    r.step(deliver(2, nack));
    assert_eq!(*r.phase(), Phase::Follower);
    let before = r.clone();
    let late = Message::Nack {
        ballot: b(2, 1),
        promised: b(7, 0),
    };
    assert_eq!(r.step(deliver(0, late)), vec![]);
    assert_eq!(r, before);
}

/// M3's guard: a Promise reaching a replica that already leads changes nothing, even one
/// carrying a vote it has not seen; nothing is proposed into that slot.
#[test]
fn m3_a_promise_after_the_majority_changes_nothing() {
    let mut r = candidate(1);
    r.step(deliver(
        2,
        Message::Promise {
            ballot: b(2, 1),
            accepted: vec![],
            compacted: 0,
        },
    ));
    assert!(matches!(r.phase(), Phase::Leading { .. }));
    let before = r.clone();
    let late = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![(0, b(1, 0), c(1, 1))],
        compacted: 0,
    };
    assert_eq!(r.step(deliver(0, late)), vec![]);
    assert_eq!(r, before);
}

#[test]
fn m10_a_nack_for_another_ballot_is_ignored() {
    let mut r = candidate(1);
    let before = r.clone();
    let nack = Message::Nack {
        ballot: b(1, 1),
        promised: b(5, 2),
    };
    assert_eq!(r.step(deliver(2, nack)), vec![]);
    assert_eq!(r, before);
}

#[test]
fn m11_recovery_rebuilds_the_applied_prefix_and_client_table_without_replies() {
    let mut r = leader();
    let mut log = records(&[]);
    let mut run = |r: &mut R, input| log.extend(records(&r.step(input)));
    run(&mut r, request(1, 1));
    run(&mut r, request(2, 1));
    run(&mut r, deliver(1, accepted(b(1, 0), 0)));
    run(&mut r, deliver(1, accepted(b(1, 0), 1)));
    run(&mut r, request(1, 2));
    let durable = Durable::from_records(
        [Record::Round(1), Record::Promise(b(1, 0))]
            .into_iter()
            .chain(log),
    )
    .unwrap();
    assert_eq!(durable, r.durable());
    let (back, effects) = Replica::recover(config(0), durable, Sm::default()).unwrap();
    assert_eq!(effects, vec![]);
    assert_eq!(*back.phase(), Phase::Follower);
    assert_eq!(back.applied(), 2);
    assert_eq!(back.clients(), r.clients());
    assert_eq!(back.state_machine(), r.state_machine());
    assert_eq!(back.accepted(), r.accepted(), "the in-flight vote survives");
    assert_eq!(back.pending().count(), 0);
    assert_eq!((back.round(), back.promised()), (1, b(1, 0)));
}

#[test]
fn m11_the_promise_after_recovery_is_the_highest_of_promise_and_votes() {
    let recover = |durable| {
        let (r, _) = Replica::recover(config(1), durable, Sm::default()).unwrap();
        r.promised()
    };
    let vote = |ballot| Record::Accept {
        slot: 3,
        ballot,
        entry: Entry::Noop,
    };
    assert_eq!(
        recover(Durable::default()),
        b(1, 0),
        "the bootstrap promise"
    );
    let voted = Durable::from_records([Record::Promise(b(2, 1)), vote(b(3, 2))]).unwrap();
    assert_eq!(recover(voted), b(3, 2));
    let promised = Durable::from_records([Record::Promise(b(4, 0)), vote(b(3, 2))]).unwrap();
    assert_eq!(recover(promised), b(4, 0));
    let unpromised = Durable::from_records([vote(b(2, 2))]).unwrap();
    assert_eq!(recover(unpromised), b(2, 2));
}

#[test]
fn m11_a_recovered_replica_persists_the_promise_it_acts_on() {
    let durable = Durable::from_records([Record::Accept {
        slot: 0,
        ballot: b(2, 2),
        entry: Entry::Noop,
    }])
    .unwrap();
    let (mut r, _) = Replica::recover(config(1), durable, Sm::default()).unwrap();
    assert_eq!(
        r.step(deliver(2, accept(b(2, 2), 1, Entry::Noop))),
        vec![
            persist(Record::Promise(b(2, 2))),
            accept_record(1, b(2, 2), Entry::Noop),
            send(2, accepted(b(2, 2), 1)),
        ]
    );
}

/// A replica restarted from a snapshot at `applied` with nothing in its log: compacted there.
fn compacted_at(id: NodeId, applied: Slot) -> R {
    let snapshot = AppliedState {
        applied,
        state_machine: Vec::new(),
        clients: ClientTable::default(),
    };
    let (r, _) = Replica::recover_from(
        config(id),
        Durable::default(),
        Some(snapshot),
        Sm::default(),
        0,
    )
    .unwrap();
    r
}

#[test]
fn m2_k2_a_promise_reports_the_compaction_point_and_no_vote_below_it() {
    // A candidate at the compaction point: no snapshot (K2's other half, in
    // `compaction_test.rs`).
    let prepare = Message::Prepare {
        ballot: b(2, 1),
        applied: 2,
    };
    let promise = |compacted| Message::Promise {
        ballot: b(2, 1),
        accepted: vec![],
        compacted,
    };
    let mut q = compacted_at(2, 2);
    assert_eq!(
        q.step(deliver(1, prepare.clone())),
        vec![persist(Record::Promise(b(2, 1))), send(1, promise(2))]
    );
    // Without compaction the Promise reports 0.
    let mut fresh = follower(2);
    assert!(fresh
        .step(deliver(1, prepare))
        .contains(&send(1, promise(0))));
}

/// Session 8's bug, in the core: a majority whose Promises carry no vote but report a
/// compaction point puts the new leader's first proposal at that point, not in slot 0 (which
/// is chosen, and forgotten by the replica that compacted it).
#[test]
fn k3_a_reported_compaction_point_is_the_floor_of_the_new_leaders_proposals() {
    let promise = |compacted| Message::Promise {
        ballot: b(2, 1),
        accepted: vec![],
        compacted,
    };
    for (compacted, slot) in [(2, 2), (0, 0)] {
        let mut r = candidate(1);
        r.step(request(1, 1));
        let proposal = accept(b(2, 1), slot, c(1, 1));
        assert_eq!(
            r.step(deliver(2, promise(compacted))),
            vec![
                accept_record(slot, b(2, 1), c(1, 1)),
                send(0, proposal.clone()),
                send(2, proposal),
            ],
            "compaction point {compacted}"
        );
        assert_eq!(
            *r.phase(),
            Phase::Leading {
                next_slot: slot + 1,
                votes: SlotMap::from_iter([(slot, voters(&[1]))]),
            }
        );
    }
}

#[test]
fn k3_the_floor_skips_re_proposals_below_it_and_keeps_the_ones_above() {
    // A vote in slot 1 merged from one Promise, a compaction point of 1 from another: slot 0
    // is chosen (below the floor) and not re-proposed; slot 1's vote is.
    let mut r = start(config_of(1, 5, 4));
    r.step(election_due(&r));
    let promise = |accepted, compacted| Message::Promise {
        ballot: b(2, 1),
        accepted,
        compacted,
    };
    r.step(deliver(
        2,
        promise(vec![(0, b(1, 0), c(9, 1)), (1, b(1, 0), c(2, 1))], 0),
    ));
    let reproposal = accept(b(2, 1), 1, c(2, 1));
    assert_eq!(
        r.step(deliver(3, promise(vec![], 1))),
        vec![
            accept_record(1, b(2, 1), c(2, 1)),
            send(0, reproposal.clone()),
            send(2, reproposal.clone()),
            send(3, reproposal.clone()),
            send(4, reproposal),
        ]
    );
    assert_eq!(
        *r.phase(),
        Phase::Leading {
            next_slot: 2,
            votes: SlotMap::from_iter([(1, voters(&[1]))]),
        }
    );
}
