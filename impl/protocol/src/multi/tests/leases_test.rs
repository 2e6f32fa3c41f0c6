//! Leader leases (L1–L6, specs/protocol.md): a replica that answers a confirmation round
//! promises no higher ballot for `lease_ms` of its clock, and the leader whose round a
//! majority answered answers reads with no round for `lease_ms - margin` of its own clock
//! after it sent the round.

use super::*;

const LEASE_MS: Millis = 100;
const MARGIN_MS: Millis = 20;

fn leased(id: NodeId) -> Config {
    let mut config = config(id);
    config.timing.lease_ms = LEASE_MS;
    config.timing.lease_margin_ms = MARGIN_MS;
    config
}

fn prepare(ballot: Ballot) -> MessageOf<Sm> {
    Message::Prepare { ballot, applied: 0 }
}

/// The initial leader with leases, whose bootstrap round (L5') replica 1 confirmed at time 0:
/// it holds a lease until `LEASE_MS - MARGIN_MS`.
fn leased_leader() -> R {
    let mut l = start(leased(0));
    l.step(deliver(1, confirmed(b(1, 0), 1)));
    l
}

#[test]
fn l5_prime_the_initial_leader_starts_a_confirmation_round_at_bootstrap() {
    let (l, effects) = Replica::new(leased(0), Sm::default()).unwrap();
    let rounds: Vec<&E> = effects
        .iter()
        .filter(|e| matches!(e, Effect::Send { .. }))
        .collect();
    assert_eq!(
        rounds,
        vec![&send(1, confirm(b(1, 0), 1)), &send(2, confirm(b(1, 0), 1))]
    );
    assert_eq!(l.state().lease.round_lease, Some(LEASE_MS - MARGIN_MS));
    let (plain, effects) = Replica::new(config(0), Sm::default()).unwrap();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Send { .. })),
        "without leases a leader sends nothing at bootstrap"
    );
    assert_eq!(plain.state().reads.started, 0);
}

#[test]
fn l1_confirming_a_round_grants_a_lease_on_the_own_clock() {
    let mut f = start(leased(1));
    f.step(tick(30));
    assert_eq!(
        f.step(deliver(0, confirm(b(1, 0), 1))),
        vec![send(0, confirmed(b(1, 0), 1))]
    );
    assert_eq!(f.state().lease.grant_until, Some(30 + LEASE_MS));
    f.step(tick(50));
    f.step(deliver(0, confirm(b(1, 0), 2)));
    assert_eq!(f.state().lease.grant_until, Some(50 + LEASE_MS), "extended");
    // A refused round (below the promise) grants nothing.
    let mut g = start(leased(2));
    g.step(deliver(1, prepare(b(2, 1))));
    assert_eq!(
        g.step(deliver(0, confirm(b(1, 0), 1))),
        vec![send(
            0,
            Message::Nack {
                ballot: b(1, 0),
                promised: b(2, 1)
            }
        )]
    );
    assert_eq!(g.state().lease.grant_until, None);
}

#[test]
fn l2_a_higher_prepare_gets_neither_promise_nor_nack_while_a_grant_holds() {
    let mut f = start(leased(1));
    f.step(deliver(0, confirm(b(1, 0), 1)));
    let before = f.state().clone();
    assert_eq!(f.step(deliver(2, prepare(b(2, 2)))), vec![]);
    assert_eq!(f.state().promised, before.promised, "no promise");
    // The same ballot as the promise is repeated: it promises nothing new.
    let repeat = f.step(deliver(0, prepare(b(1, 0))));
    assert!(matches!(
        repeat.as_slice(),
        [Effect::Send {
            msg: Message::Promise { .. },
            ..
        }]
    ));
    // Once the grant's end passes, the Prepare is promised.
    f.step(tick(LEASE_MS));
    assert_eq!(f.state().lease.grant_until, None, "forgotten once passed");
    let effects = f.step(deliver(2, prepare(b(2, 2))));
    assert_eq!(f.state().promised, b(2, 2));
    assert!(records(&effects).contains(&Record::Promise(b(2, 2))));
}

