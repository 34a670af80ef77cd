#!/usr/bin/env bash
# Section 13 of the benchmarks: the network sources at a fixed offered load. First the
# `syslog` source over UDP:
# A Python sender paces RFC 3164 messages (~110 bytes, as a router or nginx sends them)
# at 50,000, 100,000 and 200,000 messages/s for 5 s each to a fresh agent (syslog UDP →
# memory channel → file sink, raw), on the same two cores. Printed per rate: what the
# sender achieved, what arrived, the loss rate, and the agent's CPU per message received
# (wait4, start-up included); with the system's receive buffer and with 4 MiB
# (`receive_buffer_bytes`, capped by net.core.rmem_max). Before and after, as a
# reference in the same run: the same messages as lines of a file through a `file`
# source, unparsed. Then, at 100,000 messages/s for 5 s: `syslog` over TCP (newline
# framing), `tcp` (the same lines), and `http` (POSTs of 100 lines, keep-alive, 4
# clients): what arrived and the CPU per message. Usage: scripts/bench-network-sources.sh,
# after scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
W=target/bench/network-sources
rm -rf "$W" && mkdir -p "$W"
python3 - "$W" <<'PY'
import os, signal, socket, subprocess, sys, time
w = os.path.abspath(sys.argv[1])

def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]; s.close(); return port

def run(rate, seconds, buffer):
    port = free_udp_port()
    out = f"{w}/out.log"
    extra = f"receive_buffer_bytes = {buffer}\n" if buffer else ""
    cfg = f"{w}/syslog.toml"
    open(cfg, "w").write(f"""[agent]
data_dir = "{w}/data"
summary_interval_secs = 0

[sources.udp]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:{port}"
channels = ["main"]
batch_size = 1024
{extra}
[channels.main]
type = "memory"
capacity = 65536

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "raw"
batch_size = 4096
""")
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    messages = [(f"<134>Nov 27 07:50:{i % 60:02d} gw-17 nginx[{1000 + i % 50}]: 10.0.{i % 256}.7 - - "
                 f'"GET /api/v1/items/{i} HTTP/1.1" 200 512').encode() for i in range(1000)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    send = sock.send
    sent, tick = 0, 0.001
    per_tick = rate * tick
    start = time.monotonic()
    due = 0.0
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            break
        target = int(min(now, seconds) * rate)
        while sent < target:
            try:
                send(messages[sent % 1000])
            except (BlockingIOError, ConnectionRefusedError):
                pass
            sent += 1
        time.sleep(tick / 2)
    elapsed = time.monotonic() - start
    time.sleep(1.0)
    agent.send_signal(signal.SIGTERM)
    _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    received = sum(1 for _ in open(out, "rb")) if os.path.exists(out) else 0
    os.remove(out)
    cpu = ru.ru_utime + ru.ru_stime
    print(f"offered {rate:>7,}/s  buffer {('system' if not buffer else f'{buffer >> 20} MiB'):>6}: sent {sent / elapsed:9,.0f}/s, "
          f"received {received:9,} of {sent:9,}, loss {100 * (1 - received / sent):5.2f}%, "
          f"CPU {cpu / max(received, 1) * 1e6:.2f} µs/message, peak RSS {ru.ru_maxrss / 1024:.0f} MiB", flush=True)

def reference(lines):
    """The same messages as lines of a file through a `file` source, unparsed: the
    agent's cost per line without UDP and syslog parsing, in the same run."""
    data = f"{w}/messages.log"
    with open(data, "wb") as f:
        for i in range(lines):
            f.write(f"<134>Nov 27 07:50:{i % 60:02d} gw-17 nginx[{1000 + i % 50}]: 10.0.{i % 256}.7 - - "
                    f'"GET /api/v1/items/{i % 1000} HTTP/1.1" 200 512\n'.encode())
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
    start = time.monotonic()
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    os.remove(f"{w}/out.log")
    print(f"reference: {lines:,} of the same messages as lines of a file (file source, no parsing): "
          f"CPU {(ru.ru_utime + ru.ru_stime) / lines * 1e6:.2f} µs/line", flush=True)

def stream_run(kind, rate, seconds):
    """syslog over TCP, tcp or http at `rate` messages/s: (sent, received, cpu)."""
    port = free_udp_port()
    out = f"{w}/out.log"
    source = {"syslog": f'type = "syslog"\nmode = "tcp"', "tcp": 'type = "tcp"', "http": 'type = "http"'}[kind]
    cfg = f"{w}/{kind}.toml"
    open(cfg, "w").write(f"""[agent]
data_dir = "{w}/data"
summary_interval_secs = 0

[sources.net]
{source}
listen = "127.0.0.1:{port}"
channels = ["main"]
batch_size = 1024

[channels.main]
type = "memory"
capacity = 65536

[sinks.out]
type = "file"
channel = "main"
path = "{out}"
format = "raw"
batch_size = 4096
""")
    agent = subprocess.Popen(["target/release/runnel", "run", "--config", cfg], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close(); break
        except OSError:
            time.sleep(0.05)
    lines = [(f"<134>Nov 27 07:50:{i % 60:02d} gw-17 nginx[{1000 + i % 50}]: 10.0.{i % 256}.7 - - "
              f'"GET /api/v1/items/{i} HTTP/1.1" 200 512\n').encode() for i in range(1000)]
    block = b"".join(lines[:100])
    sent = 0
    start = time.monotonic()
    if kind == "http":
        import http.client, threading
        lock = threading.Lock()
        counts = [0]
        def client(share):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            posted = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                due = int((time.monotonic() - t0) * share / 100)
                while posted < due:
                    conn.request("POST", "/", body=block)
                    answer = conn.getresponse(); answer.read()
                    if answer.status == 200:
                        with lock: counts[0] += 100
                    posted += 1
                time.sleep(0.001)
        threads = [threading.Thread(target=client, args=(rate / 4,)) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        sent = counts[0]
    else:
        conn = socket.create_connection(("127.0.0.1", port))
        while True:
            now = time.monotonic() - start
            if now >= seconds:
                break
            while sent + 100 <= int(now * rate):
                conn.sendall(block); sent += 100
            time.sleep(0.0005)
        conn.close()
    elapsed = time.monotonic() - start
    time.sleep(1.0)
    agent.send_signal(signal.SIGTERM)
    _, status, ru = os.wait4(agent.pid, 0)
    assert status == 0, status
    received = sum(1 for _ in open(out, "rb")) if os.path.exists(out) else 0
    os.remove(out)
    cpu = ru.ru_utime + ru.ru_stime
    print(f"{kind:6} at {rate:,}/s offered: sent {sent / elapsed:9,.0f}/s, received {received:,} of {sent:,}, "
          f"CPU {cpu / max(received, 1) * 1e6:.2f} µs/message, peak RSS {ru.ru_maxrss / 1024:.0f} MiB", flush=True)

reference(1_000_000)
for buffer in [None, 4 << 20]:
    for rate in [50_000, 100_000, 200_000]:
        run(rate, 5, buffer)
for kind in ["syslog", "tcp", "http"]:
    stream_run(kind, 100_000, 5)
reference(1_000_000)
PY
