#!/usr/bin/env bash
# Edge → collector on one machine: builds the agent (scripts/build-release.sh), makes a
# shared key, starts a collector and an edge agent, writes the vendored access log into
# the edge's tailed file in three parts — stopping the collector with SIGKILL during the
# second — and waits until the collector has stored every line. Everything lives in
# target/examples/edge-to-collector (WORK below).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build-release.sh >&2
RUNNEL=$PWD/target/release/runnel
WORK=$PWD/target/examples/edge-to-collector
rm -rf "$WORK" && mkdir -p "$WORK/logs"
$RUNNEL forward keygen > "$WORK/forward.key"
chmod 600 "$WORK/forward.key"
for side in collector edge; do
    sed "s|WORK|$WORK|g" "examples/edge-to-collector/$side.toml" > "$WORK/$side.toml"
done
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

start_collector() {
    $RUNNEL run --config "$WORK/collector.toml" 2>>"$WORK/collector.log" &
    collector=$!
    pids+=("$collector")
}
start_collector
$RUNNEL run --config "$WORK/edge.toml" 2>>"$WORK/edge.log" &
pids+=($!)

LOG=tests/data/apache_access/apache_logs
TOTAL=$(wc -l < "$LOG")
head -n 3000 "$LOG" >> "$WORK/logs/access.log"
sleep 1
echo "collector killed (SIGKILL) while the edge keeps reading; lines wait in the edge's file channel"
kill -9 "$collector"
sed -n '3001,7000p' "$LOG" >> "$WORK/logs/access.log"
sleep 2
echo "collector restarted"
start_collector
sed -n '7001,$p' "$LOG" >> "$WORK/logs/access.log"

stored() { find "$WORK/store" -name '*.log' -exec cat {} + 2>/dev/null | wc -l; }
for _ in $(seq 120); do
    [ "$(stored)" -ge "$TOTAL" ] && break
    sleep 0.5
done
echo "collector stored $(stored) of $TOTAL lines:"
find "$WORK/store" -type f | sort
echo "one of them:"
find "$WORK/store" -name '*.log' | head -1 | xargs head -n 1
[ "$(stored)" -ge "$TOTAL" ] || { echo "missing lines; logs in $WORK" >&2; exit 1; }
