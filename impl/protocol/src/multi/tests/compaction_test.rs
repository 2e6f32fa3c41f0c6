//! Compaction, snapshots and catch-up (K1, K2, K4–K7), and restart from a snapshot.

use std::sync::Arc;

use super::*;

/// What a replica that applied `commands` in slots `0..applied` holds as its snapshot.
fn snapshot_of(applied: Slot, commands: &[Command<u32>]) -> SnapshotOf<Sm> {
    let mut sm = Sm::default();
    let mut clients = ClientTable::default();
    for command in commands {
        let output = sm.apply(command);
        let row = ClientEntry {
            last_seq: command.seq,
            output,
        };
        clients.insert(command.client, row);
    }
    Arc::new(AppliedState {
        applied,
        state_machine: sm.snapshot(),
        clients,
    })
}

fn snapshot_msg(snapshot: &SnapshotOf<Sm>) -> MessageOf<Sm> {
    Message::Snapshot {
        state: Arc::clone(snapshot),
    }
}

fn compact() -> InputOf<Sm> {
    Input::Compact
}

/// The leader with slot 0 chosen and compacted.
fn compacted_leader() -> R {
    let mut l = leader_with_slot_0_chosen();
    l.step(compact());
    l
}

#[test]
fn k1_compaction_snapshots_the_applied_prefix_and_forgets_the_log_below_it() {
    let mut l = leader_with_slot_0_chosen();
    let snapshot = snapshot_of(1, &[cmd(1, 1)]);
    assert_eq!(l.step(compact()), vec![Effect::Snapshot(snapshot.clone())]);
    assert_eq!(l.compacted(), 1);
    assert_eq!(l.snapshot(), Some(&snapshot));
    assert!(l.chosen().is_empty() && l.accepted().is_empty());
    assert_eq!(
        l.durable().accepted.len(),
        0,
        "the log from the snapshot on"
    );
    assert_eq!(l.step(compact()), vec![], "nothing applied since");
    assert_eq!(
        follower(1).step(compact()),
        vec![],
        "nothing applied at all"
    );
}

#[test]
fn k1_a_leader_compacts_without_asking_anyone_and_goes_on_proposing_above() {
    let mut l = compacted_leader();
    assert_eq!(
        l.step(request(2, 1)),
        leader_0_proposes(b(1, 0), 1, c(2, 1))
    );
}

#[test]
fn k2_a_candidate_below_the_compaction_point_gets_the_snapshot_with_the_promise() {
    let mut q = compacted_leader();
    let snapshot = q.snapshot().cloned().unwrap();
    let prepare = |applied| Message::Prepare {
        ballot: b(2, 1),
        applied,
    };
    let promise = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![],
        compacted: 1,
    };
    assert_eq!(
        q.step(deliver(1, prepare(0))),
        vec![
            persist(Record::Promise(b(2, 1))),
            send(1, promise.clone()),
            send(1, snapshot_msg(&snapshot)),
        ]
    );
    assert_eq!(
        q.step(deliver(1, prepare(0))),
        vec![send(1, promise.clone()), send(1, snapshot_msg(&snapshot))],
        "M2' repeats both"
    );
    assert_eq!(
        q.step(deliver(1, prepare(1))),
        vec![send(1, promise)],
        "a candidate at the compaction point needs no snapshot"
    );
}

#[test]
fn k4_a_follower_installs_a_snapshot_past_its_applied_prefix_then_applies_what_follows() {
    let mut f = follower(2);
    f.step(deliver(0, decide(2, c(3, 1))));
    let snapshot = snapshot_of(2, &[cmd(1, 1), cmd(2, 1)]);
    assert_eq!(
        f.step(deliver(1, snapshot_msg(&snapshot))),
        vec![
            Effect::Snapshot(snapshot.clone()),
            executed(2, cmd(3, 1), 2),
        ]
    );
    assert_eq!((f.applied(), f.compacted()), (3, 2));
    assert_eq!(
        f.state_machine().executed,
        vec![cmd(1, 1), cmd(2, 1), cmd(3, 1)]
    );
    assert_eq!(f.clients()[&ClientId(2)].last_seq, 1);
    assert_eq!(f.durable().chosen.keys().collect::<Vec<_>>(), vec![2]);
    let before = f.clone();
    assert_eq!(f.step(deliver(1, snapshot_msg(&snapshot))), vec![]);
    let older = snapshot_of(1, &[cmd(1, 1)]);
    assert_eq!(f.step(deliver(1, snapshot_msg(&older))), vec![]);
    assert_eq!(
        f, before,
        "a snapshot at or below the applied prefix changes nothing"
    );
}

