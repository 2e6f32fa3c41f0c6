//! Group commit: many threads append, one thread writes, one fsync covers them all.
//!
//! ```text
//!   caller ─┐  submit / append_durable   ┌──────────── writer thread ────────────┐
//!   caller ─┼──► bounded queue ─────────►│ drain queue → one write → one fsync    │──► every caller
//!   caller ─┘  (queue_requests_max)      │ → complete each request with its range │    of the batch
//!                                        └────────────────────────────────────────┘
//! ```
//!
//! An fsync costs about the same for one record as for a thousand, so while one fsync is in
//! flight the writer lets requests pile up in the queue and commits all of them with the next.
//! No request is completed before the fsync that covers it returns: that is the "persist before
//! you speak" guarantee the protocol layer builds on. Compaction, snapshots and snapshot
//! installation go through the same queue, so they are ordered with appends and the writer
//! stays the `Wal`'s only owner.
//!
//! A failed write or fsync is reported to every caller of that batch and poisons the `Wal`:
//! every later request fails with [`WalError::Poisoned`]. Shutting down (drop or
//! [`GroupCommit::shutdown`]) lets the writer commit everything already queued before it exits.

use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::error::WalError;
use super::wal::{self, Wal};

/// Limits of the queue and of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// Requests waiting for the writer; submitting blocks while the queue is full
    /// (backpressure instead of unbounded memory).
    pub queue_requests_max: usize,
    /// A batch stops growing at this many records (at least one request is always taken).
    pub batch_records_max: usize,
    /// ... or at this many payload bytes.
    pub batch_bytes_max: usize,
    /// How long the writer waits for more requests after the first one of a batch before
    /// writing (PostgreSQL's `commit_delay`). Zero, the default, relies on the natural batching
    /// that happens while an fsync is in flight; a small delay trades every commit's latency
    /// for fewer fsyncs when the queue is rarely deep.
    pub commit_delay: Duration,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        GroupCommitOptions {
            queue_requests_max: 4096,
            batch_records_max: 16_384,
            batch_bytes_max: 32 << 20,
            commit_delay: Duration::ZERO,
        }
    }
}

/// Counters since [`GroupCommit::start`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Records written and made durable.
    pub records_written: u64,
    /// Committed batches (one write and one commit fsync each).
    pub batches: u64,
    /// Segment fsyncs, including those closing a full segment.
    pub fsyncs: u64,
    /// Most records committed by one batch.
    pub batch_records_max: u64,
}

impl GroupCommitStats {
    pub fn batch_records_mean(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.records_written as f64 / self.batches as f64
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    records_written: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    batch_records_max: AtomicU64,
}

type AppendResult = Result<Range<u64>, WalError>;
type OnDurable = Box<dyn FnOnce(AppendResult) + Send>;
type OnSnapshot = Box<dyn FnOnce(Result<u64, WalError>) + Send>;

struct Append {
    payloads: Vec<Vec<u8>>,
    on_durable: OnDurable,
}

enum Control {
    Compact {
        below_index: u64,
        reply: SyncSender<Result<usize, WalError>>,
    },
    InstallSnapshot {
        last_included_index: u64,
        bytes: Vec<u8>,
        reply: SyncSender<Result<(), WalError>>,
    },
    Snapshot {
        bytes: Vec<u8>,
        snapshots_kept: usize,
        on_done: OnSnapshot,
    },
}

enum Request {
    Append(Append),
    Control(Control),
}

/// A handle to the writer thread that owns the [`Wal`]. `Send + Sync`: share it by reference
/// or in an `Arc`.
#[derive(Debug)]
pub struct GroupCommit {
    sender: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<Wal>>,
    counters: Arc<Counters>,
    record_bytes_max: u32,
}

impl GroupCommit {
    /// Moves `wal` to a new writer thread.
    pub fn start(wal: Wal, options: GroupCommitOptions) -> Result<GroupCommit, WalError> {
        if options.queue_requests_max == 0 || options.batch_records_max == 0 {
            return Err(WalError::InvalidArgument(
                "GroupCommitOptions: queue_requests_max and batch_records_max must be positive"
                    .into(),
            ));
        }
        let (sender, receiver) = mpsc::sync_channel(options.queue_requests_max);
        let counters = Arc::new(Counters::default());
        let record_bytes_max = wal.options().record_bytes_max;
        let dir = wal.dir().to_path_buf();
        let writer = Writer {
            wal,
            receiver,
            options,
            counters: Arc::clone(&counters),
        };
        let writer = thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io("spawn writer thread for", dir, e))?;
        Ok(GroupCommit {
            sender: Some(sender),
            writer: Some(writer),
            counters,
            record_bytes_max,
        })
    }

