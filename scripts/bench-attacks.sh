#!/usr/bin/env bash
# Section 18 of the benchmarks: the agent's memory under the attacks of issue 26's
# security review, against the agent under test and a REFERENCE binary (an older build,
# e.g. of the commit before the hardening) in the same run. Per attack and binary: the
# agent's resident set before (VmRSS, started and idle) and its peak (VmHWM) once the
# attack is over, and whether a real client was served afterwards:
#  - forward: 40 connections send `RNF1`, 16 random bytes and the length 64 MiB, then
#    nothing (they hold the connection for 5 s);
#  - http: the gzip of 10 MiB of newlines (~10 KB), three requests at once;
#  - slowloris: 64 connections send a partial request head and hold it; then a real
#    client posts one line (its answer and how long it took).
# Usage: scripts/bench-attacks.sh [BINARY]   (REFERENCE=path/to/old/runnel; default
# binary: target/release/runnel, else target/debug/runnel). The memory figures are
# allocations the attacks cause, not code speed: debug and release builds give the same.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [ -z "$BIN" ]; then
    if [ -x target/release/runnel ]; then BIN=target/release/runnel; else BIN=target/debug/runnel; fi
fi
W=target/bench/attacks
rm -rf "$W" && mkdir -p "$W"
python3 - "$W" "$BIN" "${REFERENCE:-}" <<'PY'
import gzip, os, socket, subprocess, sys, threading, time, urllib.request

w, binary, reference = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0

def wait_listening(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")

def agent(binary, name, source):
    d = f"{w}/{name}"; os.makedirs(d, exist_ok=True)
    cfg = f"{d}/runnel.toml"
    open(cfg, "w").write(f"""[agent]
data_dir = "{d}/data"
summary_interval_secs = 0

{source}
channels = ["main"]

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "{d}/out.log"
format = "raw"
""")
    p = subprocess.Popen([binary, "run", "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(f"{d}/agent.log", "w"), env={**os.environ, "RUNNEL_LOG": "warn"})
    return p

def post(port, body, headers, timeout=30):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST", headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - started
    except Exception as e:
        return type(e).__name__, time.monotonic() - started

def forward(binary, tag):
    key = f"{w}/forward.key"
    if not os.path.exists(key):
        open(key, "wb").write(subprocess.check_output([binary, "forward", "keygen"]))
    port = free_port()
    p = agent(binary, f"forward-{tag}", f'[sources.edges]\ntype = "forward"\nlisten = "127.0.0.1:{port}"\nkey_file = "{key}"')
    wait_listening(port); time.sleep(0.5)
    before = status(p.pid, "VmRSS:")
    conns = []
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(b"RNF1" + os.urandom(16) + (64 << 20).to_bytes(4, "little"))
        except OSError:
            pass
        conns.append(s)
    time.sleep(5)
    peak = status(p.pid, "VmHWM:")
    for s in conns: s.close()
    p.terminate(); p.wait()
    return before, peak, "-"

def http_bomb(binary, tag):
    port = free_port()
    p = agent(binary, f"http-{tag}", f'[sources.apps]\ntype = "http"\nlisten = "127.0.0.1:{port}"')
    wait_listening(port); time.sleep(0.5)
    before = status(p.pid, "VmRSS:")
    bomb = gzip.compress(b"\n" * (10 << 20), 9)
    results = [None] * 3
    def one(i): results[i] = post(port, bomb, {"Content-Encoding": "gzip"}, timeout=120)[0]
    ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in ts: t.start()
    for t in ts: t.join()
    peak = status(p.pid, "VmHWM:")
    after = post(port, b"one real line\n", {})
    p.terminate(); p.wait()
    return before, peak, f"answers {results}, then a real POST: {after[0]} in {after[1]:.1f} s"

def slowloris(binary, tag):
    port = free_port()
    p = agent(binary, f"slow-{tag}", f'[sources.apps]\ntype = "http"\nlisten = "127.0.0.1:{port}"\nmax_connections = 64')
    wait_listening(port); time.sleep(0.5)
    before = status(p.pid, "VmRSS:")
    conns = []
    for _ in range(64):
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nX-Slow: "); conns.append(s)
    real = post(port, b"one real line\n", {}, timeout=30)
    peak = status(p.pid, "VmHWM:")
    for s in conns: s.close()
    p.terminate(); p.wait()
    return before, peak, f"a real POST during the attack: {real[0]} in {real[1]:.1f} s"

binaries = [("this", binary)] + ([("reference", os.path.abspath(reference))] if reference else [])
print(f"{'attack':10} {'binary':10} {'RSS before':>11} {'peak RSS':>11}  real clients")
for attack in (forward, http_bomb, slowloris):
    for tag, b in binaries:
        before, peak, note = attack(b, tag)
        print(f"{attack.__name__:10} {tag:10} {before/1024:8.1f} MiB {peak/1024:8.1f} MiB  {note}", flush=True)
PY
