//! `runnel channel inspect`: what a log holds, segment by segment.

use super::*;

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
