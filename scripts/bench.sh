#!/usr/bin/env bash
# The benchmarks, in one run (release builds):
#  1. the WASM boundary: the combined parser as a component vs the same code native,
#     batch sizes 1/64/1024 (host/benches/plugin_boundary.rs);
#  2. end to end: LINES access-log lines (the vendored 10,000-line log repeated) through
#     file source → combined → field-filter → file sink, reporting lines/s, CPU µs/line
#     and peak RSS of the agent process;
#  3. end to end over HTTP: the same pipeline into the `http` sink (gzip) and a local
#     receiver, with a memory channel and with a file channel (fsync per put), next to
#     the file-sink pipeline of section 2 run again as the in-run reference;
#  4. start-up: `validate` of the embedded default and `run` of the section 2 pipeline on
#     one line, with the builtins precompiled into the agent and with the same plugins
#     as files compiled at start, each with the compile cache cold and warm;
#  5. hot reload: file renamed over the plugin → first event processed by the new version,
#     with a line every millisecond flowing, cold (new component) and warm (compiled before);
#  6. what the filter step costs: the section 2 pipeline with a filter that keeps every
#     event (same output) against the same pipeline without it, alternated three times;
#  7. many sources: 64 file sources (30,000 lines each) sharing the section 2 plugin
#     chain, peak RSS and CPU, next to the same 64 sources without plugins;
#  8. instructions per line (callgrind); 9. the same plugin in each SDK language
#     (scripts/bench-sdk.sh); 10. edge → collector forwarding beside the same edge
#     writing a local file (scripts/bench-forward.sh); 11. the kafka sink to a local
#     tansu broker beside the same pipeline writing a local file (scripts/bench-kafka.sh);
#     12. the webhdfs sink to the WebHDFS protocol stand-in, beside the same pipeline
#     writing a local file (scripts/bench-webhdfs.sh); 13. the syslog source over UDP
#     at 50k, 100k and 200k messages/s, syslog over TCP, tcp and http at 100k
#     (scripts/bench-network-sources.sh); 14. the mqtt source through mosquitto at QoS 0
#     and 1 (scripts/bench-mqtt.sh); 15. the plugin backends, Cranelift and Pulley
#     (scripts/bench-backend.sh). By hand: 16./17. the edge targets
#     (scripts/bench-targets.sh), 18. memory under attack (scripts/bench-attacks.sh).
# Usage: scripts/bench.sh [LINES]   (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-2000000}
DATA=tests/data/apache_access/apache_logs
WORK=target/bench
mkdir -p "$WORK"

features=()
scripts/setup.sh || features=(--no-default-features --features compiler,all-arch)
scripts/build-release.sh

echo "== 1. WASM boundary =="
cargo bench -p runnel --bench plugin_boundary "${features[@]}"

echo
echo "== 1b. channels: put + take, memory vs file (fsync per put, every interval, never) =="
cargo bench -p runnel --bench channel "${features[@]}"

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

echo
echo "== 3. end to end over HTTP: $LINES lines, file → combined → field-filter → channel → http (gzip NDJSON) =="
# The same input and plugins as section 2, sent by the `http` sink (gzip) to the local
# receiver (tests/peers/http_receiver.py --count-only), once with a memory channel and
# once with a file channel (fsync per put). The file-sink pipeline of section 2 runs again
# as the in-run reference, and its output line count is the number of events the
# receiver must have got from each HTTP run. The agent's CPU and peak RSS are its own
# (wait4 on its pid); the receiver runs apart and its CPU is shown for information.
# Each config's start-up is measured on the one-line input, as in section 2.
python3 - "$LINES" "$PWD/$IN" "$PWD/$ONE" "$PWD/$WORK" <<'PY'
import json, os, shutil, signal, subprocess, sys, time, urllib.request
lines, inp, one, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
TICK = os.sysconf("SC_CLK_TCK")

