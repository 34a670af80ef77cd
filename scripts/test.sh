#!/usr/bin/env bash
# Runs every test: plugin unit tests (native), host unit tests, and the end-to-end tests
# in tests/ that drive the real `runnel` binary. Debug builds, one shared target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared/data ]; then
    echo "the test data is missing: expected ../shared/data next to this repository" >&2
    exit 1
fi
scripts/build-plugins.sh
cargo test --workspace "$@"
