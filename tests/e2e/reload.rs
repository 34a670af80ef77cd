//! Hot reload under load: a plugin file replaced 20 times while lines stream through
//! it — good versions, two broken ones and one that traps on every batch. Every line
//! comes out exactly once, in order, marked by the version that processed it; broken
//! versions are refused and the running one keeps serving.

use crate::common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The versioned fixture with its version digits set to `version`.
pub(crate) fn fixture(version: u32) -> Vec<u8> {
    patched(
        "runnel_test_versioned.wasm",
        b"RUNNEL-FIXTURE-VERSION:",
        version,
    )
}

/// The versioned-router fixture with its version digits set to `version`.
fn router_fixture(version: u32) -> Vec<u8> {
    patched(
        "runnel_test_versioned_router.wasm",
        b"RUNNEL-ROUTER-VERSION:",
        version,
    )
}

/// The built plugin `file` with the five digits after `marker` set to `version`.
fn patched(file: &str, marker: &[u8], version: u32) -> Vec<u8> {
    let mut wasm = std::fs::read(built_plugin(file)).unwrap();
    let at: Vec<usize> = wasm
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i + marker.len())
        .collect();
    assert_eq!(at.len(), 1, "the marker is in {file} once");
    wasm[at[0]..at[0] + 5].copy_from_slice(format!("{version:05}").as_bytes());
    wasm
}

/// Replaces `path` the way deployments do: a new file renamed over the old one.
fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// What one output line says: its id, and the version that processed it (`None`:
/// the plugin failed on it and it was tagged).
fn parse(event: &serde_json::Value) -> (u64, Option<u64>) {
    match event["fields"]["line"].as_str() {
        Some(line) => (
            line.strip_prefix("id=").unwrap().parse().unwrap(),
            event["fields"]["version"].as_u64(),
        ),
        None => {
            assert!(event["tags"]["plugin_error"].is_string(), "{event}");
            let body = event["body"].as_str().unwrap();
            (body.strip_prefix("id=").unwrap().parse().unwrap(), None)
        }
    }
}

/// stdin → the plugin file `plugin` as `v` (then `more_plugins`, named after it in
/// the chain) → the JSON file `out`; `agent` is added to `[agent]`.
fn config(
    dir: &Path,
    plugin: &Path,
    out: &Path,
    agent: &str,
    more_plugins: &[(&str, &str)],
) -> PathBuf {
    let extra: String = more_plugins
        .iter()
        .map(|(name, table)| format!("\n[plugins.{name}]\n{table}\n"))
        .collect();
    let chain: Vec<String> = std::iter::once("\"v\"".to_owned())
        .chain(more_plugins.iter().map(|(name, _)| format!("\"{name}\"")))
        .collect();
    write_config(
        dir,
        &format!(
            r#"
[agent]
summary_interval_secs = 3600
{agent}

[plugins.v]
path = "{plugin}"
{extra}
[sources.in]
type = "stdin"
plugins = [{chain}]
channels = ["main"]
batch_size = 50
batch_timeout_ms = 10
{tail}"#,
            plugin = plugin.display(),
            chain = chain.join(", "),
            tail = main_channel_to_file(out, "json"),
        ),
    )
}

