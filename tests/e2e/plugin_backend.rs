//! Pulley, wasmtime's interpreter, as the plugin backend (`[agent] plugin_backend`):
//! the agent picks it by itself on riscv64 CPUs without the vector extension, where
//! Cranelift's code cannot run. Here, on x86-64, the same chains run on both backends:
//! the real Apache access log through combined → strip-control → level-router, and
//! the Loghub Linux syslog sample through regex, give byte-identical output.

use super::common::*;
use std::path::Path;

fn run_chain(dir: &Path, backend: &str, input: &str) -> (Vec<u8>, String) {
    let out = dir.join(format!("{backend}.jsonl"));
    let config = write_config(
        dir,
        &format!(
            r#"[agent]
summary_interval_secs = 0
plugin_backend = "{backend}"
data_dir = "{data}"

[plugins.access]
builtin = "combined"

[plugins.syslog]
builtin = "regex"
[plugins.syslog.config]
pattern = '^(?P<time>\w{{3}} +\d+ [\d:]+) (?P<host>\S+) (?P<program>[^\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<message>.*)$'
types = {{ pid = "int" }}

[plugins.clean]
builtin = "strip-control"

[plugins.by-level]
builtin = "level-router"
[plugins.by-level.config]
routes = {{ alerts = ["error", "fatal"] }}

[sources.in]
type = "stdin"
plugins = {plugins}
channels = ["main"]
{routes}
batch_size = 500
{tail}"#,
            data = dir.join(format!("data-{backend}")).display(),
            plugins = if input.contains("apache") {
                r#"["access", "clean", "by-level"]"#
            } else {
                r#"["syslog", "clean"]"#
            },
            routes = if input.contains("apache") {
                r#"routes = { alerts = ["main"] }"#
            } else {
                ""
            },
            tail = main_channel_to_file(&out, "json"),
        ),
    );
    let run = runnel()
        .env("RUNNEL_LOG", "info")
        .args(["run", "--config"])
        .arg(&config)
        .stdin(std::fs::File::open(data(input)).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{backend}: {stderr}");
    (std::fs::read(&out).unwrap(), stderr)
}

#[test]
fn pulley_runs_the_shipped_plugins_with_the_same_output_as_cranelift() {
    for input in ["apache_access/apache_logs", "loghub/Linux/Linux_2k.log"] {
        let dir = tempfile::tempdir().unwrap();
        let (native, said) = run_chain(dir.path(), "cranelift", input);
        assert!(!said.contains("Pulley"), "{said}");
        let (interpreted, stderr) = run_chain(dir.path(), "pulley", input);
        assert!(stderr.contains("plugins run on Pulley"), "{stderr}");
        let lines = native.iter().filter(|b| **b == b'\n').count();
        assert!(lines >= 2000, "{input}: {lines} events");
        assert!(
            native == interpreted,
            "{input}: Pulley's output differs from Cranelift's\n{stderr}"
        );
    }
}

#[test]
fn an_unknown_backend_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[agent]
plugin_backend = "jit"

[sources.in]
type = "stdin"
channels = ["main"]

[channels.main]
type = "memory"

[sinks.out]
type = "console"
channel = "main"
"#,
    );
    assert_refused(&config, &["agent.plugin_backend", "jit"]);
}
