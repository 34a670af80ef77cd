#!/usr/bin/env bash
# Section 15 of the benchmarks: the plugin backends. The same chain (combined →
# strip-control → level-router) over the real access log repeated to LINES lines (default
# 200,000), stdin → memory channel → file sink, once with Cranelift (plugins compiled to
# machine code) and once with Pulley (wasmtime's interpreter, `plugin_backend =
# "pulley"`: what a riscv64 CPU without the vector extension gets), alternated, three
# rounds. Printed: CPU µs per line (wait4, start-up included; the compile cache is off,
# so each run compiles its plugins) and peak RSS. Usage: scripts/bench-backend.sh
# [LINES], after scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-200000}
W=target/bench/backend
rm -rf "$W" && mkdir -p "$W"
python3 - "$W" "$LINES" <<'PY'
import os, subprocess, sys
w, lines = os.path.abspath(sys.argv[1]), int(sys.argv[2])
source = open("tests/data/apache_access/apache_logs", "rb").read().splitlines(keepends=True)
with open(f"{w}/input.log", "wb") as f:
    for i in range(lines):
        f.write(source[i % len(source)])
def run(backend):
    cfg = f"{w}/{backend}.toml"
    open(cfg, "w").write(f"""[agent]
summary_interval_secs = 0
plugin_cache = false
plugin_backend = "{backend}"
data_dir = "{w}/data"

[plugins.access]
builtin = "combined"
[plugins.clean]
builtin = "strip-control"
[plugins.by-level]
builtin = "level-router"
[plugins.by-level.config]
routes = {{ alerts = ["error", "fatal"] }}

[sources.in]
type = "stdin"
plugins = ["access", "clean", "by-level"]
channels = ["main"]
routes = {{ alerts = ["main"] }}
batch_size = 512

[channels.main]
type = "memory"
capacity = 65536

[sinks.out]
type = "file"
channel = "main"
path = "{w}/out.jsonl"
format = "json"
batch_size = 4096
""")
    with open(f"{w}/input.log", "rb") as stdin:
        agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stdin=stdin,
                                 stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    out = sum(1 for _ in open(f"{w}/out.jsonl", "rb"))
    os.remove(f"{w}/out.jsonl")
    assert out == lines, (out, lines)
    return (ru.ru_utime + ru.ru_stime) / lines * 1e6, ru.ru_maxrss / 1024
for round in range(3):
    figures = {b: run(b) for b in ["cranelift", "pulley"]}
    (c, c_rss), (p, p_rss) = figures["cranelift"], figures["pulley"]
    print(f"round {round + 1}: {lines:,} lines: cranelift {c:.2f} µs/line (RSS {c_rss:.0f} MiB), "
          f"pulley {p:.2f} µs/line (RSS {p_rss:.0f} MiB): {p / c:.1f}×", flush=True)
PY
