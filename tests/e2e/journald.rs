//! The `journald` source with the real `journalctl` (systemd 252 here).
//!
//! What is tested, exactly: the test machine runs no journald, so the journal is a file
//! the test writes itself: entries in the journal export format, piped through
//! systemd's own `systemd-journal-remote -o FILE -` (which writes journal files as
//! journald does, appending to an existing one). The agent runs `journalctl --file FILE
//! -o json --follow` on it, as it would on /var/log/journal. A live journald (its
//! socket, rotation, vacuuming) is not tested here.

use super::common::*;
use super::peer::{Rng, event_id, event_id_counts};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// systemd's journal-remote (Debian package systemd-journal-remote).
fn journal_remote() -> PathBuf {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("systemd-journal-remote (scripts/test-peers.sh installs it)")
}

/// Microseconds of 2026-11-27T00:00:00Z, the first test entry's time.
const T0_US: u64 = 1_795_737_600_000_000;

/// The export-format entry of test id `id`.
fn entry(id: u64) -> Vec<u8> {
    let mut e = Vec::new();
    let (app, unit) = if id.is_multiple_of(2) {
        ("pump", "pump.service")
    } else {
        ("valve", "valve.service")
    };
    writeln!(e, "__REALTIME_TIMESTAMP={}", T0_US + id * 1000).unwrap();
    writeln!(e, "__MONOTONIC_TIMESTAMP={}", id * 1000).unwrap();
    writeln!(e, "_HOSTNAME=gw-7").unwrap();
    writeln!(e, "_SYSTEMD_UNIT={unit}").unwrap();
    writeln!(e, "SYSLOG_IDENTIFIER={app}").unwrap();
    writeln!(e, "_PID={}", 1000 + id % 5).unwrap();
    writeln!(e, "_TRANSPORT=journal").unwrap();
    writeln!(e, "PRIORITY={}", id % 8).unwrap();
    if id % 100 == 42 {
        // A message that is not UTF-8: the export format's binary form.
        let body = format!("id={id} bytes \u{0}\u{7f}").into_bytes();
        let mut body = body;
        body.push(0xff);
        e.extend_from_slice(b"MESSAGE\n");
        e.extend_from_slice(&(body.len() as u64).to_le_bytes());
        e.extend_from_slice(&body);
        e.push(b'\n');
    } else {
        writeln!(e, "MESSAGE=id={id} pressure nominal").unwrap();
    }
    e.push(b'\n');
    e
}

/// Appends the entries of `ids` to the journal file (made when missing).
fn append(journal: &Path, ids: std::ops::Range<u64>) {
    let mut child = Command::new(journal_remote())
        .arg("-o")
        .arg(journal)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for id in ids {
        stdin.write_all(&entry(id)).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config(dir: &Path, journal: &Path) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"[agent]
data_dir = "{data}"
shutdown_timeout_secs = 10

[sources.journal]
type = "journald"
files = ["{journal}"]
fields = ["_TRANSPORT"]
batch_size = 100
batch_timeout_ms = 20
channels = ["durable"]

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
            journal = journal.display(),
            out = dir.join("out.jsonl").display(),
        ),
    )
}

fn id_counts(out: &Path) -> HashMap<u64, usize> {
    event_id_counts(&events_so_far(out))
}

fn wait_for_ids(out: &Path, total: u64) -> HashMap<u64, usize> {
    wait_until("every journal entry", Duration::from_secs(20), || {
        let counts = id_counts(out);
        (0..total).all(|id| counts.contains_key(&id))
    });
    id_counts(out)
}

