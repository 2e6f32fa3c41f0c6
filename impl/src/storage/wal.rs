//! The synchronous write-ahead log: segment files, recovery, append, fsync, compaction and
//! snapshot installation. See the [module overview](crate::storage) for the on-disk format and
//! the recovery rules; the comments here say how the code keeps the promises made there.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::record::{self, Damage, Search};
use super::snapshot;
use super::sync_dir;

const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";

/// Sizes and limits of a [`Wal`]. Every field has a named maximum so nothing on disk or in
/// memory grows without bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is closed (fsynced) and a new one started before a record would take it past
    /// this size. A single record larger than this gets a segment of its own.
    pub segment_bytes_max: u64,
    /// Largest payload accepted by [`Wal::append`], and the largest length recovery believes:
    /// a longer length on disk is damage, never an allocation.
    pub record_bytes_max: u32,
    /// Framed bytes buffered before a write syscall. A batch up to this size is one `write`.
    pub write_buffer_bytes_max: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes_max: 64 << 20,
            record_bytes_max: 64 << 20,
            write_buffer_bytes_max: 8 << 20,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<(), WalError> {
        let invalid = |what: &str| Err(WalError::InvalidArgument(format!("WalOptions: {what}")));
        if self.segment_bytes_max == 0 {
            return invalid("segment_bytes_max must be positive");
        }
        if self.record_bytes_max == 0 {
            return invalid("record_bytes_max must be positive");
        }
        if self.write_buffer_bytes_max == 0 {
            return invalid("write_buffer_bytes_max must be positive");
        }
        Ok(())
    }
}

/// Counters since [`Wal::open`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    pub records_appended: u64,
    /// Framed bytes, headers included.
    pub bytes_appended: u64,
    /// `fdatasync`s of segment files (commits and segment closes).
    pub fsyncs: u64,
    /// `fsync`s of the directory (segment creation and removal).
    pub dir_fsyncs: u64,
    pub segments_created: u64,
}

/// What [`Wal::open`] found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Index of `records[0]`: 0 for a log never compacted, else the first kept segment's first
    /// index (which may be below the latest snapshot: skip the records the snapshot covers).
    pub first_index: u64,
    /// Every record, in index order.
    pub records: Vec<Vec<u8>>,
    /// The partially written record that was cut off the end of the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Segments removed because a snapshot install was interrupted by a crash and the snapshot
    /// supersedes them.
    pub superseded_segments: Vec<PathBuf>,
}

impl Recovered {
    /// The index the next appended record gets.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    /// `(index, payload)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        (self.first_index..).zip(self.records.iter().map(Vec::as_slice))
    }
}

/// A torn final record found and truncated by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// Byte offset the file was truncated to: the end of the last valid record.
    pub offset: u64,
    pub bytes_discarded: u64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    first_index: u64,
    path: PathBuf,
}

/// The write-ahead log. One owner appends; share it across threads through
/// [`GroupCommit`](crate::storage::GroupCommit).
///
/// `append` makes records visible to a crash only after [`Wal::sync`]; nothing is synced on
/// drop.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// Ascending by first index and contiguous; the last one is the active segment.
    segments: Vec<Segment>,
    file: File,
    file_len: u64,
    next_index: u64,
    buf: Vec<u8>,
    unsynced_data: bool,
    unsynced_dir: bool,
    poisoned: Option<String>,
    stats: WalStats,
    #[cfg(test)]
    pub(crate) fail_syncs: bool,
}

