#!/usr/bin/env bash
# The benchmarks, in one run (release builds):
#  1. the WASM boundary: the combined parser as a component vs the same code native,
#     batch sizes 1/64/1024 (host/benches/plugin_boundary.rs);
#  2. end to end: LINES access-log lines (the vendored 10,000-line log repeated) through
#     file source → combined → field-filter → file sink, reporting lines/s, CPU µs/line
#     and peak RSS of the agent process.
# Usage: scripts/bench.sh [LINES]   (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-2000000}
DATA=tests/data/apache_access/apache_logs
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

# The same pipeline on one line: the agent's start-up (compiling the two plugins) alone.
ONE="$WORK/access-1.log"
head -n 1 "$DATA" > "$ONE"
CONFIG_ONE="$WORK/e2e-access-1.toml"
sed -e "s|RUNNEL_BENCH_IN|$PWD/$ONE|" -e "s|RUNNEL_BENCH_OUT|$PWD/$WORK/out-1.jsonl|" config/bench/e2e-access.toml > "$CONFIG_ONE"

python3 - "$LINES" "$CONFIG" "$OUT" "$CONFIG_ONE" <<'PY'
import os, resource, subprocess, sys, time
lines, config, out, config_one = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

def cpu_of_children():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime

before = cpu_of_children()
subprocess.run(["target/release/runnel", "run", "--config", config_one], stderr=subprocess.DEVNULL, check=True)
startup = cpu_of_children() - before

before = cpu_of_children()
start = time.monotonic()
proc = subprocess.run(["target/release/runnel", "run", "--config", config], stderr=subprocess.PIPE)
wall = time.monotonic() - start
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = cpu_of_children() - before
if proc.returncode != 0:
    sys.stderr.write(proc.stderr.decode(errors="replace"))
    sys.exit(f"runnel exited with {proc.returncode}")
with open(out, "rb") as f:
    written = sum(1 for _ in f)
print(f"lines in         {lines:,}")
print(f"events out       {written:,} (the filter drops /images/ requests)")
print(f"wall time        {wall:.2f} s")
print(f"throughput       {lines / wall:,.0f} lines/s")
print(f"CPU              {cpu:.2f} s = {cpu / lines * 1e6:.2f} µs/line (all of it, start-up included)")
print(f"  start-up       {startup:.2f} s (the same config on one line: compiling the plugins)")
print(f"  per line       {(cpu - startup) / lines * 1e6:.2f} µs/line once running")
print(f"peak RSS         {ru.ru_maxrss / 1024:.1f} MiB (the largest of the two runs)")
PY
