//! The replica's durable log: the core's [`Record`]s in the [`Wal`], snapshots of the replica
//! at an applied prefix, and recovery into the [`Durable`] state [`Replica::recover`] starts
//! from.
//!
//! ```text
//!   Replica::step ─► [Persist(record)..] ─► ReplicaLog::append + sync      (one owner)
//!                                       └─► ReplicaGroupCommit::submit      (fsync shared by steps)
//!   ReplicaLog::snapshot(applied, sm bytes, durable) ─► snapshot file, then WAL compaction
//!   ReplicaGroupCommit::snapshot_with(..)  ─► the same, on the writer thread, after the
//!                                             records submitted before it
//!   ReplicaLog::open(dir) ─► (ReplicaLog, ReplicaRecovered { durable, snapshot, .. })
//!                                  └─► Replica::recover_from(config, durable, applied state, sm)
//! ```
//!
//! # Record codec
//!
//! A WAL payload is `[format version byte = RECORD_FORMAT_VERSION][postcard(Record<Op>)]`;
//! a snapshot payload is `[SNAPSHOT_FORMAT_VERSION][postcard(applied, Durable<Op>, sm bytes)]`.
//! Decoding checks the version first, then decodes the whole rest of the payload: an unknown
//! version, bytes that do not parse, or trailing bytes are a [`CodecError`], never a panic.
//! Decoding allocates at most in proportion to the payload (postcard reads lengths against the
//! remaining input, and serde caps pre-allocation), and the WAL bounds every payload by
//! [`WalOptions::record_bytes_max`].
//!
//! A record that fails to decode although its frame checksum is valid was written by a
//! different program or damaged before it was framed: nothing a crash explains. Recovery
//! reports it as [`ReplicaLogError::CorruptRecord`] with the segment file and the record index,
//! and the node refuses to start. Skipping it could forget a promise or an accepted value.
//!
//! # Snapshots: what is kept, and why it is safe
//!
//! [`ReplicaLog::snapshot`] writes, at WAL index `i` (the last record appended so far):
//! the state-machine snapshot bytes, the applied prefix length `applied` (every slot below it
//! is chosen and applied, and the bytes are the state after exactly those slots), and the
//! replica's durable protocol state at `i`, then compacts the WAL below it. Recovery is that
//! durable state with every record after `i` folded on top ([`Durable::apply`]).
//!
//! The rule for the protocol state in the snapshot: `round`, `promised` and every accepted
//! value the replica still holds are kept as they are; chosen entries are kept only at or
//! above `applied`, since the state-machine bytes already hold the effect of every slot below
//! it. The snapshot does not decide what the replica may forget: the core does. Its own
//! compaction (K1, `Input::Compact`, and K4, a snapshot installed) forgets accepted and chosen
//! entries below its applied prefix, which K2's report of the compaction point in every
//! Promise makes safe (`specs/protocol.md`, "Compaction that no replica can block"); the
//! durable state it reports afterwards is what the snapshot keeps. (Before K2, forgetting an
//! accepted value below `applied` was unsafe: a later leader could collect a majority without
//! that vote and fill a chosen slot with a no-op. The replica log never drops a vote the core
//! still holds, so that bug cannot come back through storage.)
//!
//! The caller must pass the state the log's records rebuild *at the snapshot index*: after
//! making every `Persist` of the steps so far durable, [`Replica::durable`] is exactly that.
//! The records up to the index are compacted away, so anything missing from `durable` is lost.
//!
//! Two snapshots are kept by default and the WAL is compacted only below the older one
//! ([`ReplicaLogOptions::snapshots_kept`]): if the newest snapshot file is damaged,
//! [`latest_snapshot`] falls back to the older one and the log still holds every record after
//! it (the module overview of [`crate::storage`] explains the rule).
//!
//! # Recovering a `Replica` from a snapshot
//!
//! A snapshot drops chosen entries below `applied`, so [`Replica::recover`] (which re-applies
//! the chosen prefix from slot 0) is not enough: start the core with
//! [`Replica::recover_from`], passing the [`AppliedState`] (applied prefix, state machine,
//! client table) stored as the snapshot's state-machine bytes ([`encode_state_machine`] of
//! the core's `Effect::Snapshot`, or of [`Replica::applied_state`]). The service does exactly
//! that (`runtime/replicated.rs`).
//!
//! [`Replica::recover_from`]: crate::multi::Replica::recover_from
//! [`Replica::applied_state`]: crate::multi::Replica::applied_state
//! [`AppliedState`]: crate::multi::AppliedState
//! [`Replica::recover`]: crate::multi::Replica::recover
//! [`Replica::durable`]: crate::multi::Replica::durable

