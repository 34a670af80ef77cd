//! Regression tests for defects found when the foundation was tried adversarially.

use super::common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A sink that can never write (its directory cannot be created), i.e. stuck retrying.
const STUCK_PATH: &str = "/proc/runnel-cannot-create/out.log";

#[test]
fn an_exec_source_leaves_no_background_child_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    // The shell exits at once (and is restarted), leaving a background child each time.
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0
[sources.cmd]
type = "exec"
command = "sleep 313.25 >/dev/null & echo started"
restart_backoff_ms = 100
channels = ["main"]
{}"#,
            main_channel_to_file(&out, "raw")
        ),
    );
    let agent = spawn(&config);
    wait_for_lines(&out, 3, Duration::from_secs(20));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    // The children are killed with their process group; they are gone within moments.
    let left = || {
        std::process::Command::new("pgrep")
            .args(["-f", "sleep 313.25"])
            .output()
            .unwrap()
            .stdout
    };
    wait_until(
        "the background children to be gone",
        Duration::from_secs(10),
        || left().is_empty(),
    );
}

#[test]
fn a_console_sink_on_a_closed_pipe_gives_up_counts_and_the_agent_ends() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.log");
    std::fs::write(&input, "a line\n".repeat(20_000)).unwrap();
    let config = write_config(
        dir.path(),
        r#"
[agent]
summary_interval_secs = 0
[sources.in]
type = "stdin"
channels = ["main"]
[channels.main]
type = "memory"
[sinks.out]
type = "console"
channel = "main"
format = "raw"
batch_size = 100
"#,
    );
    // `runnel run | head -1`
    let mut agent = runnel()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(agent.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "a line\n");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the agent retries a closed pipe forever"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !status.success(),
        "undeliverable events fail the exit status"
    );
    assert!(stderr.contains("is closed"), "{stderr}");
    assert!(
        stderr.matches("refused for good").count() <= 3,
        "no error flood:\n{stderr}"
    );
}

#[test]
fn a_stuck_sink_on_one_channel_does_not_stall_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.log");
    let lines: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let out = dir.path().join("out.log");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0
shutdown_timeout_secs = 2
[sources.in]
type = "file"
path = "{input}"
read_from = "start"
channels = ["healthy", "optional"]

[channels.healthy]
type = "memory"

# The optional destination may lose its oldest events when it cannot keep up,
# instead of holding back the source (and so the healthy channel).
[channels.optional]
type = "memory"
capacity = 1000
full_policy = "drop_oldest"

[sinks.good]
type = "file"
channel = "healthy"
path = "{out}"
format = "raw"
batch_timeout_ms = 20

[sinks.stuck]
type = "file"
channel = "optional"
path = "{STUCK_PATH}"
"#,
            input = input.display(),
            out = out.display()
        ),
    );
    let agent = spawn(&config);
    wait_for_lines(&out, 20_000, Duration::from_secs(30));
    let (_, stderr) = terminate(agent);
    assert!(
        stderr.contains("channel full"),
        "drops are logged:\n{stderr}"
    );
}

#[test]
fn huge_lines_behind_a_stuck_sink_stay_within_the_byte_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0
shutdown_timeout_secs = 1
[sources.in]
type = "stdin"
channels = ["main"]
[channels.main]
type = "memory"
[sinks.stuck]
type = "file"
channel = "main"
path = "{STUCK_PATH}"
"#
        ),
    );
    let mut agent = runnel()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = agent.stdin.take().unwrap();
    // 1 MiB lines (the default max_line_bytes) until the agent stops taking them.
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = counted.clone();
    let writer = std::thread::spawn(move || {
        let line = format!("{}\n", "x".repeat((1 << 20) - 1));
        let mut written = 0u64;
        while written < 1000 && stdin.write_all(line.as_bytes()).is_ok() {
            written += 1;
            progress.store(written, std::sync::atomic::Ordering::Relaxed);
        }
        written
    });
    // Until the writer is held up (no line taken for 2 s) or has passed the bound: not
    // a fixed wait, which a slow agent would pass with a small count.
    let read = || counted.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = (read(), std::time::Instant::now());
    while read() < 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if read() != last.0 {
            last = (read(), std::time::Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(2) && read() > 0 {
            break;
        }
    }
    let hwm = peak_rss_kib(agent.id()) / 1024;
    agent.kill().unwrap();
    agent.wait().unwrap();
    let written = writer.join().unwrap();
    eprintln!("{written} lines of 1 MiB offered; peak RSS {hwm} MiB");
    assert!(
        written < 200,
        "backpressure must stop the writer ({written} MiB taken)"
    );
    assert!(
        hwm < 160,
        "peak RSS {hwm} MiB: memory must be bounded by bytes"
    );
}
