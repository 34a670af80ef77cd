//! One followed file: its open descriptor, identity (device, inode and a fingerprint
//! of its first bytes), read position and partial line, and the checks made before
//! every read.

use crate::event::Tags;
use crate::source::lines::LineSplitter;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;

/// How many of a file's first bytes identify it (with its device and inode).
pub const FINGERPRINT_BYTES: usize = 256;

pub use crate::source::checkpoint::Fingerprint;
use crate::source::checkpoint::{FileId, Mark};

impl Fingerprint {
    /// Whether `file` (of `size` bytes) still starts with the fingerprinted bytes; if
    /// it does and has grown, the fingerprint is extended to cover more of it.
    pub fn verify(&mut self, file: &File, size: u64) -> std::io::Result<bool> {
        let have = size.min(FINGERPRINT_BYTES as u64) as usize;
        let len = self.len as usize;
        if have < len {
            return Ok(false);
        }
        if have == 0 {
            return Ok(true);
        }
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_full_at(file, &mut buf[..have], 0)?;
        if n < len {
            return Ok(false); // shrunk since `size` was taken
        }
        if crc32fast::hash(&buf[..len]) != self.crc32 {
            return Ok(false);
        }
        if n > len {
            *self = Fingerprint::of(&buf[..n]);
        }
        Ok(true)
    }
}

/// Reads at `offset` until `buf` is full or the end of the file; returns the count.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What one read attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// `n` new bytes at the read position, in the buffer; `at_end` when they reached
    /// the end of the file (as it was when its size was taken); `size` is that size.
    Data { n: usize, at_end: bool, size: u64 },
    /// Nothing new.
    Eof,
    /// The file is shorter than the read position, or its first bytes changed: it was
    /// truncated (and maybe written again past the old position).
    Truncated,
}

/// One read of a file at `pos`, checked before and after: a file whose size fell
/// below `pos` or whose fingerprint no longer matches is truncated (the bytes read
/// then are not used: they may be new content at an old offset). Blocking.
pub fn read_step(
    file: &File,
    pos: u64,
    fp: &mut Fingerprint,
    buf: &mut [u8],
) -> std::io::Result<Step> {
    let size = file.metadata()?.len();
    if size < pos || !fp.verify(file, size)? {
        return Ok(Step::Truncated);
    }
    if size == pos {
        return Ok(Step::Eof);
    }
    let want = buf.len().min((size - pos) as usize);
    let n = read_full_at(file, &mut buf[..want], pos)?;
    if n == 0 {
        // Shrunk between the size and the read: the next check will say how.
        return Ok(Step::Eof);
    }
    let after = file.metadata()?.len();
    if after < pos + n as u64 || !fp.verify(file, after)? {
        return Ok(Step::Truncated);
    }
    Ok(Step::Data {
        n,
        at_end: pos + n as u64 >= size,
        size,
    })
}

/// Where reading a newly tracked file starts, from its saved position if it has one
/// that matches: same fingerprint, and not longer than the file. `None` when the
/// saved entry is for another file (the inode was reused) or the file was truncated.
pub fn resume_at(
    file: &File,
    saved_fp: Fingerprint,
    offset: u64,
) -> std::io::Result<Option<(u64, Fingerprint)>> {
    let size = file.metadata()?.len();
    let mut fp = saved_fp;
    if size < offset || !fp.verify(file, size)? {
        return Ok(None);
    }
    Ok(Some((offset, fp)))
}

/// A file being followed.
pub struct Tracked {
    /// The key its lines are marked with; a new one after each truncation, so acks of
    /// the old content are not taken for positions in the new.
    pub key: u64,
    pub file: Arc<File>,
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
    /// The path it was last found at, and the pattern that found it.
    pub path: PathBuf,
    pub pattern: Arc<str>,
    pub tags: Tags,
    /// The next byte to read.
    pub pos: u64,
    /// The end of the last whole line read (`pos` minus the partial line).
    pub line_end: u64,
    pub splitter: LineSplitter,
    /// The position the channels hold (from acks): what the position file records.
    pub acked: u64,
    /// When the patterns stopped matching it (renamed away or deleted).
    pub gone_since: Option<Instant>,
    /// When it last had new data.
    pub last_data: Instant,
    /// The read error last reported for it (reported once until it changes).
    pub failing: Option<String>,
    /// Read to its current end in the last turn.
    pub at_eof: bool,
    /// The last read reached the end of the file: a partial line held is the file's
    /// real unterminated last line, not the first part of a line not read yet.
    pub read_to_end: bool,
    /// The bytes the fingerprint covers (to tell a copy still being made).
    pub head: Vec<u8>,
    /// The last bytes read before `pos` (up to [`super::copies::TAIL_BYTES`]).
    pub tail: Vec<u8>,
    /// The largest size seen (what a truncation cut away unread is counted from).
    pub seen_size: u64,
}