use std::fs;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    latest_snapshot, recover, AppendTicket, GroupCommit, GroupCommitOptions, TornTail, Wal,
    WalError, WalOptions,
};
use crate::multi::{Durable, Record, RecordError, Slot};

/// The first byte of every WAL payload this module writes. Version 2 added
/// [`Record::ChosenVotes`]; a version-1 payload is a version-2 one without it, so both are
/// read, and a build that reads only version 1 refuses a newer log by its version byte.
pub const RECORD_FORMAT_VERSION: u8 = 2;
/// The oldest WAL payload version this build reads.
pub const RECORD_FORMAT_VERSION_OLDEST: u8 = 1;
/// The first byte of every snapshot payload this module writes.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// The first byte of state-machine snapshot bytes made by [`encode_state_machine`].
pub const STATE_MACHINE_FORMAT_VERSION: u8 = 1;

/// Why bytes could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty payload: no format-version byte")]
    Empty,
    #[error("unknown format version {found} (this build reads version {supported})")]
    UnknownVersion { found: u8, supported: u8 },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("{0} bytes left over after the value")]
    TrailingBytes(usize),
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn encode_versioned<T: Serialize + ?Sized>(version: u8, value: &T) -> Result<Vec<u8>, CodecError> {
    let out = vec![version];
    postcard::to_extend(value, out).map_err(|e| CodecError::Encode(e.to_string()))
}

fn decode_versioned<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, CodecError> {
    decode_versions(version..=version, bytes)
}