#[test]
fn k4_a_leader_answers_what_the_snapshot_executed_and_proposes_above_it() {
    let mut l = leader_with_slot_0_chosen();
    l.step(request(2, 1));
    assert_eq!(l.state().phase.name(), "leading");
    // Slot 1 (c(2, 1)) was chosen by others and compacted; slot 2 is free. Every own
    // proposal below the snapshot is answered, as the model answers it: slot 0's again (a
    // duplicate reply, which a client ignores).
    let snapshot = snapshot_of(2, &[cmd(1, 1), cmd(2, 1)]);
    assert_eq!(
        l.step(deliver(1, snapshot_msg(&snapshot))),
        vec![
            Effect::Snapshot(snapshot),
            reply(1, 1, Some(0)),
            reply(2, 1, Some(1)),
        ]
    );
    assert_eq!(
        *l.phase(),
        Phase::Leading {
            next_slot: 2,
            votes: SlotMap::new(),
        }
    );
    assert_eq!(
        l.step(request(3, 1)),
        leader_0_proposes(b(1, 0), 2, c(3, 1))
    );
}

#[test]
fn k5_a_follower_asks_the_replica_it_promised_on_the_catch_up_deadline() {
    let mut f = follower(2);
    let interval = Timing::default().catch_up_interval_ms;
    assert_eq!(f.state().timers.catch_up_at_ms, Some(interval));
    assert_eq!(f.step(tick(interval - 1)), vec![]);
    assert_eq!(
        f.step(tick(interval)),
        vec![send(0, Message::Status { applied: 0 })]
    );
    assert_eq!(f.state().timers.catch_up_at_ms, Some(2 * interval));
    f.step(deliver(0, decide(0, c(1, 1))));
    assert_eq!(
        f.step(tick(2 * interval)),
        vec![send(0, Message::Status { applied: 1 })]
    );
}

#[test]
fn k5_a_follower_of_its_own_ballot_asks_every_other_replica() {
    // Refused (M10): it steps down still promising its own ballot 2.1, and the leader of 3.2
    // may never send it a Prepare or an Accept (an idle cluster); asking the replica of its
    // promise would be asking itself.
    let mut r = candidate(1);
    r.step(deliver(
        2,
        Message::Nack {
            ballot: b(2, 1),
            promised: b(3, 2),
        },
    ));
    assert_eq!(*r.phase(), Phase::Follower);
    assert_eq!(r.state().promised, b(2, 1));
    let now = r.state().timers.catch_up_at_ms.unwrap();
    let asked: Vec<E> = r
        .step(tick(now))
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Send {
                    msg: Message::Status { .. },
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        asked,
        vec![
            send(0, Message::Status { applied: 0 }),
            send(2, Message::Status { applied: 0 }),
        ]
    );
}

#[test]
fn k5_a_leader_asks_only_when_below_its_floor_and_then_every_other_replica() {
    let interval = Timing::default().catch_up_interval_ms;
    let not_a_beat = |effects: Vec<E>| -> Vec<E> {
        let beat = |e: &E| {
            matches!(
                e,
                Effect::Send {
                    msg: Message::Heartbeat { .. },
                    ..
                }
            )
        };
        effects.into_iter().filter(|e| !beat(e)).collect()
    };
    let mut l = leader_with_slot_0_chosen();
    assert_eq!(
        not_a_beat(l.step(tick(interval))),
        vec![],
        "not below a floor"
    );
    // Elected on a Promise reporting compaction point 2: slots 0 and 1 are chosen elsewhere.
    let mut r = candidate(1);
    r.step(deliver(
        2,
        Message::Promise {
            ballot: b(2, 1),
            accepted: vec![],
            compacted: 2,
        },
    ));
    assert!(r.is_leading());
    let now = r.state().timers.catch_up_at_ms.unwrap();
    assert_eq!(
        not_a_beat(r.step(tick(now))),
        vec![
            send(0, Message::Status { applied: 0 }),
            send(2, Message::Status { applied: 0 }),
        ]
    );
    let mut c = candidate(2);
    let now = c.state().timers.catch_up_at_ms.unwrap();
    let asked = c.step(tick(now));
    assert!(
        !asked.iter().any(|e| matches!(
            e,
            Effect::Send {
                msg: Message::Status { .. },
                ..
            }
        )),
        "a candidate asks no one: {asked:?}"
    );
}

