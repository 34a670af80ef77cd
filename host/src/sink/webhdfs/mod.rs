//! The `webhdfs` sink: writes events into HDFS files through the WebHDFS REST API
//! ([`client`]), the way Flume's HDFS sink lays them out.
//!
//! - **Buckets.** `path` and `file_prefix` form one [`Template`]
//!   (`/logs/{name}/%Y/%m/%d/%H` + `events`): each event goes to the file of its bucket,
//!   named `PREFIX.<unix ms>[file_suffix][.gz]`, a batch split into one run per file.
//! - **In use.** A file being written carries `in_use_suffix` (`.tmp`) and is renamed to
//!   its final name (`RENAME`) when it is closed: when a roll limit is reached, when it
//!   has not been written for `idle_close_secs`, when too many are open, when the sink
//!   stops. Readers of the final names never see a file still growing.
//! - **Commit after HDFS acknowledged.** A file is made by `CREATE` with its first
//!   batch and grows by `APPEND`; the batch is delivered when every file it went to
//!   answered. A write whose outcome is unknown (no answer, an error after the redirect)
//!   leaves its file *unsettled*: before the file is written again, `GETFILESTATUS` shows
//!   what it holds and `TRUNCATE` cuts it back to the last acknowledged length, so the
//!   retry never doubles a batch. A batch that failed in one file is cut back the same
//!   way in the files it had reached.
//! - **Crashes.** The in-use files are listed in `<data_dir>/webhdfs/<sink>.open`
//!   (written before a file is created); at start the files listed there are closed and
//!   renamed, so a crash never leaves a `.tmp` behind for good (Flume leaks them, and
//!   their HDFS leases). A batch acknowledged by HDFS whose commit the crash prevented is
//!   sent again: at least once.
//! - **gzip.** Each run of a batch is one gzip member; a gzip file is a series of
//!   members, whole at every batch boundary, and HDFS's `GzipCodec`, `zcat` and `gzip -d`
//!   read it as one stream.

mod client;

use super::rolling::{Current, RollLimits};
use super::{Part, Payload, SendError, SinkConfig, SinkService, group_by_key};
use crate::compress::Gzip;
use crate::config::Problems;
use crate::encoding::Format;
use crate::event::Event;
use crate::sink::http::Secret;
use crate::template::Template;
use bytes::Bytes;
use client::{HdfsError, Identity, WebHdfs};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebHdfsSinkConfig {
    /// The namenode's HTTP address: `http://namenode:9870`.
    pub namenode: String,
    /// The directory, a template: `/logs/{name}/%Y/%m/%d/%H`.
    pub path: String,
    /// The start of file names, a template too.
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// The end of final file names (`.log`); `.gz` follows it with gzip.
    #[serde(default)]
    pub file_suffix: String,
    /// Added to a file's name while it is written.
    #[serde(default = "default_in_use_suffix")]
    pub in_use_suffix: String,
    /// `user.name` of every request (simple authentication).
    pub user: Option<String>,
    /// A delegation token (`delegation=`), inline or in a file.
    pub delegation_token: Option<Secret>,
    pub delegation_token_file: Option<PathBuf>,
    #[serde(default = "default_format")]
    pub format: Format,
    /// `gzip`: files are gzip streams (one member per batch).
    #[serde(default)]
    pub compression: HdfsCompression,
    /// Roll before a batch would take a file past this many bytes (as stored).
    #[serde(default = "default_roll_bytes")]
    pub roll_bytes: u64,
    pub roll_events: Option<u64>,
    pub roll_interval_secs: Option<u64>,
    /// Close (and rename) a file not written for this long.
    #[serde(default = "default_idle_close_secs")]
    pub idle_close_secs: u64,
    /// At most this many files open at once (the least recently written is closed).
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// How long one request may take.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

#[derive(PartialEq, Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HdfsCompression {
    #[default]
    None,
    Gzip,
}

/// What `file_suffix` and `in_use_suffix` may add to a name: 255 (HDFS's longest name
/// component) − a rendered segment ([`crate::template::MAX_SEGMENT_BYTES`]) − `.<ms>`
/// twice (a taken final name gets another) − `.gz`.
const MAX_SUFFIX_BYTES: usize = 40;

