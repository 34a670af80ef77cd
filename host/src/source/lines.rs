//! Splitting byte streams into lines, and pumping a reader through a batcher.

use super::Batcher;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// Splits chunks of bytes into lines (`\n`, with a `\r` before it removed), cutting
/// lines longer than the limit.
pub struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
    /// The current line was already cut: discard until its end.
    skipping: bool,
}

/// One line out of the splitter.
pub enum Line {
    Whole(Vec<u8>),
    /// The line was longer than the limit; this is its first `max` bytes.
    Truncated(Vec<u8>),
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            max,
            skipping: false,
        }
    }

    /// Feeds a chunk; calls `emit` for every line it completes.
    pub fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(Line)) {
        self.feed_with_ends(chunk, |line, _| emit(line));
    }

    /// Like [`feed`](Self::feed), also telling where each line ends in `chunk`: just
    /// past its `\n` (so a reader at chunk offset `o` has read the line once it is at
    /// `o + end`), or `None` for a line cut at the limit before its end arrived (its
    /// end, when it comes, is skipped without a call).
    pub fn feed_with_ends(&mut self, chunk: &[u8], mut emit: impl FnMut(Line, Option<usize>)) {
        let mut at = 0;
        while at < chunk.len() {
            let rest = &chunk[at..];
            match memchr::memchr(b'\n', rest) {
                Some(pos) => {
                    let head = &rest[..pos];
                    at += pos + 1;
                    let end = Some(at);
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if self.partial.len() + head.len() > self.max {
                        self.partial.extend_from_slice(
                            &head[..self.max.saturating_sub(self.partial.len())],
                        );
                        emit(Line::Truncated(std::mem::take(&mut self.partial)), end);
                        continue;
                    }
                    let mut line = if self.partial.is_empty() {
                        head.to_vec()
                    } else {
                        let mut l = std::mem::take(&mut self.partial);
                        l.extend_from_slice(head);
                        l
                    };
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    emit(Line::Whole(line), end);
                }
                None => {
                    if !self.skipping {
                        let room = self.max.saturating_sub(self.partial.len());
                        if rest.len() > room {
                            self.partial.extend_from_slice(&rest[..room]);
                            emit(Line::Truncated(std::mem::take(&mut self.partial)), None);
                            self.skipping = true;
                        } else {
                            self.partial.extend_from_slice(rest);
                        }
                    }
                    at = chunk.len();
                }
            }
        }
    }

    /// Whether no line is in progress (nothing held, nothing being skipped): the input
    /// so far ended with a line end.
    pub fn at_line_start(&self) -> bool {
        self.partial.is_empty() && !self.skipping
    }

    /// The unterminated last line, at end of input.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.skipping = false;
        if self.partial.is_empty() {
            None
        } else {
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Some(line)
        }
    }
}

/// Reads `reader` to its end (or until shutdown), pushing every line into `batcher`
/// and flushing due batches while the reader is idle. The last unterminated line is
/// pushed at end of input; at shutdown it is dropped (and logged): the writer was cut
/// off mid-line, and a torn fragment is not an event.
pub async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    batcher: &mut Batcher,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut splitter = LineSplitter::new(batcher.max_line_bytes());
    let mut chunk = vec![0u8; 256 * 1024];
    let mut lines = Vec::new();
    let mut stopped = false;
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                stopped = true;
                break;
            }
            _ = batcher.due() => {
                batcher.flush().await;
                continue;
            }
            read = reader.read(&mut chunk) => read?,
        };
        if n == 0 {
            break;
        }
        splitter.feed(&chunk[..n], |line| lines.push(line));
        push_lines(&mut lines, batcher).await;
    }
    if let Some(last) = splitter.finish() {
        if stopped {
            tracing::info!(
                bytes = last.len(),
                "stopping: an unterminated partial line is not delivered"
            );
        } else {
            batcher.push(last).await;
        }
    }
    Ok(())
}

