//! The `file` sink: appends events as lines to files, creating them (and their
//! directories). The path may be a [`Template`] (`/var/log/runnel/{name}/%Y-%m-%d.log`):
//! each event goes to the file its path renders to, a batch split into one run per file.
//!
//! Writes run on tokio's blocking pool. A batch that fails part-way is cut back to where
//! it started, in every file it had reached, and sent again whole. Before each write the
//! path is checked: when the file was deleted or replaced (rotated away), it is reopened
//! by path, so events never go into a deleted inode where no one can read them. With a
//! roll limit, a file is closed and renamed before the batch that would pass it
//! ([`roll`]). Files not written for `idle_close_secs`, or open past
//! `roll_interval_secs`, are closed (and rolled, when rolling is on: a finished time
//! bucket gets compressed) at the next write or the driver's housekeeping, within a
//! second; at most `max_open_files` stay open.

mod roll;

use super::{Part, Payload, SendError, SinkConfig, SinkService, group_by_key};
use crate::config::Problems;
use crate::encoding::Format;
use crate::event::Event;
use crate::template::Template;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::rolling::{Current, RollLimits};
use roll::{RollPolicy, Roller};

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file, or a template of files (`{name}`, `{fields.KEY}`, `{tags.KEY}`, `%Y` …).
    pub path: String,
    #[serde(default = "default_format")]
    pub format: Format,
    /// Roll a file before a batch would take it past this many bytes.
    pub roll_bytes: Option<u64>,
    /// Roll a file before a batch would take it past this many events.
    pub roll_events: Option<u64>,
    /// Roll a file at the first write after it has been open this long.
    pub roll_interval_secs: Option<u64>,
    /// `gzip`: rolled files are compressed (`PATH.<ms>.gz`).
    #[serde(default)]
    pub compression: RolledCompression,
    /// Rolled files kept per path (the newest); the older ones are deleted.
    pub max_files: Option<usize>,
    /// Close a file not written for this long (checked every second).
    #[serde(default = "default_idle_close_secs")]
    pub idle_close_secs: u64,
    /// At most this many files open at once (the least recently written is closed).
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

#[derive(PartialEq, Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolledCompression {
    #[default]
    None,
    Gzip,
}

fn default_format() -> Format {
    Format::Json
}

fn default_idle_close_secs() -> u64 {
    60
}

fn default_max_open_files() -> usize {
    64
}

impl SinkConfig for FileSinkConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.path.trim().is_empty() {
            problems.at("path", "must not be empty");
        } else if let Err(e) = self.path.parse::<Template>() {
            problems.at("path", e.to_string());
        } else if self.roll_policy().is_some()
            && self
                .path
                .parse::<Template>()
                .is_ok_and(|t| t.literal_has_marker())
        {
            problems.at(
                "path",
                "`~` is kept for the names of rolled files (`PATH.~<ms>`) when rolling is on",
            );
        } else if Path::new(&self.path).is_dir() {
            problems.at("path", format!("{} is a directory", self.path));
        }
        for (key, value) in [
            ("roll_bytes", self.roll_bytes),
            ("roll_events", self.roll_events),
            ("roll_interval_secs", self.roll_interval_secs),
        ] {
            if value == Some(0) {
                problems.at(key, "must be at least 1");
            }
        }
        if self.max_files == Some(0) {
            problems.at(
                "max_files",
                "must be at least 1 (leave it out to keep every rolled file)",
            );
        }
        if self.max_open_files == 0 {
            problems.at("max_open_files", "must be at least 1");
        }
        if self.roll_policy().is_none() {
            if self.compression != RolledCompression::None {
                problems.at(
                    "compression",
                    "compresses rolled files: set roll_bytes, roll_events or roll_interval_secs",
                );
            }
            if self.max_files.is_some() {
                problems.at(
                    "max_files",
                    "counts rolled files: set roll_bytes, roll_events or roll_interval_secs",
                );
            }
        }
    }

    fn writes_file(&self) -> Option<PathBuf> {
        let template: Template = self.path.parse().ok()?;
        template.is_static().then(|| PathBuf::from(&self.path))
    }

    fn build(
        &self,
        _name: &str,
        _data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<dyn SinkService>> {
        let template: Template = self.path.parse()?;
        Ok(Arc::new(FileService {
            format: self.format,
            path: template.is_static().then(|| PathBuf::from(&self.path)),
            template,
            policy: self.roll_policy(),
            idle_close: Duration::from_secs(self.idle_close_secs),
            max_open_files: self.max_open_files.max(1),
            state: Arc::new(Mutex::new(State::default())),
        }))
    }
}

