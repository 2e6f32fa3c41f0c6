//! Durable storage: a write-ahead log of opaque records, group commit, and snapshots.
//!
//! An acceptor may answer a Prepare or an Accept only once the promise or the accepted value is
//! on disk (`specs/protocol.md`: persist before you speak). Forgetting either after a crash
//! lets two different values be chosen, so this layer is built to **refuse to start rather than
//! silently lose a record**. The protocol layer serialises its own records; here they are byte
//! strings with a `u64` index, contiguous from the first record kept.
//!
//! ```text
//!   protocol ──► GroupCommit::append_durable / submit ──► writer thread ──► Wal ──► segments
//!                       ▲ index range, after fsync             │
//!                       └──────────────────────────────────────┘
//!   start-up:  recover(dir) ──► (Wal, Recovered records, newest valid Snapshot)
//! ```
//!
//! # On-disk format
//!
//! A directory holds segment files `wal-<first index, 20 digits>.log` and snapshot files
//! `snapshot-<last included index, 20 digits>.snap` (format in [`snapshot`]). Zero padding
//! makes names sort by index. A segment is a plain sequence of records:
//!
//! ```text
//!   [u32 LE payload length][u32 LE crc32c(length bytes ‖ payload)][payload] ...
//! ```
//!
//! There is no segment header: a segment's first index is its name, the index of every other
//! record is its position, so nothing on disk can disagree with anything else. The checksum
//! covers the length so a damaged length is caught, not trusted to re-frame what follows.
//! Lengths above [`WalOptions::record_bytes_max`] are damage, never an allocation. A segment
//! is closed when the next record would take it past [`WalOptions::segment_bytes_max`], and it
//! is fsynced *before* the next segment is created.
//!
//! # Recovery rules
//!
//! A crash can only cut the log short: the kernel writes an appended range in some order, so
//! after power loss the end of the last segment may hold a prefix of the last write, zeros, or
//! stale blocks. It cannot damage a record in the middle that was already durable. Recovery
//! therefore reads every record and, at the first damaged one (short header, impossible
//! length, length past the end of the file, or checksum mismatch), decides:
//!
//! * **Torn tail** — the damage is in the last segment and *no valid record follows it
//!   anywhere in the file* (every later byte offset is tried, because a damaged length hides
//!   where the next record starts). That is what a cut-short write looks like, whether the
//!   file ends inside the record or the filesystem exposed zeros or stale blocks after it. The
//!   record and everything after it are logged with a warning and truncated, and the
//!   truncation is fsynced so the same bytes are not judged again after the next crash, when
//!   new records may follow them.
//!
//!   A record whose checksum fails while it ends exactly at the end of the last segment is
//!   therefore a torn tail too. This is a deliberate choice: a write torn inside the last
//!   record and that record rotting on the medium after it was acknowledged look the same,
//!   and this framing has no commit marker to tell them apart. Calling it corruption would
//!   stop the node after every power cut during a write; calling it torn loses at most the
//!   newest record, and only when the medium itself failed, which is what replication and
//!   the disk's own checksums are there for.
//!
//!   Searching is bounded (a few GiB of hashing, reached only by several MiB of incompressible
//!   bytes after the damage). If the budget runs out, the plain rule decides: torn if the
//!   damaged record runs to the end of the file, corruption otherwise.
//! * **Corruption** — the damage is in a segment that is not the last (it was fsynced before
//!   its successor existed, so no crash explains it), or valid records follow it, or segment
//!   names leave a gap or an overlap in the indices (a lost file). The error is
//!   [`WalError::Corrupt`] with the file and byte offset, and the node refuses to start:
//!   truncating there would discard records that were acknowledged, i.e. forget promises and
//!   accepted values.
//!
//! # Compaction and snapshots
//!
//! Once the protocol layer has a snapshot of everything up to index `i` (written with
//! [`write_snapshot`] or [`Wal::install_snapshot`]), [`Wal::compact`]`(i + 1)` deletes the whole
//! segments below it, oldest first with a directory fsync after each, so that a crash part-way
//! leaves a contiguous log. Records of the first kept segment may still be `<= i`: skip them.
//! [`latest_snapshot`] loads the newest valid snapshot and falls back to an older one when the
//! newest is damaged; that is only lossless while the log still reaches back to the older
//! snapshot, which is why [`recover`] checks that the log starts at or before
//! `snapshot index + 1` and why keeping two snapshots ([`prune_snapshots`]) and compacting
//! below the older one is the safe configuration.
//!
//! ## Bringing up a far-behind replica
//!
//! A replica whose log ends before the oldest record its peers still keep cannot catch up
//! record by record. The protocol layer sends it snapshot bytes and an index `i`; the replica
//! calls [`Wal::install_snapshot`] (or [`GroupCommit::install_snapshot`]) with `i` in its *own*
//! log's index space (indices are local to a WAL). The bytes must carry everything the node
//! must not forget — the peer's state image *and this acceptor's own promise and accepted
//! values above the snapshot* — because when `i` reaches past the end of the local log, every
//! local record is discarded and the log restarts empty at `i + 1`. The steps, and what a crash
//! after each leaves:
//!
//! 1. the snapshot is written atomically (temporary file, fsync, rename, directory fsync) —
//!    a crash leaves the old log and a snapshot beyond its end: [`Wal::open`] sees the log
//!    ending at or before a valid snapshot and finishes the install;
//! 2. `wal-<i + 1>.log` is created and the directory fsynced — a crash leaves the old
//!    segments, a gap, and a segment starting right after a valid snapshot: [`Wal::open`]
//!    removes the superseded segments instead of reporting the gap;
//! 3. the old segments are removed, oldest first.
//!
//! If `i` is inside the local log the records after it are kept and the covered segments are
//! compacted.