/// Pushes split lines into the batcher, recording truncations.
pub async fn push_lines(lines: &mut Vec<Line>, batcher: &mut Batcher) {
    for line in lines.drain(..) {
        match line {
            Line::Whole(l) => batcher.push(l).await,
            Line::Truncated(l) => {
                batcher.truncated();
                batcher.push(l).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (truncated, line) pairs, and what is left unterminated.
    type Split = (Vec<(bool, Vec<u8>)>, Option<Vec<u8>>);

    fn split(max: usize, chunks: &[&[u8]]) -> Split {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| {
                out.push(match l {
                    Line::Whole(l) => (false, l),
                    Line::Truncated(l) => (true, l),
                })
            });
        }
        (out, s.finish())
    }

    #[test]
    fn lines_across_chunks_and_crlf() {
        let (lines, rest) = split(100, &[b"ab", b"c\r\nde\n", b"\nf"]);
        assert_eq!(
            lines,
            vec![
                (false, b"abc".to_vec()),
                (false, b"de".to_vec()),
                (false, b"".to_vec())
            ]
        );
        assert_eq!(rest, Some(b"f".to_vec()));
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let (lines, rest) = split(4, &[b"abcdefgh", b"ij\nxy\n"]);
        assert_eq!(
            lines,
            vec![(true, b"abcd".to_vec()), (false, b"xy".to_vec())]
        );
        assert_eq!(rest, None);
        let (lines, _) = split(4, &[b"abcdefgh\nok\n"]);
        assert_eq!(
            lines,
            vec![(true, b"abcd".to_vec()), (false, b"ok".to_vec())]
        );
    }

    #[test]
    fn line_ends_are_offsets_past_the_newline() {
        let mut s = LineSplitter::new(4);
        let mut got = Vec::new();
        let mut base = 0;
        for chunk in [&b"ab\r\ncd"[..], b"e\n\nlonglong", b"er\nz\n"] {
            s.feed_with_ends(chunk, |l, end| {
                let (cut, l) = match l {
                    Line::Whole(l) => (false, l),
                    Line::Truncated(l) => (true, l),
                };
                got.push((cut, l, end.map(|e| base + e)));
            });
            base += chunk.len();
        }
        assert_eq!(
            got,
            vec![
                (false, b"ab".to_vec(), Some(4)),
                (false, b"cde".to_vec(), Some(8)),
                (false, b"".to_vec(), Some(9)),
                (true, b"long".to_vec(), None),
                (false, b"z".to_vec(), Some(22)),
            ]
        );
        assert!(s.at_line_start());
        s.feed_with_ends(b"x", |_, _| {});
        assert!(!s.at_line_start());
    }

    async fn pumped(input: &'static [u8], stop_midway: bool) -> Vec<String> {
        use crate::config::BatchSpec;
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut batcher = super::Batcher::new(
            "t",
            std::sync::Arc::from("t"),
            BatchSpec {
                size: 100,
                bytes: 1 << 20,
                timeout: std::time::Duration::from_secs(10),
            },
            1024,
            tx,
            CancellationToken::new(),
        );
        let shutdown = CancellationToken::new();
        let (mut writer, reader) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut writer, input)
            .await
            .unwrap();
        let stopper = shutdown.clone();
        let pump = tokio::spawn(async move {
            pump(reader, &mut batcher, &stopper).await.unwrap();
            batcher.flush().await;
        });
        if stop_midway {
            // The writer is cut off mid-line (it stays open) and the agent stops once
            // the pump has read what there is.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            shutdown.cancel();
        } else {
            drop(writer);
        }
        pump.await.unwrap();
        let mut lines = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            for e in batch.events {
                lines.push(String::from_utf8(e.body).unwrap());
            }
        }
        lines
    }

    #[tokio::test]
    async fn a_partial_last_line_is_kept_at_eof_and_dropped_at_shutdown() {
        assert_eq!(pumped(b"whole\npartial", false).await, ["whole", "partial"]);
        assert_eq!(
            pumped(b"whole\npartial", true).await,
            ["whole"],
            "a torn fragment is not an event"
        );
    }
}
