//! Exact-effect tests, one or more per rule of `specs/protocol.md` (M1–M12): one input in, the
//! exact list of effects out.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, ThreadId};

use super::*;
use crate::ballot::{Ballot, NodeId};

type Sm = Recorder<u32>;
type R = Replica<Sm>;
type E = ReplicaEffect<Sm>;

fn b(round: u64, node: NodeId) -> Ballot {
    Ballot { round, node }
}

fn config_of(id: NodeId, replicas: u32, window: u64) -> Config {
    Config {
        id,
        replicas: (0..replicas).collect(),
        initial_leader: 0,
        window,
        slot_limit: None,
        timing: Timing::default(),
    }
}

fn config(id: NodeId) -> Config {
    config_of(id, 3, 2)
}

fn cmd(client: u64, seq: u64) -> Command<u32> {
    Command {
        client: ClientId(client),
        seq,
        op: (client * 100 + seq) as u32,
    }
}

fn c(client: u64, seq: u64) -> Entry<u32> {
    Entry::Command(cmd(client, seq))
}

fn start(config: Config) -> R {
    Replica::new(config, Sm::default()).unwrap().0
}

fn leader() -> R {
    start(config(0))
}

fn follower(id: NodeId) -> R {
    start(config(id))
}

/// Replica `id` after its election timer fired once (ballot `2.id`).
fn candidate(id: NodeId) -> R {
    let mut r = follower(id);
    r.step(election_due(&r));
    r
}

/// The tick at which `r`'s election timer fires (M1); at a leader, which has none, a tick at
/// its present time.
fn election_due(r: &R) -> Input<u32> {
    let now_ms = r.state().timers.election_at_ms.unwrap_or(r.now_ms());
    Input::Tick { now_ms }
}

fn deliver(from: NodeId, msg: Message<u32>) -> Input<u32> {
    Input::Message { from, msg }
}

fn request(client: u64, seq: u64) -> Input<u32> {
    Input::ClientRequest(cmd(client, seq))
}

fn send(to: NodeId, msg: Message<u32>) -> E {
    Effect::Send { to, msg }
}

fn persist(record: Record<u32>) -> E {
    Effect::Persist(record)
}

/// A run of one slot; `run` for longer ones.
fn accept(ballot: Ballot, slot: Slot, entry: Entry<u32>) -> Message<u32> {
    Message::Accept {
        ballot,
        slot,
        entries: vec![entry],
    }
}

fn accept_run(ballot: Ballot, slot: Slot, entries: Vec<Entry<u32>>) -> Message<u32> {
    Message::Accept {
        ballot,
        slot,
        entries,
    }
}

fn accepted(ballot: Ballot, slot: Slot) -> Message<u32> {
    accepted_run(ballot, slot, 1)
}

fn accepted_run(ballot: Ballot, slot: Slot, count: u64) -> Message<u32> {
    Message::Accepted {
        ballot,
        slot,
        count,
    }
}

fn decide(slot: Slot, entry: Entry<u32>) -> Message<u32> {
    decide_run(slot, vec![entry])
}

fn decide_run(slot: Slot, entries: Vec<Entry<u32>>) -> Message<u32> {
    Message::Decide { slot, entries }
}

fn accept_record(slot: Slot, ballot: Ballot, entry: Entry<u32>) -> E {
    persist(Record::Accept {
        slot,
        ballot,
        entry,
    })
}

fn chosen_record(slot: Slot, entry: Entry<u32>) -> E {
    persist(Record::Chosen { slot, entry })
}

/// The record of slots chosen with the replica's own votes there.
fn chosen_votes(slot: Slot, count: u64) -> E {
    persist(Record::ChosenVotes { slot, count })
}

fn executed(slot: Slot, command: Command<u32>, output: u64) -> E {
    Effect::Executed {
        slot,
        command,
        output,
    }
}

fn reply(client: u64, seq: u64, output: Option<u64>) -> E {
    Effect::Reply {
        client: ClientId(client),
        seq,
        output,
    }
}

fn voters<Ids: FromIterator<NodeId>>(ids: &[NodeId]) -> Ids {
    ids.iter().copied().collect()
}

