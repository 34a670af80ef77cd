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
    assert!(stderr.contains("role router"), "{stderr}");
    assert!(stderr.contains("routes: loud"), "{stderr}");
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
fn plugin_bench_times_a_plugin_alone_behind_its_parser() {
    let log = std::fs::read_to_string(data("apache_access/apache_logs")).unwrap();
    let lines: String = log.lines().take(3000).map(|l| format!("{l}\n")).collect();
    let kept = lines
        .lines()
        .filter(|l| expected_combined(l).status >= 400)
        .count();
    let template = built_plugin("runnel_plugin_template.wasm");
    let args: Vec<&std::ffi::OsStr> = [template.as_os_str()]
        .into_iter()
        .chain(
            [
                "--after",
                "combined",
                "--rounds",
                "3",
                "--batch-size",
                "500",
            ]
            .map(std::ffi::OsStr::new),
        )
        .collect();
    let (stdout, _) = plugin_command("bench", &args, lines.as_bytes());
    assert!(
        stdout.contains("3000 events × 3 rounds, batches of 500"),
        "{stdout}"
    );
    // The chain does its work: the template keeps the errors.
    assert!(
        stdout.contains(&format!("{kept} events out per round")),
        "{stdout}"
    );
    // Each figure as `median (min–max)`, the min no more than the median, the median
    // no more than the max.
    let figure = |label: &str| -> (f64, f64, f64) {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label) && l.contains("ns/event"))
            .unwrap_or_else(|| panic!("no {label:?} in\n{stdout}"));
        let numbers: Vec<f64> = line[label.len()..]
            .split(|c: char| !(c.is_ascii_digit() || c == '-' || c == '.'))
            .filter(|s| !s.is_empty() && *s != "-")
            .take(3)
            .map(|s| s.parse().unwrap())
            .collect();
        (numbers[0], numbers[1], numbers[2])
    };
    for label in ["chain  ", "--after alone"] {
        let (median, min, max) = figure(label);
        assert!(
            min > 0.0 && min <= median && median <= max,
            "{label}: {stdout}"
        );
    }
    let (median, min, max) = figure(&template.display().to_string());
    assert!(min <= median && median <= max, "{stdout}");
    assert!(stdout.contains("peak RSS"), "{stdout}");
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

/// `runnel plugin test ARGS` on `input` (see [`plugin_test`](crate::common::plugin_test)).
fn plugin_test(args: &[&str], input: &[u8]) -> (Vec<serde_json::Value>, String) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    crate::common::plugin_test(&args, input)
}

#[test]
fn plugin_test_runs_every_role_behind_parsers_or_on_json_events() {
    // An interceptor behind the parser it needs: only non-image requests stay.
    let log = std::fs::read(data("apache_access/apache_logs")).unwrap();
    let (events, stderr) = plugin_test(
        &[
            "field-filter",
            "--config",
            "field = \"path\"\nop = \"prefix\"\nvalue = \"/images/\"\naction = \"drop\"",
            "--after",
            "combined",
        ],
        &log,
    );
    let images = String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(6)
                .is_some_and(|p| p.starts_with("/images/"))
        })
        .count();
    assert!(images > 0);
    assert_eq!(events.len(), 10_000 - images, "{stderr}");
    assert!(events.iter().all(|e| e["fields"]["host"].is_string()));
    assert!(
        stderr.contains(&format!(
            "10000 lines in, {} events out, {images} dropped",
            10_000 - images
        )),
        "{stderr}"
    );
    // A parser's config after `::`.
    let (events, _) = plugin_test(
        &[
            "strip-control",
            "--after",
            "regex::pattern = \"^(?P<word>\\\\w+)\"",
        ],
        b"hello world\n",
    );
    assert_eq!(events[0]["fields"]["word"], "hello");

    // Whole events as JSON: a router routes them by their level.
    let input = br#"{"name":"app","level":"error","fields":{"n":1},"tags":{"host":"gw-7"}}
{"name":"app","level":"info","timestamp":"2026-11-27T10:00:00.5Z","body":"fine"}
"#;
    let (events, stderr) = plugin_test(
        &[
            "level-router",
            "--config",
            "routes = { loud = [\"error\", \"fatal\"] }",
            "--events-json",
        ],
        input,
    );
    assert!(stderr.contains("2 events in, 2 events out"), "{stderr}");
    assert_eq!(events[0]["tags"]["routes"], "loud");
    assert_eq!(events[0]["tags"]["host"], "gw-7");
    assert_eq!(events[0]["fields"]["n"], 1);
    assert_eq!(events[1]["tags"]["routes"], "(default)");
    assert_eq!(events[1]["timestamp"], "2026-11-27T10:00:00.5Z");
    assert_eq!(events[1]["body"], "fine");

    // A processor: what it emits at the final tick comes out too.
    let window = built_plugin("runnel_test_window_count.wasm");
    let (events, stderr) = plugin_test(
        &[window.to_str().unwrap(), "--events-json"],
        b"{\"body\":\"TWICE\"}\n{\"body\":\"DROP\"}\n",
    );
    let bodies: Vec<_> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["stdin", "stdin", "window"], "{stderr}");
    assert_eq!(events[2]["fields"]["count"], 2);
    assert!(
        stderr.contains("2 events in, 3 events out, 1 more than in"),
        "{stderr}"
    );

    // A bad JSON line is an error naming its line; a router in front is refused.
    let out = runnel()
        .args(["plugin", "test", "strip-control", "--events-json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{}\n{\"level\":3}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("stdin line 2: `level` must be a string"),
        "{stderr}"
    );
    let out = runnel()
        .args(["plugin", "test", "strip-control", "--after", "level-router"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be the last plugin"));
}
