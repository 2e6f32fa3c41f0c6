//! The timers and heartbeats (T, M1 by its deadline, H1, H2, R1); the catch-up timer (K5) is
//! in `compaction_test.rs`.

use super::*;

#[test]
fn h1_a_leader_sends_its_heartbeat_every_interval_and_nothing_between() {
    let mut l = leader_with_slot_0_chosen();
    let interval = Timing::default().heartbeat_interval_ms;
    assert_eq!(l.next_deadline(), Some(interval));
    assert_eq!(l.step(tick(interval - 1)), vec![], "not due yet");
    let beat = heartbeat(b(1, 0));
    // The catch-up timer (K5) fires at a leader too, which asks no one unless below its floor.
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
    assert_eq!(f.step(deliver(0, heartbeat(b(1, 0)))), vec![]);
    let pushed = f.state().timers.election_at_ms.unwrap();
    assert!(pushed >= first - 1 + t.election_timeout_min_ms);
    assert_eq!(
        f.step(tick(first)),
        vec![],
        "the old deadline no longer fires"
    );
    let before = f.clone();
    f.step(deliver(2, heartbeat(b(1, 0))));
    assert_eq!(
        f, before,
        "a heartbeat whose ballot is not its sender's changes nothing"
    );
    let mut f = follower(1);
    f.step(deliver(
        2,
        Message::Prepare {
            ballot: b(2, 2),
            applied: 0,
        },
    ));
    let before = f.clone();
    assert_eq!(f.step(deliver(0, heartbeat(b(1, 0)))), vec![]);
    assert_eq!(f, before, "a heartbeat below the promise changes nothing");
    assert_eq!(f.leader(), Some(2));
}

#[test]
fn m1_the_election_timer_fires_at_its_deadline_and_runs_on_until_the_replica_leads() {
    // The catch-up timer (K5) set past everything here.
    let timing = Timing {
        catch_up_interval_ms: 100_000,
        ..Timing::default()
    };
    let mut f = start(Config {
        timing,
        ..config(1)
    });
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
            compacted: 0,
        },
    ));
    assert!(f.is_leading());
    assert_eq!(f.state().timers.election_at_ms, None);
    let t = Timing::default();
    assert_eq!(
        f.state().timers.heartbeat_at_ms,
        Some(due + t.heartbeat_interval_ms)
    );
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
    f.step(deliver(2, heartbeat(b(3, 2))));
    assert_eq!(f.leader(), Some(2), "a heartbeat above the promise");
    // The old leader's heartbeats keep the election off, but do not outrank 3.2.
    for now_ms in [250, 500] {
        f.step(tick(now_ms));
        f.step(deliver(0, heartbeat(b(1, 0))));
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
