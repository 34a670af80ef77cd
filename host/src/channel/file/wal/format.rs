//! Encoding and decoding of segment headers, record headers and the ledger.

use super::*;

pub(super) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(super) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(super) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(super) fn encode_segment_header(number: u64, cipher: Option<&Cipher>) -> [u8; 32] {
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

pub(super) struct SegmentHeader {
    pub(super) encrypted: bool,
    pub(super) key_check: [u8; 8],
}

pub(super) fn parse_segment_header(h: &[u8; 32], number: u64) -> Result<SegmentHeader, String> {
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
pub(super) fn check_segment_header(
    file: &File,
    path: &Path,
    number: u64,
    cipher: Option<&Cipher>,
) -> Result<bool> {
    check_segment_header_with(file, path, number, cipher, true)
}

/// Like [`check_segment_header`]; without `need_key`, an encrypted segment is accepted
/// when no cipher is given (checksum-only verification).
pub(super) fn check_segment_header_with(
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
pub(super) struct RecordHeader {
    pub(super) len: u32,
    pub(super) items: u32,
    pub(super) flags: u32,
    pub(super) crc: u32,
}

pub(super) fn encode_record_header(h: &mut [u8], len: u32, items: u32, flags: u32, crc: u32) {
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&items.to_le_bytes());
    h[12..16].copy_from_slice(&flags.to_le_bytes());
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&hcrc.to_le_bytes());
}

pub(super) fn parse_record_header(h: &[u8]) -> Option<RecordHeader> {
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
