#!/usr/bin/env bash
# Quick start: builds the plugins and the agent (release, builtins precompiled: see
# scripts/build-release.sh), then runs the agent.
# With no arguments it runs the embedded default config; arguments go to `runnel run`
# (e.g. `scripts/run.sh --config config/tail-access-log.toml`). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-release.sh
exec target/release/runnel run "$@"