/// Every Persist the replica emitted, in order: a write-ahead log.
fn records(effects: &[E]) -> Vec<Record<u32>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(record) => Some(record.clone()),
            _ => None,
        })
        .collect()
}

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
    let prepare: Message<u32> = Message::Prepare { ballot: b(2, 1) };
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
    };
    assert_eq!(
        r.step(deliver(2, Message::Prepare { ballot: b(2, 2) })),
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
    };
    assert_eq!(
        r.step(deliver(1, Message::Prepare { ballot: b(2, 1) })),
        vec![persist(Record::Promise(b(2, 1))), send(1, promise),]
    );
    assert_eq!(*r.phase(), Phase::Follower);
    assert_eq!(r.pending().count(), 0);
}

#[test]
fn m2_repeat_an_equal_prepare_is_answered_again_without_a_write() {
    let mut r = follower(1);
    let promise = Message::Promise {
        ballot: b(1, 0),
        accepted: vec![],
    };
    assert_eq!(
        r.step(deliver(0, Message::Prepare { ballot: b(1, 0) })),
        vec![send(0, promise)]
    );
}

#[test]
fn m2_nack_a_lower_prepare_is_refused_with_the_promise() {
    let mut r = follower(2);
    r.step(deliver(1, Message::Prepare { ballot: b(2, 1) }));
    let before = r.clone();
    assert_eq!(
        r.step(deliver(0, Message::Prepare { ballot: b(1, 0) })),
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
    r.step(deliver(1, Message::Prepare { ballot: b(2, 1) }));
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
    r.step(deliver(1, Message::Prepare { ballot: b(2, 1) }));
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
    r.step(deliver(2, Message::Prepare { ballot: b(2, 2) }));
    r.step(deliver(2, accept(b(2, 2), 1, c(1, 1))));
    assert_eq!(
        r.step(deliver(2, decide(1, c(1, 1)))),
        vec![chosen_votes(1, 1)],
        "seq 1 <= last_seq 2: skipped, no reply"
    );
    assert_eq!(r.state_machine().executed, vec![cmd(1, 2)]);
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

#[test]
fn messages_from_outside_the_configuration_or_from_itself_are_ignored() {
    let mut r = follower(1);
    let before = r.clone();
    let prepare = Message::Prepare { ballot: b(9, 7) };
    assert_eq!(r.step(deliver(7, prepare.clone())), vec![]);
    assert_eq!(r.step(deliver(1, prepare)), vec![]);
    assert_eq!(r, before);
}

#[test]
fn configurations_that_cannot_run_are_refused() {
    let bad = |config: Config| Replica::new(config, Sm::default()).err();
    let base = config(0);
    let duplicate = Config {
        replicas: vec![0, 1, 1],
        ..base.clone()
    };
    assert_eq!(bad(duplicate), Some(ConfigError::DuplicateReplica));
    let stranger = Config {
        id: 5,
        ..base.clone()
    };
    assert_eq!(bad(stranger), Some(ConfigError::NotAReplica(5)));
    let no_leader = Config {
        initial_leader: 4,
        ..base.clone()
    };
    assert_eq!(bad(no_leader), Some(ConfigError::NotAReplica(4)));
    let lone = Config {
        replicas: vec![0],
        ..base.clone()
    };
    assert_eq!(bad(lone), Some(ConfigError::TooFewReplicas(1)));
    let pair = Config {
        replicas: vec![0, 1],
        ..base.clone()
    };
    assert_eq!(bad(pair), None, "two replicas are the least that run");
    let closed = Config { window: 0, ..base };
    assert_eq!(bad(closed), Some(ConfigError::ZeroWindow));
}

/// What an operator reads when the configuration is refused names the fault.
#[test]
fn configuration_errors_say_what_is_wrong() {
    let said = |error: ConfigError| error.to_string();
    assert_eq!(
        said(ConfigError::DuplicateReplica),
        "a replica id appears twice"
    );
    assert_eq!(
        said(ConfigError::NotAReplica(4)),
        "node 4 is not in the replica list"
    );
    assert!(said(ConfigError::ZeroWindow).contains("window"));
    assert!(said(ConfigError::TooFewReplicas(1)).starts_with("1 replica(s): at least 2"));
}

#[test]
fn durable_state_is_the_fold_of_the_persisted_records_and_back() {
    let (mut r, first) = Replica::new(config(0), Sm::default()).unwrap();
    let mut log = records(&first);
    let inputs = [
        request(1, 1),
        request(2, 1),
        deliver(1, accepted(b(1, 0), 0)),
        deliver(2, Message::Prepare { ballot: b(2, 2) }),
        deliver(2, accept(b(2, 2), 1, Entry::Noop)),
        deliver(2, decide(1, Entry::Noop)),
        Input::Tick { now_ms: 10_000 },
    ];
    for input in inputs {
        log.extend(records(&r.step(input)));
        assert_eq!(Durable::from_records(log.clone()).unwrap(), r.durable());
    }
    let durable = r.durable();
    assert_eq!(
        Durable::from_records(durable.to_records()).unwrap(),
        durable
    );
}

/// A leader's voters of a slot are a set of ids, in ascending order whatever order they come
/// in, and serialise as a set would.
#[test]
fn voters_are_a_sorted_set_in_and_out() {
    let mut voters: Voters = [3, 1, 3].into_iter().collect();
    assert_eq!(voters.iter().collect::<Vec<_>>(), [1, 3]);
    assert!(!voters.insert(1), "counted once");
    assert!(voters.insert(2));
    assert!(voters.contains(2) && !voters.contains(0));
    let json = serde_json::to_string(&voters).unwrap();
    assert_eq!(json, "[1,2,3]");
    let from_a_set = serde_json::to_string(&std::collections::BTreeSet::from([1, 2, 3])).unwrap();
    assert_eq!(json, from_a_set);
    let back: Voters = serde_json::from_str("[3,1,1,2]").unwrap();
    assert_eq!(back, voters);
    assert_eq!(Voters::only(7).iter().collect::<Vec<_>>(), [7]);
}

/// A compacted log is as short as the state allows: a record per field that differs from a
/// fresh replica's, none for one that does not.
#[test]
fn durable_state_compacts_to_one_record_per_field_it_holds() {
    assert_eq!(Durable::<u32>::default().to_records(), vec![]);
    let promised = Durable::<u32>::from_records([Record::Promise(b(1, 0))]).unwrap();
    assert_eq!(promised.to_records(), vec![Record::Promise(b(1, 0))]);
    let log = vec![
        Record::Round(2),
        Record::Promise(b(2, 1)),
        Record::Accept {
            slot: 0,
            ballot: b(2, 1),
            entry: c(1, 1),
        },
        Record::Chosen {
            slot: 0,
            entry: c(1, 1),
        },
    ];
    // A log as a replica writes it: older round, promise and vote first, superseded later.
    let mut longer = vec![
        Record::Round(1),
        Record::Promise(b(1, 0)),
        Record::Accept {
            slot: 0,
            ballot: b(1, 0),
            entry: Entry::Noop,
        },
    ];
    longer.extend(log.clone());
    assert_eq!(Durable::from_records(longer).unwrap().to_records(), log);
}

type EventFields = BTreeMap<String, String>;

/// Collects the fields of every core trace event, per thread. It is the global subscriber: a
/// scoped one (`with_default`) races with the callsite-interest cache filled by tests on other
/// threads (tokio-rs/tracing#2874) and lost events in about one run out of five.
#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<HashMap<ThreadId, Vec<EventFields>>>>,
}

/// The core trace events `run` emits on this thread.
fn capture_events(run: impl FnOnce()) -> Vec<EventFields> {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(capture.clone())
            .expect("the core's tests install no other global subscriber");
        capture
    });
    // libtest reuses threads, and once the subscriber is installed every core step records
    // its event: drop what this thread recorded before `run`, in this test or an earlier one.
    capture
        .events
        .lock()
        .unwrap()
        .remove(&thread::current().id());
    run();
    let mut events = capture.events.lock().unwrap();
    events.remove(&thread::current().id()).unwrap_or_default()
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() != TRACE_TARGET {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let mut events = self.events.lock().unwrap();
        events
            .entry(thread::current().id())
            .or_default()
            .push(fields);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn every_transition_emits_exactly_one_trace_event_with_the_stable_fields() {
    let events = capture_events(|| {
        let mut r = leader();
        r.step(request(1, 1));
        r.step(deliver(1, accepted(b(1, 0), 0)));
        r.step(deliver(1, Message::Prepare { ballot: b(0, 1) }));
        r.step(deliver(2, decide(0, c(1, 1))));
        // From a stranger: ignored, but its event still names what arrived and from whom.
        r.step(deliver(9, Message::Prepare { ballot: b(3, 9) }));
    });
    let rules: Vec<_> = events.iter().map(|e| e["rule"].as_str()).collect();
    assert_eq!(rules, ["bootstrap", "M5", "M7", "M2''", "none", "none"]);
    let inputs: Vec<_> = events.iter().map(|e| e["input"].as_str()).collect();
    assert_eq!(
        inputs,
        [
            "bootstrap",
            "client_request",
            "accepted",
            "prepare",
            "decide",
            "prepare"
        ]
    );
    assert_eq!(events[5]["from"], "9");
    let persisted: Vec<_> = events.iter().map(|e| e["persisted"].as_str()).collect();
    assert_eq!(persisted, ["2", "1", "1", "0", "0", "0"]);
    let always = [
        "node",
        "rule",
        "input",
        "promised",
        "round",
        "phase",
        "applied",
        "pending",
        "persisted",
        "sent",
    ];
    for event in events.iter() {
        for field in always {
            assert!(event.contains_key(field), "{field} missing from {event:?}");
        }
    }
    let chose = &events[2];
    assert_eq!(chose["chosen"], "0");
    assert_eq!(chose["slot"], "0");
    assert_eq!(chose["ballot"], "1.0");
    assert_eq!(chose["from"], "1");
    assert_eq!(chose["applied"], "1");
    assert_eq!(chose["phase"], "leading");
    assert_eq!(chose["next_slot"], "1");
    assert_eq!(chose["persisted"], "1");
    assert_eq!(chose["sent"], "2");
    assert!(
        !events[3].contains_key("chosen"),
        "absent when nothing was chosen"
    );
}

#[test]
fn step_into_appends_after_what_the_buffer_holds() {
    // A runtime that has not drained its buffer yet: this step's records go after the effects
    // already there (they belong to an earlier step), still before this step's sends.
    let mut r = leader();
    let mut effects = r.step(request(1, 1));
    let earlier = effects.clone();
    let events = capture_events(|| r.step_into(request(2, 1), &mut effects));
    let a1 = accept(b(1, 0), 1, c(2, 1));
    let mut expected = earlier;
    expected.extend([
        accept_record(1, b(1, 0), c(2, 1)),
        send(1, a1.clone()),
        send(2, a1),
    ]);
    assert_eq!(effects, expected);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0]["persisted"].as_str(), events[0]["sent"].as_str()),
        ("1", "2")
    );
}

