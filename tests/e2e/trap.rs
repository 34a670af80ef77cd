//! (d) A plugin that traps, runs past its deadline, or tries to block in a WASI call
//! does not stop the agent; the plugin is restarted and the batch it failed on retried
//! in halves until only the events that make it fail are left: those are kept and
//! tagged, the rest processed.

use crate::common::*;

#[test]
fn a_trapping_or_spinning_plugin_does_not_stop_the_agent_or_lose_events() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    // 300 lines, batches of 10: the calls on batches with TRAP or SPIN fail, and are
    // retried in halves.
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
    // What the plugin printed when it panicked is in the agent's log, under its name.
    assert!(
        stderr.contains("trap-on-marker: TRAP in body") && stderr.contains("\"stderr\""),
        "{stderr}"
    );
    let markers = [15usize, 42, 151, 277];
    for (i, event) in events.iter().enumerate() {
        let tagged = event["tags"].get("plugin_error").is_some();
        assert_eq!(tagged, markers.contains(&i), "event {i}: {event}");
        // Failed events are kept unchanged; the others went through the plugin.
        let seen = if tagged {
            event["body"].as_str()
        } else {
            event["fields"]["line"].as_str()
        };
        assert_eq!(seen, Some(lines[i].as_str()), "event {i}: {event}");
    }
    let spin = &events[42]["tags"]["plugin_error"];
    assert!(
        spin.as_str().unwrap().contains("interrupt"),
        "deadline named: {spin}"
    );
    let sleep = events[277]["tags"]["plugin_error"].as_str().unwrap();
    assert!(sleep.contains("may not block"), "blocking refused: {sleep}");
    // Each marker fails one call per halving: 10 → 5 → 2 or 3 → 1 (or 2 → 1).
    let calls = summary_counter(&stderr, "step.in.fragile", "call_failures").unwrap();
    assert!((12..=20).contains(&calls), "{calls} failed calls\n{stderr}");
    assert_eq!(
        summary_counter(&stderr, "step.in.fragile", "events_failed"),
        Some(4),
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

#[test]
fn only_the_poison_events_of_a_batch_get_the_error_policy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    // 100 trapping lines spread over 100,000, in batches of 512.
    let poison = |i: usize| i % 1000 == 137;
    let mut text = String::new();
    for i in 0..100_000 {
        if poison(i) {
            text.push_str(&format!("line {i} TRAP\n"));
        } else {
            text.push_str(&format!("line {i}\n"));
        }
    }
    std::fs::write(&input, text).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[plugins.fragile]
path = "{plugin}"
on_error = "drop"

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
    let output = run_with_stdin(&config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let events = json_lines(&out);
    assert_eq!(events.len(), 99_900, "exactly the poison events dropped");
    let expected = (0..100_000usize).filter(|&i| !poison(i));
    for (event, i) in events.iter().zip(expected) {
        assert_eq!(
            event["fields"]["line"].as_str(),
            Some(format!("line {i}").as_str()),
            "processed, in order: {event}"
        );
    }
    assert_eq!(
        summary_counter(&stderr, "step.in.fragile", "events_failed"),
        Some(100),
        "{stderr}"
    );
    assert_eq!(
        summary_counter(&stderr, "step.in.fragile", "events_dropped"),
        Some(100),
        "{stderr}"
    );
}

/// 40 lines that each keep 4 MiB of plugin memory, through a plugin capped at 32 MiB:
/// with recycling (past 16 MiB) every line is parsed; without it the plugin runs out of
/// memory and fails lines.
fn grow_through(recycle_mb: u32) -> (usize, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    let text: String = (0..40).map(|i| format!("GROW {i}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[plugins.hungry]
path = "{plugin}"
memory_mb = 32
recycle_mb = {recycle_mb}

[sources.in]
type = "stdin"
plugins = ["hungry"]
channels = ["main"]
batch_size = 1
{tail}"#,
            tail = main_channel_to_file(&out, "json"),
            plugin = built_plugin("runnel_test_trap_on_marker.wasm").display(),
        ),
    );
    let output = run_with_stdin(&config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let events = json_lines(&out);
    assert_eq!(events.len(), 40, "no event lost");
    let parsed = events
        .iter()
        .filter(|e| e["fields"]["line"].is_string())
        .count();
    (parsed, stderr)
}

#[test]
fn an_instance_whose_memory_grew_is_recycled_before_it_runs_out() {
    let (parsed, stderr) = grow_through(16);
    assert_eq!(parsed, 40, "{stderr}");
    let recycled = summary_counter(&stderr, "plugin.hungry", "instances_recycled").unwrap();
    assert!(
        (8..=14).contains(&recycled),
        "{recycled} recycles\n{stderr}"
    );
    // Without recycling, the same plugin runs into its cap.
    let (parsed, stderr) = grow_through(0);
    assert!(parsed < 40, "{stderr}");
}

#[test]
fn a_memory_bomb_fails_its_own_line_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.log");
    let text: String = (0..100)
        .map(|i| {
            if i == 37 {
                "BOMB\n".to_owned()
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

[plugins.bomb]
path = "{plugin}"
memory_mb = 16

[sources.in]
type = "stdin"
plugins = ["bomb"]
channels = ["main"]
{tail}"#,
            tail = main_channel_to_file(&out, "json"),
            plugin = built_plugin("runnel_test_trap_on_marker.wasm").display(),
        ),
    );
    let output = run_with_stdin(&config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let events = json_lines(&out);
    assert_eq!(events.len(), 100);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["tags"]["plugin_error"].is_string(), i == 37, "{e}");
    }
}

/// One pipeline runs a hostile plugin — endless loops, a memory bomb, traps, 1000×
/// output, slow batches — while another, healthy one shares the agent: the healthy one
/// delivers everything long before the hostile one is through, the agent stays up and
/// its memory stays bounded, and every hostile line still comes out (processed or
/// tagged).
#[test]
fn hostile_plugins_do_not_hold_up_the_other_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let hostile_in = dir.path().join("hostile.log");
    let healthy_in = dir.path().join("healthy.log");
    let markers = ["SPIN", "BOMB", "TRAP", "AMPLIFY", "SLOW"];
    let mut hostile = String::new();
    for i in 0..200 {
        let marker = if i % 10 == 0 {
            markers[(i / 10) % 5]
        } else {
            "ok"
        };
        hostile.push_str(&format!("{i} {marker} {}\n", "x".repeat(100)));
    }
    std::fs::write(&hostile_in, hostile).unwrap();
    let healthy: String = (0..20_000).map(|i| format!("healthy {i}\n")).collect();
    std::fs::write(&healthy_in, healthy).unwrap();
    let hostile_out = dir.path().join("hostile.jsonl");
    let healthy_out = dir.path().join("healthy.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600
data_dir = "{data}"

[plugins.hostile]
path = "{plugin}"
timeout_ms = 500
memory_mb = 32

[sources.bad]
type = "file"
path = "{hostile_in}"
read_from = "start"
exit_on_eof = true
plugins = ["hostile"]
channels = ["bad"]
batch_size = 8

[sources.good]
type = "file"
path = "{healthy_in}"
read_from = "start"
exit_on_eof = true
channels = ["good"]

[channels.bad]
type = "memory"

[channels.good]
type = "memory"

[sinks.bad]
type = "file"
channel = "bad"
path = "{hostile_out}"
format = "json"

[sinks.good]
type = "file"
channel = "good"
path = "{healthy_out}"
format = "json"
"#,
            data = dir.path().join("data").display(),
            plugin = built_plugin("runnel_test_trap_on_marker.wasm").display(),
            hostile_in = hostile_in.display(),
            healthy_in = healthy_in.display(),
            hostile_out = hostile_out.display(),
            healthy_out = healthy_out.display(),
        ),
    );
    let agent = spawn(&config);
    let pid = agent.id();
    let start = std::time::Instant::now();
    while count_lines(&healthy_out) < 20_000 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the healthy pipeline stalled"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let hostile_done_then = count_lines(&hostile_out);
    assert!(
        hostile_done_then < 200,
        "the healthy pipeline finished first ({hostile_done_then} of 200 hostile lines out)"
    );
    let mut peak = 0;
    let mut agent = agent;
    let status = loop {
        peak = peak.max(peak_rss_kib(pid));
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the agent did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let events = json_lines(&hostile_out);
    assert_eq!(events.len(), 200, "every hostile line out");
    for (i, e) in events.iter().enumerate() {
        let marker = if i % 10 == 0 {
            markers[(i / 10) % 5]
        } else {
            "ok"
        };
        let failed = e["tags"]["plugin_error"].is_string();
        assert_eq!(
            failed,
            matches!(marker, "SPIN" | "BOMB" | "TRAP"),
            "line {i}: {e}"
        );
        if marker == "AMPLIFY" {
            let line = e["fields"]["line"].as_str().unwrap();
            assert_eq!(line.len(), 1000 * (format!("{i} AMPLIFY ").len() + 100));
        }
    }
    assert!(peak < 400 * 1024, "peak RSS {} MiB", peak / 1024);
    eprintln!(
        "hostile: peak RSS {} MiB, {:?}",
        peak / 1024,
        start.elapsed()
    );
}
