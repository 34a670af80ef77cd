//! Segmented write-ahead log under the durable `file` channel.
//!
//! The WAL stores opaque byte records (one per put transaction of the channel) in
//! segment files and remembers, in a small ledger file, how far they were consumed.
//! It knows nothing about events except a per-record `items` count kept in the header.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian. `crc32` is CRC-32/ISO-HDLC (the `crc32fast` crate).
//!
//! A WAL directory holds:
//! - segment files `NNNNNNNNNNNNNNNNNNNN.wal` (the segment number in 20 zero-padded decimal
//!   digits; numbers increase, gaps are allowed, the highest is the one being written);
//! - `ledger` (and transiently `ledger.tmp`): the acknowledged position;
//! - `lock`: an empty file locked (`flock`-style, exclusive) while a `Wal` is open.
//!
//! **Segment file** = 32-byte segment header, then records back to back (no alignment):
//!
//! | offset | size | field                                                            |
//! |--------|------|------------------------------------------------------------------|
//! | 0      | 8    | magic `b"RNLWALSG"`                                              |
//! | 8      | 2    | format version, u16 = 1                                          |
//! | 10     | 2    | flags, u16: bit 0 = written with encryption (key check is valid) |
//! | 12     | 8    | segment number, u64 (same as in the file name)                   |
//! | 20     | 8    | key check: first 8 bytes of SHA-256(`"runnel-wal-key-check-v1\0"` ‖ key), zero if not encrypted |
//! | 28     | 4    | crc32 of bytes 0..28                                             |
//!
//! **Record** = 24-byte record header, then `len` bytes of stored payload:
//!
//! | offset | size | field                                                            |
//! |--------|------|------------------------------------------------------------------|
//! | 0      | 4    | magic `b"RNRC"`                                                  |
//! | 4      | 4    | `len`: stored payload length, u32, at most [`MAX_STORED_LEN`]   |
//! | 8      | 4    | `items`: number of events in the record, u32                     |
//! | 12     | 4    | flags, u32: bit 0 = ENCRYPTED, bit 1 = PAD; other bits must be 0 |
//! | 16     | 4    | crc32 of the `len` stored payload bytes                          |
//! | 20     | 4    | crc32 of header bytes 0..20 (protects the length)               |
//!
//! A header is *valid* when the magic matches, the header crc verifies, `len` is within the
//! bound, no unknown flag is set, an ENCRYPTED record has `len >= 28` and a PAD record has
//! `items == 0` and is not ENCRYPTED. A record is *valid* when its header is valid, the whole
//! payload lies within the file and the payload crc verifies.
//!
//! - Plain records store the payload as is.
//! - ENCRYPTED records store `nonce (12 random bytes) ‖ AES-256-GCM ciphertext ‖ tag (16)`;
//!   the additional authenticated data is `items` as u32 LE. The payload crc covers the
//!   stored (encrypted) bytes, so torn and corrupt records are found without the key.
//! - PAD records (written by [`fsck`] repair over corrupt ranges) hold zero bytes and are
//!   skipped silently by every reader; they are never counted as records.
//!
//! A [`RecordId`] is `(segment number, byte offset of the record header in that file)`;
//! the first record of a segment is at offset 32.
//!
//! **Reading / resync.** At a position that does not hold a valid record, a reader scans
//! forward byte by byte for the next offset holding a *valid header* (magic + header crc);
//! a valid header whose payload crc fails is skipped by its (crc-protected) length. The
//! skipped range is a corrupt record. In the last segment, a run of bad bytes with no valid
//! record after it is a *torn tail* (power cut mid-write) and is cut off at open.
//!
//! **Ledger** = 28 bytes: magic `b"RNLLEDGR"`, acked segment u64, acked offset u64, crc32
//! of bytes 0..24. Written to `ledger.tmp` and renamed over `ledger` (not fsynced: a
//! lagging ledger only causes redelivery). A missing ledger means "nothing acked"; a
//! corrupt one is ignored (everything is redelivered) and reported.
//!
//! Limitations: a segment header that is invalid in a file of at least 32 bytes is a hard
//! error (`CorruptSegmentHeader`) — the file must be moved away by hand. A resync could in
//! theory lock onto a record-shaped byte sequence inside a corrupt record's payload.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

mod cipher;
mod error;
mod format;
mod fsck;
#[cfg(test)]
mod fuzz;
mod inspect;
mod reader;
mod report;
mod scan;
#[cfg(test)]
mod tests;

