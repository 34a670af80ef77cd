#!/usr/bin/env bash
# Section 11 of the benchmarks: the `kafka` sink. The section 2 pipeline (LINES access
# lines through combined → field-filter) producing one record per event, keyed by host,
# gzip, acks = all, to a local tansu broker (tests/peers/kafka-tools.sh installs it;
# in-memory storage); beside it in the same run, the same pipeline writing a local file.
# The sink with 1 batch in flight (the default) and with 4. CPU of the agent process
# alone (wait4, start-up included); three rounds, alternated.
# Usage: scripts/bench-kafka.sh [LINES] (default 1000000), after scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
W=target/bench/kafka
rm -rf "$W" && mkdir -p "$W"
IN="$W/in.log"
: > "$IN"
while [ "$(wc -l < "$IN")" -lt "$LINES" ]; do cat tests/data/apache_access/apache_logs >> "$IN"; done
head -n "$LINES" "$IN" > "$IN.tmp" && mv "$IN.tmp" "$IN"
TANSU=$(tests/peers/kafka-tools.sh | head -n 1)
python3 - "$LINES" "$W" "$TANSU" <<'PY'
import os, socket, subprocess, sys, time
lines, w, tansu = int(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]

def config(template, out, **subst):
    text = open(template).read()
    for key, value in subst.items():
        text = text.replace(key, value)
    open(out, "w").write(text)
    return out

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port

def run(cfg):
    start = time.monotonic()
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    return time.monotonic() - start, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024

print(f"lines in         {lines:,} (access log through combined → field-filter)")
for i in range(3):
    local = config("config/bench/e2e-access.toml", f"{w}/local.toml",
                   RUNNEL_BENCH_IN=f"{w}/in.log", RUNNEL_BENCH_OUT=f"{w}/local-{i}.jsonl")
    wall, cpu, rss = run(local)
    print(f"round {i + 1} local file: {lines / wall:,.0f} lines/s, CPU {cpu / lines * 1e6:.2f} µs/line, peak RSS {rss:.0f} MiB")
    os.remove(f"{w}/local-{i}.jsonl")
    for in_flight in [1, 4]:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        broker = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close(); break
                except OSError:
                    time.sleep(0.05)
            cfg = config("config/bench/e2e-kafka.toml", f"{w}/kafka.toml", RUNNEL_BENCH_IN=f"{w}/in.log",
                         RUNNEL_BENCH_BROKER=f"127.0.0.1:{port}", RUNNEL_BENCH_SENDS=str(in_flight),
                         RUNNEL_BENCH_DATA=f"{w}/data-{i}-{in_flight}")
            wall, cpu, rss = run(cfg)
            print(f"round {i + 1} kafka in_flight {in_flight}: {lines / wall:,.0f} lines/s, CPU {cpu / lines * 1e6:.2f} µs/line, peak RSS {rss:.0f} MiB", flush=True)
        finally:
            broker.kill(); broker.wait()
PY
