//! The replica log (`impl/src/storage/replica_log.rs`): the record codec, recovery into the
//! core's `Durable` state, refusal on undecodable records, torn tails, replica-level snapshots
//! with compaction, group commit, and a real 3-replica cluster whose node crashes and recovers
//! from its log.

#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use paxos_impl::multi::{
    ClientId, Command, Config, Durable, Entry, Input, KvOp, KvStore, Record, RecordError, Replica,
    SlotMap, StateMachine,
};
use paxos_impl::sim::{ignore, Cluster as Sim, Recovered, Snapshot, Storage};
use paxos_impl::storage::replica_log::{
    decode_record, decode_state_machine, encode_record, encode_state_machine, RECORD_FORMAT_VERSION,
};
use paxos_impl::storage::{
    CodecError, GroupCommitOptions, ReplicaLog, ReplicaLogError, ReplicaLogOptions, Wal, WalOptions,
};
use paxos_impl::Ballot;
use proptest::prelude::*;

type Log = ReplicaLog<KvOp>;

fn small_segments() -> ReplicaLogOptions {
    ReplicaLogOptions {
        wal: WalOptions {
            segment_bytes_max: 256,
            ..WalOptions::default()
        },
        ..ReplicaLogOptions::default()
    }
}

/// The files in `dir` with extension `extension`, sorted.
fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    found.sort();
    found
}

/// The WAL segments in `dir`.
fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, "log")
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    files(dir, "snap")
}

fn put(client: u64, seq: u64) -> Command<KvOp> {
    Command {
        client: ClientId(client),
        seq,
        op: KvOp::Put {
            key: format!("k{client}"),
            value: format!("v{seq}"),
        },
    }
}

fn ballot(round: u64, node: u32) -> Ballot {
    Ballot { round, node }
}

// ------------------------------------------------------------------ strategies

fn op() -> impl Strategy<Value = KvOp> {
    let text = || "[a-z0-9]{0,6}";
    prop_oneof![
        text().prop_map(|key| KvOp::Get { key }),
        (text(), text()).prop_map(|(key, value)| KvOp::Put { key, value }),
        text().prop_map(|key| KvOp::Delete { key }),
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(text())
        )
            .prop_map(|(key, expected, new)| KvOp::Cas { key, expected, new }),
    ]
}

fn entry() -> impl Strategy<Value = Entry<KvOp>> {
    prop_oneof![
        Just(Entry::Noop),
        (any::<u64>(), any::<u64>(), op()).prop_map(|(client, seq, op)| Entry::Command(Command {
            client: ClientId(client),
            seq,
            op
        })),
    ]
}

fn any_ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u32>()).prop_map(|(round, node)| Ballot { round, node })
}

fn record() -> impl Strategy<Value = Record<KvOp>> {
    prop_oneof![
        any::<u64>().prop_map(Record::Round),
        any_ballot().prop_map(Record::Promise),
        (any::<u64>(), any_ballot(), entry()).prop_map(|(slot, ballot, entry)| Record::Accept {
            slot,
            ballot,
            entry
        }),
        (any::<u64>(), entry()).prop_map(|(slot, entry)| Record::Chosen { slot, entry }),
        (any::<u64>(), any::<u64>()).prop_map(|(slot, count)| Record::ChosenVotes { slot, count }),
    ]
}

