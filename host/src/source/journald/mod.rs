//! The `journald` source: reads the systemd journal through `journalctl -o json --all
//! --follow` (the system journal, or the journal files or directory given), each entry
//! an event ([`entry`] says how its fields map).
//!
//! - **Cursor**: every entry carries its journal cursor. Entries are noted with the
//!   batch they went into; once a batch is in the source's channels (durably, for a
//!   file channel), the cursor of its last entry is written to the cursor file
//!   (atomically). A restart resumes with `--after-cursor`, so nothing is read twice
//!   after a clean stop, and after a crash at most what was in the channels but not yet
//!   in the cursor file (the last batch or so) comes again.
//! - **First start** (no cursor file): from the journal's start (`read_from = "start"`,
//!   the default) or only what comes from now on (`"end"`).
//! - **Every boot**: `--merge` stops `journalctl --follow` from reading the current boot
//!   only, so entries of a boot that ended before they were shipped (a power cut) are
//!   still read.
//! - **journalctl failing** (exits, cannot start, refuses the cursor): its standard
//!   error is reported and it is started again after 1 s, doubling up to 30 s, from the
//!   last entry read. A cursor journalctl cannot seek to (the file is damaged, or the
//!   journal was vacuumed past it) is reported and dropped: reading starts from the
//!   journal's oldest entry, so nothing is skipped (what was read before comes again).
//! - **Lines that are not entries** are kept whole as events tagged `parse_error` and
//!   counted (`malformed`).

mod entry;

use super::file::ReadFrom;
use super::intern::Interner;
use super::lines::{Line, LineSplitter};
use super::{Acked, Batcher, SourceConfig, SourceContext};
use crate::config::Problems;
use crate::event::Event;
use crate::metrics::{Counter, Registry};
use entry::KeptFields;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long a stopping source waits for its last batches to be in the channels.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// A journalctl run this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldConfig {
    /// Only entries of these units (`journalctl --unit`).
    #[serde(default)]
    pub units: Vec<String>,
    /// Only entries with these syslog identifiers (`--identifier`).
    #[serde(default)]
    pub identifiers: Vec<String>,
    /// Field matches, `FIELD=VALUE` (as journalctl takes them: the same field ORed,
    /// different fields ANDed; `+` between groups ORs them).
    #[serde(default)]
    pub matches: Vec<String>,
    /// Only entries of this priority or more urgent: 0 (emerg) to 7 (debug).
    pub max_priority: Option<u8>,
    /// Read these journal files (`--file`) instead of the system journal.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Read the journal in this directory (`--directory`) instead of the system journal.
    pub directory: Option<PathBuf>,
    /// Where the first start (no cursor yet) begins: `"start"` (default) or `"end"`.
    #[serde(default = "default_read_from")]
    pub read_from: ReadFrom,
    /// Where the cursor is kept; default `<agent data_dir>/journald/<source name>.cursor`.
    pub cursor_file: Option<PathBuf>,
    /// Journal fields kept as event fields: names (`["_UID", "_TRANSPORT"]`), or
    /// `["*"]` for all but the journal's own `__` fields. Default none (the message,
    /// name, level, time and the tags `host`, `unit`, `identifier`, `pid` only).
    #[serde(default)]
    pub fields: Vec<String>,
    /// The journalctl to run (default `journalctl`, from `PATH`).
    #[serde(default = "default_journalctl")]
    pub journalctl: PathBuf,
}

fn default_read_from() -> ReadFrom {
    ReadFrom::Start
}

fn default_journalctl() -> PathBuf {
    PathBuf::from("journalctl")
}

impl JournaldConfig {
    fn kept_fields(&self) -> KeptFields {
        if self.fields.iter().any(|f| f == "*") {
            KeptFields::All
        } else {
            KeptFields::Named(self.fields.clone())
        }
    }