/// Decodes a payload whose version byte is in `versions`, every one of which decodes as `T`.
fn decode_versions<T: DeserializeOwned>(
    versions: std::ops::RangeInclusive<u8>,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let Some((&found, body)) = bytes.split_first() else {
        return Err(CodecError::Empty);
    };
    let version = *versions.end();
    if !versions.contains(&found) {
        return Err(CodecError::UnknownVersion {
            found,
            supported: version,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// One record as a WAL payload: the version byte, then the record.
pub fn encode_record<Op: Serialize>(record: &Record<Op>) -> Result<Vec<u8>, CodecError> {
    encode_versioned(RECORD_FORMAT_VERSION, record)
}

/// The inverse of [`encode_record`].
pub fn decode_record<Op: DeserializeOwned>(payload: &[u8]) -> Result<Record<Op>, CodecError> {
    decode_versions(
        RECORD_FORMAT_VERSION_OLDEST..=RECORD_FORMAT_VERSION,
        payload,
    )
}

/// Every record of `records` as a payload, in order.
pub fn encode_records<Op: Serialize>(records: &[Record<Op>]) -> Result<Vec<Vec<u8>>, CodecError> {
    records.iter().map(encode_record).collect()
}

/// A state-machine snapshot (`StateMachine::Snapshot`) as versioned bytes for
/// [`ReplicaLog::snapshot`]. Any other encoding works too: the log stores the bytes opaquely.
pub fn encode_state_machine<S: Serialize>(snapshot: &S) -> Result<Vec<u8>, CodecError> {
    encode_versioned(STATE_MACHINE_FORMAT_VERSION, snapshot)
}

/// The inverse of [`encode_state_machine`].
pub fn decode_state_machine<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, CodecError> {
    decode_versioned(STATE_MACHINE_FORMAT_VERSION, bytes)
}

#[derive(Serialize)]
struct SnapshotBodyRef<'a, Op> {
    applied: Slot,
    durable: &'a Durable<Op>,
    state_machine: &'a [u8],
}

#[derive(Deserialize)]
struct SnapshotBody<Op> {
    applied: Slot,
    durable: Durable<Op>,
    state_machine: Vec<u8>,
}

/// The snapshot payload for `durable` at applied prefix `applied`, following the rule in the
/// [module docs](self): chosen entries below `applied` are dropped, everything else is kept.
pub fn encode_snapshot<Op: Serialize + Clone>(
    applied: Slot,
    state_machine: &[u8],
    durable: &Durable<Op>,
) -> Result<Vec<u8>, CodecError> {
    let kept = Durable {
        round: durable.round,
        promised: durable.promised,
        accepted: durable.accepted.clone(),
        chosen: durable
            .chosen
            .range(applied..)
            .map(|(s, e)| (s, e.clone()))
            .collect(),
    };
    let body = SnapshotBodyRef {
        applied,
        durable: &kept,
        state_machine,
    };
    encode_versioned(SNAPSHOT_FORMAT_VERSION, &body)
}

/// A decoded replica snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSnapshot<Op> {
    /// The last WAL index the snapshot covers.
    pub last_included_index: u64,
    /// Every slot below this is chosen and applied; `state_machine` is the state after them.
    pub applied: Slot,
    /// The state-machine snapshot bytes, as given to [`ReplicaLog::snapshot`].
    pub state_machine: Vec<u8>,
    /// The protocol state at `last_included_index` (chosen entries only at or above `applied`).
    pub durable: Durable<Op>,
    pub path: PathBuf,
}

/// Decodes a snapshot payload (see [`encode_snapshot`]).
pub fn decode_snapshot<Op: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(Slot, Durable<Op>, Vec<u8>), CodecError> {
    let body: SnapshotBody<Op> = decode_versioned(SNAPSHOT_FORMAT_VERSION, bytes)?;
    Ok((body.applied, body.durable, body.state_machine))
}

/// Errors of the replica log.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReplicaLogError {
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A WAL record with a valid frame does not decode: the node must not start on it.
    #[error(
        "storage corrupt: {}, record index {index}: {source}. The node refuses to start rather \
         than lose a promise or an accepted value",
        file.display()
    )]
    CorruptRecord {
        /// The segment file holding the record (the directory if it cannot be told).
        file: PathBuf,
        index: u64,
        #[source]
        source: CodecError,
    },
    /// A WAL record decodes but does not fit the records before it (a chosen-votes run over
    /// a slot without a vote): the node must not start on it.
    #[error(
        "storage corrupt: {}, record index {index}: {source}. The node refuses to start rather \
         than lose a chosen entry",
        file.display()
    )]
    InconsistentRecord {
        file: PathBuf,
        index: u64,
        #[source]
        source: RecordError,
    },
    /// The newest valid snapshot file does not decode: the node must not start on it.
    #[error(
        "storage corrupt: snapshot {}: {source}. The node refuses to start",
        file.display()
    )]
    CorruptSnapshot {
        file: PathBuf,
        #[source]
        source: CodecError,
    },
    /// A record or snapshot could not be encoded; nothing was written.
    #[error("cannot encode for the replica log: {0}")]
    Encode(#[source] CodecError),
    #[error("invalid replica log argument: {0}")]
    InvalidArgument(String),
}

/// Options of a [`ReplicaLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaLogOptions {
    pub wal: WalOptions,
    /// Snapshot files kept after each [`ReplicaLog::snapshot`] (at least 1; 2 lets recovery
    /// fall back to the older one if the newest is damaged). The WAL is compacted only below
    /// the oldest one kept.
    pub snapshots_kept: usize,
}

impl Default for ReplicaLogOptions {
    fn default() -> Self {
        ReplicaLogOptions {
            wal: WalOptions::default(),
            snapshots_kept: 2,
        }
    }
}

/// What [`ReplicaLog::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRecovered<Op> {
    /// The snapshot's durable state (if any) with every later record folded on top: what
    /// `Replica::recover` starts from.
    pub durable: Durable<Op>,
    /// The newest valid snapshot: restore the state machine from its bytes.
    pub snapshot: Option<ReplicaSnapshot<Op>>,
    /// Records folded on top of the snapshot (or from the start).
    pub records_replayed: u64,
    /// The torn final record the WAL truncated, if any.
    pub torn_tail: Option<TornTail>,
}

/// The WAL of one replica, typed by the state machine's operation.
#[derive(Debug)]
pub struct ReplicaLog<Op> {
    wal: Wal,
    snapshots_kept: usize,
    _op: PhantomData<fn() -> Op>,
}