    /// Queues `payloads` as consecutive records and returns at once (unless the queue is full);
    /// the ticket yields their indices once they are durable.
    pub fn submit(&self, payloads: Vec<Vec<u8>>) -> AppendTicket {
        let (reply, receiver) = mpsc::sync_channel(1);
        self.submit_with(payloads, move |result| {
            // The ticket may have been dropped: nobody is waiting, which is fine.
            let _ = reply.send(result);
        });
        AppendTicket {
            receiver,
            done: false,
        }
    }

    /// Like [`GroupCommit::submit`], but calls `on_durable` instead (for an async runtime to
    /// wake a task). It runs on the writer thread, so it must be quick and must not block:
    /// the next batch waits for it. A panic in it is caught and logged.
    pub fn submit_with<F>(&self, payloads: Vec<Vec<u8>>, on_durable: F)
    where
        F: FnOnce(AppendResult) + Send + 'static,
    {
        let lens = payloads.iter().map(Vec::len);
        if let Err(error) = wal::check_payloads(lens, self.record_bytes_max) {
            on_durable(Err(error));
            return;
        }
        let request = Request::Append(Append {
            payloads,
            on_durable: Box::new(on_durable),
        });
        let Some(sender) = &self.sender else {
            return reject(request);
        };
        if let Err(mpsc::SendError(request)) = sender.send(request) {
            reject(request);
        }
    }

    /// Appends `payloads` and blocks until they are durable; returns their indices.
    pub fn append_durable(&self, payloads: &[&[u8]]) -> Result<Range<u64>, WalError> {
        self.submit(payloads.iter().map(|p| p.to_vec()).collect())
            .wait()
    }

    /// [`Wal::compact`] on the writer thread, after every append queued before it.
    pub fn compact(&self, below_index: u64) -> Result<usize, WalError> {
        let (reply, receiver) = mpsc::sync_channel(1);
        self.control(Control::Compact { below_index, reply });
        receiver.recv().unwrap_or(Err(WalError::Closed))
    }

    /// [`Wal::install_snapshot`] on the writer thread, after every append queued before it.
    pub fn install_snapshot(
        &self,
        last_included_index: u64,
        bytes: Vec<u8>,
    ) -> Result<(), WalError> {
        let (reply, receiver) = mpsc::sync_channel(1);
        self.control(Control::InstallSnapshot {
            last_included_index,
            bytes,
            reply,
        });
        receiver.recv().unwrap_or(Err(WalError::Closed))
    }

    /// [`Wal::snapshot_appended`] on the writer thread: a snapshot covering every append
    /// queued before it, durable before any append queued after it is written. `on_done` runs
    /// on the writer thread, as [`GroupCommit::submit_with`]'s callback does.
    pub fn snapshot_with<F>(&self, bytes: Vec<u8>, snapshots_kept: usize, on_done: F)
    where
        F: FnOnce(Result<u64, WalError>) + Send + 'static,
    {
        self.control(Control::Snapshot {
            bytes,
            snapshots_kept,
            on_done: Box::new(on_done),
        });
    }

    fn control(&self, control: Control) {
        let Some(sender) = &self.sender else {
            return reject(Request::Control(control));
        };
        if let Err(mpsc::SendError(request)) = sender.send(Request::Control(control)) {
            reject(request);
        }
    }

