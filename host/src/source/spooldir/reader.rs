//! One spooled file being read: its open descriptor, identity and line splitter, and
//! the checks that it is still the file that was picked (same size, modification time,
//! first bytes, and still at its path). Reading goes through taildir's
//! [`read_step`](crate::source::taildir::tracked::read_step) (fingerprint and truncation
//! checks); this adds what a spooled file must never do: grow, or be touched.

use crate::event::Tags;
use crate::source::checkpoint::{FileId, Mark};
use crate::source::lines::LineSplitter;
use crate::source::taildir::tracked::{self, Fingerprint, Step};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// How a spooled file changed after it was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It has more bytes than when it was picked.
    Grew { from: u64, to: u64 },
    /// It has fewer bytes, or its first bytes are not the ones read.
    Rewritten,
    /// Same size, but written to (its modification time moved).
    Touched,
    /// Its path names nothing any more (deleted, or moved away).
    Vanished,
    /// Its path names another file now.
    Replaced,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Grew { from, to } => write!(f, "it grew from {from} to {to} bytes"),
            Change::Rewritten => write!(f, "it was truncated or rewritten"),
            Change::Touched => write!(f, "it was written to (its modification time changed)"),
            Change::Vanished => write!(f, "it was deleted or moved away"),
            Change::Replaced => write!(f, "another file took its name"),
        }
    }
}

/// What one read of a spooled file found.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `n` bytes at the read position, in the buffer.
    Data(usize),
    /// The whole file is read, and it is unchanged.
    End,
    Changed(Change),
}

/// What a file looked like when it was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    pub id: (u64, u64),
    pub size: u64,
    pub mtime: SystemTime,
}

impl Picked {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Picked {
            id: tracked::identity(meta),
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    /// How the open file differs from when it was picked (size, time), if it does.
    pub fn changed(&self, meta: &std::fs::Metadata) -> Option<Change> {
        let size = meta.len();
        if size > self.size {
            Some(Change::Grew {
                from: self.size,
                to: size,
            })
        } else if size < self.size {
            Some(Change::Rewritten)
        } else if meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) != self.mtime {
            Some(Change::Touched)
        } else {
            None
        }
    }

    /// Whether `file` is unchanged and still at `path`. Blocking.
    pub fn check(&self, file: &File, path: &Path) -> std::io::Result<Option<Change>> {
        if let Some(change) = self.changed(&file.metadata()?) {
            return Ok(Some(change));
        }
        match std::fs::metadata(path) {
            Ok(m) if tracked::identity(&m) == self.id => Ok(None),
            Ok(_) => Ok(Some(Change::Replaced)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(Change::Vanished)),
            Err(e) => Err(e),
        }
    }
}

/// One read of a spooled file at `pos`: data, the end (checked unchanged and still at
/// `path`), or how it changed. Blocking.
pub fn read_chunk(
    file: &File,
    path: &Path,
    picked: &Picked,
    pos: u64,
    fp: &mut Fingerprint,
    buf: &mut [u8],
) -> std::io::Result<Chunk> {
    if let Some(change) = picked.changed(&file.metadata()?) {
        return Ok(Chunk::Changed(change));
    }
    match tracked::read_step(file, pos, fp, buf)? {
        Step::Truncated => Ok(Chunk::Changed(Change::Rewritten)),
        Step::Data { n, .. } if pos + n as u64 > picked.size => Ok(Chunk::Changed(Change::Grew {
            from: picked.size,
            to: pos + n as u64,
        })),
        Step::Data { n, .. } => Ok(Chunk::Data(n)),
        Step::Eof if pos < picked.size => Ok(Chunk::Changed(Change::Rewritten)),
        Step::Eof => Ok(match picked.check(file, path)? {
            Some(change) => Chunk::Changed(change),
            None => Chunk::End,
        }),
    }
}

