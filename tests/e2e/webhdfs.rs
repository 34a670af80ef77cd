//! The `webhdfs` sink against tests/peers/webhdfs_server.py, a WebHDFS *protocol
//! stand-in* (a namenode that redirects CREATE and APPEND to a datanode port, RENAME,
//! MKDIRS, GETFILESTATUS, TRUNCATE, RemoteException errors; files kept in a local
//! directory): no HDFS can be installed here. The access log goes through the combined
//! parser into hourly buckets by the log's own time, across a graceful restart of the
//! agent, an outage of the server, writes whose answer is lost, and a SIGKILL of the
//! agent with files open; every line lands once, in its bucket, in closed files.

use super::common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The stand-in server; killed when dropped.
struct Hdfs {
    child: Child,
    namenode: u16,
    datanode: u16,
}

impl Hdfs {
    /// Starts it on `ports` (namenode, datanode; 0: free ports) storing under `root`.
    fn start(root: &Path, ports: (u16, u16), args: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/webhdfs_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--root")
            .arg(root)
            .args(["--namenode-port", &ports.0.to_string()])
            .args(["--datanode-port", &ports.1.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let ports: serde_json::Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("the stand-in did not start ({e}): {first:?}"));
        Hdfs {
            child,
            namenode: ports["namenode"].as_u64().unwrap() as u16,
            datanode: ports["datanode"].as_u64().unwrap() as u16,
        }
    }
}

impl Drop for Hdfs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `root` (its HDFS path) and its contents, gunzipped when `.gz`.
fn stored(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
                continue;
            }
            let name = format!("/{}", path.strip_prefix(root).unwrap().display());
            let bytes = std::fs::read(&path).unwrap_or_default();
            let text = if name.trim_end_matches(".tmp").ends_with(".gz") {
                let mut plain = Vec::new();
                let read = flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut plain);
                // A file in use may be read while the server writes it: a member cut
                // short counts for what it holds so far. A closed file must be whole.
                if let Err(e) = read {
                    assert!(name.ends_with(".tmp"), "{name}: {e}");
                    let whole_lines = plain.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    plain.truncate(whole_lines);
                }
                String::from_utf8(plain).unwrap()
            } else {
                String::from_utf8(bytes).unwrap()
            };
            out.insert(name, text);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn stored_lines(root: &Path) -> usize {
    stored(root).values().map(|t| t.lines().count()).sum()
}

fn in_use(root: &Path) -> Vec<String> {
    stored(root)
        .into_keys()
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// `/logs/web/2015/05/17/10` for a combined line of `[17/May/2015:10:05:03 +0000]`.
fn bucket_of(line: &str) -> String {
    let time = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    let rfc = clf_to_rfc3339(time); // 2015-05-17T10:05:03+00:00
    format!(
        "/logs/app/{}/{}/{}/{}",
        &rfc[0..4],
        &rfc[5..7],
        &rfc[8..10],
        &rfc[11..13]
    )
}

fn agent_config(dir: &Path, namenode: u16, extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"[agent]
data_dir = "{data}"
summary_interval_secs = 0
shutdown_timeout_secs = 10

[plugins.access]
builtin = "combined"
keep_body = true

[sources.app]
type = "taildir"
paths = {{ app = "{logs}/*.log" }}
read_from = "start"
batch_size = 200
batch_timeout_ms = 20
plugins = ["access"]
channels = ["durable"]

[channels.durable]
type = "file"

[sinks.hdfs]
type = "webhdfs"
channel = "durable"
namenode = "http://127.0.0.1:{namenode}"
path = "/logs/{{name}}/%Y/%m/%d/%H"
file_suffix = ".log"
format = "raw"
roll_events = 100
batch_size = 50
batch_timeout_ms = 20
retry_initial_ms = 50
retry_max_ms = 500
request_timeout_secs = 5
{extra}
"#,
            data = dir.join("data").display(),
            logs = dir.join("logs").display(),
        ),
    )
}

