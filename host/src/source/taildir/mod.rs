//! The `taildir` source (Flume's Taildir): follows every file matching a set of glob
//! patterns, picks up new ones while running, and records how far each has been read
//! in a position file, so a restart resumes where the channels' content ends.
//!
//! - **Identity**: a file is its (device, inode) plus a CRC32 of its first bytes
//!   ([`tracked::Fingerprint`]), so a file renamed by rotation is followed under its new
//!   name and an inode reused after a delete is a new file.
//! - **Discovery**: patterns are re-expanded every `glob_interval_ms`, and at once when
//!   a pattern's directory changes (inotify via `notify` on each pattern's directory).
//!   Files found at the first start begin at `read_from`; files that appear later begin
//!   at 0.
//! - **Reading**: in chunks, at most [`TURN_BUDGET`] bytes from one file before the
//!   next has its turn. Before (and after) each read, the file's size is compared to the
//!   read position and its fingerprint re-checked: a copytruncate is seen even when the
//!   file grew past the old position again. The old content's unterminated last line is
//!   then delivered on its own and the file is read from 0.
//! - **Going away**: a file no longer matched (renamed to a name no pattern matches, or
//!   deleted) is read to its end through its open descriptor, then closed after
//!   `idle_close_ms` without new data, and its position forgotten.
//! - **Positions**: each line is marked with where it ends; the batcher acknowledges
//!   batches once they are in their channels, and only then is the position file
//!   rewritten (atomically, at most once per wake-up), so it never runs ahead of them.

mod copies;
pub(crate) mod positions;
pub(crate) mod tracked;

use super::file::ReadFrom;
use super::lines::{Line, LineSplitter};
use super::{Acked, Batcher, Recovered, SourceConfig, SourceContext};
use crate::config::Problems;
use crate::event::Tags;
use copies::Remnant;
use futures_util::future::BoxFuture;
use notify::{RecursiveMode, Watcher};
use positions::Entry;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracked::{Fingerprint, Step, Tracked};

/// Bytes read from a file at a time.
const CHUNK: usize = 256 * 1024;
/// Bytes read from one file before the others have their turn.
const TURN_BUDGET: usize = 1024 * 1024;
/// How long a stopping source waits for its last batches to be acknowledged.
const ACK_WAIT: Duration = Duration::from_secs(5);

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaildirConfig {
    /// Pattern name → glob (`{ app = "/var/log/app/*.log" }`); at least one. Only the
    /// file name may hold glob characters (the directory is watched). The name is
    /// what the `pattern` tag carries.
    pub paths: BTreeMap<String, String>,
    /// Where positions are recorded (JSON); default
    /// `<agent data_dir>/taildir/<source name>.positions.json`.
    #[serde(default)]
    pub position_file: Option<PathBuf>,
    /// Where a file found at the first start (no position file yet) begins: `"start"`
    /// (default) or `"end"`. Files that appear later always begin at their start.
    #[serde(default = "default_read_from")]
    pub read_from: ReadFrom,
    /// How often open files are checked for new data when no change notification
    /// arrives, in milliseconds (default 250).
    #[serde(default = "super::file::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often the patterns are expanded again to find new files, in milliseconds
    /// (default 1000); a change in a pattern's directory triggers it earlier.
    #[serde(default = "default_glob_interval_ms")]
    pub glob_interval_ms: u64,
    /// How long a file that is no longer matched (renamed away, deleted) is still
    /// read after its last new data before it is closed, in milliseconds (default 2000).
    #[serde(default = "default_idle_close_ms")]
    pub idle_close_ms: u64,
    /// Names of the tags every event gets: `path` (the file's path, default `"file"`)
    /// and `pattern` (the matching pattern's name, default `"pattern"`); `false` for
    /// no such tag.
    #[serde(default)]
    pub tags: TagNames,
    /// Stop once every matched file has been read to its end, delivering unterminated
    /// last lines (for replays and benchmarks). Default false.
    #[serde(default)]
    pub exit_on_eof: bool,
}

/// The names of the tags a taildir source sets.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagNames {
    /// The tag holding the file's path: a name, `true` for `"file"`, `false` for none.
    pub path: TagName,
    /// The tag holding the pattern's name: a name, `true` for `"pattern"`, `false` for
    /// none.
    pub pattern: TagName,
}

impl Default for TagNames {
    fn default() -> Self {
        Self {
            path: TagName::Enabled(true),
            pattern: TagName::Enabled(true),
        }
    }
}

/// A tag's name, or whether the tag is set under its default name.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TagName {
    Enabled(bool),
    Name(String),
}

impl TagName {
    pub(crate) fn resolve(&self, default: &str) -> Option<Arc<str>> {
        match self {
            TagName::Enabled(true) => Some(Arc::from(default)),
            TagName::Enabled(false) => None,
            TagName::Name(n) => Some(Arc::from(n.as_str())),
        }
    }
}

fn default_read_from() -> ReadFrom {
    ReadFrom::Start
}

fn default_glob_interval_ms() -> u64 {
    1000
}

fn default_idle_close_ms() -> u64 {
    2000
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '[', ']'])
}