impl Tracked {
    /// The mark of a line of this file that ends at `offset`.
    pub fn mark(&self, offset: u64) -> Mark {
        Mark {
            key: self.key,
            file: FileId {
                dev: self.dev,
                inode: self.inode,
                fingerprint: self.fingerprint,
            },
            offset,
        }
    }

    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.inode)
    }
}

/// The identity of an open file.
pub fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &std::path::Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn fingerprints_grow_with_the_file_and_catch_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, b"");
        let file = File::open(&path).unwrap();
        let mut fp = Fingerprint::EMPTY;
        assert!(fp.verify(&file, 0).unwrap());
        append(&path, b"hello\n");
        assert!(fp.verify(&file, 6).unwrap());
        assert_eq!(fp, Fingerprint::of(b"hello\n"));
        append(&path, &[b'x'; 1000]);
        assert!(fp.verify(&file, 1006).unwrap());
        assert_eq!(fp.len as usize, FINGERPRINT_BYTES);
        let full = fp;
        assert!(fp.verify(&file, 1006).unwrap());
        assert_eq!(fp, full);
        // Same length, other first bytes.
        std::fs::write(&path, [b'y'; 1006]).unwrap();
        assert!(!fp.verify(&file, 1006).unwrap());
    }

    #[test]
    fn a_saved_position_is_resumed_only_for_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, b"one\ntwo\n");
        let file = File::open(&path).unwrap();
        let fp = Fingerprint::of(b"one\ntwo\n");
        assert_eq!(resume_at(&file, fp, 4).unwrap(), Some((4, fp)));
        // A saved fingerprint of fewer bytes is extended.
        let short = Fingerprint::of(b"one\n");
        assert_eq!(resume_at(&file, short, 4).unwrap(), Some((4, fp)));
        // Another file with the same inode (deleted and reused): other first bytes.
        let other = Fingerprint::of(b"xyz\n");
        assert_eq!(resume_at(&file, other, 4).unwrap(), None);
        // The file is shorter than the saved position: truncated while stopped.
        assert_eq!(resume_at(&file, fp, 100).unwrap(), None);

        // Inode reuse for real: delete, create; if the inode came back, it is told apart.
        let meta = std::fs::metadata(&path).unwrap();
        drop(file);
        std::fs::remove_file(&path).unwrap();
        append(&path, b"new content\n");
        let file = File::open(&path).unwrap();
        if identity(&file.metadata().unwrap()) == identity(&meta) {
            assert_eq!(resume_at(&file, fp, 4).unwrap(), None);
        }
    }

    #[test]
    fn truncation_is_seen_even_when_the_file_grew_past_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let old: String = (0..100).map(|i| format!("old line {i}\n")).collect();
        append(&path, old.as_bytes());
        let file = File::open(&path).unwrap();
        let mut fp = Fingerprint::EMPTY;
        let mut buf = vec![0u8; 512];
        let Step::Data { n, at_end, .. } = read_step(&file, 0, &mut fp, &mut buf).unwrap() else {
            panic!()
        };
        assert_eq!((n, at_end), (512, false));
        let pos = n as u64;
        // copytruncate, then the application writes more than before.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let new: String = (0..300).map(|i| format!("new line {i}\n")).collect();
        append(&path, new.as_bytes());
        assert!(std::fs::metadata(&path).unwrap().len() > pos);
        assert_eq!(
            read_step(&file, pos, &mut fp, &mut buf).unwrap(),
            Step::Truncated
        );

        // Truncated below the position: seen by size alone.
        let mut fp = Fingerprint::EMPTY;
        assert!(matches!(
            read_step(&file, 0, &mut fp, &mut buf).unwrap(),
            Step::Data { .. }
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        assert_eq!(
            read_step(&file, 512, &mut fp, &mut buf).unwrap(),
            Step::Truncated
        );
    }

    #[test]
    fn reads_stop_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, b"abc\n");
        let file = File::open(&path).unwrap();
        let mut fp = Fingerprint::EMPTY;
        let mut buf = vec![0u8; 64];
        assert_eq!(
            read_step(&file, 0, &mut fp, &mut buf).unwrap(),
            Step::Data {
                n: 4,
                at_end: true,
                size: 4
            }
        );
        assert_eq!(read_step(&file, 4, &mut fp, &mut buf).unwrap(), Step::Eof);
        append(&path, b"de");
        assert_eq!(
            read_step(&file, 4, &mut fp, &mut buf).unwrap(),
            Step::Data {
                n: 2,
                at_end: true,
                size: 6
            }
        );
        assert_eq!(&buf[..2], b"de");
    }
}
