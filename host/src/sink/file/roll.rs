//! Rolling for the `file` sink: when the file it writes reaches a size, a number of
//! events or an age, it is closed and renamed `PATH.~<unix ms>` (a *rolled* file), then
//! gzipped to `PATH.~<unix ms>.gz` when asked, and the oldest rolled files beyond
//! `max_files` are deleted (the limits themselves: [`RollLimits`]).
//!
//! **Names no other file can have.** Retention deletes files by name, so a rolled name
//! must never be the path another event renders to (with `path = ".../{name}"`, the
//! events `billing.1` and `billing` once made `billing.1`, a live file, look like a
//! roll of `billing`). The `~` ([`MARKER`]) makes them unambiguous: a template never
//! inserts one (an event's `~` becomes `_`), the config refuses one in the text of a
//! rolling sink's path, and the only other `~` of a rendered path starts a hash tail
//! (`~h`, never a digit). So a name `P.~<digits>` is a roll of `P` and of nothing
//! else, and no rendered path is a rolled name.
//!
//! **Files rolled by earlier versions** (`PATH.<ms>`, `PATH.<ms>.gz`) are left as they
//! are: their name cannot tell them from another stream's live file, so they are not
//! counted against `max_files`, compressed or deleted; remove them by hand once read.
//!
//! Crash safety: a rename is atomic, so a crash leaves either the file being written or
//! a whole rolled file. Compression writes `NAME.gz.tmp`, syncs it and renames it to
//! `NAME.gz` before deleting `NAME`; a crash midway leaves the rolled file and a partial
//! `.tmp`, which [`Roller::recover`] (run when the sink opens its file) deletes before
//! compressing the rolled file again.

use crate::sink::rolling::RollLimits;
use crate::template::MARKER;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// When the file is rolled, and what becomes of rolled files.
#[derive(Debug, Clone, PartialEq)]
pub struct RollPolicy {
    /// At least one is set (the config checks it).
    pub limits: RollLimits,
    pub gzip: bool,
    /// Rolled files kept (the newest); `None` keeps all.
    pub max_files: Option<usize>,
}

/// Rolls the files of one path.
#[derive(Debug, Clone)]
pub struct Roller {
    path: PathBuf,
    policy: RollPolicy,
}

impl Roller {
    pub fn new(path: PathBuf, policy: RollPolicy) -> Self {
        Self { path, policy }
    }

    pub fn policy(&self) -> &RollPolicy {
        &self.policy
    }

    /// Renames the (closed) file at the path to a new rolled name, then compresses it
    /// and applies the retention limit. The rename is done when this returns Ok; a
    /// failure to compress or delete afterwards is logged and left for the next roll or
    /// start (the events are safe in the rolled file).
    pub fn roll(&self) -> std::io::Result<PathBuf> {
        let rolled = self.next_name();
        std::fs::rename(&self.path, &rolled)?;
        self.finish(&rolled);
        Ok(rolled)
    }

    /// Compresses rolled files left uncompressed (a crash between the rename and the end
    /// of compression) and deletes partial `.gz.tmp` files; applies the retention limit.
    pub fn recover(&self) {
        let partial = self.siblings().filter(|p| {
            p.to_str()
                .and_then(|p| p.strip_suffix(".gz.tmp"))
                .is_some_and(|rolled| self.stamp_of(Path::new(rolled)).is_some())
        });
        for tmp in partial {
            let _ = std::fs::remove_file(&tmp);
        }
        if self.policy.gzip {
            for rolled in self.rolled().into_iter().filter(|p| !has_suffix(p, ".gz")) {
                if let Err(e) = gzip(&rolled) {
                    tracing::warn!(file = %rolled.display(), "could not compress a rolled file: {e}");
                }
            }
        }
        self.retain();
    }

    fn finish(&self, rolled: &Path) {
        if self.policy.gzip
            && let Err(e) = gzip(rolled)
        {
            tracing::warn!(file = %rolled.display(), "could not compress a rolled file (kept as is, tried again at the next start): {e}");
        }
        self.retain();
    }

