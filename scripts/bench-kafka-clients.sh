#!/usr/bin/env bash
# Section 11b of the benchmarks: the Kafka client alone, rskafka (the agent's) against
# librdkafka (the reference), producing the same records — the section 2 pipeline's
# 875,700 JSON events of 1,000,000 access lines, keyed by host — to a fresh local tansu
# broker each (3 partitions, acks = all, gzip at each client's default level 6).
# scripts/kafka-clients/ is built here (outside the workspace: librdkafka's C build
# never touches the agent). CPU of the producing process, all threads; three rounds,
# alternated. Usage: scripts/bench-kafka-clients.sh [LINES] (default 1000000), after
# scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
W=target/bench/kafka-clients
rm -rf "$W" && mkdir -p "$W"
CARGO_TARGET_DIR=target/kafka-clients cargo build --release --quiet \
    --manifest-path scripts/kafka-clients/Cargo.toml
BIN=target/kafka-clients/release/kafka-clients
IN="$W/in.log"
: > "$IN"
while [ "$(wc -l < "$IN")" -lt "$LINES" ]; do cat tests/data/apache_access/apache_logs >> "$IN"; done
head -n "$LINES" "$IN" > "$IN.tmp" && mv "$IN.tmp" "$IN"
sed -e "s|RUNNEL_BENCH_IN|$W/in.log|" -e "s|RUNNEL_BENCH_OUT|$W/records.jsonl|" \
    config/bench/e2e-access.toml > "$W/records.toml"
target/release/runnel run --config "$W/records.toml" 2>/dev/null
TANSU=$(tests/peers/kafka-tools.sh | head -n 1)
echo "records          $(wc -l < "$W/records.jsonl") ($(du -m "$W/records.jsonl" | cut -f1) MB of JSON)"
for round in 1 2 3; do
    for client in rskafka rdkafka; do
        PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        "$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$PORT" > "$W/tansu.log" 2>&1 &
        BROKER=$!
        until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
        printf 'round %s ' "$round"
        "$BIN" "$client" "127.0.0.1:$PORT" records "$W/records.jsonl"
        kill "$BROKER"; wait "$BROKER" 2>/dev/null || true
    done
done
ls -l "$BIN" | awk '{printf "kafka-clients binary (both clients, release, not stripped): %.1f MB\n", $5 / 1e6}'
