//! Host-held plugin state: a counting plugin's counts (kept with `runnel:plugin/state`)
//! survive traps, a hot reload and restarts of the agent, and match an independent
//! count of the input — a call that traps changes nothing, so the retried halves of a
//! poisoned batch count each line once.

use crate::common::*;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// `n` lines over keys k0..k4, with a trapping line every 97th; returns the lines.
fn lines(from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            let key = format!("k{}", i % 5);
            if i % 97 == 0 {
                format!("{key} TRAP {i}")
            } else {
                format!("{key} {i}")
            }
        })
        .collect()
}

fn config(dir: &Path, plugin: &Path, out: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[agent]
summary_interval_secs = 0
data_dir = "{data}"

[plugins.counter]
path = "{plugin}"
[plugins.counter.config]
count = true

[sources.in]
type = "stdin"
plugins = ["counter"]
channels = ["main"]
batch_size = 64
batch_timeout_ms = 10
{tail}"#,
            data = dir.join("data").display(),
            plugin = plugin.display(),
            tail = main_channel_to_file(out, "json"),
        ),
    )
}

/// The component with a custom section appended: another component (another SHA-256)
/// that behaves the same — a new version to reload.
fn another_version(wasm: &[u8]) -> Vec<u8> {
    let mut v = wasm.to_vec();
    // Custom section: id 0, size 6, name "test" (length 4), one byte of payload.
    v.extend_from_slice(&[0, 6, 4, b't', b'e', b's', b't', 1]);
    v
}

#[test]
fn plugin_state_survives_traps_a_reload_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("counter.wasm");
    let wasm = std::fs::read(built_plugin("runnel_test_trap_on_marker.wasm")).unwrap();
    std::fs::write(&plugin, &wasm).unwrap();
    let out = dir.path().join("out.jsonl");
    let config = config(dir.path(), &plugin, &out);
    let mut all = Vec::new();

    // Run 1: 3,000 lines, with a reload halfway.
    let log = dir.path().join("agent.log");
    let mut agent = spawn_fed(&config, &log);
    wait_for_log(&log, "runnel started");
    let mut stdin = agent.stdin.take().unwrap();
    let first = lines(0, 1500);
    stdin
        .write_all((first.join("\n") + "\n").as_bytes())
        .unwrap();
    all.extend(first);
    std::fs::write(dir.path().join("next.wasm"), another_version(&wasm)).unwrap();
    std::fs::rename(dir.path().join("next.wasm"), &plugin).unwrap();
    wait_for_log(&log, "plugin reloaded");
    let second = lines(1500, 1500);
    stdin
        .write_all((second.join("\n") + "\n").as_bytes())
        .unwrap();
    all.extend(second);
    drop(stdin);
    assert!(
        agent.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // Runs 2 and 3: restarts, on the same data directory.
    for from in [3000, 4000] {
        let more = lines(from, 1000);
        let input = dir.path().join("in.log");
        std::fs::write(&input, more.join("\n") + "\n").unwrap();
        let output = run_with_stdin(&config, &input);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        all.extend(more);
    }

    // An independent count, line by line: the n-th parsed line of a key says seen = n.
    let events = json_lines(&out);
    assert_eq!(events.len(), all.len());
    let mut expected: HashMap<String, i64> = HashMap::new();
    let mut trapped = 0;
    for (line, event) in all.iter().zip(&events) {
        if line.contains("TRAP") {
            assert!(event["tags"]["plugin_error"].is_string(), "{event}");
            trapped += 1;
            continue;
        }
        let key = line.split(' ').next().unwrap().to_owned();
        let n = expected.entry(key).or_default();
        *n += 1;
        assert_eq!(
            event["fields"]["seen"].as_i64(),
            Some(*n),
            "{line}: {event}"
        );
    }
    assert_eq!(trapped, all.iter().filter(|l| l.contains("TRAP")).count());
    assert!(dir.path().join("data/state/counter.state").exists());
}
