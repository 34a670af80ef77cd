//! The `spooldir` source (Flume's Spooling Directory source): reads every finished file
//! dropped into a directory, line by line, then renames it with a done suffix (or
//! deletes it) once all its lines are in the channels.
//!
//! - **Picking**: the directory is listed every `poll_interval_ms`, and soon after a
//!   change notification (inotify via `notify`). A file is a candidate when its name is
//!   matched by `include`, by no `ignore` glob, is not hidden (`.name`) and does not end
//!   with the done suffix or `.CHANGED` ([`select`]). It is ready when its name ends with
//!   `completion_suffix` (if set: the writer renames it so when done), else once its size
//!   and modification time stayed the same for `quiet_period_ms`. Ready files are read
//!   one at a time, in `order`; a file a previous run had begun comes first.
//! - **Reading**: in chunks, each line marked with where it ends, as taildir does
//!   ([`reader`]); a file's unterminated last line is a line. Before every read the file
//!   is checked against what it was when picked: bigger, smaller, first bytes rewritten,
//!   written to, deleted or replaced is a **change**: reading stops, the change is logged
//!   as an error naming the file and counted (`changed_files`); what was read is
//!   delivered, and once it is in the channels the file is renamed `NAME.CHANGED` (never
//!   deleted, never read again) for someone to look at.
//! - **Putting away**: a file read to its end is renamed (`on_done = "rename"`, its name
//!   plus `done_suffix`) or deleted only when every batch of it has been acknowledged
//!   (is in its channels, durably for a file channel), and after checking once more it
//!   is unchanged and still at its path ([`finish`]). A rename never replaces a file: when
//!   the done name is taken, the file becomes `NAME.1<done_suffix>` (and so on) and the
//!   collision is reported. Counted as `files_done`.
//! - **Positions**: like taildir, a position file (`<data_dir>/spooldir/<name>.positions.json`)
//!   written only after acks, plus the positions the durable channels store with each
//!   batch: after a crash, the file being read resumes after its last line in the
//!   channels, and a file read whole but not yet renamed is renamed without being read
//!   again.

mod finish;
mod reader;
mod select;

use super::lines::Line;
use super::taildir::TagName;
use super::taildir::positions::{self, Entry, Resume};
use super::taildir::tracked::{self, Fingerprint};
use super::{Acked, Batcher, LineSplitter, SourceConfig, SourceContext};
use crate::config::Problems;
use crate::event::Tags;
use crate::internal_events::{SpoolCounters, SpoolFileChanged, SpoolFileDone, SpoolSymlinkSkipped};
use finish::Finished;
use futures_util::future::BoxFuture;
use notify::{RecursiveMode, Watcher};
use reader::{Change, Chunk, Picked, Reading};
use select::{CHANGED_SUFFIX, Found, Names, Order, Quiet};
use serde::Deserialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes read from a file at a time.
const CHUNK: usize = 256 * 1024;
/// Bytes read before acks are looked at and due batches flushed.
const TURN_BUDGET: usize = 1024 * 1024;
/// How long a stopping source waits for its last batches to be acknowledged.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// The shortest time between two listings of the directory.
const MIN_SCAN_GAP: Duration = Duration::from_millis(100);

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpooldirConfig {
    /// The spool directory (Flume's `spoolDir`).
    pub path: String,
    /// Glob the file name must match (default `"*"`; Flume's `includePattern`).
    #[serde(default = "default_include")]
    pub include: String,
    /// Globs of file names never read (Flume's `ignorePattern`, as globs): `["*.tmp"]`.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Also read the files of subdirectories (not hidden ones). Default false.
    #[serde(default)]
    pub recursive: bool,
    /// How long a file's size and modification time must stay the same before it is
    /// read, in milliseconds (default 5000); 0 reads files as soon as they are seen.
    /// Not used with `completion_suffix`.
    #[serde(default = "default_quiet_period_ms")]
    pub quiet_period_ms: u64,
    /// Only files whose name ends with this are read, as soon as they are seen (the
    /// writer renames a file to it when done: `".ready"`). Default: none.
    #[serde(default)]
    pub completion_suffix: Option<String>,
    /// What to do with a file once all its lines are in the channels: `"rename"`
    /// (default) or `"delete"` (Flume's `deletePolicy`).
    #[serde(default)]
    pub on_done: OnDone,
    /// Appended to a done file's name (default `".COMPLETED"`; Flume's `fileSuffix`).
    #[serde(default = "default_done_suffix")]
    pub done_suffix: String,
    /// The order ready files are read in: `"oldest"` (default: by modification time),
    /// `"youngest"` or `"name"` (Flume's `consumeOrder`).
    #[serde(default = "default_order")]
    pub order: Order,
    /// How often the directory is listed when no change notification comes, in
    /// milliseconds (default 1000).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Names of the tags every event gets: `path` (the file's path, default `"file"`)
    /// and `basename` (its name, default none; `true` for `"basename"`).
    #[serde(default)]
    pub tags: TagNames,
    /// Read the files symbolic links in the directory point to (the link is then what
    /// is renamed or deleted; the file it points to is left as it is). Default false:
    /// a link is skipped, logged once and counted (`symlinks_skipped`), as it may point
    /// to any file the agent can read.
    #[serde(default)]
    pub follow_symlinks: bool,
}

