//! The HTTP receiver the delivery tests send to: `tests/peers/http_receiver.py`, a real
//! HTTP/1.1 server (Python's standard library) started per test, steered through its
//! standard input (outages, refusals; see tests/peers/README.md).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct Receiver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub port: u16,
    /// One JSON line per event received.
    pub out: PathBuf,
}

impl Receiver {
    /// Starts the receiver writing what it gets to `dir/received.jsonl`.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let out = dir.join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/http_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0", "--out"])
            .arg(&out)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the test receiver");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {first:?}"));
        Self {
            child,
            stdin,
            stdout,
            port,
            out,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    /// Sends a command (`mode 503`, `reject-marker X`) and waits until it is in effect.
    pub fn command(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim(), format!("ok {command}"), "receiver reply");
    }

    /// The receiver's counters.
    pub fn status(&mut self) -> serde_json::Value {
        writeln!(self.stdin, "status").unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    /// The bodies of the events received so far, in arrival order.
    pub fn bodies(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["body"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How often each id (`id=N` at the start of a body) was received.
pub fn id_counts(bodies: &[String]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for b in bodies {
        if let Some(id) = parse_id(b) {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

pub fn parse_id(body: &str) -> Option<u64> {
    body.strip_prefix("id=")?.split(' ').next()?.parse().ok()
}

/// The test id of a JSON event, as a file sink writes it (its body starts `id=N`).
pub fn event_id(event: &serde_json::Value) -> Option<u64> {
    parse_id(event["body"].as_str()?)
}

/// How many times each `id=N` body arrived among JSON events.
pub fn event_id_counts(events: &[serde_json::Value]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for id in events.iter().filter_map(event_id) {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// A small deterministic random sequence (the tests print their seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
