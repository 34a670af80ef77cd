//! (d) A plugin that traps, runs past its deadline, or tries to block in a WASI call
//! does not stop the agent; the batch it failed on is kept and tagged, and the plugin is
//! restarted.

use crate::common::*;

#[test]
fn a_trapping_or_spinning_plugin_does_not_stop_the_agent_or_lose_events() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    // 300 lines, batches of 10: the batches with TRAP or SPIN fail as a whole.
    let mut lines = Vec::new();
    for i in 0..300 {
        lines.push(match i {
            15 | 151 => format!("line {i} TRAP"),
            42 => format!("line {i} SPIN"),
            277 => format!("line {i} SLEEP"),
            _ => format!("line {i}"),
        });
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[plugins.fragile]
path = "{plugin}"
timeout_ms = 300

[sources.in]
type = "stdin"
plugins = ["fragile"]
channels = ["main"]
batch_size = 10
{tail}"#,
            tail = main_channel_to_file(&out, "json"),
            plugin = built_plugin("runnel_test_trap_on_marker.wasm").display(),
        ),
    );
    let output = run_with_stdin(&config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let events = json_lines(&out);
    assert_eq!(events.len(), 300, "no event lost");
    let failed_batches = [1usize, 4, 15, 27];
    for (i, event) in events.iter().enumerate() {
        let body_or_field = event["fields"]["line"]
            .as_str()
            .or(event["body"].as_str())
            .unwrap();
        assert_eq!(body_or_field, lines[i]);
        let tagged = event["tags"].get("plugin_error").is_some();
        assert_eq!(
            tagged,
            failed_batches.contains(&(i / 10)),
            "event {i}: {event}"
        );
    }
    let spin = &events[42]["tags"]["plugin_error"];
    assert!(
        spin.as_str().unwrap().contains("interrupt"),
        "deadline named: {spin}"
    );
    let sleep = events[277]["tags"]["plugin_error"].as_str().unwrap();
    assert!(sleep.contains("may not block"), "blocking refused: {sleep}");
    assert_eq!(
        summary_counter(&stderr, "step.in.fragile", "call_failures"),
        Some(4),
        "{stderr}"
    );
    assert_eq!(
        summary_counter(&stderr, "step.in.fragile", "events_failed"),
        Some(40),
        "{stderr}"
    );
}

#[test]
fn a_plugin_sees_no_files_environment_arguments_or_clock() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    std::fs::write(&input, "PROBE\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0

[plugins.probe]
path = "{plugin}"

[sources.in]
type = "stdin"
plugins = ["probe"]
channels = ["main"]
{tail}"#,
            plugin = built_plugin("runnel_test_trap_on_marker.wasm").display(),
            tail = main_channel_to_file(&out, "fields"),
        ),
    );
    let output = runnel()
        .args(["run", "--config"])
        .arg(&config)
        .env("SECRET_TOKEN", "must-not-leak")
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen = &json_lines(&out)[0];
    assert!(
        seen["file"].as_str().unwrap().starts_with("denied"),
        "{seen}"
    );
    assert!(
        seen["dir"].as_str().unwrap().starts_with("denied"),
        "{seen}"
    );
    assert_eq!(seen["env"], 0, "{seen}");
    assert_eq!(seen["args"], 0, "{seen}");
    assert_eq!(
        seen["clock_secs"], 0,
        "the WASI clock is stopped at the epoch: {seen}"
    );
}
