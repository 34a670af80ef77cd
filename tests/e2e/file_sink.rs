//! The `file` sink writing where the events say (a path template), rolling and
//! compressing its files, across a restart of the agent: every line lands once, in
//! order, in the file its status names.

use crate::common::*;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// The agent over `log` (a file source that ends): combined → file sink into
/// `out/{fields.status}/access.log`, rolled every 300 events and gzipped.
fn run_agent(dir: &Path, tag: &str, log: &Path) {
    let config = format!(
        r#"[agent]
summary_interval_secs = 0
data_dir = "{data}"

[plugins.access]
builtin = "combined"
keep_body = true

[sources.{tag}]
type = "file"
path = "{log}"
read_from = "start"
exit_on_eof = true
plugins = ["access"]
channels = ["main"]

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "{out}/{{fields.status}}/access.log"
format = "raw"
batch_size = 200
batch_timeout_ms = 20
roll_events = 300
compression = "gzip"
"#,
        data = dir.join("data").display(),
        log = log.display(),
        out = dir.join("out").display(),
    );
    let path = dir.join(format!("{tag}.toml"));
    std::fs::write(&path, config).unwrap();
    run_to_end(&path);
}

/// The lines in one status directory: the rolled files (`access.log.~<ms>.gz`, oldest
/// first), then the file being written. Also checks each rolled file's size.
fn lines_in(status_dir: &Path) -> Vec<String> {
    let mut rolled: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(status_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let stamp = name.strip_prefix("access.log.~")?.strip_suffix(".gz")?;
            Some((stamp.parse().unwrap(), p))
        })
        .collect();
    rolled.sort();
    let mut lines = Vec::new();
    for (_, path) in rolled {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let n = text.lines().count();
        assert!((1..=300).contains(&n), "{}: {n} lines", path.display());
        lines.extend(text.lines().map(str::to_owned));
    }
    if let Ok(text) = std::fs::read_to_string(status_dir.join("access.log")) {
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

#[test]
fn a_templated_rolling_file_sink_keeps_every_line_once_and_in_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::read_to_string(data("apache_access/apache_logs")).unwrap();
    let all: Vec<&str> = log.lines().collect();
    let (first, second) = all.split_at(6000);
    for (tag, part) in [("first", first), ("second", second)] {
        let path = dir.path().join(format!("{tag}.log"));
        std::fs::write(
            &path,
            part.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        run_agent(dir.path(), tag, &path);
    }
    let out = dir.path().join("out");
    let mut statuses: Vec<i64> = all.iter().map(|l| expected_combined(l).status).collect();
    statuses.sort();
    statuses.dedup();
    let mut total = 0;
    for status in &statuses {
        let want: Vec<&str> = all
            .iter()
            .copied()
            .filter(|l| expected_combined(l).status == *status)
            .collect();
        let got = lines_in(&out.join(status.to_string()));
        let first_difference = got.iter().zip(&want).position(|(g, w)| g != w);
        assert_eq!(
            (got.len(), first_difference),
            (want.len(), None),
            "status {status}: lines and the first that differs"
        );
        total += got.len();
    }
    assert_eq!(total, all.len());
    // 200 (the largest group) rolled more than once, across both runs.
    let rolled_200 = std::fs::read_dir(out.join("200"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".gz")
        })
        .count();
    assert!(rolled_200 > 20, "{rolled_200} rolled files for 200");
    // Nothing else: one directory per status, nothing half-compressed.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), statuses.len());
}

#[test]
fn a_bad_path_template_or_roll_setting_is_refused_with_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[sources.in]
type = "stdin"
channels = ["main"]

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "/tmp/runnel/{host}/%Q.log"
compression = "gzip"
"#,
    );
    assert_refused(
        &config,
        &[
            ":11:",
            "`sinks.out.path`",
            "unknown placeholder `{host}`",
            ":12:",
            "`sinks.out.compression`",
            "compresses rolled files",
        ],
    );
}

/// Two file sinks fed by one UDP syslog source (through file channels): `a` writes
/// `{name}.log` (the issue's repro), `b` writes `{name}/app.log` with a dead-letter
/// channel. `b`'s directory holds a regular file `plain`.
fn refusing_config(dir: &Path, udp: u16) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.udp]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:{udp}"
channels = ["a", "b"]
batch_timeout_ms = 20

[channels.a]
type = "file"

[channels.b]
type = "file"

[channels.refused]
type = "file"

[sinks.a]
type = "file"
channel = "a"
path = "{out_a}/{{name}}.log"
format = "raw"
batch_timeout_ms = 20

[sinks.b]
type = "file"
channel = "b"
path = "{out_b}/{{name}}/app.log"
format = "raw"
batch_timeout_ms = 20
dead_letter = "refused"

[sinks.keep]
type = "file"
channel = "refused"
path = "{dead}"
format = "raw"
batch_timeout_ms = 20
"#,
            data = dir.join("data").display(),
            out_a = dir.join("a").display(),
            out_b = dir.join("b").display(),
            dead = dir.join("dead.log").display(),
        ),
    )
}