impl Wal {
    /// Recovers every record in `dir` (created if missing) and opens the log for appends after
    /// them. Truncates a torn final record; refuses to open on any other damage.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<(Wal, Recovered), WalError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| WalError::io("create directory", &dir, e))?;
        let segments = segment_files(&dir)?;
        let mut dir_fsyncs = 0;
        let (plan, superseded) = if segments.is_empty() {
            (None, Vec::new())
        } else {
            let (plan, superseded) = recover_or_finish_install(&dir, segments, &options)?;
            (Some(plan), superseded)
        };
        dir_fsyncs += remove_segments(&dir, &superseded)?;
        let plan = match plan {
            Some(plan) => plan,
            None => fresh_plan(&dir)?,
        };
        let (plan, restarted) = restart_if_snapshot_covers_log(&dir, plan)?;
        dir_fsyncs += restarted;
        if let Some(torn) = &plan.torn_tail {
            truncate_torn_tail(torn)?;
        }
        let recovered = Recovered {
            first_index: plan.first_index,
            records: plan.records,
            torn_tail: plan.torn_tail,
            superseded_segments: superseded.into_iter().map(|s| s.path).collect(),
        };
        let mut wal = Wal::resume(dir, options, plan.segments, plan.active_len, &recovered)?;
        wal.stats.dir_fsyncs += dir_fsyncs;
        tracing::info!(
            dir = %wal.dir.display(),
            first_index = recovered.first_index,
            next_index = wal.next_index,
            segments = wal.segments.len(),
            torn_tail = recovered.torn_tail.is_some(),
            "WAL recovered"
        );
        Ok((wal, recovered))
    }

    fn resume(
        dir: PathBuf,
        options: WalOptions,
        segments: Vec<Segment>,
        active_len: u64,
        recovered: &Recovered,
    ) -> Result<Wal, WalError> {
        let Some(active) = segments.last() else {
            return Err(WalError::InvalidArgument("no active segment".into()));
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&active.path)
            .map_err(|e| WalError::io("open", &active.path, e))?;
        Ok(Wal {
            dir,
            options,
            segments,
            file,
            file_len: active_len,
            next_index: recovered.next_index(),
            buf: Vec::new(),
            unsynced_data: false,
            unsynced_dir: false,
            poisoned: None,
            stats: WalStats::default(),
            #[cfg(test)]
            fail_syncs: false,
        })
    }

    /// Appends `payloads` as consecutive records and returns their indices. Buffered: one write
    /// syscall per batch unless the batch exceeds `write_buffer_bytes_max` or a segment fills.
    /// Not durable until [`Wal::sync`]. A failed write poisons the log.
    pub fn append(&mut self, payloads: &[&[u8]]) -> Result<Range<u64>, WalError> {
        self.check_writable()?;
        self.check_payloads(payloads)?;
        let start = self.next_index;
        self.buf.clear();
        for payload in payloads {
            let framed = record::framed_len(payload.len());
            let pending = self.file_len + self.buf.len() as u64;
            if pending > 0 && pending + framed > self.options.segment_bytes_max {
                self.flush()?;
                self.rotate()?;
            } else if !self.buf.is_empty()
                && self.buf.len() as u64 + framed > self.options.write_buffer_bytes_max as u64
            {
                self.flush()?;
            }
            record::encode_into(&mut self.buf, payload);
            self.next_index += 1;
        }
        self.flush()?;
        self.stats.records_appended += payloads.len() as u64;
        Ok(start..self.next_index)
    }

    /// Fails with [`WalError::RecordTooLarge`] if any payload exceeds `record_bytes_max`.
    pub fn check_payloads(&self, payloads: &[&[u8]]) -> Result<(), WalError> {
        check_payloads(
            payloads.iter().map(|p| p.len()),
            self.options.record_bytes_max,
        )
    }

    /// Makes every appended record durable: `fdatasync` of the active segment, and `fsync` of
    /// the directory if a segment was created since the last sync. A failure poisons the log:
    /// after a failed fsync the kernel may have dropped the dirty pages, so a retry that
    /// succeeds would prove nothing.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_writable()?;
        if self.unsynced_data {
            let result = self.sync_active();
            result.map_err(|error| self.fail(error))?;
            self.unsynced_data = false;
            self.stats.fsyncs += 1;
        }
        if self.unsynced_dir {
            sync_dir(&self.dir).map_err(|error| self.fail(error))?;
            self.unsynced_dir = false;
            self.stats.dir_fsyncs += 1;
        }
        Ok(())
    }

    fn sync_active(&self) -> Result<(), WalError> {
        #[cfg(test)]
        if self.fail_syncs {
            let injected = std::io::Error::other("injected fsync failure");
            return Err(WalError::io("fsync", self.active_path(), injected));
        }
        self.file
            .sync_data()
            .map_err(|e| WalError::io("fsync", self.active_path(), e))
    }

    /// Deletes whole segments all of whose records are below `below_index`, oldest first, so a
    /// crash part-way leaves a contiguous log. The active segment is never deleted. Returns the
    /// number of segments removed. Call it only once a durable snapshot covers
    /// `below_index - 1`; without one the removed records are gone.
    pub fn compact(&mut self, below_index: u64) -> Result<usize, WalError> {
        self.check_writable()?;
        let removable = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].first_index <= below_index)
            .count();
        if removable == 0 {
            return Ok(0);
        }
        let removed: Vec<Segment> = self.segments.drain(..removable).collect();
        let dir_fsyncs = remove_segments(&self.dir, &removed).map_err(|e| self.fail(e))?;
        self.stats.dir_fsyncs += dir_fsyncs;
        tracing::info!(
            below_index,
            removed = removable,
            first_index = self.first_index(),
            "WAL compacted"
        );
        Ok(removable)
    }

    /// Installs a snapshot that replaces every record up to `last_included_index`: used to bring
    /// up a replica that is too far behind to catch up record by record.
    ///
    /// Writes the snapshot durably first. If it reaches past the end of the log, the log
    /// restarts empty at `last_included_index + 1`: a new segment is created and made durable
    /// *before* the old ones are removed, so a crash at any point recovers either the old log
    /// plus the snapshot or the new one (see "Bringing up a far-behind replica" in the
    /// [module docs](crate::storage)).
    /// Otherwise the records after it are kept and the segments it covers are compacted.
    pub fn install_snapshot(
        &mut self,
        last_included_index: u64,
        bytes: &[u8],
    ) -> Result<(), WalError> {
        self.check_writable()?;
        let Some(start) = last_included_index.checked_add(1) else {
            return Err(WalError::InvalidArgument(
                "snapshot index u64::MAX leaves no room for the log".into(),
            ));
        };
        snapshot::write_snapshot(&self.dir, last_included_index, bytes)
            .map_err(|e| self.fail(e))?;
        if start <= self.next_index {
            return self.compact(start).map(|_| ());
        }
        self.restart_at(start).map_err(|e| self.fail(e))?;
        tracing::info!(
            last_included_index,
            "snapshot installed; WAL restarted after it"
        );
        Ok(())
    }

    /// Writes `bytes` as a snapshot covering every record appended so far, keeps the newest
    /// `snapshots_kept` snapshot files and compacts the log below the oldest one kept (so that
    /// if the newest is damaged, recovery falls back to the older one and still finds every
    /// record after it). Returns the snapshot's last included index.
    ///
    /// The records are made durable first, so a crash never leaves a snapshot ahead of a log
    /// that lost records it covers. A second snapshot with no record appended since the
    /// first replaces it atomically (same index). With nothing appended at all the snapshot
    /// is at index 0 and the log restarts after it ([`Wal::install_snapshot`]).
    pub fn snapshot_appended(
        &mut self,
        bytes: &[u8],
        snapshots_kept: usize,
    ) -> Result<u64, WalError> {
        if snapshots_kept == 0 {
            return Err(WalError::InvalidArgument(
                "snapshots_kept must be at least 1".into(),
            ));
        }
        let Some(index) = self.next_index.checked_sub(1) else {
            self.install_snapshot(0, bytes)?;
            return Ok(0);
        };
        self.sync()?;
        snapshot::write_snapshot(&self.dir, index, bytes).map_err(|e| self.fail(e))?;
        snapshot::prune_snapshots(&self.dir, snapshots_kept).map_err(|e| self.fail(e))?;
        let files = snapshot::snapshot_files(&self.dir).map_err(|e| self.fail(e))?;
        let oldest_kept = files.first().map_or(index, |(i, _)| *i);
        self.compact(oldest_kept.saturating_add(1))?;
        Ok(index)
    }

    fn restart_at(&mut self, start: u64) -> Result<(), WalError> {
        let path = segment_path(&self.dir, start);
        let file = create_segment(&path)?;
        sync_dir(&self.dir)?;
        self.stats.dir_fsyncs += 1;
        self.stats.segments_created += 1;
        let old = std::mem::replace(
            &mut self.segments,
            vec![Segment {
                first_index: start,
                path,
            }],
        );
        self.file = file;
        self.file_len = 0;
        self.next_index = start;
        self.unsynced_data = false;
        self.unsynced_dir = false;
        self.stats.dir_fsyncs += remove_segments(&self.dir, &old)?;
        Ok(())
    }

    /// Index of the oldest record still on disk.
    pub fn first_index(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.next_index, |s| s.first_index)
    }

    /// Index the next appended record gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    pub fn stats(&self) -> WalStats {
        self.stats.clone()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Why the log refuses writes, if it does.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn check_writable(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(cause) => Err(WalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: WalError) -> WalError {
        if self.poisoned.is_none() {
            tracing::error!(%error, "WAL poisoned: refusing further writes");
            self.poisoned = Some(error.to_string());
        }
        error
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .map_or_else(|| self.dir.clone(), |s| s.path.clone())
    }

    fn flush(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            let error = WalError::io("write", self.active_path(), e);
            return Err(self.fail(error));
        }
        self.file_len += self.buf.len() as u64;
        self.stats.bytes_appended += self.buf.len() as u64;
        self.unsynced_data = true;
        self.buf.clear();
        Ok(())
    }

    /// Closes the active segment durably, then starts the next one. The fsync here is what lets
    /// recovery call any damage in a non-last segment corruption: once a later segment exists,
    /// no crash can tear an earlier one.
    fn rotate(&mut self) -> Result<(), WalError> {
        if self.unsynced_data {
            self.sync_active().map_err(|e| self.fail(e))?;
            self.unsynced_data = false;
            self.stats.fsyncs += 1;
        }
        let path = segment_path(&self.dir, self.next_index);
        self.file = create_segment(&path).map_err(|e| self.fail(e))?;
        tracing::debug!(path = %path.display(), "WAL segment started");
        self.segments.push(Segment {
            first_index: self.next_index,
            path,
        });
        self.file_len = 0;
        self.unsynced_dir = true;
        self.stats.segments_created += 1;
        Ok(())
    }
}