impl<Op> ReplicaLog<Op>
where
    Op: Serialize + DeserializeOwned + Clone,
{
    /// Opens the WAL in `dir` (created if missing) and the newest valid snapshot, decodes every
    /// record after the snapshot and folds them into a [`Durable`]. Any record or snapshot
    /// that does not decode is an error, and so is any damage the WAL refuses (see
    /// [`crate::storage`]); a torn final record is truncated and reported.
    pub fn open(
        dir: impl AsRef<Path>,
        options: ReplicaLogOptions,
    ) -> Result<(ReplicaLog<Op>, ReplicaRecovered<Op>), ReplicaLogError> {
        if options.snapshots_kept == 0 {
            return Err(ReplicaLogError::InvalidArgument(
                "snapshots_kept must be at least 1".into(),
            ));
        }
        let dir = dir.as_ref();
        let restored = recover(dir, options.wal)?;
        let snapshot = match restored.snapshot {
            Some(file) => Some(decode_snapshot_file(file)?),
            None => None,
        };
        let (mut durable, start) = match &snapshot {
            Some(s) => (s.durable.clone(), s.last_included_index.saturating_add(1)),
            None => (Durable::default(), 0),
        };
        let mut records_replayed = 0;
        for (index, payload) in restored.recovered.iter().filter(|(i, _)| *i >= start) {
            let record =
                decode_record(payload).map_err(|source| ReplicaLogError::CorruptRecord {
                    file: segment_of(dir, index),
                    index,
                    source,
                })?;
            durable
                .apply(record)
                .map_err(|source| ReplicaLogError::InconsistentRecord {
                    file: segment_of(dir, index),
                    index,
                    source,
                })?;
            records_replayed += 1;
        }
        let log = ReplicaLog {
            wal: restored.wal,
            snapshots_kept: options.snapshots_kept,
            _op: PhantomData,
        };
        let recovered = ReplicaRecovered {
            durable,
            snapshot,
            records_replayed,
            torn_tail: restored.recovered.torn_tail,
        };
        Ok((log, recovered))
    }

    /// Appends `records` (not yet durable: call [`ReplicaLog::sync`] before acting on them).
    /// Encodes every record before writing any. Returns their WAL indices.
    pub fn append(&mut self, records: &[Record<Op>]) -> Result<Range<u64>, ReplicaLogError> {
        let next = self.wal.next_index();
        if records.is_empty() {
            return Ok(next..next);
        }
        let payloads = encode_records(records).map_err(ReplicaLogError::Encode)?;
        let payloads: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        Ok(self.wal.append(&payloads)?)
    }

    /// Makes every appended record durable (one fsync).
    pub fn sync(&mut self) -> Result<(), ReplicaLogError> {
        Ok(self.wal.sync()?)
    }

    /// [`ReplicaLog::append`] then [`ReplicaLog::sync`]: what a runtime does with one step's
    /// `Persist` effects before performing the rest of the step.
    pub fn persist(&mut self, records: &[Record<Op>]) -> Result<Range<u64>, ReplicaLogError> {
        let range = self.append(records)?;
        if !range.is_empty() {
            self.sync()?;
        }
        Ok(range)
    }

    /// Snapshots the replica at the last appended record and compacts the WAL (see the
    /// [module docs](self) for what is kept and why). `durable` must be the fold of every
    /// record appended so far ([`Replica::durable`](crate::multi::Replica::durable) once the
    /// steps' records are persisted); `state_machine` the state after exactly the slots below
    /// `applied`. Returns the snapshot's last included WAL index.
    pub fn snapshot(
        &mut self,
        applied: Slot,
        state_machine: &[u8],
        durable: &Durable<Op>,
    ) -> Result<u64, ReplicaLogError> {
        let bytes =
            encode_snapshot(applied, state_machine, durable).map_err(ReplicaLogError::Encode)?;
        Ok(self.wal.snapshot_appended(&bytes, self.snapshots_kept)?)
    }

    /// Moves the WAL to a group-commit writer thread.
    pub fn into_group_commit(
        self,
        options: GroupCommitOptions,
    ) -> Result<ReplicaGroupCommit<Op>, ReplicaLogError> {
        Ok(ReplicaGroupCommit {
            group_commit: GroupCommit::start(self.wal, options)?,
            snapshots_kept: self.snapshots_kept,
            _op: PhantomData,
        })
    }

    /// The index the next appended record gets.
    pub fn next_index(&self) -> u64 {
        self.wal.next_index()
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }
}

