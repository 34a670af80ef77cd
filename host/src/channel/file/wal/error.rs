//! Errors of the write-ahead log; each names the path it concerns.

use super::*;

/// Errors of the WAL. Every variant names the path (or key origin) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt segment header in {}: {reason} (move the file away to continue)", path.display())]
    CorruptSegmentHeader { path: PathBuf, reason: String },
    #[error("wrong encryption key for {}: the key check value does not match", path.display())]
    WrongKey { path: PathBuf },
    #[error("{} holds encrypted records but no encryption key is configured", path.display())]
    NoKey { path: PathBuf },
    #[error("invalid encryption key from {origin}: {reason}")]
    InvalidKey { origin: String, reason: String },
    #[error("record of {len} bytes for {} exceeds the maximum of {max} bytes", path.display())]
    RecordTooLarge {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("WAL directory {} is locked by another process", path.display())]
    Locked { path: PathBuf },
    #[error("cannot ack {upto} in {}: past the end of the log ({end})", path.display())]
    InvalidAck {
        path: PathBuf,
        upto: RecordId,
        end: RecordId,
    },
    #[error("encryption failed for a record of {}", path.display())]
    Crypto { path: PathBuf },
}

pub(super) type Result<T, E = WalError> = std::result::Result<T, E>;

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
