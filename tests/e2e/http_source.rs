//! The `http` source with `curl`: plain, NDJSON, JSON-array and gzip bodies, a bearer
//! token, the size limit and `/health`; and a flood that fills the channel while the
//! sink's destination is down: `429`s come back, and everything that got a `200`
//! arrives once the destination is back.

use super::common::*;
use super::peer::{Receiver, id_counts};
use std::process::Command;
use std::time::Duration;

/// `curl` with `args`: (status, body).
fn curl_with(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

#[test]
fn curl_bodies_of_every_kind_arrive_and_bad_requests_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.apps]
type = "http"
listen = "127.0.0.1:{port}"
bearer_token = "s3cret"
max_body_bytes = 4096
max_line_bytes = 64
batch_timeout_ms = 20
add_tags = {{ via = "http" }}
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
    let agent = spawn_logged(&config, &dir.path().join("agent.log"));
    wait_listening(port);
    let url = format!("http://127.0.0.1:{port}/logs");
    let auth = "Authorization: Bearer s3cret";
    let health = curl_with(&[&format!("http://127.0.0.1:{port}/health")]);
    assert_eq!(health, (200, "ok\n".to_owned()));
    assert_eq!(curl_with(&["--data-binary", "no token", &url]).0, 401);
    let wrong = curl_with(&[
        "-H",
        "Authorization: Bearer nope",
        "--data-binary",
        "x",
        &url,
    ]);
    assert_eq!(wrong.0, 401);
    let plain = curl_with(&["-H", auth, "--data-binary", "plain one\nplain two\n", &url]);
    assert_eq!(plain, (200, "{\"accepted\":2}\n".to_owned()));
    let ndjson = curl_with(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        "{\"n\":1}\n{\"n\":2}\n",
        &url,
    ]);
    assert_eq!(ndjson.0, 200, "{ndjson:?}");
    let array = curl_with(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "[{\"a\":\"x\"},{\"a\":\"y\"}]",
        &url,
    ]);
    assert_eq!(array.0, 200, "{array:?}");
    let gz = dir.path().join("body.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, b"zipped one\nzipped two\n").unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    let gzip = curl_with(&[
        "-H",
        auth,
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        &format!("@{}", gz.display()),
        &url,
    ]);
    assert_eq!(gzip.0, 200, "{gzip:?}");
    let bad = curl_with(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        "{\"ok\":1}\nnot json\n",
        &url,
    ]);
    assert_eq!(bad.0, 400);
    assert!(bad.1.contains("line 2 is not JSON"), "{bad:?}");
    let big = "x".repeat(5000);
    assert_eq!(curl_with(&["-H", auth, "--data-binary", &big, &url]).0, 413);
    let long = curl_with(&["-H", auth, "--data-binary", &"y".repeat(100), &url]);
    assert_eq!(long.0, 200);

    wait_for_lines(&out, 9, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    let events = json_lines(&out);
    assert!(
        events.iter().all(|e| e["tags"]["via"] == "http"),
        "add_tags"
    );
    let bodies: Vec<String> = events
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        bodies,
        [
            "plain one",
            "plain two",
            "{\"n\":1}",
            "{\"n\":2}",
            "{\"a\":\"x\"}",
            "{\"a\":\"y\"}",
            "zipped one",
            "zipped two",
            &"y".repeat(64),
        ]
    );
}

#[test]
fn a_flood_that_fills_the_channel_gets_429s_and_every_200_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), &[]);
    rx.command("mode 503");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.apps]
type = "http"
listen = "127.0.0.1:{port}"
channels = ["main"]

[channels.main]
type = "memory"
capacity = 200

[sinks.central]
type = "http"
channel = "main"
uri = "{uri}"
batch_size = 100
batch_timeout_ms = 20
retry_initial_ms = 50
retry_max_ms = 200
"#,
            data = dir.path().join("data").display(),
            uri = rx.uri(),
        ),
    );
    let agent = spawn_logged(&config, &dir.path().join("agent.log"));
    wait_listening(port);
    // 8 clients, 300 requests of 10 lines each; each request's status is printed.
    let flood = format!(
        r#"
import concurrent.futures, json, urllib.error, urllib.request
def post(r):
    body = "".join(f"id={{r * 10 + i}} flood\n" for i in range(10)).encode()
    request = urllib.request.Request("http://127.0.0.1:{port}/", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return r, answer.status
    except urllib.error.HTTPError as e:
        return r, e.code
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    for r, status in pool.map(post, range(300)):
        print(json.dumps([r, status]), flush=True)
"#
    );
    let client = Command::new("python3")
        .args(["-c", &flood])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    rx.command("mode ok");
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success());
    let results: Vec<(u64, u16)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 300);
    let accepted: Vec<u64> = results
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(r, _)| *r)
        .collect();
    let refused = results.iter().filter(|(_, s)| *s == 429).count();
    assert_eq!(
        accepted.len() + refused,
        300,
        "only 200 and 429: {results:?}"
    );
    assert!(refused > 0, "the full channel answered 429");
    assert!(!accepted.is_empty());
    wait_until(
        "every accepted line at the receiver",
        Duration::from_secs(30),
        || {
            let got = id_counts(&rx.bodies());
            accepted
                .iter()
                .all(|r| (r * 10..r * 10 + 10).all(|id| got.contains_key(&id)))
        },
    );
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    eprintln!(
        "http flood: {} requests accepted, {refused} answered 429",
        accepted.len()
    );
}

#[test]
fn https_with_curl_and_a_connection_over_the_per_peer_limit_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_certificate(dir.path());
    let port = free_port();
    let out = dir.path().join("out.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.apps]
type = "http"
listen = "127.0.0.1:{port}"
tls = {{ cert_file = "{cert}", key_file = "{key}" }}
max_connections_per_peer = 1
batch_timeout_ms = 20
channels = ["main"]
{tail}"#,
            data = dir.path().join("data").display(),
            cert = cert.display(),
            key = key.display(),
            tail = main_channel_to_file(&out, "json"),
        ),
    );
    let log = dir.path().join("agent.log");
    let agent = spawn_logged(&config, &log);
    wait_listening(port);
    let url = format!("https://127.0.0.1:{port}/logs");
    let ca = ca.to_str().unwrap();
    let posted = curl_with(&["--cacert", ca, "--data-binary", "over tls\n", &url]);
    assert_eq!(posted, (200, "{\"accepted\":1}\n".to_owned()));
    wait_for_lines(&out, 1, Duration::from_secs(10));
    assert_eq!(json_lines(&out)[0]["body"], "over tls");
    // Plain HTTP to the TLS port gets no answer.
    let plain = curl_with(&[
        "--max-time",
        "5",
        "--data-binary",
        "x",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(plain.0, 0, "{plain:?}");
    // One connection held open from 127.0.0.1: the next is refused at once.
    let held = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let refused = curl_with(&[
        "--cacert",
        ca,
        "--max-time",
        "5",
        "--data-binary",
        "y\n",
        &url,
    ]);
    assert_eq!(refused.0, 0, "{refused:?}");
    wait_for_log(&log, "too many connections from this address");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let again = curl_with(&["--cacert", ca, "--data-binary", "after\n", &url]);
    assert_eq!(again.0, 200);
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    assert_eq!(count_lines(&out), 2, "the refused body never arrived");
}
