//! Helpers shared by the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The agent binary under test, run in cargo's scratch directory for tests: a config
/// without `data_dir` keeps its state (and the plugin compile cache, shared by the
/// tests) there, not in the source tree. `RUNNEL_BIN` names another binary than
/// cargo's (a copy, when worktrees share one target directory and so one binary path).
pub fn runnel() -> Command {
    let bin = std::env::var_os("RUNNEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_runnel")));
    let mut cmd = Command::new(bin);
    cmd.env("RUNNEL_LOG", "warn")
        .env(
            "RUNNEL_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"),
        )
        .current_dir(env!("CARGO_TARGET_TMPDIR"));
    cmd
}

/// A file of the vendored test data (tests/data, see its README).
pub fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(rel);
    assert!(p.exists(), "test data missing: {}", p.display());
    p
}

/// A plugin built by scripts/build-plugins.sh (test fixtures included).
pub fn built_plugin(file: &str) -> PathBuf {
    let p = Path::new(env!("RUNNEL_PLUGIN_DIR")).join(file);
    assert!(
        p.exists(),
        "plugin not built: {} (run scripts/build-plugins.sh)",
        p.display()
    );
    p
}

/// Writes a config into `dir` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("runnel.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The config tail most tests share: the memory channel `main` and the file sink `out`
/// writing `format` to `out` (sources send to `channels = ["main"]`).
pub fn main_channel_to_file(out: &Path, format: &str) -> String {
    format!(
        r#"
[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "{}"
format = "{format}"
batch_timeout_ms = 20
"#,
        out.display()
    )
}

/// Runs `runnel run --config CONFIG` with `stdin` as standard input, to completion.
pub fn run_with_stdin(config: &Path, stdin: &Path) -> Output {
    runnel()
        .args(["run", "--config"])
        .arg(config)
        .stdin(std::fs::File::open(stdin).unwrap())
        .output()
        .unwrap()
}

/// Parses a JSON-lines file.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(file)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("sink output is JSON"))
        .collect()
}

