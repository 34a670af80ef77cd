//! copytruncate: telling the copy of a followed file from a new file.
//!
//! logrotate's `copytruncate` copies `app.log` to `app.log.1` (a new inode with the same
//! first bytes, so the same fingerprint) and then truncates `app.log` to 0. The bytes of
//! `app.log` not read yet at the truncation are now only in the copy. When the reader
//! sees a followed file truncated it keeps a [`Remnant`]: the old content's fingerprint,
//! how far it was read, the last bytes read and the partial line. A new file that starts
//! with the same bytes and holds the same bytes just before that position is the copy:
//! it is read from there, with the partial line, so nothing is read twice and, when the
//! pattern matches the copy, nothing is lost. A new file that may be a copy still being
//! made of a file not truncated yet waits ([`may_be_copy`]) until the truncation comes,
//! or until it stops growing.

use super::tracked::{FINGERPRINT_BYTES, Fingerprint, read_full_at};
use crate::event::Tags;
use crate::source::checkpoint::Mark;
use crate::source::lines::LineSplitter;
use std::fs::File;
use std::path::PathBuf;
use tokio::time::Instant;

/// How many of the last bytes read before the position a copy must hold too.
pub const TAIL_BYTES: usize = 64;

/// What was left of reading a file when it was found truncated: where its copy, if one
/// appears, continues.
pub struct Remnant {
    /// The old content's fingerprint (never empty: a file with nothing read has no
    /// remnant).
    pub fingerprint: Fingerprint,
    /// Bytes of the old content read.
    pub pos: u64,
    /// The end of the last whole line read.
    pub line_end: u64,
    /// Up to [`TAIL_BYTES`] bytes read just before `pos` (empty when not known: a
    /// position saved before a restart).
    pub tail: Vec<u8>,
    /// Holds the partial line read last.
    pub splitter: LineSplitter,
    /// The last read reached the end of the file: the partial line was its last line.
    pub read_to_end: bool,
    /// The largest size seen of the old content (at least `pos`).
    pub seen_size: u64,
    /// The position the channels hold (acks of the old content keep coming).
    pub acked: u64,
    /// The old content's mark (its key is what the copy's lines are marked with).
    pub mark: Mark,
    pub path: PathBuf,
    pub tags: Tags,
    /// When it is given up if no copy is found.
    pub until: Instant,
}

impl Remnant {
    /// Bytes of the old content known to be lost when no copy holds them: the part of
    /// the file seen but not read, and the partial line unless it is delivered.
    pub fn unread(&self, partial_delivered: bool) -> u64 {
        let from = if partial_delivered {
            self.pos
        } else {
            self.line_end
        };
        self.seen_size.saturating_sub(from)
    }
}

/// Whether a new file (its first `head` bytes, `size` long) is a copy of the content a
/// remnant was read from: the same first bytes, and, when it reaches the position, the
/// same bytes just before it. `Some(pos)`: read it from there. `Some(size)`: a copy
/// that ends before the position (the original grew after the copy was made, and that
/// was read): nothing of it is new. Blocking.
pub fn copy_of(
    file: &File,
    size: u64,
    head: &[u8],
    remnant: &Remnant,
) -> std::io::Result<Option<u64>> {
    let fp = remnant.fingerprint;
    let len = fp.len as usize;
    if len == 0 || head.len() < len || Fingerprint::of(&head[..len]) != fp {
        return Ok(None);
    }
    if size < remnant.pos {
        return Ok(Some(size));
    }
    let tail = &remnant.tail;
    if !tail.is_empty() {
        let mut buf = [0u8; TAIL_BYTES];
        let n = read_full_at(
            file,
            &mut buf[..tail.len()],
            remnant.pos - tail.len() as u64,
        )?;
        if buf[..n] != tail[..] {
            return Ok(None);
        }
    }
    Ok(Some(remnant.pos))
}

/// Whether a new file (its first `head` bytes) may be a copy, still being made or not
/// yet followed by the truncation, of a followed file whose first bytes are `live`:
/// one of the two is a prefix of the other. An empty file may be the start of any copy.
pub fn may_be_copy(head: &[u8], live: &[u8]) -> bool {
    !live.is_empty() && {
        let n = head.len().min(live.len());
        head[..n] == live[..n]
    }
}

