#!/usr/bin/env bash
# The benchmarks, in one run (release builds):
#  1. the WASM boundary: the combined parser as a component vs the same code native,
#     batch sizes 1/64/1024 (host/benches/plugin_boundary.rs);
#  2. end to end: LINES access-log lines (the shared 10,000-line log repeated) through
#     file source → combined → field-filter → file sink, reporting lines/s, CPU µs/line
#     and peak RSS of the agent process.
# Usage: scripts/bench.sh [LINES]   (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-2000000}
DATA=../shared/data/apache_access/apache_logs
WORK=target/bench
mkdir -p "$WORK"

scripts/build-plugins.sh
cargo build --release -p runnel

echo "== 1. WASM boundary =="
cargo bench -p runnel --bench plugin_boundary

echo
echo "== 2. end to end: $LINES lines, file → combined → field-filter → file (JSON) =="
IN="$WORK/access-$LINES.log"
if [ ! -f "$IN" ] || [ "$(wc -l < "$IN")" -ne "$LINES" ]; then
    : > "$IN.tmp"
    per=$(wc -l < "$DATA")
    while [ "$(wc -l < "$IN.tmp")" -lt "$LINES" ]; do cat "$DATA" >> "$IN.tmp"; done
    head -n "$LINES" "$IN.tmp" > "$IN" && rm -f "$IN.tmp"
    : "$per"
fi
OUT="$WORK/out.jsonl"
rm -f "$OUT"
CONFIG="$WORK/e2e-access.toml"
sed -e "s|RUNNEL_BENCH_IN|$PWD/$IN|" -e "s|RUNNEL_BENCH_OUT|$PWD/$OUT|" config/bench/e2e-access.toml > "$CONFIG"

python3 - "$LINES" "$CONFIG" "$OUT" <<'PY'
import os, resource, subprocess, sys, time
lines, config, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.monotonic()
proc = subprocess.run(["target/release/runnel", "run", "--config", config], stderr=subprocess.PIPE)
wall = time.monotonic() - start
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
if proc.returncode != 0:
    sys.stderr.write(proc.stderr.decode(errors="replace"))
    sys.exit(f"runnel exited with {proc.returncode}")
with open(out, "rb") as f:
    written = sum(1 for _ in f)
cpu = ru.ru_utime + ru.ru_stime
print(f"lines in         {lines:,}")
print(f"events out       {written:,} (the filter drops /images/ requests)")
print(f"wall time        {wall:.2f} s")
print(f"throughput       {lines / wall:,.0f} lines/s")
print(f"CPU              {cpu:.2f} s (user {ru.ru_utime:.2f}, sys {ru.ru_stime:.2f}) = {cpu / lines * 1e6:.2f} µs/line")
print(f"peak RSS         {ru.ru_maxrss / 1024:.1f} MiB")
PY