/// What happens to a file read whole.
#[derive(PartialEq, Eq, Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDone {
    #[default]
    Rename,
    Delete,
}

/// The names of the tags a spooldir source sets.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagNames {
    /// The tag holding the file's path: a name, `true` for `"file"`, `false` for none.
    pub path: TagName,
    /// The tag holding the file's name: a name, `true` for `"basename"`, `false` (the
    /// default) for none.
    pub basename: TagName,
}

impl Default for TagNames {
    fn default() -> Self {
        Self {
            path: TagName::Enabled(true),
            basename: TagName::Enabled(false),
        }
    }
}

fn default_include() -> String {
    "*".into()
}

fn default_quiet_period_ms() -> u64 {
    5000
}

fn default_done_suffix() -> String {
    ".COMPLETED".into()
}

fn default_order() -> Order {
    Order::Oldest
}

fn default_poll_interval_ms() -> u64 {
    1000
}

/// Checks a suffix setting: not empty, no `/`.
fn check_suffix(problems: &mut Problems, key: &str, suffix: &str) {
    if suffix.is_empty() {
        problems.at(key, "must not be empty");
    } else if suffix.contains('/') {
        problems.at(key, format!("`{suffix}` must not contain `/`"));
    }
}

impl SourceConfig for SpooldirConfig {
    fn validate(&self, problems: &mut Problems) {
        super::check_path(problems, "path", &self.path);
        let dir = Path::new(&self.path);
        if !self.path.trim().is_empty() && dir.exists() && !dir.is_dir() {
            problems.at(
                "path",
                format!("{} is not a directory; name the spool directory", self.path),
            );
        }
        if let Err(e) = glob::Pattern::new(&self.include) {
            problems.at(
                "include",
                format!("`{}` is not a valid glob: {e}", self.include),
            );
        } else if self.include.contains('/') {
            problems.at(
                "include",
                format!("`{}` must match file names, without `/`", self.include),
            );
        }
        for (i, pattern) in self.ignore.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(pattern) {
                problems.at_path(
                    &["ignore", &i.to_string()],
                    format!("`{pattern}` is not a valid glob: {e}"),
                );
            }
        }
        check_suffix(problems, "done_suffix", &self.done_suffix);
        if self.done_suffix == CHANGED_SUFFIX {
            problems.at(
                "done_suffix",
                format!("`{CHANGED_SUFFIX}` marks files that changed while being read"),
            );
        }
        if let Some(suffix) = &self.completion_suffix {
            check_suffix(problems, "completion_suffix", suffix);
            if *suffix == self.done_suffix {
                problems.at(
                    "completion_suffix",
                    "must differ from `done_suffix` (done files would be read again)",
                );
            }
        }
        problems.range("quiet_period_ms", self.quiet_period_ms, 0, 86_400_000);
        problems.range("poll_interval_ms", self.poll_interval_ms, 10, 3_600_000);
        let path_tag = self.tags.path.resolve("file");
        let basename_tag = self.tags.basename.resolve("basename");
        for (key, name) in [("path", &path_tag), ("basename", &basename_tag)] {
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                problems.at_path(
                    &["tags", key],
                    "must not be empty (use `false` for no such tag)",
                );
            }
        }
        if path_tag.is_some() && path_tag == basename_tag {
            problems.at("tags", "`path` and `basename` must be different tags");
        }
    }

    fn reads_file(&self, path: &Path) -> bool {
        fn absolute(p: &Path) -> PathBuf {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            std::fs::canonicalize(&p).unwrap_or(p)
        }
        let dir = absolute(Path::new(&self.path));
        let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => absolute(p),
            None => absolute(Path::new(".")),
        };
        if self.recursive {
            parent.starts_with(&dir)
        } else {
            parent == dir
        }
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let SourceContext {
                name,
                batcher,
                shutdown,
                data_dir,
                recovered,
            } = cx;
            // Validated before the source runs.
            let names = Names {
                include: glob::Pattern::new(&config.include)
                    .unwrap_or_else(|_| glob::Pattern::new("*").expect("a valid glob")),
                ignore: config
                    .ignore
                    .iter()
                    .filter_map(|p| glob::Pattern::new(p).ok())
                    .collect(),
                done_suffix: config.done_suffix.clone(),
                completion_suffix: config.completion_suffix.clone(),
                follow_symlinks: config.follow_symlinks,
            };
            let (resume, acked_seq) = load_positions(&name, &data_dir, &batcher, &recovered);
            let runner = Runner {
                counters: SpoolCounters::new(&name),
                position_path: data_dir
                    .join("spooldir")
                    .join(format!("{name}.positions.json")),
                source: name,
                dir: PathBuf::from(&config.path),
                names,
                recursive: config.recursive,
                quiet: Duration::from_millis(config.quiet_period_ms),
                order: config.order,
                on_done: config.on_done,
                poll_interval: Duration::from_millis(config.poll_interval_ms),
                path_tag: config.tags.path.resolve("file"),
                basename_tag: config.tags.basename.resolve("basename"),
                max_line_bytes: batcher.max_line_bytes(),
                acked_seq,
                positions_dirty: true,
                position_error: None,
                resume,
                seen: HashSet::new(),
                current: None,
                finishing: Vec::new(),
                stuck: Vec::new(),
                quiet_state: Quiet::default(),
                queue: VecDeque::new(),
                next_key: 0,
                reported: HashMap::new(),
                skipped_links: HashSet::new(),
                chunk: vec![0; CHUNK],
                lines: Vec::new(),
                watcher: None,
                watching: false,
            };
            runner.run(batcher, shutdown).await;
        })
    }
}

