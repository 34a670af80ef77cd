//! The `file` sink's writer: appends to a file, creating it (and its directory). After a
//! failed write the file is reopened for the retry.

use std::path::PathBuf;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

pub struct FileWriter {
    path: PathBuf,
    file: Option<File>,
}

impl FileWriter {
    pub fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    async fn open(&self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(self.open().await?),
        };
        let result = async {
            file.write_all(bytes).await?;
            file.flush().await
        }
        .await;
        if result.is_err() {
            self.file = None;
        }
        result.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}
