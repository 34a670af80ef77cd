//! The `file` source: follows one file like `tail -F`: the one-file form of the
//! `taildir` source, run by the same engine. It starts at the end (or the start), reads
//! what is appended, and follows rotation by rename (the renamed file is read to its
//! end through its open descriptor) and copytruncate (seen by size and by the
//! fingerprint of the file's first bytes, even when the file grew back past the read
//! position). Positions are kept in memory unless `position_file` is set; then a
//! restart resumes where the channels' content ends, as with `taildir`.

use super::taildir::{TagName, TagNames, TaildirConfig};
use super::{SourceConfig, SourceContext};
use crate::config::Problems;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where reading a file starts the first time it is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Start,
    End,
}

#[derive(PartialEq, Debug, Clone, Deserialize)]
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
    /// Record the read position here (JSON), so a restart resumes where the channels'
    /// content ends; without it the position lives in memory only.
    pub position_file: Option<PathBuf>,
}

fn default_read_from() -> ReadFrom {
    ReadFrom::End
}

pub(crate) fn default_poll_interval_ms() -> u64 {
    250
}

impl FileConfig {
    /// The same source as a taildir of one path, without tags.
    fn as_taildir(&self) -> TaildirConfig {
        TaildirConfig {
            paths: BTreeMap::from([("file".to_owned(), glob::Pattern::escape(&self.path))]),
            position_file: self.position_file.clone(),
            read_from: self.read_from,
            poll_interval_ms: self.poll_interval_ms,
            glob_interval_ms: 1000,
            idle_close_ms: 2000,
            tags: TagNames {
                path: TagName::Enabled(false),
                pattern: TagName::Enabled(false),
            },
            exit_on_eof: self.exit_on_eof,
        }
    }
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
        if let Some(p) = &self.position_file
            && p.as_os_str().is_empty()
        {
            problems.at("position_file", "must not be empty");
        }
    }

    fn reads_file(&self, path: &Path) -> bool {
        super::same_file(Path::new(&self.path), path)
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        self.as_taildir().run_with(cx, self.position_file.clone())
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