fn default_file_prefix() -> String {
    "events".to_owned()
}

fn default_in_use_suffix() -> String {
    ".tmp".to_owned()
}

fn default_format() -> Format {
    Format::Json
}

/// One HDFS block.
fn default_roll_bytes() -> u64 {
    128 * 1024 * 1024
}

fn default_idle_close_secs() -> u64 {
    60
}

fn default_max_open_files() -> usize {
    64
}

fn default_request_timeout_secs() -> u64 {
    30
}

impl WebHdfsSinkConfig {
    fn template(&self) -> Result<Template, String> {
        format!("{}/{}", self.path.trim_end_matches('/'), self.file_prefix)
            .parse::<Template>()
            .map_err(|e| e.to_string())
    }

    fn limits(&self) -> RollLimits {
        RollLimits::new(
            Some(self.roll_bytes),
            self.roll_events,
            self.roll_interval_secs,
        )
    }

    /// The identity, read from its file when it is there; `Err((key, message))`.
    fn identity(&self) -> Result<Identity, (&'static str, String)> {
        match (
            &self.user,
            &self.delegation_token,
            &self.delegation_token_file,
        ) {
            (_, Some(_), Some(_)) => Err((
                "delegation_token_file",
                "set `delegation_token` or `delegation_token_file`, not both".into(),
            )),
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err((
                "user",
                "set `user` or a delegation token, not both (the token names its user)".into(),
            )),
            (Some(user), None, None) if user.is_empty() => {
                Err(("user", "must not be empty".into()))
            }
            (Some(user), None, None) => Ok(Identity::User(user.clone())),
            (None, Some(Secret(token)), None) if token.is_empty() => {
                Err(("delegation_token", "must not be empty".into()))
            }
            (None, Some(Secret(token)), None) => Ok(Identity::Delegation(token.clone())),
            (None, None, Some(file)) => crate::bearer::read_file(file)
                .map(Identity::Delegation)
                .map_err(|e| ("delegation_token_file", format!("{}: {e}", file.display()))),
            (None, None, None) => Ok(Identity::Anonymous),
        }
    }
}

impl SinkConfig for WebHdfsSinkConfig {
    fn validate(&self, problems: &mut Problems) {
        match self.namenode.parse::<reqwest::Url>() {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(_) => problems.at("namenode", "must be an http:// or https:// address"),
            Err(e) => problems.at("namenode", format!("`{}`: {e}", self.namenode)),
        }
        if !self.path.starts_with('/') {
            problems.at("path", "must be absolute (start with `/`)");
        } else if let Err(e) = self.path.parse::<Template>() {
            problems.at("path", e.to_string());
        }
        if self.file_prefix.is_empty() || self.file_prefix.contains('/') {
            problems.at("file_prefix", "must be a file name (not empty, no `/`)");
        } else if let Err(e) = self.file_prefix.parse::<Template>() {
            problems.at("file_prefix", e.to_string());
        }
        for (key, value) in [
            ("file_suffix", &self.file_suffix),
            ("in_use_suffix", &self.in_use_suffix),
        ] {
            if value.contains('/') {
                problems.at(key, "must not contain `/`");
            }
        }
        if self.file_suffix.len() + self.in_use_suffix.len() > MAX_SUFFIX_BYTES {
            problems.at(
                "file_suffix",
                format!(
                    "file_suffix and in_use_suffix together must be at most {MAX_SUFFIX_BYTES} bytes (HDFS names end at 255; a rendered name takes up to {})",
                    crate::template::MAX_SEGMENT_BYTES
                ),
            );
        }
        if self.in_use_suffix.is_empty() {
            problems.at(
                "in_use_suffix",
                "must not be empty (it tells a file being written from a finished one)",
            );
        }
        if let Err((key, message)) = self.identity() {
            problems.at(key, message);
        }
        for (key, value) in [
            ("roll_bytes", Some(self.roll_bytes)),
            ("roll_events", self.roll_events),
            ("roll_interval_secs", self.roll_interval_secs),
            ("idle_close_secs", Some(self.idle_close_secs)),
            ("request_timeout_secs", Some(self.request_timeout_secs)),
        ] {
            if value == Some(0) {
                problems.at(key, "must be at least 1");
            }
        }
        if self.max_open_files == 0 {
            problems.at("max_open_files", "must be at least 1");
        }
    }