/// Records over few slots and ballots, so later records overwrite earlier ones.
fn overlapping_record() -> impl Strategy<Value = Record<KvOp>> {
    let small_ballot = (0u64..4, 0u32..3).prop_map(|(r, n)| ballot(r, n));
    prop_oneof![
        (0u64..5).prop_map(Record::Round),
        small_ballot.clone().prop_map(Record::Promise),
        (0u64..6, small_ballot, entry()).prop_map(|(slot, ballot, entry)| Record::Accept {
            slot,
            ballot,
            entry
        }),
        (0u64..6, entry()).prop_map(|(slot, entry)| Record::Chosen { slot, entry }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every record kind survives encode/decode unchanged, behind the version byte.
    #[test]
    fn every_record_round_trips(record in record()) {
        let bytes = encode_record(&record).unwrap();
        prop_assert_eq!(bytes[0], RECORD_FORMAT_VERSION);
        prop_assert_eq!(decode_record::<KvOp>(&bytes).unwrap(), record);
    }

    /// Arbitrary bytes, with or without a valid version byte, decode or fail: never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_record::<KvOp>(&bytes);
        bytes.insert(0, RECORD_FORMAT_VERSION);
        let _ = decode_record::<KvOp>(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// M11: what reopening recovers is the fold of every record appended, whatever the batching.
    #[test]
    fn reopen_recovers_the_fold_of_appended_records(
        batches in proptest::collection::vec(
            proptest::collection::vec(overlapping_record(), 0..5), 0..8)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovered) = Log::open(dir.path(), small_segments()).unwrap();
        prop_assert_eq!(recovered.durable, Durable::default());
        for batch in &batches {
            log.persist(batch).unwrap();
        }
        drop(log);
        let (_, recovered) = Log::open(dir.path(), small_segments()).unwrap();
        let expected = Durable::from_records(batches.into_iter().flatten()).unwrap();
        prop_assert_eq!(recovered.durable, expected);
        prop_assert!(recovered.snapshot.is_none());
    }
}

// ------------------------------------------------------------------ corruption

fn sample_records() -> Vec<Record<KvOp>> {
    vec![
        Record::Round(1),
        Record::Promise(ballot(1, 0)),
        Record::Accept {
            slot: 0,
            ballot: ballot(1, 0),
            entry: Entry::Command(put(1, 1)),
        },
        Record::Chosen {
            slot: 0,
            entry: Entry::Command(put(1, 1)),
        },
    ]
}

/// Writes the sample records, then `payload` as a correctly framed WAL record (index 4).
fn log_with_raw_record(dir: &Path, payload: &[u8]) {
    let (mut log, _) = Log::open(dir, ReplicaLogOptions::default()).unwrap();
    log.persist(&sample_records()).unwrap();
    drop(log);
    let (mut wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
    assert_eq!(wal.append(&[payload]).unwrap(), 4..5);
    wal.sync().unwrap();
}

fn open_error(dir: &Path) -> ReplicaLogError {
    Log::open(dir, ReplicaLogOptions::default()).unwrap_err()
}

#[test]
fn an_undecodable_record_with_a_valid_frame_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // Version 1, then variant tag 200: no such Record variant.
    log_with_raw_record(dir.path(), &[RECORD_FORMAT_VERSION, 200, 1, 2, 3]);
    let error = open_error(dir.path());
    let ReplicaLogError::CorruptRecord {
        file,
        index,
        source,
    } = &error
    else {
        panic!("expected CorruptRecord, got {error}");
    };
    assert_eq!(*index, 4);
    assert!(matches!(source, CodecError::Malformed(_)), "{source}");
    assert_eq!(file.file_name().unwrap(), "wal-00000000000000000000.log");
    let message = error.to_string();
    assert!(message.contains("record index 4"), "{message}");
    assert!(message.contains("refuses to start"), "{message}");
}

/// Version 1 (before `ChosenVotes`) is version 2 without it: a log written before the format
/// gained the record still opens.
#[test]
fn a_version_1_record_still_reads() {
    let record = Record::Accept {
        slot: 3,
        ballot: ballot(1, 0),
        entry: Entry::Command(put(1, 1)),
    };
    let mut payload = encode_record(&record).unwrap();
    assert_eq!(payload[0], 2);
    payload[0] = 1;
    assert_eq!(decode_record::<KvOp>(&payload).unwrap(), record);
    let dir = tempfile::tempdir().unwrap();
    log_with_raw_record(dir.path(), &payload);
    let (_, recovered) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    assert!(recovered.durable.accepted.contains_key(&3));
}

/// A chosen-votes record names the votes before it: recovery learns their entries, and one
/// naming a slot with no vote is a damaged log the node refuses to start on.
#[test]
fn a_chosen_votes_record_recovers_its_votes_and_without_them_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let named = encode_record(&Record::<KvOp>::ChosenVotes { slot: 0, count: 1 }).unwrap();
    log_with_raw_record(dir.path(), &named);
    let (_, recovered) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    assert_eq!(
        recovered.durable.chosen.get(&0),
        Some(&Entry::Command(put(1, 1)))
    );

    let dir = tempfile::tempdir().unwrap();
    let dangling = encode_record(&Record::<KvOp>::ChosenVotes { slot: 0, count: 2 }).unwrap();
    log_with_raw_record(dir.path(), &dangling);
    let error = open_error(dir.path());
    assert!(
        matches!(
            error,
            ReplicaLogError::InconsistentRecord {
                index: 4,
                source: RecordError::NoVote { slot: 1 },
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("record index 4") && message.contains("slot 1"),
        "{message}"
    );
    assert!(message.contains("refuses to start"), "{message}");
}

#[test]
fn an_unknown_version_byte_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload = encode_record(&Record::<KvOp>::Round(7)).unwrap();
    payload[0] = 9;
    log_with_raw_record(dir.path(), &payload);
    let error = open_error(dir.path());
    assert!(
        matches!(
            error,
            ReplicaLogError::CorruptRecord {
                index: 4,
                source: CodecError::UnknownVersion {
                    found: 9,
                    supported: RECORD_FORMAT_VERSION
                },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_huge_length_prefix_or_trailing_bytes_are_errors_not_allocations() {
    // Accept, slot 0, ballot 1.0, Entry::Command, client 1, seq 1, KvOp::Get with a key length
    // of u64::MAX (varint): the decoder must fail on the short input, not allocate.
    let mut huge = vec![RECORD_FORMAT_VERSION, 2, 0, 1, 0, 1, 1, 1, 0];
    huge.extend_from_slice(&[0xff; 9]);
    huge.push(0x01);
    assert!(matches!(
        decode_record::<KvOp>(&huge),
        Err(CodecError::Malformed(_))
    ));
    let mut trailing = encode_record(&Record::<KvOp>::Round(3)).unwrap();
    trailing.push(0);
    assert_eq!(
        decode_record::<KvOp>(&trailing),
        Err(CodecError::TrailingBytes(1))
    );
    assert_eq!(decode_record::<KvOp>(&[]), Err(CodecError::Empty));
}

#[test]
fn a_torn_tail_loses_only_the_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    log.persist(&sample_records()).unwrap();
    drop(log);
    // Half a frame: a header promising 100 bytes, and 5 of them.
    let last = segments(dir.path()).pop().unwrap();
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&100u32.to_le_bytes()).unwrap();
    file.write_all(&[0xab; 4 + 5]).unwrap();
    drop(file);
    let (mut log, recovered) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    assert!(recovered.torn_tail.is_some());
    assert_eq!(
        recovered.durable,
        Durable::from_records(sample_records()).unwrap()
    );
    // The log goes on after the truncation.
    log.persist(&[Record::Round(2)]).unwrap();
    drop(log);
    let (_, recovered) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    assert_eq!(recovered.durable.round, 2);
    assert!(recovered.torn_tail.is_none());
}

// ------------------------------------------------------------------ snapshots

/// Slot `s` accepted at ballot 1.0 then at 2.1 (a superseded vote), then chosen.
fn slot_records(slot: u64) -> Vec<Record<KvOp>> {
    let entry = Entry::Command(put(slot % 3, slot));
    vec![
        Record::Accept {
            slot,
            ballot: ballot(1, 0),
            entry: Entry::Noop,
        },
        Record::Accept {
            slot,
            ballot: ballot(2, 1),
            entry: entry.clone(),
        },
        Record::Chosen { slot, entry },
    ]
}

fn kv_after(chosen: &SlotMap<Entry<KvOp>>, applied: u64) -> KvStore {
    let mut kv = KvStore::new();
    for entry in chosen.range(..applied).map(|(_, e)| e) {
        if let Some(command) = entry.command() {
            kv.apply(command);
        }
    }
    kv
}

/// The full fold, with chosen entries below `applied` dropped: what a snapshot keeps.
fn without_chosen_below(mut durable: Durable<KvOp>, applied: u64) -> Durable<KvOp> {
    durable.chosen.remove_below(applied);
    durable
}

#[test]
fn snapshot_compaction_and_reopen_keep_the_durable_state_above_the_applied_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![Record::Round(2), Record::Promise(ballot(2, 1))];
    all.extend((0..12).flat_map(slot_records));
    let (mut log, _) = Log::open(dir.path(), small_segments()).unwrap();
    log.persist(&all).unwrap();
    let segments_before = segments(dir.path()).len();

    let durable = Durable::from_records(all.clone()).unwrap();
    let kv = kv_after(&durable.chosen, 10);
    let sm_bytes = encode_state_machine(&kv.snapshot()).unwrap();
    let index = log.snapshot(10, &sm_bytes, &durable).unwrap();
    assert_eq!(index, all.len() as u64 - 1);
    assert!(segments(dir.path()).len() < segments_before, "compacted");

    // More records after the snapshot, one of them a new promise and an accept of slot 12.
    let more: Vec<Record<KvOp>> = [Record::Promise(ballot(3, 2))]
        .into_iter()
        .chain(slot_records(12))
        .collect();
    log.persist(&more).unwrap();
    all.extend(more);
    drop(log);

    let (_, recovered) = Log::open(dir.path(), small_segments()).unwrap();
    let expected = without_chosen_below(Durable::from_records(all.clone()).unwrap(), 10);
    assert_eq!(recovered.durable, expected);
    // Every accepted value is kept, chosen-and-applied slots included (module docs).
    assert_eq!(recovered.durable.accepted.len(), 13);
    let snapshot = recovered.snapshot.unwrap();
    assert_eq!(
        (snapshot.applied, snapshot.last_included_index),
        (10, index)
    );
    let mut restored = KvStore::new();
    restored.restore(decode_state_machine(&snapshot.state_machine).unwrap());
    assert_eq!(restored, kv);
    assert_eq!(recovered.records_replayed, 4);
}

#[test]
fn a_second_snapshot_compacts_below_the_older_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_segments()).unwrap();
    let mut all = Vec::new();
    for (round, slots) in [(1u64, 0..6u64), (2, 6..12), (3, 12..14)] {
        let batch: Vec<_> = [Record::Round(round)]
            .into_iter()
            .chain(slots.flat_map(slot_records))
            .collect();
        log.persist(&batch).unwrap();
        all.extend(batch);
        let durable = Durable::from_records(all.clone()).unwrap();
        let applied = durable.chosen.len() as u64;
        let sm = encode_state_machine(&kv_after(&durable.chosen, applied).snapshot()).unwrap();
        log.snapshot(applied, &sm, &durable).unwrap();
    }
    let first_kept = log.wal().first_index();
    drop(log);
    assert_eq!(snapshot_files(dir.path()).len(), 2, "two snapshots kept");
    // The older kept snapshot covers the first two batches (1 + 18 + 1 + 18 records).
    assert!(
        first_kept <= 38,
        "log still reaches back to the older snapshot"
    );
    assert!(first_kept > 0, "compacted");
    let (_, recovered) = Log::open(dir.path(), small_segments()).unwrap();
    let expected = without_chosen_below(Durable::from_records(all).unwrap(), 14);
    assert_eq!(recovered.durable, expected);
    assert_eq!(recovered.snapshot.unwrap().applied, 14);
}

#[test]
fn a_snapshot_that_does_not_decode_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    log.persist(&sample_records()).unwrap();
    drop(log);
    paxos_impl::storage::write_snapshot(dir.path(), 3, &[42, 0, 0]).unwrap();
    let error = open_error(dir.path());
    assert!(
        matches!(
            error,
            ReplicaLogError::CorruptSnapshot {
                source: CodecError::UnknownVersion { found: 42, .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn group_commit_persists_submitted_steps_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    let group = log
        .into_group_commit(GroupCommitOptions::default())
        .unwrap();
    let steps: Vec<Vec<Record<KvOp>>> = (0..8).map(slot_records).collect();
    let tickets: Vec<_> = steps.iter().map(|s| group.submit(s).unwrap()).collect();
    for (i, ticket) in tickets.into_iter().enumerate() {
        let start = i as u64 * 3;
        assert_eq!(ticket.wait().unwrap(), start..start + 3);
    }
    let log = group.shutdown().unwrap();
    assert_eq!(log.next_index(), 24);
    drop(log);
    let (_, recovered) = Log::open(dir.path(), ReplicaLogOptions::default()).unwrap();
    assert_eq!(
        recovered.durable,
        Durable::from_records(steps.into_iter().flatten()).unwrap()
    );
}

// ------------------------------------------------------------------ a real cluster

/// A replica's storage in the in-memory cluster: its `ReplicaLog` on disk. Every `Persist` of
/// a step is durable before the step's sends go out (persist before you speak).
struct DiskLog {
    dir: tempfile::TempDir,
    log: Option<Log>,
    /// The step's records, persisted together at its end.
    step: Vec<Record<KvOp>>,
}

impl DiskLog {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (log, recovered) = Log::open(dir.path(), small_segments()).unwrap();
        assert_eq!(recovered.durable, Durable::default());
        DiskLog {
            dir,
            log: Some(log),
            step: Vec::new(),
        }
    }
}

impl Storage<KvStore> for DiskLog {
    fn append(&mut self, record: Record<KvOp>) {
        self.step.push(record);
    }

    fn sync(&mut self) -> Result<(), String> {
        let log = self.log.as_mut().ok_or("the log is closed")?;
        log.persist(&self.step).map_err(|e| e.to_string())?;
        self.step.clear();
        Ok(())
    }

    /// Drops the open log (what it had not synced included) and reopens it.
    fn recover(&mut self) -> Result<Recovered<KvStore>, String> {
        self.log = None;
        self.step.clear();
        let (log, recovered) =
            Log::open(self.dir.path(), small_segments()).map_err(|e| e.to_string())?;
        self.log = Some(log);
        let snapshot = match recovered.snapshot {
            Some(file) => {
                Some(decode_state_machine(&file.state_machine).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        Ok(Recovered {
            durable: recovered.durable,
            snapshot,
        })
    }

    /// What the service does with `Effect::Snapshot`: the step's records so far, then the
    /// snapshot after them, which compacts the log.
    fn compacted(
        &mut self,
        snapshot: Snapshot<KvStore>,
        durable: Durable<KvOp>,
    ) -> Result<(), String> {
        let log = self.log.as_mut().ok_or("the log is closed")?;
        log.persist(&self.step).map_err(|e| e.to_string())?;
        self.step.clear();
        let state_machine = encode_state_machine(&snapshot).map_err(|e| e.to_string())?;
        log.snapshot(snapshot.applied, &state_machine, &durable)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Three replica cores over a FIFO network, each with its log on disk.
struct Cluster {
    sim: Sim<KvStore, DiskLog>,
}

impl Cluster {
    fn new() -> Self {
        let configs: Vec<Config> = (0..3)
            .map(|id| Config {
                id,
                replicas: vec![0, 1, 2],
                initial_leader: 0,
                window: 4,
                slot_limit: None,
                timing: Default::default(),
                catch_up_entries_max: paxos_impl::multi::CATCH_UP_ENTRIES_MAX,
            })
            .collect();
        let sim = Sim::start(
            configs,
            |_| KvStore::new(),
            |_| DiskLog::new(),
            &mut ignore::<KvStore>,
        )
        .unwrap();
        Cluster { sim }
    }

    /// Replica `i`'s election timer fires (M1).
    fn election(&mut self, i: u32) {
        let fired = self.sim.fire_election(i, &mut ignore::<KvStore>).unwrap();
        assert!(
            fired,
            "an election timer is armed at a replica that does not lead"
        );
    }

    fn step(&mut self, i: u32, input: paxos_impl::multi::InputOf<KvStore>) {
        self.sim.step(i, input, &mut ignore::<KvStore>).unwrap();
    }

    fn deliver_all(&mut self) {
        self.sim
            .deliver_all(10_000, &mut ignore::<KvStore>)
            .unwrap();
    }

    /// Crashes node `i` and recovers it from its reopened log; returns its durable view
    /// before the crash.
    fn crash_and_recover(&mut self, i: u32) -> Durable<KvOp> {
        let before = self.replica(i).durable();
        self.sim.crash(i);
        self.sim
            .recover(i, KvStore::new(), &mut ignore::<KvStore>)
            .unwrap();
        before
    }

    fn replica(&self, i: u32) -> &Replica<KvStore> {
        self.sim.replica(i).unwrap()
    }
}

#[test]
fn a_crashed_replica_recovers_its_durable_view_from_its_log() {
    let mut cluster = Cluster::new();
    for seq in 1..=3 {
        for client in 1..=2 {
            cluster.step(0, Input::ClientRequest(put(client, seq)));
        }
        cluster.deliver_all();
    }
    // A new leader takes over, so promises, rounds and re-proposals are in the logs too.
    cluster.election(1);
    cluster.deliver_all();
    cluster.step(1, Input::ClientRequest(put(3, 1)));
    cluster.deliver_all();
    let expected_kv = cluster.replica(0).state_machine().clone();
    assert_eq!(expected_kv.data.len(), 3);

    for i in [2, 1, 0] {
        let before = cluster.crash_and_recover(i);
        let recovered = cluster.replica(i);
        assert_eq!(recovered.durable(), before, "node {i}");
        assert!(before.promised.is_some(), "node {i} persisted a promise");
        assert_eq!(before.chosen.len(), 7, "node {i}");
        assert_eq!(recovered.applied(), 7, "node {i}");
        assert_eq!(recovered.state_machine(), &expected_kv, "node {i}");
    }
    // The recovered cluster still makes progress and keeps logging.
    cluster.election(2);
    cluster.deliver_all();
    cluster.step(2, Input::ClientRequest(put(4, 1)));
    cluster.deliver_all();
    let before = cluster.crash_and_recover(1);
    assert_eq!(cluster.replica(1).durable(), before);
    assert_eq!(before.chosen.len(), 8);
}

#[test]
fn a_replica_down_while_the_others_compact_installs_a_snapshot_and_every_log_recovers() {
    let mut cluster = Cluster::new();
    cluster.sim.crash(2);
    for seq in 1..=4 {
        for client in 1..=2 {
            cluster.step(0, Input::ClientRequest(put(client, seq)));
        }
        cluster.deliver_all();
    }
    for i in [0, 1] {
        cluster.step(i, Input::Compact);
        assert_eq!(cluster.replica(i).compacted(), 8, "node {i}");
        let dir = cluster.sim.nodes[i as usize].storage.dir.path();
        assert_eq!(snapshot_files(dir).len(), 1, "node {i}");
    }
    cluster.step(0, Input::ClientRequest(put(3, 1)));
    cluster.deliver_all();
    let expected_kv = cluster.replica(0).state_machine().clone();

    cluster
        .sim
        .recover(2, KvStore::new(), &mut ignore::<KvStore>)
        .unwrap();
    assert_eq!(cluster.replica(2).applied(), 0);
    // K5: the returning replica asks; K6: below the compaction point it gets the snapshot
    // (K4 installs it), and the slot above it follows.
    for _ in 0..10 {
        if cluster.replica(2).applied() == 9 {
            break;
        }
        cluster
            .sim
            .tick_to_deadline(2, &mut ignore::<KvStore>)
            .unwrap();
        cluster.deliver_all();
    }
    assert_eq!(cluster.replica(2).applied(), 9);
    assert_eq!(cluster.replica(2).compacted(), 8, "installed the snapshot");
    assert_eq!(cluster.replica(2).state_machine(), &expected_kv);
    let dir = cluster.sim.nodes[2].storage.dir.path();
    assert_eq!(snapshot_files(dir).len(), 1, "the install is durable");

    for i in [2, 1, 0] {
        let before = cluster.crash_and_recover(i);
        let recovered = cluster.replica(i);
        assert_eq!(recovered.durable(), before, "node {i}");
        assert_eq!(
            (recovered.applied(), recovered.compacted()),
            (9, 8),
            "node {i}"
        );
        assert_eq!(recovered.state_machine(), &expected_kv, "node {i}");
    }
    // The recovered cluster goes on from its snapshots.
    cluster.election(2);
    cluster.deliver_all();
    cluster.step(2, Input::ClientRequest(put(4, 1)));
    cluster.deliver_all();
    for i in 0..3 {
        assert_eq!(cluster.replica(i).applied(), 10, "node {i}");
    }
}