// ------------------------------------------------------------- catch-up (C1–C3), snapshots

/// The leader with slot 0 chosen (`c(1, 1)`, accepted by replica 1).
fn leader_with_slot_0_chosen() -> R {
    let mut r = leader();
    r.step(request(1, 1));
    r.step(deliver(1, accepted(b(1, 0), 0)));
    assert_eq!(r.applied(), 1);
    r
}

fn heartbeat(ballot: Ballot, applied: Slot) -> Message<u32> {
    Message::Heartbeat {
        ballot,
        applied,
        all_applied: 0,
    }
}

fn tick(now_ms: Millis) -> Input<u32> {
    Input::Tick { now_ms }
}

#[test]
fn c1_a_follower_behind_the_leaders_heartbeat_asks_it_for_what_it_missed_once_per_interval() {
    let mut f = follower(2);
    let interval = Timing::default().catch_up_interval_ms;
    let status = |applied| send(0, Message::Status { applied });
    assert_eq!(f.step(deliver(0, heartbeat(b(1, 0), 3))), vec![status(0)]);
    assert_eq!(f.state().timers.status_sent, Some((0, 0)));
    assert_eq!(
        f.step(deliver(0, heartbeat(b(1, 0), 3))),
        vec![],
        "paced: reported within the catch-up interval"
    );
    f.step(tick(interval - 1));
    assert_eq!(f.step(deliver(0, heartbeat(b(1, 0), 3))), vec![]);
    f.step(tick(interval));
    assert_eq!(f.step(deliver(0, heartbeat(b(1, 0), 3))), vec![status(0)]);
    f.step(tick(2 * interval));
    assert_eq!(
        f.step(deliver(0, heartbeat(b(1, 0), 0))),
        vec![],
        "not behind, and nothing new to report"
    );
    f.step(deliver(0, decide(0, c(1, 1))));
    assert_eq!(
        f.step(deliver(0, heartbeat(b(1, 0), 1))),
        vec![status(1)],
        "not behind, but it has applied more than it reported"
    );
}

