#!/usr/bin/env bash
# Section 12 of the benchmarks: the `webhdfs` sink. The section 2 pipeline (LINES access
# lines through combined → field-filter) writing JSON into hourly buckets by the log's
# time through WebHDFS (CREATE/APPEND with the 307 redirect, RENAME at close), plain and
# gzip, to the WebHDFS protocol stand-in (tests/peers/webhdfs_server.py, Python, on the
# same two cores; not HDFS); beside it in the same run, the same pipeline writing a
# local file. CPU of the agent process alone (wait4, start-up included); three rounds,
# alternated. Usage: scripts/bench-webhdfs.sh [LINES] (default 1000000), after
# scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
W=target/bench/webhdfs
rm -rf "$W" && mkdir -p "$W"
IN="$W/in.log"
: > "$IN"
while [ "$(wc -l < "$IN")" -lt "$LINES" ]; do cat tests/data/apache_access/apache_logs >> "$IN"; done
head -n "$LINES" "$IN" > "$IN.tmp" && mv "$IN.tmp" "$IN"
python3 - "$LINES" "$W" <<'PY'
import json, os, shutil, subprocess, sys, time
lines, w = int(sys.argv[1]), os.path.abspath(sys.argv[2])

def config(template, out, **subst):
    text = open(template).read()
    for key, value in subst.items():
        text = text.replace(key, value)
    open(out, "w").write(text)
    return out

def run(cfg):
    start = time.monotonic()
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    return time.monotonic() - start, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024

def stored(root):
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    return len(files), sum(os.path.getsize(f) for f in files), sum(f.endswith(".tmp") for f in files)

print(f"lines in         {lines:,} (access log through combined → field-filter)")
for i in range(3):
    local = config("config/bench/e2e-access.toml", f"{w}/local.toml",
                   RUNNEL_BENCH_IN=f"{w}/in.log", RUNNEL_BENCH_OUT=f"{w}/local-{i}.jsonl")
    wall, cpu, rss = run(local)
    print(f"round {i + 1} local file:    {lines / wall:9,.0f} lines/s, CPU {cpu / lines * 1e6:.2f} µs/line, peak RSS {rss:.0f} MiB")
    os.remove(f"{w}/local-{i}.jsonl")
    for compression in ["none", "gzip"]:
        root = f"{w}/hdfs-{i}-{compression}"
        server = subprocess.Popen(["python3", "tests/peers/webhdfs_server.py", "--root", root, "--user", "runnel"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            ports = json.loads(server.stdout.readline())
            cfg = config("config/bench/e2e-webhdfs.toml", f"{w}/webhdfs.toml", RUNNEL_BENCH_IN=f"{w}/in.log",
                         RUNNEL_BENCH_NAMENODE=f"127.0.0.1:{ports['namenode']}",
                         RUNNEL_BENCH_COMPRESSION=compression, RUNNEL_BENCH_DATA=f"{w}/data-{i}-{compression}")
            wall, cpu, rss = run(cfg)
            files, size, in_use = stored(root)
            assert in_use == 0, f"{in_use} files left in use"
            print(f"round {i + 1} webhdfs {compression:5}: {lines / wall:9,.0f} lines/s, CPU {cpu / lines * 1e6:.2f} µs/line, "
                  f"peak RSS {rss:.0f} MiB; {files} files, {size / 1e6:.0f} MB")
        finally:
            server.kill(); server.wait()
            shutil.rmtree(root, ignore_errors=True)
PY
