#!/usr/bin/env bash
# Start-up, CPU per line and peak memory of the agent per target (BENCHMARKS.md,
# section 17): this machine's build natively — the reference, measured in the same
# run — and the aarch64 and riscv64 builds under qemu-user (EMULATED: qemu translates
# every instruction, so these figures say how the targets compare on this machine,
# not what a board does). Uses the builds scripts/cross-check.sh (PROFILE=release, the
# default) or scripts/package.sh (PROFILE=dist) made; builds what is missing with
# cross-check.sh.
#
# Each binary runs the cross-check's plugin chain (combined → strip-control →
# level-router, stdin → file sink): once on no input (start-up: load the config and the
# plugins, start, drain, stop) and on the first LINES lines of the real Apache access
# log; CPU/line = (CPU of the run − CPU of the empty run) / lines. ROUNDS runs each:
# the median, with the range.
# Usage: scripts/bench-targets.sh   (LINES=10000 ROUNDS=3 PROFILE=release)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/targets.sh
PROFILE=${PROFILE:-release}
LINES=${LINES:-10000}
ROUNDS=${ROUNDS:-3}
W=target/bench-targets
# GNU time (peak RSS), from Debian when missing.
[ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
rm -rf "$W" && mkdir -p "$W"

for target in aarch64 riscv64gc; do
    [ -x "target/$(target_triple "$target")/$PROFILE/runnel" ] || PROFILE=$PROFILE scripts/cross-check.sh "$target"
done
# The reference: this machine's release build (REFERENCE: a binary already built, such
# as the previous commit's).
if [ -z "${REFERENCE:-}" ]; then
    cargo build -q --release -p runnel
    REFERENCE=target/release/runnel
fi
REFERENCE=$(realpath "$REFERENCE")
head -n "$LINES" tests/data/apache_access/apache_logs > "$W/input.log"
sed -n '/^cat > "$W\/chain.toml" <<'"'"'TOML'"'"'$/,/^TOML$/p' scripts/cross-check.sh |
    sed '1d;$d' > "$W/chain.toml"

# measure NAME RUNNER... : prints one table row.
measure() {
    local name=$1; shift
    local starts=() cpus=() rsss=() r
    for r in $(seq "$ROUNDS"); do
        rm -rf "$W/run" && mkdir -p "$W/run"
        (cd "$W/run" && /usr/bin/time -f '%e %U %S %M' -o ../empty.time "$@" run \
            --config ../chain.toml </dev/null >/dev/null 2>../empty.log)
        rm -rf "$W/run" && mkdir -p "$W/run"
        (cd "$W/run" && /usr/bin/time -f '%e %U %S %M' -o ../full.time "$@" run \
            --config ../chain.toml <../input.log >/dev/null 2>../full.log)
        [ "$(wc -l < "$W/run/out.jsonl")" = "$LINES" ] ||
            { echo "$name: $(wc -l < "$W/run/out.jsonl") events out of $LINES" >&2; exit 1; }
        read -r e_wall e_user e_sys _ < "$W/empty.time"
        read -r _ f_user f_sys f_rss < "$W/full.time"
        starts+=("$e_wall")
        cpus+=("$(echo "($f_user + $f_sys - $e_user - $e_sys) * 1000000 / $LINES" | bc -l)")
        rsss+=("$((f_rss / 1024))")
    done
    stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.2f (%.2f–%.2f)", v[int((NR+1)/2)], v[1], v[NR]}'; }
    printf '| %-34s | %-20s | %-20s | %-12s |\n' "$name" "$(stats "${starts[@]}")" \
        "$(stats "${cpus[@]}")" "$(stats "${rsss[@]}")"
}

echo "$LINES lines, $ROUNDS rounds, $PROFILE builds; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '| %-34s | %-20s | %-20s | %-12s |\n' "build (how it runs)" "start-up s" "CPU µs/line" "peak RSS MiB"
echo "|---|---|---|---|"
measure "x86_64 (native, reference)" "$REFERENCE"
read -r -a qa <<< "$(target_runner aarch64)"
measure "aarch64 (qemu, EMULATED)" "${qa[@]}" "$PWD/target/$(target_triple aarch64)/$PROFILE/runnel"
read -r -a qr <<< "$(target_runner riscv64gc)"
measure "riscv64, no V: Pulley (qemu, EMULATED)" "${qr[@]}" "$PWD/target/$(target_triple riscv64gc)/$PROFILE/runnel"
measure "riscv64, V: Cranelift (qemu, EMULATED)" "${qr[@]}" -cpu rv64,v=true "$PWD/target/$(target_triple riscv64gc)/$PROFILE/runnel"

echo
echo "binary sizes ($PROFILE):"
for bin in "$REFERENCE" "target/$(target_triple aarch64)/$PROFILE/runnel" \
    "target/$(target_triple riscv64gc)/$PROFILE/runnel"; do
    printf '  %-55s %10d bytes; %s\n' "$bin" "$(stat -c %s "$bin")" \
        "$(file -b "$bin" | cut -d, -f1-2,5)"
done
