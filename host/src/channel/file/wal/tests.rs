//! Tests of the write-ahead log.
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
