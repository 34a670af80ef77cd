//! (b) All 10,000 lines of the real Apache access log through the `combined` plugin.

use crate::common::*;

#[test]
fn every_line_of_the_real_access_log_parses_with_correct_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0

[plugins.access]
builtin = "combined"

[sources.in]
type = "stdin"
plugins = ["access"]
channels = ["main"]
batch_size = 1000
{tail}"#,
            tail = main_channel_to_file(&out, "json"),
        ),
    );
    let input = data("apache_access/apache_logs");
    let output = run_with_stdin(&config, &input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let lines: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let events = json_lines(&out);
    assert_eq!(events.len(), 10_000);
    assert_eq!(lines.len(), 10_000);
    let failed = events
        .iter()
        .filter(|e| e["tags"].get("parse_error").is_some())
        .count();
    assert_eq!(failed, 0, "no line may fail to parse");

    // One source, one worker: order is kept, so event i is line i. Every line is
    // checked against the independent regex of tests/e2e/common.rs.
    for (event, line) in events.iter().zip(&lines) {
        assert_combined_event(event, line);
    }
    // The parser clears the body after a successful parse (keep_body = false).
    assert!(events.iter().all(|e| e.get("body").is_none()));
}
