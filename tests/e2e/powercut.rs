//! Power cuts, end to end: the agent's `data_dir` (the `file` channel's log, the position
//! file) lives on runnel-powercut (tests/powercut), a file system that keeps written data
//! in memory until its file is fsynced and drops the rest at a cut, so what survives is
//! what a disk would hold after losing power. The log the agent reads and the sink's
//! output are on a normal directory (a machine's other disk, a remote destination).
//! Each row of the README's `fsync` table is checked: `batch` loses nothing, `never`
//! loses what was not synced (so the harness can fail), `interval` at most the last
//! interval's puts, and a clean stop syncs whatever the policy.

use super::common::*;
use super::peer::{Receiver, Rng, event_id, event_id_counts};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// taildir of `dir/logs/*.log` → the `file` channel `durable` (`channel` keys) with
/// `data_dir` on the power-cut mount `dir/mount` → `sink`.
fn config(dir: &Path, channel: &str, sink: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    write_config(
        dir,
        &format!(
            r#"
[agent]
data_dir = "{data}"
summary_interval_secs = 0
shutdown_timeout_secs = 2

[sources.app]
type = "taildir"
paths = {{ app = "{logs}/*.log" }}
read_from = "start"
batch_size = 200
batch_timeout_ms = 20
channels = ["durable"]

[channels.durable]
type = "file"
{channel}

{sink}
"#,
            data = dir.join("mount/data").display(),
            logs = dir.join("logs").display(),
        ),
    )
}

/// Mounts the power-cut file system of a test directory: `dir/mount` over `dir/disk`.
fn mount(dir: &Path) -> PowerCut {
    PowerCut::mount(&dir.join("disk"), &dir.join("mount"))
}

fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("power-cut test seed {seed}");
    seed
}

/// How far the position file at `path` says the (one) log was read, as the agent sees
/// it (through the mount): a byte offset.
fn position(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let saved: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    saved["files"][0]["offset"].as_u64()
}

/// The id of the last whole line of the file sink's output (read from its end: the
/// test polls it while the agent writes).
fn last_id(out: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(out).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = String::new();
    file.read_to_string(&mut tail).ok()?;
    let whole = &tail[..tail.rfind('\n')?];
    let line = whole.rsplit('\n').next()?;
    event_id(&serde_json::from_str(line).ok()?)
}

/// How often each id reached the receiver so far (a line it is still writing is
/// skipped: the test polls while it writes).
fn received(rx: &Receiver) -> HashMap<u64, usize> {
    event_id_counts(&events_so_far(&rx.out))
}

/// Ids of the file sink's output so far, and how often each came.
fn delivered(out: &Path) -> HashMap<u64, usize> {
    event_id_counts(&events_so_far(out))
}