impl FileSinkConfig {
    /// How files roll; `None` when no roll limit is set.
    fn roll_policy(&self) -> Option<RollPolicy> {
        let limits = RollLimits::new(self.roll_bytes, self.roll_events, self.roll_interval_secs);
        limits.any().then_some(RollPolicy {
            limits,
            gzip: self.compression == RolledCompression::Gzip,
            max_files: self.max_files,
        })
    }
}

struct FileService {
    format: Format,
    template: Template,
    /// The one file, when the path has no placeholder.
    path: Option<PathBuf>,
    policy: Option<RollPolicy>,
    idle_close: Duration,
    max_open_files: usize,
    /// Taken by the blocking write and put back after it.
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    open: HashMap<PathBuf, OpenFile>,
    /// Paths whose leftovers of a crash (see [`Roller::recover`]) have been tidied.
    recovered: std::collections::HashSet<PathBuf>,
}

/// A file being written, and what rolling needs to know of it.
struct OpenFile {
    file: File,
    current: Current,
    last_write: Instant,
}

impl OpenFile {
    /// Opens the file at `path` for appending. With `count_events` (a roll by events), a
    /// file that is already there has its lines counted, so a restart of the agent does
    /// not let it grow past the limit (every format writes one line per event).
    fn at(path: &Path, count_events: bool) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let bytes = file.metadata()?.len();
        let events = if count_events && bytes > 0 {
            count_lines(path)?
        } else {
            0
        };
        Ok(Self {
            file,
            current: Current::new(bytes, events),
            last_write: Instant::now(),
        })
    }
}

/// The number of line ends in a file (read in 64 KiB blocks).
fn count_lines(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut block = vec![0; 64 * 1024];
    let mut lines = 0;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &block[..n]).count() as u64;
    }
}

impl SinkService for FileService {
    fn encode(&self, events: &[Event], out: &mut Vec<u8>) {
        for event in events {
            self.format.encode(event, out);
        }
    }

    /// With a path template: the events grouped by the file they go to (in order within
    /// each file), one part per file.
    fn encode_parts(&self, events: &[Event], out: &mut Vec<u8>) -> Vec<Part> {
        if self.path.is_some() {
            self.encode(events, out);
            return Vec::new();
        }
        let now = crate::event::now_ns();
        let groups = group_by_key(events, |event, path| self.template.render(event, now, path));
        groups
            .into_iter()
            .map(|(key, group)| {
                for (_, event) in &group {
                    self.format.encode(event, out);
                }
                Part {
                    key,
                    end: out.len(),
                    events: group.len(),
                    positions: group.iter().map(|(position, _)| *position).collect(),
                }
            })
            .collect()
    }

    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move {
            let service = self.clone();
            tokio::task::spawn_blocking(move || service.write(&payload))
                .await
                .map_err(|e| SendError::retry(format!("the write task failed: {e}")))?
        })
    }

    /// Closes (and rolls) the files that went idle or past their age with no batch.
    fn housekeep(self: Arc<Self>) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                self.close_idle(&mut state);
            })
            .await;
        }))
    }
}

