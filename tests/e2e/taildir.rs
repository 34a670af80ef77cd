//! The taildir source: patterns, new files, restarts from the position file, rotation
//! by rename, copytruncate and deleted files.

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
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
    // The new content was read once (the old one may be read twice: from the copy too).
    let new_set: HashSet<&str> = new.iter().map(String::as_str).collect();
    let new_got = got.iter().filter(|l| new_set.contains(l.as_str())).count();
    assert_eq!(new_got, new.len());
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