    /// `PATH.~<unix ms>`, after the newest rolled file even when the clock went back or
    /// two rolls fall in one millisecond: names sort in the order of rolling.
    fn next_name(&self) -> PathBuf {
        let ms = (crate::event::now_ns() / 1_000_000).max(0) as u64;
        let newest = self.rolled().last().and_then(|p| self.stamp_of(p));
        let mut stamp = newest.map_or(ms, |n| ms.max(n + 1));
        loop {
            let name = self.with_suffix(&format!(".{MARKER}{stamp}"));
            let gz = self.with_suffix(&format!(".{MARKER}{stamp}.gz"));
            if !name.exists() && !gz.exists() {
                return name;
            }
            stamp += 1;
        }
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// Files in the path's directory whose names start with the path's file name, a dot
    /// and the marker.
    fn siblings(&self) -> impl Iterator<Item = PathBuf> + use<> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = self
            .path
            .file_name()
            .map(|n| format!("{}.{MARKER}", n.to_string_lossy()))
            .unwrap_or_default();
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(move |p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
    }

    /// The rolled files (`PATH.~<ms>` and `PATH.~<ms>.gz`), oldest first.
    pub fn rolled(&self) -> Vec<PathBuf> {
        let mut rolled: Vec<(u64, PathBuf)> = self
            .siblings()
            .filter_map(|p| Some((self.stamp_of(&p)?, p)))
            .collect();
        rolled.sort();
        rolled.into_iter().map(|(_, p)| p).collect()
    }

    /// The `<ms>` of a rolled file's name (`PATH.~<ms>[.gz]`); `None` for any other file.
    fn stamp_of(&self, rolled: &Path) -> Option<u64> {
        let name = rolled.file_name()?.to_str()?;
        let rest = name
            .strip_prefix(self.path.file_name()?.to_str()?)?
            .strip_prefix('.')?
            .strip_prefix(MARKER)?;
        let digits = rest.strip_suffix(".gz").unwrap_or(rest);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Deletes the oldest rolled files beyond `max_files`.
    fn retain(&self) {
        let Some(keep) = self.policy.max_files else {
            return;
        };
        let rolled = self.rolled();
        let excess = rolled.len().saturating_sub(keep);
        for old in &rolled[..excess] {
            match std::fs::remove_file(old) {
                Ok(()) => {
                    tracing::info!(file = %old.display(), "deleted a rolled file (max_files)")
                }
                Err(e) => {
                    tracing::warn!(file = %old.display(), "could not delete a rolled file: {e}")
                }
            }
        }
    }
}

fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.to_string_lossy().ends_with(suffix)
}

/// `FILE` → `FILE.gz` (through `FILE.gz.tmp`, synced), then deletes `FILE`. Streams: the
/// memory it takes does not grow with the file.
fn gzip(file: &Path) -> std::io::Result<()> {
    let mut gz = file.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    let mut tmp = gz.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input = BufReader::new(File::open(file)?);
    let out = File::create(&tmp)?;
    let mut encoder =
        flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::fast());
    std::io::copy(&mut input, &mut encoder)?;
    let out = encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn rolled_files_are_gzipped_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let roller = Roller::new(
            path.clone(),
            RollPolicy {
                limits: RollLimits::new(None, Some(1), None),
                gzip: true,
                max_files: Some(2),
            },
        );
        for n in 0..4 {
            std::fs::write(&path, format!("batch {n}\n")).unwrap();
            roller.roll().unwrap();
        }
        let rolled = roller.rolled();
        assert_eq!(rolled.len(), 2);
        let texts: Vec<String> = rolled
            .iter()
            .map(|p| {
                assert!(has_suffix(p, ".gz"), "{}", p.display());
                let mut text = String::new();
                flate2::read::GzDecoder::new(File::open(p).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                text
            })
            .collect();
        assert_eq!(texts, ["batch 2\n", "batch 3\n"]);
        assert!(!path.exists(), "the path is free for the next file");
    }

    #[test]
    fn recovery_compresses_what_a_crash_left_and_removes_partial_archives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        // A crash after the rename, midway through compressing.
        std::fs::write(dir.path().join("out.log.~1700000000000"), "whole\n").unwrap();
        std::fs::write(dir.path().join("out.log.~1700000000000.gz.tmp"), "part").unwrap();
        // Not ours: another file's rolls, the file being written, a file rolled by an
        // earlier version (its name cannot tell it from another stream's file).
        std::fs::write(dir.path().join("out.log2.~1700000000000"), "other\n").unwrap();
        std::fs::write(dir.path().join("out.log.1600000000000"), "old\n").unwrap();
        std::fs::write(&path, "current\n").unwrap();
        let roller = Roller::new(
            path.clone(),
            RollPolicy {
                limits: RollLimits::new(Some(1 << 20), None, None),
                gzip: true,
                max_files: None,
            },
        );
        roller.recover();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "out.log",
                "out.log.1600000000000",
                "out.log.~1700000000000.gz",
                "out.log2.~1700000000000"
            ]
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            File::open(dir.path().join("out.log.~1700000000000.gz")).unwrap(),
        )
        .read_to_string(&mut text)
        .unwrap();
        assert_eq!(text, "whole\n");
    }

    /// With `path = ".../{name}"`: `billing.1` is the live file of the stream `billing.1`,
    /// not a roll of `billing`; retention of `billing` must never delete it.
    #[test]
    fn another_streams_file_is_never_taken_for_a_rolled_file() {
        let dir = tempfile::tempdir().unwrap();
        let policy = RollPolicy {
            limits: RollLimits::new(None, Some(1), None),
            gzip: false,
            max_files: Some(1),
        };
        let other = dir.path().join("billing.1");
        std::fs::write(&other, "live\n").unwrap();
        let billing = Roller::new(dir.path().join("billing"), policy.clone());
        for n in 0..3 {
            std::fs::write(dir.path().join("billing"), format!("{n}\n")).unwrap();
            billing.roll().unwrap();
        }
        billing.recover();
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "live\n");
        assert_eq!(billing.rolled().len(), 1);
        assert!(!billing.rolled().contains(&other));
        // Nor the other way round: a roll of `billing` is no file of `billing.1`'s.
        let billing_1 = Roller::new(other.clone(), policy);
        assert!(billing_1.rolled().is_empty());
    }
}
