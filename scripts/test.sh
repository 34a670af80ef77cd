#!/usr/bin/env bash
# Runs every test: plugin unit tests (native), host unit tests, and the end-to-end tests
# in tests/ that drive the real `runnel` binary. Debug builds, one shared target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
# Build tools (ISA-L's); without them the agent is built and tested without ISA-L.
features=()
scripts/setup.sh || features=(--no-default-features --features runnel/compiler,runnel/all-arch)
scripts/build-plugins.sh
# The real peers the end-to-end tests start (mosquitto, logger, curl, journalctl, …).
scripts/test-peers.sh
# The Python SDK's encoding, in plain Python (the SDKs' plugins are built and run in
# the agent by tests/e2e/plugin_sdks.rs).
python3 -m unittest discover -s guest-plugins/sdk-python/tests
cargo test --workspace "${features[@]}" "$@"
# The benchmarks are not run here, but they must keep compiling: built (not run) with
# the test profile, so they reuse what the tests built (`cargo check` would check every
# dependency again: ~5 minutes more on a fresh clone).
cargo test -p runnel --benches --no-run --quiet "${features[@]}"
# The edge targets: aarch64 and riscv64 cross builds run under qemu-user on the
# embedded default and on plugin chains, against this machine's build (the one the
# tests ran).
RUNNEL_BIN="$PWD/target/debug/runnel" scripts/cross-check.sh
