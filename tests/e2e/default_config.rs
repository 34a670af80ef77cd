//! The embedded default config runs from the binary alone: simulated apps → shipped
//! plugins → console and files, with a live summary; SIGTERM drains it cleanly.

use crate::common::*;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn the_embedded_default_runs_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let agent = runnel()
        .arg("run")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = dir.path().join("runnel-data/events.jsonl");
    wait_for_lines(&events, 40, Duration::from_secs(30));
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");

    let events = json_lines(&events);
    let names: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.starts_with("access-")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("app-")), "{names:?}");
    // Parsed, stamped with the host, and no control characters left.
    for e in &events {
        assert!(e["tags"]["host"].is_string(), "{e}");
        assert!(e["timestamp"].is_string(), "{e}");
        assert!(e["tags"].get("parse_error").is_none(), "{e}");
        assert!(
            !e.to_string().contains("\\u001b"),
            "escape codes stripped: {e}"
        );
    }
    // Every event the sources produced reached the archive sink.
    let produced: u64 = ["web", "services", "daemons"]
        .iter()
        .map(|s| summary_counter(&stderr, &format!("source.{s}"), "events_out").unwrap_or(0))
        .sum();
    assert_eq!(
        summary_counter(&stderr, "sink.archive", "events_out"),
        Some(produced),
        "{stderr}"
    );
}
