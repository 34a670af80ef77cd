#!/usr/bin/env python3
"""Runnel end-to-end test peer: the "central endpoint" the agent's `http` sink
delivers to.

A real HTTP/1.1 server (standard library only) that accepts NDJSON or JSON-array
POST bodies (optionally gzip-compressed), verifies optional bearer/basic auth and
an HMAC-SHA256 request signature, writes each event as one compact JSON line to
--out, and lets a test drive outages / permanent errors via commands on stdin.

See tests/peers/README.md for the command line and the stdin protocol.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import hashlib
import hmac
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import socketserver

VERBOSE = False


def log(msg: str) -> None:
    if VERBOSE:
        try:
            sys.stderr.write("[http_receiver] %s\n" % msg)
            sys.stderr.flush()
        except Exception:
            pass


# --------------------------------------------------------------------------
# stdout protocol (only "listening <port>", "ok <cmd>", "error <cmd>", status)
# --------------------------------------------------------------------------
_stdout_lock = threading.Lock()


def emit(line: str) -> None:
    with _stdout_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass


# --------------------------------------------------------------------------
# shared state
# --------------------------------------------------------------------------
class State:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.lock = threading.Lock()  # counters, mode, marker
        self.write_lock = threading.Lock()  # output files
        self.mode = "ok"
        self.reject_marker: bytes | None = None
        self.exiting = threading.Event()
        # counters
        self.requests = 0  # every POST/PUT received, however answered
        self.accepted = 0  # answered 200
        self.events = 0  # events accepted (written or counted)
        self.rejected_400 = 0
        self.rejected_auth = 0
        self.answered_503 = 0
        self.answered_429 = 0
        self.answered_other = 0  # `mode <code>` for codes other than 503/429
        self.hung = 0  # requests dropped unanswered by `mode hang`
        self.held = 0  # requests stored, then left unanswered by `mode hold`
        self.dropped = 0  # requests dropped because of `mode refuse` races
        self.bytes_wire = 0  # accepted body bytes as sent (possibly gzip)
        self.bytes_decoded = 0  # accepted body bytes after gunzip
        self.paths: dict[str, int] = {}
        self.first_accept: float | None = None
        self.last_accept: float | None = None

        self.out = open(args.out, "a", encoding="utf-8") if args.out else None
        self.requests_out = (
            open(args.requests_out, "a", encoding="utf-8") if args.requests_out else None
        )

        self.hmac_key: bytes | None = None
        if args.hmac_key_file:
            with open(args.hmac_key_file, "rb") as f:
                self.hmac_key = f.read().rstrip(b"\r\n")

        self.expect_headers: list[tuple[str, str]] = []
        for spec in args.expect_header or []:
            if ":" not in spec:
                raise SystemExit("--expect-header must be NAME:VALUE, got %r" % spec)
            name, value = spec.split(":", 1)
            self.expect_headers.append((name.strip(), value.strip()))

        self.basic: bytes | None = args.basic.encode("utf-8") if args.basic else None
        self.bearer: bytes | None = args.bearer.encode("utf-8") if args.bearer else None

    def status(self) -> dict:
        with self.lock:
            elapsed = 0.0
            if self.first_accept is not None and self.last_accept is not None:
                elapsed = round(self.last_accept - self.first_accept, 6)
            return {
                "requests": self.requests,
                "events": self.events,
                "rejected_400": self.rejected_400,
                "rejected_auth": self.rejected_auth,
                "answered_503": self.answered_503,
                "answered_429": self.answered_429,
                "answered_other": self.answered_other,
                "accepted": self.accepted,
                "hung": self.hung,
                "held": self.held,
                "dropped": self.dropped,
                "bytes_wire": self.bytes_wire,
                "bytes_decoded": self.bytes_decoded,
                "elapsed_s": elapsed,
                "mode": self.mode,
                "paths": dict(self.paths),
            }

    def close_files(self) -> None:
        got = self.write_lock.acquire(timeout=2.0)
        try:
            for f in (self.out, self.requests_out):
                if f is not None:
                    try:
                        f.flush()
                        f.close()
                    except Exception:
                        pass
        finally:
            if got:
                self.write_lock.release()


STATE: State  # set in main()


class BadRequest(Exception):
    """Body/protocol problem -> 400 with a short reason."""


# --------------------------------------------------------------------------
# body decoding / parsing
# --------------------------------------------------------------------------
def gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise BadRequest("invalid gzip body: %s" % e) from None


def _first_non_ws(data: bytes) -> int | None:
    for b in data:
        if b not in b" \t\r\n":
            return b
    return None


def parse_events(data: bytes) -> list:
    """NDJSON or JSON array (sniffed by the first non-whitespace byte)."""
    first = _first_non_ws(data)
    if first is None:
        return []
    if first == ord("["):
        try:
            arr = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest("invalid JSON array: %s" % e) from None
        if not isinstance(arr, list):
            raise BadRequest("JSON body is not an array")
        for i, obj in enumerate(arr):
            if not isinstance(obj, dict):
                raise BadRequest("array element %d is not a JSON object" % i)
        return arr
    events = []
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest("invalid NDJSON at line %d: %s" % (lineno, e)) from None
        if not isinstance(obj, dict):
            raise BadRequest("NDJSON line %d is not a JSON object" % lineno)
        events.append(obj)
    return events


def count_events(data: bytes) -> int:
    """--count-only: newlines for NDJSON, length for a JSON array."""
    first = _first_non_ws(data)
    if first is None:
        return 0
    if first == ord("["):
        try:
            arr = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest("invalid JSON array: %s" % e) from None
        if not isinstance(arr, list):
            raise BadRequest("JSON body is not an array")
        return len(arr)
    n = data.count(b"\n")
    if not data.endswith(b"\n"):
        n += 1
    return n


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK would add ~40 ms to every answer.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "runnel-http-receiver/1"
    sys_version = ""
    timeout = None  # never time out idle keep-alive connections ourselves

    # ---- logging: nothing on stdout
    def log_message(self, format: str, *args) -> None:  # noqa: A002
        log("%s - %s" % (self.address_string(), format % args))

    # ---- low-level helpers
    def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
               extra: dict | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except (ConnectionError, OSError, ValueError):
            self.close_connection = True

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("eof in chunked body")
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if size < 0:
                raise BadRequest("bad chunk size")
            if size == 0:
                # trailers until empty line
                while True:
                    t = self.rfile.readline(65537)
                    if not t:
                        raise ConnectionError("eof in chunked trailers")
                    if t in (b"\r\n", b"\n"):
                        return b"".join(parts)
            data = self.rfile.read(size)
            if len(data) != size:
                raise ConnectionError("eof in chunk")
            parts.append(data)
            crlf = self.rfile.readline(3)
            if crlf not in (b"\r\n", b"\n"):
                raise BadRequest("missing CRLF after chunk")

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            return self._read_chunked()
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""  # HTTP/1.1 request without length framing has no body
        try:
            n = int(cl.strip())
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if n < 0:
            raise BadRequest("bad Content-Length")
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise ConnectionError("client closed mid-body (%d/%d bytes)" % (len(data), n))
        return data

    # ---- request record (--requests-out)
    def _record(self, code: int, reason: str, events: int, wire: int) -> None:
        st = STATE
        if st.requests_out is None:
            return
        rec = {
            "method": self.command,
            "path": self.path,
            "status": code,
            "reason": reason,
            "events": events,
            "bytes_wire": wire,
            "content_type": self.headers.get("Content-Type"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "headers": {k: v for k, v in self.headers.items()},
            "time": time.time(),
        }
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with st.write_lock:
            try:
                st.requests_out.write(line)
                st.requests_out.flush()
            except ValueError:
                pass

    def _reject(self, code: int, reason: str, wire: int, counter: str,
                extra: dict | None = None) -> None:
        st = STATE
        with st.lock:
            setattr(st, counter, getattr(st, counter) + 1)
        self._record(code, reason, 0, wire)
        log("%s %s -> %d %s" % (self.command, self.path, code, reason))
        self._reply(code, (reason + "\n").encode("utf-8"), extra=extra)

    # ---- auth
    def _check_auth(self) -> str | None:
        st = STATE
        authz = self.headers.get("Authorization") or ""
        if st.bearer is not None:
            scheme, _, token = authz.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode("utf-8"), st.bearer
            ):
                return "bad or missing bearer token"
        if st.basic is not None:
            scheme, _, cred = authz.partition(" ")
            if scheme.lower() != "basic":
                return "missing basic auth"
            try:
                decoded = base64.b64decode(cred.strip(), validate=True)
            except (binascii.Error, ValueError):
                return "bad basic auth encoding"
            if not hmac.compare_digest(decoded, st.basic):
                return "bad basic auth credentials"
        return None

    def _check_signature(self, body: bytes) -> str | None:
        st = STATE
        if st.hmac_key is None:
            return None
        ts = self.headers.get("X-Runnel-Timestamp")
        sig = self.headers.get("X-Runnel-Signature")
        if not ts or not sig:
            return "missing signature"
        ts = ts.strip()
        try:
            ts_val = float(ts)
            if not math.isfinite(ts_val):
                raise ValueError
        except ValueError:
            return "bad timestamp"
        expected = hmac.new(st.hmac_key, ts.encode("ascii", "replace") + b"." + body,
                            hashlib.sha256).hexdigest()
        ok = False
        for part in sig.split(","):
            ver, _, digest = part.strip().partition("=")
            if ver == "v1" and hmac.compare_digest(digest.strip().encode("ascii", "replace"),
                                                   expected.encode("ascii")):
                ok = True
        if not ok:
            return "bad signature"
        if abs(time.time() - ts_val) > st.args.replay_window:
            return "stale timestamp"
        return None

    # ---- methods
    def do_GET(self) -> None:  # handy for debugging: current status
        body = (json.dumps(STATE.status(), separators=(",", ":")) + "\n").encode()
        self._reply(200, body, "application/json")

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        st = STATE
        with st.lock:
            st.requests += 1
            st.paths[self.path] = st.paths.get(self.path, 0) + 1

        # 1. body (always drained so keep-alive framing stays intact)
        try:
            wire = self._read_body()
        except BadRequest as e:
            self.close_connection = True
            self._reject(400, str(e), 0, "rejected_400")
            return
        except (ConnectionError, OSError, ValueError) as e:
            log("read error: %s" % e)
            self.close_connection = True
            with st.lock:
                st.dropped += 1
            return

        # 2. behaviour mode
        with st.lock:
            mode = st.mode
        if mode == "hang":
            with st.lock:
                st.hung += 1
            log("hanging %s %s" % (self.command, self.path))
            while not st.exiting.is_set():
                with st.lock:
                    if st.mode != "hang":
                        break
                time.sleep(0.05)
            # the client has given up by now; drop without answering or writing
            self.close_connection = True
            self._record(0, "hung (dropped unanswered)", 0, len(wire))
            return
        if mode == "refuse":
            # accepted just before the listener closed: behave like a dead server
            self.close_connection = True
            with st.lock:
                st.dropped += 1
            return
        if mode not in ("ok", "hold"):
            code = int(mode)
            extra = {"Retry-After": "1"} if code in (503, 429) else None
            counter = {503: "answered_503", 429: "answered_429"}.get(code, "answered_other")
            self._reject(code, "mode %d" % code, len(wire), counter, extra)
            return

        # 3. auth + signature
        reason = self._check_auth()
        if reason is None:
            reason = self._check_signature(wire)
        if reason is not None:
            self._reject(401, reason, len(wire), "rejected_auth",
                         {"WWW-Authenticate": 'Bearer realm="runnel"'} if st.bearer else
                         {"WWW-Authenticate": 'Basic realm="runnel"'} if st.basic else None)
            return

        # 4. required headers
        for name, value in st.expect_headers:
            got = self.headers.get(name)
            if got is None or got.strip() != value:
                self._reject(400, "missing or wrong header %s" % name, len(wire), "rejected_400")
                return

        # 5. decode, reject-marker, parse, write
        try:
            enc = (self.headers.get("Content-Encoding") or "identity").strip().lower()
            if enc in ("gzip", "x-gzip"):
                data = gunzip(wire)
            elif enc in ("identity", ""):
                data = wire
            else:
                raise BadRequest("unsupported Content-Encoding %r" % enc)
            with st.lock:
                marker = st.reject_marker
            if marker is not None and marker in data:
                raise BadRequest("reject-marker matched")
            if st.args.count_only:
                n = count_events(data)
                events = None
            else:
                events = parse_events(data)
                n = len(events)
        except BadRequest as e:
            self._reject(400, str(e), len(wire), "rejected_400")
            return

        if events is not None and st.out is not None and events:
            payload = "".join(json.dumps(obj, separators=(",", ":")) + "\n" for obj in events)
            with st.write_lock:
                try:
                    st.out.write(payload)
                    st.out.flush()
                except ValueError:  # closed during shutdown
                    self.close_connection = True
                    return
        now = time.time()
        with st.lock:
            st.accepted += 1
            st.events += n
            st.bytes_wire += len(wire)
            st.bytes_decoded += len(data)
            if st.first_accept is None:
                st.first_accept = now
            st.last_accept = now
        if mode == "hold":
            # stored, but the answer never comes: the sender cannot know it arrived
            with st.lock:
                st.held += 1
            log("holding %s %s" % (self.command, self.path))
            while not st.exiting.is_set():
                with st.lock:
                    if st.mode != "hold":
                        break
                time.sleep(0.05)
            self.close_connection = True
            self._record(200, "held (stored, dropped unanswered)", n, len(wire))
            return
        self._record(200, "ok", n, len(wire))
        self._reply(200, b"{}", "application/json")


# --------------------------------------------------------------------------
# server + listener control (refuse mode closes the listening socket)
# --------------------------------------------------------------------------
class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, handler):
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def server_bind(self) -> None:
        # skip HTTPServer.server_bind's socket.getfqdn() (may do slow DNS)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if VERBOSE:
            sys.stderr.write("error handling request from %s:\n" % (client_address,))
            traceback.print_exc(file=sys.stderr)


class Listener:
    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.server: Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        deadline = time.time() + 10.0
        while True:
            try:
                srv = Server((self.host, self.port), Handler)
                break
            except OSError as e:
                if self.port == 0 or time.time() > deadline:
                    raise
                log("re-bind of port %d failed (%s); retrying" % (self.port, e))
                time.sleep(0.1)
        self.server = srv
        self.port = srv.server_address[1]
        self.thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="http-serve", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        srv = self.server
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        srv.close_all_connections()
        self.server = None
        self.thread = None

    @property
    def running(self) -> bool:
        return self.server is not None


LISTENER: Listener
_mode_lock = threading.Lock()  # serialises mode transitions (start/stop)


def parse_mode(word: str) -> str | None:
    word = word.strip().lower()
    if word in ("ok", "refuse", "hang", "hold"):
        return word
    if word.isdigit() and len(word) == 3 and 400 <= int(word) <= 599:
        return word
    return None


def set_mode(new: str) -> None:
    with _mode_lock:
        if new == "refuse":
            with STATE.lock:
                STATE.mode = new
            LISTENER.stop()
        else:
            with STATE.lock:
                STATE.mode = new
            if not LISTENER.running:
                LISTENER.start()


# --------------------------------------------------------------------------
# stdin control protocol
# --------------------------------------------------------------------------
def handle_command(line: str) -> None:
    cmd = line.strip()
    if not cmd:
        return
    word, _, rest = cmd.partition(" ")
    if word == "mode":
        m = parse_mode(rest)
        if m is None:
            emit("error %s" % cmd)
            return
        set_mode(m)
        emit("ok %s" % cmd)
    elif word == "reject-marker":
        text = rest.strip()
        with STATE.lock:
            STATE.reject_marker = text.encode("utf-8") if text else None
        emit("ok %s" % cmd)
    elif word == "status":
        emit(json.dumps(STATE.status(), separators=(",", ":")))
    elif word in ("quit", "exit"):
        STATE.exiting.set()
    else:
        emit("error %s" % cmd)


def stdin_loop() -> None:
    try:
        while not STATE.exiting.is_set():
            line = sys.stdin.readline()
            if not line:
                break
            try:
                handle_command(line)
            except Exception as e:  # never let a bad command kill the reader
                log("command %r failed: %s" % (line, e))
                emit("error %s" % line.strip())
    except (OSError, ValueError):
        pass
    STATE.exiting.set()


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    global VERBOSE, STATE, LISTENER
    p = argparse.ArgumentParser(description="Runnel e2e HTTP receiver (central endpoint peer)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0 = pick a free one)")
    p.add_argument("--out", help="append one compact JSON line per accepted event here")
    p.add_argument("--requests-out", help="append one JSON line per POST (path, status, headers...)")
    p.add_argument("--count-only", action="store_true",
                   help="benchmark mode: count events/bytes, do not parse or write events")
    p.add_argument("--mode", default="ok", help="initial mode: ok|503|429|refuse|hang|<4xx/5xx>")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--bearer", metavar="TOKEN")
    auth.add_argument("--basic", metavar="USER:PASS")
    p.add_argument("--hmac-key-file", metavar="PATH")
    p.add_argument("--replay-window", type=float, default=300.0,
                   help="max |now - X-Runnel-Timestamp| in seconds (default 300)")
    p.add_argument("--expect-header", action="append", metavar="NAME:VALUE")
    p.add_argument("--no-stdin", action="store_true",
                   help="do not read control commands from stdin (and ignore stdin EOF)")
    p.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = p.parse_args(argv)

    VERBOSE = args.verbose
    initial = parse_mode(args.mode)
    if initial is None:
        p.error("bad --mode %r" % args.mode)

    STATE = State(args)
    with STATE.lock:
        STATE.mode = initial
    LISTENER = Listener(args.host, args.port)
    LISTENER.start()
    if initial == "refuse":
        LISTENER.stop()  # port picked and remembered; closed before we announce it
    emit("listening %d" % LISTENER.port)

    def on_signal(signum, frame):
        STATE.exiting.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if not args.no_stdin:
        threading.Thread(target=stdin_loop, name="stdin", daemon=True).start()

    while not STATE.exiting.wait(0.2):
        pass

    emit(json.dumps(STATE.status(), separators=(",", ":")))
    STATE.close_files()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    # os._exit: the stdin reader thread may be blocked in readline() holding
    # the stdin buffer lock, which would make normal interpreter shutdown abort.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