#[test]
fn k6_a_replica_answers_with_its_snapshot_below_its_compaction_point_and_entries_above() {
    let mut l = compacted_leader();
    let snapshot = l.snapshot().cloned().unwrap();
    l.step(request(2, 1));
    l.step(deliver(1, accepted(b(1, 0), 1)));
    let entries = Message::CatchUp {
        entries: vec![(1, c(2, 1))],
    };
    assert_eq!(
        l.step(deliver(2, Message::Status { applied: 0 })),
        vec![send(2, snapshot_msg(&snapshot)), send(2, entries.clone())]
    );
    assert_eq!(
        l.step(deliver(2, Message::Status { applied: 1 })),
        vec![send(2, entries)]
    );
    assert_eq!(l.step(deliver(2, Message::Status { applied: 2 })), vec![]);
}

#[test]
fn k6_any_replica_answers_not_only_the_leader() {
    let mut f = follower(1);
    f.step(deliver(0, decide(0, c(1, 1))));
    assert_eq!(
        f.step(deliver(2, Message::Status { applied: 0 })),
        vec![send(
            2,
            Message::CatchUp {
                entries: vec![(0, c(1, 1))]
            }
        )]
    );
}

#[test]
fn k6_a_replica_learns_a_catch_up_as_decides_and_applies_in_order() {
    let mut f = follower(2);
    let catch_up = Message::CatchUp {
        entries: vec![(0, c(1, 1)), (1, Entry::Noop), (2, c(2, 1))],
    };
    assert_eq!(
        f.step(deliver(0, catch_up.clone())),
        vec![
            chosen_record(0, c(1, 1)),
            chosen_record(1, Entry::Noop),
            chosen_record(2, c(2, 1)),
            executed(0, cmd(1, 1), 0),
            executed(2, cmd(2, 1), 1),
        ]
    );
    assert_eq!(f.applied(), 3);
    assert_eq!(f.step(deliver(0, catch_up)), vec![], "nothing new twice");
}

#[test]
fn k6_an_entry_chosen_above_a_gap_is_not_learned_twice() {
    let mut f = follower(2);
    let decide = decide(1, c(2, 1));
    assert_eq!(f.step(deliver(0, decide)), vec![chosen_record(1, c(2, 1))]);
    assert_eq!(f.applied(), 0, "slot 0 is still open");
    let catch_up = Message::CatchUp {
        entries: vec![(0, c(1, 1)), (1, c(2, 1))],
    };
    assert_eq!(
        f.step(deliver(0, catch_up)),
        vec![
            chosen_record(0, c(1, 1)),
            executed(0, cmd(1, 1), 0),
            executed(1, cmd(2, 1), 1),
        ],
        "slot 1 was chosen already: no second record for it"
    );
}

#[test]
fn k7_an_accept_below_the_compaction_point_is_answered_with_the_snapshot_and_no_vote() {
    let mut q = compacted_leader();
    let snapshot = q.snapshot().cloned().unwrap();
    let before = q.clone();
    assert_eq!(
        q.step(deliver(1, accept(b(3, 1), 0, c(9, 1)))),
        vec![send(1, snapshot_msg(&snapshot))]
    );
    assert_eq!(q, before, "no vote, no promise, no step down");
    // A run across the compaction point: the snapshot, then M6 for the rest of it.
    let mut f = follower(2);
    f.step(deliver(0, decide(0, c(1, 1))));
    f.step(compact());
    let snapshot = f.snapshot().cloned().unwrap();
    assert_eq!(
        f.step(deliver(0, accept_run(b(1, 0), 0, vec![c(1, 1), c(2, 1)]))),
        vec![
            persist(Record::Promise(b(1, 0))),
            accept_record(1, b(1, 0), c(2, 1)),
            send(0, snapshot_msg(&snapshot)),
            send(0, accepted(b(1, 0), 1)),
        ]
    );
}

