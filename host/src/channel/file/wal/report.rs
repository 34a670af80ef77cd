//! Record ids and what recovery found (torn tails, corrupt records).

use super::*;

/// Position of a record: segment number and byte offset of its header in the segment file.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordId {
    pub segment: u64,
    pub offset: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.segment, self.offset)
    }
}

/// File name of segment `n`.
pub fn segment_file_name(n: u64) -> String {
    format!("{n:020}.wal")
}

pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a range of a segment is not a readable record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CorruptKind {
    /// No valid record header at this position (resynced to the next valid one).
    BadHeader,
    /// The record (header or payload) runs past the end of the readable data.
    Truncated,
    /// The payload checksum does not match.
    Checksum,
    /// The payload checksum matches but AES-GCM authentication failed.
    Authentication,
}

impl fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CorruptKind::BadHeader => "bad header",
            CorruptKind::Truncated => "truncated",
            CorruptKind::Checksum => "checksum mismatch",
            CorruptKind::Authentication => "authentication failed",
        })
    }
}

/// A range of a segment that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRecord {
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
    pub kind: CorruptKind,
}

impl fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {}: skipped {} corrupt bytes at offset {} ({})",
            segment_file_name(self.segment),
            self.len,
            self.offset,
            self.kind
        )
    }
}

/// A torn tail of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: u64,
    pub path: PathBuf,
    /// Where the file was (or is to be) cut.
    pub offset: u64,
    pub bytes_cut: u64,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {}: cut a torn tail of {} bytes at offset {}",
            segment_file_name(self.segment),
            self.bytes_cut,
            self.offset
        )
    }
}

/// What [`Wal::open`] found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Segment files in use after recovery.
    pub segments: usize,
    /// Valid records pending (after the acked position).
    pub records: u64,
    /// Items (events) in those records.
    pub items: u64,
    /// Bytes of those records (headers included).
    pub bytes: u64,
    pub torn_tail: Option<TornTail>,
    /// Corrupt ranges left in place (readers skip them).
    pub corrupt: Vec<CorruptRecord>,
    /// Fully acknowledged segments deleted at open.
    pub removed_segments: usize,
    /// The ledger was unreadable and ignored: everything is redelivered.
    pub ledger_reset: bool,
    /// Where reading starts.
    pub acked: RecordId,
    /// The valid records after `acked`, in log order (found by the recovery scan, so a
    /// reader of the log need not scan it again).
    pub pending: Vec<PendingRecord>,
}

/// A valid record found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRecord {
    pub id: RecordId,
    /// Just past the record (what to acknowledge once it is consumed).
    pub next: RecordId,
    pub items: u32,
    /// Bytes on disk, header included.
    pub bytes: u64,
}

impl RecoveryReport {
    /// Nothing was cut, skipped or reset.
    pub fn is_clean(&self) -> bool {
        self.torn_tail.is_none() && self.corrupt.is_empty() && !self.ledger_reset
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segments, {} pending records ({} events, {} bytes) from {}",
            self.segments, self.records, self.items, self.bytes, self.acked
        )?;
        if self.removed_segments > 0 {
            write!(
                f,
                "; removed {} acknowledged segments",
                self.removed_segments
            )?;
        }
        if let Some(t) = &self.torn_tail {
            write!(f, "; {t}")?;
        }
        if !self.corrupt.is_empty() {
            let bytes: u64 = self.corrupt.iter().map(|c| c.len).sum();
            write!(
                f,
                "; {} corrupt ranges ({bytes} bytes) skipped",
                self.corrupt.len()
            )?;
            if let Some(c) = self.corrupt.first() {
                write!(f, ", first: {c}")?;
            }
        }
        if self.ledger_reset {
            f.write_str("; ledger unreadable, redelivering everything")?;
        }
        Ok(())
    }
}