/// The saved positions: the position file overlaid with the channels' newer ones.
/// Returns them and the number of the last batch either knows of.
fn load_positions(
    name: &str,
    data_dir: &Path,
    batcher: &Batcher,
    recovered: &super::Recovered,
) -> (Resume, Option<u64>) {
    let path = data_dir
        .join("spooldir")
        .join(format!("{name}.positions.json"));
    let saved = positions::load(&path).unwrap_or_else(|message| {
        batcher.error(
            &format!("{message}; files are read from their start (already renamed ones are not read again)"),
            None,
        );
        None
    });
    let (entries, last_seq) = positions::resume_points(saved, recovered);
    (entries.unwrap_or_default(), last_seq)
}

/// How reading a file ended.
enum Ending {
    /// Read whole.
    Done,
    /// It changed while being read.
    Changed(Change),
}

/// A file no longer read, waiting for its batches to be acknowledged.
struct Finishing {
    reading: Reading,
    ending: Ending,
}

/// What putting a file away came to.
enum PutAway {
    Done(Finished),
    /// Found changed at the last check, then renamed to `.CHANGED` (or the error).
    ChangedLate(Change, std::io::Result<Finished>),
    /// Changed while being read; renamed to `.CHANGED` (or the error).
    Changed(std::io::Result<Finished>),
    /// Gone or replaced after it was read whole: nothing to rename.
    Gone(Change),
    Failed(std::io::Error),
}

