//! Plugins in other languages, as a new author makes them: `runnel plugin new` in an
//! empty directory, its `build.sh` (which installs the toolchain it needs), then the
//! plugin in the agent and in `runnel plugin test`. The Python, JavaScript, Rust and C
//! templates are the same interceptor (keep `status >= 400`, add `class`): on the same
//! input they must give the same output, and the output an independent reading of the
//! log expects.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `runnel plugin new NAME --lang LANG --role ROLE` in `dir`, then its build.sh; returns
/// the built component.
fn new_plugin(dir: &Path, name: &str, lang: &str, role: &str) -> PathBuf {
    build(&scaffold(dir, name, lang, role), name, lang)
}

/// An interceptor project whose plugin file (`app.py`, `app.js`, `app.c`) is `code`, built.
fn custom_interceptor(dir: &Path, name: &str, lang: &str, code: &str) -> PathBuf {
    let project = scaffold(dir, name, lang, "interceptor");
    let app = match lang {
        "js" => "app.js",
        "c" => "app.c",
        _ => "app.py",
    };
    std::fs::write(project.join(app), code).unwrap();
    build(&project, name, lang)
}

/// `runnel plugin new` into `dir/NAME`; returns the project directory.
fn scaffold(dir: &Path, name: &str, lang: &str, role: &str) -> PathBuf {
    let project = dir.join(name);
    let out = runnel()
        .args([
            "plugin", "new", name, "--lang", lang, "--role", role, "--dir",
        ])
        .arg(&project)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    project
}

/// Runs a project's build.sh; returns the component it built.
fn build(project: &Path, name: &str, lang: &str) -> PathBuf {
    let mut build = Command::new(project.join("build.sh"));
    // The Rust project's own target dir, kept between test runs (not the workspace's:
    // cargo holds that one while the tests run).
    let target = Path::new(env!("RUNNEL_PLUGIN_DIR")).join("../../plugin-new");
    build.env("CARGO_TARGET_DIR", target);
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "{lang} build.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = project.join(format!("{name}.wasm"));
    assert!(wasm.exists(), "{} not built", wasm.display());
    wasm
}

/// What the status-class interceptor must make of the vendored access log: for each
/// line with status ≥ 400, its host, status and class.
fn expected_status_classes() -> Vec<(String, i64, &'static str)> {
    std::fs::read_to_string(data("apache_access/apache_logs"))
        .unwrap()
        .lines()
        .map(expected_combined)
        .filter(|e| e.status >= 400)
        .map(|e| {
            let class = if e.status < 500 { "client" } else { "server" };
            (e.host, e.status, class)
        })
        .collect()
}

/// The agent on the access log: file → combined → `plugin` → file (JSON lines).
fn run_in_agent(dir: &Path, tag: &str, plugin: &Path, memory_mb: usize) -> String {
    let out = dir.join(format!("{tag}.jsonl"));
    let config = format!(
        r#"[agent]
summary_interval_secs = 0
data_dir = "{data}"

[plugins.access]
builtin = "combined"

[plugins.classify]
path = "{plugin}"
memory_mb = {memory_mb}

[sources.log]
type = "file"
path = "{log}"
read_from = "start"
exit_on_eof = true
plugins = ["access", "classify"]
channels = ["main"]
{tail}"#,
        data = dir.join(format!("{tag}-data")).display(),
        plugin = plugin.display(),
        log = data("apache_access/apache_logs").display(),
        tail = main_channel_to_file(&out, "json"),
    );
    let config_path = dir.join(format!("{tag}.toml"));
    std::fs::write(&config_path, config).unwrap();
    run_to_end(&config_path);
    std::fs::read_to_string(&out).unwrap()
}

