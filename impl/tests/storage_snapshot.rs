//! Snapshots, compaction, snapshot installation for a far-behind replica, and the crash states
//! an interrupted install can leave (`impl/src/storage/mod.rs`, "Bringing up a far-behind
//! replica").

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use paxos_impl::storage::{
    latest_snapshot, prune_snapshots, recover, write_snapshot, Wal, WalError, WalOptions,
};

fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes_max: 128,
        ..WalOptions::default()
    }
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    found.sort();
    found
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i:04} ....................").into_bytes()
}

/// A log of `n` records in 128-byte segments (3 records each).
fn log_of(dir: &Path, n: u64) -> Wal {
    let (mut wal, _) = Wal::open(dir, small_segments()).unwrap();
    for i in 0..n {
        wal.append(&[&record(i)]).unwrap();
    }
    wal.sync().unwrap();
    wal
}

fn corrupt(path: &Path) {
    let mut data = fs::read(path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x01;
    fs::write(path, data).unwrap();
}

#[test]
fn a_snapshot_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(latest_snapshot(dir.path()).unwrap(), None);
    let path = write_snapshot(dir.path(), 41, b"state machine image").unwrap();
    let snapshot = latest_snapshot(dir.path()).unwrap().unwrap();
    assert_eq!(snapshot.last_included_index, 41);
    assert_eq!(snapshot.bytes, b"state machine image");
    assert_eq!(snapshot.path, path);
    write_snapshot(dir.path(), 90, b"").unwrap();
    let newest = latest_snapshot(dir.path()).unwrap().unwrap();
    assert_eq!((newest.last_included_index, newest.bytes.len()), (90, 0));
}

#[test]
fn a_corrupt_newest_snapshot_falls_back_to_an_older_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 10, b"older").unwrap();
    let newest = write_snapshot(dir.path(), 20, b"newer").unwrap();
    corrupt(&newest);
    let snapshot = latest_snapshot(dir.path()).unwrap().unwrap();
    assert_eq!(
        (snapshot.last_included_index, snapshot.bytes),
        (10, b"older".to_vec())
    );
}

#[test]
fn every_snapshot_corrupt_is_an_error_not_an_empty_start() {
    let dir = tempfile::tempdir().unwrap();
    let only = write_snapshot(dir.path(), 10, b"only").unwrap();
    fs::write(&only, b"short").unwrap();
    let error = latest_snapshot(dir.path()).unwrap_err();
    assert!(
        matches!(&error, WalError::Corrupt { file, .. } if *file == only),
        "{error}"
    );
}

#[test]
fn pruning_keeps_the_newest_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    for i in [3, 1, 4, 5] {
        write_snapshot(dir.path(), i, b"s").unwrap();
    }
    let removed = prune_snapshots(dir.path(), 2).unwrap();
    assert_eq!(removed.len(), 2);
    let kept: Vec<u64> = files(dir.path(), "snapshot-")
        .iter()
        .map(|p| read_index(p))
        .collect();
    assert_eq!(kept, vec![4, 5]);
}

fn read_index(path: &Path) -> u64 {
    paxos_impl::storage::read_snapshot(path)
        .unwrap()
        .last_included_index
}

#[test]
fn compaction_removes_covered_segments_and_reopen_starts_at_the_first_kept_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = log_of(dir.path(), 30);
    let before = files(dir.path(), "wal-").len();
    write_snapshot(dir.path(), 19, b"image through 19").unwrap();
    let removed = wal.compact(20).unwrap();
    assert!(removed > 0);
    assert_eq!(files(dir.path(), "wal-").len(), before - removed);
    let first = wal.first_index();
    assert!(first > 0 && first <= 20, "first index {first}");
    // Nothing wholly below 20 remains except what shares the first kept segment.
    assert!(wal.compact(20).unwrap() == 0);
    wal.append(&[b"after compaction"]).unwrap();
    wal.sync().unwrap();
    drop(wal);

    let restored = recover(dir.path(), small_segments()).unwrap();
    assert_eq!(restored.recovered.first_index, first);
    assert_eq!(restored.snapshot.unwrap().last_included_index, 19);
    let records: Vec<(u64, Vec<u8>)> = restored
        .recovered
        .iter()
        .map(|(i, p)| (i, p.to_vec()))
        .collect();
    assert_eq!(records[0], (first, record(first)));
    assert_eq!(records.last().unwrap(), &(30, b"after compaction".to_vec()));
}

#[test]
fn the_active_segment_is_never_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = log_of(dir.path(), 10);
    wal.compact(u64::MAX).unwrap();
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(wal.next_index(), 10);
}

