//! Embeds the shipped plugins (built for wasm32-wasip2 by scripts/build-plugins.sh) into
//! the agent, so `runnel run` works from the binary alone.
//!
//! With `RUNNEL_PRECOMPILED_DIR` set, it also embeds their code compiled ahead of time
//! (`STEM.cwasm` files that `runnel plugin compile --builtins --out DIR` writes; see
//! scripts/build-release.sh), so that the agent does not compile the builtins at start.
//! A missing file embeds nothing, and code that does not fit the embedded plugin or the
//! running engine is ignored by the agent (it compiles that plugin instead).

use std::path::{Path, PathBuf};

const PLUGINS: &[&str] = &[
    "combined",
    "json",
    "regex",
    "level_router",
    "strip_control",
    "host_timestamp",
    "field_filter",
];

fn main() {
    println!("cargo:rerun-if-env-changed=RUNNEL_PLUGIN_DIR");
    println!("cargo:rerun-if-env-changed=RUNNEL_PRECOMPILED_DIR");
    let dir = match std::env::var_os("RUNNEL_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let manifest =
                PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| manifest.join("../target"));
            target.join("wasm32-wasip2/release")
        }
    };
    let mut missing = Vec::new();
    for name in PLUGINS {
        let path = dir.join(format!("runnel_plugin_{name}.wasm"));
        println!("cargo:rerun-if-changed={}", path.display());
        if !path.exists() {
            missing.push(path.display().to_string());
        }
    }
    if !missing.is_empty() {
        panic!(
            "the builtin plugins are not built (missing: {}).\nRun `scripts/build-plugins.sh` first \
             (it installs the wasm32-wasip2 target and builds guest-plugins/), or set RUNNEL_PLUGIN_DIR.",
            missing.join(", ")
        );
    }
    println!("cargo:rustc-env=RUNNEL_PLUGIN_DIR={}", dir.display());

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let precompiled = std::env::var_os("RUNNEL_PRECOMPILED_DIR").map(PathBuf::from);
    for name in PLUGINS {
        embed_precompiled(precompiled.as_deref(), &out, name);
    }
    println!("cargo:rustc-env=RUNNEL_PRECOMPILED_DIR={}", out.display());
    // `runnel --version` says what the build is for and what it embeds.
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    let builtins = if precompiled.is_some() {
        "builtins precompiled"
    } else {
        "builtins compiled at load"
    };
    let features: Vec<&str> = [
        ("isal", "ISAL"),
        ("compiler", "COMPILER"),
        ("all-arch", "ALL_ARCH"),
    ]
    .into_iter()
    .filter(|(_, var)| std::env::var_os(format!("CARGO_FEATURE_{var}")).is_some())
    .map(|(name, _)| name)
    .collect();
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(" ")
    };
    println!(
        "cargo:rustc-env=RUNNEL_BUILD_INFO=target {target}, {profile}, {builtins}, features: {features}"
    );
}

/// Copies `from/NAME.cwasm` to `out/NAME.cwasm`, or writes an empty one (nothing
/// precompiled) when there is none.
fn embed_precompiled(from: Option<&Path>, out: &Path, name: &str) {
    let file = format!("{name}.cwasm");
    let code = from.map_or_else(Vec::new, |dir| {
        let path = dir.join(&file);
        println!("cargo:rerun-if-changed={}", path.display());
        std::fs::read(&path).unwrap_or_default()
    });
    let target = out.join(&file);
    std::fs::write(&target, code).unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
}