#[test]
fn entries_arrive_mapped_and_restarts_resume_after_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("system.journal");
    let out = dir.path().join("out.jsonl");
    append(&journal, 0..300);
    let config = config(dir.path(), &journal);
    let log = dir.path().join("agent.log");

    // Everything in the file, then what is appended while it follows.
    let agent = spawn_logged(&config, &log);
    wait_for_ids(&out, 300);
    append(&journal, 300..500);
    let counts = wait_for_ids(&out, 500);
    assert!(counts.values().all(|n| *n == 1), "once each");
    let events = json_lines(&out);
    let by_id: HashMap<u64, &serde_json::Value> = events
        .iter()
        .filter_map(|e| Some((event_id(e)?, e)))
        .collect();
    let e = by_id[&13];
    assert_eq!(e["name"], "valve");
    assert_eq!(e["level"], "info", "PRIORITY 5: notice");
    assert_eq!(e["timestamp"], "2026-11-27T00:00:00.013Z");
    assert_eq!(e["tags"]["host"], "gw-7");
    assert_eq!(e["tags"]["unit"], "valve.service");
    assert_eq!(e["tags"]["identifier"], "valve");
    assert_eq!(e["tags"]["pid"], "1003");
    assert_eq!(e["fields"]["_TRANSPORT"], "journal");
    assert_eq!(e["body"], "id=13 pressure nominal");
    assert_eq!(by_id[&16]["level"], "fatal", "PRIORITY 0: emerg");
    assert_eq!(by_id[&12]["level"], "warn", "PRIORITY 4: warning");
    assert_eq!(by_id[&15]["level"], "debug", "PRIORITY 7: debug");
    assert_eq!(by_id[&0]["name"], "pump");
    // The binary message arrives with its bytes: NUL and DEL as they are (JSON escapes the
    // NUL), and the byte 0xff, which no JSON string can hold, as U+FFFD.
    for id in [42, 142] {
        assert_eq!(
            by_id[&id]["body"],
            format!("id={id} bytes \u{0}\u{7f}\u{fffd}"),
            "the binary message of entry {id}"
        );
    }

    // A clean stop writes the cursor; entries appended while the agent is away arrive
    // after the restart, and none of the earlier ones again.
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
    let cursor = dir.path().join("data/journald/journal.cursor");
    assert!(std::fs::read_to_string(&cursor).unwrap().starts_with("s="));
    append(&journal, 500..600);
    // A `Running`: a failing assertion still stops the agent.
    let mut agent = spawn_logged(&config, &log);
    let counts = wait_for_ids(&out, 600);
    std::thread::sleep(Duration::from_millis(500));
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "read again after a clean restart: {twice:?}"
    );

    // SIGKILL while entries keep coming: every entry arrives; what comes twice is at
    // most what was in the channel but not yet in the cursor file.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("journald kill -9 seed {seed}");
    let mut rng = Rng::new(seed);
    let writer = {
        let journal = journal.clone();
        std::thread::spawn(move || {
            // Appends of 25 against batches of 100: kills land inside batches.
            for start in (600..4600).step_by(25) {
                append(&journal, start..start + 25);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300 + rng.below(500)));
        agent.kill().unwrap(); // SIGKILL
        agent.wait().unwrap();
        eprintln!("killed with {} events out", count_lines(&out));
        agent = spawn_logged(&config, &log);
    }
    writer.join().unwrap();
    let counts = wait_for_ids(&out, 4600);
    let again: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("4,000 entries through 3 SIGKILLs: {again} read twice");
    assert!(again <= 3 * 200, "{again} read twice");
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_cursor_journalctl_refuses_is_reported_and_reading_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("system.journal");
    let out = dir.path().join("out.jsonl");
    append(&journal, 0..50);
    let cursor = dir.path().join("data/journald/journal.cursor");
    std::fs::create_dir_all(cursor.parent().unwrap()).unwrap();
    std::fs::write(&cursor, "not-a-cursor\n").unwrap();
    let log = dir.path().join("agent.log");
    let agent = spawn_logged(&config(dir.path(), &journal), &log);
    wait_for_ids(&out, 50);
    wait_for_log(&log, "dropping the cursor");
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    assert!(std::fs::read_to_string(&cursor).unwrap().starts_with("s="));
}

#[test]
fn config_errors_name_their_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[sources.j]
type = "journald"
max_priority = 8
files = ["/nonexistent/system.journal"]
matches = ["_SYSTEMD_UNIT=ssh.service", "unit=ssh"]
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
            "runnel.toml:3: `sources.j.max_priority`",
            "`sources.j.files[0]`",
            "no such journal file",
            "`sources.j.matches[1]`",
            "must be FIELD=VALUE",
        ],
    );
}
