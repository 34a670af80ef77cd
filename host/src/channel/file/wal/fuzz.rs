//! The fuzz target of the WAL record reader (issue 26): a log written whole, then
//! damaged anywhere — bytes flipped, cut short, garbage appended — reopens without a
//! panic, and every record it hands out is one that was written, in order: damage is
//! skipped and reported, never read as data.

use super::*;
use proptest::prelude::*;

fn payload(i: usize) -> Vec<u8> {
    let len = 1 + (i * 53) % 300;
    (0..len).map(|j| (i * 29 + j * 7) as u8).collect()
}

/// What is done to the segment file.
#[derive(Debug, Clone)]
enum Damage {
    Flip {
        at: prop::sample::Index,
        with: u8,
    },
    Cut {
        at: prop::sample::Index,
    },
    Append {
        bytes: Vec<u8>,
    },
    Overwrite {
        at: prop::sample::Index,
        bytes: Vec<u8>,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..).prop_map(|(at, with)| Damage::Flip { at, with }),
        any::<prop::sample::Index>().prop_map(|at| Damage::Cut { at }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Damage::Append { bytes }),
        (
            any::<prop::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 1..32)
        )
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_damaged_log_reopens_and_reads_only_records_that_were_written(
        records in 1usize..40,
        damages in proptest::collection::vec(damage(), 1..6),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let written: Vec<Vec<u8>> = (0..records).map(payload).collect();
        {
            let (mut wal, _) = Wal::open(WalOptions::new(tmp.path())).expect("open");
            for (i, p) in written.iter().enumerate() {
                wal.append(p, i as u32).expect("append");
            }
            wal.sync().expect("sync");
        }
        let segments = scan::list_segments(tmp.path()).expect("list");
        let path = segments.values().next().expect("a segment").clone();
        let mut bytes = fs::read(&path).expect("read");
        for d in damages {
            match d {
                Damage::Flip { at, with } if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] ^= with;
                }
                Damage::Cut { at } => bytes.truncate(at.index(bytes.len() + 1)),
                Damage::Append { bytes: more } => bytes.extend_from_slice(&more),
                Damage::Overwrite { at, bytes: over } if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    let n = over.len().min(bytes.len() - i);
                    bytes[i..i + n].copy_from_slice(&over[..n]);
                }
                _ => {}
            }
        }
        fs::write(&path, &bytes).expect("write");
        // A damaged segment header may refuse the log; it must say so, not panic.
        let Ok((wal, _report)) = Wal::open(WalOptions::new(tmp.path())) else {
            return Ok(());
        };
        let mut reader = wal.reader();
        let mut next_expected = 0;
        while let Ok(Some(record)) = reader.next(wal.end()) {
            let found = written[next_expected..]
                .iter()
                .position(|w| *w == record.payload);
            prop_assert!(found.is_some(), "a record that was never written, or out of order");
            next_expected += found.unwrap_or(0) + 1;
        }
    }
}
