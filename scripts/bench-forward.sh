#!/usr/bin/env bash
# Section 10 of the benchmarks: edge → collector forwarding. The edge replays LINES
# access-log lines through combined → field-filter (as sections 2 and 3) into the
# `forward` sink; a collector agent (`forward` source → memory channel → file sink, JSON)
# stores them. Printed: throughput, CPU µs/line of each side (wait4 on each process,
# start-up included), peak RSS, and in the same run the reference: the edge's pipeline
# writing the same events to a local file (config/bench/e2e-access.toml), i.e. what
# forwarding costs the edge beyond writing locally. Three rounds, alternated.
# Usage: scripts/bench-forward.sh [LINES] (default 1000000), after scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
W=target/bench/forward
rm -rf "$W" && mkdir -p "$W"
IN="$W/in.log"
: > "$IN"
while [ "$(wc -l < "$IN" 2>/dev/null || echo 0)" -lt "$LINES" ]; do
    cat tests/data/apache_access/apache_logs >> "$IN"
done
head -n "$LINES" "$IN" > "$IN.tmp" && mv "$IN.tmp" "$IN"
target/release/runnel forward keygen > "$W/key"
python3 - "$LINES" "$W" <<'PY'
import os, socket, subprocess, sys, time
lines, w = int(sys.argv[1]), sys.argv[2]
w = os.path.abspath(w)

def config(template, out, **subst):
    text = open(template).read()
    for key, value in subst.items():
        text = text.replace(key, value)
    open(out, "w").write(text)
    return out

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def count(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0

def run_local(i):
    out = f"{w}/local-{i}.jsonl"
    cfg = config("config/bench/e2e-access.toml", f"{w}/local.toml",
                 RUNNEL_BENCH_IN=f"{w}/in.log", RUNNEL_BENCH_OUT=out)
    start = time.monotonic()
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(agent.pid, 0)
    wall = time.monotonic() - start
    assert status == 0, status
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, count(out)

def run_forward(i):
    port = free_port()
    out = f"{w}/stored-{i}.jsonl"
    ccfg = config("config/bench/e2e-forward-collector.toml", f"{w}/collector.toml",
                  RUNNEL_BENCH_LISTEN=f"127.0.0.1:{port}", RUNNEL_BENCH_KEY=f"{w}/key",
                  RUNNEL_BENCH_OUT=out, RUNNEL_BENCH_DATA=f"{w}/collector-data")
    ecfg = config("config/bench/e2e-forward-edge.toml", f"{w}/edge.toml",
                  RUNNEL_BENCH_IN=f"{w}/in.log", RUNNEL_BENCH_ADDRESS=f"127.0.0.1:{port}",
                  RUNNEL_BENCH_KEY=f"{w}/key", RUNNEL_BENCH_DATA=f"{w}/edge-data")
    collector = subprocess.Popen(["target/release/runnel", "run", "--config", ccfg], stderr=subprocess.DEVNULL)
    try:
        return forward_through(collector, port, ecfg, out)
    finally:
        if collector.poll() is None:
            collector.kill()

def forward_through(collector, port, ecfg, out):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    start = time.monotonic()
    edge = subprocess.Popen(["target/release/runnel", "run", "--config", ecfg], stderr=subprocess.DEVNULL)
    _, status, eru = os.wait4(edge.pid, 0)
    wall = time.monotonic() - start
    assert status == 0, status
    # The edge exits once the collector acknowledged everything: all of it is stored
    # (or on its way to the file) by then.
    expected = None
    for _ in range(200):
        n = count(out)
        if n == expected:
            break
        expected = n
        time.sleep(0.05)
    collector.terminate()
    _, status, cru = os.wait4(collector.pid, 0)
    return (wall, eru.ru_utime + eru.ru_stime, eru.ru_maxrss / 1024,
            cru.ru_utime + cru.ru_stime, cru.ru_maxrss / 1024, count(out))

print(f"lines in         {lines:,} (access log through combined → field-filter on the edge)")
for i in range(3):
    wall, cpu, rss, n = run_local(i)
    print(f"round {i + 1} local file: {n:,} events, {lines / wall:,.0f} lines/s, edge CPU {cpu / lines * 1e6:.2f} µs/line, peak RSS {rss:.0f} MiB")
    wall, ecpu, erss, ccpu, crss, n = run_forward(i)
    print(f"round {i + 1} forward:    {n:,} events stored, {lines / wall:,.0f} lines/s, edge CPU {ecpu / lines * 1e6:.2f} µs/line, "
          f"collector CPU {ccpu / lines * 1e6:.2f} µs/line ({ccpu / max(n, 1) * 1e6:.2f} per event stored), peak RSS edge {erss:.0f} / collector {crss:.0f} MiB")
PY
