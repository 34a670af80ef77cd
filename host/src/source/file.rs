//! The `file` source: follows one file like `tail -F`. It starts at the end (or the
//! start), reads what is appended, and notices rotation (the path now names another
//! file) and truncation, reopening from the start. Change notifications (inotify, via
//! `notify`) wake it at once; a poll interval covers filesystems without them.

use super::Batcher;
use super::lines::{LineSplitter, push_lines};
use crate::config::ReadFrom;
use notify::{RecursiveMode, Watcher};
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Followed {
    file: File,
    inode: u64,
    pos: u64,
}

/// How a file is followed.
pub struct Follow {
    pub read_from: ReadFrom,
    pub poll_interval: Duration,
    pub exit_on_eof: bool,
}

pub async fn run(
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
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let _watcher = watch(path, wake_tx).map_err(|e| {
        tracing::debug!(
            source,
            "no change notifications for {}: {e}; polling",
            path.display()
        );
    });
    let mut splitter = LineSplitter::new(batcher.max_line_bytes());
    let mut lines = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut followed: Option<Followed> = None;
    let mut first_open = true;
    let mut reported_missing = false;

    while !shutdown.is_cancelled() {
        if followed.is_none() {
            match open(
                path,
                if first_open {
                    read_from
                } else {
                    ReadFrom::Start
                },
            )
            .await
            {
                Ok(f) => {
                    followed = Some(f);
                    first_open = false;
                    reported_missing = false;
                }
                Err(e) => {
                    if !reported_missing {
                        batcher.error(
                            &format!("cannot open {}: {e}; waiting for it", path.display()),
                            Some(poll_interval),
                        );
                        reported_missing = true;
                    }
                    first_open = false;
                }
            }
        }
        // Read everything there is.
        if let Some(f) = followed.as_mut() {
            loop {
                match f.file.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => {
                        f.pos += n as u64;
                        splitter.feed(&chunk[..n], |l| lines.push(l));
                        push_lines(&mut lines, batcher).await;
                    }
                    Err(e) => {
                        batcher.error(&format!("reading {}: {e}", path.display()), None);
                        followed = None;
                        break;
                    }
                }
                if shutdown.is_cancelled() {
                    return;
                }
            }
        }
        // At the end: has the file been rotated or truncated?
        if let Some(f) = &followed {
            match tokio::fs::metadata(path).await {
                Ok(meta) if meta.ino() != f.inode => {
                    tracing::info!(
                        source,
                        "{} was rotated; following the new file",
                        path.display()
                    );
                    if let Some(last) = splitter.finish() {
                        batcher.push(last).await;
                    }
                    followed = None;
                    continue;
                }
                Ok(meta) if meta.len() < f.pos => {
                    tracing::info!(
                        source,
                        "{} was truncated; reading from its start",
                        path.display()
                    );
                    splitter.finish();
                    followed = None;
                    continue;
                }
                _ => {}
            }
            if exit_on_eof {
                if let Some(last) = splitter.finish() {
                    batcher.push(last).await;
                }
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = batcher.due() => batcher.flush().await,
            _ = wake_rx.recv() => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
    }
}

async fn open(path: &Path, from: ReadFrom) -> std::io::Result<Followed> {
    let mut file = File::open(path).await?;
    let inode = file.metadata().await?.ino();
    let pos = match from {
        ReadFrom::Start => 0,
        ReadFrom::End => file.seek(SeekFrom::End(0)).await?,
    };
    Ok(Followed { file, inode, pos })
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