/// The running source.
struct Runner {
    source: Arc<str>,
    dir: PathBuf,
    names: Names,
    recursive: bool,
    quiet: Duration,
    order: Order,
    on_done: OnDone,
    poll_interval: Duration,
    path_tag: Option<Arc<str>>,
    basename_tag: Option<Arc<str>>,
    max_line_bytes: usize,
    position_path: PathBuf,
    /// The number of the last batch acknowledged (saved in the position file).
    acked_seq: Option<u64>,
    positions_dirty: bool,
    position_error: Option<String>,
    /// Saved positions of files not picked yet in this run.
    resume: Resume,
    /// The identities the last listing found (their saved positions are kept).
    seen: HashSet<(u64, u64)>,
    current: Option<Reading>,
    finishing: Vec<Finishing>,
    /// Files read whole whose rename or delete failed: not picked again in this run;
    /// their position (at their end) is kept, so a restart only puts them away.
    stuck: Vec<Entry>,
    quiet_state: Quiet,
    /// Ready files of the last listing, in reading order.
    queue: VecDeque<Found>,
    next_key: u64,
    /// The error last reported per path (each reported once until it changes).
    reported: HashMap<PathBuf, String>,
    /// Symbolic links skipped (each logged and counted once while it is there).
    skipped_links: HashSet<PathBuf>,
    counters: SpoolCounters,
    chunk: Vec<u8>,
    lines: Vec<(Line, Option<usize>)>,
    watcher: Option<notify::RecommendedWatcher>,
    watching: bool,
}

impl Runner {
    async fn run(mut self, mut batcher: Batcher, shutdown: CancellationToken) {
        let mut acks = batcher.acknowledged(self.acked_seq);
        let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
        let (dir_tx, mut dir_rx) = mpsc::channel::<()>(1);
        self.watcher = super::taildir::watcher(wake_tx, dir_tx)
            .map_err(|e| {
                tracing::debug!(source = %self.source, "no change notifications: {e}; polling");
            })
            .ok();
        let mut next_scan = Instant::now();
        let mut last_scan = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if self.current.is_none() {
                if self.queue.is_empty() && Instant::now() >= next_scan {
                    self.scan(&batcher).await;
                    last_scan = Instant::now();
                    next_scan = last_scan + self.poll_interval;
                }
                self.open_next(&batcher);
            }
            let more = self.read_turn(&mut batcher, &shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            while let Ok(acked) = acks.try_recv() {
                self.apply_acks(acked);
            }
            self.put_away(Some(&batcher)).await;
            self.write_positions(Some(&batcher)).await;
            if more || (self.current.is_none() && !self.queue.is_empty()) {
                // More to read: only flush a due batch, then read on.
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = batcher.due() => batcher.flush().await,
                    _ = std::future::ready(()) => {}
                }
                if dir_rx.try_recv().is_ok() {
                    next_scan = next_scan.min(last_scan + MIN_SCAN_GAP);
                }
                continue;
            }
            // Nothing to read: the next listing is due, or the current file failed to
            // read and is tried again after a poll interval.
            let wake_at = match self.current {
                Some(_) => Instant::now() + self.poll_interval,
                None => next_scan,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = batcher.due() => batcher.flush().await,
                Some(acked) = acks.recv() => self.apply_acks(acked),
                _ = wake_rx.recv() => {}
                _ = dir_rx.recv() => next_scan = next_scan.min(last_scan + MIN_SCAN_GAP),
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }

        // Stop: hand over what is buffered, wait for its acknowledgement (the receiver
        // ends once the batcher and every pending ack are gone), put away what is done.
        batcher
            .finish(&mut acks, ACK_WAIT, |acked| self.apply_acks(acked))
            .await;
        self.put_away(None).await;
        self.positions_dirty = true;
        self.write_positions(None).await;
    }

    /// Reports an error (counted as the source's `errors`); without a batcher (while
    /// stopping), only logs it.
    fn error(&self, batcher: Option<&Batcher>, message: &str) {
        match batcher {
            Some(b) => b.error(&message, None),
            None => tracing::error!(source = %self.source, "{message}"),
        }
    }

    /// Reports an error about `path` once (again only when it changes).
    fn report(&mut self, batcher: &Batcher, path: &Path, message: String) {
        if self.reported.get(path) != Some(&message) {
            batcher.error(&message, None);
            self.reported.insert(path.to_path_buf(), message);
        }
    }

    fn tags_for(&self, path: &Path) -> Tags {
        let mut tags = Tags::default();
        if let Some(name) = &self.path_tag {
            tags.set(name.clone(), path.to_string_lossy().as_ref());
        }
        if let Some(name) = &self.basename_tag {
            let base = path.file_name().unwrap_or_default().to_string_lossy();
            tags.set(name.clone(), base.as_ref());
        }
        tags
    }

    /// Whether the file `id` is being read, waits to be put away, or is stuck.
    fn busy(&self, id: (u64, u64)) -> bool {
        self.current.as_ref().is_some_and(|r| r.picked.id == id)
            || self.finishing.iter().any(|f| f.reading.picked.id == id)
            || self.stuck.iter().any(|e| (e.dev, e.inode) == id)
    }

