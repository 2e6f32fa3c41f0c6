//! Configurations, messages from strangers, durable records and their fold, voters, client ids.

use super::*;

#[test]
fn messages_from_outside_the_configuration_or_from_itself_are_ignored() {
    let mut r = follower(1);
    let before = r.clone();
    let prepare = Message::Prepare {
        ballot: b(9, 7),
        applied: 0,
    };
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
    let closed = Config {
        window: 0,
        ..base.clone()
    };
    assert_eq!(bad(closed), Some(ConfigError::ZeroWindow));
    let mute = Config {
        catch_up_entries_max: 0,
        ..base
    };
    assert_eq!(bad(mute), Some(ConfigError::ZeroCatchUp));
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
    assert!(said(ConfigError::ZeroCatchUp).contains("catch-up"));
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
        deliver(
            2,
            Message::Prepare {
                ballot: b(2, 2),
                applied: 0,
            },
        ),
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

/// Logs, error messages and divergence reports name clients as `client<N>` (cargo-mutants:
/// no test read the formatting).
#[test]
fn client_ids_read_as_client_and_number() {
    assert_eq!(format!("{:?}", ClientId(7)), "client7");
    assert_eq!(ClientId(42).to_string(), "client42");
}

/// Reading one state machine's messages as another's maps every command, wherever it sits,
/// and stops at the first that does not map.
#[test]
fn messages_map_every_command_and_stop_at_the_first_that_does_not_map() {
    let relabel = |c: &Command<u32>| -> Result<Command<String>, u32> {
        match c.op {
            999 => Err(c.op),
            op => Ok(Command {
                client: c.client,
                seq: c.seq,
                op: op.to_string(),
            }),
        }
    };
    let strings = |e: &Entry<u32>| e.try_map_command(relabel).unwrap();
    // Snapshots are not mapped here.
    let keep = |_: &SnapshotOf<Sm>| Ok(());
    let promise = Message::Promise {
        ballot: b(2, 1),
        accepted: vec![(0, b(1, 0), c(1, 1)), (3, b(1, 0), Entry::Noop)],
        compacted: 0,
    };
    assert_eq!(
        promise.try_map_commands(relabel, keep),
        Ok(Message::Promise {
            ballot: b(2, 1),
            accepted: vec![(0, b(1, 0), strings(&c(1, 1))), (3, b(1, 0), Entry::Noop)],
            compacted: 0,
        })
    );
    let run = accept_run(b(1, 0), 4, vec![c(2, 1), c(3, 1)]);
    let Ok(Message::Accept { entries, .. }) = run.try_map_commands(relabel, keep) else {
        panic!("an Accept maps to an Accept");
    };
    assert_eq!(entries, vec![strings(&c(2, 1)), strings(&c(3, 1))]);
    let bad = Command {
        client: ClientId(9),
        seq: 1,
        op: 999,
    };
    let catch_up: MessageOf<Sm> = Message::CatchUp {
        entries: vec![(0, c(1, 1)), (1, Entry::Command(bad)), (2, c(2, 1))],
    };
    assert_eq!(catch_up.try_map_commands(relabel, keep), Err(999));
    let heartbeat = heartbeat(b(1, 0));
    let mapped: Message<String, ()> = heartbeat.try_map_commands(relabel, keep).unwrap();
    assert_eq!(mapped.kind(), "heartbeat");
}