#[test]
fn l2_prime_a_replica_does_not_campaign_while_a_grant_holds() {
    let mut f = start(leased(1));
    f.step(deliver(0, confirm(b(1, 0), 1)));
    // An election timeout shorter than the grant cannot be configured; a restart's L6 grant
    // or a late confirmation can still meet a due timer.
    let mut state = f.state().clone();
    state.timers.election_at_ms = Some(10);
    let mut f = Replica::from_state(leased(1), state, None, Sm::default()).unwrap();
    assert_eq!(f.step(tick(10)), vec![], "no Prepare");
    assert_eq!(f.state().round, 0);
    assert!(f.election_timer_armed(), "the timer runs on");
    let due = f.state().timers.election_at_ms.unwrap();
    assert!(due > 10);
}

#[test]
fn l3_l4_a_confirmed_round_gives_a_lease_counted_from_when_it_was_sent() {
    let mut l = start(leased(0));
    // The round went out at 0; the confirmation arrives at 50.
    l.step(tick(50));
    l.step(deliver(1, confirmed(b(1, 0), 1)));
    let lease = l.state().lease;
    assert_eq!(
        lease.lease_until,
        Some(LEASE_MS - MARGIN_MS),
        "from the send"
    );
    assert_eq!(lease.round_lease, None);
    // A later round extends it from its own send.
    l.step(read(1));
    assert_eq!(
        l.state().lease.round_lease,
        None,
        "answered under the lease"
    );
    l.step(tick(LEASE_MS - MARGIN_MS));
    assert_eq!(l.state().lease.lease_until, None, "expired");
    l.step(read(2));
    assert_eq!(
        l.state().lease.round_lease,
        Some(2 * (LEASE_MS - MARGIN_MS))
    );
}

#[test]
fn l5_a_read_under_the_lease_is_answered_at_arrival_with_no_round() {
    let mut l = leased_leader();
    assert_eq!(
        l.step(read(1)),
        vec![Effect::ReadReply {
            id: 1,
            output: Some(0)
        }]
    );
    assert_eq!(l.state().reads.started, 1, "no round of its own");
    // Once the lease ends, a read needs a round again (Q1).
    l.step(tick(LEASE_MS - MARGIN_MS));
    assert_eq!(
        l.step(read(2)),
        vec![send(1, confirm(b(1, 0), 2)), send(2, confirm(b(1, 0), 2))]
    );
}

#[test]
fn l5_m12_a_leader_that_steps_down_holds_no_lease() {
    let mut l = leased_leader();
    assert!(l.state().lease.lease_until.is_some());
    l.step(deliver(1, prepare(b(2, 1))));
    assert!(!l.is_leading());
    assert_eq!(l.state().lease, Lease::default());
    assert_eq!(l.step(read(1)), vec![], "a follower answers no read");
}

#[test]
fn l6_a_restarted_replica_grants_itself_a_whole_lease_from_recovery() {
    let mut f = start(leased(1));
    f.step(deliver(2, prepare(b(2, 2))));
    let (mut r, _) =
        Replica::recover_from(leased(1), f.durable(), None, Sm::default(), 500).unwrap();
    assert_eq!(r.now_ms(), 500);
    assert_eq!(r.state().lease.grant_until, Some(500 + LEASE_MS));
    assert_eq!(
        r.step(deliver(0, prepare(b(3, 0)))),
        vec![],
        "no promise while the grant it may have forgotten could hold"
    );
    r.step(tick(500 + LEASE_MS));
    r.step(deliver(0, prepare(b(3, 0))));
    assert_eq!(r.promised(), b(3, 0));
    let (plain, _) = Replica::recover(config(1), f.durable(), Sm::default()).unwrap();
    assert_eq!(plain.state().lease, Lease::default(), "no leases, no grant");
}

#[test]
fn lease_timing_is_refused_with_reasons() {
    let timing = |lease_ms, lease_margin_ms| Timing {
        lease_ms,
        lease_margin_ms,
        ..Timing::default()
    };
    let refused = |t: Timing| t.validate().expect_err("refused").to_string();
    assert_eq!(timing(100, 20).validate(), Ok(()));
    assert!(refused(timing(20, 20)).contains("must exceed lease_margin_ms (20)"));
    assert!(refused(timing(300, 20)).contains("must be below election_timeout_min_ms (300)"));
    assert!(refused(timing(0, 5)).contains("lease_margin_ms needs lease_ms"));
}
