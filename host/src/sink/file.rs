//! The `file` sink: appends events as lines to a file, creating it (and its directory).
//! Writes run on tokio's blocking pool. A write that fails part-way is cut back to where
//! it started. Before each write the path is checked: when the file was deleted or
//! replaced (rotated away), it is reopened by path, so events never go into a deleted
//! inode where no one can read them.

use super::{Payload, SendError, SinkConfig, SinkService};
use crate::config::Problems;
use crate::encoding::Format;
use crate::event::Event;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: String,
    #[serde(default = "default_format")]
    pub format: Format,
}

fn default_format() -> Format {
    Format::Json
}

impl SinkConfig for FileSinkConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.path.trim().is_empty() {
            problems.at("path", "must not be empty");
        } else if Path::new(&self.path).is_dir() {
            problems.at("path", format!("{} is a directory", self.path));
        }
    }

    fn writes_file(&self) -> Option<PathBuf> {
        Some(PathBuf::from(&self.path))
    }

    fn build(&self, _name: &str) -> anyhow::Result<Arc<dyn SinkService>> {
        Ok(Arc::new(FileService {
            format: self.format,
            path: PathBuf::from(&self.path),
            file: Arc::new(Mutex::new(None)),
        }))
    }
}

struct FileService {
    format: Format,
    path: PathBuf,
    /// The open file, taken by the blocking write and put back after it.
    file: Arc<Mutex<Option<File>>>,
}

impl SinkService for FileService {
    fn encode(&self, events: &[Event], out: &mut Vec<u8>) {
        for event in events {
            self.format.encode(event, out);
        }
    }

    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move {
            let path = self.path.clone();
            let slot = self.file.clone();
            let written = tokio::task::spawn_blocking(move || {
                let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
                let result = append(&path, guard.take(), &payload.bytes);
                match result {
                    Ok(file) => {
                        *guard = Some(file);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| SendError::retry(format!("the write task failed: {e}")))?;
            written.map_err(|e| SendError::retry(format!("{}: {e}", self.path.display())))
        })
    }
}

/// Appends `bytes` to the file at `path`, reusing `open` when it is still the file the
/// path names. Leaves no torn batch behind on failure.
fn append(path: &Path, open: Option<File>, bytes: &[u8]) -> std::io::Result<File> {
    let mut file = match open {
        Some(f) if still_at_path(&f, path) => f,
        _ => open_append(path)?,
    };
    let before = file.metadata()?.len();
    if let Err(e) = file.write_all(bytes) {
        // The retry writes the whole batch again.
        let _ = file.set_len(before);
        return Err(e);
    }
    Ok(file)
}

/// Whether `path` still names the open file (not deleted, not replaced).
fn still_at_path(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_file_is_reopened_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let file = append(&path, None, b"one\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        let file = append(&path, Some(file), b"two\n").unwrap();
        std::fs::rename(&path, dir.path().join("out.log.1")).unwrap();
        append(&path, Some(file), b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.log.1")).unwrap(),
            "two\n"
        );
    }
}