def proc_cpu(pid):
    """utime + stime of a running process, in seconds (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK

def make_config(template, tag, source, addr, sink_out):
    text = open(template).read()
    text = (text.replace("RUNNEL_BENCH_IN", source)
                .replace("RUNNEL_BENCH_OUT", sink_out)
                .replace("RUNNEL_BENCH_URI", addr)
                .replace("RUNNEL_BENCH_DATA", f"{work}/data-{tag}")
                .replace("RUNNEL_BENCH_CHANNEL_DIR", f"{work}/channel-{tag}"))
    if tag.startswith("e2e-http-memory-gzip6"):
        text = text.replace('compression = "gzip"', 'compression = "gzip"\ncompression_level = 6')
    elif tag.startswith("e2e-http-memory-plain"):
        text = text.replace('compression = "gzip"', 'compression = "none"')
    path = f"{work}/{tag}.toml"
    with open(path, "w") as f:
        f.write(text)
    return path

def run_agent(config, tag):
    """Runs the agent on `config` after wiping its data and channel dirs; returns
    (wall s, CPU s, peak RSS KiB) of the agent process alone."""
    for d in (f"{work}/data-{tag}", f"{work}/channel-{tag}"):
        shutil.rmtree(d, ignore_errors=True)
    log = open(f"{work}/{tag}.log", "wb")
    start = time.monotonic()
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", config],
                             stdout=subprocess.DEVNULL, stderr=log)
    _, status, ru = os.wait4(agent.pid, 0)
    wall = time.monotonic() - start
    agent.returncode = os.waitstatus_to_exitcode(status)  # reaped: keep Popen quiet
    log.close()
    if agent.returncode != 0:
        sys.stderr.write(open(f"{work}/{tag}.log", errors="replace").read()[-4000:])
        sys.exit(f"runnel exited with {agent.returncode} ({tag})")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss

receiver = subprocess.Popen(
    [sys.executable, "tests/peers/http_receiver.py", "--count-only", "--no-stdin", "--port", "0"],
    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
first = receiver.stdout.readline().split()
if len(first) != 2 or first[0] != "listening":
    receiver.kill()
    sys.exit(f"the receiver did not start: {first}")
receiver_addr = f"127.0.0.1:{first[1]}"  # the configs say http://RUNNEL_BENCH_URI/ingest
uri = f"http://{receiver_addr}/ingest"

def received():
    with urllib.request.urlopen(uri, timeout=10) as r:
        return json.load(r)["events"]

results = []
expected = None
try:
    for tag, template, what in [
        ("e2e-file-sink", "config/bench/e2e-access.toml", "file sink (reference)"),
        ("e2e-http-memory", "config/bench/e2e-http-memory.toml", "http, memory channel"),
        ("e2e-http-file", "config/bench/e2e-http-file.toml", "http, file channel fsync=batch"),
        ("e2e-http-memory-gzip6", "config/bench/e2e-http-memory.toml", "  same, memory, gzip level 6"),
        ("e2e-http-memory-plain", "config/bench/e2e-http-memory.toml", "  same, memory, no compression"),
    ]:
        out = f"{work}/{tag}.jsonl"
        config = make_config(template, tag, inp, receiver_addr, out)
        config_one = make_config(template, tag + "-1", one, receiver_addr, f"{work}/{tag}-1.jsonl")
        for p in (out, f"{work}/{tag}-1.jsonl"):
            if os.path.exists(p):
                os.remove(p)
        _, startup, _ = run_agent(config_one, tag + "-1")
        got_before, rcpu_before = received(), proc_cpu(receiver.pid)
        wall, cpu, rss = run_agent(config, tag)
        got, rcpu = received() - got_before, proc_cpu(receiver.pid) - rcpu_before
        if template.endswith("e2e-access.toml"):
            with open(out, "rb") as f:
                expected = sum(1 for _ in f)
            events = expected
        else:
            events = got
            if got != expected:
                sys.exit(f"FAIL: {what}: the receiver got {got:,} events, "
                         f"the file sink wrote {expected:,}")
        results.append((what, events, wall, cpu, startup, rss, rcpu))
finally:
    receiver.send_signal(signal.SIGTERM)
    final = receiver.stdout.read().strip().splitlines()
    _, _, rru = os.wait4(receiver.pid, 0)
    receiver.returncode = 0

print(f"lines in {lines:,}; events out (after the filter) {expected:,}; receiver {uri}")
print(f"{'pipeline':<32} {'events out':>10} {'wall s':>7} {'lines/s':>10} "
      f"{'CPU s':>6} {'µs/line':>8} {'start-up s':>10} {'running µs/line':>15} "
      f"{'peak RSS MiB':>12} {'receiver CPU s':>14}")
for what, events, wall, cpu, startup, rss, rcpu in results:
    print(f"{what:<32} {events:>10,} {wall:>7.2f} {lines / wall:>10,.0f} {cpu:>6.2f} "
          f"{cpu / lines * 1e6:>8.2f} {startup:>10.2f} {(cpu - startup) / lines * 1e6:>15.2f} "
          f"{rss / 1024:>12.1f} {rcpu:>14.2f}")
print("(CPU and peak RSS: the agent process alone, from wait4; receiver CPU: the Python "
      "receiver during that run, for information)")
if final:
    st = json.loads(final[-1])
    print(f"receiver, all runs: {st['requests']:,} requests, {st['events']:,} events, "
          f"{st['bytes_wire'] / 1e6:,.1f} MB on the wire, {st['bytes_decoded'] / 1e6:,.1f} MB "
          f"after gunzip ({st['bytes_decoded'] / max(st['bytes_wire'], 1):.1f}:1), "
          f"{st['rejected_400'] + st['rejected_auth']} rejected")
PY

echo
echo "== 4. start-up: builtins precompiled vs compiled; compile cache cold vs warm =="
python3 - "$PWD/target/release/runnel" "$PWD/config/default.toml" "$PWD/$CONFIG_ONE" \
    "$PWD/target/wasm32-wasip2/release" <<'PY'
import os, re, resource, shutil, subprocess, sys, tempfile
runnel, default, config_one, wasm_dir = sys.argv[1:5]

def cpu_of(args, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

def as_files(config, work):
    """The config with every builtin named by its .wasm file instead: the same plugins,
    compiled at start (the agent embeds only the builtins' precompiled code)."""
    text = re.sub(r'builtin = "([a-z-]+)"',
                  lambda m: f'path = "{wasm_dir}/runnel_plugin_{m.group(1).replace("-", "_")}.wasm"',
                  open(config).read())
    path = os.path.join(work, "files.toml")
    open(path, "w").write(text)
    return path

print("(builtins: the shipped plugins, precompiled into the agent by scripts/build-release.sh;")
print(" files: the same .wasm files named by path, compiled at start; the cache is")
print(" <data_dir>/plugin-cache, cold = empty, warm = filled by the cold run)")
for what, args, config in [("validate, embedded default", ["validate", "--config"], default),
                           ("run to the end, 1 line, 2 plugins", ["run", "--config"], config_one)]:
    for kind in ["builtins", "files"]:
        work = tempfile.mkdtemp(prefix="runnel-startup-")
        try:
            path = config if kind == "builtins" else as_files(config, work)
            cmd = [runnel] + args + [path]
            cold = cpu_of(cmd, work)
            warm = sorted(cpu_of(cmd, work) for _ in range(5))
            print(f"{what:<34} {kind:<9} cold {cold * 1000:6.0f} ms CPU   warm {warm[2] * 1000:4.0f} ms CPU "
                  f"(median of 5; {warm[0] * 1000:.0f}–{warm[-1] * 1000:.0f})")
        finally:
            shutil.rmtree(work)
PY

echo
echo "== 5. hot reload: plugin file replaced → first event from the new version =="
python3 - "$PWD/target/release/runnel" "$PWD/target/wasm32-wasip2/release/runnel_test_versioned.wasm" <<'PY'
import os, subprocess, sys, tempfile, threading, time, json, statistics
runnel, fixture = sys.argv[1], sys.argv[2]
marker = b"RUNNEL-FIXTURE-VERSION:"
base = open(fixture, "rb").read()
at = base.index(marker) + len(marker)
def version(n):
    return base[:at] + b"%05d" % n + base[at + 5:]
work = tempfile.mkdtemp(prefix="runnel-reload-")
plugin = os.path.join(work, "plugin.wasm")
open(plugin, "wb").write(version(1))
config = os.path.join(work, "runnel.toml")
open(config, "w").write(f"""
[agent]
summary_interval_secs = 0
data_dir = "{work}/data"
[plugins.v]
path = "{plugin}"
[sources.in]
type = "stdin"
plugins = ["v"]
channels = ["main"]
batch_timeout_ms = 1
[channels.main]
type = "memory"
[sinks.out]
type = "console"
channel = "main"
format = "json"
batch_timeout_ms = 1
""")
agent = subprocess.Popen([runnel, "run", "--config", config], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
first_seen = {}
def read():
    for line in agent.stdout:
        v = json.loads(line)["fields"].get("version")
        first_seen.setdefault(v, time.monotonic())
threading.Thread(target=read, daemon=True).start()
stop = False
def write():
    i = 0
    while not stop:
        agent.stdin.write(b"id=%d\n" % i); agent.stdin.flush(); i += 1
        time.sleep(0.001)
threading.Thread(target=write, daemon=True).start()
def swap(n):
    tmp = plugin + ".new"
    open(tmp, "wb").write(version(n))
    start = time.monotonic()
    os.rename(tmp, plugin)
    while n not in first_seen:
        if time.monotonic() - start > 30: sys.exit(f"version {n} never served")
        time.sleep(0.0005)
    return (first_seen[n] - start) * 1000
while 1 not in first_seen: time.sleep(0.01)
cold = [swap(n) for n in (2, 3)]
# Versions 2 and 3 are compiled now: alternate between them (a new number each time is
# a new component, so alternate by re-using the same bytes under new versions' order).
warm = []
for i in range(10):
    n = 2 if i % 2 == 0 else 3
    first_seen.pop(n, None)
    warm.append(swap(n))
stop = True
agent.stdin.close(); agent.wait()
print(f"cold (compiles a new component): {', '.join(f'{c:.0f}' for c in cold)} ms")
print(f"warm (compiled before, in the engine's cache): median {statistics.median(warm):.1f} ms, "
      f"range {min(warm):.1f}–{max(warm):.1f} ms over {len(warm)} swaps")
PY

echo
echo "== 6. the filter step: section 2 pipeline with a keep-everything filter vs without it =="
python3 - "$PWD/$IN" "$PWD/$WORK" "$LINES" <<'PY'
import os, resource, statistics, subprocess, sys
inp, work, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
template = open("config/bench/e2e-access.toml").read().replace("RUNNEL_BENCH_IN", inp)
def config(tag, with_filter):
    text = template.replace("RUNNEL_BENCH_OUT", f"{work}/filter-{tag}.jsonl")
    if with_filter:
        # The same filter on a prefix no path has: every event kept, the output the same.
        text = text.replace('value = "/images/"', 'value = "/no-such-prefix/"')
    else:
        text = text.replace('plugins = ["access", "no-images"]', 'plugins = ["access"]')
    path = f"{work}/filter-{tag}.toml"
    open(path, "w").write(text)
    return path
def cpu(path):
    out = path.replace(".toml", ".jsonl")
    if os.path.exists(out):
        os.remove(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["target/release/runnel", "run", "--config", path], stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / lines * 1e6
with_f, without = config("with", True), config("without", False)
cpu(with_f)  # warm the compile and page caches
a, b = [], []
for _ in range(3):
    a.append(cpu(with_f)); b.append(cpu(without))
ratios = [x / y - 1 for x, y in zip(a, b)]
print(f"with the filter    {statistics.median(a):.2f} µs/line (runs {', '.join(f'{x:.2f}' for x in a)})")
print(f"without it         {statistics.median(b):.2f} µs/line (runs {', '.join(f'{x:.2f}' for x in b)})")
print(f"filter step        {statistics.median(ratios) * 100:+.0f}% (pairs: {', '.join(f'{r * 100:+.0f}%' for r in ratios)})")
PY

echo
echo "== 7. 64 file sources × 30,000 lines through combined → field-filter: peak RSS =="
python3 - "$PWD/$DATA" "$PWD/$WORK/sources64" <<'PY'
import os, resource, shutil, subprocess, sys
data, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
lines = open(data).read().splitlines() * 3
def config(with_plugins):
    cfg = ["[agent]", "summary_interval_secs = 0", f'data_dir = "{work}/data"',
           "[plugins.access]", 'builtin = "combined"',
           "[plugins.no-images]", 'builtin = "field-filter"', "[plugins.no-images.config]",
           'field = "path"', 'op = "prefix"', 'value = "/images/"', 'action = "drop"']
    for i in range(64):
        cfg += [f"[sources.s{i}]", 'type = "file"', f'path = "{work}/in-{i}.log"',
                'read_from = "start"', "exit_on_eof = true", 'channels = ["main"]',
                'plugins = ["access", "no-images"]' if with_plugins else 'plugins = []']
    cfg += ["[channels.main]", 'type = "memory"', "[sinks.out]", 'type = "file"',
            'channel = "main"', f'path = "{work}/out.jsonl"', 'format = "json"']
    path = f"{work}/{'plugins' if with_plugins else 'bare'}.toml"
    open(path, "w").write("\n".join(cfg) + "\n")
    return path
for i in range(64):
    open(f"{work}/in-{i}.log", "w").write("\n".join(lines) + "\n")
for what, with_plugins in [("64 sources, no plugins (reference)", False), ("64 sources, 2-plugin chain", True)]:
    path = config(with_plugins)
    subprocess.run(["target/release/runnel", "validate", "--config", path],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    if os.path.exists(f"{work}/out.jsonl"):
        os.remove(f"{work}/out.jsonl")
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", path], stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(agent.pid, 0)
    agent.returncode = 0
    out = sum(1 for _ in open(f"{work}/out.jsonl"))
    print(f"{what:<38} peak RSS {ru.ru_maxrss / 1024:6.1f} MiB, CPU {ru.ru_utime + ru.ru_stime:5.2f} s, {out:,} events out")
shutil.rmtree(work, ignore_errors=True)
PY

echo
echo "== 8. instructions per line (callgrind): section 2 pipeline on 100,000 lines =="
# Wall-clock CPU on this VM spreads ±15% from run to run; instruction counts do not
# (the same binary and input give the same count within 0.5%). Compare a change with
# the previous commit by building both and running this section on each.
if command -v valgrind >/dev/null; then
    W8="$WORK/callgrind"
    rm -rf "$W8" && mkdir -p "$W8"
    head -n 100000 "$IN" > "$W8/in.log"
    sed -e "s|RUNNEL_BENCH_IN|$PWD/$W8/in.log|" -e "s|RUNNEL_BENCH_OUT|$PWD/$W8/out.jsonl|" \
        -e "s|^summary_interval_secs = 0|summary_interval_secs = 0\ndata_dir = \"$PWD/$W8/data\"|" \
        config/bench/e2e-access.toml > "$W8/config.toml"
    # Once on one line to fill the compile cache, under valgrind too (its CPU has other
    # features, so the cache keeps other entries for it): the count is then the
    # pipeline's, not Cranelift's.
    head -n 1 "$W8/in.log" > "$W8/one.log"
    sed -e "s|$PWD/$W8/in.log|$PWD/$W8/one.log|" "$W8/config.toml" > "$W8/one.toml"
    valgrind --tool=none target/release/runnel run --config "$W8/one.toml" >/dev/null 2>&1
    rm -f "$W8/out.jsonl"
    ir=$(valgrind --tool=callgrind --smc-check=all --callgrind-out-file="$W8/callgrind.out" \
        target/release/runnel run --config "$W8/config.toml" 2>&1 | sed -n 's/.*Collected : //p')
    echo "instructions     $ir = $((ir / 100000)) per line ($(wc -l < "$W8/out.jsonl") events out)"
else
    echo "valgrind not installed: skipped"
fi

echo
echo "== 9. the same plugin in each SDK language (scripts/bench-sdk.sh) =="
scripts/bench-sdk.sh "$IN"

echo
echo "== 10. edge → collector forwarding (scripts/bench-forward.sh) =="
scripts/bench-forward.sh "$LINES"

echo
echo "== 11. the kafka sink to a local broker (scripts/bench-kafka.sh) =="
scripts/bench-kafka.sh "$LINES"
scripts/bench-kafka-clients.sh "$LINES"

echo
echo "== 12. the webhdfs sink to the WebHDFS stand-in (scripts/bench-webhdfs.sh) =="
scripts/bench-webhdfs.sh "$LINES"

echo
echo "== 13. the network sources (scripts/bench-network-sources.sh) =="
scripts/bench-network-sources.sh

echo
echo "== 14. the mqtt source through mosquitto (scripts/bench-mqtt.sh) =="
scripts/bench-mqtt.sh

echo
echo "== 15. the plugin backends, Cranelift and Pulley (scripts/bench-backend.sh) =="
scripts/bench-backend.sh