    fn build(&self, name: &str, data_dir: &Path) -> anyhow::Result<Arc<dyn SinkService>> {
        let identity = self
            .identity()
            .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?;
        let client = WebHdfs::new(
            self.namenode.parse()?,
            identity,
            Duration::from_secs(self.request_timeout_secs),
        )?;
        let ledger = Ledger::open(data_dir.join("webhdfs").join(format!("{name}.open")))?;
        let mut suffix = self.file_suffix.clone();
        if self.compression == HdfsCompression::Gzip {
            suffix.push_str(".gz");
        }
        Ok(Arc::new(WebHdfsService {
            name: name.to_owned(),
            client,
            template: self.template().map_err(anyhow::Error::msg)?,
            suffix,
            in_use_suffix: self.in_use_suffix.clone(),
            format: self.format,
            gzip: self.compression == HdfsCompression::Gzip,
            limits: self.limits(),
            idle_close: Duration::from_secs(self.idle_close_secs),
            max_open_files: self.max_open_files.max(1),
            last_stamp: AtomicU64::new(0),
            encoders: std::sync::Mutex::new(Vec::new()),
            state: tokio::sync::Mutex::new(State {
                open: HashMap::new(),
                closing: ledger.paths.clone(),
                dirs: HashSet::new(),
                ledger,
            }),
        }))
    }
}

/// The in-use files of a sink, on local disk: written before a file is created and
/// after one is renamed, read at start to close what a crash left open.
struct Ledger {
    file: PathBuf,
    paths: Vec<String>,
}

impl Ledger {
    fn open(file: PathBuf) -> anyhow::Result<Self> {
        let paths = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{}: not a list of in-use files: {e}", file.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", file.display())),
        };
        Ok(Self { file, paths })
    }

    fn save(&self, paths: impl Iterator<Item = String>) -> Result<(), HdfsFailure> {
        let paths: Vec<String> = paths.collect();
        let bytes = serde_json::to_vec(&paths).unwrap_or_default();
        crate::files::replace_synced(&self.file, &[&bytes]).map_err(|e| {
            HdfsFailure::Retry(format!(
                "{}: could not record the files in use: {e}",
                self.file.display()
            ))
        })
    }
}

struct WebHdfsService {
    name: String,
    client: WebHdfs,
    /// `path/file_prefix`: renders to a file's *stem*, `/logs/app/2026/11/27/06/events`.
    template: Template,
    /// After `.<ms>` in final names: `file_suffix`, then `.gz` with gzip.
    suffix: String,
    in_use_suffix: String,
    format: Format,
    gzip: bool,
    limits: RollLimits,
    idle_close: Duration,
    max_open_files: usize,
    /// The newest `<ms>` given to a file: names never repeat, even within a millisecond.
    last_stamp: AtomicU64,
    /// Compressors and scratch buffers kept between batches.
    encoders: std::sync::Mutex<Vec<(Gzip, Vec<u8>)>>,
    /// Held through a send: one batch at a time (the files' order is the batches').
    state: tokio::sync::Mutex<State>,
}

struct State {
    /// By stem.
    open: HashMap<String, HdfsFile>,
    /// In-use paths to rename to their final names: closed files whose rename failed,
    /// and at start the files a crash left open.
    closing: Vec<String>,
    /// Directories made (or found) since start.
    dirs: HashSet<String>,
    ledger: Ledger,
}

/// A file being written.
struct HdfsFile {
    /// Its name while in use; the final name is this without the in-use suffix.
    in_use: String,
    /// What HDFS acknowledged.
    current: Current,
    /// Whether HDFS has it (the first write is a `CREATE`).
    created: bool,
    /// A write's outcome is unknown, or a batch that reached it failed elsewhere: what
    /// HDFS holds past `current.bytes` must be cut before the next write.
    unsettled: bool,
    last_write: Instant,
}