    /// Watches the spool directory (tried again at each scan until it works).
    fn watch(&mut self) {
        if self.watching {
            return;
        }
        let mode = if self.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Some(w) = self.watcher.as_mut() {
            self.watching = w.watch(&self.dir, mode).is_ok();
        }
    }

    /// Lists the directory and queues the ready files in reading order.
    async fn scan(&mut self, batcher: &Batcher) {
        self.watch();
        let (dir, names, recursive) = (self.dir.clone(), self.names.clone(), self.recursive);
        let listing = match tokio::task::spawn_blocking(move || {
            select::list(&dir, &names, recursive)
        })
        .await
        {
            Ok(l) => l,
            Err(e) => {
                batcher.error(&format!("listing the spool directory failed: {e}"), None);
                return;
            }
        };
        let mut keep: HashSet<PathBuf> = HashSet::new();
        for (path, message) in listing.errors {
            keep.insert(path.clone());
            self.report(batcher, &path, message);
        }
        let links: HashSet<PathBuf> = listing.symlinks.into_iter().collect();
        for link in links.difference(&self.skipped_links) {
            SpoolSymlinkSkipped {
                source: &self.source,
                path: link,
            }
            .emit(&self.counters);
        }
        self.skipped_links = links;
        self.seen = listing.found.iter().map(|f| f.id).collect();
        keep.extend(listing.found.iter().map(|f| f.path.clone()));
        self.reported.retain(|p, _| keep.contains(p));
        let mut ready = self.quiet_state.ready(
            listing.found,
            self.quiet,
            self.names.completion_suffix.is_some(),
            Instant::now(),
            SystemTime::now(),
        );
        ready.retain(|f| !self.busy(f.id));
        select::sort(&mut ready, self.order, |f| self.resume.contains_key(&f.id));
        self.queue = ready.into();
    }

    /// Opens a listed file for reading; not through a symbolic link (one put there
    /// since the listing) unless links are followed.
    fn open(&self, path: &Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        if !self.names.follow_symlinks {
            options.custom_flags(libc::O_NOFOLLOW);
        }
        options.open(path)
    }

