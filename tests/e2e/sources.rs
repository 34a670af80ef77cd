//! The file source through rotation and truncation, and the exec source restarting its
//! command.

use crate::common::*;
use std::io::Write;
use std::time::Duration;

fn append(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
}

#[test]
fn the_file_source_follows_rotation_and_truncation_without_losing_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = dir.path().join("out.jsonl");
    let batch = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
    };
    append(&log, &batch(0, 10));
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0

[sources.app]
type = "file"
path = "{log}"
read_from = "start"
poll_interval_ms = 50
channels = ["main"]
batch_timeout_ms = 20
{tail}"#,
            tail = main_channel_to_file(&out, "raw"),
            log = log.display(),
        ),
    );
    let agent = spawn(&config);
    wait_for_lines(&out, 10, Duration::from_secs(20));
    append(&log, &batch(10, 10));
    wait_for_lines(&out, 20, Duration::from_secs(20));

    // Rotation: the file is renamed away and a new one is created at the path; the
    // application writes a few more lines to the old file before it reopens.
    append(&log, &batch(20, 5));
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&log, &batch(25, 5));
    std::thread::sleep(Duration::from_millis(300));
    append(&rotated, &batch(30, 3));
    wait_for_lines(&out, 33, Duration::from_secs(20));

    // Truncation: the file is emptied in place and written again.
    std::fs::write(&log, "").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    append(&log, &batch(33, 5));
    wait_for_lines(&out, 38, Duration::from_secs(20));

    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    // Every line exactly once; lines from the old and the new file may interleave.
    let mut got: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    got.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
    assert_eq!(got, batch(0, 38));
}

#[test]
fn the_exec_source_restarts_a_command_that_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let runs = dir.path().join("runs");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0

[sources.once]
type = "exec"
command = "echo run >> '{runs}'; echo hello; exit 3"
restart_backoff_ms = 50
restart_backoff_max_ms = 100
channels = ["main"]
batch_timeout_ms = 20
{tail}"#,
            tail = main_channel_to_file(&out, "raw"),
            runs = runs.display(),
        ),
    );
    let agent = spawn(&config);
    wait_for_lines(&out, 3, Duration::from_secs(20));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    assert!(
        count_lines(&runs) >= 3,
        "the command ran {} times",
        count_lines(&runs)
    );
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .all(|l| l == "hello")
    );
}
