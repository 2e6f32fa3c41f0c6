//! The one error type of the storage layer.
//!
//! It is `Clone` (IO errors are shared behind an `Arc`) because group commit fans one failed
//! fsync out to every caller that was waiting on it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, thiserror::Error)]
pub enum WalError {
    /// An operating-system call failed. After a failed write or fsync the WAL is poisoned and
    /// every later write returns [`WalError::Poisoned`].
    #[error("storage I/O error: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// Damage that a crash cannot explain: the node must not start on it.
    #[error(
        "storage corrupt: {}, byte offset {offset}: {reason}. The node refuses to start rather \
         than lose accepted values; inspect or restore this file (do not delete it to get past \
         this error)",
        file.display()
    )]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("record of {len} bytes exceeds record_bytes_max ({max} bytes)")]
    RecordTooLarge { len: usize, max: u32 },

    /// A write or fsync failed earlier. Whether the data reached the disk is unknown (Linux may
    /// drop dirty pages after a failed fsync), so retrying could acknowledge a lost record:
    /// restart the node and let recovery decide what is on disk.
    #[error("the WAL refuses further writes after an earlier failure: {cause}")]
    Poisoned { cause: String },

    /// The group-commit writer thread is gone (it panicked); the request was not written.
    #[error("the WAL writer thread has stopped")]
    Closed,

    #[error("invalid storage argument: {0}")]
    InvalidArgument(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: String) -> WalError {
        WalError::Corrupt {
            file: file.into(),
            offset,
            reason,
        }
    }
}