#[test]
fn h1_a_leader_sends_its_heartbeat_every_interval_and_nothing_between() {
    let mut l = leader_with_slot_0_chosen();
    let interval = Timing::default().heartbeat_interval_ms;
    assert_eq!(l.next_deadline(), Some(interval));
    assert_eq!(l.step(tick(interval - 1)), vec![], "not due yet");
    let beat = heartbeat(b(1, 0), 1);
    assert_eq!(
        l.step(tick(interval)),
        vec![send(1, beat.clone()), send(2, beat.clone())]
    );
    assert_eq!(l.step(tick(interval)), vec![], "once per deadline");
    assert_eq!(l.next_deadline(), Some(2 * interval));
    assert_eq!(
        l.step(tick(2 * interval + 7)),
        vec![send(1, beat.clone()), send(2, beat)]
    );
    assert_eq!(
        l.next_deadline(),
        Some(3 * interval + 7),
        "from the tick's time"
    );
}

#[test]
fn h2_a_heartbeat_from_the_leader_pushes_the_election_back_and_a_stale_one_does_not() {
    let mut f = follower(1);
    let first = f.state().timers.election_at_ms.unwrap();
    let t = Timing::default();
    assert!(
        first >= t.election_timeout_max_ms + t.election_timeout_min_ms,
        "a replica that just started waits a longest timeout more: {first}"
    );
    f.step(tick(first - 1));
    assert_eq!(
        f.step(deliver(0, heartbeat(b(1, 0), 0))),
        vec![send(0, Message::Status { applied: 0 })],
        "the first heartbeat is answered with a report (C1)"
    );
    let pushed = f.state().timers.election_at_ms.unwrap();
    assert!(pushed >= first - 1 + t.election_timeout_min_ms);
    assert_eq!(
        f.step(tick(first)),
        vec![],
        "the old deadline no longer fires"
    );
    let before = f.clone();
    f.step(deliver(2, heartbeat(b(1, 0), 0)));
    assert_eq!(
        f, before,
        "a heartbeat whose ballot is not its sender's changes nothing"
    );
    let mut f = follower(1);
    f.step(deliver(2, Message::Prepare { ballot: b(2, 2) }));
    let before = f.clone();
    assert_eq!(f.step(deliver(0, heartbeat(b(1, 0), 5))), vec![]);
    assert_eq!(f, before, "a heartbeat below the promise changes nothing");
    assert_eq!(f.leader(), Some(2));
}