pub use cipher::*;
pub use error::*;
use format::*;
pub use fsck::*;
pub use inspect::*;
pub use reader::*;
pub use report::*;
use scan::*;

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RNLWALSG";
/// Current on-disk format version.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the segment file header; the first record of a segment is at this offset.
pub const SEGMENT_HEADER_LEN: u64 = 32;
/// Magic at the start of every record header.
pub const RECORD_MAGIC: [u8; 4] = *b"RNRC";
/// Size of a record header.
pub const RECORD_HEADER_LEN: u64 = 24;
/// Largest payload `append` accepts.
pub const MAX_PAYLOAD_LEN: usize = 64 << 20;
/// Encryption overhead per record: nonce + tag.
pub const CRYPTO_OVERHEAD: usize = NONCE_LEN + 16;
/// Largest stored payload length a valid header may announce.
pub const MAX_STORED_LEN: u32 = (MAX_PAYLOAD_LEN + CRYPTO_OVERHEAD) as u32;
/// Default segment size before rolling.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

const LEDGER_MAGIC: [u8; 8] = *b"RNLLEDGR";
const LEDGER_LEN: usize = 28;
const LEDGER_FILE: &str = "ledger";
const LEDGER_TMP: &str = "ledger.tmp";
const LOCK_FILE: &str = "lock";
const SEG_FLAG_ENCRYPTED: u16 = 1;
const FLAG_ENCRYPTED: u32 = 1;
const FLAG_PAD: u32 = 2;
const KNOWN_FLAGS: u32 = FLAG_ENCRYPTED | FLAG_PAD;
const KEY_CHECK_DOMAIN: &[u8] = b"runnel-wal-key-check-v1\0";
const SCAN_CHUNK: usize = 64 << 10;

/// Where and how to keep the log.
#[derive(Clone, Debug)]
pub struct WalOptions {
    pub dir: PathBuf,
    /// Roll to a new segment once the current one would grow past this.
    pub segment_bytes: u64,
    pub cipher: Option<Cipher>,
}

impl WalOptions {
    pub fn new(dir: impl Into<PathBuf>) -> WalOptions {
        WalOptions {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            cipher: None,
        }
    }
}

/// The writer side of the log (one per directory, enforced with a lock file).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    cipher: Option<Cipher>,
    /// Segment number → length, for every segment but the current one.
    closed: BTreeMap<u64, u64>,
    cur: u64,
    cur_path: PathBuf,
    cur_file: File,
    cur_len: u64,
    acked: RecordId,
    buf: Vec<u8>,
    /// Closed segments written since the last `sync`.
    unsynced: Vec<(PathBuf, File)>,
    dir_dirty: bool,
    _lock: File,
}