    /// journalctl's arguments: follow, as JSON, from `cursor` (else from where
    /// `read_from` says).
    fn arguments(&self, cursor: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--output=json",
            "--all",
            "--follow",
            "--merge",
            "--no-pager",
        ]
        .map(String::from)
        .to_vec();
        match (cursor, self.read_from) {
            (Some(cursor), _) => args.push(format!("--after-cursor={cursor}")),
            (None, ReadFrom::Start) => args.push("--lines=all".into()),
            (None, ReadFrom::End) => args.push("--lines=0".into()),
        }
        if let KeptFields::Named(names) = self.kept_fields() {
            let mut wanted: Vec<&str> = entry::MAPPED_FIELDS.to_vec();
            wanted.extend(names.iter().map(String::as_str));
            args.push(format!("--output-fields={}", wanted.join(",")));
        }
        for file in &self.files {
            args.push(format!("--file={}", file.display()));
        }
        if let Some(dir) = &self.directory {
            args.push(format!("--directory={}", dir.display()));
        }
        if let Some(p) = self.max_priority {
            args.push(format!("--priority={p}"));
        }
        args.extend(self.units.iter().map(|u| format!("--unit={u}")));
        args.extend(self.identifiers.iter().map(|i| format!("--identifier={i}")));
        args.extend(self.matches.iter().cloned());
        args
    }

    fn cursor_path(&self, data_dir: &Path, source: &str) -> PathBuf {
        self.cursor_file
            .clone()
            .unwrap_or_else(|| data_dir.join("journald").join(format!("{source}.cursor")))
    }
}

impl SourceConfig for JournaldConfig {
    fn validate(&self, problems: &mut Problems) {
        if let Some(p) = self.max_priority
            && p > 7
        {
            problems.at("max_priority", "must be 0 (emerg) to 7 (debug)");
        }
        if !self.files.is_empty() && self.directory.is_some() {
            problems.at("directory", "set `files` or `directory`, not both");
        }
        for (i, m) in self.matches.iter().enumerate() {
            let valid = m == "+"
                || m.split_once('=').is_some_and(|(field, _)| {
                    !field.is_empty()
                        && field
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                });
            if !valid {
                problems.at_path(
                    &["matches", &i.to_string()],
                    format!("{m:?}: must be FIELD=VALUE (an upper-case field name) or \"+\""),
                );
            }
        }
        for (key, list) in [("units", &self.units), ("identifiers", &self.identifiers)] {
            if list.iter().any(|v| v.is_empty() || v.starts_with('-')) {
                problems.at(key, "names must not be empty or start with '-'");
            }
        }
        if self.fields.iter().any(|f| f.is_empty() || f.contains(',')) {
            problems.at("fields", "field names must not be empty or hold ','");
        }
        for (i, file) in self.files.iter().enumerate() {
            if !file.is_file() {
                problems.at_path(
                    &["files", &i.to_string()],
                    format!("{}: no such journal file", file.display()),
                );
            }
        }
        if let Some(dir) = &self.directory
            && !dir.is_dir()
        {
            problems.at("directory", format!("{}: no such directory", dir.display()));
        }
    }

    fn reads_file(&self, path: &Path) -> bool {
        self.files.iter().any(|f| super::same_file(f, path))
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let cursor_path = config.cursor_path(&cx.data_dir, &cx.name);
            let cursor = match std::fs::read_to_string(&cursor_path) {
                Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    cx.batcher.error(
                        &format_args!(
                            "journald: cursor file {}: {e}; reading from `read_from`",
                            cursor_path.display()
                        ),
                        None,
                    );
                    None
                }
            };
            let malformed = Registry::global().counter(&format!("source.{}", cx.name), "malformed");
            let mut journal = Journal {
                kept: config.kept_fields(),
                config,
                read: cursor.clone(),
                committed: cursor,
                cursor_path,
                unacked: VecDeque::new(),
                strings: Interner::default(),
                malformed,
                name: cx.name.clone(),
            };
            journal.run(cx).await;
        })
    }
}

struct Journal {
    config: JournaldConfig,
    kept: KeptFields,
    /// The cursor of the last entry read (where a new journalctl starts).
    read: Option<String>,
    /// The cursor in the cursor file.
    committed: Option<String>,
    cursor_path: PathBuf,
    /// The last cursor of each batch not yet in the channels, with its batch number.
    unacked: VecDeque<(u64, String)>,
    strings: Interner,
    malformed: Counter,
    name: Arc<str>,
}

