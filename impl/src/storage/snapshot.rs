//! Snapshots: `snapshot-<last included index, 20 digits>.snap` in the WAL directory.
//!
//! ```text
//!   [8 bytes magic "PXSNAP01"][u64 LE last_included_index][u64 LE length]
//!   [u32 LE crc32c over everything before it and the payload][payload]
//! ```
//!
//! A snapshot is written to `<name>.tmp`, fsynced, renamed into place and the directory fsynced,
//! so a `.snap` name only ever appears for a complete, durable file: a crash leaves either the
//! old set of snapshots or the new one, plus at most a stale `.tmp` that is ignored and removed
//! by the next write. A `.snap` file that fails its checksum was therefore damaged after it was
//! written (media, an operator): [`latest_snapshot`] skips it with a warning and falls back to
//! the next older one, which is safe only while the WAL still holds every record after that
//! older snapshot; [`crate::storage::recover`] checks exactly that. The index is stored in the
//! header as well as the name so a renamed or copied file is caught.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::sync_dir;

const MAGIC: [u8; 8] = *b"PXSNAP01";
const HEADER_BYTES: usize = 8 + 8 + 8 + 4;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// A snapshot loaded and verified from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot replaces every WAL record with an index up to and including this one.
    pub last_included_index: u64,
    pub bytes: Vec<u8>,
    pub path: PathBuf,
}

pub(crate) fn snapshot_path(dir: &Path, last_included_index: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{last_included_index:020}{SUFFIX}"))
}

/// The index in a canonical snapshot file name; anything else (including `.tmp`) is `None`.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let index: u64 = digits.parse().ok()?;
    (digits.len() == 20).then_some(index)
}

/// Snapshot files in `dir` by name (not verified), ascending by index.
pub(crate) fn snapshot_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("read directory", dir, e))?;
        let name = entry.file_name();
        if let Some(index) = name.to_str().and_then(parse_name) {
            found.push((index, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Writes `snapshot-<last_included_index>.snap` in `dir` atomically and durably, replacing a
/// snapshot with the same index. Returns its path. Not safe to call concurrently on one `dir`.
pub fn write_snapshot(
    dir: impl AsRef<Path>,
    last_included_index: u64,
    bytes: &[u8],
) -> Result<PathBuf, WalError> {
    let dir = dir.as_ref();
    fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
    remove_stale_temporaries(dir)?;
    let path = snapshot_path(dir, last_included_index);
    let tmp = path.with_extension("snap.tmp");
    let mut file = File::create(&tmp).map_err(|e| WalError::io("create", &tmp, e))?;
    file.write_all(&encode(last_included_index, bytes))
        .map_err(|e| WalError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| WalError::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| WalError::io("rename", &tmp, e))?;
    sync_dir(dir)?;
    tracing::info!(
        path = %path.display(),
        last_included_index,
        bytes = bytes.len(),
        "snapshot written"
    );
    Ok(path)
}

fn encode(last_included_index: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + bytes.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&last_included_index.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

fn remove_stale_temporaries(dir: &Path) -> Result<(), WalError> {
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let stale = name
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(TMP_SUFFIX));
        if stale {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
            tracing::debug!(path = %path.display(), "removed stale snapshot temporary");
        }
    }
    Ok(())
}

/// Reads and verifies one snapshot file. Damage is [`WalError::Corrupt`].
pub fn read_snapshot(path: impl AsRef<Path>) -> Result<Snapshot, WalError> {
    let path = path.as_ref();
    let data = fs::read(path).map_err(|e| WalError::io("read", path, e))?;
    let corrupt = |offset: u64, reason: String| WalError::corrupt(path, offset, reason);
    let Some((header, payload)) = data.split_at_checked(HEADER_BYTES) else {
        return Err(corrupt(
            0,
            format!("{} bytes: shorter than the header", data.len()),
        ));
    };
    if header[..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot (bad magic)".to_string()));
    }
    let field = |at: usize| -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let (index, len) = (field(8), field(16));
    if len != payload.len() as u64 {
        let reason = format!(
            "header says {len} payload bytes, file has {}",
            payload.len()
        );
        return Err(corrupt(16, reason));
    }
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&header[24..28]);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&header[..24]), payload);
    if u32::from_le_bytes(stored) != computed {
        return Err(corrupt(24, "checksum mismatch".to_string()));
    }
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name);
    if named.is_some_and(|named| named != index) {
        let reason = format!("header index {index} does not match the file name");
        return Err(corrupt(8, reason));
    }
    Ok(Snapshot {
        last_included_index: index,
        bytes: payload.to_vec(),
        path: path.to_path_buf(),
    })
}