    pub fn stats(&self) -> GroupCommitStats {
        let c = &self.counters;
        GroupCommitStats {
            records_written: c.records_written.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            batch_records_max: c.batch_records_max.load(Ordering::Relaxed),
        }
    }

    /// Commits everything queued, stops the writer and hands the `Wal` back. `Closed` if the
    /// writer thread panicked.
    pub fn shutdown(mut self) -> Result<Wal, WalError> {
        self.sender = None;
        let writer = self.writer.take().ok_or(WalError::Closed)?;
        writer.join().map_err(|_| WalError::Closed)
    }
}

impl Drop for GroupCommit {
    /// Like [`GroupCommit::shutdown`]: blocks until everything queued is committed.
    fn drop(&mut self) {
        self.sender = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the WAL writer thread panicked");
            }
        }
    }
}

/// Answers a request the writer will never see with `Closed`. A dropped reply sender tells
/// a blocking caller the same, so only callbacks need calling.
fn reject(request: Request) {
    match request {
        Request::Append(append) => complete(append.on_durable, Err(WalError::Closed)),
        Request::Control(Control::Snapshot { on_done, .. }) => {
            complete(on_done, Err(WalError::Closed))
        }
        Request::Control(Control::Compact { .. } | Control::InstallSnapshot { .. }) => {}
    }
}

fn complete<T>(callback: impl FnOnce(T), value: T) {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| callback(value)));
    if outcome.is_err() {
        tracing::error!("a WAL completion callback panicked; the writer carries on");
    }
}

/// The result of a [`GroupCommit::submit`]: the records' indices once durable.
#[derive(Debug)]
pub struct AppendTicket {
    receiver: Receiver<AppendResult>,
    done: bool,
}

impl AppendTicket {
    /// Blocks until the records are durable (or failed).
    pub fn wait(self) -> Result<Range<u64>, WalError> {
        self.receiver.recv().unwrap_or(Err(WalError::Closed))
    }

    /// `Some` exactly once, when the result is there; `None` before that and after.
    pub fn try_wait(&mut self) -> Option<Result<Range<u64>, WalError>> {
        if self.done {
            return None;
        }
        let result = match self.receiver.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(WalError::Closed),
        };
        self.done = true;
        Some(result)
    }

    /// Like [`AppendTicket::try_wait`], waiting up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Range<u64>, WalError>> {
        if self.done {
            return None;
        }
        let result = match self.receiver.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => Err(WalError::Closed),
        };
        self.done = true;
        Some(result)
    }
}

/// The appends of one batch and the control request that ended it, if any.
#[derive(Default)]
struct Batch {
    appends: Vec<Append>,
    records: usize,
    bytes: usize,
    control: Option<Control>,
}

impl Batch {
    fn push(&mut self, request: Request) {
        match request {
            Request::Append(append) => {
                self.records += append.payloads.len();
                self.bytes += append.payloads.iter().map(Vec::len).sum::<usize>();
                self.appends.push(append);
            }
            Request::Control(control) => self.control = Some(control),
        }
    }

    /// A control request closes the batch: it must see every append queued before it, and
    /// none queued after it.
    fn closed(&self, options: &GroupCommitOptions) -> bool {
        self.control.is_some()
            || self.records >= options.batch_records_max
            || self.bytes >= options.batch_bytes_max
    }
}

struct Writer {
    wal: Wal,
    receiver: Receiver<Request>,
    options: GroupCommitOptions,
    counters: Arc<Counters>,
}

impl Writer {
    /// Runs until every sender is gone and the queue is empty, then returns the `Wal`.
    fn run(mut self) -> Wal {
        while let Ok(first) = self.receiver.recv() {
            let batch = self.collect(first);
            self.commit(batch.appends);
            if let Some(control) = batch.control {
                self.control(control);
            }
        }
        tracing::debug!("WAL writer stopped: queue drained");
        self.wal
    }