/// The directory a pattern's files are in (watched for changes).
fn pattern_dir(pattern: &str) -> PathBuf {
    Path::new(pattern)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl SourceConfig for TaildirConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.paths.is_empty() {
            problems.at(
                "paths",
                "needs at least one pattern, as `name = \"/dir/*.log\"`",
            );
        }
        for (name, pattern) in &self.paths {
            let key = ["paths", name.as_str()];
            if name.trim().is_empty() {
                problems.at("paths", "pattern names must not be empty");
            }
            if pattern.trim().is_empty() {
                problems.at_path(&key, "must not be empty");
                continue;
            }
            if let Err(e) = glob::Pattern::new(pattern) {
                problems.at_path(&key, format!("`{pattern}` is not a valid glob: {e}"));
                continue;
            }
            if pattern.ends_with('/') || Path::new(pattern).file_name().is_none() {
                problems.at_path(
                    &key,
                    format!("`{pattern}` names a directory; a pattern must match files (like `dir/*.log`)"),
                );
                continue;
            }
            if let Some(dir) = Path::new(pattern).parent()
                && has_glob_chars(&dir.to_string_lossy())
            {
                problems.at_path(
                    &key,
                    format!(
                        "the directory part `{}` must not contain glob characters (`*?[]`): only the file name may be a pattern, so the directory can be watched",
                        dir.display()
                    ),
                );
            }
        }
        if let Some(file) = &self.position_file {
            if file.as_os_str().is_empty() {
                problems.at("position_file", "must not be empty");
            } else if file.is_dir() {
                problems.at(
                    "position_file",
                    format!("{} is a directory; name a file", file.display()),
                );
            } else if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
                && parent.is_file()
            {
                problems.at(
                    "position_file",
                    format!("its directory {} is a regular file", parent.display()),
                );
            } else if self.reads_file(file) {
                problems.at(
                    "position_file",
                    format!(
                        "{} is matched by one of the `paths` patterns",
                        file.display()
                    ),
                );
            }
        }
        problems.range("poll_interval_ms", self.poll_interval_ms, 10, 3_600_000);
        problems.range("glob_interval_ms", self.glob_interval_ms, 10, 3_600_000);
        problems.range("idle_close_ms", self.idle_close_ms, 0, 86_400_000);
        let path_tag = self.tags.path.resolve("file");
        let pattern_tag = self.tags.pattern.resolve("pattern");
        for (key, name) in [("path", &path_tag), ("pattern", &pattern_tag)] {
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                problems.at_path(
                    &["tags", key],
                    "must not be empty (use `false` for no such tag)",
                );
            }
        }
        if path_tag.is_some() && path_tag == pattern_tag {
            problems.at("tags", "`path` and `pattern` must be different tags");
        }
    }

    fn reads_file(&self, path: &Path) -> bool {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.paths.values().any(|pattern| {
            let Ok(p) = glob::Pattern::new(pattern) else {
                return false;
            };
            if p.matches_path_with(path, MATCH) || p.matches_path_with(&absolute, MATCH) {
                return true;
            }
            // The pattern may be relative, or name the directory through a symlink.
            let dir = std::fs::canonicalize(pattern_dir(pattern));
            let file_dir = absolute.parent().map(std::fs::canonicalize);
            match (
                dir,
                file_dir,
                Path::new(pattern).file_name(),
                absolute.file_name(),
            ) {
                (Ok(d), Some(Ok(fd)), Some(pat_name), Some(name)) => {
                    d == fd
                        && glob::Pattern::new(&pat_name.to_string_lossy())
                            .is_ok_and(|p| p.matches_with(&name.to_string_lossy(), MATCH))
                }
                _ => false,
            }
        })
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let position_path = self.position_file.clone().unwrap_or_else(|| {
            cx.data_dir
                .join("taildir")
                .join(format!("{}.positions.json", cx.name))
        });
        self.run_with(cx, Some(position_path))
    }
}

impl TaildirConfig {
    /// Runs the source, recording positions in `position_path` (none: positions are
    /// kept in memory only, as the one-file `file` source does unless told otherwise).
    pub(crate) fn run_with(
        &self,
        cx: SourceContext,
        position_path: Option<PathBuf>,
    ) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let SourceContext {
                name,
                batcher,
                shutdown,
                recovered,
                ..
            } = cx;
            let runner = Runner {
                patterns: config
                    .paths
                    .iter()
                    .map(|(n, p)| (Arc::from(n.as_str()), p.clone()))
                    .collect(),
                path_tag: config.tags.path.resolve("file"),
                pattern_tag: config.tags.pattern.resolve("pattern"),
                read_from: config.read_from,
                poll_interval: Duration::from_millis(config.poll_interval_ms),
                glob_interval: Duration::from_millis(config.glob_interval_ms),
                idle_close: Duration::from_millis(config.idle_close_ms),
                exit_on_eof: config.exit_on_eof,
                max_line_bytes: batcher.max_line_bytes(),
                // Without a position file nothing resumes, not even from the channels.
                recovered: if position_path.is_some() {
                    recovered
                } else {
                    Recovered::default()
                },
                acked_seq: None,
                position_path,
                source: name,
                files: Vec::new(),
                next_key: 0,
                reported: HashMap::new(),
                position_error: None,
                positions_dirty: false,
                chunk: vec![0; CHUNK],
                lines: Vec::new(),
                watcher: None,
                watched: HashSet::new(),
                remnants: Vec::new(),
                maybe_copies: HashMap::new(),
                copy_wait: copy_wait(config.glob_interval_ms, config.poll_interval_ms),
                scan_soon: false,
            };
            runner.run(batcher, shutdown).await;
        })
    }
}

