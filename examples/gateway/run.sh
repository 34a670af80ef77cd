#!/usr/bin/env bash
# The gateway example on one machine: builds the agent (scripts/build-release.sh),
# starts a mosquitto broker (scripts/test-peers.sh installs it), runs
# examples/gateway/runnel.toml, then publishes 1,000 sensor readings at QoS 1, drops 20
# CSV export files into the spool directory and sends 100 syslog messages with
# `logger`; stops the agent and shows what arrived from each source. Work files:
# target/examples/gateway.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/test-peers.sh
scripts/build-release.sh >&2
WORK=$PWD/target/examples/gateway
rm -rf "$WORK" && mkdir -p "$WORK/spool" "$WORK/out"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MQTT_PORT=$(free_port)
SYSLOG_PORT=$(free_port)
printf 'user root\npersistence false\nlistener %s 127.0.0.1\nallow_anonymous true\n' "$MQTT_PORT" > "$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
sed -e "s|WORK|$WORK|g" -e "s|MQTT_PORT|$MQTT_PORT|" -e "s|SYSLOG_PORT|$SYSLOG_PORT|" \
    examples/gateway/runnel.toml > "$WORK/runnel.toml"
sleep 0.5
RUNNEL_LOG=info target/release/runnel run --config "$WORK/runnel.toml" 2>"$WORK/agent.log" &
AGENT=$!
pids+=($AGENT)
for _ in $(seq 100); do grep -q "subscribing to" "$WORK/agent.log" && break; sleep 0.1; done

for i in $(seq 1000); do
    echo "{\"press\":\"p-$((i % 8))\",\"temp_c\":$((20 + i % 15)).5,\"seq\":$i}"
done | mosquitto_pub -p "$MQTT_PORT" -t plant/line-4/telemetry -q 1 -l
for f in $(seq 20); do
    { echo "time,station,count"; for r in $(seq 50); do echo "2026-11-27T10:$((r % 60)):00Z,st-$f,$r"; done; } \
        > "$WORK/spool/.export-$f.csv" && mv "$WORK/spool/.export-$f.csv" "$WORK/spool/export-$f.csv"
done
for i in $(seq 100); do
    logger -n 127.0.0.1 -P "$SYSLOG_PORT" -d --rfc3164 -t dnsmasq -p daemon.info "query[A] host-$i.plant.local from 10.0.7.$i"
done
expected=$((1000 + 20 * 51 + 100))
count() { wc -l < "$WORK/out/events.jsonl" 2>/dev/null || echo 0; }
for _ in $(seq 200); do [ "$(count)" -ge "$expected" ] && break; sleep 0.1; done
kill -TERM "$AGENT" && wait "$AGENT" || true
python3 - "$WORK/out/events.jsonl" <<'PY'
import collections, json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
by = collections.Counter(("mqtt " + e["tags"]["topic"]) if "topic" in e["tags"] else
                         ("spooldir " + e["tags"]["file"].rsplit("/", 1)[-1][:7] + "*") if "file" in e["tags"] else
                         ("syslog " + e["name"]) for e in events)
for k, n in sorted(by.items()):
    print(f"{n:6}  {k}")
print(f"{len(events):6}  events in all, every one tagged site={set(e['tags'].get('site') for e in events)}")
PY
echo "spool directory now: $(ls "$WORK/spool" | grep -c COMPLETED) files renamed *.COMPLETED, $(ls "$WORK/spool" | grep -vc COMPLETED || true) others"
[ "$(count)" -ge "$expected" ]