#[test]
fn fsync_batch_loses_nothing_over_five_power_cuts_mid_stream() {
    const CUTS: usize = 5;
    const BURST: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = config(
        dir.path(),
        r#"fsync = "batch""#,
        &format!(
            r#"[sinks.out]
type = "file"
channel = "durable"
path = "{}"
batch_size = 200
batch_timeout_ms = 20"#,
            out.display()
        ),
    );
    let app = dir.path().join("logs/app.log");
    let log = dir.path().join("agent.log");
    let mut rng = Rng::new(seed());
    let mut written = 0;
    for cut in 0..CUTS {
        let fs = mount(dir.path());
        let mut agent = spawn_logged(&config, &log);
        let burst = written;
        write_ids(&app, burst..burst + BURST, BURST, Duration::ZERO, 40);
        written += BURST;
        // The cut lands while the agent works through the burst: once the sink wrote
        // the burst's `k`-th line (lines come in order, after any batches delivered
        // again), `k` differing from cut to cut.
        let k = 100 + rng.below(BURST / 2);
        let start = Instant::now();
        while last_id(&out).is_none_or(|id| id < burst + k) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "cut {cut}: the agent did not deliver line {}",
                burst + k
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        agent.kill().unwrap(); // SIGKILL, and the power goes at the same moment
        agent.wait().unwrap();
        let dropped = fs.cut();
        let got = delivered(&out).len() as u64;
        eprintln!("cut {cut}: {got} of {written} ids delivered, {dropped} unsynced bytes dropped");
        assert!(
            got < written,
            "cut {cut} came after everything was delivered: not mid-stream"
        );
    }

    let fs = mount(dir.path());
    let agent = spawn_logged(&config, &log);
    let start = Instant::now();
    let counts = loop {
        let counts = delivered(&out);
        if (0..written).all(|id| counts.contains_key(&id)) {
            break counts;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let missing: Vec<u64> = (0..written).filter(|id| !counts.contains_key(id)).collect();
            panic!(
                "{} of {written} ids lost after {CUTS} power cuts with fsync = \"batch\", \
                 first {:?}\n{}",
                missing.len(),
                &missing[..missing.len().min(10)],
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, _) = terminate(agent.into_child());
    fs.unmount();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(counts.keys().all(|&id| id < written));
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "fsync = batch, {CUTS} power cuts: {written} ids, 0 lost, {duplicates} delivered again"
    );
}

/// How a backlog run ends before the power goes.
enum Stop {
    Sigkill,
    Sigterm,
}

/// What [`backlog_then_power_cut`] found.
struct Cut {
    /// Ids of the backlog never delivered.
    lost: Vec<u64>,
    /// Unsynced bytes the cut dropped.
    dropped: u64,
}

const BACKLOG: u64 = 1000;

/// 1000 lines wait in the `file` channel (`fsync` policy `fsync`) while the destination
/// refuses them, and the source has recorded them all as read; the agent stops (`stop`)
/// and the power goes. After a restart with the destination back, and one more line
/// delivered after them, which of the 1000 never came?
fn backlog_then_power_cut(fsync: &str, stop: Stop) -> Cut {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), &["--mode", "refuse"]);
    let config = config(
        dir.path(),
        &format!("fsync = \"{fsync}\""),
        &format!(
            r#"[sinks.central]
type = "http"
channel = "durable"
uri = "{}"
batch_size = 200
batch_timeout_ms = 20
retry_initial_ms = 50
retry_max_ms = 200
in_flight = 1"#,
            rx.uri()
        ),
    );
    let app = dir.path().join("logs/app.log");
    let log = dir.path().join("agent.log");
    write_ids(&app, 0..BACKLOG, BACKLOG, Duration::ZERO, 20);

    let fs = mount(dir.path());
    let mut agent = spawn_logged(&config, &log);
    // The position file (read through the mount, as the agent sees it) covers the
    // whole log: every line was put into the channel.
    let positions = dir.path().join("mount/data/taildir/app.positions.json");
    let end = std::fs::metadata(&app).unwrap().len();
    wait_until(
        "positions at the end of the log",
        Duration::from_secs(30),
        || {
            std::fs::read(&positions)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|p| p["files"][0]["offset"] == end)
        },
    );
    match stop {
        Stop::Sigkill => {
            agent.kill().unwrap();
            agent.wait().unwrap();
        }
        Stop::Sigterm => {
            // The destination still refuses: the drain gives up after
            // shutdown_timeout_secs, the events stay in the channel.
            terminate(agent.into_child());
        }
    }
    let dropped = fs.cut();

    let fs = mount(dir.path());
    rx.command("mode ok");
    let agent = spawn_logged(&config, &log);
    write_ids(&app, BACKLOG..BACKLOG + 1, 1, Duration::ZERO, 20);
    // One batch at a time, in order: once the last line is in, whatever of the backlog
    // the channel still held came before it.
    wait_until(
        "the line after the backlog",
        Duration::from_secs(60),
        || received(&rx).contains_key(&BACKLOG),
    );
    let (status, _) = terminate(agent.into_child());
    fs.unmount();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    let counts = received(&rx);
    let lost: Vec<u64> = (0..BACKLOG).filter(|id| !counts.contains_key(id)).collect();
    eprintln!(
        "fsync = {fsync}: {} of {BACKLOG} lost, {dropped} unsynced bytes dropped by the cut",
        lost.len()
    );
    Cut { lost, dropped }
}

#[test]
fn fsync_batch_a_power_cut_loses_nothing_of_a_backlog() {
    let cut = backlog_then_power_cut("batch", Stop::Sigkill);
    assert!(
        cut.lost.is_empty(),
        "{} lost, first {:?}",
        cut.lost.len(),
        &cut.lost[..cut.lost.len().min(10)]
    );
}

