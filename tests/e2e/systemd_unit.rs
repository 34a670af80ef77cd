//! The systemd unit (config/systemd/runnel.service) and the agent's side of it: the unit
//! passes `systemd-analyze verify` and keeps its `systemd-analyze security` exposure at
//! or below the README's 1.7 (the hardening cannot quietly regress: the score is
//! computed from the unit's settings alone, so it does not vary between runs); the agent, run as systemd runs a
//! `Type=notify` service, says READY=1, pings the watchdog and says STOPPING=1.
//! (No systemd runs on the test machine: the unit is checked offline, and the
//! notifications go to a socket the test binds as systemd would.)

use super::common::*;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The shipped unit with ExecStart naming the binary under test.
fn unit_for_test(dir: &std::path::Path) -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("config/systemd/runnel.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/runnel run --config /etc/runnel/runnel.toml"));
    let path = dir.join("runnel.service");
    std::fs::write(
        &path,
        text.replace("/usr/bin/runnel", env!("CARGO_BIN_EXE_runnel")),
    )
    .unwrap();
    path
}

#[test]
fn the_unit_verifies_and_its_exposure_stays_low() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for runnel.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in\n{text}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(
        exposure <= 1.7,
        "exposure {exposure}, the README says 1.7:\n{text}"
    );
}

#[test]
fn the_agent_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let out = dir.path().join("out.log");
    let config = write_config(
        dir.path(),
        &format!(
            r#"[agent]
data_dir = "{data}"

[sources.gen]
type = "generator"
rate = 10
channels = ["main"]
{tail}"#,
            data = dir.path().join("data").display(),
            tail = main_channel_to_file(&out, "raw"),
        ),
    );
    let agent = runnel()
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said: Vec<String> = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    while said.iter().filter(|s| *s == "WATCHDOG=1").count() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "got {said:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert_eq!(said[0], "READY=1", "{said:?}");
    let (status, stderr) = terminate(agent);
    assert!(status.success(), "{stderr}");
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        stopping |= &buf[..n] == b"STOPPING=1";
    }
    assert!(stopping, "no STOPPING=1 after {said:?}");
}

/// The config the .deb installs as /etc/runnel/runnel.toml (scripts/package.sh) is valid,
/// and the unit reads it from there.
#[test]
fn the_packaged_config_validates_where_the_unit_reads_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (ok, text) = validate_config(&root.join("config/packaged.toml"));
    assert!(ok, "{text}");
    let unit = std::fs::read_to_string(root.join("config/systemd/runnel.service")).unwrap();
    assert!(unit.contains("--config /etc/runnel/runnel.toml"), "{unit}");
    let manifest = std::fs::read_to_string(root.join("host/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"["../config/packaged.toml", "etc/runnel/runnel.toml", "644"]"#),
        "the .deb installs config/packaged.toml as /etc/runnel/runnel.toml"
    );
}
