//! The `file` source: follows one file like `tail -F`. It starts at the end (or the
//! start), reads what is appended, and notices rotation (the path now names another
//! file) and truncation. After a rotation the old file is still read until it has been
//! quiet for a grace period, so lines the application writes before it reopens its log
//! are not lost. Change notifications (inotify, via `notify`) wake it at once; a poll
//! interval covers filesystems without them.

use super::lines::{LineSplitter, push_lines};
use super::{Batcher, SourceConfig, SourceContext};
use crate::config::Problems;
use futures_util::future::BoxFuture;
use notify::{RecursiveMode, Watcher};
use serde::Deserialize;
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a rotated-away file is still read after its last new data.
const ROTATED_GRACE: Duration = Duration::from_secs(2);

/// Where reading a file starts the first time it is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Start,
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: String,
    #[serde(default = "default_read_from")]
    pub read_from: ReadFrom,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Stop at the end of the file instead of following it (Fluent Bit's
    /// `Exit_On_Eof`): for replaying a file, and for benchmarks.
    #[serde(default)]
    pub exit_on_eof: bool,
}

fn default_read_from() -> ReadFrom {
    ReadFrom::End
}

pub(crate) fn default_poll_interval_ms() -> u64 {
    250
}

impl SourceConfig for FileConfig {
    fn validate(&self, problems: &mut Problems) {
        super::check_path(problems, "path", &self.path);
        if !self.path.trim().is_empty()
            && let Err(e) = check_readable_file(Path::new(&self.path))
        {
            problems.at("path", e);
        }
        problems.range("poll_interval_ms", self.poll_interval_ms, 10, 3_600_000);
    }

    fn reads_file(&self, path: &Path) -> bool {
        super::same_file(Path::new(&self.path), path)
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let SourceContext {
                name,
                mut batcher,
                shutdown,
                ..
            } = cx;
            let follow = Follow {
                read_from: config.read_from,
                poll_interval: Duration::from_millis(config.poll_interval_ms),
                exit_on_eof: config.exit_on_eof,
            };
            run(&name, Path::new(&config.path), follow, &mut batcher, &shutdown).await;
            batcher.flush().await;
        })
    }
}

/// A path a file source can follow: a regular file, or nothing yet (it is waited for).
/// Directories, FIFOs, sockets and devices are refused.
pub(crate) fn check_readable_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) if meta.is_dir() => Err(format!(
            "{} is a directory; a file source follows one file (use a `taildir` source with a pattern for a directory)",
            path.display()
        )),
        Ok(_) => Err(format!(
            "{} is not a regular file (a FIFO, socket or device cannot be followed)",
            path.display()
        )),
        Err(_) => Ok(()),
    }
}

/// How a file is followed.
struct Follow {
    pub read_from: ReadFrom,
    pub poll_interval: Duration,
    pub exit_on_eof: bool,
}

/// An open file being read, with its own partial line.
struct Followed {
    file: File,
    inode: u64,
    pos: u64,
    splitter: LineSplitter,
}

impl Followed {
    async fn open(path: &Path, from: ReadFrom, max_line_bytes: usize) -> std::io::Result<Self> {
        let mut file = File::open(path).await?;
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let inode = meta.ino();
        let pos = match from {
            ReadFrom::Start => 0,
            ReadFrom::End => file.seek(SeekFrom::End(0)).await?,
        };
        Ok(Self {
            file,
            inode,
            pos,
            splitter: LineSplitter::new(max_line_bytes),
        })
    }

    /// Reads to the current end; returns whether there was new data.
    async fn read_available(
        &mut self,
        chunk: &mut [u8],
        batcher: &mut Batcher,
    ) -> std::io::Result<bool> {
        let mut lines = Vec::new();
        let mut any = false;
        loop {
            let n = self.file.read(chunk).await?;
            if n == 0 {
                return Ok(any);
            }
            any = true;
            self.pos += n as u64;
            self.splitter.feed(&chunk[..n], |l| lines.push(l));
            push_lines(&mut lines, batcher).await;
        }
    }