#[test]
fn files_land_in_their_buckets_once_across_restarts_an_outage_and_lost_answers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hdfs");
    let requests = dir.path().join("requests.jsonl");
    let log = dir.path().join("agent.log");
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let input = dir.path().join("logs/access.log");
    let lines: Vec<String> = std::fs::read_to_string(data("apache_access/apache_logs"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let append = |range: std::ops::Range<usize>| {
        write_lines(
            &input,
            range.start as u64..range.end as u64,
            500,
            Duration::ZERO,
            |i| lines[i as usize].clone(),
        )
    };
    let server_args = [
        "--user",
        "edge",
        "--lose-answers",
        "9",
        "--log",
        requests.to_str().unwrap(),
    ];
    let hdfs = Hdfs::start(&root, (0, 0), &server_args);
    let ports = (hdfs.namenode, hdfs.datanode);
    let config = agent_config(dir.path(), hdfs.namenode, r#"user = "edge""#);

    // 1. A first part, then a graceful stop: every file is closed (renamed).
    append(0..4000);
    let agent = spawn_logged(&config, &log);
    wait_until("4,000 lines in HDFS", Duration::from_secs(60), || {
        stored_lines(&root) >= 4000
    });
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    assert_eq!(in_use(&root), Vec::<String>::new(), "closed at stop");

    // 2. The server goes away; lines keep coming; it comes back on the same ports.
    drop(hdfs);
    append(4000..7000);
    let mut agent = spawn_logged(&config, &log);
    wait_for_log(&log, "no answer from namenode");
    let hdfs = Hdfs::start(&root, ports, &server_args);
    append(7000..lines.len());
    wait_until("every line in HDFS", Duration::from_secs(90), || {
        stored_lines(&root) >= lines.len()
    });

    // 3. Killed with files open: they are closed and renamed by the next start.
    std::thread::sleep(Duration::from_millis(1500)); // commits and positions settle
    assert!(
        !in_use(&root).is_empty(),
        "files are still open before the kill"
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
    let agent = spawn_logged(&config, &log);
    wait_until(
        "the files left open to be renamed",
        Duration::from_secs(30),
        || in_use(&root).is_empty(),
    );
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    drop(hdfs);

    // Every line once, in the bucket of its own time, in files of at most 100 (a batch
    // is never split between files: batches of at most 50).
    let files = stored(&root);
    let mut got: Vec<&str> = Vec::new();
    for (name, text) in &files {
        let (bucket, file) = name.rsplit_once('/').unwrap();
        assert!(
            file.starts_with("events.") && file.ends_with(".log"),
            "{name}"
        );
        assert!(
            text.lines().count() <= 100,
            "{name} has {} lines",
            text.lines().count()
        );
        for line in text.lines() {
            assert_eq!(bucket_of(line), bucket, "{line}");
            got.push(line);
        }
    }
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(got.len(), want.len(), "every line once");
    got.sort_unstable();
    want.sort_unstable();
    assert!(got == want, "the stored lines are the log's lines");
    let buckets: std::collections::BTreeSet<&str> = files
        .keys()
        .map(|n| n.rsplit_once('/').unwrap().0)
        .collect();
    assert!(buckets.len() > 50, "{} hourly buckets", buckets.len());

    // The protocol as it went: data only to the datanode, lost answers cut back.
    let requests: Vec<serde_json::Value> = std::fs::read_to_string(&requests)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |role: &str, op: &str| {
        requests
            .iter()
            .filter(|r| r["role"] == role && r["op"] == op)
            .count()
    };
    for r in &requests {
        if r["role"] == "namenode" {
            assert_eq!(r["body"], 0, "no data to the namenode: {r}");
        }
    }
    assert!(
        count("datanode", "CREATE") >= files.len(),
        "one CREATE per file at least"
    );
    assert!(count("datanode", "APPEND") > 0);
    assert!(
        count("namenode", "RENAME") >= files.len(),
        "every file renamed when closed"
    );
    assert!(count("namenode", "MKDIRS") >= buckets.len());
    assert!(
        count("namenode", "TRUNCATE") > 0,
        "a write whose answer was lost is cut back before the retry"
    );
}

#[test]
fn gzip_files_and_a_delegation_token_and_identity_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hdfs");
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let hdfs = Hdfs::start(
        &root,
        (0, 0),
        &["--user", "edge", "--delegation", "s3cret-token"],
    );

    let lines: Vec<String> = std::fs::read_to_string(data("apache_access/apache_logs"))
        .unwrap()
        .lines()
        .take(3000)
        .map(str::to_owned)
        .collect();
    let input = dir.path().join("logs/access.log");
    write_lines(&input, 0..3000, 3000, Duration::ZERO, |i| {
        lines[i as usize].clone()
    });

    // A wrong user: refused with the server's words; nothing is lost, the sink retries.
    let wrong = agent_config(dir.path(), hdfs.namenode, r#"user = "mallory""#);
    let log = dir.path().join("agent.log");
    let agent = spawn_logged(&wrong, &log);
    wait_for_log(&log, "401 Unauthorized SecurityException");
    wait_for_log(&log, "user.name='mallory' is not allowed");
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    assert_eq!(stored_lines(&root), 0);

    // The token, gzip: the same 3,000 events, in .gz files of one member per batch.
    let config = agent_config(
        dir.path(),
        hdfs.namenode,
        &format!(
            "delegation_token_file = \"{}\"\ncompression = \"gzip\"\nroll_bytes = 20000\nidle_close_secs = 1",
            token.display()
        ),
    );
    let agent = spawn_logged(&config, &log);
    wait_until("3,000 lines in HDFS", Duration::from_secs(60), || {
        stored_lines(&root) >= 3000
    });
    wait_until("idle files to be closed", Duration::from_secs(10), || {
        in_use(&root).is_empty()
    });
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    let files = stored(&root);
    let mut got: Vec<&str> = Vec::new();
    for (name, text) in &files {
        assert!(name.ends_with(".log.gz"), "{name}");
        let gz = std::fs::read(root.join(name.trim_start_matches('/'))).unwrap();
        assert!(gz.len() <= 20000, "{name}: {} bytes", gz.len());
        for line in text.lines() {
            assert_eq!(bucket_of(line), name.rsplit_once('/').unwrap().0);
            got.push(line);
        }
    }
    assert!(files.len() > 5, "rolled by size: {:?}", files.keys());
    got.sort_unstable();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert!(got == want, "every line once");
}

#[test]
fn webhdfs_config_errors_name_their_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[sources.in]
type = "stdin"
channels = ["main"]

[channels.main]
type = "memory"

[sinks.hdfs]
type = "webhdfs"
channel = "main"
namenode = "namenode:9870"
path = "logs/{name}"
file_prefix = "a/b"
user = "edge"
delegation_token = "t"
in_use_suffix = ""
roll_events = 0
"#,
    );
    assert_refused(
        &config,
        &[
            ":11:",
            "`sinks.hdfs.namenode`",
            ":12:",
            "`sinks.hdfs.path`",
            "must be absolute",
            ":13:",
            "`sinks.hdfs.file_prefix`",
            ":14:",
            "`sinks.hdfs.user`",
            "not both",
            ":16:",
            "`sinks.hdfs.in_use_suffix`",
            ":17:",
            "`sinks.hdfs.roll_events`",
        ],
    );
}

/// Events name their HDFS directory (`/logs/{name}`): a 300-byte name lands under a
/// bounded name, a name whose directory is a file in HDFS is refused and counted, and
/// the events behind both are written.
#[test]
fn an_event_whose_hdfs_path_cannot_be_made_is_bounded_or_refused_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hdfs");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::write(root.join("logs/plain"), "a file\n").unwrap();
    let hdfs = Hdfs::start(&root, (0, 0), &[]);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.udp]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:{udp}"