mod error;
mod group_commit;
mod record;
pub mod replica_log;
pub mod snapshot;
mod wal;

use std::path::Path;

pub use error::WalError;
pub use group_commit::{AppendTicket, GroupCommit, GroupCommitOptions, GroupCommitStats};
pub use replica_log::{
    CodecError, ReplicaGroupCommit, ReplicaLog, ReplicaLogError, ReplicaLogOptions,
    ReplicaRecovered, ReplicaSnapshot,
};
pub use snapshot::{latest_snapshot, prune_snapshots, read_snapshot, write_snapshot, Snapshot};
pub use wal::{Recovered, TornTail, Wal, WalOptions, WalStats};

/// Everything a node needs at start-up.
#[derive(Debug)]
pub struct Restored {
    /// Open for appends after the last recovered record.
    pub wal: Wal,
    pub recovered: Recovered,
    /// The newest valid snapshot; replay `recovered` records above its index on top of it.
    pub snapshot: Option<Snapshot>,
}

/// Opens the WAL in `dir`, loads the newest valid snapshot, and checks that together they
/// leave no hole: the log must start at or before `snapshot index + 1` (at 0 without a
/// snapshot). A hole — segments compacted below a snapshot that later proved corrupt, or lost
/// files — is [`WalError::Corrupt`].
pub fn recover(dir: impl AsRef<Path>, options: WalOptions) -> Result<Restored, WalError> {
    let dir = dir.as_ref();
    let (wal, recovered) = Wal::open(dir, options)?;
    let snapshot = latest_snapshot(dir)?;
    let covered_below = match &snapshot {
        Some(s) => s.last_included_index.saturating_add(1),
        None => 0,
    };
    if recovered.first_index > covered_below {
        let what = match &snapshot {
            Some(s) => format!(
                "the newest valid snapshot ends at index {}",
                s.last_included_index
            ),
            None => "there is no snapshot".to_string(),
        };
        let reason = format!(
            "the log starts at index {} but {what}: records {covered_below}..{} are lost",
            recovered.first_index, recovered.first_index
        );
        return Err(WalError::corrupt(dir, 0, reason));
    }
    Ok(Restored {
        wal,
        recovered,
        snapshot,
    })
}

/// Makes creations, renames and removals in `dir` durable. (On non-Unix platforms directories
/// cannot be opened for fsync; there it is a no-op.)
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    #[cfg(unix)]
    {
        let handle = std::fs::File::open(dir).map_err(|e| WalError::io("open", dir, e))?;
        handle
            .sync_all()
            .map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