/// One RFC 5424 datagram with APP-NAME `app` and MSG `msg`.
fn syslog_udp(port: u16, app: &str, msg: &str) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = format!("<14>1 - host {app} - - - {msg}");
    socket
        .send_to(datagram.as_bytes(), ("127.0.0.1", port))
        .unwrap();
}

/// Sends probes until the agent wrote one (its UDP socket is bound, its sinks run).
fn wait_for_probe(dir: &Path, port: u16, round: u32) {
    let probe = dir.join("a/probe.log");
    let mut n = 0;
    wait_until("a probe to arrive", Duration::from_secs(30), || {
        n += 1;
        syslog_udp(port, "probe", &format!("probe {round}.{n}"));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::read_to_string(&probe).is_ok_and(|t| t.contains(&format!("probe {round}.")))
    });
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_event_whose_path_no_file_can_have_is_bounded_or_refused_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    // A regular file where `b` needs the directory of the events named `plain`.
    std::fs::write(dir.path().join("b/plain"), "not a directory\n").unwrap();
    let config = refusing_config(dir.path(), udp);
    let log = dir.path().join("agent.log");
    let long = "x".repeat(300);
    let (app_a, app_b) = (
        dir.path().join("a/app.log"),
        dir.path().join("b/app/app.log"),
    );
    let dead = dir.path().join("dead.log");
    let mut delivered = 0;
    for round in 0..2u32 {
        let agent = spawn_logged(&config, &log);
        wait_for_probe(dir.path(), udp, round);
        // The poison first, then ordinary events behind it.
        syslog_udp(udp, &long, &format!("long {round}"));
        syslog_udp(udp, "plain", &format!("under a file {round}"));
        for id in 0..50 {
            syslog_udp(udp, "app", &format!("id={round}.{id}"));
        }
        delivered += 50;
        wait_until(
            "the events behind the poison",
            Duration::from_secs(30),
            || {
                lines(&app_a).len() >= delivered
                    && lines(&app_b).len() >= delivered
                    && lines(&dead).len() > round as usize
            },
        );
        let (status, _) = terminate(agent.into_child());
        assert!(status.success());
        let text = std::fs::read_to_string(&log).unwrap();
        // `b` refused the `plain` events (dead-lettered, counted), once each.
        assert_eq!(
            lines(&dead),
            (0..=round)
                .map(|r| format!("under a file {r}"))
                .collect::<Vec<_>>(),
            "{text}"
        );
        assert_eq!(
            summary_counter(&text, "sink.b", "events_dead_lettered"),
            Some(1),
            "this run's refusal is counted:\n{text}"
        );
    }
    // Every ordinary event once (UDP on loopback, read back in order per sink).
    let want: Vec<String> = (0..2)
        .flat_map(|r| (0..50).map(move |id| format!("id={r}.{id}")))
        .collect();
    assert_eq!(lines(&app_a), want);
    assert_eq!(lines(&app_b), want);
    // The 300-byte name landed under a bounded name, in both sinks, both runs in one
    // file (the bounded name is the same every time).
    for (sink, suffix) in [("a", ".log"), ("b", "")] {
        let bounded: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join(sink))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("xxxx"))
            .collect();
        assert_eq!(bounded.len(), 1, "{bounded:?}");
        let name = bounded[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.len() <= 255 && name.ends_with(suffix), "{name}");
        let file = if sink == "a" {
            bounded[0].clone()
        } else {
            bounded[0].join("app.log")
        };
        assert_eq!(lines(&file), ["long 0", "long 1"]);
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b/plain")).unwrap(),
        "not a directory\n"
    );
}

/// Retention of one stream never deletes another stream's live file: with
/// `{name}`, `billing.1` is a stream of its own, not a roll of `billing`.
#[test]
fn rolling_one_stream_never_deletes_another_streams_file() {
    let dir = tempfile::tempdir().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
summary_interval_secs = 0
data_dir = "{data}"

[sources.udp]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:{udp}"
channels = ["main"]
batch_timeout_ms = 20

[channels.main]
type = "memory"

[sinks.a]
type = "file"
channel = "main"
path = "{out}/{{name}}"
format = "raw"
batch_size = 1
roll_events = 1
max_files = 1
"#,
            data = dir.path().join("data").display(),
            out = dir.path().join("a").display(),
        ),
    );
    let agent = spawn_logged(&config, &dir.path().join("agent.log"));
    let probe = dir.path().join("a/probe");
    let mut n = 0;
    wait_until("a probe to arrive", Duration::from_secs(30), || {
        n += 1;
        syslog_udp(udp, "probe", "probe");
        std::thread::sleep(Duration::from_millis(20));
        probe.exists()
    });
    syslog_udp(udp, "billing.1", "live line of billing.1");
    let live = dir.path().join("a/billing.1");
    wait_until("billing.1", Duration::from_secs(30), || live.exists());
    for id in 0..5 {
        syslog_udp(udp, "billing", &format!("billing {id}"));
    }
    let billing = dir.path().join("a/billing");
    wait_until("billing's last event", Duration::from_secs(30), || {
        lines(&billing) == ["billing 4"]
    });
    let (status, _) = terminate(agent.into_child());
    assert!(status.success());
    assert_eq!(lines(&live), ["live line of billing.1"]);
}