pub(crate) fn check_payloads(
    lens: impl IntoIterator<Item = usize>,
    record_bytes_max: u32,
) -> Result<(), WalError> {
    for len in lens {
        if len > record_bytes_max as usize {
            return Err(WalError::RecordTooLarge {
                len,
                max: record_bytes_max,
            });
        }
    }
    Ok(())
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_index:020}{SEGMENT_SUFFIX}"))
}

fn create_segment(path: &Path) -> Result<File, WalError> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|e| WalError::io("create", path, e))
}

/// Segment files in `dir`, ascending. Names that look like segments but are not canonical are
/// ignored with a warning rather than guessed at.
fn segment_files(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        match digits.parse::<u64>() {
            Ok(first_index) if digits.len() == 20 => segments.push(Segment {
                first_index,
                path: entry.path(),
            }),
            _ => tracing::warn!(file = name, "ignoring a non-canonical WAL segment name"),
        }
    }
    segments.sort_by_key(|s| s.first_index);
    Ok(segments)
}

/// The outcome of reading the segments, before anything on disk is changed.
struct Plan {
    segments: Vec<Segment>,
    first_index: u64,
    records: Vec<Vec<u8>>,
    /// Valid length of the last segment (where appends continue).
    active_len: u64,
    torn_tail: Option<TornTail>,
}

