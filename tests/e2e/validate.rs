//! (c) `runnel validate` refuses bad configs with messages that name the problem, the
//! key and the line.

use crate::common::*;

const GOOD: &str = r#"[agent]
summary_interval_secs = 0

[plugins.access]
builtin = "combined"

[plugins.by-level]
builtin = "level-router"

[sources.web]
type = "stdin"
plugins = ["access", "by-level"]
channels = ["main"]
routes = { error = ["main"] }

[channels.main]
type = "memory"
capacity = 100

[sinks.out]
type = "console"
channel = "main"
"#;

/// Runs `runnel validate` on `text`; returns (success, stdout + stderr).
fn validate(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), text);
    let (ok, text) = validate_config(&config);
    (ok, text.replace(&*config.to_string_lossy(), "CONFIG"))
}

fn assert_rejected(text: &str, expected: &[&str]) {
    let (ok, msg) = validate(text);
    assert!(!ok, "config should be rejected:\n{text}");
    for e in expected {
        assert!(msg.contains(e), "expected `{e}` in:\n{msg}");
    }
}

#[test]
fn a_good_config_validates_with_its_plugins_compiled_and_initialised() {
    let (ok, msg) = validate(GOOD);
    assert!(ok, "{msg}");
    assert!(msg.contains("CONFIG: ok"), "{msg}");
}

#[test]
fn an_unknown_key_is_rejected_with_its_line() {
    assert_rejected(
        &GOOD.replace("capacity = 100", "capacity = 100\ncapasity = 5"),
        &[
            "CONFIG:19:",
            "unknown field `capasity`",
            "expected one of `capacity`, `capacity_bytes`, `full_policy`",
        ],
    );
}

#[test]
fn an_undefined_channel_is_rejected_naming_the_key() {
    assert_rejected(
        &GOOD.replace("channels = [\"main\"]", "channels = [\"mian\"]"),
        &[
            "CONFIG:13:",
            "`sources.web.channels[0]`",
            "channel `mian` is not defined (defined: main)",
        ],
    );
}

#[test]
fn a_value_of_the_wrong_type_is_rejected() {
    assert_rejected(
        &GOOD.replace("capacity = 100", "capacity = \"lots\""),
        &[
            "CONFIG:18:",
            "invalid type: string \"lots\"",
            "expected usize",
        ],
    );
}

#[test]
fn a_toml_syntax_error_is_rejected_with_its_line() {
    assert_rejected(
        &GOOD.replace("[channels.main]", "[channels.main"),
        &["CONFIG:16:", "unclosed table"],
    );
}

#[test]
fn an_unknown_builtin_plugin_is_rejected() {
    assert_rejected(
        &GOOD.replace("builtin = \"combined\"", "builtin = \"combinde\""),
        &[
            "CONFIG:5:",
            "`plugins.access.builtin`",
            "no builtin plugin `combinde`",
            "combined",
        ],
    );
}

#[test]
fn a_plugin_whose_init_fails_is_rejected_with_its_message() {
    let text = GOOD.replace(
        "builtin = \"combined\"",
        "builtin = \"regex\"\n[plugins.access.config]\npattern = \"(?P<open\"",
    );
    assert_rejected(
        &text,
        &["CONFIG:4:", "plugin `access`: init failed", "pattern"],
    );
}

#[test]
fn a_missing_or_invalid_wasm_file_is_rejected() {
    assert_rejected(
        &GOOD.replace("builtin = \"combined\"", "path = \"/nonexistent/p.wasm\""),
        &["plugin `access`: cannot read /nonexistent/p.wasm"],
    );
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm at all").unwrap();
    assert_rejected(
        &GOOD.replace(
            "builtin = \"combined\"",
            &format!("path = \"{}\"", bogus.display()),
        ),
        &["plugin `access`: not a valid WebAssembly component"],
    );
}

#[test]
fn a_route_the_router_does_not_declare_is_rejected() {
    assert_rejected(
        &GOOD.replace(
            "routes = { error = [\"main\"] }",
            "routes = { errors = [\"main\"] }",
        ),
        &[
            "CONFIG:14:",
            "the router has no route `errors`",
            "trace, debug, info, warn, error, fatal, unknown",
        ],
    );
}

