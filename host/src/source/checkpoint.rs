//! Read positions that travel with the batches they cover.
//!
//! A file-reading source marks every line with where it ends in its file ([`Mark`]).
//! A flushed batch carries the last mark per file; the pipeline worker writes them,
//! encoded as a [`Checkpoint`], into the same durable put as the batch's events (the
//! last durable put of the batch, made after all the others). After a crash the source
//! resumes from the newest of its position file and the checkpoints its channels still
//! hold, so a batch that reached a durable channel is never read again, even when the
//! position file had not caught up.

use crate::files::le;
use crate::plugin::state::StateCommit;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A CRC32 of a file's first `len` bytes (up to `taildir`'s fingerprint length; fewer
/// while the file is shorter, extended as it grows). Tells a file from another that got
/// the same inode, and a file from itself truncated and written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    pub len: u32,
    pub crc32: u32,
}

impl Fingerprint {
    /// Of no bytes: matches every file (the fingerprint of an empty file).
    pub const EMPTY: Fingerprint = Fingerprint { len: 0, crc32: 0 };

    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint {
            len: bytes.len() as u32,
            crc32: crc32fast::hash(bytes),
        }
    }
}

/// Which file a position is in: device, inode and fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
}

/// Where a line ends in its file: the offset just past its line end, in the file the
/// source knows as `key` (a key per followed file, new after a truncation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub key: u64,
    pub file: FileId,
    pub offset: u64,
}

/// The positions one batch of one source reaches, as stored with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The source's name.
    pub source: Arc<str>,
    /// Increases with every batch of the source, across restarts: orders checkpoints
    /// found in different channels.
    pub seq: u64,
    /// The last position per file in the batch.
    pub positions: Vec<(FileId, u64)>,
    /// The plugin state changes the batch made (see [`crate::plugin::state`]): durable
    /// exactly when the batch is.
    pub state: Vec<Arc<StateCommit>>,
}

/// Version 1 had no state changes.
const VERSION: u8 = 2;
/// dev, inode, fingerprint len and crc, offset.
const ENTRY_BYTES: usize = 8 + 8 + 4 + 4 + 8;

/// Why stored checkpoint bytes could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint ends early")]
    Short,
    #[error("unknown checkpoint version {0}")]
    Version(u8),
    #[error("the source or plugin name is not UTF-8")]
    Name,
}

impl Checkpoint {
    /// Appends the stored form: `version u8, name len u16, name, seq u64, count u32`,
    /// then per file `dev u64, inode u64, fingerprint len u32, crc u32, offset u64`;
    /// then `commits u32` and per state commit `plugin len u16, plugin, version u64,
    /// changes u32`, per change `key len u32, key, present u8` and when present `value
    /// len u32, value` (little-endian).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let name = self.source.as_bytes();
        let name = &name[..name.len().min(u16::MAX as usize)];
        out.reserve(15 + name.len() + self.positions.len() * ENTRY_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&(self.positions.len() as u32).to_le_bytes());
        for (file, offset) in &self.positions {
            out.extend_from_slice(&file.dev.to_le_bytes());
            out.extend_from_slice(&file.inode.to_le_bytes());
            out.extend_from_slice(&file.fingerprint.len.to_le_bytes());
            out.extend_from_slice(&file.fingerprint.crc32.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&(self.state.len() as u32).to_le_bytes());
        for commit in &self.state {
            let plugin = commit.plugin.as_bytes();
            let plugin = &plugin[..plugin.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(plugin.len() as u16).to_le_bytes());
            out.extend_from_slice(plugin);
            out.extend_from_slice(&commit.version.to_le_bytes());
            out.extend_from_slice(&(commit.changes.len() as u32).to_le_bytes());
            for (key, value) in &commit.changes {
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                match value {
                    Some(v) => {
                        out.push(1);
                        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        out.extend_from_slice(v);
                    }
                    None => out.push(0),
                }
            }
        }
    }

