//! Scanning a segment for valid records: shared by recovery, readers, inspect and fsck.

use super::*;

pub(super) enum Step {
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
pub(super) fn find_next_header(
    file: &File,
    path: &Path,
    from: u64,
    limit: u64,
) -> Result<Option<u64>> {
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
pub(super) fn step(
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
pub(super) struct SegmentScan {
    pub(super) records: u64,
    pub(super) items: u64,
    pub(super) bytes: u64,
    pub(super) pads: u64,
    pub(super) corrupt: Vec<CorruptRecord>,
    /// Start of a run of bad bytes reaching the end of the file.
    pub(super) tail: Option<(u64, CorruptKind)>,
}

/// Scans `[start, len)` of a segment. Bad runs followed by a valid record (or a record
/// failing authentication) become corrupt entries; a bad run reaching the end becomes
/// `tail`. `on_record(offset, record_bytes, items)` sees every valid record.
pub(super) fn scan_segment(
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

pub(super) fn list_segments(dir: &Path) -> Result<BTreeMap<u64, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.insert(n, entry.path());
        }
    }
    Ok(out)
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

pub(super) fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(io_err("stat", path))?.len())
}

/// Result of reading the ledger: `Ok(None)` when absent, `Err(())` when unreadable garbage.
pub(super) fn read_ledger(dir: &Path) -> Result<Result<Option<RecordId>, ()>> {
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

pub(super) fn write_ledger(dir: &Path, at: RecordId) -> Result<()> {
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
    crate::files::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &b))
        .map_err(io_err("write ledger", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("replace ledger", &path))
}

pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = crate::files::private_file()
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

pub(super) fn create_segment(
    dir: &Path,
    number: u64,
    cipher: Option<&Cipher>,
) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_file_name(number));
    let file = crate::files::private_file()
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