impl Wal {
    /// Opens (creating the directory) and recovers; see the module documentation.
    pub fn open(opts: WalOptions) -> Result<(Wal, RecoveryReport)> {
        let dir = opts.dir;
        crate::files::create_private_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let lock = lock_dir(&dir)?;
        let cipher = opts.cipher;
        let mut report = RecoveryReport::default();

        let ledger = match read_ledger(&dir)? {
            Ok(l) => l,
            Err(()) => {
                report.ledger_reset = true;
                None
            }
        };
        let ack = ledger.unwrap_or_default();
        let mut dir_dirty = false;

        let mut segments = list_segments(&dir)?;
        // Segments wholly before the acked one were consumed (deletion was interrupted).
        let doomed: Vec<u64> = segments.range(..ack.segment).map(|(n, _)| *n).collect();
        for n in doomed {
            if let Some(path) = segments.remove(&n) {
                fs::remove_file(&path).map_err(io_err("remove segment", &path))?;
                report.removed_segments += 1;
                dir_dirty = true;
            }
        }

        // Recover every remaining segment, oldest first.
        let mut closed = BTreeMap::new();
        let mut last: Option<(u64, PathBuf, File, u64, bool)> = None;
        let last_number = segments.keys().next_back().copied();
        for (&n, path) in &segments {
            let is_last = Some(n) == last_number;
            let file = OpenOptions::new()
                .read(true)
                .write(is_last)
                .open(path)
                .map_err(io_err("open segment", path))?;
            let mut len = file_len(&file, path)?;
            let encrypted = if is_last && len < SEGMENT_HEADER_LEN {
                // Crashed while creating the segment: rewrite its header.
                report.torn_tail = Some(TornTail {
                    segment: n,
                    path: path.clone(),
                    offset: 0,
                    bytes_cut: len,
                });
                file.set_len(0).map_err(io_err("truncate", path))?;
                file.write_all_at(&encode_segment_header(n, cipher.as_ref()), 0)
                    .map_err(io_err("write segment header of", path))?;
                len = SEGMENT_HEADER_LEN;
                cipher.is_some()
            } else {
                check_segment_header(&file, path, n, cipher.as_ref())?
            };
            let start = if n == ack.segment {
                ack.offset.clamp(SEGMENT_HEADER_LEN, len)
            } else {
                SEGMENT_HEADER_LEN
            };
            let pending = &mut report.pending;
            let scan = scan_segment(&file, path, n, start, len, None, |offset, bytes, items| {
                pending.push(PendingRecord {
                    id: RecordId { segment: n, offset },
                    next: RecordId {
                        segment: n,
                        offset: offset + bytes,
                    },
                    items,
                    bytes,
                })
            })?;
            report.records += scan.records;
            report.items += scan.items;
            report.bytes += scan.bytes;
            report.corrupt.extend(scan.corrupt);
            if let Some((at, kind)) = scan.tail {
                if is_last {
                    file.set_len(at)
                        .map_err(io_err("truncate torn tail of", path))?;
                    report.torn_tail = Some(TornTail {
                        segment: n,
                        path: path.clone(),
                        offset: at,
                        bytes_cut: len - at,
                    });
                    len = at;
                } else {
                    report.corrupt.push(CorruptRecord {
                        segment: n,
                        offset: at,
                        len: len - at,
                        kind,
                    });
                }
            }
            if is_last {
                last = Some((n, path.clone(), file, len, encrypted));
            } else {
                closed.insert(n, len);
            }
        }

        let (cur, cur_path, cur_file, cur_len, cur_encrypted) = match last {
            Some(l) => l,
            None => {
                let n = ack.segment.saturating_add(1).max(1);
                let (file, path) = create_segment(&dir, n, cipher.as_ref())?;
                dir_dirty = true;
                (n, path, file, SEGMENT_HEADER_LEN, cipher.is_some())
            }
        };

        // Normalize the acked position onto an existing segment.
        let acked = if ack.segment == cur {
            RecordId {
                segment: cur,
                offset: ack.offset.clamp(SEGMENT_HEADER_LEN, cur_len),
            }
        } else if let Some(&len) = closed.get(&ack.segment) {
            RecordId {
                segment: ack.segment,
                offset: ack.offset.clamp(SEGMENT_HEADER_LEN, len),
            }
        } else {
            let first = closed.keys().next().copied().unwrap_or(cur);
            RecordId {
                segment: first,
                offset: SEGMENT_HEADER_LEN,
            }
        };
        report.acked = acked;

        let mut wal = Wal {
            dir,
            segment_bytes: opts.segment_bytes.max(SEGMENT_HEADER_LEN + 1),
            cipher,
            closed,
            cur,
            cur_path,
            cur_file,
            cur_len,
            acked,
            buf: Vec::new(),
            unsynced: Vec::new(),
            dir_dirty,
            _lock: lock,
        };
        // Start a fresh segment when the last one was written with other encryption
        // settings, so every segment's header describes its records.
        if cur_encrypted != wal.cipher.is_some() {
            if wal.cur_len > SEGMENT_HEADER_LEN {
                wal.roll()?;
            } else {
                let header = encode_segment_header(wal.cur, wal.cipher.as_ref());
                wal.cur_file
                    .write_all_at(&header, 0)
                    .map_err(io_err("write segment header of", &wal.cur_path))?;
            }
        }
        // A ledger to overwrite in place from now on (see `write_ledger`).
        if !wal.dir.join(LEDGER_FILE).exists() {
            write_ledger(&wal.dir, wal.acked)?;
            wal.dir_dirty = true;
        }
        if wal.dir_dirty {
            sync_dir(&wal.dir)?;
            wal.dir_dirty = false;
        }
        report.segments = wal.closed.len() + 1;
        Ok((wal, report))
    }

