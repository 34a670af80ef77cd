//! What starts a hot reload: a plugin file that changes (watched with `notify`). SIGHUP
//! (every file plugin, after the config: `topology`) and the admin endpoint
//! (`admin.rs`) are the other ways.

use super::reload::PluginSet;
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long to wait after a change for the writes that follow it (an editor or a copy
/// writes a file in several steps) before reloading.
const SETTLE: Duration = Duration::from_millis(25);

/// Reloads plugins when their files change (with `watch_files`), until `shutdown`.
/// Reloads compile, so they run on the blocking pool, one after another.
pub async fn run(plugins: Arc<PluginSet>, watch_files: bool, shutdown: CancellationToken) {
    let (tx, mut changed) = mpsc::unbounded_channel::<PathBuf>();
    let _watcher = if watch_files {
        let watcher = watch(&plugins, tx);
        // A file replaced between the load at start and the watch: nothing will report
        // it, so look once (an unchanged file costs a read and a hash).
        let set = plugins.clone();
        let _ = tokio::task::spawn_blocking(move || set.reload_all()).await;
        watcher
    } else {
        None
    };
    loop {
        let names: BTreeSet<String> = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(path) = changed.recv() => {
                let mut paths = vec![path];
                tokio::time::sleep(SETTLE).await;
                while let Ok(p) = changed.try_recv() {
                    paths.push(p);
                }
                paths.iter().flat_map(|p| plugins.plugins_at(p)).collect()
            }
        };
        for name in names {
            let set = plugins.clone();
            // Refusals are logged and counted by `reload`.
            let _ = tokio::task::spawn_blocking(move || set.reload(&name)).await;
        }
    }
}

/// Watches the directories of the plugin files (a file replaced by a rename is a new
/// inode: watching the file itself would miss it).
fn watch(
    plugins: &PluginSet,
    tx: mpsc::UnboundedSender<PathBuf>,
) -> Option<notify::RecommendedWatcher> {
    let files = plugins.files();
    if files.is_empty() {
        return None;
    }
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any
        ) {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .map_err(|e| tracing::warn!("cannot watch plugin files: {e}; reload with SIGHUP"))
    .ok()?;
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .map(|(_, p)| {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            p.parent().map(PathBuf::from).unwrap_or_default()
        })
        .collect();
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(
                "cannot watch {} for plugin changes: {e}; reload with SIGHUP",
                dir.display()
            );
        }
    }
    Some(watcher)
}
