#!/usr/bin/env bash
# Builds the shipped WebAssembly plugins (and the test fixture plugin) for wasm32-wasip2.
# Idempotent: installs the rustup target only when it is missing; cargo rebuilds only
# what changed. The agent embeds the results (host/build.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
fi

cargo build --release --target wasm32-wasip2 \
    -p runnel-plugin-combined \
    -p runnel-plugin-json \
    -p runnel-plugin-regex \
    -p runnel-plugin-level-router \
    -p runnel-plugin-strip-control \
    -p runnel-plugin-host-timestamp \
    -p runnel-plugin-field-filter \
    -p runnel-plugin-template \
    -p runnel-test-trap-on-marker \
    -p runnel-test-versioned \
    -p runnel-test-versioned-router \
    -p runnel-test-window-count
