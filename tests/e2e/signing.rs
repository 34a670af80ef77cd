//! Signed plugins: with `require_signed`, only plugin files whose detached signature
//! verifies against a trusted key load — at start and at every hot reload.

use crate::common::*;
use std::io::Write;
use std::path::{Path, PathBuf};

fn sign(plugin: &Path, key: &Path) {
    let (ok, text) = cli(&[
        "plugin".as_ref(),
        "sign".as_ref(),
        plugin.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(ok, "{text}");
}

fn config(dir: &Path, plugin: &Path, keys: &[PathBuf]) -> PathBuf {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", k.display()))
        .collect();
    write_config(
        dir,
        &format!(
            r#"
[agent]
summary_interval_secs = 0
require_signed = true
trusted_keys = [{keys}]

[plugins.v]
path = "{plugin}"

[plugins.router]
builtin = "level-router"

[sources.in]
type = "stdin"
plugins = ["v", "router"]
channels = ["main"]
batch_timeout_ms = 10
{tail}"#,
            keys = keys.join(", "),
            plugin = plugin.display(),
            tail = main_channel_to_file(&dir.join("out.jsonl"), "json"),
        ),
    )
}

fn validate(config: &Path) -> (bool, String) {
    cli(&["validate".as_ref(), "--config".as_ref(), config.as_os_str()])
}

#[test]
fn only_plugins_signed_with_a_trusted_key_load() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    let other = dir.path().join("other.key");
    keygen(&key);
    keygen(&other);
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(built_plugin("runnel_test_versioned.wasm"), &plugin).unwrap();
    let config = config(dir.path(), &plugin, &[dir.path().join("fleet.key.pub")]);

    let (ok, text) = validate(&config);
    assert!(
        !ok && text.contains("plugins.v") && text.contains("is not signed"),
        "{text}"
    );
    sign(&plugin, &key);
    let (ok, text) = validate(&config);
    assert!(ok, "{text}"); // the built-in router needs no signature
    // Changed after signing.
    let mut bytes = std::fs::read(&plugin).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&plugin, &bytes).unwrap();
    let (ok, text) = validate(&config);
    assert!(!ok && text.contains("does not verify"), "{text}");
    // Signed, but by a key the agent does not trust.
    sign(&plugin, &other);
    let (ok, text) = validate(&config);
    assert!(!ok && text.contains("does not verify"), "{text}");

    // Required without a key: a config error naming the key.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("\"{}\"", dir.path().join("fleet.key.pub").display()),
        "",
    );
    let bare = write_config(dir.path(), &text);
    let (ok, text) = validate(&bare);
    assert!(!ok && text.contains("agent.trusted_keys"), "{text}");
}

#[test]
fn a_reload_needs_a_signature_too() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    keygen(&key);
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(built_plugin("runnel_test_versioned.wasm"), &plugin).unwrap();
    sign(&plugin, &key);
    let config = config(dir.path(), &plugin, &[dir.path().join("fleet.key.pub")]);
    let log = dir.path().join("agent.log");
    let mut agent = spawn_fed(&config, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap();
    wait_for_log(&log, "runnel started");
    // A new version without its signature: refused, the signed one keeps serving.
    let mut v2 = std::fs::read(built_plugin("runnel_test_versioned.wasm")).unwrap();
    let at = v2
        .windows(23)
        .position(|w| w == b"RUNNEL-FIXTURE-VERSION:")
        .unwrap()
        + 23;
    v2[at..at + 5].copy_from_slice(b"00002");
    let staged = dir.path().join("staging.wasm");
    std::fs::write(&staged, &v2).unwrap();
    std::fs::rename(&staged, &plugin).unwrap();
    wait_for_log(&log, "does not verify");
    // Its signature arrives: the watcher sees it and the version loads.
    sign(&plugin, &key);
    wait_for_log(&log, "plugin reloaded");
    let mut stdin = agent.stdin.take().unwrap();
    stdin.write_all(b"id=0\n").unwrap();
    drop(stdin);
    assert!(agent.wait().unwrap().success(), "{}", log_text());
    let events = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(events[0]["fields"]["version"], 2, "{}", log_text());
}