#[test]
fn m1_the_election_timer_fires_at_its_deadline_and_runs_on_until_the_replica_leads() {
    let mut f = follower(1);
    let due = f.state().timers.election_at_ms.unwrap();
    assert_eq!(f.next_deadline(), Some(due));
    assert_eq!(f.step(tick(due - 1)), vec![]);
    let effects = f.step(tick(due));
    assert_eq!(effects[0], persist(Record::Round(2)));
    let again = f.state().timers.election_at_ms.unwrap();
    assert!(again > due, "re-armed after firing");
    f.step(deliver(
        0,
        Message::Promise {
            ballot: b(2, 1),
            accepted: vec![],
        },
    ));
    assert!(f.is_leading());
    assert_eq!(f.state().timers.election_at_ms, None);
    let t = Timing::default();
    assert_eq!(f.next_deadline(), Some(due + t.heartbeat_interval_ms));
}

#[test]
fn m1_election_delays_are_jittered_by_the_configured_seed() {
    let deadline = |seed| {
        let config = Config {
            timing: Timing {
                jitter_seed: seed,
                ..Timing::default()
            },
            ..config(1)
        };
        start(config).state().timers.election_at_ms
    };
    assert_eq!(deadline(1), deadline(1), "deterministic");
    let distinct: std::collections::BTreeSet<_> = (0..16).map(deadline).collect();
    assert!(distinct.len() > 8, "{distinct:?}");
}