/// The same run with `never` loses the backlog: the harness does drop what was not
/// synced, and the test above would fail were the channel's fsyncs gone.
#[test]
fn fsync_never_a_power_cut_loses_what_was_not_synced() {
    let cut = backlog_then_power_cut("never", Stop::Sigkill);
    assert!(cut.dropped > 0);
    assert!(
        !cut.lost.is_empty(),
        "nothing lost although {} unsynced bytes were dropped",
        cut.dropped
    );
}

#[test]
fn a_clean_stop_syncs_the_channel_even_with_fsync_never() {
    let cut = backlog_then_power_cut("never", Stop::Sigterm);
    assert!(
        cut.lost.is_empty(),
        "{} lost, first {:?}",
        cut.lost.len(),
        &cut.lost[..cut.lost.len().min(10)]
    );
}

#[test]
fn fsync_interval_a_power_cut_loses_at_most_the_last_interval() {
    const INTERVAL_MS: u64 = 200;
    const TICK: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), &["--mode", "refuse"]);
    let config = config(
        dir.path(),
        &format!("fsync = \"interval\"\nfsync_interval_ms = {INTERVAL_MS}"),
        &format!(
            r#"[sinks.central]
type = "http"
channel = "durable"
uri = "{}"
batch_size = 200
batch_timeout_ms = 20
retry_initial_ms = 50
retry_max_ms = 200
in_flight = 1"#,
            rx.uri()
        ),
    );
    let app = dir.path().join("logs/app.log");
    let log = dir.path().join("agent.log");
    let fs = mount(dir.path());
    let mut agent = spawn_logged(&config, &log);
    // 2,500 lines a second for 3 s while the destination refuses them, then the
    // power goes mid-stream. After each tick: how far the source had recorded the log
    // as read (the position file is rewritten after each put returns).
    let positions = dir.path().join("mount/data/taildir/app.positions.json");
    let mut read_at = Vec::new();
    write_ids(&app, 0..TICK, TICK, Duration::ZERO, 20);
    let mut written = TICK;
    wait_until("the source to read", Duration::from_secs(30), || {
        position(&positions).is_some_and(|offset| offset > 0)
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        write_ids(&app, written..written + TICK, TICK, Duration::ZERO, 20);
        written += TICK;
        std::thread::sleep(Duration::from_millis(20));
        if let Some(offset) = position(&positions) {
            read_at.push((Instant::now(), offset));
        }
    }
    let cut_at = Instant::now();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let dropped = fs.cut();

    let fs = mount(dir.path());
    rx.command("mode ok");
    let agent = spawn_logged(&config, &log);
    write_ids(&app, written..written + 1, 1, Duration::ZERO, 20);
    wait_until("the line after the cut", Duration::from_secs(60), || {
        received(&rx).contains_key(&written)
    });
    let (status, _) = terminate(agent.into_child());
    fs.unmount();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let counts = received(&rx);
    let lost: Vec<u64> = (0..written).filter(|id| !counts.contains_key(id)).collect();
    // Only the puts of the last interval may be lost: what the source had recorded as
    // read (put) 200 ms before the cut, and a generous second more for the sync itself
    // and a busy machine's scheduler, is on disk.
    let window = Duration::from_millis(INTERVAL_MS + 1000);
    let text = std::fs::read(&app).unwrap();
    let durable = read_at
        .iter()
        .take_while(|(at, _)| cut_at.duration_since(*at) > window)
        .last()
        .map_or(0, |&(_, offset)| {
            text[..offset as usize]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64
        });
    eprintln!(
        "fsync = interval ({INTERVAL_MS} ms): {} of {written} lost at the cut \
         ({dropped} unsynced bytes dropped); {durable} lines were put more than \
         {window:?} before it",
        lost.len(),
    );
    assert!(durable > 0, "nothing was put before the last {window:?}");
    assert!(
        lost.iter().all(|&id| id >= durable),
        "lines put more than {window:?} before the cut were lost: {:?}",
        &lost[..lost.len().min(10)]
    );
}