/// The file being read.
pub struct Reading {
    /// The key its lines are marked with.
    pub key: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub picked: Picked,
    pub fingerprint: Fingerprint,
    pub tags: Tags,
    /// The next byte to read.
    pub pos: u64,
    /// The end of the last whole line read.
    pub line_end: u64,
    /// The offset of the last mark pushed (none: no line yet): once acknowledged, every
    /// line of the file is in the channels.
    pub last_mark: Option<u64>,
    /// The offset the channels hold (from acks; where reading began before any).
    pub acked: u64,
    /// Whether an ack came for this file.
    pub acked_any: bool,
    pub splitter: LineSplitter,
}

impl Reading {
    /// Whether every line pushed is in the channels.
    pub fn all_acked(&self) -> bool {
        match self.last_mark {
            None => true,
            Some(last) => self.acked_any && self.acked >= last,
        }
    }

    /// The mark of a line of this file that ends at `offset`.
    pub fn mark(&self, offset: u64) -> Mark {
        Mark {
            key: self.key,
            file: FileId {
                dev: self.picked.id.0,
                inode: self.picked.id.1,
                fingerprint: self.fingerprint,
            },
            offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn setup(text: &str) -> (tempfile::TempDir, PathBuf, File, Picked) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        let picked = Picked::of(&file.metadata().unwrap());
        (dir, path, file, picked)
    }

    fn read_all(file: &File, path: &Path, picked: &Picked, buf: &mut [u8]) -> (Chunk, u64) {
        let mut fp = Fingerprint::EMPTY;
        let mut pos = 0;
        loop {
            match read_chunk(file, path, picked, pos, &mut fp, buf).unwrap() {
                Chunk::Data(n) => pos += n as u64,
                other => return (other, pos),
            }
        }
    }

    #[test]
    fn an_unchanged_file_is_read_to_its_end() {
        let (_d, path, file, picked) = setup("one\ntwo\nthree");
        let mut buf = [0u8; 4];
        assert_eq!(read_all(&file, &path, &picked, &mut buf), (Chunk::End, 13));
    }

    #[test]
    fn growth_is_seen_before_and_after_a_read() {
        let (_d, path, file, picked) = setup("one\ntwo\n");
        let mut fp = Fingerprint::EMPTY;
        let mut buf = [0u8; 4];
        assert_eq!(
            read_chunk(&file, &path, &picked, 0, &mut fp, &mut buf).unwrap(),
            Chunk::Data(4)
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"more\n").unwrap();
        assert_eq!(
            read_chunk(&file, &path, &picked, 4, &mut fp, &mut buf).unwrap(),
            Chunk::Changed(Change::Grew { from: 8, to: 13 })
        );
    }

    #[test]
    fn shrinking_rewriting_deleting_and_replacing_are_seen() {
        let mut buf = [0u8; 64];
        let (_d, path, file, picked) = setup("one\ntwo\n");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4)
            .unwrap();
        assert_eq!(
            read_all(&file, &path, &picked, &mut buf).0,
            Chunk::Changed(Change::Rewritten)
        );

        // Same size, other bytes: the modification time (or the fingerprint) tells.
        let (_d, path, file, picked) = setup("one\ntwo\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(b"ONE\n")
            .unwrap();
        assert!(matches!(
            read_all(&file, &path, &picked, &mut buf).0,
            Chunk::Changed(Change::Touched | Change::Rewritten)
        ));

        let (_d, path, file, picked) = setup("one\ntwo\n");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            read_all(&file, &path, &picked, &mut buf).0,
            Chunk::Changed(Change::Vanished)
        );

        let (d, path, file, picked) = setup("one\ntwo\n");
        std::fs::rename(&path, d.path().join("elsewhere")).unwrap();
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(
            read_all(&file, &path, &picked, &mut buf).0,
            Chunk::Changed(Change::Replaced)
        );
        // Before it is renamed or deleted, the same check runs again.
        assert_eq!(picked.check(&file, &path).unwrap(), Some(Change::Replaced));
    }
}