#[test]
fn r1_the_leader_re_sends_what_waited_a_whole_interval_to_those_that_did_not_vote() {
    let mut l = start(config_of(0, 5, 4));
    let interval = Timing::default().retransmit_interval_ms;
    let ballot = b(1, 0);
    l.step(request(1, 1));
    l.step(request(2, 1));
    l.step(deliver(1, accepted(ballot, 0)));
    l.step(deliver(2, accepted(ballot, 0)));
    assert_eq!(l.applied(), 1);
    // Slot 1 waits for votes. The first check only marks what is in flight.
    let resent = |effects: Vec<E>| -> Vec<E> {
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
    assert_eq!(
        resent(l.step(tick(interval))),
        vec![],
        "nothing re-sent yet"
    );
    l.step(request(3, 1));
    l.step(request(4, 1));
    l.step(deliver(3, accepted(ballot, 1)));
    l.step(deliver(4, accepted(ballot, 1)));
    // Slot 1 is now chosen; slots 2 and 3 were proposed after the first check.
    assert_eq!(
        resent(l.step(tick(2 * interval))),
        vec![],
        "slot 1 chosen, slots 2 and 3 not in flight a whole interval"
    );
    l.step(deliver(2, accepted(ballot, 3)));
    let both = accept_run(ballot, 2, vec![c(3, 1), c(4, 1)]);
    assert_eq!(
        resent(l.step(tick(3 * interval))),
        vec![
            send(1, both.clone()),
            send(2, accept(ballot, 2, c(3, 1))),
            send(3, both.clone()),
            send(4, both),
        ],
        "one run per replica, without the slots it voted for"
    );
}

#[test]
fn the_leader_a_replica_sends_clients_to_is_the_freshest_it_heard() {
    let l = leader();
    assert_eq!(l.leader(), Some(0));
    let mut f = follower(1);
    assert_eq!(f.leader(), Some(0), "the promise's proposer");
    f.step(deliver(2, heartbeat(b(3, 2), 0)));
    assert_eq!(f.leader(), Some(2), "a heartbeat above the promise");
    // The old leader's heartbeats keep the election off, but do not outrank 3.2.
    for now_ms in [250, 500] {
        f.step(tick(now_ms));
        f.step(deliver(0, heartbeat(b(1, 0), 0)));
    }
    assert_eq!(f.leader(), Some(2));
    f.step(tick(Timing::default().election_timeout_max_ms));
    assert_eq!(
        f.leader(),
        Some(0),
        "3.2 heard too long ago: the promise again"
    );
    let c = candidate(1);
    assert_eq!(c.leader(), None, "a candidate knows no leader but itself");
}

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
    r.step(deliver(1, Message::Prepare { ballot: b(2, 1) }));
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
    let decides: Vec<&Message<u32>> = effects
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
    fn input(&self, leader_ballot: Ballot) -> Input<u32> {
        match self {
            RunStep::Requests(ids) => {
                Input::ClientRequests(ids.iter().map(|&(c, s)| cmd(c, s)).collect())
            }
            RunStep::Prepare { from, round } => deliver(
                *from,
                Message::Prepare {
                    ballot: b(*round, *from),
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
    fn one_by_one(&self, leader_ballot: Ballot) -> Vec<Input<u32>> {
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
    let prepare: Message<u32> = Message::Prepare { ballot: b(2, 1) };
    assert_eq!(
        prepare.per_slot().collect::<Vec<_>>(),
        vec![prepare.clone()]
    );
}

/// Logs, error messages and divergence reports name clients as `client<N>` (cargo-mutants:
/// no test read the formatting).
#[test]
fn client_ids_read_as_client_and_number() {
    assert_eq!(format!("{:?}", ClientId(7)), "client7");
    assert_eq!(ClientId(42).to_string(), "client42");
}
