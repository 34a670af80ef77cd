//! The modes of what the agent creates: under the usual umask 022, everything in its
//! data directory (file channel segments, ledger and lock, taildir positions, plugin
//! state, the compile cache) is private to its owner, the forward key `runnel forward
//! keygen --out` makes is 0600, and a key file others can read is used with a warning
//! naming it and its mode.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every path under `dir` (itself included) with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut all = vec![(dir.to_path_buf(), mode(dir), true)];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(modes(&path));
        } else {
            all.push((path.clone(), mode(&path), false));
        }
    }
    all
}

#[test]
fn what_the_agent_creates_is_private_and_loose_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let text: String = (0..1000).map(|i| format!("k{} {i}\n", i % 5)).collect();
    std::fs::write(logs.join("app.log"), text).unwrap();

    // A forward key made by the agent: private. Then loosened, as a careless copy would.
    let forward_key = dir.path().join("forward.key");
    let (ok, out) = cli(&[
        "forward".as_ref(),
        "keygen".as_ref(),
        "--out".as_ref(),
        forward_key.as_os_str(),
    ]);
    assert!(ok, "{out}");
    assert_eq!(mode(&forward_key), 0o600);
    std::fs::set_permissions(&forward_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let channel_key = dir.path().join("channel.key");
    std::fs::write(&channel_key, "11".repeat(32)).unwrap();
    std::fs::set_permissions(&channel_key, std::fs::Permissions::from_mode(0o640)).unwrap();

    let data = dir.path().join("data");
    let out = dir.path().join("out.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 0
data_dir = "{data}"

[plugins.counter]
path = "{plugin}"
[plugins.counter.config]
count = true

[sources.app]
type = "taildir"
paths = {{ app = "{logs}/*.log" }}
plugins = ["counter"]
channels = ["main"]
batch_timeout_ms = 20

[sources.edges]
type = "forward"
listen = "127.0.0.1:{port}"
key_file = "{forward_key}"
channels = ["main"]

[channels.main]
type = "file"
encryption = {{ key_file = "{channel_key}" }}

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
batch_timeout_ms = 20
"#,
            data = data.display(),
            plugin = built_plugin("runnel_test_trap_on_marker.wasm").display(),
            logs = logs.display(),
            port = free_port(),
            forward_key = forward_key.display(),
            channel_key = channel_key.display(),
            out = out.display(),
        ),
    );
    let mut command = runnel();
    command
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: umask is async-signal-safe and touches only the child's file mode mask.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let agent = Running::new(command.spawn().unwrap());
    wait_for_lines(&out, 1000, Duration::from_secs(60));
    let (status, stderr) = terminate(agent.into_child());
    assert!(status.success(), "{stderr}");

    let all = modes(&data);
    let listing: Vec<String> = all
        .iter()
        .map(|(p, m, _)| format!("{m:04o} {}", p.strip_prefix(&data).unwrap().display()))
        .collect();
    let loose: Vec<&String> = all
        .iter()
        .zip(&listing)
        .filter(|((_, m, is_dir), _)| if *is_dir { *m != 0o700 } else { *m != 0o600 })
        .map(|(_, l)| l)
        .collect();
    assert!(
        loose.is_empty(),
        "not private: {loose:?}\nall: {listing:#?}"
    );
    // Each kind the agent keeps is there.
    let has = |part: &str| {
        all.iter()
            .any(|(p, _, _)| p.to_string_lossy().contains(part))
    };
    for part in [
        "channels/main/",
        ".wal",
        "taildir/app.positions.json",
        "state/counter.state",
        "plugin-cache/",
    ] {
        assert!(has(part), "no {part} in {listing:#?}");
    }
    // The sink's output is the user's: the umask decides.
    assert_eq!(mode(&out), 0o644);
    for (key, mode) in [(&forward_key, "0644"), (&channel_key, "0640")] {
        let warned = stderr
            .lines()
            .filter(|l| l.contains(&key.display().to_string()) && l.contains(mode))
            .count();
        assert_eq!(
            warned,
            1,
            "one warning naming {} and {mode}:\n{stderr}",
            key.display()
        );
    }
}
