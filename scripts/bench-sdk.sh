#!/usr/bin/env bash
# Section 9 of the benchmarks: the same plugin in each SDK language. The status-class
# interceptor (keep status >= 400, add `class`), exactly as `runnel plugin new --lang L`
# writes it, built by its build.sh, behind the combined parser on 100,000 access lines:
#  - `runnel plugin bench`: start-up with the compile cache cold and warm, then ns/event
#    of the chain and of the plugin alone (each round minus a round of the parser alone,
#    alternated), median of the rounds with their range, and peak RSS;
#  - Rust against C in instructions (callgrind), which do not move with the VM's speed:
#    the plugin's own count is half the difference between 3 rounds and 1 round of
#    `plugin bench PLUGIN --after combined`, minus the same difference for `plugin bench
#    combined` (each round runs the chain and the parser alone once).
# Usage: scripts/bench-sdk.sh [ACCESS_LOG] (default: the vendored log ×10), after
# scripts/build-release.sh. LANGS="rust c" picks languages.
set -euo pipefail
cd "$(dirname "$0")/.."
W="target/bench/sdk"
mkdir -p "$W"
if [ -n "${1:-}" ]; then
    head -n 100000 "$1" > "$W/in.log"
else
    for _ in $(seq 10); do cat tests/data/apache_access/apache_logs; done > "$W/in.log"
fi
RUNNEL=target/release/runnel

for lang in ${LANGS:-rust python js c}; do
    project="$W/status-class-$lang"
    if [ ! -x "$project/build.sh" ]; then
        $RUNNEL plugin new "status-class-$lang" --lang "$lang" --dir "$project" >/dev/null
    fi
    CARGO_TARGET_DIR="$PWD/target/plugin-new" "$project/build.sh" 2>/dev/null
    wasm="$project/status-class-$lang.wasm"
    echo "-- $lang: $(stat -c %s "$wasm" | numfmt --to=iec) .wasm"
    cache="$W/cache-$lang"
    rm -rf "$cache"
    echo "cold cache:"
    RUNNEL_CACHE_DIR="$cache" $RUNNEL plugin bench "$wasm" --after combined --rounds 1 \
        --memory-mb 128 < "$W/in.log" | grep -E "start-up|peak"
    echo "warm cache:"
    RUNNEL_CACHE_DIR="$cache" $RUNNEL plugin bench "$wasm" --after combined --rounds 7 \
        --memory-mb 128 < "$W/in.log" \
        | grep -vE "^(chain  +combined|input)"
done

echo "-- Rust and C in instructions (callgrind, 20,000 lines)"
if ! command -v valgrind >/dev/null; then
    echo "valgrind not installed: skipped"
    exit 0
fi
head -n 20000 "$W/in.log" > "$W/in20k.log"
# Instructions of `plugin bench ARGS --rounds N` (compile cache warm: filled under
# valgrind first, whose CPU features differ).
count() { # ROUNDS ARGS...
    local rounds=$1
    shift
    RUNNEL_CACHE_DIR="$W/cache-valgrind" valgrind --tool=callgrind --smc-check=all \
        --callgrind-out-file=/dev/null $RUNNEL plugin bench "$@" --rounds "$rounds" \
        < "$W/in20k.log" 2>&1 >/dev/null | sed -n 's/.*Collected : //p'
}
per_round() { # ARGS...: instructions of one round
    count 1 "$@" >/dev/null # fills the cache
    local one three
    one=$(count 1 "$@")
    three=$(count 3 "$@")
    echo $(((three - one) / 2))
}
parser=$(per_round combined)
echo "parser alone     $((parser / 20000)) instructions/event"
for lang in rust c; do
    wasm="$W/status-class-$lang/status-class-$lang.wasm"
    [ -f "$wasm" ] || continue
    both=$(per_round "$wasm" --after combined)
    echo "$lang plugin       $(((both - 2 * parser) / 20000)) instructions/event (chain and parser-alone round: $((both / 20000)))"
done
