#!/usr/bin/env bash
# Builds the agent for this machine (release) with its builtin plugins precompiled:
#  1. the build tools (scripts/setup.sh) and the plugins (scripts/build-plugins.sh);
#  2. the agent, embedding the builtins' code from target/precompiled/ (what step 3 of
#     an earlier build wrote; none the first time);
#  3. `runnel plugin compile --builtins` writes their code for this machine there (it
#     rewrites nothing that is already embedded and up to date);
#  4. the agent again, embedding it (nothing to do when step 3 changed nothing).
# Embedded code that does not fit the plugin or the CPU it runs on is never used: the
# agent compiles that plugin instead (and keeps it in its cache).
set -euo pipefail
cd "$(dirname "$0")/.."
# Build tools (ISA-L's); without them the agent is built without ISA-L.
features=()
scripts/setup.sh || features=(--no-default-features --features compiler,all-arch)
scripts/build-plugins.sh
export RUNNEL_PRECOMPILED_DIR="$PWD/target/precompiled"
cargo build --release -p runnel "${features[@]}"
target/release/runnel plugin compile --builtins --out "$RUNNEL_PRECOMPILED_DIR" >/dev/null
cargo build --release -p runnel "${features[@]}"