/// How long the copy of a truncated file is looked for, and how long a new file that
/// may be a copy still being made waits after it stopped growing: two scans and two
/// polls, at least a second.
fn copy_wait(glob_interval_ms: u64, poll_interval_ms: u64) -> Duration {
    Duration::from_millis((2 * (glob_interval_ms + poll_interval_ms)).max(1000))
}

/// A new file that may be a copy (of a followed file) still being made: not followed
/// until the original is truncated (it is then the copy) or it stops growing.
struct MaybeCopy {
    size: u64,
    /// When its size last changed.
    since: Instant,
}

/// Where reading a newly found file begins.
enum Start {
    /// At `pos`, with the fingerprint of what is before it.
    At(u64, Fingerprint),
    /// It is the copy of a truncated file: at `pos` (with the remnant's partial line
    /// when that is where the original was read to).
    Copy {
        pos: u64,
        remnant: Box<Remnant>,
        head: Vec<u8>,
    },
    /// Not yet: it may be a copy still being made.
    Later,
}

/// How the first scan places files.
enum Initial {
    /// No position file: files begin at `read_from`.
    FirstStart,
    /// Saved positions by (device, inode); files without one begin at 0.
    Saved(HashMap<(u64, u64), Entry>),
}

/// A path a pattern matched, with its metadata.
struct Found {
    pattern: usize,
    path: PathBuf,
    meta: std::io::Result<std::fs::Metadata>,
}

/// What expanding the patterns found.
struct Discovery {
    found: Vec<Found>,
    errors: Vec<(PathBuf, String)>,
    /// No directory failed to read: a tracked file not found is really gone.
    complete: bool,
}

/// Expands every pattern (blocking: reads directories).
fn discover(patterns: &[(Arc<str>, String)]) -> Discovery {
    let mut d = Discovery {
        found: Vec::new(),
        errors: Vec::new(),
        complete: true,
    };
    for (i, (_, pattern)) in patterns.iter().enumerate() {
        match glob::glob_with(pattern, MATCH) {
            Err(e) => {
                d.complete = false;
                d.errors.push((
                    PathBuf::from(pattern),
                    format!("invalid pattern `{pattern}`: {e}"),
                ));
            }
            Ok(paths) => {
                for entry in paths {
                    match entry {
                        Ok(path) => d.found.push(Found {
                            pattern: i,
                            meta: std::fs::metadata(&path),
                            path,
                        }),
                        Err(e) => {
                            d.complete = false;
                            let message =
                                format!("cannot read {}: {}", e.path().display(), e.error());
                            d.errors.push((e.path().to_path_buf(), message));
                        }
                    }
                }
            }
        }
    }
    d
}

/// The running source.
struct Runner {
    source: Arc<str>,
    patterns: Vec<(Arc<str>, String)>,
    path_tag: Option<Arc<str>>,
    pattern_tag: Option<Arc<str>>,
    read_from: ReadFrom,
    poll_interval: Duration,
    glob_interval: Duration,
    idle_close: Duration,
    exit_on_eof: bool,
    max_line_bytes: usize,
    position_path: Option<PathBuf>,
    /// Positions the durable channels stored with batches (applied at start).
    recovered: Recovered,
    /// The number of the last batch acknowledged (saved in the position file).
    acked_seq: Option<u64>,
    files: Vec<Tracked>,
    next_key: u64,
    /// The error last reported per path (each reported once until it changes).
    reported: HashMap<PathBuf, String>,
    position_error: Option<String>,
    positions_dirty: bool,
    chunk: Vec<u8>,
    lines: Vec<(Line, Option<usize>)>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Truncated files whose copy may still be found.
    remnants: Vec<Remnant>,
    /// New files not followed yet because they may be copies still being made.
    maybe_copies: HashMap<(u64, u64), MaybeCopy>,
    copy_wait: Duration,
    /// A file was truncated: expand the patterns at once, to find its copy.
    scan_soon: bool,
}

