//! Edge → collector forwarding between two real `runnel` processes: the edge (taildir →
//! file channel → `forward` sink) and the collector (`forward` source → file channel →
//! file sink), through a TCP relay that records every byte on the wire. The collector
//! is killed with SIGKILL several times mid-stream; every line arrives, the wire never
//! shows a line's text, and a wrong key is refused with a clear error on both sides.

use super::common::*;
use super::peer::id_counts;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn keygen(path: &Path) {
    let out = runnel().args(["forward", "keygen"]).output().unwrap();
    assert!(out.status.success());
    std::fs::write(path, out.stdout).unwrap();
}

fn collector_config(dir: &Path, port: u16, key: &Path) -> PathBuf {
    let path = dir.join("collector.toml");
    std::fs::write(
        &path,
        format!(
            r#"[agent]
data_dir = "{data}"
summary_interval_secs = 0

[sources.edges]
type = "forward"
listen = "127.0.0.1:{port}"
key_file = "{key}"
channels = ["durable"]

[channels.durable]
type = "file"

[sinks.store]
type = "file"
channel = "durable"
path = "{out}"
format = "raw"
batch_timeout_ms = 20
"#,
            data = dir.join("collector-data").display(),
            key = key.display(),
            out = dir.join("store.log").display(),
        ),
    )
    .unwrap();
    path
}

fn edge_config(dir: &Path, name: &str, port: u16, key: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[agent]
data_dir = "{data}"
summary_interval_secs = 0
shutdown_timeout_secs = 5

[sources.app]
type = "taildir"
paths = {{ app = "{logs}/*.log" }}
read_from = "start"
batch_size = 500
batch_timeout_ms = 20
channels = ["durable"]

[channels.durable]
type = "file"

[sinks.collector]
type = "forward"
channel = "durable"
address = "127.0.0.1:{port}"
key_file = "{key}"
batch_size = 500
batch_timeout_ms = 20
retry_initial_ms = 50
retry_max_ms = 500
"#,
            data = dir.join(format!("{name}-data")).display(),
            logs = dir.join("logs").display(),
            key = key.display(),
        ),
    )
    .unwrap();
    path
}

/// A TCP relay from `listen` to `upstream` that keeps a copy of every byte, both ways.
fn relay(listen: TcpListener, upstream: u16, wire: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        for client in listen.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue; // the collector is down: the edge sees the connection close
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let wire = wire.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                wire.lock().unwrap().extend_from_slice(&buf[..n]);
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

/// `id=N SECRET-MARKER-N …` lines into the edge's tailed log, 500 every 20 ms.
fn write_ids(dir: &Path, ids: std::ops::Range<u64>) {
    write_lines(
        &dir.join("logs/app.log"),
        ids,
        500,
        Duration::from_millis(20),
        |id| format!("id={id} SECRET-MARKER-{id} the quick brown fox"),
    );
}

fn stored(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("store.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn forwarding_survives_collector_kills_and_the_wire_shows_no_line() {
    const TOTAL: u64 = 30_000;
    const KILLS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("forward.key");
    keygen(&key);
    let collector_port = free_port();
    let relay_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay_listener.local_addr().unwrap().port();
    let wire = Arc::new(Mutex::new(Vec::new()));
    relay(relay_listener, collector_port, wire.clone());

    let collector = collector_config(dir.path(), collector_port, &key);
    let collector_log = dir.path().join("collector.log");
    let edge = edge_config(dir.path(), "edge", relay_port, &key);
    let edge_log = dir.path().join("edge.log");
    let edge_agent = spawn_logged(&edge, &edge_log);

    let writer = {
        let dir = dir.path().to_path_buf();
        std::thread::spawn(move || write_ids(&dir, 0..TOTAL))
    };
    for _ in 0..KILLS {
        let mut agent = spawn_logged(&collector, &collector_log);
        std::thread::sleep(Duration::from_millis(700));
        agent.kill().unwrap(); // SIGKILL, mid-stream
        agent.wait().unwrap();
    }
    writer.join().unwrap();
    let collector_agent = spawn_logged(&collector, &collector_log);
    let start = Instant::now();
    let counts = loop {
        let counts = id_counts(&stored(dir.path()));
        if (0..TOTAL).all(|id| counts.contains_key(&id)) {
            break counts;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} of {TOTAL} ids stored after 120 s\nedge:\n{}",
            counts.len(),
            std::fs::read_to_string(&edge_log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (edge_status, _) = terminate(edge_agent.into_child());
    let (collector_status, _) = terminate(collector_agent.into_child());
    assert!(
        edge_status.success(),
        "{}",
        std::fs::read_to_string(&edge_log).unwrap()
    );
    assert!(
        collector_status.success(),
        "{}",
        std::fs::read_to_string(&collector_log).unwrap()
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "forward: {TOTAL} ids through {KILLS} collector kills, 0 lost, {duplicates} duplicates"
    );
    // A batch the collector stored but could not acknowledge before it died comes again.
    assert!(duplicates <= KILLS * 500, "{duplicates} duplicates");

    let wire = wire.lock().unwrap();
    let plain: usize = stored(dir.path()).iter().map(|l| l.len() + 1).sum();
    eprintln!(
        "forward: {} bytes on the wire for {plain} bytes of lines",
        wire.len()
    );
    assert!(
        !wire.windows(13).any(|w| w == b"SECRET-MARKER"),
        "a line's text on the wire"
    );
    // Not `id=` alone: three given bytes turn up by chance in megabytes of ciphertext
    // (one in 16.7 million positions); these 19 cannot.
    assert!(
        !wire.windows(19).any(|w| w == b"the quick brown fox"),
        "a line's text on the wire"
    );
    // Each event travels as its body plus ~42 bytes of spans, level and time, and batches
    // cut short by the kills travel again: only compression brings that under the lines'
    // own size.
    assert!(
        wire.len() < plain * 3 / 4,
        "compressed: {} bytes on the wire for {plain} bytes of lines",
        wire.len()
    );
}

#[test]
fn a_wrong_key_is_refused_with_a_clear_error_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (key, other) = (dir.path().join("a.key"), dir.path().join("b.key"));
    keygen(&key);
    keygen(&other);
    let port = free_port();
    let collector_log = dir.path().join("collector.log");
    let collector = spawn_logged(&collector_config(dir.path(), port, &key), &collector_log);
    let edge_log = dir.path().join("edge.log");
    let edge = spawn_logged(&edge_config(dir.path(), "edge", port, &other), &edge_log);
    write_ids(dir.path(), 0..10);
    let start = Instant::now();
    loop {
        let edge_text = std::fs::read_to_string(&edge_log).unwrap_or_default();
        let collector_text = std::fs::read_to_string(&collector_log).unwrap_or_default();
        if edge_text.contains("the collector refused us: the key does not match the collector's")
            && collector_text.contains("its key does not match ours")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "edge:\n{edge_text}\ncollector:\n{collector_text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stored(dir.path()).is_empty(),
        "nothing from an edge with another key"
    );
    terminate(edge.into_child());
    terminate(collector.into_child());
}