#[test]
fn a_plugin_replaced_twenty_times_under_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, fixture(1)).unwrap();
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("agent.log");
    let data = format!("data_dir = \"{}\"", dir.path().join("data").display());
    let config = config(dir.path(), &plugin, &out, &data, &[]);
    let mut agent = spawn_fed(&config, &log);

    // A steady stream: 50 lines every 5 ms, until told to stop.
    let mut stdin = agent.stdin.take().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut chunk = String::new();
                for _ in 0..50 {
                    chunk.push_str(&format!("id={next}\n"));
                    next += 1;
                }
                stdin.write_all(chunk.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            next // dropping stdin ends the source
        })
    };

    let events = || -> Vec<(u64, Option<u64>)> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| parse(&serde_json::from_str(l).unwrap()))
            .collect()
    };
    let refusals = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("reload refused")
            .count()
    };
    wait_until("version 1", Duration::from_secs(30), || {
        events().iter().any(|e| e.1 == Some(1))
    });
    let mut expected_versions = vec![1u64];
    for round in 1..=20u32 {
        match round {
            5 => {
                let before = refusals();
                let wasm = fixture(round + 1);
                install(&plugin, &wasm[..wasm.len() / 2]); // truncated
                wait_until("a refusal", Duration::from_secs(30), || refusals() > before);
            }
            12 => {
                let before = refusals();
                install(&plugin, b"this is not a WebAssembly component");
                wait_until("a refusal", Duration::from_secs(30), || refusals() > before);
            }
            15 => {
                install(&plugin, &fixture(99_999));
                let seen = events().len();
                wait_until("the trapping version", Duration::from_secs(60), || {
                    events()[seen..].iter().any(|e| e.1.is_none())
                });
            }
            _ => {
                let version = u64::from(round + 1);
                install(&plugin, &fixture(round + 1));
                expected_versions.push(version);
                wait_until(
                    &format!("version {version}"),
                    Duration::from_secs(60),
                    || events().iter().any(|e| e.1 == Some(version)),
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let status = agent.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log_text}");

    let events = events();
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(ids.len() as u64, written, "every line, once");
    assert!(
        ids.iter().copied().eq(0..written),
        "every line exactly once, in order"
    );
    // Versions only move forward, and each good one processed lines.
    let versions: Vec<u64> = events.iter().filter_map(|e| e.1).collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "versions go forward"
    );
    let mut seen = versions.clone();
    seen.dedup();
    assert_eq!(seen, expected_versions);
    assert!(!versions.contains(&99_999));
    assert_eq!(refusals(), 2, "{log_text}");
    if std::env::var_os("RUNNEL_SHOW_LOG").is_some() {
        eprintln!("{log_text}");
    }
    assert!(
        log_text.contains("not a") || log_text.contains("compile"),
        "the refusal says why: {log_text}"
    );
}

#[test]
fn sighup_reloads_and_the_status_shows_each_version() {
    let dir = tempfile::tempdir().unwrap();
    let plugin: PathBuf = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, fixture(7)).unwrap();
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("agent.log");
    let unwatched = config(dir.path(), &plugin, &out, "watch_plugins = false", &[]);
    let mut agent = spawn_fed(&unwatched, &log);
    let mut stdin = agent.stdin.take().unwrap();
    let versions = || -> Vec<u64> {
        json_lines_lenient(&out)
            .iter()
            .filter_map(|e| e["fields"]["version"].as_u64())
            .collect()
    };
    stdin.write_all(b"id=0\n").unwrap();
    wait_until("the first line", Duration::from_secs(30), || {
        versions() == [7]
    });
    // Not watched: a new file changes nothing until SIGHUP. A control agent that does
    // watch its copy gets the same new file at the same moment: once it has reloaded,
    // a watcher would have had its chance here too (no fixed wait that a slow machine
    // could outlast).
    let control_dir = dir.path().join("control");
    std::fs::create_dir_all(&control_dir).unwrap();
    let control_plugin = control_dir.join("plugin.wasm");
    std::fs::write(&control_plugin, fixture(7)).unwrap();
    let control_log = control_dir.join("agent.log");
    let control = config(
        &control_dir,
        &control_plugin,
        &control_dir.join("out.jsonl"),
        "watch_plugins = true",
        &[],
    );
    let mut watching = spawn_fed(&control, &control_log);
    wait_until(
        "the control agent to start",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&control_log)
                .unwrap_or_default()
                .contains("runnel started")
        },
    );
    install(&plugin, &fixture(8));
    install(&control_plugin, &fixture(8));
    wait_until(
        "the watching agent's reload",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&control_log)
                .unwrap_or_default()
                .contains("plugin reloaded")
        },
    );
    drop(watching.stdin.take());
    assert!(watching.wait().unwrap().success());
    stdin.write_all(b"id=1\n").unwrap();
    wait_until("the second line", Duration::from_secs(30), || {
        versions().len() == 2
    });
    assert_eq!(versions(), [7, 7]);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("the reload", Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("plugin reloaded")
    });
    stdin.write_all(b"id=2\n").unwrap();
    drop(stdin);
    let status = agent.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log_text}");
    assert_eq!(versions(), [7, 7, 8], "{log_text}");
}

