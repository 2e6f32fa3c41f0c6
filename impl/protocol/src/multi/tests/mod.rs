//! Exact-effect tests, one or more per rule of `specs/protocol.md` (M1–M12, T, H1, H2, R1,
//! K1–K7, Q1–Q5, L1–L6): one input in, the exact list of effects out. One file per group of handlers
//! (openraft's `engine/handler/*_test.rs`); the helpers that build inputs, messages, records
//! and replicas are here.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::ballot::{Ballot, NodeId};

mod compaction_test;
mod config_records_test;
mod election_test;
mod leases_test;
mod phase2_test;
mod reads_test;
mod runs_test;
mod timers_test;
mod trace_test;

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
        catch_up_entries_max: crate::multi::CATCH_UP_ENTRIES_MAX,
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
fn election_due(r: &R) -> InputOf<Sm> {
    let now_ms = r.state().timers.election_at_ms.unwrap_or(r.now_ms());
    Input::Tick { now_ms }
}

fn deliver(from: NodeId, msg: MessageOf<Sm>) -> InputOf<Sm> {
    Input::Message { from, msg }
}

fn request(client: u64, seq: u64) -> InputOf<Sm> {
    Input::ClientRequest(cmd(client, seq))
}

fn send(to: NodeId, msg: MessageOf<Sm>) -> E {
    Effect::Send { to, msg }
}

fn persist(record: Record<u32>) -> E {
    Effect::Persist(record)
}

/// A run of one slot; `run` for longer ones.
fn accept(ballot: Ballot, slot: Slot, entry: Entry<u32>) -> MessageOf<Sm> {
    Message::Accept {
        ballot,
        slot,
        entries: vec![entry],
    }
}

fn accept_run(ballot: Ballot, slot: Slot, entries: Vec<Entry<u32>>) -> MessageOf<Sm> {
    Message::Accept {
        ballot,
        slot,
        entries,
    }
}

fn accepted(ballot: Ballot, slot: Slot) -> MessageOf<Sm> {
    accepted_run(ballot, slot, 1)
}

fn accepted_run(ballot: Ballot, slot: Slot, count: u64) -> MessageOf<Sm> {
    Message::Accepted {
        ballot,
        slot,
        count,
    }
}

fn decide(slot: Slot, entry: Entry<u32>) -> MessageOf<Sm> {
    decide_run(slot, vec![entry])
}

fn decide_run(slot: Slot, entries: Vec<Entry<u32>>) -> MessageOf<Sm> {
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

// ------------------------------------------------------------- shared by timers and compaction

/// The leader with slot 0 chosen (`c(1, 1)`, accepted by replica 1).
fn leader_with_slot_0_chosen() -> R {
    let mut r = leader();
    r.step(request(1, 1));
    r.step(deliver(1, accepted(b(1, 0), 0)));
    assert_eq!(r.applied(), 1);
    r
}

fn read(id: ReadId) -> InputOf<Sm> {
    Input::Read { id, op: 0 }
}

fn confirm(ballot: Ballot, round: u64) -> MessageOf<Sm> {
    Message::Confirm { ballot, round }
}

fn confirmed(ballot: Ballot, round: u64) -> MessageOf<Sm> {
    Message::Confirmed { ballot, round }
}

fn heartbeat(ballot: Ballot) -> MessageOf<Sm> {
    Message::Heartbeat { ballot }
}

fn tick(now_ms: Millis) -> InputOf<Sm> {
    Input::Tick { now_ms }
}

/// Every rule of `specs/protocol.md` the cores implement has a unit test named after it
/// (`m7_...`, `s2_...`; a test of two rules names both, `m2_m12_...`). A rule added to the
/// spec without one fails here.
#[test]
fn every_implemented_rule_has_a_unit_test_named_after_it() {
    const IMPLEMENTED: &[char] = &['M', 'S', 'K', 'H', 'R', 'Q', 'L'];
    let spec = include_str!("../../../../../specs/protocol.md");
    let tests = [
        include_str!("compaction_test.rs"),
        include_str!("config_records_test.rs"),
        include_str!("election_test.rs"),
        include_str!("leases_test.rs"),
        include_str!("phase2_test.rs"),
        include_str!("reads_test.rs"),
        include_str!("runs_test.rs"),
        include_str!("timers_test.rs"),
        include_str!("trace_test.rs"),
        include_str!("../../synod.rs"),
    ]
    .concat();
    let test_names: Vec<&str> = tests
        .split("fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .collect();
    // A rule is defined by a row of a rule table (`| M2' | ...`); an id in prose (`R2'`
    // named as an invariant, say) is not a rule.
    let mut rules: Vec<String> = spec
        .lines()
        .filter_map(|line| line.strip_prefix("| ")?.split(" |").next())
        .map(|cell| cell.trim_end_matches('\''))
        .filter(|word| {
            let mut chars = word.chars();
            chars.next().is_some_and(|c| IMPLEMENTED.contains(&c))
                && chars.next().is_some_and(|c| c.is_ascii_digit())
                && word[1..].chars().all(|c| c.is_ascii_digit() || c == 'b')
        })
        .map(str::to_ascii_lowercase)
        .collect();
    rules.sort();
    rules.dedup();
    assert!(rules.len() >= 28, "rule ids read from the spec: {rules:?}");
    let untested: Vec<&String> = rules
        .iter()
        .filter(|rule| {
            !test_names
                .iter()
                .any(|name| name.split('_').any(|part| part == rule.as_str()))
        })
        .collect();
    assert!(
        untested.is_empty(),
        "rules without a unit test named after them: {untested:?}"
    );
}
