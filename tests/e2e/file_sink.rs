//! The `file` sink writing where the events say (a path template), rolling and
//! compressing its files, across a restart of the agent: every line lands once, in
//! order, in the file its status names.

use crate::common::*;
use std::io::Read;
use std::path::Path;

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

/// The lines in one status directory: the rolled files (`access.log.<ms>.gz`, oldest
/// first), then the file being written. Also checks each rolled file's size.
fn lines_in(status_dir: &Path) -> Vec<String> {
    let mut rolled: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(status_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let stamp = name.strip_prefix("access.log.")?.strip_suffix(".gz")?;
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
