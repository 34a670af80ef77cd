//! Embeds the shipped plugins (built for wasm32-wasip2 by scripts/build-plugins.sh) into
//! the agent, so `runnel run` works from the binary alone.

use std::path::PathBuf;

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
}