/// A [`ReplicaLog`] behind [`GroupCommit`]: steps from many tasks share one fsync.
#[derive(Debug)]
pub struct ReplicaGroupCommit<Op> {
    group_commit: GroupCommit,
    snapshots_kept: usize,
    _op: PhantomData<fn() -> Op>,
}

impl<Op> ReplicaGroupCommit<Op>
where
    Op: Serialize + DeserializeOwned + Clone,
{
    /// Encodes `records` and queues them as consecutive WAL records; the ticket yields their
    /// indices once durable. An encoding error is returned at once and nothing is queued.
    pub fn submit(&self, records: &[Record<Op>]) -> Result<AppendTicket, ReplicaLogError> {
        let payloads = encode_records(records).map_err(ReplicaLogError::Encode)?;
        Ok(self.group_commit.submit(payloads))
    }

    /// Submits `records` and blocks until they are durable.
    pub fn persist(&self, records: &[Record<Op>]) -> Result<Range<u64>, ReplicaLogError> {
        Ok(self.submit(records)?.wait()?)
    }

    /// [`ReplicaLog::snapshot`] through the writer thread, after every record submitted
    /// before it: `durable` must be the fold of all of them. `on_done` gets the snapshot's last
    /// included WAL index once it is durable (on the writer thread: it must be quick). An
    /// encoding error is returned at once and nothing is queued.
    pub fn snapshot_with<F>(
        &self,
        applied: Slot,
        state_machine: &[u8],
        durable: &Durable<Op>,
        on_done: F,
    ) -> Result<(), ReplicaLogError>
    where
        F: FnOnce(Result<u64, WalError>) + Send + 'static,
    {
        let bytes =
            encode_snapshot(applied, state_machine, durable).map_err(ReplicaLogError::Encode)?;
        self.group_commit
            .snapshot_with(bytes, self.snapshots_kept, on_done);
        Ok(())
    }

    pub fn group_commit(&self) -> &GroupCommit {
        &self.group_commit
    }

    /// Commits everything queued, stops the writer and hands the log back.
    pub fn shutdown(self) -> Result<ReplicaLog<Op>, ReplicaLogError> {
        Ok(ReplicaLog {
            wal: self.group_commit.shutdown()?,
            snapshots_kept: self.snapshots_kept,
            _op: PhantomData,
        })
    }
}

fn decode_snapshot_file<Op: DeserializeOwned>(
    file: super::Snapshot,
) -> Result<ReplicaSnapshot<Op>, ReplicaLogError> {
    let (applied, durable, state_machine) =
        decode_snapshot(&file.bytes).map_err(|source| ReplicaLogError::CorruptSnapshot {
            file: file.path.clone(),
            source,
        })?;
    Ok(ReplicaSnapshot {
        last_included_index: file.last_included_index,
        applied,
        state_machine,
        durable,
        path: file.path,
    })
}

/// The segment file holding record `index`: the one with the greatest first index at or below
/// it (`wal-<first index, 20 digits>.log`). Only used to name a file in an error, so any
/// trouble reading the directory names the directory instead.
fn segment_of(dir: &Path, index: u64) -> PathBuf {
    let Ok(entries) = fs::read_dir(dir) else {
        return dir.to_path_buf();
    };
    let first_index = |name: &str| -> Option<u64> {
        let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
        (digits.len() == 20).then(|| digits.parse().ok()).flatten()
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let first = e.file_name().to_str().and_then(first_index)?;
            (first <= index).then(|| (first, e.path()))
        })
        .max()
        .map_or_else(|| dir.to_path_buf(), |(_, path)| path)
}

/// The newest valid snapshot in `dir`, decoded, without opening the WAL (for tools and for
/// sending a snapshot to a far-behind peer).
pub fn latest_replica_snapshot<Op: DeserializeOwned>(
    dir: impl AsRef<Path>,
) -> Result<Option<ReplicaSnapshot<Op>>, ReplicaLogError> {
    match latest_snapshot(dir)? {
        Some(file) => Ok(Some(decode_snapshot_file(file)?)),
        None => Ok(None),
    }
}
