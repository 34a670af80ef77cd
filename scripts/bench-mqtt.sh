#!/usr/bin/env bash
# Section 14 of the benchmarks: the `mqtt` source at a fixed offered load. A mosquitto
# broker (Debian's; scripts/test-peers.sh installs it) on 127.0.0.1, one publisher
# (`mosquitto_pub -l`, fed lines at the offered rate by a Python pacer) and the agent
# (mqtt → memory channel → file sink, raw), all on the same two cores. Per run: what
# the publisher achieved, what arrived, and the agent's CPU per message received (wait4,
# start-up included): QoS 0 and QoS 1 at 10,000 and 20,000 messages/s for 5 s, and QoS 1
# into a durable `file` channel (every PUBACK waits for its batch on disk). The broker
# lets 1,000 QoS 1 messages be in flight to the agent (max_inflight_messages). As a
# reference in the same run, before and after: the same messages as lines of a file
# through a `file` source. Usage: scripts/bench-mqtt.sh, after scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-peers.sh
W=target/bench/mqtt
rm -rf "$W" && mkdir -p "$W"
python3 - "$W" <<'PY'
import os, signal, socket, subprocess, sys, time
w = os.path.abspath(sys.argv[1])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def message(i):
    return f'{{"sensor":"line-4/press-{i % 40}","temp_c":{20 + i % 15}.5,"pressure_kpa":{101 + i % 7}.3,"seq":{i}}}'

def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")

def run(qos, rate, seconds, channel):
    port = free_port()
    open(f"{w}/mosquitto.conf", "w").write(
        f"user root\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 1000\n"
        f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", f"{w}/mosquitto.conf"], stderr=subprocess.DEVNULL)
    wait_port(port)
    out = f"{w}/out.log"
    channel_cfg = 'type = "memory"\ncapacity = 65536' if channel == "memory" else 'type = "file"'
    cfg = f"{w}/mqtt.toml"
    open(cfg, "w").write(f"""[agent]
data_dir = "{w}/data"
summary_interval_secs = 0

[sources.sensors]
type = "mqtt"
broker = "mqtt://127.0.0.1:{port}"
topics = ["plant/#"]
qos = {qos}
client_id = "bench-{port}"
channels = ["main"]
batch_size = 1024
batch_timeout_ms = 20

[channels.main]
{channel_cfg}

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "raw"
batch_size = 4096
""")
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    time.sleep(1.5)  # connected and subscribed
    pub = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "plant/line-4/press",
                            "-q", str(qos), "-l"], stdin=subprocess.PIPE)
    lines = [(message(i) + "\n").encode() for i in range(1000)]
    sent, start = 0, time.monotonic()
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            break
        due = int(now * rate)
        if due > sent:
            pub.stdin.write(b"".join(lines[(sent + k) % 1000] for k in range(due - sent)))
            pub.stdin.flush()
            sent = due
        time.sleep(0.002)
    pub.stdin.close(); pub.wait()
    elapsed = time.monotonic() - start
    time.sleep(1.5)
    agent.send_signal(signal.SIGTERM)
    _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    broker.terminate(); broker.wait()
    received = sum(1 for _ in open(out, "rb")) if os.path.exists(out) else 0
    os.remove(out)
    cpu = ru.ru_utime + ru.ru_stime
    print(f"QoS {qos} at {rate:>6,}/s offered, {channel:6} channel: published {sent / elapsed:8,.0f}/s, "
          f"received {received:,} of {sent:,}, CPU {cpu / max(received, 1) * 1e6:.2f} µs/message, "
          f"peak RSS {ru.ru_maxrss / 1024:.0f} MiB", flush=True)

def reference(count):
    data = f"{w}/messages.log"
    with open(data, "w") as f:
        for i in range(count):
            f.write(message(i) + "\n")
    cfg = f"{w}/file.toml"
    open(cfg, "w").write(f"""[agent]
data_dir = "{w}/data"
summary_interval_secs = 0

[sources.lines]
type = "file"
path = "{data}"
read_from = "start"
exit_on_eof = true
channels = ["main"]
batch_size = 1024

[channels.main]
type = "memory"
capacity = 65536

[sinks.out]
type = "file"
channel = "main"
path = "{w}/out.log"
format = "raw"
batch_size = 4096
""")
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    os.remove(f"{w}/out.log")
    print(f"reference: {count:,} of the same messages as lines of a file (file source): "
          f"CPU {(ru.ru_utime + ru.ru_stime) / count * 1e6:.2f} µs/line", flush=True)

reference(500_000)
for qos in [0, 1]:
    for rate in [10_000, 20_000]:
        run(qos, rate, 5, "memory")
run(1, 10_000, 5, "file")
reference(500_000)
PY
