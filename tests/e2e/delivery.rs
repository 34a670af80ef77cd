//! Nothing accepted is lost: failed writes are retried, bad lines can go to a dead-letter
//! channel, and `runnel plugin test` shows what a plugin makes of lines.

use crate::common::*;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn a_sink_that_cannot_write_rolls_back_and_delivers_everything_once_it_can() {
    let dir = tempfile::tempdir().unwrap();
    // The sink's directory is a file at first, so every write fails.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, "not a directory").unwrap();
    let out = blocker.join("events.log");
    let input = dir.path().join("in.log");
    let lines: Vec<String> = (0..500).map(|i| format!("event {i}")).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[sources.in]
type = "file"
path = "{input}"
read_from = "start"
channels = ["main"]
batch_size = 100

[channels.main]
type = "memory"
capacity = 1000

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "raw"
batch_size = 64
batch_timeout_ms = 20
"#,
            input = input.display(),
            out = out.display()
        ),
    );
    let agent = spawn(&config);
    std::thread::sleep(Duration::from_millis(700));
    assert!(!out.exists());
    std::fs::remove_file(&blocker).unwrap();
    wait_for_lines(&out, 500, Duration::from_secs(30));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        lines.join("\n") + "\n",
        "in order, once each"
    );
    assert!(
        summary_counter(&stderr, "sink.out", "write_errors").unwrap_or(0) >= 1,
        "{stderr}"
    );
    assert_eq!(
        summary_counter(&stderr, "channel.main", "events_committed"),
        Some(500),
        "{stderr}"
    );
}

#[test]
fn unparseable_lines_go_to_the_dead_letter_channel() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\":1}\nnot json\n{\"b\":[]}\n{oops\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[plugins.json]
builtin = "json"
on_error = "dead-letter"

[sources.in]
type = "stdin"
plugins = ["json"]
channels = ["good"]
dead_letter = ["dead"]

[channels.good]
type = "memory"

[channels.dead]
type = "memory"

[sinks.good]
type = "file"
channel = "good"
path = "{good}"
format = "fields"

[sinks.dead]
type = "file"
channel = "dead"
path = "{dead}"
"#,
            good = good.display(),
            dead = dead.display()
        ),
    );
    let output = run_with_stdin(&config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&good).unwrap(),
        "{\"a\":1}\n{\"b\":[]}\n"
    );
    let dead = json_lines(&dead);
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["body"], "not json");
    assert_eq!(dead[1]["body"], "{oops");
    assert!(dead.iter().all(|e| e["tags"]["parse_error"].is_string()));
    assert_eq!(
        summary_counter(&stderr, "route.in.dead_letter", "events"),
        Some(2),
        "{stderr}"
    );
}

#[test]
fn plugin_test_prints_the_events_a_plugin_makes() {
    let mut child = runnel()
        .args([
            "plugin",
            "test",
            "level-router",
            "--config",
            "routes = { loud = [\"error\", \"fatal\"] }",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("role router, routes: loud"), "{stderr}");
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["tags"]["routes"], "(default)");

    let combined = runnel()
        .args(["plugin", "test", "combined"])
        .stdin(std::fs::File::open(data("apache_access/apache_logs")).unwrap())
        .output()
        .unwrap();
    assert!(combined.status.success());
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&combined.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["fields"]["host"], "83.149.9.216");
    assert!(String::from_utf8_lossy(&combined.stderr).contains("10000 lines in, 10000 events out"));
}

#[test]
fn a_stuck_sink_cannot_hold_up_shutdown_and_what_is_given_up_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[agent]
summary_interval_secs = 3600
shutdown_timeout_secs = 1

[sources.gen]
type = "generator"
apps = 2
rate = 0
channels = ["main"]

[channels.main]
type = "memory"
capacity = 2000

[sinks.out]
type = "console"
channel = "main"
format = "raw"
"#,
    );
    // Standard output is a pipe nobody reads: the console sink blocks once it is full.
    let agent = runnel()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let (status, stderr) = terminate(agent);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        started.elapsed()
    );
    assert!(!status.success(), "losses make the exit status non-zero");
    assert!(
        stderr.contains("could not drain before the shutdown timeout"),
        "{stderr}"
    );
    assert!(
        summary_counter(&stderr, "agent", "events_lost").unwrap_or(0) > 0,
        "{stderr}"
    );
}
