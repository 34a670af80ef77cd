//! The `mqtt` source against Debian's `mosquitto` broker, started by each test, with
//! `mosquitto_pub` publishing at QoS 0 and 1 (MQTT 3.1.1 and 5): the agent is killed
//! with SIGKILL mid-stream and restarted, and every QoS 1 message arrives; MQTT 5 over
//! TLS with a password; a wrong password is reported while the agent keeps running;
//! config errors name their key and line. scripts/test-peers.sh installs mosquitto.

use super::common::*;
use super::peer::{Rng, event_id_counts};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A mosquitto broker on a free port of 127.0.0.1, stopped when dropped.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    /// Starts mosquitto with `extra` config lines under its listener.
    fn start(dir: &Path, extra: &str) -> Broker {
        let port = free_port();
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "# Keep root when started as root (CI): the test's files are root's.\n\
                 user root\n\
                 per_listener_settings false\n\
                 persistence false\n\
                 # Queue every QoS 1 message for an absent persistent session.\n\
                 max_queued_messages 0\n\
                 max_inflight_messages 100\n\
                 listener {port} 127.0.0.1\n\
                 {extra}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("mosquitto-{port}.log"))).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (Debian package mosquitto; scripts/test-peers.sh installs it)");
        wait_until("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Broker { child, port }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_pub -l`: publishes each of `lines` as one message and waits for the
/// broker's acknowledgements (QoS 1) before it exits.
fn publish(port: u16, topic: &str, qos: u8, lines: &[String], extra: &[&str]) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-q", &qos.to_string(), "-l"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (Debian package mosquitto-clients)");
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[agent]` with `dir/data`, the sources given, a durable channel and a JSON file sink
/// into `dir/out.jsonl`.
fn config(dir: &Path, sources: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"[agent]
data_dir = "{data}"
shutdown_timeout_secs = 10

{sources}

[channels.durable]
type = "file"

[sinks.out]
type = "file"
channel = "durable"
path = "{out}"
format = "json"
batch_timeout_ms = 20
"#,
            data = dir.join("data").display(),
            out = dir.join("out.jsonl").display(),
        ),
    )
}

/// The agent in the background, logging at info level into `log` (the source says when
/// it subscribes).
fn spawn_info(config: &Path, log: &Path) -> Running {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Running::new(
        runnel()
            .env("RUNNEL_LOG", "info")
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

fn ids(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|id| format!("id={id} reading=21.5C")).collect()
}

#[test]
fn qos1_messages_survive_sigkill_of_the_agent_and_qos0_flows() {
    const TOTAL: u64 = 10_000;
    const CHUNK: u64 = 20;
    const KILLS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), "allow_anonymous true");
    let port = broker.port;
    let config = config(
        dir.path(),
        &format!(
            r#"[sources.sensors]
type = "mqtt"
broker = "mqtt://127.0.0.1:{port}"
topics = ["plant/+/temp", "plant/qos0"]
client_id = "runnel-e2e-kill"
batch_size = 50
batch_timeout_ms = 20
channels = ["durable"]"#
        ),
    );
    let log = dir.path().join("agent.log");
    let out = dir.path().join("out.jsonl");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("mqtt kill -9 test seed {seed}");
    let mut rng = Rng::new(seed);

    // The first start makes the persistent session (and its subscription).
    // A `Running`: a failing assertion still stops the agent.
    let mut agent = spawn_info(&config, &log);
    wait_for_log(&log, "subscribing to");
    std::thread::sleep(Duration::from_millis(300));
    // One publisher, a steady stream (about 2,000 messages a second), so that the
    // kills land with messages on their way.
    let publisher = std::thread::spawn(move || {
        let mut child = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "plant/7/temp",
            ])
            .args(["-q", "1", "-l"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for start in (0..TOTAL).step_by(CHUNK as usize) {
            for line in ids(start..start + CHUNK) {
                writeln!(stdin, "{line}").unwrap();
            }
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(stdin);
        assert!(child.wait().unwrap().success());
    });
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(400 + rng.below(800)));
        agent.kill().unwrap(); // SIGKILL, mid-stream
        agent.wait().unwrap();
        eprintln!("killed with {} events out", count_lines(&out));
        // Messages keep coming while the agent is away: the broker queues them.
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        agent = spawn_info(&config, &log);
    }
    publisher.join().unwrap();
    wait_until("every QoS 1 message", Duration::from_secs(120), || {
        let counts = event_id_counts(&events_so_far(&out));
        (0..TOTAL).all(|id| counts.contains_key(&id))
    });
    let counts = event_id_counts(&json_lines(&out));
    let again: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("{TOTAL} QoS 1 messages through {KILLS} SIGKILLs: {again} delivered twice");
    // Only deliveries the broker had not been told were safe come twice: at most its
    // in-flight window (max_inflight_messages 100) per kill.
    assert!(again <= 100 * KILLS, "{again} duplicates");

    // QoS 0 on a steady agent: nothing is lost between a broker and a live subscriber.
    let before = count_lines(&out);
    publish(port, "plant/qos0", 0, &ids(TOTAL..TOTAL + 1000), &[]);
    wait_for_lines(&out, before + 1000, Duration::from_secs(30));
    let events = json_lines(&out);
    let qos0: Vec<_> = events
        .iter()
        .filter(|e| e["tags"]["topic"] == "plant/qos0")
        .collect();
    assert_eq!(qos0.len(), 1000);
    assert!(events.iter().all(|e| e["name"] == "sensors"));
    assert!(
        events[..before]
            .iter()
            .all(|e| e["tags"]["topic"] == "plant/7/temp")
    );

    let (status, _) = terminate(agent.into_child());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    // The last run acknowledged what it took (its summary), and the broker flagged
    // what it sent again.
    let acked = summary_counter(&text, "source.sensors", "acked").unwrap_or(0);
    assert!(acked > 0, "{text}");
    eprintln!(
        "last run: acked={acked} redelivered={:?}",
        summary_counter(&text, "source.sensors", "redelivered")
    );
    drop(broker);
}

#[test]
fn mqtt5_over_tls_with_a_password_and_a_refused_one_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_certificate(dir.path());
    let passwords = dir.path().join("passwords");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["edge", "s3cret"])
        .status()
        .unwrap();
    assert!(status.success());
    let broker = Broker::start(
        dir.path(),
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}",
            ca.display(),
            cert.display(),
            key.display(),
            passwords.display()
        ),
    );
    let secret = dir.path().join("mqtt.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let config = config(
        dir.path(),
        &format!(
            r#"[sources.sensors]
type = "mqtt"
broker = "mqtts://127.0.0.1:{port}"
protocol = "5"
topics = ["site/#"]
qos = 1
username = "edge"
password_file = "{secret}"
tls = {{ ca_file = "{ca}" }}
topic_tag = "mqtt_topic"
max_line_bytes = 64
add_tags = {{ site = "plant-7" }}
batch_timeout_ms = 20
channels = ["durable"]

[sources.intruder]
type = "mqtt"
broker = "mqtts://127.0.0.1:{port}"
protocol = "5"
topics = ["site/#"]
username = "edge"
password = "wrong"
tls = {{ ca_file = "{ca}" }}
channels = ["durable"]"#,
            port = broker.port,
            secret = secret.display(),
            ca = ca.display(),
        ),
    );
    let log = dir.path().join("agent.log");
    let out = dir.path().join("out.jsonl");
    let agent = spawn_info(&config, &log);
    wait_for_log(&log, "subscribing to");
    let tls_args = [
        "--cafile",
        ca.to_str().unwrap(),
        "-u",
        "edge",
        "-P",
        "s3cret",
    ];
    let mut v5 = vec!["-V", "mqttv5"];
    v5.extend_from_slice(&tls_args);
    publish(broker.port, "site/a/temp", 1, &ids(0..500), &v5);
    publish(broker.port, "site/b/door", 0, &["opened".to_owned()], &v5);
    publish(broker.port, "site/c/blob", 1, &["x".repeat(300)], &v5);
    wait_for_lines(&out, 502, Duration::from_secs(30));
    let events = json_lines(&out);
    let counts = event_id_counts(&events);
    assert!((0..500).all(|id| counts.get(&id) == Some(&1)));
    let door = events.iter().find(|e| e["body"] == "opened").unwrap();
    assert_eq!(door["tags"]["mqtt_topic"], "site/b/door");
    assert_eq!(door["tags"]["site"], "plant-7");
    let blob = events
        .iter()
        .find(|e| e["tags"]["mqtt_topic"] == "site/c/blob")
        .unwrap();
    assert_eq!(
        blob["body"].as_str().unwrap().len(),
        64,
        "cut at max_line_bytes"
    );
    // The wrong password is reported, and retried, while the other source flows.
    wait_for_log(&log, "NotAuthorized");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("\"intruder\"") && l.contains("Connection refused")),
        "{text}"
    );
    let (status, _) = terminate(agent.into_child());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert_eq!(
        summary_counter(&text, "source.sensors", "lines_truncated"),
        Some(1),
        "{text}"
    );
}

#[test]
fn config_errors_name_their_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[sources.a]
type = "mqtt"
broker = "127.0.0.1:1883"
topics = ["ok/#", "bad/#/x"]
qos = 2
channels = ["main"]

[sources.b]
type = "mqtt"
broker = "mqtt://127.0.0.1:1883"
topics = []
tls = { ca_file = "/nonexistent/ca.pem" }
channels = ["main"]

[sources.c]
type = "mqtt"
broker = "mqtts://127.0.0.1"
topics = ["t"]
tls = { ca_file = "/nonexistent/ca.pem" }
password = "p"
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
            "sources.a.broker",
            "must start with mqtt:// or mqtts://",
            "sources.a.topics[1]",
            "`#` must be a whole level",
            "runnel.toml:5: `sources.a.qos`",
            "sources.b.topics",
            "sources.b.tls",
            "use mqtts://",
            "sources.c.tls.ca_file",
            "/nonexistent/ca.pem",
        ],
    );
}
