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

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

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

type Result<T, E = WalError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// Cipher
// ---------------------------------------------------------------------------------------

/// AES-256-GCM record encryption (cheap to clone).
#[derive(Clone)]
pub struct Cipher {
    key: Arc<LessSafeKey>,
    check: [u8; 8],
    rng: SystemRandom,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Cipher {
    /// A cipher from exactly 32 raw key bytes.
    pub fn from_key_bytes(key: &[u8]) -> Result<Cipher> {
        Self::build(key, "<key bytes>")
    }

    /// A cipher from the contents of a key file: 32 raw bytes, or 64 hex digits optionally
    /// followed by whitespace / a newline.
    pub fn from_hex_or_raw(contents: &[u8]) -> Result<Cipher> {
        Self::parse(contents, "<key bytes>")
    }

    /// Reads a key file (see [`Cipher::from_hex_or_raw`]).
    pub fn from_key_file(path: &Path) -> Result<Cipher> {
        let contents = fs::read(path).map_err(io_err("read key file", path))?;
        Self::parse(&contents, &path.display().to_string())
    }

    fn parse(contents: &[u8], origin: &str) -> Result<Cipher> {
        if contents.len() == 32 {
            return Self::build(contents, origin);
        }
        let trimmed = contents.trim_ascii();
        if trimmed.len() != 64 {
            return Err(WalError::InvalidKey {
                origin: origin.to_string(),
                reason: format!(
                    "expected 32 raw bytes or 64 hex digits, found {} bytes",
                    contents.len()
                ),
            });
        }
        let mut key = [0u8; 32];
        for (i, pair) in trimmed.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (hex_val(pair[0]), hex_val(pair[1])) else {
                return Err(WalError::InvalidKey {
                    origin: origin.to_string(),
                    reason: "not a hexadecimal key".to_string(),
                });
            };
            key[i] = hi << 4 | lo;
        }
        let cipher = Self::build(&key, origin);
        key.fill(0);
        cipher
    }

