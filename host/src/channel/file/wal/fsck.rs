//! `runnel channel fsck`: verify every record, and repair (cut a torn tail, blank corrupt records).

use super::*;

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
pub(super) fn write_pads(file: &File, path: &Path, mut off: u64, mut len: u64) -> Result<()> {
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