#[test]
fn recover_reports_a_hole_between_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = log_of(dir.path(), 30);
    wal.compact(20).unwrap(); // no snapshot covers what was removed
    let first = wal.first_index();
    drop(wal);
    // The WAL alone opens and says where it starts ...
    assert_eq!(
        Wal::open(dir.path(), small_segments())
            .unwrap()
            .1
            .first_index,
        first
    );
    // ... but a node must not start on it.
    let error = recover(dir.path(), small_segments()).unwrap_err();
    assert!(error.to_string().contains("are lost"), "{error}");
    assert!(matches!(error, WalError::Corrupt { .. }));
}

#[test]
fn a_corrupt_newest_snapshot_is_a_hole_once_the_log_was_compacted_past_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = log_of(dir.path(), 30);
    write_snapshot(dir.path(), 5, b"old").unwrap();
    let newest = write_snapshot(dir.path(), 24, b"new").unwrap();
    wal.compact(25).unwrap();
    drop(wal);
    corrupt(&newest);
    assert!(matches!(
        recover(dir.path(), small_segments()),
        Err(WalError::Corrupt { .. })
    ));
}

/// Far-behind replica: the snapshot reaches past the local log, which restarts after it.
#[test]
fn installing_a_snapshot_past_the_log_restarts_it_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = log_of(dir.path(), 10);
    wal.install_snapshot(1000, b"peer image + own promise")
        .unwrap();
    assert_eq!((wal.first_index(), wal.next_index()), (1001, 1001));
    assert_eq!(files(dir.path(), "wal-").len(), 1);
    assert_eq!(wal.append(&[b"first after install"]).unwrap(), 1001..1002);
    wal.sync().unwrap();
    drop(wal);

    let restored = recover(dir.path(), small_segments()).unwrap();
    let snapshot = restored.snapshot.unwrap();
    assert_eq!(snapshot.last_included_index, 1000);
    assert_eq!(snapshot.bytes, b"peer image + own promise");
    assert_eq!(restored.recovered.first_index, 1001);
    assert_eq!(
        restored.recovered.records,
        vec![b"first after install".to_vec()]
    );
}

#[test]
fn installing_a_snapshot_inside_the_log_keeps_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = log_of(dir.path(), 30);
    wal.install_snapshot(14, b"image").unwrap();
    assert_eq!(wal.next_index(), 30);
    assert!(wal.first_index() <= 15 && wal.first_index() > 0);
    drop(wal);
    let restored = recover(dir.path(), small_segments()).unwrap();
    let after: Vec<Vec<u8>> = restored
        .recovered
        .iter()
        .filter(|(i, _)| *i > 14)
        .map(|(_, p)| p.to_vec())
        .collect();
    assert_eq!(after, (15..30).map(record).collect::<Vec<_>>());
}

/// Crash after install step 1 (snapshot durable, log untouched): open finishes the install
/// instead of appending at indices the snapshot already covers.
#[test]
fn a_crash_after_the_snapshot_was_written_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_of(dir.path(), 10));
    write_snapshot(dir.path(), 500, b"image").unwrap();
    let restored = recover(dir.path(), small_segments()).unwrap();
    assert_eq!(restored.wal.next_index(), 501);
    assert!(restored.recovered.records.is_empty());
    assert_eq!(files(dir.path(), "wal-").len(), 1);
}

/// Crash after install step 2 (new segment created, old ones not yet removed), with the old
/// log's tail torn: the gap is explained by the snapshot, so open removes the old segments.
#[test]
fn a_crash_after_the_new_segment_was_created_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_of(dir.path(), 10));
    let old = files(dir.path(), "wal-");
    let last_old = old.last().unwrap();
    let len = fs::metadata(last_old).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(last_old)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    write_snapshot(dir.path(), 500, b"image").unwrap();
    fs::write(dir.path().join(format!("wal-{:020}.log", 501)), b"").unwrap();

    let (mut wal, recovered) = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(recovered.first_index, 501);
    assert_eq!(recovered.superseded_segments, old);
    assert_eq!(files(dir.path(), "wal-").len(), 1);
    assert_eq!(wal.append(&[b"x"]).unwrap(), 501..502);
}

/// Without a snapshot that explains it, the same gap is a lost segment.
#[test]
fn a_gap_without_a_covering_snapshot_stays_corruption() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_of(dir.path(), 10));
    write_snapshot(dir.path(), 499, b"image").unwrap();
    fs::write(dir.path().join(format!("wal-{:020}.log", 501)), b"").unwrap();
    assert!(matches!(
        Wal::open(dir.path(), small_segments()),
        Err(WalError::Corrupt { .. })
    ));
}

#[test]
fn a_fresh_directory_with_only_a_snapshot_starts_after_it() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 7, b"image").unwrap();
    let restored = recover(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(restored.wal.next_index(), 8);
    assert_eq!(restored.recovered.first_index, 8);
}
