//! Group commit: concurrent appends are all recovered, share fsyncs, and shutdown drains.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use paxos_impl::storage::{
    AppendTicket, GroupCommit, GroupCommitOptions, Wal, WalError, WalOptions,
};

fn start(dir: &Path, options: GroupCommitOptions) -> GroupCommit {
    let (wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
    GroupCommit::start(wal, options).unwrap()
}

/// Holds the writer thread in a completion callback until the returned sender is used, so
/// that requests submitted meanwhile are all queued when it resumes. The blocking request
/// carries no records, so it writes nothing.
fn block_writer(group: &GroupCommit) -> mpsc::SyncSender<()> {
    let (release, held) = mpsc::sync_channel::<()>(0);
    let (started, is_started) = mpsc::sync_channel::<()>(1);
    group.submit_with(Vec::new(), move |result| {
        assert!(result.unwrap().is_empty());
        started.send(()).unwrap();
        held.recv().unwrap();
    });
    is_started.recv().unwrap();
    release
}

fn record(thread: usize, i: usize) -> Vec<u8> {
    format!("thread {thread} append {i}").into_bytes()
}

#[test]
fn eight_threads_of_two_hundred_appends_are_all_recovered_with_fewer_fsyncs_than_records() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 ms commit delay makes sharing fsyncs independent of how fast this disk syncs.
    let options = GroupCommitOptions {
        commit_delay: Duration::from_millis(1),
        ..GroupCommitOptions::default()
    };
    let group = start(dir.path(), options);
    let mut written: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let group = &group;
                scope.spawn(move || {
                    (0..200)
                        .map(|i| {
                            let payload = record(t, i);
                            let range = group.append_durable(&[&payload]).unwrap();
                            assert_eq!(range.end - range.start, 1);
                            (range.start, payload)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (index, payload) in handle.join().unwrap() {
                assert!(
                    written.insert(index, payload).is_none(),
                    "index {index} twice"
                );
            }
        }
    });
    let stats = group.stats();
    assert_eq!(stats.records_written, 1600);
    assert!(stats.fsyncs < stats.records_written, "{stats:?}");
    assert!(stats.batch_records_max > 1, "{stats:?}");
    assert!(stats.batch_records_mean() > 1.0, "{stats:?}");
    drop(group);

    let (_, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let recovered: BTreeMap<u64, Vec<u8>> =
        recovered.iter().map(|(i, p)| (i, p.to_vec())).collect();
    assert_eq!(recovered, written);
    assert_eq!(
        recovered.keys().copied().collect::<Vec<_>>(),
        (0..1600).collect::<Vec<_>>()
    );
}

/// Requests that queue while the writer is busy are committed by one write and one fsync.
#[test]
fn requests_queued_during_a_commit_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), GroupCommitOptions::default());
    let release = block_writer(&group);
    let tickets: Vec<AppendTicket> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let group = &group;
                scope.spawn(move || group.submit(vec![record(t, 0), record(t, 1)]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    release.send(()).unwrap();
    let mut ranges: Vec<Range<u64>> = tickets.into_iter().map(|t| t.wait().unwrap()).collect();
    ranges.sort_by_key(|r| r.start);
    let expected: Vec<Range<u64>> = (0..8).map(|k| 2 * k..2 * k + 2).collect();
    assert_eq!(ranges, expected);
    let stats = group.stats();
    assert_eq!((stats.batches, stats.fsyncs), (1, 1), "{stats:?}");
    assert_eq!(stats.batch_records_max, 16);
}

#[test]
fn a_ticket_resolves_only_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), GroupCommitOptions::default());
    let release = block_writer(&group);
    let mut ticket = group.submit(vec![b"a".to_vec(), b"b".to_vec()]);
    assert!(ticket.try_wait().is_none());
    assert!(ticket.wait_timeout(Duration::from_millis(20)).is_none());
    release.send(()).unwrap();
    let result = ticket.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(result.unwrap(), 0..2);
    assert!(ticket.try_wait().is_none(), "a result is delivered once");
}

#[test]
fn shutdown_commits_everything_already_queued() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), GroupCommitOptions::default());
    let release = block_writer(&group);
    let completed = Arc::new(AtomicUsize::new(0));
    for i in 0..100u32 {
        let completed = Arc::clone(&completed);
        group.submit_with(vec![i.to_le_bytes().to_vec()], move |result| {
            assert!(result.is_ok());
            completed.fetch_add(1, Ordering::SeqCst);
        });
    }
    release.send(()).unwrap();
    let wal = group.shutdown().unwrap();
    assert_eq!(completed.load(Ordering::SeqCst), 100);
    assert_eq!(wal.next_index(), 100);
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let expected: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
    assert_eq!(recovered.records, expected);
}

#[test]
fn dropping_the_handle_drains_the_queue_too() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), GroupCommitOptions::default());
    let release = block_writer(&group);
    let tickets: Vec<AppendTicket> = (0..10u8).map(|i| group.submit(vec![vec![i]])).collect();
    // Release from another thread once drop has begun waiting for the writer.
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        release.send(()).unwrap();
    });
    drop(group);
    releaser.join().unwrap();
    for (i, ticket) in tickets.into_iter().enumerate() {
        assert_eq!(ticket.wait().unwrap(), i as u64..i as u64 + 1);
    }
    assert_eq!(
        Wal::open(dir.path(), WalOptions::default())
            .unwrap()
            .1
            .records
            .len(),
        10
    );
}

#[test]
fn an_oversized_record_fails_at_submit_without_disturbing_others() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(
        dir.path(),
        WalOptions {
            record_bytes_max: 8,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let group = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    let error = group.append_durable(&[b"ok", b"far too long"]).unwrap_err();
    assert!(
        matches!(error, WalError::RecordTooLarge { len: 12, max: 8 }),
        "{error}"
    );
    assert_eq!(group.append_durable(&[b"ok"]).unwrap(), 0..1);
}

#[test]
fn batches_respect_their_record_limit() {
    let dir = tempfile::tempdir().unwrap();
    let options = GroupCommitOptions {
        batch_records_max: 4,
        ..GroupCommitOptions::default()
    };
    let group = start(dir.path(), options);
    let release = block_writer(&group);
    let tickets: Vec<AppendTicket> = (0..10u8).map(|i| group.submit(vec![vec![i]])).collect();
    release.send(()).unwrap();
    for ticket in tickets {
        ticket.wait().unwrap();
    }
    let stats = group.stats();
    assert_eq!(stats.batch_records_max, 4, "{stats:?}");
    assert_eq!(stats.batches, 3, "{stats:?}");
}

#[test]
fn compaction_through_the_writer_is_ordered_after_queued_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(
        dir.path(),
        WalOptions {
            segment_bytes_max: 64,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let group = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    for i in 0..20u8 {
        group.append_durable(&[&[i; 20]]).unwrap();
    }
    assert!(group.compact(10).unwrap() > 0);
    let wal = group.shutdown().unwrap();
    assert!(wal.first_index() > 0 && wal.first_index() <= 10);
    assert_eq!(wal.next_index(), 20);
}