#[test]
fn python_js_rust_and_c_plugins_from_plugin_new_give_the_same_events_in_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected_status_classes();
    assert!(expected.len() > 100);
    let mut outputs = Vec::new();
    for lang in ["python", "js", "rust", "c"] {
        let wasm = new_plugin(
            dir.path(),
            &format!("status-class-{lang}"),
            lang,
            "interceptor",
        );
        let memory_mb = if lang == "js" { 128 } else { 64 };
        let output = run_in_agent(dir.path(), lang, &wasm, memory_mb);
        let got: Vec<(String, i64, String)> = output
            .lines()
            .map(|l| {
                let e: serde_json::Value = serde_json::from_str(l).unwrap();
                let f = &e["fields"];
                (
                    f["host"].as_str().unwrap().to_owned(),
                    f["status"].as_i64().unwrap(),
                    f["class"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: Vec<(String, i64, String)> = expected
            .iter()
            .map(|(h, s, c)| (h.clone(), *s, c.to_string()))
            .collect();
        assert_eq!(got, want, "{lang}");

        // And as generated, in `plugin test` behind the parser.
        let test = runnel()
            .args(["plugin", "test"])
            .arg(&wasm)
            .args(["--after", "combined"])
            .stdin(std::fs::File::open(data("apache_access/apache_logs")).unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&test.stderr);
        assert!(test.status.success(), "{lang}: {stderr}");
        assert!(
            stderr.contains(&format!("10000 lines in, {} events out", expected.len())),
            "{lang}: {stderr}"
        );
        outputs.push(output);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "Python and JavaScript outputs differ"
    );
    assert_eq!(outputs[0], outputs[2], "Python and Rust outputs differ");
    assert_eq!(outputs[0], outputs[3], "Python and C outputs differ");
}

#[test]
fn a_plugin_exception_is_logged_with_its_stack_and_only_its_events_fail() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::read_to_string(data("apache_access/apache_logs")).unwrap();
    let lines: String = log.lines().take(2000).map(|l| format!("{l}\n")).collect();
    let not_found = lines
        .lines()
        .filter(|l| expected_combined(l).status == 404)
        .count();
    assert!(not_found > 0);
    let python = r#"import runnel_plugin as rp


class Plugin:
    reads = ["status"]

    def __init__(self, config):
        pass

    def intercept(self, event):
        if event.fields.get("status") == 404:
            raise ValueError("no 404s here")
        return rp.KEEP
"#;
    let js = r#"import * as rp from './runnel_plugin.js';

class Plugin {
  reads = ['status'];
  constructor(config) {}
  intercept(event) {
    if (event.fields.status === 404) throw new RangeError('no 404s here');
    return rp.KEEP;
  }
}

export const interceptor = rp.interceptor(Plugin);
"#;
    // C has no exceptions: the SDK's rn_fail logs its message and traps.
    let c = r#"#include "interceptor_plugin.h"
#define RUNNEL_WORLD interceptor_plugin
#include "runnel.h"

struct exports_runnel_plugin_interceptor_instance_t { int unused; };

bool exports_runnel_plugin_interceptor_static_instance_create(
    runnel_plugin_types_tree_t *config, exports_runnel_plugin_interceptor_own_instance_t *ret,
    interceptor_plugin_string_t *err) {
    runnel_plugin_types_tree_free(config);
    *ret = exports_runnel_plugin_interceptor_instance_new(rn_calloc(1, sizeof(exports_runnel_plugin_interceptor_instance_t)));
    return true;
}

void exports_runnel_plugin_interceptor_instance_destructor(exports_runnel_plugin_interceptor_instance_t *self) { free(self); }

bool exports_runnel_plugin_interceptor_method_instance_reads(
    exports_runnel_plugin_interceptor_instance_t *self, interceptor_plugin_list_string_t *ret) {
    static const char *const reads[] = {"status"};
    rn_strings(ret, reads, 1);
    return true;
}

void exports_runnel_plugin_interceptor_method_instance_intercept(
    exports_runnel_plugin_interceptor_instance_t *self, runnel_plugin_types_batch_t *input,
    exports_runnel_plugin_interceptor_intercept_output_t *ret) {
    rn_nodes v = rn_nodes_of(input);
    for (size_t i = 0; i < input->events.len; i++) {
        size_t at;
        int64_t status;
        if (rn_event_get(&v, &input->events.ptr[i], "status", &at) && rn_as_int(&v, at, &status) && status == 404)
            rn_fail("no %lld here (event %zu of %zu)", (long long)status, i, input->events.len);
    }
    RN_ALLOC_LIST(ret->actions, input->events.len); /* all zero: keep */
    rn_output out = RN_OUTPUT_INIT;
    rn_output_finish(&out, &ret->data);
    runnel_plugin_types_batch_free(input);
}
"#;
    for (lang, code, expected) in [
        ("c", c, &["no 404 here (event "][..]),
        (
            "python",
            python,
            &[
                "Traceback (most recent call last)",
                "app.py\", line 12, in intercept",
                "ValueError: no 404s here",
            ][..],
        ),
        (
            "js",
            js,
            &["RangeError: no 404s here", "intercept@app.js:7"][..],
        ),
    ] {
        let wasm = custom_interceptor(dir.path(), &format!("fussy-{lang}"), lang, code);
        let (events, stderr) = plugin_test(
            &wasm,
            &["--after", "combined", "--memory-mb", "128"],
            lines.as_bytes(),
        );
        // The error with its stack, in the agent's log under the plugin's name.
        for text in expected {
            assert!(stderr.contains(text), "{lang}: no {text:?} in\n{stderr}");
        }
        // Exactly the 404s get the plugin's on_error treatment (`plugin test`: the tag).
        assert_eq!(events.len(), 2000);
        let failed: Vec<_> = events
            .iter()
            .filter(|e| e["tags"].get("plugin_error").is_some())
            .collect();
        assert_eq!(failed.len(), not_found, "{lang}");
        assert!(failed.iter().all(|e| e["fields"]["status"] == 404));
    }
}

/// `runnel plugin test PLUGIN ARGS` on `input`; returns (events out, stderr).
fn plugin_test(wasm: &Path, args: &[&str], input: &[u8]) -> (Vec<serde_json::Value>, String) {
    let args: Vec<&std::ffi::OsStr> = [wasm.as_os_str()]
        .into_iter()
        .chain(args.iter().map(std::ffi::OsStr::new))
        .collect();
    crate::common::plugin_test(&args, input)
}

#[test]
fn every_role_template_builds_and_runs_as_generated_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let access = std::fs::read(data("apache_access/apache_logs")).unwrap();
    let events_json = b"{\"name\":\"app\",\"level\":\"warn\",\"fields\":{\"user\":\"ann-marie\",\"n\":1}}\n{\"name\":\"app\",\"level\":\"info\"}\n";
    for (role, input, args, check) in [
        (
            "parser",
            &b"user=ann level=warn n=3\nnothing here\n"[..],
            &[][..],
            (|events: &[serde_json::Value]| {
                assert_eq!(events[0]["fields"]["user"], "ann");
                assert_eq!(events[0]["fields"]["n"], 3);
                assert_eq!(events[0]["level"], "warn");
                assert!(events[1]["tags"].get("parse_error").is_some());
            }) as fn(&[serde_json::Value]),
        ),
        (
            "cleaner",
            &events_json[..],
            &["--events-json"][..],
            |events| {
                assert_eq!(events[0]["fields"]["user"], "*********");
                assert_eq!(events[0]["fields"]["n"], 1);
                assert_eq!(events.len(), 2);
            },
        ),
        (
            "router",
            &access[..],
            &["--after", "combined"][..],
            |events| {
                assert_eq!(events.len(), 10_000);
                for e in events {
                    let alert = e["fields"]["status"].as_i64().unwrap() >= 500;
                    assert_eq!(
                        e["tags"]["routes"],
                        if alert { "alerts" } else { "(default)" }
                    );
                }
            },
        ),
        (
            "processor",
            &events_json[..],
            &["--events-json"][..],
            |events| {
                assert_eq!(events.len(), 3);
                assert_eq!(events[2]["name"], "level-counts");
                assert_eq!(events[2]["fields"]["warn"], 1);
                assert_eq!(events[2]["fields"]["info"], 1);
            },
        ),
    ] {
        for lang in ["python", "js", "rust", "c"] {
            let wasm = new_plugin(dir.path(), &format!("{lang}-{role}"), lang, role);
            let mut args = args.to_vec();
            args.extend(["--memory-mb", "128"]);
            let (events, _) = plugin_test(&wasm, &args, input);
            check(&events);
        }
    }
}

#[test]
fn python_js_and_c_plugins_keep_state_through_the_host() {
    // Counts events per name in the host-held state: the count is the state's, not
    // the instance's, so it comes back through state.get after every state.set.
    let python = r#"import runnel_plugin as rp


class Plugin:
    reads = []

    def __init__(self, config):
        pass

    def intercept(self, event):
        seen = int(rp.state.get(event.name) or b"0") + 1
        rp.state.set(event.name, str(seen))
        if seen == 3:
            rp.state.delete(event.name)
        return {"seen": seen}
"#;
    let js = r#"import * as rp from './runnel_plugin.js';

const decoder = new TextDecoder();

class Plugin {
  reads = [];
  constructor(config) {}
  intercept(event) {
    const stored = rp.state.get(event.name);
    const seen = (stored === undefined ? 0 : Number(decoder.decode(stored))) + 1;
    rp.state.set(event.name, String(seen));
    if (seen === 3) rp.state.delete(event.name);
    return { seen };
  }
}

export const interceptor = rp.interceptor(Plugin);
"#;
    let dir = tempfile::tempdir().unwrap();
    let input: String = ["a", "b", "a", "a", "a", "b"]
        .iter()
        .map(|n| format!("{{\"name\":\"{n}\"}}\n"))
        .collect();
    let c = r#"#include "interceptor_plugin.h"
#define RUNNEL_WORLD interceptor_plugin
#include "runnel.h"

struct exports_runnel_plugin_interceptor_instance_t { int unused; };

bool exports_runnel_plugin_interceptor_static_instance_create(
    runnel_plugin_types_tree_t *config, exports_runnel_plugin_interceptor_own_instance_t *ret,
    interceptor_plugin_string_t *err) {
    runnel_plugin_types_tree_free(config);
    *ret = exports_runnel_plugin_interceptor_instance_new(rn_calloc(1, sizeof(exports_runnel_plugin_interceptor_instance_t)));
    return true;
}

void exports_runnel_plugin_interceptor_instance_destructor(exports_runnel_plugin_interceptor_instance_t *self) { free(self); }

bool exports_runnel_plugin_interceptor_method_instance_reads(
    exports_runnel_plugin_interceptor_instance_t *self, interceptor_plugin_list_string_t *ret) {
    RN_ALLOC_LIST(*ret, 0);
    return true;
}

void exports_runnel_plugin_interceptor_method_instance_intercept(
    exports_runnel_plugin_interceptor_instance_t *self, runnel_plugin_types_batch_t *input,
    exports_runnel_plugin_interceptor_intercept_output_t *ret) {
    rn_nodes v = rn_nodes_of(input);
    rn_output out = RN_OUTPUT_INIT;
    RN_ALLOC_LIST(ret->actions, input->events.len);
    for (size_t i = 0; i < input->events.len; i++) {
        rn_bytes name = rn_text(&v, input->events.ptr[i].name), stored;
        long long seen = 1;
        if (rn_state_get(name.ptr, name.len, &stored)) {
            char digits[24] = {0};
            memcpy(digits, stored.ptr, stored.len < 23 ? stored.len : 23);
            seen = atoll(digits) + 1;
            free((void *)stored.ptr);
        }
        char text[24];
        int n = snprintf(text, sizeof text, "%lld", seen);
        rn_error err;
        if (!rn_state_set(name.ptr, name.len, text, (size_t)n, &err)) rn_fail("state: %s", err.message);
        if (seen == 3) rn_state_delete(name.ptr, name.len);
        rn_obj o = rn_object(&out);
        rn_put_int(&out, &o, "seen", seen);
        ret->actions.ptr[i].tag = EXPORTS_RUNNEL_PLUGIN_INTERCEPTOR_ACTION_PATCH;
        ret->actions.ptr[i].val.patch = rn_merge(rn_end(&out, &o));
    }
    rn_output_finish(&out, &ret->data);
    runnel_plugin_types_batch_free(input);
}
"#;
    for (lang, code) in [("python", python), ("js", js), ("c", c)] {
        let wasm = custom_interceptor(dir.path(), &format!("stateful-{lang}"), lang, code);
        // One event per call, so each call's state changes are committed before the next.
        let (events, stderr) = plugin_test(
            &wasm,
            &["--events-json", "--batch-size", "1", "--memory-mb", "128"],
            input.as_bytes(),
        );
        let seen: Vec<i64> = events
            .iter()
            .map(|e| e["fields"]["seen"].as_i64().unwrap())
            .collect();
        // a: 1, 2, 3 (then deleted), 1; b: 1, 2.
        assert_eq!(seen, [1, 1, 2, 3, 1, 2], "{lang}: {stderr}");
    }
}

#[test]
fn the_c_sdk_header_passes_its_unit_tests_natively_under_sanitizers() {
    // The bindings of a project made by `plugin new --lang c`, the header it vendored,
    // and guest-plugins/sdk-c/tests/test_runnel.c built for this machine.
    let dir = tempfile::tempdir().unwrap();
    let project = scaffold(dir.path(), "c-sdk", "c", "interceptor");
    build(&project, "c-sdk", "c");
    let test = dir.path().join("test_runnel");
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-plugins/sdk-c/tests/test_runnel.c");
    let cc = Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsanitize=address,undefined",
        ])
        .args(["-fno-sanitize-recover=all", "-I"])
        .arg(project.join("gen"))
        .arg("-I")
        .arg(&project)
        .arg(&source)
        .arg("-o")
        .arg(&test)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&test).output().unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
