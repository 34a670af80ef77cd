//! Sink groups against real peers: a `failover` group of an HTTP sink (the test
//! receiver) and a file sink, the receiver refusing connections for a while; a
//! `load_balance` group over two receivers.

use super::common::*;
use super::peer::{Receiver, id_counts};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// taildir of `dir/logs/*.log` → memory channel → `sinks` (TOML of the sinks and the group).
fn start_agent(dir: &Path, sinks: &str) -> Running {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let config = write_config(
        dir,
        &format!(
            r#"
[agent]
data_dir = "{data}"
summary_interval_secs = 0

[sources.app]
type = "taildir"
paths = {{ app = "{logs}/*.log" }}
read_from = "start"
batch_size = 100
batch_timeout_ms = 20
channels = ["main"]

[channels.main]
type = "memory"
{sinks}"#,
            data = dir.join("data").display(),
            logs = dir.join("logs").display(),
        ),
    );
    spawn_logged(&config, &dir.join("agent.log"))
}

/// Appends `id=N` lines for `ids` to the tailed log, 50 every 25 ms.
fn write_ids(dir: &Path, ids: std::ops::Range<u64>) {
    super::common::write_ids(
        &dir.join("logs/app.log"),
        ids,
        50,
        Duration::from_millis(25),
        7,
    );
}

/// The ids (`id=N` bodies) in a JSON-lines file the file sink wrote.
fn file_bodies(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["body"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

fn merged(a: HashMap<u64, usize>, b: HashMap<u64, usize>) -> HashMap<u64, usize> {
    let mut all = a;
    for (id, n) in b {
        *all.entry(id).or_insert(0) += n;
    }
    all
}

/// Waits until `seen()` holds every id below `total`.
fn wait_for(
    total: u64,
    what: &str,
    mut seen: impl FnMut() -> HashMap<u64, usize>,
) -> HashMap<u64, usize> {
    let start = Instant::now();
    loop {
        let counts = seen();
        if (0..total).all(|id| counts.contains_key(&id)) {
            return counts;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: {} of {total} ids after 60 s",
            counts.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn failover_moves_to_the_secondary_while_the_primary_is_down_and_back_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), &[]);
    let local = dir.path().join("local.jsonl");
    let agent = start_agent(
        dir.path(),
        &format!(
            r#"
[sinks.central]
type = "http"
channel = "main"
uri = "{uri}"
batch_size = 100
batch_timeout_ms = 20
retry_initial_ms = 200
retry_max_ms = 1000

[sinks.local]
type = "file"
channel = "main"
path = "{local}"
batch_size = 100
batch_timeout_ms = 20

[sink_groups.out]
type = "failover"
sinks = ["central", "local"]
"#,
            uri = rx.uri(),
            local = local.display()
        ),
    );
    let both = |rx: &Receiver| merged(id_counts(&rx.bodies()), id_counts(&file_bodies(&local)));

    // The primary up: everything goes to it.
    write_ids(dir.path(), 0..500);
    wait_for(500, "primary", || id_counts(&rx.bodies()));
    assert!(
        file_bodies(&local).is_empty(),
        "the secondary had nothing to do"
    );

    // The primary refuses connections: the secondary takes over.
    rx.command("mode refuse");
    let down = Instant::now();
    write_ids(dir.path(), 500..1500);
    wait_for(1500, "primary down", || both(&rx));
    let on_secondary = file_bodies(&local).len();
    assert!(
        on_secondary >= 500,
        "{on_secondary} events on the secondary"
    );
    eprintln!(
        "primary down: {on_secondary} events went to the secondary in {:?}",
        down.elapsed()
    );

    // The primary back: after its backoff (at most 1 s) traffic returns to it.
    rx.command("mode ok");
    std::thread::sleep(Duration::from_millis(1500));
    write_ids(dir.path(), 1500..2000);
    let counts = wait_for(2000, "primary back", || both(&rx));
    let primary = id_counts(&rx.bodies());
    assert!(
        (1500..2000).all(|id| primary.contains_key(&id)),
        "the last ids went to the primary"
    );
    let (status, _) = terminate(agent.into_child());
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("agent.log")).unwrap()
    );
    let doubled = counts.values().filter(|&&n| n > 1).count();
    assert!(
        doubled <= 100,
        "{doubled} ids delivered twice: at most the batch in flight when the primary went down"
    );
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("central") && l.contains("write failed")),
        "the primary's failures are logged under its name:\n{log}"
    );
}

#[test]
fn load_balance_spreads_batches_over_its_sinks_and_delivers_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let rx_a = Receiver::start(&a, &[]);
    let rx_b = Receiver::start(&b, &[]);
    let agent = start_agent(
        dir.path(),
        &format!(
            r#"
[sinks.a]
type = "http"
channel = "main"
uri = "{a}"
batch_size = 100
batch_timeout_ms = 20

[sinks.b]
type = "http"
channel = "main"
uri = "{b}"
batch_size = 100
batch_timeout_ms = 20

[sink_groups.spread]
type = "load_balance"
selector = "round_robin"
sinks = ["a", "b"]
"#,
            a = rx_a.uri(),
            b = rx_b.uri()
        ),
    );
    write_ids(dir.path(), 0..2000);
    let counts = wait_for(2000, "load balance", || {
        merged(id_counts(&rx_a.bodies()), id_counts(&rx_b.bodies()))
    });
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    assert!(counts.values().all(|&n| n == 1), "each event once");
    let (na, nb) = (rx_a.bodies().len(), rx_b.bodies().len());
    assert!(na >= 400 && nb >= 400, "spread: {na} and {nb}");
}

#[test]
fn a_group_with_a_missing_or_mismatched_member_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[sources.in]
type = "stdin"
channels = ["main", "other"]

[channels.main]
type = "memory"

[channels.other]
type = "memory"

[sinks.a]
type = "console"
channel = "main"

[sinks.b]
type = "console"
channel = "other"

[sink_groups.g]
type = "failover"
sinks = ["a", "b", "c"]
selector = "random"
"#,
    );
    assert_refused(
        &config,
        &[
            "`sink_groups.g.sinks[2]`",
            "sink `c` is not defined",
            "`sinks.b.channel`",
            "the members of group `g` take from one channel, `main`",
            "`sink_groups.g.selector`",
            "only for `type = \"load_balance\"`",
        ],
    );
}