/// The JSON lines of `path` written so far (a line being written is skipped).
fn json_lines_lenient(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn the_admin_endpoint_lists_plugins_and_reloads_one() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, fixture(3)).unwrap();
    let out = dir.path().join("out.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!(
        "watch_plugins = false
admin_listen = \"127.0.0.1:{port}\""
    );
    let config = config(
        dir.path(),
        &plugin,
        &out,
        &admin,
        &[("router", "builtin = \"level-router\"")],
    );
    let mut agent = runnel()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the admin endpoint", Duration::from_secs(30), || {
        curl("GET", &format!("{base}/health")).0 == 200
    });
    let named = |list: &serde_json::Value, name: &str| {
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    let (code, list) = curl("GET", &format!("{base}/plugins"));
    assert_eq!(code, 200);
    let v = named(&list, "v");
    assert_eq!(v["role"], "parser");
    assert_eq!(v["version"], 1);
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(named(&list, "router")["code"], "builtin:level-router");

    // Unchanged file: nothing to do.
    let (code, body) = curl("POST", &format!("{base}/plugins/v/reload"));
    assert_eq!(
        (code, &body["outcome"]),
        (200, &serde_json::json!("unchanged"))
    );
    // A new version.
    install(&plugin, &fixture(4));
    let (code, body) = curl("POST", &format!("{base}/plugins/v/reload"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"outcome": "swapped", "version": 2})
    );
    // A broken one: refused with the reason; version 2 keeps serving.
    install(&plugin, b"\0asm broken");
    let (code, body) = curl("POST", &format!("{base}/plugins/v/reload"));
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("plugin `v`"),
        "{body}"
    );
    let (_, list) = curl("GET", &format!("{base}/plugins"));
    let v = named(&list, "v");
    assert_eq!(
        (
            v["version"].as_u64(),
            v["reloads"].as_u64(),
            v["refused"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert!(v["last_error"].is_string());
    assert_eq!(
        curl("POST", &format!("{base}/plugins/router/reload")).0,
        409
    );
    assert_eq!(curl("POST", &format!("{base}/plugins/nope/reload")).0, 404);

    let mut stdin = agent.stdin.take().unwrap();
    stdin.write_all(b"id=0\n").unwrap();
    drop(stdin);
    let status = agent.wait().unwrap();
    assert!(status.success());
    let events = json_lines_lenient(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["fields"]["version"], 4,
        "served by the reloaded version"
    );
}

#[test]
fn a_plugin_failing_every_call_is_put_behind_a_breaker_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, fixture(99_999)).unwrap();
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("agent.log");
    let config = config(dir.path(), &plugin, &out, "", &[]);
    let mut agent = spawn_fed(&config, &log);
    let mut stdin = agent.stdin.take().unwrap();
    let mut next = 0u64;
    let mut send = |stdin: &mut std::process::ChildStdin, until: Instant| {
        while Instant::now() < until {
            let chunk: String = (0..50).map(|i| format!("id={}\n", next + i)).collect();
            next += 50;
            stdin.write_all(chunk.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // A plugin that traps on every batch, fed until its breaker opens (a minute of
    // load, ~6,000 batches, would be far too many without one).
    let log_text = || std::fs::read_to_string(&log).unwrap();
    let feeding = Instant::now();
    while !log_text().contains("circuit open") {
        assert!(
            feeding.elapsed() < Duration::from_secs(60),
            "no breaker opened:\n{}",
            log_text()
        );
        send(&mut stdin, Instant::now() + Duration::from_millis(100));
    }
    // Fixed: the new version is let through at once.
    install(&plugin, &fixture(2));
    let start = Instant::now();
    while !json_lines_lenient(&out)
        .iter()
        .any(|e| e["fields"]["version"] == 2)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the fixed version never served"
        );
        send(&mut stdin, Instant::now() + Duration::from_millis(50));
    }
    drop(stdin);
    let status = agent.wait().unwrap();
    let text = log_text();
    assert!(status.success(), "{text}");
    let events = json_lines(&out);
    assert_eq!(events.len() as u64, next, "every line kept");
    let calls = summary_counter(&text, "step.in.v", "call_failures").unwrap();
    let opened = summary_counter(&text, "step.in.v", "breaker_opened").unwrap();
    // Without the breaker every batch would cost its failed calls (tens each).
    assert!(
        opened >= 1 && calls < 600,
        "{calls} failed calls, opened {opened}"
    );
    assert!(events.last().unwrap()["fields"]["version"] == 2);
}

/// `POST /` of `body` (text lines) to the agent's `http` source on `port`; the status.
fn post_lines(port: u16, body: &str) -> u16 {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[test]
fn every_batch_is_processed_by_one_version_across_reloads() {
    // A request of the http source is one batch (its lines are fewer than `batch_size`):
    // its lines, `id=N req=R`, must all carry the same version, however the reloads
    // fall.
    const LINES: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, fixture(1)).unwrap();
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("agent.log");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600
data_dir = "{data}"

[plugins.v]
path = "{plugin}"

[sources.in]
type = "http"
listen = "127.0.0.1:{port}"
plugins = ["v"]
channels = ["main"]
batch_size = 1000
{tail}"#,
            plugin = plugin.display(),
            data = dir.path().join("data").display(),
            tail = main_channel_to_file(&out, "json"),
        ),
    );
    let agent = spawn_logged(&config, &log);
    wait_listening(port);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut requests = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body: String = (0..LINES)
                    .map(|i| format!("id={} req={requests}\n", requests * LINES + i))
                    .collect();
                assert_eq!(post_lines(port, &body), 200);
                requests += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            requests
        })
    };
    // The versions in the output so far, read on from where the last look ended.
    let mut seen = std::collections::BTreeSet::new();
    let mut read_to = 0usize;
    let mut versions_seen = || -> std::collections::BTreeSet<u64> {
        let bytes = std::fs::read(&out).unwrap_or_default();
        let complete = bytes[read_to..]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(read_to, |end| read_to + end + 1);
        for line in bytes[read_to..complete].split(|&b| b == b'\n') {
            if let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) {
                seen.extend(event["fields"]["version"].as_u64());
            }
        }
        read_to = complete;
        seen.clone()
    };
    for version in 2..=21u64 {
        install(&plugin, &fixture(version as u32));
        wait_until(
            &format!("version {version}"),
            Duration::from_secs(60),
            || versions_seen().contains(&version),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let requests = sender.join().unwrap();
    wait_for_lines(&out, (requests * LINES) as usize, Duration::from_secs(60));
    let (status, _) = terminate(agent.into_child());
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log_text}");

    let mut by_request: std::collections::BTreeMap<u64, std::collections::BTreeSet<u64>> =
        Default::default();
    let mut ids = Vec::new();
    for event in json_lines(&out) {
        let line = event["fields"]["line"].as_str().unwrap();
        let (id, req) = line.split_once(" req=").unwrap();
        ids.push(id.strip_prefix("id=").unwrap().parse::<u64>().unwrap());
        by_request
            .entry(req.parse().unwrap())
            .or_default()
            .insert(event["fields"]["version"].as_u64().unwrap());
    }
    let mixed: Vec<_> = by_request.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        mixed.is_empty(),
        "{} of {requests} batches were processed by more than one version, e.g. {:?}",
        mixed.len(),
        mixed.iter().take(3).collect::<Vec<_>>()
    );
    ids.sort_unstable();
    assert!(
        ids.iter().copied().eq(0..requests * LINES),
        "every line, once"
    );
    assert_eq!(versions_seen(), (1..=21).collect());
}