    /// Pushes the unterminated last line, if any: the file will not be read further.
    async fn finish(mut self, batcher: &mut Batcher) {
        if let Some(last) = self.splitter.finish() {
            batcher.push(last).await;
        }
    }
}

async fn run(
    source: &str,
    path: &Path,
    follow: Follow,
    batcher: &mut Batcher,
    shutdown: &CancellationToken,
) {
    let Follow {
        read_from,
        poll_interval,
        exit_on_eof,
    } = follow;
    let max_line = batcher.max_line_bytes();
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let _watcher = watch(path, wake_tx).map_err(|e| {
        tracing::debug!(
            source,
            "no change notifications for {}: {e}; polling",
            path.display()
        );
    });
    let mut chunk = vec![0u8; 256 * 1024];
    let mut current: Option<Followed> = None;
    // A rotated-away file still being read, and when it last had new data.
    let mut rotated: Option<(Followed, Instant)> = None;
    let mut first_open = true;
    let mut reported_missing = false;

    while !shutdown.is_cancelled() {
        if current.is_none() {
            let from = if first_open {
                read_from
            } else {
                ReadFrom::Start
            };
            match Followed::open(path, from, max_line).await {
                Ok(f) => {
                    current = Some(f);
                    reported_missing = false;
                }
                Err(e) if !reported_missing => {
                    let message = format!("cannot open {}: {e}; waiting for it", path.display());
                    batcher.error(&message, Some(poll_interval));
                    reported_missing = true;
                }
                Err(_) => {}
            }
            first_open = false;
        }
        if let Some((old, last_data)) = rotated.as_mut() {
            match old.read_available(&mut chunk, batcher).await {
                Ok(true) => *last_data = Instant::now(),
                Ok(false) if last_data.elapsed() < ROTATED_GRACE => {}
                result => {
                    if let Err(e) = result {
                        batcher.error(
                            &format!("reading the rotated {}: {e}", path.display()),
                            None,
                        );
                    }
                    if let Some((old, _)) = rotated.take() {
                        old.finish(batcher).await;
                    }
                }
            }
        }
        if let Some(f) = current.as_mut()
            && let Err(e) = f.read_available(&mut chunk, batcher).await
        {
            batcher.error(
                &format!("reading {}: {e}", path.display()),
                Some(poll_interval),
            );
            current = None;
            // Wait before reopening: a path that cannot be read must not spin.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll_interval) => {}
            }
            continue;
        }
        if shutdown.is_cancelled() {
            break;
        }
        // At the end: has the file been rotated or truncated?
        if let Some(f) = &current {
            match tokio::fs::metadata(path).await {
                Ok(meta) if meta.ino() != f.inode => {
                    tracing::info!(
                        source,
                        "{} was rotated; following the new file",
                        path.display()
                    );
                    if let Some((older, _)) = rotated.take() {
                        older.finish(batcher).await;
                    }
                    rotated = current.take().map(|f| (f, Instant::now()));
                    continue;
                }
                Ok(meta) if meta.len() < f.pos => {
                    tracing::info!(
                        source,
                        "{} was truncated; reading from its start",
                        path.display()
                    );
                    if let Some(f) = current.take() {
                        f.finish(batcher).await;
                    }
                    continue;
                }
                _ => {}
            }
            if exit_on_eof {
                break;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = batcher.due() => batcher.flush().await,
            _ = wake_rx.recv() => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
    }
    for f in [rotated.map(|(f, _)| f), current].into_iter().flatten() {
        f.finish(batcher).await;
    }
}

/// Watches the file's directory (so re-creation is seen too); any change wakes the
/// reader. Extra wake-ups are coalesced.
fn watch(path: &Path, wake: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = wake.try_send(());
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
