//! Reading records back in order, independently of the writer.

use super::*;

/// A record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub id: RecordId,
    /// The position just past this record (what to `ack` once it is consumed).
    pub next: RecordId,
    pub items: u32,
    pub payload: Vec<u8>,
}

pub(super) struct OpenSegment {
    pub(super) number: u64,
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Known length (refreshed when a closed segment's end is reached).
    pub(super) len: u64,
}

/// Reads records in order; independent of the writer (opens segment files itself).
pub struct WalReader {
    pub(super) dir: PathBuf,
    pub(super) cipher: Option<Cipher>,
    pub(super) pos: RecordId,
    pub(super) seg: Option<OpenSegment>,
    pub(super) scratch: Vec<u8>,
    pub(super) corrupt: Vec<CorruptRecord>,
    pub(super) corrupt_total: u64,
}

impl WalReader {
    /// A reader over the WAL directory `dir` starting at `from`. (Normally obtained with
    /// [`Wal::reader`].)
    pub fn new(dir: &Path, cipher: Option<Cipher>, from: RecordId) -> WalReader {
        WalReader {
            dir: dir.to_path_buf(),
            cipher,
            pos: from,
            seg: None,
            scratch: Vec::new(),
            corrupt: Vec::new(),
            corrupt_total: 0,
        }
    }

    /// Reads the next record strictly before `end`; `None` at `end`. Corrupt ranges are
    /// skipped and collected (see [`WalReader::take_corrupt`]).
    pub fn next(&mut self, end: RecordId) -> Result<Option<ReadRecord>> {
        loop {
            if self.pos >= end {
                return Ok(None);
            }
            if self.seg.as_ref().map(|s| s.number) != Some(self.pos.segment) {
                self.seg = None;
                if !self.open_segment(end)? {
                    return Ok(None);
                }
                continue;
            }
            let Some(seg) = self.seg.as_mut() else {
                continue;
            };
            if self.pos.offset < SEGMENT_HEADER_LEN {
                self.pos.offset = SEGMENT_HEADER_LEN;
            }
            let limit = if seg.number == end.segment {
                end.offset
            } else {
                if self.pos.offset >= seg.len {
                    seg.len = file_len(&seg.file, &seg.path)?;
                }
                seg.len
            };
            if self.pos.offset >= limit {
                if seg.number >= end.segment {
                    return Ok(None);
                }
                // A closed segment is exhausted: move on.
                self.pos = RecordId {
                    segment: seg.number + 1,
                    offset: SEGMENT_HEADER_LEN,
                };
                self.seg = None;
                continue;
            }
            let off = self.pos.offset;
            match step(
                &seg.file,
                &seg.path,
                off,
                limit,
                self.cipher.as_ref(),
                &mut self.scratch,
            )? {
                Step::End => {
                    self.pos.offset = limit;
                }
                Step::Pad { next } => self.pos.offset = next,
                Step::Bad { next, kind } => {
                    self.corrupt_total += 1;
                    self.corrupt.push(CorruptRecord {
                        segment: seg.number,
                        offset: off,
                        len: next - off,
                        kind,
                    });
                    self.pos.offset = next;
                }
                Step::Record {
                    next,
                    items,
                    still_encrypted,
                } => {
                    if still_encrypted {
                        return Err(WalError::NoKey {
                            path: seg.path.clone(),
                        });
                    }
                    let id = self.pos;
                    self.pos.offset = next;
                    return Ok(Some(ReadRecord {
                        id,
                        next: self.pos,
                        items,
                        payload: std::mem::take(&mut self.scratch),
                    }));
                }
            }
        }
    }

    /// Opens the segment at `pos` or, when it is gone, the next existing one before `end`.
    /// Returns false when there is nothing to open.
    pub(super) fn open_segment(&mut self, end: RecordId) -> Result<bool> {
        let mut number = self.pos.segment;
        loop {
            let path = self.dir.join(segment_file_name(number));
            match File::open(&path) {
                Ok(file) => {
                    check_segment_header(&file, &path, number, self.cipher.as_ref())?;
                    let len = file_len(&file, &path)?;
                    if number != self.pos.segment {
                        self.pos = RecordId {
                            segment: number,
                            offset: SEGMENT_HEADER_LEN,
                        };
                    }
                    self.seg = Some(OpenSegment {
                        number,
                        path,
                        file,
                        len,
                    });
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Deleted by an ack, or a gap in the numbering: find the next one.
                    let next = list_segments(&self.dir)?
                        .range(number.saturating_add(1)..)
                        .next()
                        .map(|(n, _)| *n)
                        .filter(|&n| n > number && n <= end.segment);
                    match next {
                        Some(n) => number = n,
                        None => {
                            self.pos = end;
                            return Ok(false);
                        }
                    }
                }
                Err(e) => return Err(io_err("open segment", &path)(e)),
            }
        }
    }

    /// Moves the reader to `to` (a record boundary, e.g. a previous `ReadRecord::id`).
    pub fn seek(&mut self, to: RecordId) {
        if self.seg.as_ref().map(|s| s.number) != Some(to.segment) {
            self.seg = None;
        }
        self.pos = to;
    }

    pub fn position(&self) -> RecordId {
        self.pos
    }

    /// Corrupt ranges skipped since the last call (for the caller to log).
    pub fn take_corrupt(&mut self) -> Vec<CorruptRecord> {
        std::mem::take(&mut self.corrupt)
    }

    /// Corrupt ranges skipped over the reader's life.
    pub fn corrupt_total(&self) -> u64 {
        self.corrupt_total
    }
}
