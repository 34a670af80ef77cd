#!/usr/bin/env bash
# Builds {{NAME}}.wasm, a Runnel {{ROLE}} plugin, from src/lib.rs (release, for
# wasm32-wasip2 with 128-bit SIMD: .cargo/config.toml). Idempotent: installs the rustup
# target when it is missing. `cargo test` runs the plugin's tests natively.
set -euo pipefail
cd "$(dirname "$0")"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{CRATE}}.wasm" {{NAME}}.wasm
echo "built {{NAME}}.wasm; try it: runnel plugin test {{NAME}}.wasm {{TRY}}" >&2