impl Plan {
    fn next_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }
}

/// Recovers `segments`; if that fails and a crash interrupted a snapshot install (a segment
/// that starts right after a valid snapshot), drops the segments the snapshot supersedes and
/// recovers the rest. Returns the plan and the superseded segments (still on disk).
fn recover_or_finish_install(
    dir: &Path,
    mut segments: Vec<Segment>,
    options: &WalOptions,
) -> Result<(Plan, Vec<Segment>), WalError> {
    let error = match recover_segments(segments.clone(), options) {
        Ok(plan) => return Ok((plan, Vec::new())),
        Err(error) => error,
    };
    let snapshots = snapshot::snapshot_files(dir)?;
    let pivot = segments
        .iter()
        .rposition(|s| s.first_index > 0 && snapshots.iter().any(|(i, _)| i + 1 == s.first_index));
    let Some(pivot) = pivot.filter(|&p| p > 0) else {
        return Err(error);
    };
    let covering = snapshot::snapshot_path(dir, segments[pivot].first_index - 1);
    if let Err(snapshot_error) = snapshot::read_snapshot(&covering) {
        tracing::warn!(%snapshot_error, "snapshot that could supersede damaged segments is unusable");
        return Err(error);
    }
    tracing::warn!(
        %error,
        snapshot = %covering.display(),
        "finishing an interrupted snapshot install: removing the segments it supersedes"
    );
    let superseded: Vec<Segment> = segments.drain(..pivot).collect();
    Ok((recover_segments(segments, options)?, superseded))
}

