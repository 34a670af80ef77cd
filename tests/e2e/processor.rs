//! The processor role: any number of events out per batch (kept, dropped, doubled,
//! patched, new), and `tick` on a timer — plus a last tick when the source ends, so a
//! window is never lost.

use crate::common::*;

#[test]
fn a_processor_reshapes_batches_and_emits_a_window_count_per_tick() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    let body = |i: usize| match i % 50 {
        7 => "DROP".to_owned(),
        8 => "TWICE".to_owned(),
        9 => "PATCH".to_owned(),
        _ => format!("line {i}"),
    };
    let lines: Vec<String> = (0..5000).map(body).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[plugins.windows]
path = "{plugin}"
tick_ms = 20

[sources.in]
type = "stdin"
plugins = ["windows"]
channels = ["main"]
batch_size = 100
{tail}"#,
            plugin = built_plugin("runnel_test_window_count.wasm").display(),
            tail = main_channel_to_file(&out, "json"),
        ),
    );
    let output = run_with_stdin(&config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let events = json_lines(&out);
    let (windows, passed): (Vec<_>, Vec<_>) = events.iter().partition(|e| e["name"] == "window");
    // Every input line counted once, across the ticks and the last one at the end.
    let counted: u64 = windows
        .iter()
        .map(|w| w["fields"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 5000, "{windows:?}");
    assert!(windows.iter().all(|w| w["timestamp"].is_string()));
    // The batch reshaped: DROP gone, TWICE doubled, PATCH patched, order kept.
    let expected: Vec<&str> = lines
        .iter()
        .flat_map(|l| match l.as_str() {
            "DROP" => vec![],
            "TWICE" => vec!["TWICE", "TWICE"],
            other => vec![other],
        })
        .collect();
    let bodies: Vec<&str> = passed.iter().map(|e| e["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, expected);
    for e in &passed {
        assert_eq!(
            e["fields"]["patched"].as_bool(),
            (e["body"] == "PATCH").then_some(true)
        );
    }
}

#[test]
fn only_processors_may_tick() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[plugins.filter]
builtin = "field-filter"
tick_ms = 100
[plugins.filter.config]
field = "x"
op = "exists"

[sources.in]
type = "stdin"
plugins = ["filter"]
channels = ["main"]
{tail}"#,
            tail = main_channel_to_file(&dir.path().join("out.jsonl"), "json"),
        ),
    );
    let out = runnel()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("plugins.filter.tick_ms") && text.contains("only processors tick"),
        "{text}"
    );
}