    /// Appends one record holding `items` events. No fsync. On failure (e.g. ENOSPC) the
    /// segment is truncated back to where the record would have started.
    pub fn append(&mut self, payload: &[u8], items: u32) -> Result<RecordId> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(WalError::RecordTooLarge {
                path: self.cur_path.clone(),
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        let overhead = if self.cipher.is_some() {
            CRYPTO_OVERHEAD
        } else {
            0
        };
        let record_len = RECORD_HEADER_LEN + (payload.len() + overhead) as u64;
        if self.cur_len > SEGMENT_HEADER_LEN && self.cur_len + record_len > self.segment_bytes {
            self.roll()?;
        }
        const H: usize = RECORD_HEADER_LEN as usize;
        let buf = &mut self.buf;
        buf.clear();
        buf.resize(H, 0);
        let mut flags = 0;
        match &self.cipher {
            None => buf.extend_from_slice(payload),
            Some(c) => {
                flags |= FLAG_ENCRYPTED;
                buf.resize(H + NONCE_LEN, 0);
                buf.extend_from_slice(payload);
                c.seal(buf, H, items, &self.cur_path)?;
            }
        }
        let crc = crc32fast::hash(&buf[H..]);
        let stored_len = (buf.len() - H) as u32;
        encode_record_header(&mut buf[..H], stored_len, items, flags, crc);
        let off = self.cur_len;
        if let Err(e) = self.cur_file.write_all_at(buf, off) {
            // Leave no partial record behind; if even that fails, recovery cuts it.
            let _ = self.cur_file.set_len(off);
            return Err(io_err("append to segment", &self.cur_path)(e));
        }
        self.cur_len += buf.len() as u64;
        Ok(RecordId {
            segment: self.cur,
            offset: off,
        })
    }

    fn roll(&mut self) -> Result<()> {
        let n = self.cur + 1;
        let (file, path) = create_segment(&self.dir, n, self.cipher.as_ref())?;
        let old_file = std::mem::replace(&mut self.cur_file, file);
        let old_path = std::mem::replace(&mut self.cur_path, path);
        self.closed.insert(self.cur, self.cur_len);
        self.unsynced.push((old_path, old_file));
        self.cur = n;
        self.cur_len = SEGMENT_HEADER_LEN;
        self.dir_dirty = true;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        for (path, file) in &self.unsynced {
            file.sync_data().map_err(io_err("fdatasync", path))?;
        }
        self.unsynced.clear();
        self.cur_file
            .sync_data()
            .map_err(io_err("fdatasync", &self.cur_path))?;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// The position just past the last appended record (the next append's id, unless the
    /// append rolls to a new segment).
    pub fn end(&self) -> RecordId {
        RecordId {
            segment: self.cur,
            offset: self.cur_len,
        }
    }

    /// Records everything before `upto` as consumed: writes the ledger and deletes the
    /// segments wholly before it (a closed segment is also deleted when `upto` is at its
    /// end). Acks at or before the current acked position are ignored.
    pub fn ack(&mut self, upto: RecordId) -> Result<()> {
        let end = self.end();
        if upto > end {
            return Err(WalError::InvalidAck {
                path: self.dir.clone(),
                upto,
                end,
            });
        }
        if upto <= self.acked {
            return Ok(());
        }
        write_ledger(&self.dir, upto)?;
        self.acked = upto;
        let doomed: Vec<u64> = self
            .closed
            .iter()
            .filter(|&(&n, &len)| n < upto.segment || (n == upto.segment && upto.offset >= len))
            .map(|(&n, _)| n)
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for n in doomed {
            let path = self.dir.join(segment_file_name(n));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove segment", &path)(e)),
            }
            self.closed.remove(&n);
            self.unsynced.retain(|(p, _)| *p != path);
        }
        sync_dir(&self.dir)?;
        self.dir_dirty = false;
        Ok(())
    }

    /// The acknowledged position: the one found at open, then the latest `ack`.
    pub fn acked(&self) -> RecordId {
        self.acked
    }

    /// Bytes of all segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.closed.values().sum::<u64>() + self.cur_len
    }

    /// Segments on disk (closed ones plus the current one).
    pub fn segment_count(&self) -> usize {
        self.closed.len() + 1
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An independent reader from the first record of the `last` newest segments
    /// (acknowledged records included, as long as their segment is still on disk).
    pub fn reader_of_last_segments(&self, last: usize) -> WalReader {
        let first = self
            .closed
            .keys()
            .nth(self.closed.len().saturating_sub(last.saturating_sub(1)))
            .copied()
            .unwrap_or(self.cur);
        let from = RecordId {
            segment: first,
            offset: SEGMENT_HEADER_LEN,
        };
        WalReader::new(&self.dir, self.cipher.clone(), from)
    }

    /// An independent reader starting at `acked()`.
    pub fn reader(&self) -> WalReader {
        WalReader::new(&self.dir, self.cipher.clone(), self.acked)
    }
}