/// A failure, as the driver needs to know it.
enum HdfsFailure {
    Retry(String),
    Reject(String),
    /// The file of one stem can never be made ([`HdfsError::refuses_path`]): its part
    /// alone is refused when the stem comes from the events (see [`WebHdfsService::deliver`]).
    Path {
        message: String,
        permanent: bool,
    },
}

impl From<HdfsError> for HdfsFailure {
    fn from(e: HdfsError) -> Self {
        if e.refuses_path() {
            HdfsFailure::Path {
                message: e.to_string(),
                permanent: e.is_permanent(),
            }
        } else if e.is_permanent() {
            HdfsFailure::Reject(e.to_string())
        } else {
            HdfsFailure::Retry(e.to_string())
        }
    }
}

impl From<HdfsFailure> for SendError {
    fn from(f: HdfsFailure) -> Self {
        match f {
            HdfsFailure::Retry(message) => SendError::retry(message),
            HdfsFailure::Reject(message)
            | HdfsFailure::Path {
                message,
                permanent: true,
            } => SendError::reject(message),
            HdfsFailure::Path { message, .. } => SendError::retry(message),
        }
    }
}

impl SinkService for WebHdfsService {
    fn encode(&self, events: &[Event], out: &mut Vec<u8>) {
        self.encode_parts(events, out);
    }

    /// The events grouped by file stem (in order within each), one part per stem; with
    /// gzip each part is one gzip member.
    fn encode_parts(&self, events: &[Event], out: &mut Vec<u8>) -> Vec<Part> {
        let now = crate::event::now_ns();
        let groups = group_by_key(events, |event, stem| self.template.render(event, now, stem));
        let idle = self
            .encoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let (mut gzip, mut plain) = idle.unwrap_or_else(|| (Gzip::new(1), Vec::new()));
        let parts = groups
            .into_iter()
            .map(|(key, group)| {
                let target = if self.gzip { &mut plain } else { &mut *out };
                for (_, event) in &group {
                    self.format.encode(event, target);
                }
                if self.gzip {
                    gzip.compress(&plain, out);
                    plain.clear();
                }
                Part {
                    key,
                    end: out.len(),
                    events: group.len(),
                    positions: group.iter().map(|(position, _)| *position).collect(),
                }
            })
            .collect();
        if plain.capacity() <= 8 << 20 {
            self.encoders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((gzip, plain));
        }
        parts
    }

    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move { self.deliver(&payload).await })
    }

    fn housekeep(self: Arc<Self>) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(async move {
            let mut state = self.state.lock().await;
            self.finish_closing(&mut state).await;
            let due: Vec<String> = state
                .open
                .iter()
                .filter(|(_, f)| {
                    f.last_write.elapsed() >= self.idle_close || self.limits.expired(&f.current)
                })
                .map(|(stem, _)| stem.clone())
                .collect();
            for stem in due {
                self.close_file(&mut state, &stem).await;
            }
        }))
    }

    fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            let stems: Vec<String> = state.open.keys().cloned().collect();
            for stem in stems {
                self.close_file(&mut state, &stem).await;
            }
            if !state.closing.is_empty() {
                tracing::warn!(
                    sink = %self.name,
                    files = ?state.closing,
                    "files still in use at stop (HDFS did not answer); they are renamed at the next start"
                );
            }
        })
    }
}

impl WebHdfsService {
    /// Writes every part of a batch to its file; on a failure, the files it reached are
    /// marked to be cut back before their next write (the retry sends the whole batch).
    /// A part whose file can never be made is refused alone, the others written, when
    /// its stem comes from the events ([`Self::refused_for_good`]).
    async fn deliver(&self, payload: &Payload) -> Result<(), SendError> {
        let mut state = self.state.lock().await;
        self.finish_closing(&mut state).await;
        let mut written: Vec<(String, Current)> = Vec::new();
        let mut refused: Vec<usize> = Vec::new();
        let mut first_refusal = String::new();
        let mut start = 0;
        for (i, part) in payload.parts.iter().enumerate() {
            let data = payload.bytes.slice(start..part.end);
            start = part.end;
            let failure = match self
                .write_part(&mut state, &part.key, data, part.events as u64)
                .await
            {
                Ok(before) => {
                    written.push((part.key.clone(), before));
                    continue;
                }
                Err(failure) => failure,
            };
            if let HdfsFailure::Path { message, .. } = &failure
                && self.refused_for_good().await
            {
                if refused.is_empty() {
                    first_refusal = message.clone();
                }
                refused.push(i);
                continue;
            }
            for (stem, before) in written {
                if let Some(file) = state.open.get_mut(&stem) {
                    file.current = before;
                    file.unsettled = true;
                }
            }
            return Err(failure.into());
        }
        if refused.is_empty() {
            return Ok(());
        }
        let message = match refused.len() {
            1 => first_refusal,
            n => format!("{n} files can never be made, the first: {first_refusal}"),
        };
        Err(SendError::RejectParts {
            parts: refused,
            message,
        })
    }