    fn collect(&self, first: Request) -> Batch {
        let mut batch = Batch::default();
        batch.push(first);
        let deadline = Instant::now() + self.options.commit_delay;
        while !batch.closed(&self.options) {
            let next = match self.receiver.try_recv() {
                Ok(request) => request,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.receiver.recv_timeout(left) {
                        Ok(request) => request,
                        Err(_) => break,
                    }
                }
            };
            batch.push(next);
        }
        batch
    }

    /// One write and one fsync for the whole batch, then every request completes.
    fn commit(&mut self, appends: Vec<Append>) {
        if appends.is_empty() {
            return;
        }
        let payloads: Vec<&[u8]> = appends
            .iter()
            .flat_map(|a| a.payloads.iter().map(Vec::as_slice))
            .collect();
        let result = self.wal.append(&payloads).and_then(|range| {
            self.wal.sync()?;
            Ok(range)
        });
        self.counters
            .fsyncs
            .store(self.wal.stats().fsyncs, Ordering::Relaxed);
        let mut next = match result {
            Ok(range) => {
                if !payloads.is_empty() {
                    self.count_batch(payloads.len() as u64);
                }
                range.start
            }
            Err(error) => {
                for append in appends {
                    complete(append.on_durable, Err(error.clone()));
                }
                return;
            }
        };
        for append in appends {
            let end = next + append.payloads.len() as u64;
            complete(append.on_durable, Ok(next..end));
            next = end;
        }
    }

    fn count_batch(&self, records: u64) {
        let c = &self.counters;
        c.records_written.fetch_add(records, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.batch_records_max.fetch_max(records, Ordering::Relaxed);
    }

    fn control(&mut self, control: Control) {
        // A dropped reply receiver means the caller is gone; nothing to tell.
        match control {
            Control::Compact { below_index, reply } => {
                let _ = reply.send(self.wal.compact(below_index));
            }
            Control::InstallSnapshot {
                last_included_index,
                bytes,
                reply,
            } => {
                let _ = reply.send(self.wal.install_snapshot(last_included_index, &bytes));
            }
            Control::Snapshot {
                bytes,
                snapshots_kept,
                on_done,
            } => complete(on_done, self.wal.snapshot_appended(&bytes, snapshots_kept)),
        }
        self.counters
            .fsyncs
            .store(self.wal.stats().fsyncs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::storage::WalOptions;

    /// Submits an empty request (no records, so no fsync) whose callback holds the writer
    /// thread until `release` is sent, so requests submitted meanwhile queue up into one batch.
    fn block_writer(group: &GroupCommit) -> SyncSender<()> {
        let (release, held) = mpsc::sync_channel::<()>(0);
        let (started, is_started) = mpsc::sync_channel::<AppendResult>(1);
        group.submit_with(Vec::new(), move |result| {
            started.send(result).unwrap();
            held.recv().unwrap();
        });
        assert_eq!(is_started.recv().unwrap().unwrap(), 0..0);
        release
    }

    #[test]
    fn a_failed_fsync_fails_every_waiter_of_the_batch_and_poisons_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.fail_syncs = true;
        let group = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
        let release = block_writer(&group);
        let tickets: Vec<AppendTicket> = (0..3u8).map(|i| group.submit(vec![vec![i]])).collect();
        release.send(()).unwrap();
        for ticket in tickets {
            let error = ticket.wait().unwrap_err();
            assert!(matches!(error, WalError::Io { op: "fsync", .. }), "{error}");
        }
        let later = group.append_durable(&[b"later"]).unwrap_err();
        assert!(matches!(later, WalError::Poisoned { .. }), "{later}");
        let stats = group.stats();
        assert_eq!(
            (stats.records_written, stats.batches, stats.fsyncs),
            (0, 0, 0)
        );
        let wal = group.shutdown().unwrap();
        assert!(wal.poisoned().is_some());
    }
}
