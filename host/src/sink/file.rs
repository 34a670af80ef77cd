//! The `file` sink's writer: appends to a file, creating it (and its directory). Writes
//! run on tokio's blocking pool with the encoded batch moved there and back, so the
//! batch is not copied. A write that fails part-way is cut back to where it started, and
//! the file is reopened for the retry.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

pub struct FileWriter {
    path: PathBuf,
    file: Option<File>,
}

impl FileWriter {
    pub fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// Appends `buf` (left as it was on return).
    pub async fn write(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let file = self.file.take();
        let path = self.path.clone();
        let bytes = std::mem::take(buf);
        let (file, bytes, result) = tokio::task::spawn_blocking(move || {
            let result = (|| {
                let mut file = match file {
                    Some(f) => f,
                    None => open(&path)?,
                };
                let before = file.metadata()?.len();
                if let Err(e) = file.write_all(&bytes) {
                    // Leave no torn line behind: the retry writes the whole batch again.
                    let _ = file.set_len(before);
                    return Err(e);
                }
                Ok(file)
            })();
            match result {
                Ok(file) => (Some(file), bytes, Ok(())),
                Err(e) => (None, bytes, Err(e)),
            }
        })
        .await
        .map_err(std::io::Error::other)?;
        *buf = bytes;
        self.file = file;
        result.map_err(|e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
        })
    }
}

fn open(path: &std::path::Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}