#[test]
fn k7_an_accepted_or_decide_below_the_compaction_point_changes_nothing() {
    let mut l = compacted_leader();
    let before = l.clone();
    assert_eq!(l.step(deliver(2, accepted(b(1, 0), 0))), vec![]);
    assert_eq!(l.step(deliver(2, decide(0, c(1, 1)))), vec![]);
    assert_eq!(l, before);
}

/// A leader elected after compaction proposes above its applied prefix, even when the votes
/// the Promises bring (a lagging replica's, for slots long chosen) reach no higher than a
/// slot it has forgotten. Found by `three_replicas_stay_safe_under_any_schedule`: the new
/// leader took `next_slot` from the merged votes alone and proposed a new command into a
/// chosen, compacted slot.
#[test]
fn m4_a_leader_elected_after_compaction_proposes_above_its_applied_prefix() {
    let mut l = leader_with_slot_0_chosen();
    l.step(request(2, 1));
    l.step(deliver(1, accepted(b(1, 0), 1)));
    l.step(compact());
    assert_eq!(l.compacted(), 2);
    let snapshot = (**l.snapshot().unwrap()).clone();
    let (mut r, _) =
        Replica::recover_from(config(0), l.durable(), Some(snapshot), Sm::default(), 0).unwrap();
    assert_eq!(
        (r.applied(), r.chosen().len()),
        (2, 0),
        "both slots forgotten"
    );
    r.step(election_due(&r));
    let stale = Message::Promise {
        ballot: b(2, 0),
        accepted: vec![(0, b(1, 0), c(1, 1))],
        compacted: 0,
    };
    r.step(deliver(1, stale));
    assert!(
        matches!(r.phase(), Phase::Leading { next_slot: 2, .. }),
        "{:?}",
        r.phase()
    );
    assert_eq!(
        r.step(request(3, 1)),
        leader_0_proposes(b(2, 0), 2, c(3, 1))
    );
}

/// Restarting from a snapshot plus a log whose applied prefix was compacted away gives the
/// replica a restart from the whole log gives, client table and state machine included.
#[test]
fn recovery_from_a_snapshot_equals_recovery_from_the_whole_log() {
    let mut l = leader_with_slot_0_chosen();
    let snapshot = l.applied_state();
    let mut log = l.durable().to_records();
    log.extend(records(&l.step(request(2, 1))));
    log.extend(records(&l.step(deliver(1, accepted(b(1, 0), 1)))));
    log.extend(records(&l.step(request(3, 1))));
    let whole = Durable::from_records(log).unwrap();
    let mut compacted = whole.clone();
    compacted.chosen.remove(&0);

    let (from_log, _) = Replica::recover(config(0), whole, Sm::default()).unwrap();
    let (from_snapshot, effects) =
        Replica::recover_from(config(0), compacted, Some(snapshot), Sm::default(), 0).unwrap();
    assert_eq!(effects, vec![]);
    assert_eq!(from_snapshot.applied(), 2);
    assert_eq!(from_snapshot.compacted(), 1);
    assert_eq!(from_snapshot.applied(), from_log.applied());
    assert_eq!(from_snapshot.clients(), from_log.clients());
    assert_eq!(
        from_snapshot.state_machine().executed,
        vec![cmd(1, 1), cmd(2, 1)]
    );
    assert_eq!(
        from_snapshot.state_machine().executed,
        from_log.state_machine().executed
    );
    let mut above = from_log.accepted().clone();
    above.remove_below(1);
    assert_eq!(
        from_snapshot.accepted(),
        &above,
        "the votes above the snapshot"
    );
}

/// What replica 0 emits when it proposes one entry as leader of three: its own vote, then the
/// Accept to both peers.
fn leader_0_proposes(ballot: Ballot, slot: Slot, entry: Entry<u32>) -> Vec<E> {
    vec![
        accept_record(slot, ballot, entry.clone()),
        send(1, accept(ballot, slot, entry.clone())),
        send(2, accept(ballot, slot, entry)),
    ]
}