    /// Opens the next queued file that is still as it was listed.
    fn open_next(&mut self, batcher: &Batcher) {
        while let Some(found) = self.queue.pop_front() {
            if self.busy(found.id) {
                continue;
            }
            let file = match self.open(&found.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let message = format!(
                        "cannot open {}: {e}; skipped (tried again at the next listing)",
                        found.path.display()
                    );
                    self.report(batcher, &found.path, message);
                    continue;
                }
            };
            let picked = match file.metadata() {
                Ok(m) if m.is_file() => Picked::of(&m),
                _ => continue,
            };
            if picked.id != found.id || picked.size != found.size || picked.mtime != found.mtime {
                continue; // changed since the listing: the next ones judge it again
            }
            self.reported.remove(&found.path);
            let (start, fingerprint) = match self.resume.remove(&picked.id) {
                None => (0, Fingerprint::EMPTY),
                Some(entry) => match tracked::resume_at(&file, entry.fingerprint, entry.offset) {
                    Ok(Some(resumed)) => resumed,
                    Ok(None) => {
                        tracing::info!(
                            source = %self.source,
                            "{} is not the file its saved position was for; reading it from its start",
                            found.path.display()
                        );
                        (0, Fingerprint::EMPTY)
                    }
                    Err(e) => {
                        let message = format!("cannot read {}: {e}", found.path.display());
                        self.report(batcher, &found.path, message);
                        continue;
                    }
                },
            };
            tracing::debug!(source = %self.source, "reading {} from byte {start}", found.path.display());
            let key = self.next_key;
            self.next_key += 1;
            self.current = Some(Reading {
                key,
                tags: self.tags_for(&found.path),
                path: found.path,
                file: Arc::new(file),
                picked,
                fingerprint,
                pos: start,
                line_end: start,
                last_mark: None,
                acked: start,
                acked_any: false,
                splitter: LineSplitter::new(self.max_line_bytes),
            });
            self.positions_dirty = true;
            return;
        }
    }

    /// Reads the current file, up to [`TURN_BUDGET`] bytes. Returns whether there is
    /// more to read now.
    async fn read_turn(&mut self, batcher: &mut Batcher, shutdown: &CancellationToken) -> bool {
        let mut budget = TURN_BUDGET;
        loop {
            if shutdown.is_cancelled() {
                return true;
            }
            let Some(r) = self.current.as_mut() else {
                return false;
            };
            let (file, path, picked, pos) = (r.file.clone(), r.path.clone(), r.picked, r.pos);
            let mut fp = r.fingerprint;
            let mut buf = std::mem::take(&mut self.chunk);
            if buf.len() != CHUNK {
                buf = vec![0; CHUNK];
            }
            let joined = tokio::task::spawn_blocking(move || {
                let chunk = reader::read_chunk(&file, &path, &picked, pos, &mut fp, &mut buf);
                (chunk, buf, fp)
            })
            .await;
            let (chunk, buf, fp) = match joined {
                Ok(r) => r,
                Err(e) => (
                    Err(std::io::Error::other(e.to_string())),
                    vec![0; CHUNK],
                    fp,
                ),
            };
            self.chunk = buf;
            let r = self.current.as_mut().expect("still reading");
            r.fingerprint = fp;
            match chunk {
                Err(e) => {
                    let path = r.path.clone();
                    let message = format!(
                        "reading {}: {e} (tried again in {:?})",
                        path.display(),
                        self.poll_interval
                    );
                    self.report(batcher, &path, message);
                    return false;
                }
                Ok(Chunk::Data(n)) => {
                    let base = r.pos;
                    let lines = &mut self.lines;
                    r.splitter
                        .feed_with_ends(&self.chunk[..n], |line, end| lines.push((line, end)));
                    r.pos += n as u64;
                    for (line, end) in self.lines.drain(..) {
                        if let Some(end) = end {
                            r.line_end = base + end as u64;
                        }
                        let body = match line {
                            Line::Whole(b) => b,
                            Line::Truncated(b) => {
                                batcher.truncated();
                                b
                            }
                        };
                        let mark = r.mark(r.line_end);
                        r.last_mark = Some(r.line_end);
                        batcher.push_marked(body, mark, &r.tags).await;
                    }
                    if r.splitter.at_line_start() {
                        r.line_end = r.pos;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return true;
                    }
                }
                Ok(Chunk::End) => {
                    if let Some(last) = r.splitter.finish() {
                        r.line_end = r.pos;
                        let mark = r.mark(r.pos);
                        r.last_mark = Some(r.pos);
                        batcher.push_marked(last, mark, &r.tags).await;
                    }
                    let reading = self.current.take().expect("still reading");
                    self.finishing.push(Finishing {
                        reading,
                        ending: Ending::Done,
                    });
                    return true;
                }
                Ok(Chunk::Changed(change)) => {
                    let reading = self.current.take().expect("still reading");
                    let action = match change {
                        Change::Vanished | Change::Replaced => format!(
                            "stopped reading it after {} bytes; what was read is delivered",
                            reading.line_end
                        ),
                        _ => format!(
                            "stopped reading it after {} bytes; what was read is delivered, and then it is renamed to {}{CHANGED_SUFFIX} (not read again)",
                            reading.line_end,
                            reading.path.display()
                        ),
                    };
                    SpoolFileChanged {
                        source: &self.source,
                        path: &reading.path,
                        change: &change,
                        action: &action,
                    }
                    .emit(&self.counters);
                    self.finishing.push(Finishing {
                        reading,
                        ending: Ending::Changed(change),
                    });
                    self.positions_dirty = true;
                    return true;
                }
            }
        }
    }

    fn apply_acks(&mut self, acked: Acked) {
        self.acked_seq = Some(acked.seq);
        self.positions_dirty = true;
        for mark in acked.marks {
            let reading = self
                .current
                .iter_mut()
                .chain(self.finishing.iter_mut().map(|f| &mut f.reading))
                .find(|r| r.key == mark.key);
            if let Some(r) = reading {
                r.acked = mark.offset;
                r.acked_any = true;
            }
        }
    }

    /// Renames or deletes the files whose every line is in the channels.
    async fn put_away(&mut self, batcher: Option<&Batcher>) {
        let mut i = 0;
        while i < self.finishing.len() {
            if !self.finishing[i].reading.all_acked() {
                i += 1;
                continue;
            }
            let Finishing { reading, ending } = self.finishing.remove(i);
            self.positions_dirty = true;
            let (file, path, picked) = (reading.file.clone(), reading.path.clone(), reading.picked);
            let (on_done, done_suffix) = (self.on_done, self.names.done_suffix.clone());
            let changed = match &ending {
                Ending::Done => None,
                Ending::Changed(c) => Some(c.clone()),
            };
            let outcome = tokio::task::spawn_blocking(move || match changed {
                Some(Change::Vanished | Change::Replaced) => None,
                Some(_) => Some(PutAway::Changed(finish::rename(
                    &path,
                    picked.id,
                    CHANGED_SUFFIX,
                ))),
                None => Some(match picked.check(&file, &path) {
                    Err(e) => PutAway::Failed(e),
                    Ok(Some(c @ (Change::Vanished | Change::Replaced))) => PutAway::Gone(c),
                    Ok(Some(c)) => {
                        PutAway::ChangedLate(c, finish::rename(&path, picked.id, CHANGED_SUFFIX))
                    }
                    Ok(None) => match on_done {
                        OnDone::Rename => match finish::rename(&path, picked.id, &done_suffix) {
                            Ok(f) => PutAway::Done(f),
                            Err(e) => PutAway::Failed(e),
                        },
                        OnDone::Delete => match finish::delete(&path) {
                            Ok(f) => PutAway::Done(f),
                            Err(e) => PutAway::Failed(e),
                        },
                    },
                }),
            })
            .await
            .unwrap_or_else(|e| Some(PutAway::Failed(std::io::Error::other(e.to_string()))));
            self.settle(batcher, reading, outcome);
        }
    }

    /// Reports how putting a file away went; keeps a file that could not be put away
    /// from being read again.
    fn settle(&mut self, batcher: Option<&Batcher>, reading: Reading, outcome: Option<PutAway>) {
        let path = &reading.path;
        let stuck = |reading: &Reading| Entry {
            dev: reading.picked.id.0,
            inode: reading.picked.id.1,
            fingerprint: reading.fingerprint,
            offset: reading.acked,
            path: reading.path.clone(),
        };
        match outcome {
            None => {}
            Some(PutAway::Done(finished)) => {
                let outcome = match &finished {
                    Finished::Renamed(to) => format!("renamed to {}", to.display()),
                    Finished::RenamedAside { taken, to } => {
                        self.error(
                            batcher,
                            &format!(
                                "{} exists already (another file of the same name was spooled before); {} was renamed to {} instead",
                                taken.display(),
                                path.display(),
                                to.display()
                            ),
                        );
                        format!("renamed to {}", to.display())
                    }
                    Finished::Deleted => "deleted".to_owned(),
                };
                SpoolFileDone {
                    source: &self.source,
                    path,
                    outcome: &outcome,
                }
                .emit(&self.counters);
            }
            Some(PutAway::Gone(change)) => self.error(
                batcher,
                &format!(
                    "{} was read whole (all its lines are delivered), but before it could be put away {change}; left alone",
                    path.display()
                ),
            ),
            Some(PutAway::ChangedLate(change, renamed)) => {
                let action = match &renamed {
                    Ok(f) => format!("it was read whole before; {}", describe(f)),
                    Err(e) => format!("it was read whole before; renaming it failed: {e}"),
                };
                SpoolFileChanged {
                    source: &self.source,
                    path,
                    change: &change,
                    action: &action,
                }
                .emit(&self.counters);
                if renamed.is_err() {
                    self.stuck.push(stuck(&reading));
                }
            }
            Some(PutAway::Changed(Ok(f))) => {
                tracing::info!(source = %self.source, "{}: {}", path.display(), describe(&f));
            }
            Some(PutAway::Changed(Err(e))) => {
                self.error(
                    batcher,
                    &format!(
                        "cannot rename {} (changed while being read) to {}{CHANGED_SUFFIX}: {e}; not read again until a restart",
                        path.display(),
                        path.display()
                    ),
                );
                self.stuck.push(stuck(&reading));
            }
            Some(PutAway::Failed(e)) => {
                let what = match self.on_done {
                    OnDone::Rename => "rename",
                    OnDone::Delete => "delete",
                };
                self.error(
                    batcher,
                    &format!(
                        "cannot {what} {} (read whole, all its lines delivered): {e}; it is not read again (after a restart, it is only put away)",
                        path.display()
                    ),
                );
                self.stuck.push(stuck(&reading));
            }
        }
    }

    /// Rewrites the position file if positions changed. Errors are reported once.
    async fn write_positions(&mut self, batcher: Option<&Batcher>) {
        if !self.positions_dirty {
            return;
        }
        self.positions_dirty = false;
        let entry = |r: &Reading| Entry {
            dev: r.picked.id.0,
            inode: r.picked.id.1,
            fingerprint: r.fingerprint,
            offset: r.acked,
            path: r.path.clone(),
        };
        let mut files: Vec<Entry> = self
            .current
            .iter()
            .chain(self.finishing.iter().map(|f| &f.reading))
            .map(entry)
            .collect();
        files.extend(self.stuck.iter().cloned());
        files.extend(
            self.resume
                .iter()
                .filter(|(id, _)| self.seen.contains(id))
                .map(|(_, e)| e.clone()),
        );
        let saved = positions::Saved {
            seq: self.acked_seq,
            files,
        };
        let target = self.position_path.clone();
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
                let message = format!(
                    "cannot write the position file {}: {e}",
                    self.position_path.display()
                );
                if self.position_error.as_ref() != Some(&message) {
                    self.error(batcher, &message);
                    self.position_error = Some(message);
                }
                self.positions_dirty = true;
            }
        }
    }
}