/// Reads every segment, checking contiguity and classifying damage (torn tail or corruption).
/// Changes nothing on disk.
fn recover_segments(segments: Vec<Segment>, options: &WalOptions) -> Result<Plan, WalError> {
    let first_index = segments.first().map_or(0, |s| s.first_index);
    let mut records = Vec::new();
    let mut torn_tail = None;
    let mut active_len = 0;
    let mut expected = first_index;
    let mut previous: Option<&Path> = None;
    let last = segments.len().saturating_sub(1);
    for (position, segment) in segments.iter().enumerate() {
        if segment.first_index != expected {
            return Err(gap_error(segment, expected, previous));
        }
        let data = fs::read(&segment.path).map_err(|e| WalError::io("read", &segment.path, e))?;
        let scan = record::scan(&data, options.record_bytes_max);
        if let Some(damage) = &scan.damage {
            let torn = classify(
                segment,
                &data,
                scan.valid_len,
                damage,
                position == last,
                options,
            )?;
            torn_tail = Some(torn);
        }
        expected += scan.payloads.len() as u64;
        records.extend(scan.payloads.iter().map(|r| data[r.clone()].to_vec()));
        active_len = scan.valid_len as u64;
        previous = Some(&segment.path);
    }
    Ok(Plan {
        segments,
        first_index,
        records,
        active_len,
        torn_tail,
    })
}

fn gap_error(segment: &Segment, expected: u64, previous: Option<&Path>) -> WalError {
    let after = previous.map_or_else(String::new, |p| format!(" after {}", p.display()));
    let reason = if segment.first_index > expected {
        format!(
            "segment starts at index {} but the log{after} ends at {expected}: records {expected}..{} are missing (a segment file was lost)",
            segment.first_index, segment.first_index
        )
    } else {
        format!(
            "segment starts at index {} but the log{after} already reaches {expected}: segments overlap",
            segment.first_index
        )
    };
    WalError::corrupt(&segment.path, 0, reason)
}

/// A damaged record at `offset` is a torn tail only in the last segment and only if no valid
/// record follows it anywhere in the file: a torn write loses a suffix, it never leaves intact
/// records behind the damage.
fn classify(
    segment: &Segment,
    data: &[u8],
    offset: usize,
    damage: &Damage,
    is_last: bool,
    options: &WalOptions,
) -> Result<TornTail, WalError> {
    let corrupt = |reason: String| WalError::corrupt(&segment.path, offset as u64, reason);
    if !is_last {
        return Err(corrupt(format!(
            "{damage} in a segment that is not the last (segments are fsynced before the next \
             one is created, so a crash cannot tear them)"
        )));
    }
    let max = options.record_bytes_max;
    let torn = |reason: String| TornTail {
        file: segment.path.clone(),
        offset: offset as u64,
        bytes_discarded: (data.len() - offset) as u64,
        reason,
    };
    match record::search_valid_record(data, offset, max, record::SEARCH_HASH_BYTES_MAX) {
        Search::NotFound => Ok(torn(damage.to_string())),
        Search::Found(at) => Err(corrupt(format!(
            "{damage}, yet a valid record follows at byte offset {at}: damage inside the log, \
             not a torn write"
        ))),
        // Too many bytes to search: fall back to the plain rule, torn only if the damaged
        // record runs to the end of the file.
        Search::Inconclusive if damage.reaches_end(offset, data.len()) => Ok(torn(format!(
            "{damage} (the {} bytes after it were too many to search for later records)",
            data.len() - offset
        ))),
        Search::Inconclusive => Err(corrupt(format!(
            "{damage}, followed by {} bytes that were too many to search for valid records",
            data.len() - offset
        ))),
    }
}

