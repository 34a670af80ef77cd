//! (a) The exec source on `tail -F` of a file that grows while the agent runs.

use crate::common::*;
use std::io::Write;
use std::time::Duration;

#[test]
fn exec_tail_follows_appends_and_every_line_arrives_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let out = dir.path().join("out.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(data("apache_access/apache_logs"))
        .unwrap()
        .lines()
        .take(600)
        .map(str::to_owned)
        .collect();
    // The first 100 lines exist before the agent starts.
    std::fs::write(&log, lines[..100].join("\n") + "\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0

[plugins.access]
builtin = "combined"

[sources.tail]
type = "exec"
command = "tail -n +1 -F '{log}' | cat"
plugins = ["access"]
channels = ["main"]
batch_size = 64
batch_timeout_ms = 50
{tail}"#,
            tail = main_channel_to_file(&out, "json"),
            log = log.display(),
        ),
    );
    let agent = spawn(&config);
    wait_for_lines(&out, 100, Duration::from_secs(30));

    // Append the rest in bursts while the agent runs, a partial line included.
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for chunk in lines[100..].chunks(50) {
        let text = chunk.join("\n") + "\n";
        let (a, b) = text.split_at(text.len() / 2);
        file.write_all(a.as_bytes()).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        file.write_all(b.as_bytes()).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_for_lines(&out, lines.len(), Duration::from_secs(30));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "agent failed: {stderr}");
    // The whole pipeline stopped with the agent, not just its shell.
    std::thread::sleep(Duration::from_millis(200));
    let left = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(log.to_str().unwrap())
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );

    let events = json_lines(&out);
    assert_eq!(events.len(), lines.len(), "every line exactly once");
    for (event, line) in events.iter().zip(&lines) {
        assert_combined_event(event, line);
    }
}
