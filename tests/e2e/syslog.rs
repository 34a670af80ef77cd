//! The `syslog` source with the clients people use: util-linux `logger` over UDP and TCP
//! (RFC 3164 and 5424, newline and octet-counted framing) and Python's
//! `logging.handlers.SysLogHandler` (UDP and TCP); and a flood of malformed messages
//! that are kept, tagged and counted while valid ones keep flowing.

use super::common::*;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

fn config(dir: &std::path::Path, udp: u16, tcp: u16) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.udp]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:{udp}"
channels = ["main"]
batch_timeout_ms = 20
add_tags = {{ site = "plant-7", host = "not-this" }}

[sources.tcp]
type = "syslog"
mode = "tcp"
listen = "127.0.0.1:{tcp}"
max_line_bytes = 4096
channels = ["main"]
batch_timeout_ms = 20

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "json"
batch_timeout_ms = 20
"#,
            data = dir.join("data").display(),
            out = dir.join("out.jsonl").display(),
        ),
    )
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn logger(args: &[&str]) {
    let status = Command::new("logger").args(args).status().unwrap();
    assert!(status.success(), "logger {args:?}");
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn logger_and_python_messages_arrive_with_level_app_host_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let (udp, tcp) = (free_udp_port(), free_port());
    let agent = spawn_logged(&config(dir.path(), udp, tcp), &dir.path().join("agent.log"));
    wait_listening(tcp);
    let (u, t) = (udp.to_string(), tcp.to_string());
    let server = ["-n", "127.0.0.1", "-P"];
    let send = |port: &str, extra: &[&str]| {
        let mut args: Vec<&str> = server.to_vec();
        args.push(port);
        args.extend_from_slice(extra);
        logger(&args);
    };
    send(
        &u,
        &[
            "-d",
            "--rfc3164",
            "-t",
            "app3164",
            "-p",
            "local0.warning",
            "udp 3164 message",
        ],
    );
    send(
        &u,
        &[
            "-d",
            "--rfc5424",
            "-t",
            "app5424",
            "-p",
            "daemon.err",
            "--msgid",
            "M42",
            "--sd-id",
            "meta@32473",
            "--sd-param",
            "site=\"plant-7\"",
            "udp 5424 message",
        ],
    );
    send(
        &t,
        &[
            "-T",
            "--rfc3164",
            "-t",
            "tcp3164",
            "-p",
            "user.info",
            "tcp 3164 newline",
        ],
    );
    send(
        &t,
        &[
            "-T",
            "--octet-count",
            "--rfc5424",
            "-i",
            "-t",
            "tcp5424",
            "-p",
            "auth.crit",
            "tcp 5424 counted",
        ],
    );
    let python = format!(
        r#"
import logging, logging.handlers, socket
for name, kind in (("py.udp", socket.SOCK_DGRAM), ("py.tcp", socket.SOCK_STREAM)):
    handler = logging.handlers.SysLogHandler(address=("127.0.0.1", {udp} if kind == socket.SOCK_DGRAM else {tcp}), socktype=kind)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    log = logging.getLogger(name)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.error("python error over %s", name)
    log.debug("python debug over %s", name)
    handler.close()
"#
    );
    let status = Command::new("python3")
        .args(["-c", &python])
        .status()
        .unwrap();
    assert!(status.success());

    let out = dir.path().join("out.jsonl");
    wait_for_lines(&out, 8, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    let events = json_lines(&out);
    assert_eq!(events.len(), 8, "{events:#?}");
    let host = hostname();
    let now = chrono::Utc::now();
    let find = |body: &str| {
        events
            .iter()
            .find(|e| e["body"] == body)
            .unwrap_or_else(|| panic!("no {body:?} in {events:#?}"))
    };
    for (body, name, level, facility, from_host) in [
        (
            "udp 3164 message",
            "app3164",
            "warn",
            "local0",
            host.as_str(),
        ),
        ("udp 5424 message", "app5424", "error", "daemon", &host),
        ("tcp 3164 newline", "tcp3164", "info", "user", &host),
        ("tcp 5424 counted", "tcp5424", "fatal", "auth", &host),
        (
            "python error over py.udp",
            "py.udp",
            "error",
            "user",
            "127.0.0.1",
        ),
        (
            "python debug over py.udp",
            "py.udp",
            "debug",
            "user",
            "127.0.0.1",
        ),
        (
            "python error over py.tcp",
            "py.tcp",
            "error",
            "user",
            "127.0.0.1",
        ),
        (
            "python debug over py.tcp",
            "py.tcp",
            "debug",
            "user",
            "127.0.0.1",
        ),
    ] {
        let e = find(body);
        assert_eq!(e["name"], name, "{e}");
        assert_eq!(e["level"], level, "{e}");
        assert_eq!(e["tags"]["facility"], facility, "{e}");
        assert_eq!(e["tags"]["host"], from_host, "{e}");
        assert!(e["tags"].get("parse_error").is_none(), "{e}");
        let at: chrono::DateTime<chrono::Utc> = e["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(
            (now - at).num_seconds().abs() < 30,
            "{e}: time {at}, now {now}"
        );
    }
    // add_tags: on every event of the source, never over a tag the event has.
    for e in &events {
        let udp = e["body"].as_str().unwrap().contains("udp");
        assert_eq!(e["tags"].get("site").is_some(), udp, "{e}");
        assert_ne!(e["tags"]["host"], "not-this");
    }
    let sd = find("udp 5424 message");
    assert_eq!(sd["tags"]["msgid"], "M42");
    assert_eq!(sd["fields"]["meta@32473"]["site"], "plant-7", "{sd}");
    assert!(find("tcp 5424 counted")["tags"]["procid"].is_string());
}

#[test]
fn malformed_messages_are_kept_tagged_and_counted_while_valid_ones_flow() {
    let dir = tempfile::tempdir().unwrap();
    let (udp, tcp) = (free_udp_port(), free_port());
    let log = dir.path().join("agent.log");
    let agent = spawn_logged(&config(dir.path(), udp, tcp), &log);
    wait_listening(tcp);
    // 10,000 malformed messages, octet-counted (so random bytes stay one message each),
    // and a valid one after every tenth.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let headers: [&[u8]; 6] = [
        b"<13",
        b"<13>1 2026-",
        b"<999>x",
        b"<13>1 2003-10-11T22:14:15Z h a - - [id k=\"v",
        b"<13>1 yesterday h a - - - m",
        b"",
    ];
    let mut stream = Vec::new();
    for i in 0..10_000u64 {
        let mut message = headers[(i % 6) as usize].to_vec();
        if i % 6 == 5 {
            // Random bytes (never starting with `<`).
            let len = 1 + next() % 200;
            message.extend((0..len).map(|_| (next() % 256) as u8));
            if message[0] == b'<' {
                message[0] = b'x';
            }
        }
        stream.extend_from_slice(format!("{} ", message.len()).as_bytes());
        stream.extend_from_slice(&message);
        if i % 10 == 9 {
            let valid = format!("<14>1 2026-11-27T07:00:00Z edge app - - - valid {i}");
            stream.extend_from_slice(format!("{} {valid}", valid.len()).as_bytes());
        }
    }
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    conn.write_all(&stream).unwrap();
    drop(conn);
    let out = dir.path().join("out.jsonl");
    wait_for_lines(&out, 11_000, Duration::from_secs(60));
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    let events = json_lines(&out);
    assert_eq!(events.len(), 11_000);
    let tagged = events
        .iter()
        .filter(|e| e["tags"].get("parse_error").is_some())
        .count();
    assert_eq!(tagged, 10_000, "every malformed message kept and tagged");
    let valid: Vec<&serde_json::Value> = events.iter().filter(|e| e["name"] == "app").collect();
    assert_eq!(valid.len(), 1000);
    assert!(
        valid
            .iter()
            .all(|e| e["tags"]["host"] == "edge" && e["level"] == "info")
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        summary_counter(&log, "source.tcp", "malformed"),
        Some(10_000),
        "{log}"
    );
}

#[test]
fn syslog_config_errors_name_their_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[sources.udp]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:5514"
tls = { cert_file = "a", key_file = "b" }
max_connections = 3
channels = ["main"]

[sources.tcp]
type = "syslog"
mode = "tcp"
listen = "127.0.0.1:5514"
receive_buffer_bytes = 1048576
max_connections_per_peer = 0
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
            "`sources.udp.tls`",
            "is for `tcp`",
            "`sources.udp.mode`",
            "connection limits are for `tcp`",
            "`sources.tcp.receive_buffer_bytes`",
            "is for `udp`",
            ":14:",
            "`sources.tcp.max_connections_per_peer`",
        ],
    );
}
