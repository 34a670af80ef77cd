//! The taildir source: patterns, new files, restarts from the position file, rotation
//! by rename, copytruncate and deleted files.

use crate::common::*;
use crate::peer::{Receiver, id_counts, parse_id};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    f.write_all(text.as_bytes()).unwrap();
}

fn numbered(prefix: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("{prefix} {i}")).collect()
}

/// A temporary directory with `logs/` (what the patterns match), the agent's data
/// directory and the sink's output.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        Setup { dir }
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.jsonl")
    }

    /// A config with a taildir source `app` with `paths` (TOML inline table body) and
    /// `extra` settings, into the main channel and a file sink of `format`.
    fn config(&self, paths: &str, extra: &str, format: &str) -> PathBuf {
        write_config(
            self.dir.path(),
            &format!(
                r#"
[agent]
summary_interval_secs = 0
data_dir = "{data}"

[sources.app]
type = "taildir"
paths = {{ {paths} }}
poll_interval_ms = 50
glob_interval_ms = 100
idle_close_ms = 300
channels = ["main"]
batch_timeout_ms = 20
{extra}
{tail}"#,
                data = self.dir.path().join("data").display(),
                tail = main_channel_to_file(&self.out(), format),
            ),
        )
    }

    fn raw_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.out())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Panics unless every line of `expected` was delivered exactly once and nothing else.
fn assert_exactly_once(got: &[String], expected: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in got {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let expected_set: HashSet<&str> = expected.iter().map(String::as_str).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| !counts.contains_key(l.as_str()))
        .take(5)
        .collect();
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    let extra: Vec<_> = counts
        .keys()
        .filter(|l| !expected_set.contains(*l))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && dup.is_empty() && extra.is_empty(),
        "{} lines delivered, {} expected; missing (first 5): {missing:?}; duplicated: {dup:?}; unexpected: {extra:?}",
        got.len(),
        expected.len()
    );
}

