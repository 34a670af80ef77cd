#!/usr/bin/env bash
# Quick start: builds the plugins and the agent (release), then runs the agent.
# With no arguments it runs the embedded default config; arguments go to `runnel run`
# (e.g. `scripts/run.sh --config config/tail-access-log.toml`). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
# Build tools (ISA-L's); without them the agent is built without ISA-L.
features=()
scripts/setup.sh || features=(--no-default-features)
scripts/build-plugins.sh
cargo build --release -p runnel "${features[@]}"
exec target/release/runnel run "$@"