    /// Whether a path HDFS refuses is the events' doing: the template inserts something
    /// from them, and its own directory (the text before the first placeholder) is a
    /// directory in HDFS. Otherwise the fault is the configuration's or the cluster's,
    /// and retrying (after someone fixes it) loses nothing.
    async fn refused_for_good(&self) -> bool {
        if self.template.is_static() {
            return false;
        }
        let prefix = self.template.literal_prefix();
        match prefix.rfind('/') {
            Some(0) | None => true,
            Some(end) => matches!(
                self.client.status(&prefix[..end]).await,
                Ok(Some(status)) if status.kind == "DIRECTORY"
            ),
        }
    }

    /// Appends one part to the file of its stem: settles the file when it must, rolls
    /// it when a limit is due, creates it with its first part. Returns what the file
    /// held before the part.
    async fn write_part(
        &self,
        state: &mut State,
        stem: &str,
        data: Bytes,
        events: u64,
    ) -> Result<Current, HdfsFailure> {
        if let Some(file) = state.open.get_mut(stem)
            && file.unsettled
        {
            self.settle(file).await?;
        }
        let due = state
            .open
            .get(stem)
            .is_some_and(|f| f.created && self.limits.due(&f.current, data.len() as u64, events));
        if due {
            self.close_file(state, stem).await;
        }
        if !state.open.contains_key(stem) {
            self.open(state, stem).await?;
        }
        let Some(file) = state.open.get_mut(stem) else {
            return Err(HdfsFailure::Retry(format!("{stem}: no file open")));
        };
        let before = file.current;
        let written = if file.created {
            self.client.append(&file.in_use, data.clone()).await
        } else {
            match self.client.create(&file.in_use, data.clone()).await {
                Err(e) if e.is_already_there() && !file.unsettled => {
                    // Not ours (a name of an earlier run, a clock set back): a new name.
                    let taken = std::mem::replace(&mut file.in_use, self.in_use_name(stem));
                    tracing::warn!(sink = %self.name, file = %taken, "a file of that name exists in HDFS; writing {} instead", file.in_use);
                    let in_use = file.in_use.clone();
                    self.record(state)?;
                    let file = state.open.get_mut(stem).expect("just opened");
                    let done = self.client.create(&in_use, data.clone()).await;
                    return self.written(file, done, before, data.len(), events);
                }
                done => done,
            }
        };
        let file = state.open.get_mut(stem).expect("just opened");
        self.written(file, written, before, data.len(), events)
    }

    /// Books the outcome of a write to `file`.
    fn written(
        &self,
        file: &mut HdfsFile,
        done: Result<(), HdfsError>,
        before: Current,
        bytes: usize,
        events: u64,
    ) -> Result<Current, HdfsFailure> {
        match done {
            Ok(()) => {
                file.created = true;
                file.unsettled = false;
                file.current.bytes += bytes as u64;
                file.current.events += events;
                file.last_write = Instant::now();
                Ok(before)
            }
            Err(e) => {
                file.unsettled = true;
                Err(e.into())
            }
        }
    }