    fn build(key: &[u8], origin: &str) -> Result<Cipher> {
        let invalid = |reason: String| WalError::InvalidKey {
            origin: origin.to_string(),
            reason,
        };
        if key.len() != 32 {
            return Err(invalid(format!("expected 32 bytes, found {}", key.len())));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| invalid("rejected by AES-256-GCM".to_string()))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(KEY_CHECK_DOMAIN);
        ctx.update(key);
        let digest = ctx.finish();
        let mut check = [0u8; 8];
        check.copy_from_slice(&digest.as_ref()[..8]);
        Ok(Cipher {
            key: Arc::new(LessSafeKey::new(unbound)),
            check,
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts `buf[start + NONCE_LEN..]` in place, writing a fresh nonce at
    /// `buf[start..start + NONCE_LEN]` and appending the tag.
    fn seal(&self, buf: &mut Vec<u8>, start: usize, items: u32, path: &Path) -> Result<()> {
        let crypto = || WalError::Crypto {
            path: path.to_path_buf(),
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| crypto())?;
        buf[start..start + NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(items.to_le_bytes()),
                &mut buf[start + NONCE_LEN..],
            )
            .map_err(|_| crypto())?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts a stored payload in place; on success `buf` holds the plaintext.
    fn open(&self, buf: &mut Vec<u8>, items: u32) -> bool {
        if buf.len() < CRYPTO_OVERHEAD {
            return false;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[..NONCE_LEN]);
        let plain_len = match self.key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(items.to_le_bytes()),
            &mut buf[NONCE_LEN..],
        ) {
            Ok(plain) => plain.len(),
            Err(_) => return false,
        };
        buf.copy_within(NONCE_LEN..NONCE_LEN + plain_len, 0);
        buf.truncate(plain_len);
        true
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Ids, reports
// ---------------------------------------------------------------------------------------

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

fn parse_segment_name(name: &str) -> Option<u64> {
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

// ---------------------------------------------------------------------------------------
// Header encoding
// ---------------------------------------------------------------------------------------

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn encode_segment_header(number: u64, cipher: Option<&Cipher>) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let flags = if cipher.is_some() {
        SEG_FLAG_ENCRYPTED
    } else {
        0
    };
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[12..20].copy_from_slice(&number.to_le_bytes());
    if let Some(c) = cipher {
        h[20..28].copy_from_slice(&c.check);
    }
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

struct SegmentHeader {
    encrypted: bool,
    key_check: [u8; 8],
}

fn parse_segment_header(h: &[u8; 32], number: u64) -> Result<SegmentHeader, String> {
    if h[..8] != SEGMENT_MAGIC {
        return Err("bad magic".into());
    }
    if crc32fast::hash(&h[..28]) != le_u32(h, 28) {
        return Err("header checksum mismatch".into());
    }
    let version = le_u16(h, 8);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let flags = le_u16(h, 10);
    if flags & !SEG_FLAG_ENCRYPTED != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let stored = le_u64(h, 12);
    if stored != number {
        return Err(format!("header names segment {stored}"));
    }
    let mut key_check = [0u8; 8];
    key_check.copy_from_slice(&h[20..28]);
    Ok(SegmentHeader {
        encrypted: flags & SEG_FLAG_ENCRYPTED != 0,
        key_check,
    })
}

/// Reads and checks the header of segment `number`; checks the key when both the segment
/// and the caller have one. Returns whether the segment is marked encrypted.
fn check_segment_header(
    file: &File,
    path: &Path,
    number: u64,
    cipher: Option<&Cipher>,
) -> Result<bool> {
    check_segment_header_with(file, path, number, cipher, true)
}

/// Like [`check_segment_header`]; without `need_key`, an encrypted segment is accepted
/// when no cipher is given (checksum-only verification).
fn check_segment_header_with(
    file: &File,
    path: &Path,
    number: u64,
    cipher: Option<&Cipher>,
    need_key: bool,
) -> Result<bool> {
    let mut h = [0u8; 32];
    file.read_exact_at(&mut h, 0)
        .map_err(io_err("read segment header of", path))?;
    let header =
        parse_segment_header(&h, number).map_err(|reason| WalError::CorruptSegmentHeader {
            path: path.to_path_buf(),
            reason,
        })?;
    if header.encrypted {
        match cipher {
            None if need_key => {
                return Err(WalError::NoKey {
                    path: path.to_path_buf(),
                });
            }
            None => {}
            Some(c) if c.check != header.key_check => {
                return Err(WalError::WrongKey {
                    path: path.to_path_buf(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(header.encrypted)
}

#[derive(Copy, Clone, Debug)]
struct RecordHeader {
    len: u32,
    items: u32,
    flags: u32,
    crc: u32,
}

fn encode_record_header(h: &mut [u8], len: u32, items: u32, flags: u32, crc: u32) {
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&items.to_le_bytes());
    h[12..16].copy_from_slice(&flags.to_le_bytes());
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&hcrc.to_le_bytes());
}

fn parse_record_header(h: &[u8]) -> Option<RecordHeader> {
    if h.len() < RECORD_HEADER_LEN as usize || h[..4] != RECORD_MAGIC {
        return None;
    }
    if crc32fast::hash(&h[..20]) != le_u32(h, 20) {
        return None;
    }
    let rec = RecordHeader {
        len: le_u32(h, 4),
        items: le_u32(h, 8),
        flags: le_u32(h, 12),
        crc: le_u32(h, 16),
    };
    let encrypted = rec.flags & FLAG_ENCRYPTED != 0;
    let pad = rec.flags & FLAG_PAD != 0;
    if rec.len > MAX_STORED_LEN
        || rec.flags & !KNOWN_FLAGS != 0
        || (encrypted && (pad || (rec.len as usize) < CRYPTO_OVERHEAD))
        || (pad && rec.items != 0)
    {
        return None;
    }
    Some(rec)
}

// ---------------------------------------------------------------------------------------
// Scanning (shared by recovery, readers, inspect and fsck)
// ---------------------------------------------------------------------------------------

enum Step {
    /// Nothing left before the limit.
    End,
    /// A valid record; its payload is in the buffer (decrypted if a cipher was given and
    /// the record is encrypted; `still_encrypted` otherwise).
    Record {
        next: u64,
        items: u32,
        still_encrypted: bool,
    },
    /// A PAD record.
    Pad { next: u64 },
    /// `[off, next)` is not readable.
    Bad { next: u64, kind: CorruptKind },
}

/// Finds the first offset in `[from, limit)` holding a valid record header that fits
/// before `limit` (the payload is not checked).
fn find_next_header(file: &File, path: &Path, from: u64, limit: u64) -> Result<Option<u64>> {
    const H: usize = RECORD_HEADER_LEN as usize;
    let mut chunk = vec![0u8; SCAN_CHUNK + H - 1];
    let mut start = from;
    while start + RECORD_HEADER_LEN <= limit {
        let n = (limit - start).min(chunk.len() as u64) as usize;
        let window = &mut chunk[..n];
        file.read_exact_at(window, start)
            .map_err(io_err("read", path))?;
        let last = n - H; // last candidate index (n >= H)
        let mut i = 0;
        while i <= last {
            match window[i..=last].iter().position(|&b| b == RECORD_MAGIC[0]) {
                None => break,
                Some(p) => {
                    i += p;
                    if parse_record_header(&window[i..i + H]).is_some() {
                        return Ok(Some(start + i as u64));
                    }
                    i += 1;
                }
            }
        }
        start += (last + 1) as u64;
    }
    Ok(None)
}

/// Reads the record at `off` (bounded by `limit`) into `buf`.
fn step(
    file: &File,
    path: &Path,
    off: u64,
    limit: u64,
    cipher: Option<&Cipher>,
    buf: &mut Vec<u8>,
) -> Result<Step> {
    if off >= limit {
        return Ok(Step::End);
    }
    if limit - off < RECORD_HEADER_LEN {
        return Ok(Step::Bad {
            next: limit,
            kind: CorruptKind::Truncated,
        });
    }
    let mut h = [0u8; RECORD_HEADER_LEN as usize];
    file.read_exact_at(&mut h, off)
        .map_err(io_err("read", path))?;
    let resync = |kind| -> Result<Step> {
        let next = find_next_header(file, path, off + 1, limit)?.unwrap_or(limit);
        Ok(Step::Bad { next, kind })
    };
    let Some(rec) = parse_record_header(&h) else {
        return resync(CorruptKind::BadHeader);
    };
    let next = off + RECORD_HEADER_LEN + u64::from(rec.len);
    if next > limit {
        return resync(CorruptKind::Truncated);
    }
    buf.clear();
    buf.resize(rec.len as usize, 0);
    file.read_exact_at(buf, off + RECORD_HEADER_LEN)
        .map_err(io_err("read", path))?;
    if crc32fast::hash(buf) != rec.crc {
        return Ok(Step::Bad {
            next,
            kind: CorruptKind::Checksum,
        });
    }
    if rec.flags & FLAG_PAD != 0 {
        return Ok(Step::Pad { next });
    }
    let encrypted = rec.flags & FLAG_ENCRYPTED != 0;
    if encrypted && let Some(c) = cipher {
        if !c.open(buf, rec.items) {
            return Ok(Step::Bad {
                next,
                kind: CorruptKind::Authentication,
            });
        }
        return Ok(Step::Record {
            next,
            items: rec.items,
            still_encrypted: false,
        });
    }
    Ok(Step::Record {
        next,
        items: rec.items,
        still_encrypted: encrypted,
    })
}

#[derive(Default)]
struct SegmentScan {
    records: u64,
    items: u64,
    bytes: u64,
    pads: u64,
    corrupt: Vec<CorruptRecord>,
    /// Start of a run of bad bytes reaching the end of the file.
    tail: Option<(u64, CorruptKind)>,
}

/// Scans `[start, len)` of a segment. Bad runs followed by a valid record (or a record
/// failing authentication) become corrupt entries; a bad run reaching the end becomes
/// `tail`. `on_record(offset, record_bytes, items)` sees every valid record.
fn scan_segment(
    file: &File,
    path: &Path,
    number: u64,
    start: u64,
    len: u64,
    cipher: Option<&Cipher>,
    mut on_record: impl FnMut(u64, u64, u32),
) -> Result<SegmentScan> {
    let mut scan = SegmentScan::default();
    let mut pending: Vec<CorruptRecord> = Vec::new();
    let mut buf = Vec::new();
    let mut off = start;
    loop {
        match step(file, path, off, len, cipher, &mut buf)? {
            Step::End => break,
            Step::Record { next, items, .. } => {
                scan.corrupt.append(&mut pending);
                scan.records += 1;
                scan.items += u64::from(items);
                scan.bytes += next - off;
                on_record(off, next - off, items);
                off = next;
            }
            Step::Pad { next } => {
                scan.corrupt.append(&mut pending);
                scan.pads += 1;
                off = next;
            }
            Step::Bad {
                next,
                kind: CorruptKind::Authentication,
            } => {
                scan.corrupt.append(&mut pending);
                scan.corrupt.push(CorruptRecord {
                    segment: number,
                    offset: off,
                    len: next - off,
                    kind: CorruptKind::Authentication,
                });
                off = next;
            }
            Step::Bad { next, kind } => {
                pending.push(CorruptRecord {
                    segment: number,
                    offset: off,
                    len: next - off,
                    kind,
                });
                off = next;
            }
        }
    }
    if let Some(first) = pending.first() {
        scan.tail = Some((first.offset, first.kind));
    }
    Ok(scan)
}

fn list_segments(dir: &Path) -> Result<BTreeMap<u64, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.insert(n, entry.path());
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(io_err("stat", path))?.len())
}

/// Result of reading the ledger: `Ok(None)` when absent, `Err(())` when unreadable garbage.
fn read_ledger(dir: &Path) -> Result<Result<Option<RecordId>, ()>> {
    let path = dir.join(LEDGER_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
        Err(e) => return Err(io_err("read ledger", &path)(e)),
    };
    if bytes.len() != LEDGER_LEN
        || bytes[..8] != LEDGER_MAGIC
        || crc32fast::hash(&bytes[..24]) != le_u32(&bytes, 24)
    {
        return Ok(Err(()));
    }
    Ok(Ok(Some(RecordId {
        segment: le_u64(&bytes, 8),
        offset: le_u64(&bytes, 16),
    })))
}

fn write_ledger(dir: &Path, at: RecordId) -> Result<()> {
    let mut b = [0u8; LEDGER_LEN];
    b[..8].copy_from_slice(&LEDGER_MAGIC);
    b[8..16].copy_from_slice(&at.segment.to_le_bytes());
    b[16..24].copy_from_slice(&at.offset.to_le_bytes());
    let crc = crc32fast::hash(&b[..24]);
    b[24..].copy_from_slice(&crc.to_le_bytes());
    let path = dir.join(LEDGER_FILE);
    // Overwrite an existing ledger in place: it needs no new disk blocks, so segments
    // can still be acknowledged and deleted when the disk is full. 28 bytes at offset 0
    // lie in one sector; were they ever torn, the crc fails and everything is
    // redelivered (duplicates, never a loss).
    if let Ok(file) = OpenOptions::new().write(true).open(&path)
        && file.metadata().is_ok_and(|m| m.len() == LEDGER_LEN as u64)
    {
        return file
            .write_all_at(&b, 0)
            .map_err(io_err("write ledger", &path));
    }
    let tmp = dir.join(LEDGER_TMP);
    fs::write(&tmp, b).map_err(io_err("write ledger", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("replace ledger", &path))
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(WalError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

fn create_segment(dir: &Path, number: u64, cipher: Option<&Cipher>) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_file_name(number));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create segment", &path))?;
    if let Err(e) = file.write_all_at(&encode_segment_header(number, cipher), 0) {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(io_err("write segment header of", &path)(e));
    }
    Ok((file, path))
}

// ---------------------------------------------------------------------------------------
// Wal
// ---------------------------------------------------------------------------------------

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
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
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
            let scan = scan_segment(&file, path, n, start, len, None, |_, _, _| {})?;
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

    /// An independent reader starting at `acked()`.
    pub fn reader(&self) -> WalReader {
        WalReader::new(&self.dir, self.cipher.clone(), self.acked)
    }
}

// ---------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------

/// A record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub id: RecordId,
    /// The position just past this record (what to `ack` once it is consumed).
    pub next: RecordId,
    pub items: u32,
    pub payload: Vec<u8>,
}

struct OpenSegment {
    number: u64,
    path: PathBuf,
    file: File,
    /// Known length (refreshed when a closed segment's end is reached).
    len: u64,
}

/// Reads records in order; independent of the writer (opens segment files itself).
pub struct WalReader {
    dir: PathBuf,
    cipher: Option<Cipher>,
    pos: RecordId,
    seg: Option<OpenSegment>,
    scratch: Vec<u8>,
    corrupt: Vec<CorruptRecord>,
    corrupt_total: u64,
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
    fn open_segment(&mut self, end: RecordId) -> Result<bool> {
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

// ---------------------------------------------------------------------------------------
// Inspect
// ---------------------------------------------------------------------------------------

/// One segment as seen by [`inspect`].
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    pub number: u64,
    pub file_name: String,
    pub bytes: u64,
    pub records: u64,
    pub items: u64,
    pub encrypted: bool,
    pub corrupt: usize,
    /// Bytes of a bad run at the end (a torn tail when this is the last segment).
    pub tail_bytes: u64,
    /// Why the segment could not be scanned (bad header).
    pub error: Option<String>,
}

/// Read-only summary of a WAL directory.
#[derive(Clone, Debug)]
pub struct InspectReport {
    pub dir: PathBuf,
    /// The ledger's position (`None`: no ledger or unreadable, see `ledger_corrupt`).
    pub acked: Option<RecordId>,
    pub ledger_corrupt: bool,
    pub segments: Vec<SegmentInfo>,
    pub pending_records: u64,
    pub pending_items: u64,
    pub pending_bytes: u64,
}

/// Summarizes a WAL directory without modifying it (no key needed).
pub fn inspect(dir: &Path) -> Result<InspectReport> {
    let (acked, ledger_corrupt) = match read_ledger(dir)? {
        Ok(a) => (a, false),
        Err(()) => (None, true),
    };
    let ack = acked.unwrap_or_default();
    let mut report = InspectReport {
        dir: dir.to_path_buf(),
        acked,
        ledger_corrupt,
        segments: Vec::new(),
        pending_records: 0,
        pending_items: 0,
        pending_bytes: 0,
    };
    for (n, path) in list_segments(dir)? {
        let file = File::open(&path).map_err(io_err("open segment", &path))?;
        let bytes = file_len(&file, &path)?;
        let mut info = SegmentInfo {
            number: n,
            file_name: segment_file_name(n),
            bytes,
            records: 0,
            items: 0,
            encrypted: false,
            corrupt: 0,
            tail_bytes: 0,
            error: None,
        };
        let mut h = [0u8; 32];
        let header = if bytes < SEGMENT_HEADER_LEN {
            Err(format!(
                "file shorter than the {SEGMENT_HEADER_LEN}-byte header"
            ))
        } else {
            file.read_exact_at(&mut h, 0)
                .map_err(io_err("read segment header of", &path))?;
            parse_segment_header(&h, n)
        };
        match header {
            Err(reason) => info.error = Some(reason),
            Ok(header) => {
                info.encrypted = header.encrypted;
                let (mut pr, mut pi, mut pb) = (0, 0, 0);
                let scan = scan_segment(
                    &file,
                    &path,
                    n,
                    SEGMENT_HEADER_LEN,
                    bytes,
                    None,
                    |off, len, items| {
                        if (RecordId {
                            segment: n,
                            offset: off,
                        }) >= ack
                        {
                            pr += 1;
                            pi += u64::from(items);
                            pb += len;
                        }
                    },
                )?;
                report.pending_records += pr;
                report.pending_items += pi;
                report.pending_bytes += pb;
                info.records = scan.records;
                info.items = scan.items;
                info.corrupt = scan.corrupt.len();
                info.tail_bytes = scan.tail.map_or(0, |(at, _)| bytes - at);
            }
        }
        report.segments.push(info);
    }
    Ok(report)
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "WAL {}", self.dir.display())?;
        match (self.acked, self.ledger_corrupt) {
            (_, true) => writeln!(
                f,
                "acked: ledger unreadable (everything would be redelivered)"
            )?,
            (Some(a), _) => writeln!(f, "acked: segment {} offset {}", a.segment, a.offset)?,
            (None, _) => writeln!(f, "acked: nothing")?,
        }
        writeln!(
            f,
            "{:<26} {:>12} {:>10} {:>12} {:>4} {:>8} {:>10}",
            "segment", "bytes", "records", "events", "enc", "corrupt", "tail"
        )?;
        for s in &self.segments {
            if let Some(e) = &s.error {
                writeln!(f, "{:<26} {:>12} unreadable: {e}", s.file_name, s.bytes)?;
                continue;
            }
            writeln!(
                f,
                "{:<26} {:>12} {:>10} {:>12} {:>4} {:>8} {:>10}",
                s.file_name,
                s.bytes,
                s.records,
                s.items,
                if s.encrypted { "yes" } else { "no" },
                s.corrupt,
                s.tail_bytes
            )?;
        }
        write!(
            f,
            "pending: {} records, {} events, {} bytes",
            self.pending_records, self.pending_items, self.pending_bytes
        )
    }
}

// ---------------------------------------------------------------------------------------
// Fsck
// ---------------------------------------------------------------------------------------

/// Result of [`fsck`].
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    pub segments: usize,
    pub records: u64,
    pub items: u64,
    /// PAD records (left by an earlier repair).
    pub pads: u64,
    pub torn_tail: Option<TornTail>,
    pub corrupt: Vec<CorruptRecord>,
    /// Whether encrypted records were authenticated (a key was given).
    pub authenticated: bool,
    pub repaired: bool,
    /// Corrupt ranges a repair could not pad (shorter than a record header).
    pub unrepairable: Vec<CorruptRecord>,
}

impl FsckReport {
    /// No torn tail and no corrupt record.
    pub fn is_clean(&self) -> bool {
        self.torn_tail.is_none() && self.corrupt.is_empty()
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segments, {} records ({} events), {} pad records, {}",
            self.segments,
            self.records,
            self.items,
            self.pads,
            if self.authenticated {
                "authenticated"
            } else {
                "checksums only"
            }
        )?;
        if self.is_clean() {
            return f.write_str(": clean");
        }
        let verb = if self.repaired { "repaired" } else { "found" };
        if let Some(t) = &self.torn_tail {
            write!(f, "\n{verb}: {t}")?;
        }
        for c in &self.corrupt {
            write!(f, "\n{verb}: {c}")?;
        }
        for c in &self.unrepairable {
            write!(f, "\nNOT repaired (too short to pad): {c}")?;
        }
        Ok(())
    }
}

/// Verifies every segment (checksums; authentication tags when `cipher` is given).
///
/// With `repair` (the directory is locked, so not while an agent runs on it): the torn tail
/// of the last segment is cut (a last segment too short for its header is deleted), and
/// every corrupt range is overwritten *in place* with PAD records (valid checksums, zero
/// payload, skipped by readers) so record ids of later records do not move. A corrupt range
/// shorter than a record header (not producible by this writer) cannot be padded and is
/// reported in `unrepairable`.
pub fn fsck(dir: &Path, cipher: Option<&Cipher>, repair: bool) -> Result<FsckReport> {
    let _lock = if repair { Some(lock_dir(dir)?) } else { None };
    let mut report = FsckReport {
        authenticated: cipher.is_some(),
        ..FsckReport::default()
    };
    let segments = list_segments(dir)?;
    let last_number = segments.keys().next_back().copied();
    for (&n, path) in &segments {
        let is_last = Some(n) == last_number;
        let file = OpenOptions::new()
            .read(true)
            .write(repair)
            .open(path)
            .map_err(io_err("open segment", path))?;
        let len = file_len(&file, path)?;
        report.segments += 1;
        if is_last && len < SEGMENT_HEADER_LEN {
            report.torn_tail = Some(TornTail {
                segment: n,
                path: path.clone(),
                offset: 0,
                bytes_cut: len,
            });
            if repair {
                drop(file);
                fs::remove_file(path).map_err(io_err("remove segment", path))?;
                sync_dir(dir)?;
            }
            continue;
        }
        check_segment_header_with(&file, path, n, cipher, false)?;
        let scan = scan_segment(
            &file,
            path,
            n,
            SEGMENT_HEADER_LEN,
            len,
            cipher,
            |_, _, _| {},
        )?;
        report.records += scan.records;
        report.items += scan.items;
        report.pads += scan.pads;
        let mut corrupt = scan.corrupt;
        if let Some((at, kind)) = scan.tail {
            if is_last {
                report.torn_tail = Some(TornTail {
                    segment: n,
                    path: path.clone(),
                    offset: at,
                    bytes_cut: len - at,
                });
                if repair {
                    file.set_len(at)
                        .map_err(io_err("truncate torn tail of", path))?;
                }
            } else {
                corrupt.push(CorruptRecord {
                    segment: n,
                    offset: at,
                    len: len - at,
                    kind,
                });
            }
        }
        if repair {
            for c in &corrupt {
                if c.len < RECORD_HEADER_LEN {
                    report.unrepairable.push(c.clone());
                } else {
                    write_pads(&file, path, c.offset, c.len)?;
                }
            }
            if !corrupt.is_empty() || scan.tail.is_some() {
                file.sync_data().map_err(io_err("fdatasync", path))?;
            }
        }
        report.corrupt.extend(corrupt);
    }
    report.repaired = repair;
    Ok(report)
}

/// Overwrites `[off, off + len)` (len >= a record header) with PAD records.
fn write_pads(file: &File, path: &Path, mut off: u64, mut len: u64) -> Result<()> {
    const H: u64 = RECORD_HEADER_LEN;
    let zeros = vec![0u8; SCAN_CHUNK];
    while len > 0 {
        let max = H + u64::from(MAX_STORED_LEN);
        let mut this = len.min(max);
        if len - this > 0 && len - this < H {
            this -= H; // leave room for one more header
        }
        let payload = this - H;
        let mut crc = crc32fast::Hasher::new();
        let mut left = payload;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            crc.update(&zeros[..n]);
            left -= n as u64;
        }
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        encode_record_header(&mut h, payload as u32, 0, FLAG_PAD, crc.finalize());
        file.write_all_at(&h, off)
            .map_err(io_err("write pad record to", path))?;
        let mut at = off + H;
        let mut left = payload;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)
                .map_err(io_err("write pad record to", path))?;
            at += n as u64;
            left -= n as u64;
        }
        off += this;
        len -= this;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, segment_bytes: u64) -> WalOptions {
        WalOptions {
            dir: dir.to_path_buf(),
            segment_bytes,
            cipher: None,
        }
    }

    fn payload(i: usize) -> Vec<u8> {
        let len = 10 + (i * 37) % 200;
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }

    fn read_all(wal: &Wal) -> (Vec<ReadRecord>, Vec<CorruptRecord>) {
        let mut r = wal.reader();
        let mut out = Vec::new();
        while let Some(rec) = r.next(wal.end()).expect("read") {
            out.push(rec);
        }
        (out, r.take_corrupt())
    }

    fn seg_path(dir: &Path, n: u64) -> PathBuf {
        dir.join(segment_file_name(n))
    }

    fn flip(path: &Path, at: u64) {
        let mut bytes = fs::read(path).expect("read");
        bytes[at as usize] ^= 0x5a;
        fs::write(path, bytes).expect("write");
    }

    /// Writes `n` records into one segment and returns their ids.
    fn write_records(dir: &Path, n: usize) -> Vec<RecordId> {
        let (mut wal, _) = Wal::open(opts(dir, DEFAULT_SEGMENT_BYTES)).expect("open");
        let ids = (0..n)
            .map(|i| wal.append(&payload(i), i as u32).expect("append"))
            .collect();
        wal.sync().expect("sync");
        ids
    }

    #[test]
    fn round_trip_across_segment_rolls() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, report) = Wal::open(opts(tmp.path(), 1000)).expect("open");
        assert!(report.is_clean());
        assert_eq!(report.records, 0);
        let mut ids = Vec::new();
        for i in 0..60 {
            let end_before = wal.end();
            let id = wal.append(&payload(i), i as u32).expect("append");
            assert!(id >= end_before);
            ids.push(id);
        }
        wal.sync().expect("sync");
        assert!(
            wal.segment_count() >= 5,
            "segments: {}",
            wal.segment_count()
        );
        let on_disk: u64 = list_segments(tmp.path())
            .expect("list")
            .values()
            .map(|p| fs::metadata(p).expect("stat").len())
            .sum();
        assert_eq!(wal.disk_bytes(), on_disk);
        let (recs, corrupt) = read_all(&wal);
        assert!(corrupt.is_empty());
        assert_eq!(recs.len(), 60);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.id, ids[i]);
            assert_eq!(r.payload, payload(i));
            assert_eq!(r.items, i as u32);
            assert!(r.next > r.id);
        }
        // Empty payloads work too.
        let id = wal.append(&[], 0).expect("append empty");
        let mut r = wal.reader();
        r.seek(id);
        let rec = r.next(wal.end()).expect("read").expect("record");
        assert!(rec.payload.is_empty());
        assert_eq!(r.next(wal.end()).expect("read"), None);
    }

    #[test]
    fn reopen_resumes_at_acked_position() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let acked;
        {
            let (mut wal, _) = Wal::open(opts(tmp.path(), 600)).expect("open");
            for i in 0..20 {
                wal.append(&payload(i), 1).expect("append");
            }
            let mut r = wal.reader();
            let mut last = None;
            for _ in 0..7 {
                last = r.next(wal.end()).expect("read");
            }
            acked = last.expect("7 records").next;
            wal.ack(acked).expect("ack");
            assert_eq!(wal.acked(), acked);
        }
        let (wal, report) = Wal::open(opts(tmp.path(), 600)).expect("reopen");
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.records, 13);
        assert_eq!(report.items, 13);
        assert_eq!(wal.acked(), acked);
        let (recs, _) = read_all(&wal);
        assert_eq!(recs.len(), 13);
        for (k, r) in recs.iter().enumerate() {
            assert_eq!(r.payload, payload(7 + k));
        }
    }

    #[test]
    fn ack_deletes_whole_segments() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(opts(tmp.path(), 500)).expect("open");
        for i in 0..40 {
            wal.append(&payload(i), 1).expect("append");
        }
        let before = list_segments(tmp.path()).expect("list").len();
        assert!(before >= 4);
        let (recs, _) = read_all(&wal);
        // Ack up to the end of the second segment's last record.
        let first_seg = recs[0].id.segment;
        let last_of_second = recs
            .iter()
            .rfind(|r| r.id.segment == first_seg + 1)
            .expect("rec");
        wal.ack(last_of_second.next).expect("ack");
        let after = list_segments(tmp.path()).expect("list");
        assert_eq!(after.len(), before - 2);
        assert!(after.keys().all(|&n| n > first_seg + 1));
        // A reader from the acked position continues with the third segment.
        let mut r = wal.reader();
        let rec = r.next(wal.end()).expect("read").expect("record");
        assert_eq!(
            rec.id,
            RecordId {
                segment: first_seg + 2,
                offset: SEGMENT_HEADER_LEN
            }
        );
        // Ack everything: only the current segment stays; reopen starts at the end.
        wal.ack(wal.end()).expect("ack all");
        assert_eq!(list_segments(tmp.path()).expect("list").len(), 1);
        let end = wal.end();
        assert!(
            wal.ack(RecordId {
                segment: end.segment,
                offset: end.offset + 1
            })
            .is_err()
        );
        drop(wal);
        let (wal, report) = Wal::open(opts(tmp.path(), 500)).expect("reopen");
        assert_eq!(report.records, 0);
        assert_eq!(wal.acked(), end);
        assert!(read_all(&wal).0.is_empty());
    }

    fn torn_case(cut: impl FnOnce(&Path, &[RecordId]) -> u64) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ids = write_records(tmp.path(), 5);
        let path = seg_path(tmp.path(), ids[0].segment);
        let expected_cut = cut(&path, &ids);
        let (mut wal, report) = Wal::open(opts(tmp.path(), DEFAULT_SEGMENT_BYTES)).expect("reopen");
        let tail = report.torn_tail.clone().expect("torn tail");
        assert_eq!(tail.bytes_cut, expected_cut, "{report}");
        assert_eq!(tail.offset, ids[4].offset);
        assert!(report.corrupt.is_empty());
        assert_eq!(report.records, 4);
        assert_eq!(fs::metadata(&path).expect("stat").len(), ids[4].offset);
        assert!(
            report.to_string().contains("cut a torn tail of"),
            "{report}"
        );
        let (recs, corrupt) = read_all(&wal);
        assert!(corrupt.is_empty());
        assert_eq!(
            recs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            (0..4).map(payload).collect::<Vec<_>>()
        );
        // Appending after the cut works and fsck is clean.
        let id = wal.append(b"after", 1).expect("append");
        assert_eq!(id, ids[4]);
        drop(wal);
        assert!(fsck(tmp.path(), None, false).expect("fsck").is_clean());
    }

    #[test]
    fn torn_tail_mid_header() {
        torn_case(|path, ids| {
            let f = OpenOptions::new().write(true).open(path).expect("open");
            f.set_len(ids[4].offset + 10).expect("truncate");
            10
        });
    }

    #[test]
    fn torn_tail_mid_payload() {
        torn_case(|path, ids| {
            let f = OpenOptions::new().write(true).open(path).expect("open");
            f.set_len(ids[4].offset + RECORD_HEADER_LEN + 3)
                .expect("truncate");
            RECORD_HEADER_LEN + 3
        });
    }

    #[test]
    fn torn_tail_checksum_mismatch_and_garbage() {
        torn_case(|path, ids| {
            let len = fs::metadata(path).expect("stat").len();
            flip(path, ids[4].offset + RECORD_HEADER_LEN + 1);
            let mut bytes = fs::read(path).expect("read");
            bytes.extend_from_slice(b"RNRC\x01\x02garbage garbage");
            fs::write(path, &bytes).expect("write");
            len - ids[4].offset + 21
        });
    }

    #[test]
    fn garbage_appended_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ids = write_records(tmp.path(), 3);
        let path = seg_path(tmp.path(), ids[0].segment);
        let len = fs::metadata(&path).expect("stat").len();
        let mut bytes = fs::read(&path).expect("read");
        bytes.extend_from_slice(&[0u8; 100]);
        fs::write(&path, &bytes).expect("write");
        let (wal, report) = Wal::open(opts(tmp.path(), DEFAULT_SEGMENT_BYTES)).expect("reopen");
        let tail = report.torn_tail.expect("tail");
        assert_eq!((tail.offset, tail.bytes_cut), (len, 100));
        assert_eq!(read_all(&wal).0.len(), 3);
    }

    #[test]
    fn corrupt_middle_record_is_skipped_and_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ids = write_records(tmp.path(), 6);
        let path = seg_path(tmp.path(), ids[0].segment);
        // Payload byte of record 2, length byte (header) of record 4.
        flip(&path, ids[2].offset + RECORD_HEADER_LEN + 5);
        flip(&path, ids[4].offset + 5);
        let fsck_before = fsck(tmp.path(), None, false).expect("fsck");
        let (mut wal, report) = Wal::open(opts(tmp.path(), DEFAULT_SEGMENT_BYTES)).expect("reopen");
        assert!(report.torn_tail.is_none(), "{report}");
        let expected = vec![
            CorruptRecord {
                segment: ids[0].segment,
                offset: ids[2].offset,
                len: ids[3].offset - ids[2].offset,
                kind: CorruptKind::Checksum,
            },
            CorruptRecord {
                segment: ids[0].segment,
                offset: ids[4].offset,
                len: ids[5].offset - ids[4].offset,
                kind: CorruptKind::BadHeader,
            },
        ];
        assert_eq!(report.corrupt, expected);
        assert_eq!(report.records, 4);
        assert_eq!(fsck_before.corrupt, report.corrupt);
        assert_eq!(fsck_before.torn_tail, report.torn_tail);
        let (recs, corrupt) = read_all(&wal);
        assert_eq!(corrupt, expected);
        let got: Vec<_> = recs.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(got, [0, 1, 3, 5].map(payload).to_vec());
        // Later appends are still readable.
        wal.append(b"later", 1).expect("append");
        assert_eq!(read_all(&wal).0.len(), 5);
    }

    #[test]
    fn fsck_matches_recovery_and_repair_makes_it_clean() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(opts(tmp.path(), 700)).expect("open");
        let ids: Vec<_> = (0..30)
            .map(|i| wal.append(&payload(i), 2).expect("append"))
            .collect();
        wal.sync().expect("sync");
        drop(wal);
        // Corrupt a record in the first segment, a record in the middle of the last, and
        // tear the tail of the last segment.
        flip(&seg_path(tmp.path(), ids[1].segment), ids[1].offset + 2);
        let last_seg = ids[29].segment;
        let in_last: Vec<_> = ids
            .iter()
            .filter(|i| i.segment == last_seg)
            .copied()
            .collect();
        assert!(in_last.len() >= 3);
        flip(
            &seg_path(tmp.path(), last_seg),
            in_last[0].offset + RECORD_HEADER_LEN,
        );
        let f = OpenOptions::new()
            .write(true)
            .open(seg_path(tmp.path(), last_seg))
            .expect("open");
        f.set_len(ids[29].offset + 7).expect("truncate");
        drop(f);

        let check = fsck(tmp.path(), None, false).expect("fsck");
        assert_eq!(check.corrupt.len(), 2, "{check}");
        let tail = check.torn_tail.clone().expect("tail");
        assert_eq!((tail.offset, tail.bytes_cut), (ids[29].offset, 7));
        // fsck without repair changed nothing; recovery sees the same.
        let again = fsck(tmp.path(), None, false).expect("fsck");
        assert_eq!(again.corrupt, check.corrupt);
        let repaired = fsck(tmp.path(), None, true).expect("repair");
        assert!(repaired.repaired && repaired.unrepairable.is_empty());
        assert_eq!(repaired.corrupt, check.corrupt);
        let clean = fsck(tmp.path(), None, false).expect("fsck");
        assert!(clean.is_clean(), "{clean}");
        assert_eq!(clean.pads, 2);
        assert_eq!(clean.records, 27);
        let (wal, report) = Wal::open(opts(tmp.path(), 700)).expect("open");
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.records, 27);
        let (recs, corrupt) = read_all(&wal);
        assert!(corrupt.is_empty());
        assert_eq!(recs.len(), 27);
        assert_eq!(recs[1].payload, payload(2));

        let info = inspect(tmp.path()).expect("inspect");
        assert_eq!(info.pending_records, 27);
        assert_eq!(info.pending_items, 54);
        assert!(info.to_string().contains(&segment_file_name(last_seg)));
    }

    #[test]
    fn fsck_report_equals_recovery_report() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ids = write_records(tmp.path(), 8);
        let path = seg_path(tmp.path(), ids[0].segment);
        flip(&path, ids[3].offset + 30);
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(ids[7].offset + 30).expect("truncate");
        drop(f);
        let check = fsck(tmp.path(), None, false).expect("fsck");
        let (_wal, report) = Wal::open(opts(tmp.path(), DEFAULT_SEGMENT_BYTES)).expect("open");
        assert_eq!(check.corrupt, report.corrupt);
        assert_eq!(check.torn_tail, report.torn_tail);
        assert_eq!(check.records, report.records);
    }

    #[test]
    fn reader_never_reads_at_or_after_end() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(opts(tmp.path(), 400)).expect("open");
        for i in 0..5 {
            wal.append(&payload(i), 1).expect("append");
        }
        let end = wal.end();
        for i in 5..15 {
            wal.append(&payload(i), 1).expect("append");
        }
        let mut r = wal.reader();
        let mut n = 0;
        while let Some(rec) = r.next(end).expect("read") {
            assert!(rec.id < end && rec.next <= end);
            n += 1;
        }
        assert_eq!(n, 5);
        assert_eq!(r.next(end).expect("read"), None);
        // With the later end the rest comes.
        let mut rest = 0;
        while let Some(rec) = r.next(wal.end()).expect("read") {
            assert_eq!(rec.payload, payload(5 + rest));
            rest += 1;
        }
        assert_eq!(rest, 10);
        // An end inside a record never exposes it.
        let id = wal.append(b"0123456789", 1).expect("append");
        let mut r2 = wal.reader();
        r2.seek(id);
        assert_eq!(
            r2.next(RecordId {
                segment: id.segment,
                offset: id.offset + 5
            })
            .expect("read"),
            None
        );
    }

    fn key(b: u8) -> Cipher {
        Cipher::from_key_bytes(&[b; 32]).expect("key")
    }

    #[test]
    fn encryption_round_trip_and_wrong_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut o = opts(tmp.path(), 800);
        o.cipher = Some(key(7));
        let secret = b"top secret log line 1234567890";
        {
            let (mut wal, _) = Wal::open(o.clone()).expect("open");
            for i in 0..20 {
                let mut p = secret.to_vec();
                p.extend_from_slice(&payload(i));
                wal.append(&p, i as u32).expect("append");
            }
            wal.sync().expect("sync");
            let (recs, corrupt) = read_all(&wal);
            assert!(corrupt.is_empty());
            assert_eq!(recs.len(), 20);
            assert!(recs.iter().all(|r| r.payload.starts_with(secret)));
        }
        for path in list_segments(tmp.path()).expect("list").values() {
            let bytes = fs::read(path).expect("read");
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
        // fsck without the key checks checksums only and is clean.
        assert!(fsck(tmp.path(), None, false).expect("fsck").is_clean());
        assert!(
            fsck(tmp.path(), Some(&key(7)), false)
                .expect("fsck")
                .is_clean()
        );
        assert!(matches!(
            fsck(tmp.path(), Some(&key(8)), false),
            Err(WalError::WrongKey { .. })
        ));
        let mut wrong = o.clone();
        wrong.cipher = Some(key(8));
        let err = Wal::open(wrong).expect_err("wrong key");
        assert!(matches!(err, WalError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains(".wal"), "{err}");
        let mut none = o.clone();
        none.cipher = None;
        assert!(matches!(Wal::open(none), Err(WalError::NoKey { .. })));
        // Reopen with the right key resumes.
        let (wal, report) = Wal::open(o).expect("reopen");
        assert!(report.is_clean());
        assert_eq!(read_all(&wal).0.len(), 20);
    }

    #[test]
    fn authentication_failure_counts_as_corrupt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut o = opts(tmp.path(), DEFAULT_SEGMENT_BYTES);
        o.cipher = Some(key(1));
        let ids = {
            let (mut wal, _) = Wal::open(o.clone()).expect("open");
            (0..3)
                .map(|i| wal.append(&payload(i), 1).expect("append"))
                .collect::<Vec<_>>()
        };
        // Tamper with record 1's ciphertext and fix up both checksums.
        let path = seg_path(tmp.path(), ids[0].segment);
        let mut bytes = fs::read(&path).expect("read");
        let h = ids[1].offset as usize;
        let len = le_u32(&bytes, h + 4) as usize;
        bytes[h + 24 + 20] ^= 1;
        let crc = crc32fast::hash(&bytes[h + 24..h + 24 + len]);
        let (items, flags) = (le_u32(&bytes, h + 8), le_u32(&bytes, h + 12));
        encode_record_header(&mut bytes[h..h + 24], len as u32, items, flags, crc);
        fs::write(&path, &bytes).expect("write");

        assert!(fsck(tmp.path(), None, false).expect("fsck").is_clean());
        let check = fsck(tmp.path(), Some(&key(1)), false).expect("fsck");
        assert_eq!(check.corrupt.len(), 1);
        assert_eq!(check.corrupt[0].kind, CorruptKind::Authentication);
        let (wal, _) = Wal::open(o).expect("open");
        let (recs, corrupt) = read_all(&wal);
        assert_eq!(recs.len(), 2);
        assert_eq!(corrupt.len(), 1);
        assert_eq!(corrupt[0].offset, ids[1].offset);
    }

    #[test]
    fn key_parsing() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let a = Cipher::from_hex_or_raw(hex.as_bytes()).expect("hex");
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff,
            ][i % 16];
        }
        let b = Cipher::from_hex_or_raw(&raw).expect("raw");
        assert_eq!(a.check, b.check);
        assert!(Cipher::from_hex_or_raw(b"short").is_err());
        assert!(Cipher::from_hex_or_raw(&[b'z'; 64]).is_err());
        assert!(Cipher::from_key_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn oversized_record_and_lock() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(opts(tmp.path(), DEFAULT_SEGMENT_BYTES)).expect("open");
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert!(matches!(
            wal.append(&big, 1),
            Err(WalError::RecordTooLarge { .. })
        ));
        assert_eq!(wal.end().offset, SEGMENT_HEADER_LEN);
        assert!(matches!(
            Wal::open(opts(tmp.path(), 100)),
            Err(WalError::Locked { .. })
        ));
        assert!(matches!(
            fsck(tmp.path(), None, true),
            Err(WalError::Locked { .. })
        ));
    }

    #[test]
    fn corrupt_ledger_redelivers_and_crash_during_segment_creation() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ids = write_records(tmp.path(), 3);
        fs::write(tmp.path().join(LEDGER_FILE), b"junk").expect("write");
        // A segment file created but its header never written.
        fs::write(seg_path(tmp.path(), ids[0].segment + 1), b"RNL").expect("write");
        let (mut wal, report) = Wal::open(opts(tmp.path(), DEFAULT_SEGMENT_BYTES)).expect("open");
        assert!(report.ledger_reset);
        let tail = report.torn_tail.clone().expect("tail");
        assert_eq!(
            (tail.segment, tail.offset, tail.bytes_cut),
            (ids[0].segment + 1, 0, 3)
        );
        assert_eq!(read_all(&wal).0.len(), 3);
        wal.append(b"x", 1).expect("append");
        assert_eq!(read_all(&wal).0.len(), 4);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn failed_append_leaves_no_partial_record() {
        // Simulate a write failure with a file size limit is not portable in tests; instead
        // check the truncate-back contract directly on an append to a read-only handle.
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(opts(tmp.path(), DEFAULT_SEGMENT_BYTES)).expect("open");
        wal.append(b"one", 1).expect("append");
        let end = wal.end();
        let ro = File::open(&wal.cur_path).expect("open");
        let writable = std::mem::replace(&mut wal.cur_file, ro);
        let err = wal.append(b"two", 1).expect_err("must fail");
        assert!(
            err.to_string().contains(&segment_file_name(end.segment)),
            "{err}"
        );
        assert_eq!(wal.end(), end);
        wal.cur_file = writable;
        wal.append(b"three", 1).expect("append");
        let (recs, corrupt) = read_all(&wal);
        assert!(corrupt.is_empty());
        assert_eq!(
            recs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            vec![b"one".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn enabling_encryption_starts_an_encrypted_segment() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let plain = opts(tmp.path(), DEFAULT_SEGMENT_BYTES);
        let mut enc = plain.clone();
        enc.cipher = Some(key(3));
        {
            let (mut wal, _) = Wal::open(plain.clone()).expect("open");
            for i in 0..3 {
                wal.append(&payload(i), 1).expect("append");
            }
        }
        {
            let (mut wal, _) = Wal::open(enc.clone()).expect("open with key");
            assert_eq!(wal.segment_count(), 2);
            for i in 3..6 {
                wal.append(&payload(i), 1).expect("append");
            }
            let (recs, _) = read_all(&wal);
            assert_eq!(recs.len(), 6);
            assert_eq!(recs[5].payload, payload(5));
        }
        assert!(matches!(Wal::open(plain), Err(WalError::NoKey { .. })));
        // An empty plain segment gets its header rewritten instead.
        let tmp2 = tempfile::tempdir().expect("tempdir");
        drop(Wal::open(opts(tmp2.path(), DEFAULT_SEGMENT_BYTES)).expect("open"));
        let mut enc2 = opts(tmp2.path(), DEFAULT_SEGMENT_BYTES);
        enc2.cipher = Some(key(3));
        {
            let (mut wal, _) = Wal::open(enc2.clone()).expect("open");
            assert_eq!(wal.segment_count(), 1);
            wal.append(b"secret", 1).expect("append");
        }
        enc2.cipher = Some(key(4));
        assert!(matches!(Wal::open(enc2), Err(WalError::WrongKey { .. })));
    }

    #[test]
    fn reader_survives_missing_segments() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(opts(tmp.path(), 400)).expect("open");
        for i in 0..10 {
            wal.append(&payload(i), 1).expect("append");
        }
        let end = wal.end();
        // A position in a segment that never existed, and one in the current segment
        // after its file vanished: no panic, just the end.
        let mut r = wal.reader();
        r.seek(RecordId {
            segment: 0,
            offset: 0,
        });
        assert!(r.next(end).expect("read").is_some());
        fs::remove_file(seg_path(tmp.path(), end.segment)).expect("remove");
        let mut r = wal.reader();
        r.seek(RecordId {
            segment: end.segment,
            offset: SEGMENT_HEADER_LEN,
        });
        assert_eq!(r.next(end).expect("read"), None);
    }
}
