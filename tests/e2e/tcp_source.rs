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
    wait_listening(port);
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
    assert!(
        log.contains("too many connections from this address"),
        "{log}"
    );
    assert!(
        summary_counter(&log, "source.net", "connections_refused").is_some_and(|n| n >= 1),
        "{log}"
    );
    assert_eq!(
        summary_counter(&log, "source.net", "lines_truncated"),
        Some(1),
        "{log}"
    );
}

/// A self-signed certificate for localhost and 127.0.0.1 (openssl), and its key.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (cert, key)
}

#[test]
fn tls_connections_are_served_and_a_plain_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (tcp, syslog) = (free_port(), free_port());
    let out = dir.path().join("out.log");
    let tls = format!(
        "tls = {{ cert_file = \"{}\", key_file = \"{}\" }}",
        cert.display(),
        key.display()
    );
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.lines]
type = "tcp"
listen = "127.0.0.1:{tcp}"
{tls}
batch_timeout_ms = 20
channels = ["main"]

[sources.sys]
type = "syslog"
mode = "tcp"
listen = "127.0.0.1:{syslog}"
{tls}
batch_timeout_ms = 20
channels = ["main"]

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "json"
batch_timeout_ms = 20
"#,
            data = dir.path().join("data").display(),
            out = out.display(),
        ),
    );
    let log = dir.path().join("agent.log");
    let agent = spawn_logged(&config, &log);
    for port in [tcp, syslog] {
        wait_listening(port);
    }
    // Plain text to a TLS port: the handshake fails, nothing is delivered.
    let mut plain = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    plain.write_all(b"not tls at all\n").unwrap();
    drop(plain);
    let client = format!(
        r#"
import socket, ssl
context = ssl.create_default_context(cafile="{cert}")
for port, data in (({tcp}, b"over tls 1\nover tls 2\n"),
                   ({syslog}, b"<11>secure-app: failed over tls\n")):
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(data)
"#,
        cert = cert.display()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &client])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the client verified the agent's certificate and sent"
    );
    wait_for_lines(&out, 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    let events = json_lines(&out);
    let bodies: Vec<&str> = events.iter().map(|e| e["body"].as_str().unwrap()).collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    for body in ["over tls 1", "over tls 2", "failed over tls"] {
        assert!(bodies.contains(&body), "{bodies:?}");
    }
    let secure = events
        .iter()
        .find(|e| e["body"] == "failed over tls")
        .unwrap();
    assert_eq!(secure["name"], "secure-app");
    assert_eq!(secure["level"], "error");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("TLS handshake failed"), "{log}");
}

#[test]
fn a_missing_certificate_is_refused_with_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[sources.lines]
type = "tcp"
listen = "127.0.0.1:5170"
tls = { cert_file = "/nonexistent/cert.pem", key_file = "/nonexistent/key.pem" }
channels = ["main"]

[channels.main]
type = "memory"

[sinks.out]
type = "console"
channel = "main"
"#,
    );
    assert_refused(
        &config,
        &[
            ":4:",
            "`sources.lines.tls.cert_file`",
            "/nonexistent/cert.pem",
        ],
    );
}