    /// Opens a new file for `stem` (not yet in HDFS: its first write creates it), after
    /// closing the least recently written when too many are open; records it in the
    /// ledger and makes its directory.
    async fn open(&self, state: &mut State, stem: &str) -> Result<(), HdfsFailure> {
        if state.open.len() >= self.max_open_files
            && let Some(oldest) = state
                .open
                .iter()
                .min_by_key(|(_, f)| f.last_write)
                .map(|(s, _)| s.clone())
        {
            self.close_file(state, &oldest).await;
        }
        let dir = stem.rsplit_once('/').map_or("/", |(d, _)| d).to_owned();
        if !state.dirs.contains(&dir) {
            self.client.mkdirs(&dir).await?;
            if state.dirs.len() >= 4096 {
                state.dirs.clear();
            }
            state.dirs.insert(dir);
        }
        state.open.insert(
            stem.to_owned(),
            HdfsFile {
                in_use: self.in_use_name(stem),
                current: Current::new(0, 0),
                created: false,
                unsettled: false,
                last_write: Instant::now(),
            },
        );
        if let Err(e) = self.record(state) {
            state.open.remove(stem);
            return Err(e);
        }
        Ok(())
    }

    /// `STEM.<ms><suffix><in-use suffix>`, `<ms>` after every earlier one.
    fn in_use_name(&self, stem: &str) -> String {
        let now = (crate::event::now_ns() / 1_000_000).max(0) as u64;
        let previous = self
            .last_stamp
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        let stamp = now.max(previous + 1);
        format!("{stem}.{stamp}{}{}", self.suffix, self.in_use_suffix)
    }

    /// Writes the ledger: the open files and those waiting to be renamed.
    fn record(&self, state: &State) -> Result<(), HdfsFailure> {
        state.ledger.save(
            state
                .open
                .values()
                .map(|f| f.in_use.clone())
                .chain(state.closing.iter().cloned()),
        )
    }

    /// Makes HDFS hold exactly what it acknowledged of `file`: cuts off what a failed
    /// write may have left after it.
    async fn settle(&self, file: &mut HdfsFile) -> Result<(), HdfsFailure> {
        match self.client.status(&file.in_use).await? {
            None => {
                if file.current.bytes > 0 {
                    tracing::warn!(sink = %self.name, file = %file.in_use, bytes = file.current.bytes, "a file being written is gone from HDFS (deleted or renamed by someone else); the next batch starts it again");
                }
                file.created = false;
                file.current = Current::new(0, 0);
            }
            Some(status) if status.length > file.current.bytes => {
                if !self
                    .client
                    .truncate(&file.in_use, file.current.bytes)
                    .await?
                {
                    return Err(HdfsFailure::Retry(format!(
                        "TRUNCATE {}: HDFS is recovering the last block; trying again",
                        file.in_use
                    )));
                }
                tracing::info!(sink = %self.name, file = %file.in_use, from = status.length, to = file.current.bytes, "cut back what a failed write left");
                file.created = true;
            }
            Some(status) => {
                if status.length < file.current.bytes {
                    tracing::warn!(sink = %self.name, file = %file.in_use, expected = file.current.bytes, found = status.length, "a file in HDFS is shorter than what it acknowledged");
                    file.current.bytes = status.length;
                }
                file.created = true;
            }
        }
        file.unsettled = false;
        Ok(())
    }

    /// Closes the file of `stem`: settles it and renames it to its final name. When HDFS
    /// does not answer, it waits in `closing` (renamed by the next send or housekeeping).
    async fn close_file(&self, state: &mut State, stem: &str) {
        let Some(mut file) = state.open.remove(stem) else {
            return;
        };
        if file.unsettled && self.settle(&mut file).await.is_err() {
            // Still unknown: keep it open, to settle it later.
            state.open.insert(stem.to_owned(), file);
            return;
        }
        if file.created {
            state.closing.push(file.in_use);
            self.finish_closing(state).await;
        } else {
            let _ = self.record(state);
        }
    }

