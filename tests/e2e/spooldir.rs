//! The spooldir source: a thousand files dropped while the agent runs and a SIGKILL in
//! the middle (every line once, every file renamed), the completion-suffix mode, the
//! delete mode with an ignore pattern, a file that changes while being read, and config
//! errors naming their key and line.

use crate::common::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// A temporary directory with `spool/` (the source's directory), the agent's data
/// directory, its log and the sink's output.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("spool")).unwrap();
        Setup { dir }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.txt")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// A spooldir source `spool` with `extra` settings → a `channel` channel (`memory` or
    /// `file`) → a file sink of `format`. The final summary is printed at a stop. The
    /// quiet period is 300 ms unless `extra` sets it.
    fn config(&self, extra: &str, channel: &str, format: &str) -> PathBuf {
        write_config(
            self.dir.path(),
            &format!(
                r#"
[agent]
summary_interval_secs = 3600
shutdown_timeout_secs = 10
data_dir = "{data}"

[sources.spool]
type = "spooldir"
path = "{spool}"
poll_interval_ms = 100
{quiet}channels = ["main"]
batch_size = 100
batch_timeout_ms = 20
{extra}

[channels.main]
type = "{channel}"

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "{format}"
batch_size = 100
batch_timeout_ms = 20
"#,
                data = self.dir.path().join("data").display(),
                spool = self.spool().display(),
                out = self.out().display(),
                quiet = if extra.contains("quiet_period_ms") {
                    ""
                } else {
                    "quiet_period_ms = 300\n"
                },
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

    /// The names in the spool directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.spool())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Drops a file into the spool directory as writers should: written under a hidden
    /// name, then renamed into place.
    fn drop_file(&self, name: &str, lines: &[String]) {
        let tmp = self.spool().join(format!(".{name}.tmp"));
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.spool().join(name)).unwrap();
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} line {i:04}")).collect()
}

/// How often each line was delivered.
fn counts(lines: &[String]) -> HashMap<&str, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in lines {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    counts
}

/// The final summary's counter `metric` of the source `spool`.
fn source_counter(stderr: &str, metric: &str) -> Option<u64> {
    summary_counter(stderr, "source.spool", metric)
}

#[test]
fn spooldir_a_thousand_files_through_a_sigkill_every_line_once_every_file_renamed() {
    const FILES: usize = 1000;
    const LINES: usize = 100;
    let s = Setup::new();
    let config = s.config("", "file", "raw");
    let expected: Vec<String> = (0..FILES)
        .flat_map(|f| numbered(&format!("file {f:04} with some padding,"), LINES))
        .collect();

    let started = Instant::now();
    let mut agent = spawn_logged(&config, &s.log());
    let writer = {
        let spool = s.spool();
        std::thread::spawn(move || {
            for f in 0..FILES {
                let name = format!("f{f:04}.log");
                let lines = numbered(&format!("file {f:04} with some padding,"), LINES);
                let tmp = spool.join(format!(".{name}.tmp"));
                let mut text = lines.join("\n");
                text.push('\n');
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, spool.join(&name)).unwrap();
                if f % 10 == 9 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    // Killed in the middle: some files done, others not yet (or not yet dropped).
    wait_for_lines(&s.out(), FILES * LINES / 3, WAIT);
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();
    let first_run = count_lines(&s.out());
    let completed_at_kill = s
        .names()
        .iter()
        .filter(|n| n.ends_with(".COMPLETED"))
        .count();
    writer.join().unwrap();
    eprintln!(
        "spooldir: killed after {:.1} s with {first_run} lines delivered, {completed_at_kill} files renamed",
        started.elapsed().as_secs_f64()
    );
    assert!(first_run < expected.len(), "the first run read everything");
    assert!(completed_at_kill < FILES);

    let restarted = Instant::now();
    let agent = spawn_logged(&config, &s.log());
    wait_until("every file renamed .COMPLETED", WAIT, || {
        s.names()
            .iter()
            .filter(|n| n.ends_with(".log.COMPLETED"))
            .count()
            == FILES
    });
    wait_for_lines(&s.out(), expected.len(), WAIT);
    eprintln!(
        "spooldir: the restarted agent finished the rest in {:.1} s ({:.1} s in all for {FILES} files, {} lines)",
        restarted.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        expected.len()
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(agent.into_child());
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(status.success(), "{log}");

    let got = s.raw_lines();
    let counts = counts(&got);
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| !counts.contains_key(l.as_str()))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "lines lost (first 5): {missing:?}");
    let wanted: std::collections::HashSet<&str> = expected.iter().map(String::as_str).collect();
    let unexpected: Vec<_> = counts
        .keys()
        .filter(|l| !wanted.contains(*l))
        .take(5)
        .collect();
    assert!(unexpected.is_empty(), "lines never written: {unexpected:?}");
    // The source reads nothing twice (its positions travel with the batches into the
    // file channel); the sink may write again the one batch (100 events) it had
    // written but not yet committed when it was killed.
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("spooldir: {} lines, {duplicates} duplicates", got.len());
    assert!(duplicates <= 100, "{duplicates} duplicates");
    // Every file renamed, none left, none changed.
    let names = s.names();
    assert_eq!(names.len(), FILES, "{:?}", &names[..names.len().min(10)]);
    assert!(
        names.iter().all(|n| n.ends_with(".log.COMPLETED")),
        "{:?}",
        names
            .iter()
            .filter(|n| !n.ends_with(".log.COMPLETED"))
            .collect::<Vec<_>>()
    );
    assert!(!log.contains("changed while being read"), "{log}");
}

#[test]
fn spooldir_resumes_inside_a_file_after_a_sigkill_and_never_overwrites_a_done_name() {
    let s = Setup::new();
    let config = s.config("quiet_period_ms = 0", "file", "raw");
    let lines = numbered("one big file, read across a SIGKILL,", 200_000);
    std::fs::write(s.spool().join("big.log"), lines.join("\n") + "\n").unwrap();
    // A file of the same name was spooled (and renamed) before.
    std::fs::write(s.spool().join("big.log.COMPLETED"), "an older big.log\n").unwrap();
    let size = std::fs::metadata(s.spool().join("big.log")).unwrap().len();
    let positions = s.dir.path().join("data/spooldir/spool.positions.json");

    let mut agent = spawn_logged(&config, &s.log());
    // Killed once the position file says the file is partly in the channels.
    let mut offset = 0;
    wait_until("a position inside big.log", WAIT, || {
        let text = std::fs::read_to_string(&positions).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        offset = value["files"][0]["offset"].as_u64().unwrap_or(0);
        offset > 0
    });
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();
    let first_run = count_lines(&s.out());
    assert!(offset < size, "read whole before the kill");
    assert!(first_run < lines.len(), "read whole before the kill");
    assert!(s.spool().join("big.log").exists());

    let agent = spawn_logged(&config, &s.log());
    wait_until("big.log put away", WAIT, || {
        !s.spool().join("big.log").exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(agent.into_child());
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(status.success(), "{log}");
    let got = s.raw_lines();
    let counts = counts(&got);
    assert!(
        lines.iter().all(|l| counts.contains_key(l.as_str())),
        "lines lost"
    );
    assert_eq!(counts.len(), lines.len(), "lines never written");
    // Only the sink's uncommitted batch may come twice: the source resumed inside the
    // file, after the last line the channel held.
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "spooldir: killed at byte {offset} of {size} ({first_run} lines out), {duplicates} duplicates"
    );
    assert!(duplicates <= 100, "{duplicates} duplicates");
    // The older done file is untouched; this one is set aside under a free name.
    assert_eq!(
        s.names(),
        ["big.log.1.COMPLETED", "big.log.COMPLETED"],
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(s.spool().join("big.log.COMPLETED")).unwrap(),
        "an older big.log\n"
    );
    assert!(
        log.contains("big.log.COMPLETED exists already") && log.contains("big.log.1.COMPLETED"),
        "{log}"
    );
}

#[test]
fn spooldir_with_a_completion_suffix_reads_only_finished_files_and_tags_them() {
    let s = Setup::new();
    // A long quiet period: only the suffix makes a file ready.
    let config = s.config(
        "completion_suffix = \".ready\"\nquiet_period_ms = 600000\ntags = { basename = true }",
        "memory",
        "json",
    );
    let a = numbered("a", 500);
    let b = numbered("b", 500);
    std::fs::write(s.spool().join("a.log"), a.join("\n") + "\n").unwrap();
    let agent = spawn_logged(&config, &s.log());
    s.drop_file("b.log.ready", &b);
    wait_for_lines(&s.out(), b.len(), WAIT);
    wait_until("b renamed", WAIT, || {
        s.spool().join("b.log.ready.COMPLETED").exists()
    });
    // a.log is not finished: still there, unread, a few listings later.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count_lines(&s.out()), b.len());
    assert_eq!(s.names(), ["a.log", "b.log.ready.COMPLETED"]);

    std::fs::rename(s.spool().join("a.log"), s.spool().join("a.log.ready")).unwrap();
    wait_for_lines(&s.out(), a.len() + b.len(), WAIT);
    wait_until("a renamed", WAIT, || {
        s.spool().join("a.log.ready.COMPLETED").exists()
    });
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    assert_eq!(
        s.names(),
        ["a.log.ready.COMPLETED", "b.log.ready.COMPLETED"]
    );
    let events = json_lines(&s.out());
    let mut got: Vec<String> = Vec::new();
    for e in &events {
        let body = e["body"].as_str().unwrap();
        let name = if body.starts_with("a ") {
            "a.log.ready"
        } else {
            "b.log.ready"
        };
        assert_eq!(e["tags"]["basename"], name, "{e}");
        assert_eq!(
            e["tags"]["file"],
            s.spool().join(name).display().to_string(),
            "{e}"
        );
        got.push(body.to_owned());
    }
    // b first (it was the only finished file), each line once, in order.
    let want: Vec<String> = b.iter().chain(&a).cloned().collect();
    assert_eq!(got, want);
}

#[test]
fn spooldir_delete_mode_deletes_read_files_and_leaves_ignored_and_hidden_ones() {
    let s = Setup::new();
    let config = s.config(
        "on_done = \"delete\"\nignore = [\"*.tmp\", \"skip-*\"]",
        "memory",
        "raw",
    );
    let x = numbered("x", 300);
    let y = numbered("y", 300);
    std::fs::write(s.spool().join("x.log"), x.join("\n") + "\n").unwrap();
    // Unterminated last line: a line too, at the end of a finished file.
    std::fs::write(s.spool().join("y.txt"), y.join("\n")).unwrap();
    for name in ["z.tmp", "skip-me.log", ".hidden.log"] {
        std::fs::write(s.spool().join(name), "must not be read\n").unwrap();
    }
    let agent = spawn_logged(&config, &s.log());
    wait_until("x and y deleted", WAIT, || {
        !s.spool().join("x.log").exists() && !s.spool().join("y.txt").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, stderr) = terminate(agent.into_child());
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(status.success(), "{log}");
    let _ = stderr;
    assert_eq!(s.names(), [".hidden.log", "skip-me.log", "z.tmp"]);
    let mut got = s.raw_lines();
    got.sort();
    let mut want: Vec<String> = x.iter().chain(&y).cloned().collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(source_counter(&log, "files_done"), Some(2), "{log}");
    assert_eq!(source_counter(&log, "changed_files"), None, "{log}");
}

#[test]
fn spooldir_reports_a_file_that_grows_while_read_and_keeps_running() {
    let s = Setup::new();
    let config = s.config("quiet_period_ms = 0", "memory", "raw");
    // Big enough that the agent is still at it when the file grows.
    let big = numbered(
        "big file line with enough padding to make the file large, padding padding",
        400_000,
    );
    std::fs::write(s.spool().join("big.log"), big.join("\n") + "\n").unwrap();
    let agent = spawn_logged(&config, &s.log());
    wait_for_lines(&s.out(), 1, WAIT);
    std::fs::OpenOptions::new()
        .append(true)
        .open(s.spool().join("big.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"appended while read\n"))
        .unwrap();
    wait_until("big.log renamed .CHANGED", WAIT, || {
        s.spool().join("big.log.CHANGED").exists()
    });
    // The agent goes on with the next file.
    let after = numbered("after", 100);
    s.drop_file("after.log", &after);
    wait_until("after.log renamed", WAIT, || {
        s.spool().join("after.log.COMPLETED").exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(agent.into_child());
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(source_counter(&log, "changed_files"), Some(1), "{log}");
    assert_eq!(source_counter(&log, "files_done"), Some(1), "{log}");
    let big_path = s.spool().join("big.log").display().to_string();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains(&format!("{big_path} changed while being read"))
            && l.contains("grew")),
        "{log}"
    );
    assert_eq!(s.names(), ["after.log.COMPLETED", "big.log.CHANGED"]);
    let got = s.raw_lines();
    let counts = counts(&got);
    assert!(!counts.contains_key("appended while read"));
    assert!(counts.values().all(|&n| n == 1), "a line delivered twice");
    assert!(after.iter().all(|l| counts.contains_key(l.as_str())));
    let big_read = got.iter().filter(|l| l.starts_with("big file")).count();
    eprintln!(
        "spooldir: {big_read} of {} lines of the changed file were read",
        big.len()
    );
}

#[test]
fn spooldir_config_errors_name_their_key_and_line() {
    let s = Setup::new();
    let config = s.config("include = \"[x\"", "memory", "raw");
    let (ok, msg) = validate_config(&config);
    let msg = msg.replace(&*config.to_string_lossy(), "CONFIG");
    assert!(!ok, "{msg}");
    assert!(
        msg.contains("CONFIG:15:")
            && msg.contains("`sources.spool.include`")
            && msg.contains("not a valid glob"),
        "{msg}"
    );
    let config = s.config("on_done = \"archive\"", "memory", "raw");
    let (ok, msg) = validate_config(&config);
    let msg = msg.replace(&*config.to_string_lossy(), "CONFIG");
    assert!(!ok, "{msg}");
    assert!(
        msg.contains("CONFIG:15:") && msg.contains("unknown variant `archive`"),
        "{msg}"
    );
    // A spool directory that is a file.
    let file = s.dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let text = std::fs::read_to_string(s.config("", "memory", "raw"))
        .unwrap()
        .replace(
            &s.spool().display().to_string(),
            &file.display().to_string(),
        );
    let config = write_config(s.dir.path(), &text);
    let (ok, msg) = validate_config(&config);
    assert!(
        !ok && msg.contains("`sources.spool.path`") && msg.contains("not a directory"),
        "{msg}"
    );
}

#[test]
fn spooldir_skips_symlinks_unless_told_to_follow_them() {
    let s = Setup::new();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.log");
    let secret_lines = numbered("secret", 10);
    std::fs::write(&secret, secret_lines.join("\n") + "\n").unwrap();
    std::os::unix::fs::symlink(&secret, s.spool().join("link.log")).unwrap();
    let a = numbered("a", 100);
    s.drop_file("a.log", &a);
    let agent = spawn_logged(&s.config("", "memory", "raw"), &s.log());
    wait_for_log(&s.log(), "link.log is a symbolic link; skipped");
    wait_until("a.log done", WAIT, || {
        s.spool().join("a.log.COMPLETED").exists()
    });
    // Listings go on: the link is not reported again.
    let b = numbered("b", 100);
    s.drop_file("b.log", &b);
    wait_until("b.log done", WAIT, || {
        s.spool().join("b.log.COMPLETED").exists()
    });
    let (status, _) = terminate(agent.into_child());
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(
        s.names(),
        ["a.log.COMPLETED", "b.log.COMPLETED", "link.log"],
        "the link is left as it is"
    );
    let mut want: Vec<String> = a.iter().chain(&b).cloned().collect();
    let mut got = s.raw_lines();
    got.sort();
    want.sort();
    assert_eq!(got, want, "nothing the link points to was read");
    assert_eq!(log.matches("is a symbolic link").count(), 1, "{log}");
    assert_eq!(source_counter(&log, "symlinks_skipped"), Some(1), "{log}");

    // Followed when asked: the file the link points to is read, the link put away.
    let agent = spawn_logged(
        &s.config("follow_symlinks = true", "memory", "raw"),
        &s.log(),
    );
    wait_until("link.log done", WAIT, || {
        s.spool().join("link.log.COMPLETED").exists()
    });
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    let got = s.raw_lines();
    assert_eq!(&got[got.len() - secret_lines.len()..], &secret_lines[..]);
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        secret_lines.join("\n") + "\n",
        "the file a link points to stays"
    );
}