/// How a journalctl run ended.
enum Ended {
    Stopped,
    Exited(String),
}

impl Journal {
    async fn run(&mut self, cx: SourceContext) {
        let SourceContext {
            mut batcher,
            shutdown,
            ..
        } = cx;
        let mut acks = batcher.acknowledged_batches();
        let mut retry = FIRST_RETRY;
        loop {
            let started = Instant::now();
            let ended = match self.spawn() {
                Ok(child) => self.follow(child, &mut batcher, &shutdown, &mut acks).await,
                Err(e) => Ended::Exited(format!(
                    "cannot run {}: {e}",
                    self.config.journalctl.display()
                )),
            };
            let reason = match ended {
                Ended::Stopped => break,
                Ended::Exited(reason) => reason,
            };
            if started.elapsed() >= HEALTHY_RUN {
                retry = FIRST_RETRY;
            }
            batcher.error(&format_args!("journald: {reason}"), Some(retry));
            batcher.flush().await;
            let deadline = Instant::now() + retry;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(acked) = acks.recv() => self.acked(acked),
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
        // The cursor file ends where the channels do.
        batcher
            .finish(&mut acks, ACK_WAIT, |acked| self.acked(acked))
            .await;
    }

    fn spawn(&self) -> std::io::Result<Child> {
        Command::new(&self.config.journalctl)
            .args(self.config.arguments(self.read.as_deref()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    }

    /// Reads one journalctl's entries until it exits or the source stops.
    async fn follow(
        &mut self,
        mut child: Child,
        batcher: &mut Batcher,
        shutdown: &CancellationToken,
        acks: &mut mpsc::UnboundedReceiver<Acked>,
    ) -> Ended {
        let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Ended::Exited("journalctl has no output pipes".into());
        };
        // Its complaints (a cursor it cannot seek to, a damaged file), kept for the report.
        let complaints = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut last = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if last.len() == 4 {
                    last.remove(0);
                }
                last.push(line);
            }
            last.join("; ")
        });
        // A JSON line holds more than the message (other fields, escapes): room for it.
        let max_json = batcher
            .max_line_bytes()
            .saturating_mul(6)
            .saturating_add(64 * 1024);
        let mut splitter = LineSplitter::new(max_json);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut lines = Vec::new();
        let mut read_any = false;
        let ended = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ended::Stopped,
                Some(acked) = acks.recv() => self.acked(acked),
                _ = batcher.due() => batcher.flush().await,
                n = stdout.read(&mut chunk) => match n {
                    Ok(0) => break Ended::Exited(String::new()),
                    Ok(n) => {
                        read_any = true;
                        splitter.feed(&chunk[..n], |line| lines.push(line));
                        for line in lines.drain(..) {
                            self.take(line, batcher).await;
                        }
                    }
                    Err(e) => break Ended::Exited(format!("reading journalctl: {e}")),
                },
            }
        };
        let _ = child.start_kill();
        let status = child.wait().await;
        let said = complaints.await.unwrap_or_default();
        match ended {
            Ended::Stopped => Ended::Stopped,
            Ended::Exited(mut reason) => {
                if reason.is_empty() {
                    reason = match status {
                        Ok(s) => format!("journalctl exited ({s})"),
                        Err(e) => format!("journalctl: {e}"),
                    };
                }
                if !said.is_empty() {
                    reason = format!("{reason}: {said}");
                }
                if !read_any && self.read.is_some() && said.contains("cursor") {
                    // A cursor it cannot seek to: start from the oldest entry rather
                    // than skip any.
                    reason =
                        format!("{reason}; dropping the cursor, reading from the journal's start");
                    self.read = None;
                    self.config.read_from = ReadFrom::Start;
                }
                Ended::Exited(reason)
            }
        }
    }

    async fn take(&mut self, line: Line, batcher: &mut Batcher) {
        let (raw, whole) = match line {
            Line::Whole(raw) => (raw, true),
            Line::Truncated(raw) => (raw, false),
        };
        let name = batcher.event_name();
        let parsed = if whole {
            entry::parse(
                &raw,
                &name,
                &self.kept,
                batcher.max_line_bytes(),
                &mut self.strings,
            )
        } else {
            Err(entry::EntryError::NotJson(
                "longer than the line limit".into(),
            ))
        };
        match parsed {
            Ok((entry, cut)) => {
                if cut {
                    batcher.truncated();
                }
                if let Some(cursor) = entry.cursor {
                    let seq = batcher.batch_seq();
                    match self.unacked.back_mut() {
                        Some((s, c)) if *s == seq => *c = cursor.clone(),
                        _ => self.unacked.push_back((seq, cursor.clone())),
                    }
                    self.read = Some(cursor);
                }
                batcher.push_event(entry.event).await;
            }
            Err(reason) => {
                self.malformed.add(1);
                tracing::debug!(source = %self.name, "journald: not an entry: {reason}");
                let mut body = raw;
                body.truncate(batcher.max_line_bytes());
                let mut event = Event::from_body(name, body);
                event.tags.set("parse_error", reason.to_string());
                batcher.push_event(event).await;
            }
        }
    }

    /// A batch is in the channels: the cursor of its last entry (or a later batch's)
    /// goes to the cursor file.
    fn acked(&mut self, acked: Acked) {
        let mut newest = None;
        while self
            .unacked
            .front()
            .is_some_and(|(seq, _)| *seq <= acked.seq)
        {
            newest = self.unacked.pop_front().map(|(_, cursor)| cursor);
        }
        if let Some(cursor) = newest {
            self.commit(cursor);
        }
    }

    fn commit(&mut self, cursor: String) {
        if self.committed.as_ref() == Some(&cursor) {
            return;
        }
        match crate::files::replace(&self.cursor_path, &[cursor.as_bytes(), b"\n"]) {
            Ok(()) => self.committed = Some(cursor),
            Err(e) => tracing::warn!(
                source = %self.name,
                "journald: cannot write the cursor file {}: {e} (entries since the last \
                 cursor written are read again after a restart)",
                self.cursor_path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> JournaldConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn journalctl_arguments() {
        let c = config(
            r#"units = ["ssh.service"]
identifiers = ["kernel"]
matches = ["_TRANSPORT=syslog"]
max_priority = 4
files = ["/j/a.journal"]
fields = ["_UID"]"#,
        );
        let args = c.arguments(None);
        for a in [
            "--output=json",
            "--all",
            "--follow",
            "--merge",
            "--lines=all",
            "--file=/j/a.journal",
            "--priority=4",
            "--unit=ssh.service",
            "--identifier=kernel",
            "_TRANSPORT=syslog",
        ] {
            assert!(args.iter().any(|x| x == a), "{a} in {args:?}");
        }
        let fields = args
            .iter()
            .find(|a| a.starts_with("--output-fields="))
            .unwrap();
        assert!(fields.contains("MESSAGE") && fields.ends_with(",_UID"));
        let resumed = c.arguments(Some("s=1;i=9"));
        assert!(resumed.contains(&"--after-cursor=s=1;i=9".to_owned()));
        assert!(!resumed.iter().any(|a| a.starts_with("--lines")));
        let from_end = config("read_from = \"end\"\nfields = [\"*\"]").arguments(None);
        assert!(from_end.contains(&"--lines=0".to_owned()));
        assert!(!from_end.iter().any(|a| a.starts_with("--output-fields")));
    }

    #[test]
    fn validation_names_the_key() {
        let c = config(
            r#"matches = ["lower=x", "+", "NOEQUALS"]
max_priority = 9
units = ["-x"]
files = ["/nonexistent.journal"]
directory = "/nonexistent""#,
        );
        let mut problems = Problems::default();
        c.validate(&mut problems);
        let text = format!("{problems:?}");
        for key in [
            "\"0\"",
            "\"2\"",
            "max_priority",
            "units",
            "files",
            "directory",
        ] {
            assert!(text.contains(key), "{key} in {text}");
        }
        assert!(!text.contains("[\"matches\", \"1\"]"), "{text}");
    }
}
