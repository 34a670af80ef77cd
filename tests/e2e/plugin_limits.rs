//! What a plugin can make the agent hold: `memory_mb` caps all of an instance's linear
//! memories and tables together, and a plugin that fails on every poison event cannot
//! flood the agent's log with its panic output.

use crate::common::*;
use crate::hostile_wasm::{Attack, parser_component};
use std::time::{Duration, Instant};

/// Runs `attack` as a parser capped at `memory_mb` on three lines (a call each); the
/// events that came out, the agent's log and its peak RSS in MiB once all three are out.
fn attack_through_agent(attack: Attack, memory_mb: u32) -> (Vec<serde_json::Value>, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("hostile.wasm");
    std::fs::write(&plugin, parser_component(attack)).unwrap();
    let input = dir.path().join("in.log");
    std::fs::write(&input, "one\ntwo\nthree\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600
data_dir = "{data}"

[plugins.hostile]
path = "{plugin}"
memory_mb = {memory_mb}

[sources.in]
type = "file"
path = "{input}"
read_from = "start"
plugins = ["hostile"]
channels = ["main"]
batch_size = 1
{tail}"#,
            data = dir.path().join("data").display(),
            plugin = plugin.display(),
            input = input.display(),
            tail = main_channel_to_file(&out, "json"),
        ),
    );
    let agent = Running::new(spawn(&config));
    wait_for_lines(&out, 3, Duration::from_secs(120));
    let peak_mib = peak_rss_kib(agent.id()) / 1024;
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    eprintln!("{attack:?} under memory_mb = {memory_mb}: peak RSS {peak_mib} MiB");
    (json_lines(&out), stderr, peak_mib)
}

/// Every event came out unchanged and tagged with the plugin's failure, which says the
/// guest saw its growth refused (`unreachable`: the fixture's trap after a -1), not
/// that it got all it asked for (a division by zero).
fn assert_refused_in_the_guest(events: &[serde_json::Value], stderr: &str) {
    assert_eq!(events.len(), 3, "{stderr}");
    for (event, body) in events.iter().zip(["one", "two", "three"]) {
        assert_eq!(event["body"], body, "{event}");
        let error = event["tags"]["plugin_error"].as_str().unwrap_or_default();
        assert!(error.contains("unreachable"), "{event}\n{stderr}");
    }
    assert_eq!(
        summary_counter(stderr, "step.in.hostile", "events_failed"),
        Some(3),
        "{stderr}"
    );
}

#[test]
fn four_memories_grown_hold_no_more_than_memory_mb_together() {
    // Four memories (the most a store may have), each grown towards 128 MiB; the cap is
    // 128 MiB for all of them: with a cap per memory, 512 MiB were written.
    let (events, stderr, peak_mib) = attack_through_agent(
        Attack::Memories {
            count: 4,
            mib_each: 128,
        },
        128,
    );
    assert_refused_in_the_guest(&events, &stderr);
    // 128 MiB of plugin memory plus the agent (a debug build: ~40 MiB): ~170 MiB;
    // 4 × 128 MiB would be past 540.
    assert!(peak_mib < 300, "peak RSS {peak_mib} MiB\n{stderr}");
}

#[test]
fn a_huge_table_grow_is_refused_and_the_agent_goes_on() {
    // 400 million elements: 3.2 GB of host memory if allowed.
    let (events, stderr, peak_mib) = attack_through_agent(
        Attack::Table {
            elements: 400_000_000,
        },
        64,
    );
    assert_refused_in_the_guest(&events, &stderr);
    // The agent alone (~40 MiB); the table would have been 3.2 GB.
    assert!(peak_mib < 300, "peak RSS {peak_mib} MiB\n{stderr}");
}

#[test]
fn sixteen_memories_fail_the_plugin_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("hostile.wasm");
    std::fs::write(
        &plugin,
        parser_component(Attack::Memories {
            count: 16,
            mib_each: 64,
        }),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[plugins.hostile]
path = "{plugin}"

[sources.in]
type = "stdin"
plugins = ["hostile"]
channels = ["main"]
{tail}"#,
            plugin = plugin.display(),
            tail = main_channel_to_file(&dir.path().join("out.jsonl"), "json"),
        ),
    );
    let (ok, text) = validate_config(&config);
    assert!(!ok, "{text}");
    assert!(
        text.contains("hostile") && text.contains("memor"),
        "the plugin and the limit named: {text}"
    );
}

/// 100 poison lines among 10,000: the plugin panics on each, in every call that
/// bisects its batch down to it (about ten calls per poison line, a few lines of panic
/// output each): the log shows at most 20 lines of plugin output per 10 s and counts
/// the rest; every line is delivered.
#[test]
fn a_plugin_panicking_on_every_poison_line_does_not_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    let poison = |i: usize| i % 100 == 37;
    let text: String = (0..10_000)
        .map(|i| {
            if poison(i) {
                format!("line {i} TRAP\n")
            } else {
                format!("line {i}\n")
            }
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[plugins.fragile]
path = "{plugin}"

[sources.in]
type = "stdin"
plugins = ["fragile"]
channels = ["main"]
batch_size = 512
{tail}"#,
            tail = main_channel_to_file(&out, "json"),
            plugin = built_plugin("runnel_test_trap_on_marker.wasm").display(),
        ),
    );
    let started = Instant::now();
    let output = run_with_stdin(&config, &input);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Delivered: the poison lines tagged, the others parsed.
    let events = json_lines(&out);
    assert_eq!(events.len(), 10_000);
    for (i, event) in events.iter().enumerate() {
        if poison(i) {
            assert!(event["tags"]["plugin_error"].is_string(), "{event}");
        } else {
            assert_eq!(event["fields"]["line"], format!("line {i}"), "{event}");
        }
    }
    let failed_calls = summary_counter(&stderr, "step.in.fragile", "call_failures").unwrap();
    assert!(failed_calls >= 100, "{failed_calls}");
    // The plugin's output in the log: its lines (under `stream`) at most 20 per
    // started 10 s window of the run.
    let output_lines = stderr
        .lines()
        .filter(|l| l.contains("\"stream\"") || l.contains("stream="))
        .filter(|l| !l.contains("not shown"))
        .count() as u64;
    let panics = stderr.matches("trap-on-marker: TRAP in body").count() as u64;
    let windows = elapsed.as_secs() / 10 + 1;
    assert!(panics >= 1, "the first panic is shown\n{stderr}");
    assert!(
        output_lines <= 20 * windows,
        "{output_lines} lines of plugin output in {elapsed:?} ({failed_calls} failed calls)"
    );
    assert!(
        panics < failed_calls / 2,
        "{panics} panics logged for {failed_calls} failed calls"
    );
    // The rest is counted, in the summary and in the log.
    let suppressed = summary_counter(&stderr, "plugin.fragile", "output_lines_suppressed")
        .expect("the suppressed lines are counted");
    assert!(
        suppressed >= failed_calls - output_lines,
        "{suppressed}\n{stderr}"
    );
    assert!(stderr.contains("the rest is not shown"), "{stderr}");
}
