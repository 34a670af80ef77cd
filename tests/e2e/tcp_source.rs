//! The `tcp` source: newline-delimited lines from several connections at once, an
//! unterminated last line delivered at close, over-long lines cut and counted, and a
//! connection past the per-peer limit closed at once.

use super::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn lines_from_concurrent_connections_arrive_once_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.log");
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.net]
type = "tcp"
listen = "127.0.0.1:{port}"
max_connections_per_peer = 2
max_line_bytes = 64
batch_timeout_ms = 20
channels = ["main"]

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "raw"
batch_timeout_ms = 20
"#,
            data = dir.path().join("data").display(),
            out = out.display(),
        ),
    );
    let log = dir.path().join("agent.log");
    let agent = spawn_logged(&config, &log);
    wait_until("the tcp source to listen", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::thread::sleep(Duration::from_millis(200));
    // Two connections held open: a third from the same address is closed at once.
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(third.read(&mut byte).unwrap_or(0), 0, "closed by the agent");
    // Lines from both, interleaved; each ends with an unterminated line and a long one.
    for i in 0..1000 {
        writeln!(first, "first {i}").unwrap();
        writeln!(second, "second {i}").unwrap();
    }
    writeln!(first, "{}", "x".repeat(100)).unwrap();
    write!(first, "first last").unwrap();
    write!(second, "second last").unwrap();
    drop(first);
    drop(second);
    wait_for_lines(&out, 2003, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2003,
        "{:?}",
        &lines[lines.len().saturating_sub(5)..]
    );
    for who in ["first", "second"] {
        let theirs: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(who))
            .collect();
        let mut want: Vec<String> = (0..1000).map(|i| format!("{who} {i}")).collect();
        want.push(format!("{who} last"));
        assert_eq!(theirs, want, "{who}: every line once, in order");
    }
    assert!(
        lines.contains(&"x".repeat(64).as_str()),
        "cut at max_line_bytes"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("too many from this address"), "{log}");
    assert_eq!(
        summary_counter(&log, "source.net", "lines_truncated"),
        Some(1),
        "{log}"
    );
}
