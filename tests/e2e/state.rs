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

/// The agent's data directory in `dir`, and the plugin `counter`: `plugin` counting.
fn counter_head(dir: &Path, plugin: &Path) -> String {
    format!(
        r#"
[agent]
summary_interval_secs = 0
data_dir = "{data}"

[plugins.counter]
path = "{plugin}"
[plugins.counter.config]
count = true
"#,
        data = dir.join("data").display(),
        plugin = plugin.display(),
    )
}

fn config(dir: &Path, plugin: &Path, out: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"{head}
[sources.in]
type = "stdin"
plugins = ["counter"]
channels = ["main"]
batch_size = 64
batch_timeout_ms = 10
{tail}"#,
            head = counter_head(dir, plugin),
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

/// taildir of `dir/logs/*.log` → the counting plugin → durable `file` channel → file
/// sink: the read positions and the plugin's state changes go into the channel's log
/// with the batches they come from.
fn tailing_config(dir: &Path, plugin: &Path, out: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    write_config(
        dir,
        &format!(
            r#"{head}
[sources.app]
type = "taildir"
paths = {{ app = "{logs}/*.log" }}
read_from = "start"
plugins = ["counter"]
channels = ["durable"]
batch_size = 50
batch_timeout_ms = 10

[channels.durable]
type = "file"
# Small segments: many are started and deleted while the agent is killed again and
# again (each start saves the plugin states).
segment_bytes = 65536

[sinks.out]
type = "file"
channel = "durable"
path = "{out}"
format = "json"
batch_size = 50
batch_timeout_ms = 10
"#,
            head = counter_head(dir, plugin),
            logs = dir.join("logs").display(),
            out = out.display(),
        ),
    )
}

#[test]
fn plugin_state_stays_exact_through_sigkills() {
    const TOTAL: usize = 20_000;
    const KILLS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let plugin = built_plugin("runnel_test_trap_on_marker.wasm");
    let out = dir.path().join("out.jsonl");
    let config = tailing_config(dir.path(), &plugin, &out);
    let log = dir.path().join("agent.log");
    let spawn = || {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        Running::new(
            runnel()
                .env("RUNNEL_LOG", "warn")
                .args(["run", "--config"])
                .arg(&config)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    };

    // A writer appends `k<i % 2000> <i>` lines, 50 every 10 ms, while the agent is
    // killed (SIGKILL) and restarted again and again. With 2,000 keys a key's last
    // change is often several log segments back.
    let input: Vec<String> = (0..TOTAL).map(|i| format!("k{} {i}", i % 2000)).collect();
    let path = dir.path().join("logs/app.log");
    let to_write = input.clone();
    let writer = std::thread::spawn(move || {
        let mut file = std::fs::File::create(path).unwrap();
        for chunk in to_write.chunks(50) {
            file.write_all((chunk.join("\n") + "\n").as_bytes())
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    for i in 0..KILLS {
        let mut agent = spawn();
        std::thread::sleep(std::time::Duration::from_millis(250 + 97 * (i as u64 % 5)));
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    writer.join().unwrap();
    let agent = spawn();
    wait_until(
        "every line delivered",
        std::time::Duration::from_secs(60),
        || {
            count_lines(&out) >= TOTAL
                && json_lines(&out)
                    .iter()
                    .map(|e| e["fields"]["line"].as_str().unwrap_or("").to_owned())
                    .collect::<std::collections::HashSet<_>>()
                    .len()
                    == TOTAL
        },
    );
    let (status, _) = terminate(agent.into_child());
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // An independent count: the n-th line of a key must say seen = n, and a line the
    // agent read again after a kill (a duplicate) must say the same as the first time.
    let mut expected: HashMap<&str, i64> = HashMap::new();
    let mut seen_of_line: HashMap<&str, i64> = HashMap::new();
    for line in &input {
        let key = line.split(' ').next().unwrap();
        let n = expected.entry(key).or_default();
        *n += 1;
        seen_of_line.insert(line.as_str(), *n);
    }
    let events = json_lines(&out);
    let mut wrong = Vec::new();
    for event in &events {
        let line = event["fields"]["line"].as_str().unwrap();
        let seen = event["fields"]["seen"].as_i64();
        if seen != seen_of_line.get(line).copied() {
            wrong.push(format!(
                "{line}: seen {seen:?}, expected {:?}",
                seen_of_line.get(line)
            ));
        }
    }
    eprintln!(
        "kill -9 ×{KILLS}: {} events for {TOTAL} lines, {} with a wrong count",
        events.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong counts, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // The log went through many segments (names are their numbers).
    let newest_segment = std::fs::read_dir(dir.path().join("data/channels/durable"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".wal")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap();
    eprintln!("newest segment {newest_segment}");
    assert!(newest_segment >= 10, "only {newest_segment} segments");
}