impl Runner {
    async fn run(mut self, mut batcher: Batcher, shutdown: CancellationToken) {
        let saved = match &self.position_path {
            Some(path) => positions::load(path),
            None => Ok(None),
        };
        let saved = saved.unwrap_or_else(|message| {
            batcher.error(
                &format!("{message}; starting as on a first start (read_from applies)"),
                None,
            );
            None
        });
        self.acked_seq = saved.as_ref().and_then(|s| s.seq);
        let (entries, last_seq) =
            positions::resume_points(saved, &std::mem::take(&mut self.recovered));
        let initial = match entries {
            Some(entries) => Initial::Saved(entries),
            None => Initial::FirstStart,
        };
        let mut acks = batcher.acknowledged(last_seq);
        let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
        let (dir_tx, mut dir_rx) = mpsc::channel::<()>(1);
        self.watcher = watcher(wake_tx, dir_tx)
            .map_err(|e| {
                tracing::debug!(source = %self.source, "no change notifications: {e}; polling");
            })
            .ok();

        self.scan(&mut batcher, Some(initial)).await;
        self.positions_dirty = true;
        self.write_positions(Some(&batcher)).await;
        let mut next_glob = Instant::now() + self.glob_interval;
        let mut rescan = false;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if rescan || self.scan_soon || Instant::now() >= next_glob {
                self.scan(&mut batcher, None).await;
                next_glob = Instant::now() + self.glob_interval;
                rescan = false;
                self.scan_soon = false;
            }
            let (more, any) = self.read_turn(&mut batcher, &shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            self.close_idle(&mut batcher).await;
            while let Ok(marks) = acks.try_recv() {
                self.apply_acks(marks);
            }
            self.write_positions(Some(&batcher)).await;
            if self.exit_on_eof && !more && !any {
                self.finish_all(&mut batcher).await;
                break;
            }
            if more {
                // Data is waiting: only flush a due batch, then read on.
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = batcher.due() => batcher.flush().await,
                    _ = std::future::ready(()) => {}
                }
                if dir_rx.try_recv().is_ok() {
                    rescan = true;
                }
                continue;
            }
            if self.scan_soon {
                continue;
            }
            let wait_until = (Instant::now() + self.poll_interval).min(next_glob);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = batcher.due() => batcher.flush().await,
                Some(marks) = acks.recv() => self.apply_acks(marks),
                _ = wake_rx.recv() => {}
                _ = dir_rx.recv() => rescan = true,
                _ = tokio::time::sleep_until(wait_until) => {}
            }
        }

        // Truncated files whose copy was not found yet are not looked for after a
        // restart: what they had unread is lost.
        for r in std::mem::take(&mut self.remnants) {
            self.lose_remnant(&mut batcher, r).await;
        }
        // Stop: hand over what is buffered, then wait for its acknowledgement (the
        // receiver ends once the batcher and every pending ack are gone).
        batcher
            .finish(&mut acks, ACK_WAIT, |acked| self.apply_acks(acked))
            .await;
        self.positions_dirty = true;
        self.write_positions(None).await;
    }

    /// Reports an error about `path` once (again only when it changes).
    fn report(&mut self, batcher: &Batcher, path: &Path, message: String) {
        if self.reported.get(path) != Some(&message) {
            batcher.error(&message, None);
            self.reported.insert(path.to_path_buf(), message);
        }
    }

    fn tags_for(&self, path: &Path, pattern: &Arc<str>) -> Tags {
        let mut tags = Tags::default();
        if let Some(name) = &self.path_tag {
            tags.set(name.clone(), path.to_string_lossy().as_ref());
        }
        if let Some(name) = &self.pattern_tag {
            tags.set(name.clone(), pattern.clone());
        }
        tags
    }

    /// Expands the patterns: new files are tracked, renamed ones follow their new
    /// name, and ones no longer found are read to their end and closed when idle.
    async fn scan(&mut self, batcher: &mut Batcher, mut initial: Option<Initial>) {
        self.watch_dirs();
        let patterns = self.patterns.clone();
        let discovery = match tokio::task::spawn_blocking(move || discover(&patterns)).await {
            Ok(d) => d,
            Err(e) => {
                batcher.error(&format!("expanding the patterns failed: {e}"), None);
                return;
            }
        };
        for (path, message) in discovery.errors {
            self.report(batcher, &path, message);
        }
        let now = Instant::now();
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let mut found_paths: HashSet<PathBuf> = HashSet::new();
        let mut found = discovery.found;
        if let Some(Initial::Saved(entries)) = &initial {
            // Files with a saved position first: one truncated while the agent was
            // stopped leaves what its copy (found after it) continues from.
            found.sort_by_key(|f| {
                !f.meta
                    .as_ref()
                    .is_ok_and(|m| entries.contains_key(&tracked::identity(m)))
            });
        }
        for found in found {
            found_paths.insert(found.path.clone());
            let pattern = self.patterns[found.pattern].0.clone();
            let meta = match found.meta {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let message = format!("cannot read {}: {e}", found.path.display());
                    self.report(batcher, &found.path, message);
                    continue;
                }
            };
            if meta.is_dir() {
                let message = format!(
                    "{} is a directory (matched by pattern `{pattern}`); skipped",
                    found.path.display()
                );
                self.report(batcher, &found.path, message);
                continue;
            }
            if !meta.is_file() {
                let message = format!(
                    "{} is not a regular file (matched by pattern `{pattern}`); skipped",
                    found.path.display()
                );
                self.report(batcher, &found.path, message);
                continue;
            }
            let id = tracked::identity(&meta);
            if !seen.insert(id) {
                continue; // matched twice: by two patterns, or hard links
            }
            if let Some(i) = self.files.iter().position(|t| t.identity() == id) {
                let tags = self.tags_for(&found.path, &pattern);
                let t = &mut self.files[i];
                if t.path != found.path || t.pattern != pattern {
                    tracing::info!(
                        source = %self.source,
                        "{} is now {} (pattern `{pattern}`); following it",
                        t.path.display(),
                        found.path.display()
                    );
                    t.path = found.path;
                    t.pattern = pattern;
                    t.tags = tags;
                    self.positions_dirty = true;
                }
                t.gone_since = None;
                continue;
            }
            self.track(batcher, found.path, pattern, &mut initial).await;
        }
        self.maybe_copies.retain(|id, _| seen.contains(id));
        if discovery.complete {
            self.give_up_remnants(batcher, now).await;
            for t in &mut self.files {
                if t.gone_since.is_none() && !seen.contains(&t.identity()) {
                    tracing::info!(
                        source = %self.source,
                        "{} is no longer matched (renamed away or deleted); reading it to its end",
                        t.path.display()
                    );
                    t.gone_since = Some(now);
                }
            }
        }
        self.reported.retain(|p, _| found_paths.contains(p));
    }

    /// Opens a newly found file and decides where reading it begins.
    async fn track(
        &mut self,
        batcher: &mut Batcher,
        path: PathBuf,
        pattern: Arc<str>,
        initial: &mut Option<Initial>,
    ) {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.report(
                    batcher,
                    &path,
                    format!("cannot open {}: {e}", path.display()),
                );
                return;
            }
        };
        // The identity of what was opened (the path may have changed since the scan).
        let meta = match file.metadata() {
            Ok(m) if m.is_file() => m,
            _ => return,
        };
        let id = tracked::identity(&meta);
        if self.files.iter().any(|t| t.identity() == id) {
            return;
        }
        self.reported.remove(&path);
        let start = match initial {
            None => self.new_file_start(batcher, &file, &meta, &path),
            Some(Initial::FirstStart) => match self.read_from {
                ReadFrom::Start => Start::At(0, Fingerprint::EMPTY),
                ReadFrom::End => Start::At(meta.len(), Fingerprint::EMPTY),
            },
            Some(Initial::Saved(entries)) => match entries.remove(&id) {
                None => self.new_file_start(batcher, &file, &meta, &path),
                Some(entry) => match tracked::resume_at(&file, entry.fingerprint, entry.offset) {
                    Ok(Some((pos, fp))) => Start::At(pos, fp),
                    Ok(None) => {
                        tracing::info!(
                            source = %self.source,
                            "{} is not the file its saved position was for (or was truncated); reading it from its start",
                            path.display()
                        );
                        // Truncated while the agent was stopped: its copy, if the
                        // patterns match it, holds what was not read.
                        if entry.offset > 0 && entry.fingerprint.len > 0 {
                            let r = self.saved_remnant(&entry, &path, &pattern, id);
                            self.remnants.push(r);
                        }
                        Start::At(0, Fingerprint::EMPTY)
                    }
                    Err(e) => {
                        self.report(
                            batcher,
                            &path,
                            format!("cannot read {}: {e}", path.display()),
                        );
                        Start::At(0, Fingerprint::EMPTY)
                    }
                },
            },
        };
        let key = self.next_key;
        self.next_key += 1;
        let now = Instant::now();
        let tags = self.tags_for(&path, &pattern);
        let mut t = Tracked {
            key,
            file: Arc::new(file),
            dev: id.0,
            inode: id.1,
            fingerprint: Fingerprint::EMPTY,
            tags,
            path,
            pattern,
            pos: 0,
            line_end: 0,
            splitter: LineSplitter::new(self.max_line_bytes),
            acked: 0,
            gone_since: None,
            last_data: now,
            failing: None,
            at_eof: false,
            read_to_end: false,
            head: Vec::new(),
            tail: Vec::new(),
            seen_size: meta.len(),
        };
        match start {
            Start::Later => return,
            Start::At(pos, fp) => {
                t.pos = pos;
                t.line_end = pos;
                t.acked = pos;
                t.fingerprint = fp;
                if fp.len > 0 {
                    t.head = copies::head_matching(&t.file, fp)
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                }
            }
            Start::Copy { pos, remnant, head } => {
                let r = *remnant;
                tracing::info!(
                    source = %self.source,
                    "{} is the copy of {} made before it was truncated; reading it from byte {pos}, where {} was read to",
                    t.path.display(),
                    r.path.display(),
                    r.path.display(),
                );
                t.fingerprint = Fingerprint::of(&head);
                t.head = head;
                t.pos = pos;
                if pos == r.pos {
                    // The lines of the old content still in flight are acknowledged
                    // under its key: they are positions in the copy too.
                    t.key = r.mark.key;
                    t.line_end = r.line_end;
                    t.acked = r.acked;
                    t.splitter = r.splitter;
                    t.tail = r.tail;
                } else {
                    // The copy ends before where the original was read to: nothing
                    // in it is new, and what the original had past it is gone.
                    t.line_end = pos;
                    t.acked = pos;
                    self.lose_remnant(batcher, r).await;
                }
            }
        }
        tracing::debug!(source = %self.source, "following {} from byte {}", t.path.display(), t.pos);
        self.files.push(t);
        self.positions_dirty = true;
    }

    /// Where a file found after the first start begins: at the position its original
    /// was read to when it is the copy of a truncated file; later when it may be a copy
    /// still being made; else at 0.
    fn new_file_start(
        &mut self,
        batcher: &Batcher,
        file: &std::fs::File,
        meta: &std::fs::Metadata,
        path: &Path,
    ) -> Start {
        let id = tracked::identity(meta);
        let size = meta.len();
        let head = match copies::read_head(file) {
            Ok(h) => h,
            Err(e) => {
                self.report(
                    batcher,
                    path,
                    format!("cannot read {}: {e}", path.display()),
                );
                return Start::At(0, Fingerprint::EMPTY);
            }
        };
        for i in 0..self.remnants.len() {
            match copies::copy_of(file, size, &head, &self.remnants[i]) {
                Ok(Some(pos)) => {
                    self.maybe_copies.remove(&id);
                    return Start::Copy {
                        pos,
                        remnant: Box::new(self.remnants.remove(i)),
                        head,
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    self.report(
                        batcher,
                        path,
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return Start::Later;
                }
            }
        }
        let Some(original) = self
            .files
            .iter()
            .find(|t| t.pos > 0 && copies::may_be_copy(&head, &t.head))
        else {
            self.maybe_copies.remove(&id);
            return Start::At(0, Fingerprint::EMPTY);
        };
        let now = Instant::now();
        let waiting = self
            .maybe_copies
            .entry(id)
            .or_insert(MaybeCopy { size, since: now });
        if waiting.size != size {
            *waiting = MaybeCopy { size, since: now };
        }
        if waiting.since.elapsed() < self.copy_wait {
            return Start::Later;
        }
        self.maybe_copies.remove(&id);
        tracing::info!(
            source = %self.source,
            "{} starts like {}, which was not truncated: not a copytruncate copy; reading it from its start",
            path.display(),
            original.path.display()
        );
        Start::At(0, Fingerprint::EMPTY)
    }

    /// The remnant of a file whose saved position is for content it no longer has.
    fn saved_remnant(
        &mut self,
        entry: &Entry,
        path: &Path,
        pattern: &Arc<str>,
        id: (u64, u64),
    ) -> Remnant {
        let key = self.next_key;
        self.next_key += 1;
        Remnant {
            fingerprint: entry.fingerprint,
            pos: entry.offset,
            line_end: entry.offset,
            tail: Vec::new(),
            splitter: LineSplitter::new(self.max_line_bytes),
            read_to_end: false,
            seen_size: entry.offset,
            acked: entry.offset,
            mark: crate::source::checkpoint::Mark {
                key,
                file: crate::source::checkpoint::FileId {
                    dev: id.0,
                    inode: id.1,
                    fingerprint: entry.fingerprint,
                },
                offset: entry.offset,
            },
            path: path.to_path_buf(),
            tags: self.tags_for(path, pattern),
            until: Instant::now() + self.copy_wait,
        }
    }

    /// Gives up the remnants whose copy was not found in time.
    async fn give_up_remnants(&mut self, batcher: &mut Batcher, now: Instant) {
        let mut i = 0;
        while i < self.remnants.len() {
            if self.remnants[i].until > now {
                i += 1;
                continue;
            }
            let r = self.remnants.remove(i);
            self.lose_remnant(batcher, r).await;
        }
    }

    /// A truncated file without a copy: its unterminated last line is delivered on its
    /// own when it was read to its end (else its first part is not a line: dropped), and
    /// the bytes it had that were not read are counted as lost.
    async fn lose_remnant(&mut self, batcher: &mut Batcher, mut r: Remnant) {
        let partial = r.splitter.finish();
        let delivered = r.read_to_end || partial.is_none();
        if let Some(last) = partial {
            if r.read_to_end {
                let mark = crate::source::checkpoint::Mark {
                    offset: r.pos,
                    ..r.mark
                };
                batcher.push_marked(last, mark, &r.tags).await;
            } else {
                tracing::info!(
                    source = %self.source,
                    "{}: the {} bytes read of a line were truncated away before the rest was read; dropped",
                    r.path.display(),
                    last.len()
                );
            }
        }
        let lost = r.unread(delivered);
        if lost > 0 {
            batcher.lost_on_truncate(&r.path, lost);
        }
    }

    /// Reads every file, each up to [`TURN_BUDGET`] bytes. Returns whether some file
    /// has more to read, and whether anything was read.
    async fn read_turn(
        &mut self,
        batcher: &mut Batcher,
        shutdown: &CancellationToken,
    ) -> (bool, bool) {
        let (mut more, mut any) = (false, false);
        for i in 0..self.files.len() {
            let mut budget = TURN_BUDGET;
            loop {
                if shutdown.is_cancelled() {
                    return (more, any);
                }
                let t = &self.files[i];
                let file = t.file.clone();
                let pos = t.pos;
                let old_fp = t.fingerprint;
                let mut fp = old_fp;
                let mut buf = std::mem::take(&mut self.chunk);
                if buf.len() != CHUNK {
                    buf = vec![0; CHUNK];
                }
                let joined = tokio::task::spawn_blocking(move || {
                    let step = tracked::read_step(&file, pos, &mut fp, &mut buf);
                    // The fingerprint grew: keep the bytes it covers now.
                    let head = match &step {
                        Ok(Step::Data { .. } | Step::Eof) if fp != old_fp => {
                            copies::head_matching(&file, fp).ok().flatten()
                        }
                        _ => None,
                    };
                    (step, buf, fp, head)
                })
                .await;
                let (step, buf, fp, head) = match joined {
                    Ok(r) => r,
                    Err(e) => (
                        Err(std::io::Error::other(e.to_string())),
                        vec![0; CHUNK],
                        fp,
                        None,
                    ),
                };
                self.chunk = buf;
                let t = &mut self.files[i];
                t.fingerprint = fp;
                if let Some(head) = head {
                    t.head = head;
                }
                match step {
                    Err(e) => {
                        let message = format!("reading {}: {e}", t.path.display());
                        if t.failing.as_ref() != Some(&message) {
                            batcher.error(&message, Some(self.poll_interval));
                            t.failing = Some(message);
                        }
                        break;
                    }
                    Ok(Step::Eof) => {
                        t.failing = None;
                        t.at_eof = true;
                        t.read_to_end = true;
                        t.seen_size = t.seen_size.max(t.pos);
                        break;
                    }
                    Ok(Step::Truncated) => {
                        any = true;
                        t.at_eof = false;
                        tracing::info!(
                            source = %self.source,
                            "{} was truncated; reading it from its start",
                            t.path.display()
                        );
                        // What was not read of the old content may be in a copy (a
                        // copytruncate's): it is looked for until `copy_wait` has
                        // passed, then its partial line is settled and the rest counted.
                        let splitter = std::mem::replace(
                            &mut t.splitter,
                            LineSplitter::new(self.max_line_bytes),
                        );
                        let remnant = Remnant {
                            fingerprint: t.fingerprint,
                            pos: t.pos,
                            line_end: t.line_end,
                            tail: std::mem::take(&mut t.tail),
                            splitter,
                            read_to_end: t.read_to_end,
                            seen_size: t.seen_size.max(t.pos),
                            acked: t.acked,
                            mark: t.mark(t.pos),
                            path: t.path.clone(),
                            tags: t.tags.clone(),
                            until: Instant::now() + self.copy_wait,
                        };
                        t.key = self.next_key;
                        self.next_key += 1;
                        t.pos = 0;
                        t.line_end = 0;
                        t.acked = 0;
                        t.fingerprint = Fingerprint::EMPTY;
                        t.head.clear();
                        t.seen_size = 0;
                        t.read_to_end = false;
                        t.last_data = Instant::now();
                        self.positions_dirty = true;
                        if remnant.fingerprint.len > 0 && remnant.pos > 0 {
                            self.remnants.push(remnant);
                            self.scan_soon = true;
                        } else {
                            self.lose_remnant(batcher, remnant).await;
                        }
                        budget = budget.saturating_sub(CHUNK);
                        if budget == 0 {
                            more = true;
                            break;
                        }
                    }
                    Ok(Step::Data { n, at_end, size }) => {
                        any = true;
                        t.read_to_end = at_end;
                        t.seen_size = t.seen_size.max(size);
                        copies::push_tail(&mut t.tail, &self.chunk[..n]);
                        t.failing = None;
                        t.at_eof = false;
                        t.last_data = Instant::now();
                        let base = t.pos;
                        let lines = &mut self.lines;
                        t.splitter
                            .feed_with_ends(&self.chunk[..n], |line, end| lines.push((line, end)));
                        t.pos += n as u64;
                        for (line, end) in self.lines.drain(..) {
                            if let Some(end) = end {
                                t.line_end = base + end as u64;
                            }
                            let body = match line {
                                Line::Whole(b) => b,
                                Line::Truncated(b) => {
                                    batcher.truncated();
                                    b
                                }
                            };
                            let mark = t.mark(t.line_end);
                            batcher.push_marked(body, mark, &t.tags).await;
                        }
                        if t.splitter.at_line_start() {
                            t.line_end = t.pos;
                        }
                        budget = budget.saturating_sub(n);
                        if budget == 0 {
                            more = true;
                            break;
                        }
                    }
                }
            }
        }
        (more, any)
    }

    /// Closes files no longer matched that have been quiet for `idle_close`.
    async fn close_idle(&mut self, batcher: &mut Batcher) {
        let mut i = 0;
        while i < self.files.len() {
            let t = &self.files[i];
            let idle = match t.gone_since {
                Some(since) if t.at_eof || t.failing.is_some() => {
                    t.last_data.max(since).elapsed() >= self.idle_close
                }
                _ => false,
            };
            if !idle {
                i += 1;
                continue;
            }
            let mut t = self.files.remove(i);
            if let Some(last) = t.splitter.finish() {
                let mark = t.mark(t.pos);
                batcher.push_marked(last, mark, &t.tags).await;
            }
            tracing::info!(
                source = %self.source,
                "closed {} (no longer matched, read to its end)",
                t.path.display()
            );
            self.positions_dirty = true;
        }
    }

    /// At the end of an `exit_on_eof` run: delivers the unterminated last lines.
    async fn finish_all(&mut self, batcher: &mut Batcher) {
        for r in std::mem::take(&mut self.remnants) {
            self.lose_remnant(batcher, r).await;
        }
        for t in &mut self.files {
            if let Some(last) = t.splitter.finish() {
                let mark = t.mark(t.pos);
                t.line_end = t.pos;
                batcher.push_marked(last, mark, &t.tags).await;
            }
        }
    }

    fn apply_acks(&mut self, acked: Acked) {
        self.acked_seq = Some(acked.seq);
        self.positions_dirty = true;
        for mark in acked.marks {
            // Marks of a closed file, or of content from before a truncation, have
            // no file (key) any more.
            if let Some(t) = self.files.iter_mut().find(|t| t.key == mark.key) {
                if t.acked != mark.offset {
                    t.acked = mark.offset;
                    self.positions_dirty = true;
                }
            } else if let Some(r) = self.remnants.iter_mut().find(|r| r.mark.key == mark.key) {
                r.acked = mark.offset;
            }
        }
    }

    /// Rewrites the position file if positions changed. Errors are reported once.
    async fn write_positions(&mut self, batcher: Option<&Batcher>) {
        if !self.positions_dirty {
            return;
        }
        self.positions_dirty = false;
        let entries: Vec<Entry> = self
            .files
            .iter()
            .map(|t| Entry {
                dev: t.dev,
                inode: t.inode,
                fingerprint: t.fingerprint,
                offset: t.acked,
                path: t.path.clone(),
            })
            .collect();
        let Some(path) = self.position_path.clone() else {
            return;
        };
        let target = path.clone();
        let saved = positions::Saved {
            seq: self.acked_seq,
            files: entries,
        };
        let result = tokio::task::spawn_blocking(move || positions::save(&target, &saved))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match result {
            Ok(()) => {
                if self.position_error.take().is_some() {
                    tracing::info!(source = %self.source, "the position file is written again");
                }
            }
            Err(e) => {
                let message = format!("cannot write the position file {}: {e}", path.display());
                if self.position_error.as_ref() != Some(&message) {
                    match batcher {
                        Some(b) => b.error(&message, None),
                        None => tracing::error!(source = %self.source, "{message}"),
                    }
                    self.position_error = Some(message);
                }
                self.positions_dirty = true;
            }
        }
    }

    /// Watches every pattern's directory not watched yet (one that does not exist yet
    /// is tried again at the next scan).
    fn watch_dirs(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for (_, pattern) in &self.patterns {
            let dir = pattern_dir(pattern);
            if !self.watched.contains(&dir)
                && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.insert(dir);
            }
        }
    }
}