#[test]
fn a_version_that_traps_in_create_or_has_another_role_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, fixture(1)).unwrap();
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("agent.log");
    let port = free_port();
    let admin = format!("watch_plugins = false\nadmin_listen = \"127.0.0.1:{port}\"");
    let config = config(dir.path(), &plugin, &out, &admin, &[]);
    let mut agent = spawn_fed(&config, &log);
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the admin endpoint", Duration::from_secs(30), || {
        curl("GET", &format!("{base}/health")).0 == 200
    });
    let status_of_v = || {
        let (_, list) = curl("GET", &format!("{base}/plugins"));
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "v")
            .cloned()
            .unwrap()
    };
    let mut stdin = agent.stdin.take().unwrap();
    let mut next = 0;
    let mut served_by = |stdin: &mut std::process::ChildStdin| {
        writeln!(stdin, "id={next}").unwrap();
        next += 1;
        wait_until("the line", Duration::from_secs(30), || {
            json_lines_lenient(&out).len() == next
        });
        json_lines_lenient(&out)[next - 1]["fields"]["version"].as_u64()
    };
    assert_eq!(served_by(&mut stdin), Some(1));

    // A version whose `create` traps.
    install(&plugin, &fixture(99_998));
    let (code, body) = curl("POST", &format!("{base}/plugins/v/reload"));
    assert_eq!(code, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("plugin `v`") && error.contains("create"),
        "{body}"
    );
    assert_eq!(served_by(&mut stdin), Some(1), "the running version serves");

    // A version of another role (a router for a parser).
    std::fs::copy(built_plugin("runnel_plugin_level_router.wasm"), &plugin).unwrap();
    let (code, body) = curl("POST", &format!("{base}/plugins/v/reload"));
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the new version is a router, the running one a parser"),
        "{body}"
    );
    assert_eq!(served_by(&mut stdin), Some(1), "the running version serves");
    let v = status_of_v();
    assert_eq!(
        (v["version"].as_u64(), v["refused"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );

    // SIGHUP reloads it too: refused again, counted again.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("the third refusal", Duration::from_secs(30), || {
        status_of_v()["refused"].as_u64() == Some(3)
    });
    assert_eq!(served_by(&mut stdin), Some(1), "the running version serves");
    drop(stdin);
    let status = agent.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert_eq!(
        summary_counter(&text, "plugin.v", "reloads_refused"),
        Some(3),
        "{text}"
    );
    assert_eq!(text.matches("reload refused").count(), 3, "{text}");
}