/// The newest valid snapshot in `dir`, at or above `min_index`. Corrupt ones are skipped with a
/// warning; `Err` when snapshot files exist in range but none is valid, or on an IO error
/// (unreadable is not the same as absent).
pub(crate) fn newest_valid(dir: &Path, min_index: u64) -> Result<Option<Snapshot>, WalError> {
    let files = snapshot_files(dir)?;
    let mut newest_damage = None;
    for (index, path) in files.into_iter().rev() {
        if index < min_index {
            break;
        }
        match read_snapshot(&path) {
            Ok(snapshot) => return Ok(Some(snapshot)),
            Err(error @ WalError::Corrupt { .. }) => {
                tracing::warn!(%error, "snapshot is corrupt; falling back to an older one");
                newest_damage.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    match newest_damage {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

/// The newest valid snapshot in `dir`: `Ok(None)` when there is none at all. A corrupt newest
/// snapshot falls back to an older valid one with a warning; if every snapshot is corrupt this
/// is the newest one's [`WalError::Corrupt`], because starting from nothing would forget state.
pub fn latest_snapshot(dir: impl AsRef<Path>) -> Result<Option<Snapshot>, WalError> {
    newest_valid(dir.as_ref(), 0)
}

/// Deletes all but the newest `keep` snapshot files (by index). Keep at least two if you want
/// [`latest_snapshot`]'s fallback to have something to fall back to, and compact the WAL only
/// below the oldest kept one. Returns the removed paths.
pub fn prune_snapshots(dir: impl AsRef<Path>, keep: usize) -> Result<Vec<PathBuf>, WalError> {
    let dir = dir.as_ref();
    let files = snapshot_files(dir)?;
    let excess = files.len().saturating_sub(keep);
    let mut removed = Vec::with_capacity(excess);
    for (_, path) in files.into_iter().take(excess) {
        fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
        removed.push(path);
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_are_canonical_twenty_digit_indices() {
        assert_eq!(parse_name("snapshot-00000000000000000042.snap"), Some(42));
        assert_eq!(parse_name("snapshot-42.snap"), None);
        assert_eq!(parse_name("snapshot-00000000000000000042.snap.tmp"), None);
        let dir = Path::new("/d");
        assert_eq!(
            snapshot_path(dir, 7),
            Path::new("/d/snapshot-00000000000000000007.snap")
        );
    }

    #[test]
    fn a_renamed_snapshot_is_caught_by_its_header_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_snapshot(dir.path(), 5, b"state").unwrap();
        let renamed = snapshot_path(dir.path(), 9);
        fs::rename(&path, &renamed).unwrap();
        let error = read_snapshot(&renamed).unwrap_err();
        assert!(
            matches!(error, WalError::Corrupt { offset: 8, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_stale_temporary_is_ignored_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("snapshot-00000000000000000003.snap.tmp");
        fs::write(&tmp, b"half written").unwrap();
        assert_eq!(latest_snapshot(dir.path()).unwrap(), None);
        write_snapshot(dir.path(), 4, b"x").unwrap();
        assert!(!tmp.exists());
        let path = snapshot_path(dir.path(), 4);
        let mut data = fs::read(&path).unwrap();
        data[HEADER_BYTES] ^= 0x01;
        fs::write(&path, data).unwrap();
        assert!(matches!(
            latest_snapshot(dir.path()),
            Err(WalError::Corrupt { .. })
        ));
    }
}
