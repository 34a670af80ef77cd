//! The whole config reloads on SIGHUP: sources, channels and sinks added, changed and
//! removed while a stdin pipeline that did not change keeps delivering — every line it
//! was fed is delivered exactly once, across all the reloads; a config that does not
//! validate is refused with its key and line, and the running one stays.

use crate::common::*;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn hangup(agent: &std::process::Child) {
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
}

/// Writes `text` as the agent's config, sends it SIGHUP and waits for its `n`-th
/// "config reloaded".
fn reload(dir: &Path, agent: &std::process::Child, log: &Path, text: &str, n: usize) {
    write_config(dir, text);
    hangup(agent);
    wait_until("the reload", Duration::from_secs(30), || {
        logged(log, "config reloaded") == n
    });
}

/// The number of times `text` is in the agent's log.
fn logged(log: &Path, text: &str) -> usize {
    std::fs::read_to_string(log).unwrap().matches(text).count()
}

fn bodies(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["body"].as_str().map(str::to_owned))
        .collect()
}

/// The `n` field of each event in `path` from the `extra` source (below 100).
fn numbers(path: &Path) -> Vec<u64> {
    all_numbers(path).into_iter().filter(|&n| n < 100).collect()
}

/// The `n` field of each event in `path`.
fn all_numbers(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["fields"]["n"].as_u64())
        .collect()
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The added pipeline: taildir of `extra.log` → json → a filter dropping `k == drop`
/// → channel `second` → sink `out2` (to `b.jsonl`); and the same chain on `once.log`,
/// read once (the source ends at its end).
fn added(dir: &Path, drop: &str) -> String {
    format!(
        r#"
[plugins.json]
builtin = "json"

[plugins.filter]
builtin = "field-filter"
[plugins.filter.config]
field = "k"
op = "eq"
value = "{drop}"
action = "drop"

[sources.once]
type = "file"
path = "{once}"
read_from = "start"
exit_on_eof = true
plugins = ["json", "filter"]
channels = ["second"]

[sources.extra]
type = "taildir"
paths = {{ extra = "{input}" }}
read_from = "start"
plugins = ["json", "filter"]
channels = ["second"]
batch_timeout_ms = 10

[channels.second]
type = "memory"

[sinks.out2]
type = "file"
channel = "second"
path = "{out2}"
format = "json"
batch_timeout_ms = 10
"#,
        input = dir.join("extra.log").display(),
        once = dir.join("once.log").display(),
        out2 = dir.join("b.jsonl").display(),
    )
}

/// stdin → `main` → sink `out` (to `out`), plus `extra` text (sources, channels, sinks).
fn config_text(dir: &Path, out: &str, extra: &str) -> String {
    format!(
        r#"
[agent]
summary_interval_secs = 0
data_dir = "{data}"

[sources.fed]
type = "stdin"
channels = ["main"]
batch_size = 10
batch_timeout_ms = 10

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "json"
batch_size = 10
batch_timeout_ms = 10
{extra}
"#,
        data = dir.join("data").display(),
        out = dir.join(out).display(),
    )
}