    /// Reads a checkpoint from the front of `bytes`; returns it and the bytes after it.
    pub fn decode(bytes: &[u8]) -> Result<(Checkpoint, &[u8]), CheckpointError> {
        let mut r = bytes;
        let version = short(le::u8(&mut r))?;
        if version != VERSION && version != 1 {
            return Err(CheckpointError::Version(version));
        }
        let name_len = short(le::u16(&mut r))? as usize;
        let name = short(le::slice(&mut r, name_len))?;
        let source: Arc<str> = std::str::from_utf8(name)
            .map_err(|_| CheckpointError::Name)?
            .into();
        let seq = short(le::u64(&mut r))?;
        let count = short(le::u32(&mut r))? as usize;
        if r.len() < count.saturating_mul(ENTRY_BYTES) {
            return Err(CheckpointError::Short);
        }
        let mut positions = Vec::with_capacity(count);
        for _ in 0..count {
            let dev = short(le::u64(&mut r))?;
            let inode = short(le::u64(&mut r))?;
            let len = short(le::u32(&mut r))?;
            let crc32 = short(le::u32(&mut r))?;
            let offset = short(le::u64(&mut r))?;
            let file = FileId {
                dev,
                inode,
                fingerprint: Fingerprint { len, crc32 },
            };
            positions.push((file, offset));
        }
        let mut state = Vec::new();
        if version >= 2 {
            let commits = short(le::u32(&mut r))?;
            for _ in 0..commits {
                state.push(Arc::new(decode_commit(&mut r)?));
            }
        }
        Ok((
            Checkpoint {
                source,
                seq,
                state,
                positions,
            },
            r,
        ))
    }
}

fn decode_commit(r: &mut &[u8]) -> Result<StateCommit, CheckpointError> {
    let plugin_len = short(le::u16(r))? as usize;
    let plugin = short(le::slice(r, plugin_len))?;
    let plugin: Arc<str> = std::str::from_utf8(plugin)
        .map_err(|_| CheckpointError::Name)?
        .into();
    let version = short(le::u64(r))?;
    let count = short(le::u32(r))? as usize;
    // Each change takes 5 bytes at least.
    if r.len() < count.saturating_mul(5) {
        return Err(CheckpointError::Short);
    }
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = short(le::u32(r))? as usize;
        let key = short(le::slice(r, key_len))?.to_vec();
        let value = match short(le::u8(r))? {
            0 => None,
            _ => {
                let len = short(le::u32(r))? as usize;
                Some(short(le::slice(r, len))?.to_vec())
            }
        };
        changes.push((key, value));
    }
    Ok(StateCommit {
        plugin,
        version,
        changes,
    })
}

fn short<T>(read: Option<T>) -> Result<T, CheckpointError> {
    read.ok_or(CheckpointError::Short)
}

/// What a source's channels held for it at start: the newest stored position per file
/// (by device and inode) with the number of the batch it came with, and the highest
/// batch number seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub positions: HashMap<(u64, u64), Stored>,
    pub last_seq: Option<u64>,
}

/// A position as a channel stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub file: FileId,
    pub offset: u64,
}

/// The newest position per file (by device and inode) of one source, as a durable
/// channel keeps it to write again at the start of each new segment.
#[derive(Debug, Clone, Default)]
pub struct Newest {
    files: HashMap<(u64, u64), Stored>,
}

impl Newest {
    /// Files remembered per source at most (the oldest are forgotten past it: their
    /// positions are long in the source's position file).
    pub const MAX_FILES: usize = 4096;