    /// Renames the files waiting in `closing` to their final names; those HDFS does not
    /// answer for stay.
    async fn finish_closing(&self, state: &mut State) {
        if state.closing.is_empty() {
            return;
        }
        let mut left = Vec::new();
        for in_use in std::mem::take(&mut state.closing) {
            match self.rename_final(&in_use).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(sink = %self.name, file = %in_use, "could not close a file (tried again later): {e}");
                    left.push(in_use);
                }
            }
        }
        state.closing = left;
        if let Err(
            HdfsFailure::Retry(e) | HdfsFailure::Reject(e) | HdfsFailure::Path { message: e, .. },
        ) = self.record(state)
        {
            tracing::warn!(sink = %self.name, "{e}");
        }
    }

    /// Renames an in-use file to its final name. Done when the file is no longer there
    /// under its in-use name (an earlier rename whose answer was lost).
    async fn rename_final(&self, in_use: &str) -> Result<(), HdfsError> {
        let Some(final_name) = in_use.strip_suffix(&self.in_use_suffix) else {
            return Ok(());
        };
        if self.client.rename(in_use, final_name).await? {
            tracing::debug!(sink = %self.name, file = %final_name, "closed");
            return Ok(());
        }
        match self.client.status(in_use).await? {
            None => Ok(()),
            Some(_) => {
                // The final name is taken: keep the events under another.
                let other = format!("{final_name}.{}", crate::event::now_ns() / 1_000_000);
                if self.client.rename(in_use, &other).await? {
                    tracing::warn!(sink = %self.name, file = %other, "the final name was taken; closed under another");
                    Ok(())
                } else {
                    Err(HdfsError::Protocol {
                        op: "RENAME",
                        path: in_use.to_owned(),
                        message: format!("HDFS refused to rename it to {final_name} or {other}"),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn config() -> WebHdfsSinkConfig {
        toml::from_str(
            r#"
namenode = "http://127.0.0.1:9"
path = "/logs/{name}/%Y"
format = "raw"
compression = "gzip"
"#,
        )
        .unwrap()
    }

    fn event(name: &str, body: &str) -> Event {
        let mut e = Event::from_body(name.into(), body.as_bytes().to_vec());
        e.timestamp = Some(0);
        e
    }

    #[test]
    fn a_batch_is_split_by_file_stem_each_run_one_gzip_member() {
        let dir = tempfile::tempdir().unwrap();
        let service = config().build("h", dir.path()).unwrap();
        let mut out = Vec::new();
        let events = [event("a", "a1"), event("b", "b1"), event("a", "a2")];
        let parts = service.encode_parts(&events, &mut out);
        let keys: Vec<(&str, usize)> = parts.iter().map(|p| (p.key.as_str(), p.events)).collect();
        assert_eq!(
            keys,
            [("/logs/a/1970/events", 2), ("/logs/b/1970/events", 1)]
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&out[..parts[0].end])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a1\na2\n");
    }

    #[test]
    fn file_names_never_repeat_and_carry_the_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.file_suffix = ".log".into();
        let service = WebHdfsService {
            name: "h".into(),
            client: WebHdfs::new(
                "http://127.0.0.1:9".parse().unwrap(),
                Identity::Anonymous,
                Duration::from_secs(1),
            )
            .unwrap(),
            template: cfg.template().unwrap(),
            suffix: ".log.gz".into(),
            in_use_suffix: ".tmp".into(),
            format: Format::Raw,
            gzip: true,
            limits: cfg.limits(),
            idle_close: Duration::from_secs(60),
            max_open_files: 4,
            last_stamp: AtomicU64::new(0),
            encoders: std::sync::Mutex::new(Vec::new()),
            state: tokio::sync::Mutex::new(State {
                open: HashMap::new(),
                closing: Vec::new(),
                dirs: HashSet::new(),
                ledger: Ledger::open(dir.path().join("h.open")).unwrap(),
            }),
        };
        let names: Vec<String> = (0..100).map(|_| service.in_use_name("/d/events")).collect();
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 100);
        assert!(names[0].starts_with("/d/events.") && names[0].ends_with(".log.gz.tmp"));
    }

    #[test]
    fn the_ledger_survives_a_restart_and_refuses_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhdfs/h.open");
        let ledger = Ledger::open(file.clone()).unwrap();
        assert!(ledger.paths.is_empty());
        assert!(ledger.save(["/a.tmp".to_owned()].into_iter()).is_ok());
        assert_eq!(Ledger::open(file.clone()).unwrap().paths, ["/a.tmp"]);
        std::fs::write(&file, "{").unwrap();
        let e = Ledger::open(file).err().unwrap().to_string();
        assert!(e.contains("h.open: not a list of in-use files"), "{e}");
    }
}
