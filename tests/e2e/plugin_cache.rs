//! The compile cache cannot be used to run code the agent would not load: an entry is
//! bound to its component, its engine and the agent that wrote it, and a cache
//! directory others can write is not used.

use crate::common::*;
use crate::reload::fixture;
use std::path::{Path, PathBuf};

/// `plugin` (signed, with `require_signed` when `key` is given) parsing stdin, with its
/// compile cache in `data/plugin-cache`.
fn config(dir: &Path, name: &str, plugin: &Path, key: Option<&Path>) -> PathBuf {
    let trust = key.map_or(String::new(), |key| {
        format!(
            "require_signed = true\ntrusted_keys = [\"{}.pub\"]",
            key.display()
        )
    });
    let out = dir.join(format!("{name}.jsonl"));
    let conf = dir.join(name);
    std::fs::create_dir_all(&conf).unwrap();
    write_config(
        &conf,
        &format!(
            r#"[agent]
summary_interval_secs = 0
data_dir = "{data}"
{trust}

[plugins.v]
path = "{plugin}"

[sources.in]
type = "stdin"
plugins = ["v"]
channels = ["main"]
{tail}"#,
            data = dir.join(format!("data-{name}")).display(),
            plugin = plugin.display(),
            tail = main_channel_to_file(&out, "json"),
        ),
    )
}

/// Runs `config` on one line; the version that parsed it, and the agent's log.
fn version_seen(dir: &Path, name: &str, config: &Path) -> (Option<u64>, String) {
    let input = dir.join("in.log");
    std::fs::write(&input, "hello\n").unwrap();
    let out = dir.join(format!("{name}.jsonl"));
    let _ = std::fs::remove_file(&out);
    let output = run_with_stdin(config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let events = json_lines(&out);
    assert_eq!(events.len(), 1, "{stderr}");
    (events[0]["fields"]["version"].as_u64(), stderr)
}

/// The one compiled plugin in a cache directory.
fn cache_entry(cache: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn another_plugins_compiled_code_over_a_signed_plugins_cache_entry_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let key = dir.join("fleet.key");
    keygen(&key);
    // The signed plugin: version 1.
    let signed = dir.join("signed.wasm");
    std::fs::write(&signed, fixture(1)).unwrap();
    let (ok, text) = cli(&[
        "plugin".as_ref(),
        "sign".as_ref(),
        signed.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(ok, "{text}");
    let a = config(dir, "a", &signed, Some(&key));
    assert_eq!(version_seen(dir, "a", &a).0, Some(1));
    let entry_a = cache_entry(&dir.join("data-a/plugin-cache"));
    // Another plugin (version 2, unsigned), compiled by an agent that does not require
    // signatures.
    let other = dir.join("other.wasm");
    std::fs::write(&other, fixture(2)).unwrap();
    let b = config(dir, "b", &other, None);
    assert_eq!(version_seen(dir, "b", &b).0, Some(2));
    let entry_b = cache_entry(&dir.join("data-b/plugin-cache"));
    // Its compiled code copied over the signed plugin's cache entry.
    std::fs::copy(&entry_b, &entry_a).unwrap();
    let (version, stderr) = version_seen(dir, "a", &a);
    assert_eq!(version, Some(1), "the signed plugin ran\n{stderr}");
    assert!(stderr.contains("is refused"), "{stderr}");
    // The entry holds the signed plugin's code again.
    let (version, stderr) = version_seen(dir, "a", &a);
    assert_eq!(version, Some(1));
    assert!(!stderr.contains("refused"), "{stderr}");
}

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let plugin = dir.join("v.wasm");
    std::fs::write(&plugin, fixture(3)).unwrap();
    let conf = config(dir, "c", &plugin, None);
    assert_eq!(version_seen(dir, "c", &conf).0, Some(3));
    let cache = dir.join("data-c/plugin-cache");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "created for the agent's user only");
    let entry = cache_entry(&cache);
    // Someone else's code in a directory everyone can write.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(&entry, b"anyone's bytes").unwrap();
    let (version, stderr) = version_seen(dir, "c", &conf);
    assert_eq!(version, Some(3), "{stderr}");
    assert!(
        stderr.contains("plugin compile cache is not used") && stderr.contains("0777"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        b"anyone's bytes",
        "not touched"
    );
}
