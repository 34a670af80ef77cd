//! The position file: where each followed file has been read to, as far as the
//! channels hold it. JSON, replaced atomically (a temporary file in the same directory,
//! then a rename), so a crash leaves either the old or the new file, never half of one.
//! It is not fsynced: a position that lags only means lines are read again. Positions
//! newer than it travel with their batches into durable channels
//! ([`crate::source::checkpoint`]); `seq` says which of those it already covers.

use super::tracked::Fingerprint;
use crate::source::Recovered;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The format's version, written into the file and checked when reading it.
const VERSION: u32 = 1;

/// One followed file's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
    /// Bytes of the file whose lines are safely in the channels (always a line end).
    pub offset: u64,
    /// The path the file last had (informational: files are matched by identity).
    pub path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PositionFile {
    version: u32,
    /// The number of the last batch whose positions are in `files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    files: Vec<Entry>,
}

/// What a position file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The number of the last acknowledged batch the positions include.
    pub seq: Option<u64>,
    pub files: Vec<Entry>,
}

/// Reads the position file: `Ok(None)` when there is none (a first start), an error
/// naming the path when it cannot be read or parsed.
pub fn load(path: &Path) -> Result<Option<Saved>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the position file {}: {e}",
                path.display()
            ));
        }
    };
    let file: PositionFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the position file {} is corrupt: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!(
            "the position file {} has version {}, expected {VERSION}",
            path.display(),
            file.version
        ));
    }
    Ok(Some(Saved {
        seq: file.seq,
        files: file.files,
    }))
}

/// Replaces the position file with `saved`, atomically; creates its directory.
pub fn save(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let file = PositionFile {
        version: VERSION,
        seq: saved.seq,
        files: saved.files.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    crate::files::replace(path, &[&json, b"\n"])
}

/// Saved positions by (device, inode).
pub type Resume = HashMap<(u64, u64), Entry>;

/// Where each file resumes after a restart: the position file, overlaid with the
/// positions the channels stored with batches it does not cover yet (numbered after
/// its `seq`). `None` when there is neither (a first start). Also returns the number
/// of the last batch either knows of.
pub fn resume_points(saved: Option<Saved>, recovered: &Recovered) -> (Option<Resume>, Option<u64>) {
    let covered = saved.as_ref().and_then(|s| s.seq);
    let last_seq = covered.max(recovered.last_seq);
    let newer: Vec<_> = recovered
        .positions
        .values()
        .filter(|stored| covered.is_none_or(|c| stored.seq > c))
        .collect();
    if saved.is_none() && newer.is_empty() {
        return (None, last_seq);
    }
    let mut entries: HashMap<(u64, u64), Entry> = saved
        .into_iter()
        .flat_map(|s| s.files)
        .map(|e| ((e.dev, e.inode), e))
        .collect();
    for stored in newer {
        let id = (stored.file.dev, stored.file.inode);
        let path = entries.get(&id).map(|e| e.path.clone()).unwrap_or_default();
        entries.insert(
            id,
            Entry {
                dev: stored.file.dev,
                inode: stored.file.inode,
                fingerprint: stored.file.fingerprint,
                offset: stored.offset,
                path,
            },
        );
    }
    (Some(entries), last_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(inode: u64, offset: u64) -> Entry {
        Entry {
            dev: 7,
            inode,
            fingerprint: Fingerprint::of(b"first line\n"),
            offset,
            path: PathBuf::from(format!("/var/log/app/{inode}.log")),
        }
    }

    fn at(entry: Entry) -> Saved {
        Saved {
            seq: None,
            files: vec![entry],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/app.positions.json");
        assert_eq!(load(&path).unwrap(), None);
        let saved = Saved {
            seq: Some(12),
            files: vec![entry(1, 10), entry(2, 0)],
        };
        save(&path, &saved).unwrap();
        assert_eq!(load(&path).unwrap(), Some(saved));
        // Replaced as a whole, leaving no temporary file behind.
        save(&path, &at(entry(3, 5))).unwrap();
        assert_eq!(load(&path).unwrap(), Some(at(entry(3, 5))));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["app.positions.json"]);
    }

    #[test]
    fn a_stale_temporary_file_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        // A crash mid-write leaves a partial temporary file; the real one is intact.
        save(&path, &at(entry(1, 1))).unwrap();
        std::fs::write(dir.path().join("p.json.tmp"), "{\"version\":1,\"fi").unwrap();
        assert_eq!(load(&path).unwrap(), Some(at(entry(1, 1))));
        save(&path, &at(entry(1, 2))).unwrap();
        assert_eq!(load(&path).unwrap(), Some(at(entry(1, 2))));
        // A file from before batch numbers reads as one without.
        std::fs::write(&path, "{\"version\":1,\"files\":[]}").unwrap();
        assert_eq!(
            load(&path).unwrap(),
            Some(Saved {
                seq: None,
                files: vec![]
            })
        );
    }

    #[test]
    fn corrupt_files_are_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("corrupt") && e.contains("p.json"), "{e}");
        std::fs::write(&path, "{\"version\":9,\"files\":[]}").unwrap();
        assert!(load(&path).unwrap_err().contains("version 9"));
    }

    #[test]
    fn channel_positions_newer_than_the_file_win() {
        use crate::source::checkpoint::{Checkpoint, FileId};
        let stored = |seq, inode, offset| Checkpoint {
            source: "s".into(),
            seq,
            state: Vec::new(),
            positions: vec![(
                FileId {
                    dev: 7,
                    inode,
                    fingerprint: Fingerprint::of(b"first line\n"),
                },
                offset,
            )],
        };
        let saved = Saved {
            seq: Some(5),
            files: vec![entry(1, 100), entry(2, 50)],
        };
        // Batch 4 is in the file already; batch 6 is not (the crash came first); inode
        // 3 is a file only the channel knows.
        let recovered = Recovered::merge([stored(4, 1, 90), stored(6, 2, 80), stored(6, 3, 10)]);
        let (entries, last) = resume_points(Some(saved.clone()), &recovered);
        let entries = entries.unwrap();
        assert_eq!(last, Some(6));
        assert_eq!(entries[&(7, 1)].offset, 100);
        assert_eq!(entries[&(7, 2)].offset, 80);
        assert_eq!(entries[&(7, 2)].path, PathBuf::from("/var/log/app/2.log"));
        assert_eq!(entries[&(7, 3)].offset, 10);
        // Without a position file the channel's positions are the start; with neither
        // it is a first start.
        let (only, _) = resume_points(None, &recovered);
        assert_eq!(only.unwrap().len(), 3);
        assert_eq!(resume_points(None, &Recovered::default()), (None, None));
        let (same, last) = resume_points(Some(saved.clone()), &Recovered::default());
        assert_eq!(same.unwrap().len(), 2);
        assert_eq!(last, Some(5));
    }
}