#[test]
fn a_router_reloaded_with_other_routes_is_refused_and_the_running_version_keeps_routing() {
    // The versioned-router fixture: versions below 100 route by body length to `even`
    // and `odd`; version 100 reports `even`, `odd`, `other` and routes every event to
    // `other` — which no channel is wired for, so were it swapped in, events would go
    // to the source's default channel `rest` instead of `even` and `odd`.
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("router.wasm");
    std::fs::write(&plugin, router_fixture(1)).unwrap();
    let log = dir.path().join("agent.log");
    let out = |channel: &str| dir.path().join(format!("{channel}.jsonl"));
    let port = free_port();
    let sinks: String = ["even", "odd", "rest"]
        .iter()
        .map(|channel| {
            format!(
                r#"
[channels.{channel}]
type = "memory"

[sinks.{channel}]
type = "file"
channel = "{channel}"
path = "{path}"
format = "json"
batch_timeout_ms = 20
"#,
                path = out(channel).display()
            )
        })
        .collect();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600
watch_plugins = false
admin_listen = "127.0.0.1:{port}"

[plugins.r]
path = "{plugin}"

[sources.in]
type = "stdin"
plugins = ["r"]
channels = ["rest"]
routes = {{ even = ["even"], odd = ["odd"] }}
batch_size = 50
batch_timeout_ms = 10
{sinks}"#,
            plugin = plugin.display(),
        ),
    );
    let mut agent = spawn_fed(&config, &log);
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the admin endpoint", Duration::from_secs(30), || {
        curl("GET", &format!("{base}/health")).0 == 200
    });
    let status_of_r = || {
        let (_, list) = curl("GET", &format!("{base}/plugins"));
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "r")
            .cloned()
            .unwrap()
    };
    let bodies = |channel: &str| -> Vec<String> {
        json_lines_lenient(&out(channel))
            .iter()
            .map(|e| e["body"].as_str().unwrap().to_owned())
            .collect()
    };
    // Each round sends one line of even length (`e` and five digits) and one of odd
    // length (`o` and four) and waits until both are through their routes.
    let mut stdin = agent.stdin.take().unwrap();
    let mut rounds = 0;
    let mut round = |stdin: &mut std::process::ChildStdin| {
        writeln!(stdin, "e{rounds:05}\no{rounds:04}").unwrap();
        rounds += 1;
        wait_until(
            "a round through the routes",
            Duration::from_secs(30),
            || bodies("even").len() == rounds && bodies("odd").len() == rounds,
        );
    };
    round(&mut stdin);
    let r = status_of_r();
    assert_eq!(
        (r["role"].as_str(), r["version"].as_u64()),
        (Some("router"), Some(1)),
        "{r}"
    );

    // Version 2 reports the same routes: swapped in.
    install(&plugin, &router_fixture(2));
    let (code, body) = curl("POST", &format!("{base}/plugins/r/reload"));
    assert_eq!(
        (code, body),
        (200, serde_json::json!({"outcome": "swapped", "version": 2}))
    );
    round(&mut stdin);

    // Version 100 reports other routes: refused, naming both lists.
    install(&plugin, &router_fixture(100));
    let (code, body) = curl("POST", &format!("{base}/plugins/r/reload"));
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["outcome"], "refused", "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("plugin `r`")
            && error.contains(
                "the new version's routes (even, odd, other) differ from the running \
                 one's (even, odd)"
            ),
        "{body}"
    );
    let r = status_of_r();
    assert_eq!(
        (
            r["version"].as_u64(),
            r["reloads"].as_u64(),
            r["refused"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "version 2 still serves: {r}"
    );
    assert!(
        r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("routes")),
        "{r}"
    );
    // Events sent after the refusal still go through `even` and `odd`.
    round(&mut stdin);
    round(&mut stdin);

    drop(stdin);
    let status = agent.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert_eq!(
        bodies("even"),
        ["e00000", "e00001", "e00002", "e00003"],
        "even-length lines, each once, in order"
    );
    assert_eq!(bodies("odd"), ["o0000", "o0001", "o0002", "o0003"]);
    assert!(
        bodies("rest").is_empty(),
        "no event fell to the default channel"
    );
    assert_eq!(
        summary_counter(&text, "plugin.r", "reloads_refused"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        summary_counter(&text, "plugin.r", "reloads"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        summary_counter(&text, "route.in.even", "events"),
        Some(4),
        "{text}"
    );
    assert_eq!(text.matches("reload refused").count(), 1, "{text}");
}