#[test]
fn a_router_that_is_not_last_is_rejected() {
    assert_rejected(
        &GOOD.replace(
            "plugins = [\"access\", \"by-level\"]",
            "plugins = [\"by-level\", \"access\"]",
        ),
        &["router `by-level` must be the last plugin of the chain"],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("channels = [\"main\"]", "channels = [\"nope\"]")
        .replace("builtin = \"level-router\"", "builtin = \"nope\"");
    let (ok, msg) = validate(&text);
    assert!(!ok);
    assert!(msg.contains("2 problems"), "{msg}");
}

#[test]
fn every_shipped_config_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut configs = Vec::new();
    for dir in [
        "config",
        "config/bench",
        "examples/json-stdin",
        "examples/exec-journal",
        "examples/ship-to-http",
        "examples/edge-to-collector",
        "examples/kafka",
        "examples/gateway",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                configs.push(path);
            }
        }
    }
    assert!(configs.len() >= 5, "{configs:?}");
    // The placeholders the bench and example scripts fill in, filled in alike.
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("forward.key");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let fill = |text: &str| {
        text.replace("RUNNEL_BENCH_KEY", &key.display().to_string())
            .replace("WORK/forward.key", &key.display().to_string())
            .replace("WORK", &work.path().display().to_string())
            .replace("RUNNEL_BENCH_ADDRESS", "127.0.0.1:7440")
            .replace("RUNNEL_BENCH_LISTEN", "127.0.0.1:7440")
            .replace("RUNNEL_BENCH_BROKER", "127.0.0.1:9092")
            .replace("BROKER", "127.0.0.1:9092")
            .replace("RUNNEL_BENCH_SENDS", "2")
            .replace("RUNNEL_BENCH_NAMENODE", "127.0.0.1:9870")
            .replace("NAMENODE", "127.0.0.1:9870")
            .replace("RUNNEL_BENCH_COMPRESSION", "gzip")
            .replace("MQTT_PORT", "1883")
            .replace("SYSLOG_PORT", "5514")
    };
    for config in configs {
        let filled = work.path().join(config.file_name().unwrap());
        std::fs::write(&filled, fill(&std::fs::read_to_string(&config).unwrap())).unwrap();
        // Relative paths in configs are relative to where the agent runs: the
        // repository root, as scripts/run.sh runs it.
        let out = runnel()
            .current_dir(&root)
            .args(["validate", "--config"])
            .arg(&filled)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn compiled_plugins_are_cached_and_a_damaged_cache_file_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Plugin files, not builtins: a build may embed the builtins precompiled, and
    // those are not kept in the cache.
    let text = GOOD
        .replace(
            "[agent]\n",
            &format!("[agent]\ndata_dir = \"{}\"\n", data.display()),
        )
        .replace(
            "builtin = \"combined\"",
            &format!("path = {:?}", built_plugin("runnel_plugin_combined.wasm")),
        )
        .replace(
            "builtin = \"level-router\"",
            &format!(
                "path = {:?}",
                built_plugin("runnel_plugin_level_router.wasm")
            ),
        );
    let config = write_config(dir.path(), &text);
    let run = || {
        let out = runnel()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let cached = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(data.join("plugin-cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    };
    run();
    let files = cached();
    assert_eq!(files.len(), 2, "{files:?}"); // combined and level-router
    let written: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();
    // Damaged: refused (not handed to wasmtime), compiled and written again.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xFF;
    std::fs::write(&files[0], &bytes).unwrap();
    run();
    assert_eq!(cached(), files);
    assert_ne!(std::fs::read(&files[0]).unwrap(), bytes);
    // The intact one was read, not rewritten.
    assert_eq!(
        std::fs::metadata(&files[1]).unwrap().modified().unwrap(),
        written[1]
    );

    // Turned off: nothing is kept.
    let off = dir.path().join("off");
    let text = GOOD.replace(
        "[agent]\n",
        &format!(
            "[agent]\ndata_dir = \"{}\"\nplugin_cache = false\n",
            off.display()
        ),
    );
    let config = write_config(dir.path(), &text);
    let out = runnel()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!off.join("plugin-cache").exists());
}

#[test]
fn builtins_compiled_ahead_of_time_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("precompiled");
    let compile = || {
        runnel()
            .args(["plugin", "compile", "--builtins", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = compile();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    for name in ["combined", "regex", "field-filter"] {
        assert!(stdout.contains(&format!("{name}: ")), "{stdout}");
    }
    let files = || -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
        let mut files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                (path.clone(), std::fs::read(&path).unwrap(), modified)
            })
            .collect();
        files.sort();
        files
    };
    let written = files();
    assert_eq!(written.len(), 7, "{written:?}");
    for (path, bytes, _) in &written {
        assert!(path.extension().is_some_and(|e| e == "cwasm"), "{path:?}");
        assert!(bytes.starts_with(b"RNLPRE02"), "{path:?}");
    }
    // The same code again: nothing rewritten, so a build that embeds it has nothing new.
    assert!(compile().status.success());
    assert_eq!(files(), written);

    // An output directory that cannot be made is an error naming it.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let out = runnel()
        .args(["plugin", "compile", "--builtins", "--out"])
        .arg(blocked.join("sub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("file/sub"), "{stderr}");
}

#[test]
fn an_admin_endpoint_other_hosts_can_reach_needs_a_token_file() {
    let open = GOOD.replacen("[agent]", "[agent]\nadmin_listen = \"0.0.0.0:8686\"", 1);
    assert_ne!(open, GOOD);
    assert_rejected(&open, &["agent.admin_listen", "admin_token_file"]);
    let missing = open.replacen(
        "admin_listen",
        "admin_token_file = \"/nonexistent/admin.token\"\nadmin_listen",
        1,
    );
    assert_rejected(
        &missing,
        &["agent.admin_token_file", "/nonexistent/admin.token"],
    );
}