channels = ["main"]
batch_timeout_ms = 20

[channels.main]
type = "file"

[sinks.hdfs]
type = "webhdfs"
channel = "main"
namenode = "http://127.0.0.1:{namenode}"
path = "/logs/{{name}}"
format = "raw"
batch_timeout_ms = 20
retry_initial_ms = 50
retry_max_ms = 500
"#,
            data = dir.path().join("data").display(),
            namenode = hdfs.namenode,
        ),
    );
    let log = dir.path().join("agent.log");
    let agent = spawn_logged(&config, &log);
    let send = |app: &str, msg: &str| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagram = format!("<14>1 - host {app} - - - {msg}");
        socket
            .send_to(datagram.as_bytes(), ("127.0.0.1", udp))
            .unwrap();
    };
    let lines_under = |dir: &str| -> Vec<String> {
        stored(&root)
            .into_iter()
            .filter(|(name, _)| name.starts_with(dir))
            .flat_map(|(_, text)| text.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    wait_until("a probe to arrive", Duration::from_secs(30), || {
        send("probe", "probe");
        std::thread::sleep(Duration::from_millis(20));
        !lines_under("/logs/probe/").is_empty()
    });
    send(&"x".repeat(300), "long");
    send("plain", "under a file");
    for id in 0..50 {
        send("app", &format!("id={id}"));
    }
    wait_until(
        "the events behind the poison",
        Duration::from_secs(30),
        || lines_under("/logs/app/").len() >= 50,
    );
    let (status, _) = terminate(agent.into_child());
    let text = std::fs::read_to_string(&log).unwrap();
    // No dead letter: the refused event is dropped, counted and reported (exit 1).
    assert_eq!(status.code(), Some(1), "{text}");
    assert_eq!(
        summary_counter(&text, "agent", "events_lost"),
        Some(1),
        "{text}"
    );
    let want: Vec<String> = (0..50).map(|id| format!("id={id}")).collect();
    assert_eq!(lines_under("/logs/app/"), want);
    assert_eq!(lines_under("/logs/xxxx"), ["long"]);
    assert_eq!(
        std::fs::read_to_string(root.join("logs/plain")).unwrap(),
        "a file\n"
    );
    assert_eq!(
        summary_counter(&text, "sink.hdfs", "events_rejected"),
        Some(1),
        "the `plain` event is refused and counted:\n{text}"
    );
}