/// A watcher whose every event wakes the reader (`wake`), and whose events that may
/// add or remove files (create, remove, rename) also ask for a scan (`dir`). Extra
/// wake-ups are coalesced.
pub(crate) fn watcher(
    wake: mpsc::Sender<()>,
    dir: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::EventKind;
    use notify::event::ModifyKind;
    notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
            )
        {
            let _ = dir.try_send(());
        }
        let _ = wake.try_send(());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> TaildirConfig {
        toml::from_str(text).unwrap()
    }

    /// The problems found, as their debug form (key paths and messages).
    fn problems(c: &TaildirConfig) -> String {
        let mut p = Problems::default();
        c.validate(&mut p);
        if p.is_empty() {
            String::new()
        } else {
            format!("{p:?}")
        }
    }

    #[test]
    fn defaults_and_validation() {
        let c = config("paths = { app = \"/var/log/app/*.log\" }");
        assert_eq!(c.read_from, ReadFrom::Start);
        assert_eq!(
            (c.poll_interval_ms, c.glob_interval_ms, c.idle_close_ms),
            (250, 1000, 2000)
        );
        assert_eq!(problems(&c), "");
        assert!(c.reads_file(Path::new("/var/log/app/x.log")));
        assert!(!c.reads_file(Path::new("/var/log/app/sub/x.log")));
        assert!(!c.reads_file(Path::new("/var/log/app/x.txt")));

        let c = config("paths = {}");
        assert!(problems(&c).contains("[\"paths\"]"));
        let c = config(
            "paths = { a = \"\", b = \"/x/[.log\", c = \"/var/*/x.log\", d = \"/ok/*.log\" }",
        );
        let p = problems(&c);
        for key in ["a", "b", "c"] {
            assert!(p.contains(&format!("[\"paths\", \"{key}\"]")), "{p}");
        }
        assert!(!p.contains("\"d\""), "{p}");
        assert!(p.contains("glob characters"), "{p}");
        let c = config("paths = { a = \"/x/*.log\" }\ntags = { path = false, pattern = \"p\" }");
        assert_eq!(problems(&c), "");
        assert_eq!(c.tags.path.resolve("file"), None);
        assert_eq!(c.tags.pattern.resolve("pattern").as_deref(), Some("p"));
        let c = config("paths = { a = \"/x/*.log\" }\ntags = { path = \"t\", pattern = \"t\" }");
        assert!(problems(&c).contains("[\"tags\"]"));
        let c = config("paths = { a = \"/x/*.log\" }\nposition_file = \"/x/pos.log\"");
        assert!(problems(&c).contains("[\"position_file\"]"));
        assert!(toml::from_str::<TaildirConfig>("paths = { a = \"/x\" }\nbogus = 1").is_err());
    }
}