    pub fn record(&mut self, checkpoint: &Checkpoint) {
        for &(file, offset) in &checkpoint.positions {
            let stored = Stored {
                seq: checkpoint.seq,
                file,
                offset,
            };
            self.files.insert((file.dev, file.inode), stored);
        }
        while self.files.len() > Self::MAX_FILES {
            let oldest = self
                .files
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => self.files.remove(&k),
                None => break,
            };
        }
    }

    /// The positions as checkpoints, one per batch number, in order.
    pub fn checkpoints(&self, source: &Arc<str>) -> Vec<Checkpoint> {
        let mut by_seq: std::collections::BTreeMap<u64, Vec<(FileId, u64)>> = Default::default();
        for s in self.files.values() {
            by_seq.entry(s.seq).or_default().push((s.file, s.offset));
        }
        by_seq
            .into_iter()
            .map(|(seq, positions)| Checkpoint {
                source: source.clone(),
                seq,
                state: Vec::new(),
                positions,
            })
            .collect()
    }
}

impl Recovered {
    /// Merges checkpoints of one source from any channels, in any order: per file the
    /// one of the highest batch number wins.
    pub fn merge(checkpoints: impl IntoIterator<Item = Checkpoint>) -> Recovered {
        let mut all: Vec<Checkpoint> = checkpoints.into_iter().collect();
        all.sort_by_key(|c| c.seq);
        let mut recovered = Recovered::default();
        for c in all {
            recovered.last_seq = Some(c.seq);
            for (file, offset) in c.positions {
                let stored = Stored {
                    seq: c.seq,
                    file,
                    offset,
                };
                recovered.positions.insert((file.dev, file.inode), stored);
            }
        }
        recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(inode: u64, crc32: u32) -> FileId {
        FileId {
            dev: 7,
            inode,
            fingerprint: Fingerprint { len: 9, crc32 },
        }
    }

    #[test]
    fn round_trip_leaves_what_follows() {
        let c = Checkpoint {
            source: "app logs".into(),
            seq: 42,
            state: vec![Arc::new(StateCommit {
                plugin: "counter".into(),
                version: 7,
                changes: vec![
                    (b"k".to_vec(), Some(b"3".to_vec())),
                    (b"gone".to_vec(), None),
                ],
            })],
            positions: vec![(file(1, 5), 100), (file(2, 6), 0)],
        };
        let mut out = Vec::new();
        c.encode(&mut out);
        out.extend_from_slice(b"rest");
        let (back, rest) = Checkpoint::decode(&out).unwrap();
        assert_eq!(back, c);
        assert_eq!(rest, b"rest");
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let c = Checkpoint {
            source: "s".into(),
            seq: 1,
            state: Vec::new(),
            positions: vec![(file(1, 5), 100)],
        };
        let mut out = Vec::new();
        c.encode(&mut out);
        for cut in 0..out.len() {
            assert!(Checkpoint::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        out[0] = 9;
        assert_eq!(
            Checkpoint::decode(&out).unwrap_err(),
            CheckpointError::Version(9)
        );
        // A count far beyond the bytes is refused before allocating.
        let mut huge = Vec::new();
        Checkpoint {
            source: "s".into(),
            seq: 1,
            state: Vec::new(),
            positions: vec![],
        }
        .encode(&mut huge);
        let n = huge.len();
        huge[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Checkpoint::decode(&huge).unwrap_err(),
            CheckpointError::Short
        );
    }

    #[test]
    fn the_newest_batch_wins_per_file_whatever_the_order_found() {
        let at = |seq, positions| Checkpoint {
            source: "s".into(),
            seq,
            state: Vec::new(),
            positions,
        };
        let recovered = Recovered::merge([
            at(3, vec![(file(1, 5), 300)]),
            at(1, vec![(file(1, 5), 100), (file(2, 6), 10)]),
            // A truncation: the same inode with new content, later and shorter.
            at(4, vec![(file(2, 8), 4)]),
            at(2, vec![(file(2, 6), 20)]),
        ]);
        assert_eq!(recovered.last_seq, Some(4));
        let at = |inode| {
            let s = recovered.positions[&(7, inode)];
            (s.seq, s.file, s.offset)
        };
        assert_eq!(at(1), (3, file(1, 5), 300));
        assert_eq!(at(2), (4, file(2, 8), 4));
    }
}
