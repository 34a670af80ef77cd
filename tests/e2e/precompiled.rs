//! Plugins compiled ahead of time: `runnel plugin compile PLUGIN --target T --sign KEY`
//! writes code an agent on a T machine loads without compiling — only when it is
//! signed by a trusted key (it runs as native code), and only on a CPU of T's kind;
//! `--builtins --target T` writes the shipped plugins' code that scripts/package.sh
//! embeds in the agent it builds for T.

use super::common::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The `--target` name of this machine's kind of CPU.
const HERE: &str = if cfg!(target_arch = "aarch64") {
    "aarch64"
} else {
    "x86_64"
};
/// Another kind.
const ELSEWHERE: &str = if cfg!(target_arch = "aarch64") {
    "x86_64"
} else {
    "aarch64"
};

/// `runnel plugin compile combined.wasm --target TARGET --out OUT [--sign KEY]`.
fn compile(target: &str, out: &Path, key: Option<&Path>) {
    let plugin = built_plugin("runnel_plugin_combined.wasm");
    let mut args: Vec<&OsStr> = vec![
        "plugin".as_ref(),
        "compile".as_ref(),
        plugin.as_os_str(),
        "--target".as_ref(),
        target.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    if let Some(key) = key {
        args.extend(["--sign".as_ref(), key.as_os_str()]);
    }
    let (ok, text) = cli(&args);
    assert!(ok, "{text}");
}

fn fleet_key(dir: &Path) -> PathBuf {
    let key = dir.join("fleet.key");
    keygen(&key);
    key
}

/// The access log through the plugin at `plugin` (as `parse`) and strip-control.
fn config(dir: &Path, name: &str, plugin: &Path, trusted: Option<&Path>, backend: &str) -> PathBuf {
    let trust = trusted.map_or(String::new(), |key| {
        format!(
            "require_signed = true\ntrusted_keys = [\"{}.pub\"]",
            key.display()
        )
    });
    let out = dir.join(format!("{name}.jsonl"));
    let _ = std::fs::remove_file(&out);
    write_config(
        dir,
        &format!(
            r#"[agent]
summary_interval_secs = 0
data_dir = "{data}"
plugin_backend = "{backend}"
{trust}

[plugins.parse]
path = "{plugin}"

[plugins.clean]
builtin = "strip-control"

[sources.in]
type = "stdin"
plugins = ["parse", "clean"]
channels = ["main"]
batch_size = 500
{tail}"#,
            data = dir.join(format!("data-{name}")).display(),
            plugin = plugin.display(),
            tail = main_channel_to_file(&out, "json"),
        ),
    )
}

fn run(config: &Path, out: &Path) -> (Vec<u8>, String) {
    let run = runnel()
        .env("RUNNEL_LOG", "debug")
        .args(["run", "--config"])
        .arg(config)
        .stdin(std::fs::File::open(data("apache_access/apache_logs")).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    (std::fs::read(out).unwrap(), stderr)
}

#[test]
fn a_signed_precompiled_plugin_runs_like_its_component_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let key = fleet_key(dir.path());
    let code = dir.path().join("combined.cwasm");
    compile(HERE, &code, Some(&key));
    assert!(dir.path().join("combined.cwasm.sig").exists());

    let wasm = built_plugin("runnel_plugin_combined.wasm");
    let (compiled_here, _) = run(
        &config(dir.path(), "wasm", &wasm, None, "auto"),
        &dir.path().join("wasm.jsonl"),
    );
    let (ahead, stderr) = run(
        &config(dir.path(), "cwasm", &code, Some(&key), "auto"),
        &dir.path().join("cwasm.jsonl"),
    );
    assert!(
        stderr.contains("origin=Signed"),
        "the precompiled code was not used:\n{stderr}"
    );
    assert_eq!(count_lines(&dir.path().join("cwasm.jsonl")), 10_000);
    assert!(
        compiled_here == ahead,
        "the precompiled plugin's output differs"
    );
}

#[test]
fn precompiled_code_is_refused_unsigned_or_for_another_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let key = fleet_key(dir.path());

    // Unsigned, and the agent does not ask for signatures: refused all the same.
    let unsigned = dir.path().join("unsigned.cwasm");
    compile(HERE, &unsigned, None);
    assert_refused(
        &config(dir.path(), "unsigned", &unsigned, None, "auto"),
        &[
            "plugins.parse",
            "precompiled plugin code",
            "signed by a trusted key",
        ],
    );

    // Signed, but for another kind of CPU: wasmtime refuses it, naming the plugin.
    let foreign = dir.path().join("foreign.cwasm");
    compile(ELSEWHERE, &foreign, Some(&key));
    assert_refused(
        &config(dir.path(), "foreign", &foreign, Some(&key), "auto"),
        &[
            "plugin `parse`",
            &format!("compiled for architecture '{ELSEWHERE}'"),
        ],
    );

    // Pulley bytecode runs only where the agent runs plugins on Pulley.
    let bytecode = dir.path().join("pulley.cwasm");
    compile("pulley", &bytecode, Some(&key));
    assert_refused(
        &config(
            dir.path(),
            "pulley-on-native",
            &bytecode,
            Some(&key),
            "cranelift",
        ),
        &["plugin `parse`", "compiled for architecture 'pulley64'"],
    );
    let (ok, text) = validate_config(&config(
        dir.path(),
        "pulley",
        &bytecode,
        Some(&key),
        "pulley",
    ));
    assert!(ok, "{text}");
}

#[test]
fn the_builtins_compile_for_every_shipped_target() {
    let dir = tempfile::tempdir().unwrap();
    for target in ["x86_64", "aarch64", "pulley"] {
        let out = dir.path().join(target);
        let (ok, text) = cli(&[
            "plugin".as_ref(),
            "compile".as_ref(),
            "--builtins".as_ref(),
            "--target".as_ref(),
            target.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert!(ok, "{target}: {text}");
        let files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 7, "{target}: {files:?}");
        for f in files {
            let code = std::fs::read(&f).unwrap();
            assert!(
                code.starts_with(b"RNLPRE02") && code.len() > 10_000,
                "{}",
                f.display()
            );
        }
    }
    // Native riscv64 code for the plugins' SIMD needs the vector extension: refused,
    // pointing at Pulley, never a crash.
    let (ok, text) = cli(&[
        "plugin".as_ref(),
        "compile".as_ref(),
        "--builtins".as_ref(),
        "--target".as_ref(),
        "riscv64gc".as_ref(),
        "--out".as_ref(),
        dir.path().join("riscv64").as_os_str(),
    ]);
    assert!(!ok);
    assert!(
        text.contains("--target pulley") && text.contains("error:"),
        "{text}"
    );
}