/// The first bytes of a file (up to [`FINGERPRINT_BYTES`]). Blocking.
pub fn read_head(file: &File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; FINGERPRINT_BYTES];
    let n = read_full_at(file, &mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

/// The first bytes of `file` if they are still the ones `fp` covers. Blocking.
pub fn head_matching(file: &File, fp: Fingerprint) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = read_head(file)?;
    if head.len() < fp.len as usize {
        return Ok(None);
    }
    head.truncate(fp.len as usize);
    Ok((Fingerprint::of(&head) == fp).then_some(head))
}

/// Keeps the last [`TAIL_BYTES`] of what was read, `bytes` being the newest.
pub fn push_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() >= TAIL_BYTES {
        tail.clear();
        tail.extend_from_slice(&bytes[bytes.len() - TAIL_BYTES..]);
        return;
    }
    let keep = TAIL_BYTES - bytes.len();
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    tail.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::checkpoint::FileId;

    fn remnant(content: &[u8], pos: usize) -> Remnant {
        let mut tail = Vec::new();
        push_tail(&mut tail, &content[..pos]);
        Remnant {
            fingerprint: Fingerprint::of(&content[..content.len().min(FINGERPRINT_BYTES)]),
            pos: pos as u64,
            line_end: pos as u64,
            tail,
            splitter: LineSplitter::new(1024),
            read_to_end: false,
            seen_size: content.len() as u64,
            acked: 0,
            mark: Mark {
                key: 0,
                file: FileId {
                    dev: 0,
                    inode: 0,
                    fingerprint: Fingerprint::EMPTY,
                },
                offset: 0,
            },
            path: PathBuf::new(),
            tags: Tags::default(),
            until: Instant::now(),
        }
    }

    fn check(path: &std::path::Path, bytes: &[u8], r: &Remnant) -> Option<u64> {
        std::fs::write(path, bytes).unwrap();
        let file = File::open(path).unwrap();
        let head = read_head(&file).unwrap();
        copy_of(&file, bytes.len() as u64, &head, r).unwrap()
    }

    #[test]
    fn a_copy_continues_where_the_original_was_read_to() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("app.log.1");
        let old: Vec<u8> = (0..100)
            .flat_map(|i| format!("old line {i}\n").into_bytes())
            .collect();
        let r = remnant(&old, 600);
        // The whole copy, or one with more than was seen (written before the copy).
        assert_eq!(check(&copy, &old, &r), Some(600));
        let mut longer = old.clone();
        longer.extend_from_slice(b"more\n");
        assert_eq!(check(&copy, &longer, &r), Some(600));
        // Shorter than the position: already read through the original.
        assert_eq!(check(&copy, &old[..500], &r), Some(500));
        // Same first bytes, other bytes before the position: not the copy.
        let mut other = old.clone();
        other[590] = b'#';
        assert_eq!(check(&copy, &other, &r), None);
        // Other first bytes.
        assert_eq!(check(&copy, b"new file\n", &r), None);
    }

    #[test]
    fn short_files_are_told_by_all_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("app.log.1");
        // A file of 11 bytes read to a line end: its fingerprint covers all of it.
        let r = remnant(b"one\ntwo\nthr", 8);
        assert_eq!(check(&copy, b"one\ntwo\nthr", &r), Some(8));
        // The copy was made after the line was finished.
        assert_eq!(check(&copy, b"one\ntwo\nthree\n", &r), Some(8));
        // Other bytes among the fingerprinted ones.
        assert_eq!(check(&copy, b"one\ntwo\nthx", &r), None);
        // Shorter than the fingerprint: not known to be the copy.
        assert_eq!(check(&copy, b"one\ntwo\n", &r), None);
    }

    #[test]
    fn a_copy_in_the_making_starts_like_the_original() {
        assert!(may_be_copy(b"", b"abc"));
        assert!(may_be_copy(b"ab", b"abc"));
        assert!(may_be_copy(b"abcdef", b"abc"));
        assert!(!may_be_copy(b"abd", b"abc"));
        assert!(!may_be_copy(b"x", b"abc"));
        assert!(!may_be_copy(b"abc", b""));
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut tail = Vec::new();
        push_tail(&mut tail, b"abc");
        push_tail(&mut tail, b"def");
        assert_eq!(tail, b"abcdef");
        let long: Vec<u8> = (0..200u8).collect();
        push_tail(&mut tail, &long);
        assert_eq!(tail, &long[200 - TAIL_BYTES..]);
        push_tail(&mut tail, b"z");
        assert_eq!(tail.len(), TAIL_BYTES);
        assert_eq!(tail.last(), Some(&b'z'));
        assert_eq!(tail[0], long[200 - TAIL_BYTES + 1]);
    }
}