/// An empty directory: the log starts after the newest snapshot (by name; if that snapshot
/// turns out corrupt, [`crate::storage::recover`] reports the gap), else at 0.
fn fresh_plan(dir: &Path) -> Result<Plan, WalError> {
    let newest = snapshot::snapshot_files(dir)?.last().map(|(i, _)| *i);
    let start = match newest {
        Some(index) => index.checked_add(1).ok_or_else(|| {
            WalError::InvalidArgument("snapshot index u64::MAX leaves no room for the log".into())
        })?,
        None => 0,
    };
    let path = segment_path(dir, start);
    create_segment(&path)?;
    sync_dir(dir)?;
    Ok(Plan {
        segments: vec![Segment {
            first_index: start,
            path,
        }],
        first_index: start,
        records: Vec::new(),
        active_len: 0,
        torn_tail: None,
    })
}

/// A crash between writing an installed snapshot and restarting the log leaves a log that ends
/// at or before the snapshot. Appending there would reuse indices the snapshot covers, so the
/// install is finished now, if the snapshot is valid. Returns the plan and the dir fsyncs done.
fn restart_if_snapshot_covers_log(dir: &Path, plan: Plan) -> Result<(Plan, u64), WalError> {
    let next = plan.next_index();
    let snapshot = match snapshot::newest_valid(dir, next) {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) | Err(WalError::Corrupt { .. }) => return Ok((plan, 0)),
        Err(error) => return Err(error),
    };
    let index = snapshot.last_included_index;
    let Some(start) = index.checked_add(1) else {
        return Ok((plan, 0));
    };
    tracing::warn!(
        snapshot_index = index,
        log_next_index = next,
        "finishing an interrupted snapshot install: restarting the log after the snapshot"
    );
    let path = segment_path(dir, start);
    create_segment(&path)?;
    sync_dir(dir)?;
    let dir_fsyncs = 1 + remove_segments(dir, &plan.segments)?;
    let plan = Plan {
        segments: vec![Segment {
            first_index: start,
            path,
        }],
        first_index: start,
        records: Vec::new(),
        active_len: 0,
        torn_tail: None,
    };
    Ok((plan, dir_fsyncs))
}

/// Removes segments oldest first with a directory fsync after each, so that whatever a crash
/// preserves is still a contiguous suffix of the log. Returns the dir fsyncs done.
fn remove_segments(dir: &Path, segments: &[Segment]) -> Result<u64, WalError> {
    for segment in segments {
        match fs::remove_file(&segment.path) {
            // Already gone: removal is idempotent, what matters is that it stays gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("remove", &segment.path, e)),
            Ok(()) => {}
        }
        sync_dir(dir)?;
        tracing::debug!(path = %segment.path.display(), "WAL segment removed");
    }
    Ok(segments.len() as u64)
}

/// Truncates a torn tail and makes the truncation durable, so the same bytes are never
/// classified again after the next crash (when more records may follow them).
fn truncate_torn_tail(torn: &TornTail) -> Result<(), WalError> {
    tracing::warn!(
        file = %torn.file.display(),
        offset = torn.offset,
        bytes_discarded = torn.bytes_discarded,
        reason = %torn.reason,
        "WAL ends in a torn record (a write cut short by a crash); truncating it"
    );
    let file = OpenOptions::new()
        .write(true)
        .open(&torn.file)
        .map_err(|e| WalError::io("open", &torn.file, e))?;
    file.set_len(torn.offset)
        .map_err(|e| WalError::io("truncate", &torn.file, e))?;
    file.sync_all()
        .map_err(|e| WalError::io("fsync", &torn.file, e))
}