/// The JSON events of a file a sink is still writing (a line being written, or cut by
/// a kill, is skipped; none when the file does not exist yet).
pub fn events_so_far(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Number of lines in a file (0 when it does not exist yet).
pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Waits until `path` has at least `n` lines, or panics after `timeout`.
pub fn wait_for_lines(path: &Path, n: usize, timeout: Duration) {
    let start = Instant::now();
    while count_lines(path) < n {
        assert!(
            start.elapsed() < timeout,
            "{} has {} lines after {timeout:?}, expected {n}",
            path.display(),
            count_lines(path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM and waits for the agent to exit; returns its status and stderr.
pub fn terminate(mut child: Child) -> (ExitStatus, String) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
            }
            return (status, stderr);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("agent did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `runnel run --config CONFIG` in the background.
pub fn spawn(config: &Path) -> Child {
    runnel()
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The value of a counter in the agent's final summary (`metric=value` on the line of
/// `component`).
pub fn summary_counter(stderr: &str, component: &str, metric: &str) -> Option<u64> {
    let final_part = stderr.rsplit("runnel final").next()?;
    final_part
        .lines()
        .find(|l| l.split_whitespace().next() == Some(component))?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{metric}=")))
        .and_then(|v| v.parse().ok())
}

/// Parses a combined log line with an independent regex (not the plugin's code).
pub struct Expected {
    pub host: String,
    pub user: Option<String>,
    pub time: String,
    pub method: String,
    pub path: String,
    pub protocol: String,
    pub status: i64,
    pub size: Option<i64>,
    pub referrer: Option<String>,
    pub agent: Option<String>,
}

pub fn expected_combined(line: &str) -> Expected {
    let re = regex::Regex::new(
        r#"^(\S+) \S+ (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"?$"#,
    )
    .unwrap();
    let c = re
        .captures(line)
        .unwrap_or_else(|| panic!("test regex does not match: {line}"));
    let dash = |s: &str| if s == "-" { None } else { Some(s.to_owned()) };
    Expected {
        host: c[1].to_owned(),
        user: dash(&c[2]),
        time: c[3].to_owned(),
        method: c[4].to_owned(),
        path: c[5].to_owned(),
        protocol: c[6].to_owned(),
        status: c[7].parse().unwrap(),
        size: c[8].parse().ok(),
        referrer: dash(&c[9]),
        agent: dash(&c[10]),
    }
}

/// `17/May/2015:10:05:03 +0000` → `2015-05-17T10:05:03Z` (the shared log is all UTC).
pub fn clf_to_rfc3339(t: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert!(t.ends_with(" +0000"), "{t}");
    let month = MONTHS.iter().position(|m| *m == &t[3..6]).unwrap() + 1;
    format!("{}-{month:02}-{}T{}Z", &t[7..11], &t[0..2], &t[12..20])
}

/// Checks one sink event against the independent parse of its line.
pub fn assert_combined_event(event: &serde_json::Value, line: &str) {
    let e = expected_combined(line);
    let f = &event["fields"];
    let s = |v: &Option<String>| {
        v.clone()
            .map(serde_json::Value::String)
            .unwrap_or(serde_json::Value::Null)
    };
    assert_eq!(f["host"], e.host.as_str(), "{line}");
    assert_eq!(f["user"], s(&e.user), "{line}");
    assert_eq!(f["method"], e.method.as_str(), "{line}");
    assert_eq!(f["path"], e.path.as_str(), "{line}");
    assert_eq!(f["protocol"], e.protocol.as_str(), "{line}");
    assert_eq!(f["status"], e.status, "{line}");
    assert_eq!(
        f["size"],
        e.size
            .map(serde_json::Value::from)
            .unwrap_or(serde_json::Value::Null),
        "{line}"
    );
    assert_eq!(f["referrer"], s(&e.referrer), "{line}");
    assert_eq!(f["agent"], s(&e.agent), "{line}");
    assert_eq!(
        event["timestamp"],
        clf_to_rfc3339(&e.time).as_str(),
        "{line}"
    );
    let level = match e.status {
        500.. => "error",
        400..=499 => "warn",
        _ => "info",
    };
    assert_eq!(event["level"], level, "{line}");
    assert!(event["tags"].get("parse_error").is_none(), "{line}");
}

/// The peak resident set size (VmHWM) of a running process, in KiB (0 once it is gone).
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// An agent process that is killed when the test ends (or fails) without having
/// stopped it, so a failed test leaves nothing running.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The process, for stopping it by hand (`terminate`).
    pub fn into_child(mut self) -> Child {
        self.0.take().expect("not yet taken")
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("not yet taken")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("not yet taken")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `runnel run --config CONFIG` with a standard input the test writes to, logging at
/// info level into the file `log` (a pipe nobody reads could fill up).
pub fn spawn_fed(config: &Path, log: &Path) -> Child {
    runnel()
        .env("RUNNEL_LOG", "info")
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until `done` (or panics naming `what` after `timeout`).
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the agent's log file holds `text` (panics with the log after 30 s).
pub fn wait_for_log(log: &Path, text: &str) {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let start = Instant::now();
    while !read().contains(text) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no `{text}` in the log:\n{}",
            read()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `curl` against the admin endpoint as an operator would (a `POST` says it sends JSON,
/// as the endpoint requires): (HTTP status, body).
pub fn curl(method: &str, url: &str) -> (u16, serde_json::Value) {
    curl_headers(method, url, &["Content-Type: application/json"])
}

/// `curl` with exactly these extra request headers: (HTTP status, body).
pub fn curl_headers(method: &str, url: &str, headers: &[&str]) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-X", method, "-w", "\n%{http_code}"]);
    for header in headers {
        cmd.args(["-H", header]);
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (an agent's
/// network source), then a little more for the sources started beside it.
pub fn wait_listening(port: u16) {
    wait_until("a source to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::thread::sleep(Duration::from_millis(200));
}

/// A TCP port free on 127.0.0.1 (for an agent's admin endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `runnel run --config CONFIG` in the background, its standard error appended to `log`
/// (a killed agent's pipe would otherwise fill up unread).
pub fn spawn_logged(config: &Path, log: &Path) -> Running {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Running::new(
        runnel()
            .args(["run", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(stderr))
            .spawn()
            .unwrap(),
    )
}

/// Appends `line(id)` (and a newline) to `path` for each id in `range`, `per_tick` lines
/// at a time, sleeping `tick` after each.
pub fn write_lines(
    path: &Path,
    range: std::ops::Range<u64>,
    per_tick: u64,
    tick: Duration,
    line: impl Fn(u64) -> String,
) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for id in range {
        buf.push_str(&line(id));
        buf.push('\n');
        if (id + 1) % per_tick == 0 {
            file.write_all(buf.as_bytes()).unwrap();
            buf.clear();
            std::thread::sleep(tick);
        }
    }
    file.write_all(buf.as_bytes()).unwrap();
}

/// Appends `id=N <pad × p>` lines (see [`write_lines`]).
pub fn write_ids(
    path: &Path,
    range: std::ops::Range<u64>,
    per_tick: u64,
    tick: Duration,
    pad: usize,
) {
    let padding = "p".repeat(pad);
    write_lines(path, range, per_tick, tick, |id| {
        format!("id={id} {padding}")
    });
}

/// `runnel validate --config CONFIG`: (whether it passed, standard error and output).
pub fn validate_config(config: &Path) -> (bool, String) {
    let out = runnel()
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `runnel validate` refuses `config`, saying each of `expected`.
pub fn assert_refused(config: &Path, expected: &[&str]) {
    let (ok, text) = validate_config(config);
    assert!(!ok, "{} should be refused", config.display());
    for e in expected {
        assert!(text.contains(e), "no {e:?} in\n{text}");
    }
}

/// `runnel run --config CONFIG` to its end; panics with its standard error unless it
/// succeeded.
pub fn run_to_end(config: &Path) -> Output {
    let run = runnel()
        .args(["run", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}: {}",
        config.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

/// `runnel plugin SUBCOMMAND ARGS` with `input` on its standard input (fed from a thread:
/// the output may be larger than a pipe holds); panics unless it succeeded. Returns
/// (standard output, standard error).
pub fn plugin_command(
    subcommand: &str,
    args: &[&std::ffi::OsStr],
    input: &[u8],
) -> (String, String) {
    use std::io::Write;
    let mut child = runnel()
        .args(["plugin", subcommand])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "plugin {subcommand} {args:?}: {stderr}"
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// `runnel plugin test ARGS` on `input`: (the events out, standard error).
pub fn plugin_test(args: &[&std::ffi::OsStr], input: &[u8]) -> (Vec<serde_json::Value>, String) {
    let (stdout, stderr) = plugin_command("test", args, input);
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, stderr)
}

/// A test CA, and a certificate for 127.0.0.1 and localhost it signed, made with
/// openssl in `dir`: (CA certificate, certificate, key), PEM. (rustls takes no
/// self-signed server certificate.)
pub fn ca_and_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// `runnel ARGS`: whether it succeeded, and its standard output and error together.
pub fn cli(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = runnel().args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `runnel plugin keygen --out OUT`: a signing key at OUT, its public key at OUT.pub.
pub fn keygen(out: &Path) {
    let (ok, text) = cli(&[
        "plugin".as_ref(),
        "keygen".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(ok, "{text}");
}

/// The power-cut file system (tests/powercut, `runnel-powercut`) mounted at `mount` over
/// the directory `disk`: written data stays in memory until its file is fsynced;
/// [`PowerCut::cut`] drops what was not. Unmounted (as by a cut) if the test ends
/// without stopping it.
pub struct PowerCut {
    child: Option<Child>,
    stdout: BufReader<std::process::ChildStdout>,
    pub mount: PathBuf,
}

impl PowerCut {
    /// Mounts `mount` over `disk` (both directories), once the file system says it is
    /// mounted. Needs /dev/fuse and root, as CI has.
    pub fn mount(disk: &Path, mount: &Path) -> Self {
        let bin = powercut_bin();
        std::fs::create_dir_all(disk).unwrap();
        std::fs::create_dir_all(mount).unwrap();
        let mut child = Command::new(&bin)
            .arg(disk)
            .arg(mount)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "mounted",
            "runnel-powercut could not mount {} (it needs /dev/fuse and root)",
            mount.display()
        );
        Self {
            child: Some(child),
            stdout,
            mount: mount.to_path_buf(),
        }
    }

    /// The power cut: every write not fsynced is dropped and the mount goes away.
    /// Returns the bytes dropped.
    pub fn cut(mut self) -> u64 {
        let said = self.stop("-USR1");
        said.strip_prefix("power cut: dropped ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("runnel-powercut said {said:?}"))
    }

    /// A clean unmount: what was not synced is written back.
    pub fn unmount(mut self) {
        let said = self.stop("-TERM");
        assert!(
            said.starts_with("unmounted"),
            "runnel-powercut said {said:?}"
        );
    }

    fn stop(&mut self, signal: &str) -> String {
        let mut child = self.child.take().expect("still mounted");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "runnel-powercut: {status}");
        line.trim().to_owned()
    }
}

/// The `runnel-powercut` binary: `RUNNEL_POWERCUT_BIN`, else beside `RUNNEL_BIN` (where
/// copies of the binaries are run), else where cargo built it (target/debug, beside the
/// test binaries' deps/).
fn powercut_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let candidates = [
        std::env::var_os("RUNNEL_POWERCUT_BIN").map(PathBuf::from),
        std::env::var_os("RUNNEL_BIN").map(|b| PathBuf::from(b).with_file_name("runnel-powercut")),
        exe.parent()
            .and_then(Path::parent)
            .map(|d| d.join("runnel-powercut")),
        Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("../debug/runnel-powercut")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .expect("runnel-powercut not built: `cargo test --workspace` builds it (or `cargo build -p runnel-powercut`)")
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop("-USR1")));
        }
        // Were the file system gone without unmounting, the mount would stay behind.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if mounts.contains(&*self.mount.to_string_lossy()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}