#[test]
fn sighup_reloads_the_whole_config_and_the_unchanged_pipeline_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let extra_in = dir.path().join("extra.log");
    std::fs::write(
        &extra_in,
        "{\"k\":\"x\",\"n\":0}\n{\"k\":\"y\",\"n\":1}\n{\"k\":\"z\",\"n\":2}\n",
    )
    .unwrap();
    let out2 = dir.path().join("b.jsonl");
    std::fs::write(dir.path().join("once.log"), "{\"k\":\"z\",\"n\":100}\n").unwrap();
    let config = write_config(dir.path(), &config_text(dir.path(), "a.jsonl", ""));
    let mut agent = spawn_fed(&config, &log);
    let mut stdin = agent.stdin.take().unwrap();
    let mut fed = 0usize;
    let mut feed = |stdin: &mut std::process::ChildStdin, n: usize| {
        for _ in 0..n {
            writeln!(stdin, "line {fed}").unwrap();
            fed += 1;
        }
        stdin.flush().unwrap();
    };
    wait_for_log(&log, "runnel started");
    feed(&mut stdin, 100);

    // 1. A second pipeline is added: two plugins, a taildir source, a channel, a sink.
    let text = config_text(dir.path(), "a.jsonl", &added(dir.path(), "x"));
    reload(dir.path(), &agent, &log, &text, 1);
    feed(&mut stdin, 100);
    wait_until("the added pipeline", Duration::from_secs(30), || {
        numbers(&out2) == [1, 2]
    });

    // 2. A config that does not validate: refused, naming the key and its line; all
    // keeps running as it was.
    let broken =
        added(dir.path(), "x").replace("type = \"memory\"", "type = \"memory\"\ncapacity = -1");
    let broken_text = config_text(dir.path(), "a.jsonl", &broken);
    let line = broken_text
        .lines()
        .position(|l| l == "capacity = -1")
        .unwrap()
        + 1;
    write_config(dir.path(), &broken_text);
    hangup(&agent);
    wait_until("the refusal", Duration::from_secs(30), || {
        logged(&log, "config reload refused") >= 1
    });
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains(&format!(":{line}")) && log_text.contains("channels.second.capacity"),
        "{log_text}"
    );
    append(&extra_in, "{\"k\":\"x\",\"n\":3}\n{\"k\":\"y\",\"n\":4}\n");
    feed(&mut stdin, 100);
    wait_until(
        "the added pipeline still running",
        Duration::from_secs(30),
        || numbers(&out2) == [1, 2, 4],
    );

    // 3. The filter's settings change: the plugin is loaded again and the taildir source
    // restarted, resuming where it was (nothing read twice); the source that ended is
    // not run again.
    let text = config_text(dir.path(), "a.jsonl", &added(dir.path(), "y"));
    reload(dir.path(), &agent, &log, &text, 2);
    append(&extra_in, "{\"k\":\"x\",\"n\":5}\n{\"k\":\"y\",\"n\":6}\n");
    feed(&mut stdin, 100);
    wait_until("the changed filter", Duration::from_secs(30), || {
        numbers(&out2) == [1, 2, 4, 5]
    });

    // 3. The added pipeline is removed, and sink `out` changes (another file): it
    // stops, and its successor delivers what it had not taken.
    let text = config_text(dir.path(), "c.jsonl", "");
    reload(dir.path(), &agent, &log, &text, 3);
    feed(&mut stdin, 100);
    append(&extra_in, "{\"k\":\"z\",\"n\":7}\n");
    drop(stdin);
    let status = agent.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log_text}");

    for line in log_text.lines().filter(|l| l.contains("config reload")) {
        eprintln!("{line}");
    }
    // Every fed line exactly once, in order, over the old and the new sink's files.
    let mut delivered = bodies(&dir.path().join("a.jsonl"));
    let after = bodies(&dir.path().join("c.jsonl"));
    assert!(!after.is_empty(), "the changed sink delivered nothing");
    delivered.extend(after);
    let expected: Vec<String> = (0..fed).map(|i| format!("line {i}")).collect();
    assert_eq!(delivered, expected, "{log_text}");
    // The removed source read nothing after it was removed; the ended one ran once.
    assert_eq!(numbers(&out2), [1, 2, 4, 5]);
    assert_eq!(
        all_numbers(&out2).iter().filter(|&&n| n == 100).count(),
        1,
        "{log_text}"
    );
    assert!(
        log_text.contains("source has ended: not started again"),
        "{log_text}"
    );
}

#[test]
fn the_admin_endpoint_reloads_the_config_and_answers_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let out = dir.path().join("out.jsonl");
    let port = free_port();
    let text = |extra: &str| {
        format!(
            r#"
[agent]
summary_interval_secs = 0
data_dir = "{data}"
admin_listen = "127.0.0.1:{port}"

[sources.fed]
type = "stdin"
channels = ["main"]

[channels.main]
type = "memory"
{extra}

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "json"
batch_timeout_ms = 10
"#,
            data = dir.path().join("data").display(),
            out = out.display(),
        )
    };
    let config = write_config(dir.path(), &text(""));
    let mut agent = spawn_fed(&config, &log);
    wait_for_log(&log, "admin endpoint listening");
    let url = format!("http://127.0.0.1:{port}/config/reload");

    // A web page cannot drive it: a form post (text/plain) from another origin, the
    // same without the origin, and a DNS name rebound to 127.0.0.1 are refused, and
    // nothing is reloaded.
    let page = curl_headers(
        "POST",
        &url,
        &["Content-Type: text/plain", "Origin: http://evil.example"],
    );
    assert_eq!(page.0, 403, "{}", page.1);
    assert_eq!(
        curl_headers("POST", &url, &["Content-Type: text/plain"]).0,
        415
    );
    let rebound = curl_headers(
        "POST",
        &url,
        &["Content-Type: application/json", "Host: evil.example"],
    );
    assert_eq!(rebound.0, 403, "{}", rebound.1);
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("POST /config/reload: reloading"),
        "a refused request reloaded the config"
    );

    // The same config: nothing stops or starts.
    let (status, body) = curl("POST", &url);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "reloaded");
    assert_eq!(body["sources_started"], serde_json::json!([]));

    // A generator added: it starts, and its events arrive.
    write_config(
        dir.path(),
        &text(
            "\n[sources.gen]\ntype = \"generator\"\napps = 1\ncount = 5\nchannels = [\"main\"]\n",
        ),
    );
    let (status, body) = curl("POST", &url);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources_started"], serde_json::json!(["gen"]));
    wait_until("the generator's events", Duration::from_secs(30), || {
        count_lines(&out) == 5
    });

    // A broken config: 422 with the error, key and line.
    let broken = text("capacity = -1");
    let line = broken.lines().position(|l| l == "capacity = -1").unwrap() + 1;
    write_config(dir.path(), &broken);
    let (status, body) = curl("POST", &url);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["outcome"], "refused");
    let error = body["errors"][0].as_str().unwrap();
    assert!(
        error.contains("channels.main.capacity") && error.contains(&format!(":{line}:")),
        "{error}"
    );

    drop(agent.stdin.take());
    let status = agent.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}