fn describe(f: &Finished) -> String {
    match f {
        Finished::Renamed(to) => format!("renamed to {}", to.display()),
        Finished::RenamedAside { taken, to } => {
            format!("renamed to {} ({} exists)", to.display(), taken.display())
        }
        Finished::Deleted => "deleted".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SpooldirConfig {
        toml::from_str(text).unwrap()
    }

    /// The problems found, as their debug form (key paths and messages).
    fn problems(c: &SpooldirConfig) -> String {
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
        let c = config("path = \"/var/spool/app\"");
        assert_eq!(c.include, "*");
        assert_eq!(c.on_done, OnDone::Rename);
        assert_eq!(c.done_suffix, ".COMPLETED");
        assert_eq!(c.order, Order::Oldest);
        assert_eq!((c.quiet_period_ms, c.poll_interval_ms), (5000, 1000));
        assert_eq!(c.tags.path.resolve("file").as_deref(), Some("file"));
        assert_eq!(c.tags.basename.resolve("basename"), None);
        assert_eq!(problems(&c), "");
        assert!(c.reads_file(Path::new("/var/spool/app/x.log")));
        assert!(!c.reads_file(Path::new("/var/spool/app/sub/x.log")));
        assert!(!c.reads_file(Path::new("/var/spool/other.log")));
        let c = config("path = \"/var/spool/app\"\nrecursive = true");
        assert!(c.reads_file(Path::new("/var/spool/app/sub/x.log")));

        let c = config(
            "path = \"\"\ninclude = \"[x\"\nignore = [\"ok\", \"[\"]\ndone_suffix = \"a/b\"\npoll_interval_ms = 1",
        );
        let p = problems(&c);
        for key in [
            "[\"path\"]",
            "[\"include\"]",
            "[\"ignore\", \"1\"]",
            "[\"done_suffix\"]",
            "[\"poll_interval_ms\"]",
        ] {
            assert!(p.contains(key), "{key} in {p}");
        }
        assert!(!p.contains("\"0\""), "{p}");
        let c = config("path = \"/s\"\ncompletion_suffix = \".COMPLETED\"");
        assert!(problems(&c).contains("[\"completion_suffix\"]"));
        let c = config("path = \"/s\"\ndone_suffix = \".CHANGED\"");
        assert!(problems(&c).contains("[\"done_suffix\"]"));
        let c = config("path = \"/s\"\ntags = { path = \"t\", basename = \"t\" }");
        assert!(problems(&c).contains("[\"tags\"]"));
        let c = config("path = \"/s\"\non_done = \"delete\"\norder = \"youngest\"");
        assert_eq!((c.on_done, c.order), (OnDone::Delete, Order::Youngest));
        assert!(toml::from_str::<SpooldirConfig>("path = \"/s\"\non_done = \"archive\"").is_err());
        assert!(toml::from_str::<SpooldirConfig>("path = \"/s\"\nbogus = 1").is_err());
        // A path that is a file.
        let f = tempfile::NamedTempFile::new().unwrap();
        let c = config(&format!("path = \"{}\"", f.path().display()));
        assert!(problems(&c).contains("not a directory"));
    }
}
