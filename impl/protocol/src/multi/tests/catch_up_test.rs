//! Catch-up (C2, C3), compaction, and restart from a snapshot.

use super::*;

#[test]
fn c2_the_leader_answers_with_the_chosen_entries_the_follower_lacks() {
    let mut l = leader_with_slot_0_chosen();
    assert_eq!(
        l.step(deliver(2, Message::Status { applied: 0 })),
        vec![send(
            2,
            Message::CatchUp {
                ballot: b(1, 0),
                entries: vec![(0, c(1, 1))],
                all_applied: 0,
            }
        )],
        "replica 1 has not reported: nothing is applied everywhere yet"
    );
    l.step(deliver(1, Message::Status { applied: 1 }));
    let answer = l.step(deliver(2, Message::Status { applied: 1 }));
    assert_eq!(
        answer,
        vec![send(
            2,
            Message::CatchUp {
                ballot: b(1, 0),
                entries: vec![],
                all_applied: 1,
            }
        )],
        "an up-to-date follower still hears from the leader"
    );
}

#[test]
fn c2_a_replica_that_does_not_lead_only_records_the_report() {
    let mut f = follower(1);
    assert_eq!(f.step(deliver(2, Message::Status { applied: 0 })), vec![]);
}

#[test]
fn c3_a_follower_learns_the_entries_it_missed_and_applies_them_in_order() {
    let mut f = follower(2);
    let catch_up = Message::CatchUp {
        ballot: b(1, 0),
        entries: vec![(0, c(1, 1)), (1, Entry::Noop), (2, c(2, 1))],
        all_applied: 1,
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
    assert_eq!((f.applied(), f.compaction_point()), (3, 1));
    assert_eq!(f.step(deliver(0, catch_up)), vec![], "nothing new twice");
}

#[test]
fn c3_an_entry_chosen_above_a_gap_is_not_learned_twice() {
    let mut f = follower(2);
    let decide = decide(1, c(2, 1));
    assert_eq!(f.step(deliver(0, decide)), vec![chosen_record(1, c(2, 1))]);
    assert_eq!(f.applied(), 0, "slot 0 is still open");
    let catch_up = Message::CatchUp {
        ballot: b(1, 0),
        entries: vec![(0, c(1, 1)), (1, c(2, 1))],
        all_applied: 0,
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
fn compaction_forgets_only_what_every_replica_has_applied() {
    let mut l = leader_with_slot_0_chosen();
    assert_eq!(l.compact(), 0, "no follower has reported");
    l.step(deliver(1, Message::Status { applied: 1 }));
    assert_eq!(l.compact(), 0, "replica 2 has not reported");
    l.step(deliver(2, Message::Status { applied: 1 }));
    assert_eq!(l.compact(), 1);
    assert!(l.chosen().is_empty() && l.accepted().is_empty());
    // A late Accepted or Decide for the forgotten slot changes nothing.
    assert_eq!(l.step(deliver(2, accepted(b(1, 0), 0))), vec![]);
    assert_eq!(l.step(deliver(2, decide(0, c(1, 1)))), vec![]);
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
    for peer in [1, 2] {
        l.step(deliver(peer, Message::Status { applied: 2 }));
    }
    assert_eq!(l.compact(), 2);
    let snapshot = l.applied_state();
    let (mut r, _) =
        Replica::recover_from(config(0), l.durable(), Some(snapshot), Sm::default()).unwrap();
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
        vec![
            accept_record(2, b(2, 0), c(3, 1)),
            send(1, accept(b(2, 0), 2, c(3, 1))),
            send(2, accept(b(2, 0), 2, c(3, 1))),
        ]
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
        Replica::recover_from(config(0), compacted, Some(snapshot), Sm::default()).unwrap();
    assert_eq!(effects, vec![]);
    assert_eq!(from_snapshot.applied(), 2);
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
    assert_eq!(from_snapshot.accepted(), from_log.accepted());
}