#[test]
fn taildir_picks_up_new_files_of_every_pattern_and_tags_them() {
    let s = Setup::new();
    let logs = s.logs();
    let config = s.config(
        &format!(
            r#"app = "{l}/app-*.log", web = "{l}/access.log*""#,
            l = logs.display()
        ),
        "",
        "json",
    );
    let agent = spawn(&config);
    std::thread::sleep(Duration::from_millis(300));
    let files = [
        ("app-1.log", "app"),
        ("app-2.log", "app"),
        ("access.log", "web"),
        ("other.txt", ""),
    ];
    let mut expected = Vec::new();
    for round in 0..3 {
        for (name, pattern) in files {
            let lines = numbered(&format!("{name} r{round}"), 0, 100);
            append(&logs.join(name), &lines);
            if !pattern.is_empty() {
                expected.extend(lines.into_iter().map(|l| (l, name, pattern)));
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    wait_for_lines(&s.out(), expected.len(), WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");

    let events = json_lines(&s.out());
    let got: Vec<String> = events
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = expected.iter().map(|(l, _, _)| l.clone()).collect();
    assert_exactly_once(&got, &want);
    let by_line: HashMap<&str, (&str, &str)> = expected
        .iter()
        .map(|(l, n, p)| (l.as_str(), (*n, *p)))
        .collect();
    for e in &events {
        let (name, pattern) = by_line[e["body"].as_str().unwrap()];
        assert_eq!(
            e["tags"]["file"],
            logs.join(name).display().to_string(),
            "{e}"
        );
        assert_eq!(e["tags"]["pattern"], pattern, "{e}");
    }
    // The position file records the three files.
    let positions =
        std::fs::read_to_string(s.dir.path().join("data/taildir/app.positions.json")).unwrap();
    let positions: serde_json::Value = serde_json::from_str(&positions).unwrap();
    assert_eq!(
        positions["files"].as_array().unwrap().len(),
        3,
        "{positions}"
    );
}

#[test]
fn taildir_resumes_after_a_restart_with_every_line_exactly_once() {
    let s = Setup::new();
    let log = s.logs().join("app.log");
    let config = s.config(
        &format!(r#"app = "{}/*.log""#, s.logs().display()),
        "",
        "raw",
    );
    let total = 60_000;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..total / 500 {
                append(&log, &numbered("line", i * 500, 500));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let agent = spawn(&config);
    wait_for_lines(&s.out(), 5_000, WAIT);
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    let delivered_first = count_lines(&s.out());

    let agent = spawn(&config);
    writer.join().unwrap();
    // An unterminated last line is held until its end arrives.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"line 600").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    f.write_all(b"00\n").unwrap();
    wait_for_lines(&s.out(), total + 1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");

    let mut expected = numbered("line", 0, total);
    expected.push("line 60000".to_owned());
    assert!(
        delivered_first < expected.len(),
        "the first run read everything"
    );
    assert_exactly_once(&s.raw_lines(), &expected);
}

#[test]
fn taildir_follows_fast_renames_without_losing_lines() {
    let s = Setup::new();
    let log = s.logs().join("app.log");
    let config = s.config(
        &format!(r#"app = "{}/app.log*""#, s.logs().display()),
        "",
        "raw",
    );
    let agent = spawn(&config);
    std::thread::sleep(Duration::from_millis(300));
    let per_file = 2_000;
    for i in 0..20 {
        append(&log, &numbered(&format!("file {i} line"), 0, per_file));
        std::thread::sleep(Duration::from_millis(5));
        std::fs::rename(&log, s.logs().join(format!("app.log.{i}"))).unwrap();
    }
    let expected: Vec<String> = (0..20)
        .flat_map(|i| numbered(&format!("file {i} line"), 0, per_file))
        .collect();
    wait_for_lines(&s.out(), expected.len(), WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    assert_exactly_once(&s.raw_lines(), &expected);
}

#[test]
fn taildir_copytruncate_loses_nothing_and_splices_nothing() {
    let s = Setup::new();
    let log = s.logs().join("app.log");
    let config = s.config(
        &format!(r#"app = "{}/app.log*""#, s.logs().display()),
        "",
        "raw",
    );
    let agent = spawn(&config);
    std::thread::sleep(Duration::from_millis(300));
    let old = numbered("old line with some padding to make it longer", 0, 100_000);
    let new = numbered(
        "new line, with padding to make it longer than the old ones",
        0,
        120_000,
    );
    // Write a lot, ending in an unterminated line; copy it away and truncate it at
    // once, then write more than before: the agent is still busy with the old content.
    append(&log, &old);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"old unterminated")
        .unwrap();
    let old_size = std::fs::metadata(&log).unwrap().len();
    std::fs::copy(&log, s.logs().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &new);
    assert!(std::fs::metadata(&log).unwrap().len() > old_size);

    wait_for_lines(&s.out(), old.len() + new.len(), WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");

    let got = s.raw_lines();
    let got_set: HashSet<&str> = got.iter().map(String::as_str).collect();
    let mut allowed: HashSet<&str> = old.iter().chain(&new).map(String::as_str).collect();
    allowed.insert("old unterminated");
    let spliced: Vec<_> = got
        .iter()
        .filter(|l| !allowed.contains(l.as_str()))
        .take(5)
        .collect();
    assert!(
        spliced.is_empty(),
        "lines that were never written: {spliced:?}"
    );
    let lost = old
        .iter()
        .chain(&new)
        .filter(|l| !got_set.contains(l.as_str()))
        .count();
    assert_eq!(lost, 0, "lines lost");
    // Every line once: the copy is read only from where the original was read to.
    let once: Vec<String> = got
        .iter()
        .filter(|l| *l != "old unterminated")
        .cloned()
        .collect();
    let mut all = old.clone();
    all.extend(new.iter().cloned());
    assert_exactly_once(&once, &all);
    assert!(got.len() - once.len() <= 1, "the partial line twice");
}

#[test]
fn taildir_reads_a_deleted_file_to_its_end_without_an_error_flood() {
    let s = Setup::new();
    let log = s.logs().join("app.log");
    let lines = numbered("deleted file line", 0, 300_000);
    append(&log, &lines);
    let config = s.config(
        &format!(r#"app = "{}/*.log""#, s.logs().display()),
        "",
        "raw",
    );
    // A directory the pattern matches: reported once, not at every scan.
    std::fs::create_dir(s.logs().join("sub.log")).unwrap();
    let agent = spawn(&config);
    wait_for_lines(&s.out(), 1, WAIT);
    std::fs::remove_file(&log).unwrap();
    wait_for_lines(&s.out(), lines.len(), WAIT);
    // Past idle_close_ms: the file is closed and forgotten; nothing more happens.
    std::thread::sleep(Duration::from_millis(1_000));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    assert_exactly_once(&s.raw_lines(), &lines);
    let noisy = stderr.lines().filter(|l| l.contains("app.log")).count();
    assert!(noisy <= 2, "{stderr}");
    let directory = stderr.lines().filter(|l| l.contains("sub.log")).count();
    assert_eq!(directory, 1, "{stderr}");
    let positions =
        std::fs::read_to_string(s.dir.path().join("data/taildir/app.positions.json")).unwrap();
    let positions: serde_json::Value = serde_json::from_str(&positions).unwrap();
    assert_eq!(
        positions["files"].as_array().unwrap().len(),
        0,
        "{positions}"
    );
}

#[test]
fn taildir_starts_over_from_a_corrupt_position_file_naming_it() {
    let s = Setup::new();
    let log = s.logs().join("app.log");
    let lines = numbered("line", 0, 1_000);
    append(&log, &lines);
    let positions = s.dir.path().join("data/taildir/app.positions.json");
    std::fs::create_dir_all(positions.parent().unwrap()).unwrap();
    std::fs::write(&positions, "{\"version\":1,\"files\":[{\"dev\"").unwrap();
    let config = s.config(
        &format!(r#"app = "{}/*.log""#, s.logs().display()),
        "",
        "raw",
    );
    let agent = spawn(&config);
    wait_for_lines(&s.out(), lines.len(), WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    assert_exactly_once(&s.raw_lines(), &lines);
    assert!(
        stderr.contains("app.positions.json") && stderr.contains("corrupt"),
        "{stderr}"
    );
    // Replaced by a valid one.
    let text = std::fs::read_to_string(&positions).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["files"][0]["offset"],
        std::fs::metadata(&log).unwrap().len()
    );
}

#[test]
fn taildir_with_exit_on_eof_stops_after_reading_every_file() {
    let s = Setup::new();
    let a = numbered("a", 0, 5_000);
    let b = numbered("b", 0, 5_000);
    append(&s.logs().join("a.log"), &a);
    append(&s.logs().join("b.log"), &b);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.logs().join("b.log"))
        .unwrap();
    f.write_all(b"b unterminated").unwrap();
    let config = s.config(
        &format!(r#"app = "{}/*.log""#, s.logs().display()),
        "exit_on_eof = true",
        "raw",
    );
    let output = runnel()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut expected: Vec<String> = a.into_iter().chain(b).collect();
    expected.push("b unterminated".to_owned());
    assert_exactly_once(&s.raw_lines(), &expected);
}

/// An application writing `id=N` lines through one descriptor opened for appending (as
/// loggers do, so a truncation makes it write at the new end), `per_write` lines a
/// write, pausing `pause` between writes; `written` says how many ids it wrote.
fn writer(
    path: &Path,
    ids: std::ops::Range<u64>,
    per_write: u64,
    pause: Duration,
) -> (std::thread::JoinHandle<()>, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(ids.start));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let handle = {
        let written = written.clone();
        std::thread::spawn(move || {
            let mut id = ids.start;
            while id < ids.end {
                let to = (id + per_write).min(ids.end);
                let text: String = (id..to)
                    .map(|i| format!("id={i} with padding to make the line longer\n"))
                    .collect();
                file.write_all(text.as_bytes()).unwrap();
                written.store(to, Ordering::SeqCst);
                id = to;
                std::thread::sleep(pause);
            }
        })
    };
    (handle, written)
}

/// logrotate's `copytruncate` with `rotate 9`, `compress` and `delaycompress`, done as
/// logrotate does it: `app.log.N.gz` → `app.log.N+1.gz`, `app.log.1` → `app.log.2`,
/// then `app.log` is copied to `app.log.1` and truncated to 0; last `app.log.2` is
/// compressed to `app.log.2.gz` (and removed).
fn logrotate_copytruncate(logs: &Path) {
    for n in (2..9).rev() {
        let from = logs.join(format!("app.log.{n}.gz"));
        if from.exists() {
            std::fs::rename(&from, logs.join(format!("app.log.{}.gz", n + 1))).unwrap();
        }
    }
    let first = logs.join("app.log.1");
    let second = logs.join("app.log.2");
    if first.exists() {
        std::fs::rename(&first, &second).unwrap();
    }
    std::fs::copy(logs.join("app.log"), &first).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(logs.join("app.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    if second.exists() {
        let bytes = std::fs::read(&second).unwrap();
        let gz = std::fs::File::create(logs.join("app.log.2.gz")).unwrap();
        let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        enc.finish().unwrap();
        std::fs::remove_file(&second).unwrap();
    }
}

/// The ids of the whole lines in the files of `logs` (compressed ones decompressed):
/// what the application wrote less what logrotate lost (lines written between its copy
/// and its truncation are in no file).
fn ids_on_disk(logs: &Path) -> HashSet<u64> {
    let mut ids = HashSet::new();
    for entry in std::fs::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        let mut text = String::new();
        let file = std::fs::File::open(&path).unwrap();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .unwrap();
        } else {
            std::io::BufReader::new(file)
                .read_to_string(&mut text)
                .unwrap();
        }
        let whole = text.rsplit_once('\n').map_or("", |(w, _)| w);
        ids.extend(whole.lines().filter_map(parse_id));
    }
    ids
}

/// Panics unless every id on disk was delivered once, and nothing else but ids the
/// writer wrote (below `written`), each at most once.
fn assert_each_id_once(delivered: &HashMap<u64, usize>, on_disk: &HashSet<u64>, written: u64) {
    let lost: Vec<_> = on_disk
        .iter()
        .filter(|id| !delivered.contains_key(id))
        .collect();
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    let never_written: Vec<_> = delivered.keys().filter(|id| **id >= written).collect();
    assert!(
        lost.is_empty() && twice.is_empty() && never_written.is_empty(),
        "{} ids on disk, {} delivered; {} lost (first: {:?}); {} delivered more than once (first: {:?}); never written: {:?}",
        on_disk.len(),
        delivered.len(),
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>(),
        never_written.iter().take(5).collect::<Vec<_>>()
    );
}

/// The patterns logrotate's files are followed with: the live file and its uncompressed
/// copies (not the `.gz` ones: they are the same lines, compressed).
fn rotated_patterns(logs: &Path) -> String {
    format!(
        r#"app = "{l}/app.log", rotated = "{l}/app.log.[0-9]""#,
        l = logs.display()
    )
}

/// Waits until the position file says `app.log` is read to its end (the agent is idle).
fn wait_caught_up(s: &Setup) {
    let positions = s.dir.path().join("data/taildir/app.positions.json");
    let log = s.logs().join("app.log");
    wait_until("the agent to catch up", WAIT, || {
        let Ok(text) = std::fs::read_to_string(&positions) else {
            return false;
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        let size = std::fs::metadata(&log).unwrap().len();
        value["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == log.display().to_string() && f["offset"].as_u64() == Some(size))
    });
}

#[test]
fn taildir_copytruncate_rotations_read_every_line_once() {
    let s = Setup::new();
    let logs = s.logs();
    let config = s.config(&rotated_patterns(&logs), "", "raw");
    let agent = Running::new(spawn(&config));
    const TOTAL: u64 = 40_000;
    let (writing, written) = writer(
        &logs.join("app.log"),
        0..TOTAL,
        100,
        Duration::from_millis(2),
    );
    for rotation in 1..=3 {
        wait_until("the writer", WAIT, || {
            written.load(Ordering::SeqCst) >= rotation * TOTAL / 4
        });
        logrotate_copytruncate(&logs);
        // Before the next rotation moves this copy away, the agent has read it (with
        // `delaycompress` it stays a whole rotation period).
        let copied: HashSet<u64> = ids_on_disk(&logs);
        wait_until("the copy to be read", WAIT, || {
            let got = id_counts(&s.raw_lines());
            copied.iter().all(|id| got.contains_key(id))
        });
    }
    writing.join().unwrap();
    let on_disk = ids_on_disk(&logs);
    wait_until("every line on disk", WAIT, || {
        let got = id_counts(&s.raw_lines());
        on_disk.iter().all(|id| got.contains_key(id))
    });
    wait_caught_up(&s);
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    assert!(logs.join("app.log.3.gz").exists() && logs.join("app.log.1").exists());
    assert!(
        on_disk.len() as u64 > TOTAL * 9 / 10,
        "logrotate lost {}",
        TOTAL - on_disk.len() as u64
    );
    assert_each_id_once(&id_counts(&s.raw_lines()), &on_disk, TOTAL);
}

/// A taildir (or `file`) source into a memory channel of 1,000 events drained by an
/// `http` sink to `rx`: while `rx` answers 503 the source stops reading early.
fn config_behind(s: &Setup, source: &str, rx: &Receiver) -> PathBuf {
    write_config(
        s.dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600
data_dir = "{data}"

[sources.app]
{source}
poll_interval_ms = 50
channels = ["main"]
batch_size = 100
batch_timeout_ms = 20

[channels.main]
type = "memory"
capacity = 1000

[sinks.out]
type = "http"
channel = "main"
uri = "{uri}"
batch_size = 500
batch_timeout_ms = 20
retry_initial_ms = 50
retry_max_ms = 200
"#,
            data = s.dir.path().join("data").display(),
            uri = rx.uri()
        ),
    )
}

#[test]
fn taildir_copytruncate_with_a_backlog_reads_every_line_once() {
    let s = Setup::new();
    let logs = s.logs();
    let mut rx = Receiver::start(s.dir.path(), &["--mode", "503"]);
    let source = format!(
        "type = \"taildir\"\npaths = {{ {} }}\nglob_interval_ms = 100\nidle_close_ms = 300",
        rotated_patterns(&logs)
    );
    let config = config_behind(&s, &source, &rx);
    let agent = Running::new(spawn(&config));
    const TOTAL: u64 = 60_000;
    let (writing, written) = writer(
        &logs.join("app.log"),
        0..TOTAL,
        500,
        Duration::from_millis(1),
    );
    wait_until("50,000 lines written and refused once", WAIT, || {
        written.load(Ordering::SeqCst) >= 50_000 && rx.status()["answered_503"].as_u64() > Some(0)
    });
    // The agent is far behind: its channel is full, it has read a fraction.
    let positions = s.dir.path().join("data/taildir/app.positions.json");
    let text = std::fs::read_to_string(&positions).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let offset = value["files"][0]["offset"].as_u64().unwrap_or(0);
    let size = std::fs::metadata(logs.join("app.log")).unwrap().len();
    assert!(offset < size / 2, "not behind: at {offset} of {size}");
    logrotate_copytruncate(&logs);
    writing.join().unwrap();
    rx.command("mode ok");
    let on_disk = ids_on_disk(&logs);
    wait_until("every line on disk", WAIT, || {
        let got = id_counts(&rx.bodies());
        on_disk.iter().all(|id| got.contains_key(id))
    });
    wait_caught_up(&s);
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    assert!(
        on_disk.len() as u64 > TOTAL * 9 / 10,
        "logrotate lost {}",
        TOTAL - on_disk.len() as u64
    );
    assert_each_id_once(&id_counts(&rx.bodies()), &on_disk, TOTAL);
}

#[test]
fn file_source_truncated_with_a_backlog_counts_and_warns_the_bytes_lost() {
    let s = Setup::new();
    let log = s.logs().join("app.log");
    let mut rx = Receiver::start(s.dir.path(), &["--mode", "503"]);
    const OLD: u64 = 50_000;
    let (writing, _) = writer(&log, 0..OLD, 5_000, Duration::ZERO);
    writing.join().unwrap();
    let old_size = std::fs::metadata(&log).unwrap().len();
    let source = format!(
        "type = \"file\"\npath = \"{}\"\nread_from = \"start\"",
        log.display()
    );
    let config = config_behind(&s, &source, &rx);
    let agent = Running::new(spawn(&config));
    wait_until("a refusal", WAIT, || {
        rx.status()["answered_503"].as_u64() > Some(0)
    });
    // Rotated by copytruncate, but only `app.log` is followed: the copy is not read.
    logrotate_copytruncate(s.logs().as_path());
    let (writing, _) = writer(&log, OLD..OLD + 100, 100, Duration::ZERO);
    writing.join().unwrap();
    rx.command("mode ok");
    wait_until("the new lines", WAIT, || {
        let got = id_counts(&rx.bodies());
        (OLD..OLD + 100).all(|id| got.contains_key(&id))
    });
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    let bodies = rx.bodies();
    let counts = id_counts(&bodies);
    assert!(counts.values().all(|n| *n == 1), "duplicates");
    // What was delivered of the old content plus what is counted lost is all of it.
    let delivered_old: u64 = bodies
        .iter()
        .filter(|b| parse_id(b).is_some_and(|id| id < OLD))
        .map(|b| b.len() as u64 + 1)
        .sum();
    let lost = summary_counter(&stderr, "source.app", "bytes_lost_on_truncate");
    assert!(delivered_old < old_size, "not behind: everything was read");
    assert_eq!(lost, Some(old_size - delivered_old), "{stderr}");
    let warned = stderr.lines().any(|l| {
        l.contains("WARN")
            && l.contains("app.log")
            && l.contains(&format!("{} bytes not read", old_size - delivered_old))
    });
    assert!(warned, "{stderr}");
}