impl FileService {
    /// Writes every part of a batch to its file; on a failure, cuts back what this
    /// attempt wrote to the files before it (the retry writes the whole batch again).
    /// A part whose path can never be a file ([`refused_for_good`]) is refused alone:
    /// the other parts are written, and the driver dead-letters or counts the refused.
    fn write(&self, payload: &Payload) -> Result<(), SendError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let whole;
        let parts: &[Part] = match &self.path {
            Some(path) => {
                whole = [Part {
                    key: path.to_string_lossy().into_owned(),
                    end: payload.bytes.len(),
                    events: payload.events,
                    positions: Vec::new(),
                }];
                &whole
            }
            None => &payload.parts,
        };
        let mut written: Vec<(PathBuf, u64)> = Vec::new();
        let mut refused: Vec<usize> = Vec::new();
        let mut first_refusal = String::new();
        let mut start = 0;
        for (i, part) in parts.iter().enumerate() {
            let path = PathBuf::from(&part.key);
            let bytes = &payload.bytes[start..part.end];
            start = part.end;
            match self.append_part(&mut state, &path, bytes, part.events as u64) {
                Ok(before) => written.push((path, before)),
                Err(e) if self.refused_for_good(&e) => {
                    if refused.is_empty() {
                        first_refusal = format!("{}: {e}", path.display());
                    }
                    refused.push(i);
                }
                Err(e) => {
                    for (path, before) in written {
                        if let Some(open) = state.open.get_mut(&path) {
                            let _ = open.file.set_len(before);
                            open.current.bytes = before;
                        }
                    }
                    return Err(SendError::retry(format!("{}: {e}", path.display())));
                }
            }
        }
        self.close_idle(&mut state);
        if refused.is_empty() {
            return Ok(());
        }
        let message = match refused.len() {
            1 => format!("no file can be written at {first_refusal}"),
            n => format!("no file can be written at {n} paths, the first {first_refusal}"),
        };
        Err(SendError::RejectParts {
            parts: refused,
            message,
        })
    }

    /// Whether `e` (opening, rolling or writing a rendered path) can never go away for
    /// the events that render to that path, so retrying would block the channel for
    /// good: a name too long, a file where a directory must be (or the other way
    /// round), a name the file system refuses (`EINVAL`, `EILSEQ`), a symlink loop.
    /// Errors that can go away stay retried: a full disk or quota, permissions, I/O
    /// errors, a read-only file system. Only for a path template, and only when the
    /// template's own directory is there: a fault there is the environment's, not the
    /// event's, and is retried.
    fn refused_for_good(&self, e: &std::io::Error) -> bool {
        use std::io::ErrorKind;
        let impossible = matches!(
            e.kind(),
            ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::InvalidFilename
        ) || matches!(
            e.raw_os_error(),
            Some(libc::ENAMETOOLONG | libc::EINVAL | libc::EILSEQ | libc::ELOOP)
        );
        if !impossible || self.path.is_some() {
            return false;
        }
        let prefix = self.template.literal_prefix();
        match prefix.rfind('/') {
            Some(0) | None => true,
            Some(end) => Path::new(&prefix[..end]).is_dir(),
        }
    }

    /// Appends one part to its file (rolling it first when due); returns the file's
    /// length before the part.
    fn append_part(
        &self,
        state: &mut State,
        path: &Path,
        bytes: &[u8],
        events: u64,
    ) -> std::io::Result<u64> {
        let roller = self
            .policy
            .as_ref()
            .map(|policy| Roller::new(path.to_path_buf(), policy.clone()));
        if let Some(roller) = &roller
            && !state.recovered.contains(path)
        {
            roller.recover();
            state.recovered.insert(path.to_path_buf());
        }
        if !state.open.contains_key(path) && state.open.len() >= self.max_open_files {
            self.close_least_recent(state);
        }
        let open = match append(
            path,
            roller.as_ref(),
            state.open.remove(path),
            bytes,
            events,
        ) {
            Ok(open) => open,
            Err(e) => {
                // Tidied again at the next attempt: the set stays as small as the open
                // files, even when many paths are refused.
                state.recovered.remove(path);
                return Err(e);
            }
        };
        let before = open.current.bytes - bytes.len() as u64;
        state.open.insert(path.to_path_buf(), open);
        Ok(before)
    }

    /// Closes the files not written for `idle_close`, and those past the roll interval
    /// (rolling them when rolling is on).
    fn close_idle(&self, state: &mut State) {
        let idle: Vec<PathBuf> = state
            .open
            .iter()
            .filter(|(_, open)| {
                open.last_write.elapsed() >= self.idle_close
                    || self
                        .policy
                        .as_ref()
                        .is_some_and(|p| p.limits.expired(&open.current))
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in idle {
            self.close(state, &path);
        }
    }

    fn close_least_recent(&self, state: &mut State) {
        let oldest = state
            .open
            .iter()
            .min_by_key(|(_, open)| open.last_write)
            .map(|(path, _)| path.clone());
        if let Some(path) = oldest {
            self.close(state, &path);
        }
    }

    /// Closes a file; a finished file is rolled when rolling is on (so a time bucket
    /// that is over gets its final name and compression).
    fn close(&self, state: &mut State, path: &Path) {
        let Some(open) = state.open.remove(path) else {
            return;
        };
        // Tidied again if it is opened again: the set stays as small as the open files
        // (a time-templated path makes a new path every bucket).
        state.recovered.remove(path);
        let written = open.current.bytes > 0;
        drop(open);
        if let Some(policy) = &self.policy
            && written
            && let Err(e) = Roller::new(path.to_path_buf(), policy.clone()).roll()
        {
            tracing::warn!(file = %path.display(), "could not roll a closed file: {e}");
        }
    }
}

/// Appends a batch (`bytes`, `events`) to the file at `path`, reusing `open` when it is
/// still the file the path names, and rolling the file first when the batch would take
/// it past a limit. Leaves no torn batch behind on failure.
fn append(
    path: &Path,
    roller: Option<&Roller>,
    open: Option<OpenFile>,
    bytes: &[u8],
    events: u64,
) -> std::io::Result<OpenFile> {
    let count_events = roller.is_some_and(|r| r.policy().limits.max_events.is_some());
    let mut open = match open {
        Some(o) if still_at_path(&o.file, path) => o,
        _ => OpenFile::at(path, count_events)?,
    };
    if let Some(roller) = roller
        && roller
            .policy()
            .limits
            .due(&open.current, bytes.len() as u64, events)
    {
        drop(open);
        let rolled = roller.roll()?;
        tracing::debug!(file = %rolled.display(), "rolled");
        open = OpenFile::at(path, false)?;
    }
    let before = open.file.metadata()?.len();
    if let Err(e) = open.file.write_all(bytes) {
        // The retry writes the whole batch again.
        let _ = open.file.set_len(before);
        return Err(e);
    }
    open.current.bytes = before + bytes.len() as u64;
    open.current.events += events;
    open.last_write = Instant::now();
    Ok(open)
}

/// Whether `path` still names the open file (not deleted, not replaced).
fn still_at_path(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Opens `path` for appending, making its directories. A file where one of them must be
/// is `NotADirectory` (`create_dir_all` says `AlreadyExists` when it is the last one).
fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::create_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is a file, not a directory", dir.display()),
                ));
            }
            Err(e) => return Err(e),
        }
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
        let file = append(&path, None, None, b"one\n", 1).unwrap();
        std::fs::remove_file(&path).unwrap();
        let file = append(&path, None, Some(file), b"two\n", 1).unwrap();
        std::fs::rename(&path, dir.path().join("out.log.1")).unwrap();
        append(&path, None, Some(file), b"three\n", 1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.log.1")).unwrap(),
            "two\n"
        );
    }

    #[test]
    fn rolling_keeps_every_batch_whole_and_in_order_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let roller = Roller::new(
            path.clone(),
            RollPolicy {
                limits: RollLimits::new(Some(20), Some(3), None),
                gzip: false,
                max_files: None,
            },
        );
        let mut open = None;
        let mut sent = String::new();
        for n in 0..12 {
            // Batches of one or two events, 6 bytes each.
            let batch = if n % 2 == 0 {
                format!("e{n:02}-a\n")
            } else {
                format!("e{n:02}-a\ne{n:02}-b\n")
            };
            let events = batch.lines().count() as u64;
            open =
                Some(append(&path, Some(&roller), open.take(), batch.as_bytes(), events).unwrap());
            sent.push_str(&batch);
        }
        let mut files = roller.rolled();
        files.push(path.clone());
        let texts: Vec<String> = files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(texts.concat(), sent, "every event once, in order");
        for text in &texts {
            assert!(text.len() <= 20 && text.lines().count() <= 3, "{text:?}");
            assert!(!text.is_empty());
        }
        assert!(files.len() >= 6, "{files:?}");
    }

    fn config(path: &Path) -> FileSinkConfig {
        FileSinkConfig {
            path: path.display().to_string(),
            format: Format::Raw,
            roll_bytes: None,
            roll_events: None,
            roll_interval_secs: None,
            compression: RolledCompression::None,
            max_files: None,
            idle_close_secs: 60,
            max_open_files: 64,
        }
    }

    fn named(name: &str, body: &str) -> Event {
        let mut e = Event::from_body(name.into(), body.as_bytes().to_vec());
        e.timestamp = Some(0);
        e
    }

    /// Encodes a batch and writes it as the driver would.
    fn deliver(service: &FileService, events: &[Event]) -> Result<(), SendError> {
        let mut bytes = Vec::new();
        let parts = service.encode_parts(events, &mut bytes);
        service.write(&Payload {
            bytes: bytes.into(),
            events: events.len(),
            parts,
        })
    }

    fn service(config: &FileSinkConfig) -> FileService {
        let template: Template = config.path.parse().unwrap();
        FileService {
            format: config.format,
            path: template.is_static().then(|| PathBuf::from(&config.path)),
            template,
            policy: config.roll_policy(),
            idle_close: Duration::from_secs(config.idle_close_secs),
            max_open_files: config.max_open_files,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    #[test]
    fn a_path_template_sends_each_event_to_its_own_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(&config(&dir.path().join("{name}/%Y.log")));
        let batch = [
            named("a", "a1"),
            named("b", "b1"),
            named("a", "a2"),
            named("../b", "up"),
        ];
        deliver(&service, &batch).unwrap();
        deliver(&service, &[named("b", "b2")]).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("a/1970.log"), "a1\na2\n");
        assert_eq!(read("b/1970.log"), "b1\nb2\n");
        assert_eq!(read(".._b/1970.log"), "up\n", "a name cannot climb out");
    }

    #[test]
    fn a_batch_that_fails_in_one_file_is_cut_back_in_the_files_it_reached() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(&config(&dir.path().join("{name}.log")));
        deliver(&service, &[named("a", "a0")]).unwrap();
        // `b.log` cannot be opened for now (a link into a directory not there yet).
        let missing = dir.path().join("later/b.log");
        std::os::unix::fs::symlink(&missing, dir.path().join("b.log")).unwrap();
        let failed = deliver(&service, &[named("a", "a1"), named("b", "b1")]);
        assert!(matches!(failed, Err(SendError::Retry { .. })), "{failed:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log")).unwrap(),
            "a0\n",
            "the retry writes a1 again: it must not be there twice"
        );
        std::fs::create_dir(dir.path().join("later")).unwrap();
        deliver(&service, &[named("a", "a1"), named("b", "b1")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log")).unwrap(),
            "a0\na1\n"
        );
        assert_eq!(std::fs::read_to_string(&missing).unwrap(), "b1\n");
    }

    /// Paths no file can ever have are refused alone; the rest of the batch is written.
    #[test]
    fn a_path_that_can_never_be_a_file_is_refused_and_the_rest_written() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(&config(&dir.path().join("{name}/{fields.f}.log")));
        let with_f = |name: &str, f: &str, body: &str| {
            let mut e = named(name, body);
            e.fields.insert("f", crate::event::Value::String(f.into()));
            e
        };
        std::fs::write(dir.path().join("plain"), "a file\n").unwrap();
        std::fs::create_dir_all(dir.path().join("d/x.log")).unwrap();
        let long = "n".repeat(300);
        let batch = [
            with_f("a", "x", "a1"),
            with_f("plain", "x", "under a file"), // ENOTDIR
            with_f("d", "x", "onto a directory"), // EISDIR
            with_f(&long, "x", "long"),           // bounded: written
            with_f("a", "x", "a2"),
        ];
        let failed = deliver(&service, &batch);
        let Err(SendError::RejectParts { parts, message }) = failed else {
            panic!("{failed:?}");
        };
        assert_eq!(parts, [1, 2], "{message}");
        assert!(
            message.contains("2 paths") && message.contains("plain"),
            "{message}"
        );
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&dir.path().join("a/x.log")), "a1\na2\n");
        let bounded: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().len() > 100)
            .collect();
        assert_eq!(bounded.len(), 1, "{bounded:?}");
        assert_eq!(read(&bounded[0].join("x.log")), "long\n");

        // The template's own directory a file: the environment's fault, retried.
        let file = dir.path().join("plain");
        let service = self::service(&config(&file.join("{name}.log")));
        let failed = deliver(&service, &[named("a", "a")]);
        assert!(matches!(failed, Err(SendError::Retry { .. })), "{failed:?}");
    }

    #[test]
    fn rolling_refuses_the_marker_in_the_path() {
        let mut cfg = config(Path::new("/tmp/x~/{name}.log"));
        let mut problems = Problems::default();
        cfg.validate(&mut problems);
        assert!(problems.is_empty(), "no rolling: `~` is allowed");
        cfg.roll_events = Some(10);
        cfg.validate(&mut problems);
        assert!(!problems.is_empty());
    }

    #[test]
    fn idle_and_excess_files_are_closed_and_rolled() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&dir.path().join("{name}.log"));
        cfg.roll_events = Some(1000);
        cfg.compression = RolledCompression::Gzip;
        cfg.max_open_files = 2;
        let service = service(&cfg);
        for name in ["a", "b", "c"] {
            deliver(&service, &[named(name, name)]).unwrap();
        }
        // Three files, two open at most: `a` (the least recently written) was closed,
        // and closing a written file rolls it.
        let state = service.state.lock().unwrap();
        assert_eq!(state.open.len(), 2);
        assert!(!state.open.contains_key(&dir.path().join("a.log")));
        drop(state);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.contains(&"a.log".to_owned()), "{names:?}");
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("a.log.") && n.ends_with(".gz")),
            "{names:?}"
        );

        let mut idle = cfg.clone();
        idle.idle_close_secs = 0;
        let service = self::service(&idle);
        deliver(&service, &[named("d", "d")]).unwrap();
        assert!(service.state.lock().unwrap().open.is_empty());
        assert!(!dir.path().join("d.log").exists(), "rolled when closed");
    }

    #[tokio::test]
    async fn housekeeping_closes_files_past_their_age_with_no_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&dir.path().join("{name}.log"));
        cfg.roll_interval_secs = Some(1);
        let service = Arc::new(service(&cfg));
        deliver(&service, &[named("a", "a")]).unwrap();
        service.clone().housekeep().unwrap().await;
        assert_eq!(service.state.lock().unwrap().open.len(), 1, "young: open");
        std::thread::sleep(Duration::from_millis(1100));
        service.clone().housekeep().unwrap().await;
        assert!(service.state.lock().unwrap().open.is_empty());
        assert!(!dir.path().join("a.log").exists(), "rolled when closed");
    }
}
