#!/usr/bin/env python3
"""A WebHDFS protocol stand-in: a namenode and a datanode on two ports, storing files
under a local directory. NOT HDFS: no blocks, replication, leases or Kerberos. Written
from the Hadoop "WebHDFS REST API" document so the `webhdfs` sink can be tested where
no HDFS can be installed; it answers as the document says:

- CREATE (PUT) and APPEND (POST) to the namenode answer `307 Temporary Redirect` with
  a `Location` on the datanode port; a body sent to the namenode is refused (the
  two-step protocol exists so that data never goes there). The datanode answers
  `201 Created` (with `Location: webhdfs://…`) or `200 OK`.
- MKDIRS, RENAME (PUT), TRUNCATE (POST), DELETE answer `{"boolean": …}`;
  GETFILESTATUS and LISTSTATUS (GET) answer `{"FileStatus": …}` / `{"FileStatuses": …}`;
  OPEN (GET) redirects to the datanode, which answers the bytes.
- Errors are `{"RemoteException": {"exception", "javaClassName", "message"}}` with
  400 IllegalArgumentException, 401 SecurityException, 403 (IOException,
  FileAlreadyExistsException, AccessControlException), 404 FileNotFoundException.
- CREATE's `overwrite` defaults to false; CREATE makes missing parents.

Options: `--user U` accepts only `user.name=U`; `--delegation T` accepts `delegation=T`
too; `--lose-answers N` makes the datanode apply every Nth write and then drop the
connection without answering (a write whose outcome the client cannot know);
`--log FILE` appends one JSON line per request (method, port, op, path, body bytes).

Prints `{"namenode": PORT, "datanode": PORT}` on stdout once listening.
Usage: webhdfs_server.py --root DIR [--namenode-port P] [--datanode-port P] ...
"""

import argparse
import json
import os
import posixpath
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

PREFIX = "/webhdfs/v1"
LOCK = threading.Lock()


class RemoteError(Exception):
    STATUS = {
        "IllegalArgumentException": (400, "java.lang.IllegalArgumentException"),
        "SecurityException": (401, "java.lang.SecurityException"),
        "AccessControlException": (403, "org.apache.hadoop.security.AccessControlException"),
        "FileAlreadyExistsException": (403, "org.apache.hadoop.fs.FileAlreadyExistsException"),
        "IOException": (403, "java.io.IOException"),
        "FileNotFoundException": (404, "java.io.FileNotFoundException"),
        "UnsupportedOperationException": (400, "java.lang.UnsupportedOperationException"),
    }

    def __init__(self, exception, message):
        super().__init__(message)
        self.exception = exception
        self.message = message

    def answer(self):
        status, java = self.STATUS[self.exception]
        return status, {
            "RemoteException": {
                "exception": self.exception,
                "javaClassName": java,
                "message": self.message,
            }
        }


class Store:
    def __init__(self, root, user, delegation, lose_answers, log):
        self.root = os.path.abspath(root)
        self.user = user
        self.delegation = delegation
        self.lose_answers = lose_answers
        self.writes = 0
        self.log = log

    def local(self, hdfs_path):
        norm = "/" + posixpath.normpath("/" + hdfs_path).lstrip("/")
        if ".." in hdfs_path.split("/") or "\0" in hdfs_path:
            raise RemoteError("IllegalArgumentException", f"Invalid path name {hdfs_path}")
        return os.path.join(self.root, norm.lstrip("/")), norm

    def check_identity(self, query):
        user = query.get("user.name")
        token = query.get("delegation")
        if self.delegation is not None and token == self.delegation:
            return self.user or "token-user"
        if token is not None:
            raise RemoteError("SecurityException", "Failed to obtain user group information: token is not valid")
        if self.user is not None and user != self.user:
            raise RemoteError(
                "SecurityException",
                f"Failed to obtain user group information: user.name={user!r} is not allowed",
            )
        return user or "dr.who"

    def status(self, local, suffix=""):
        st = os.stat(local)
        directory = os.path.isdir(local)
        return {
            "accessTime": int(st.st_atime * 1000),
            "blockSize": 0 if directory else 134217728,
            "childrenNum": len(os.listdir(local)) if directory else 0,
            "fileId": st.st_ino,
            "group": "supergroup",
            "length": 0 if directory else st.st_size,
            "modificationTime": int(st.st_mtime * 1000),
            "owner": self.user or "runnel",
            "pathSuffix": suffix,
            "permission": "755" if directory else "644",
            "replication": 0 if directory else 3,
            "storagePolicy": 0,
            "type": "DIRECTORY" if directory else "FILE",
        }


def make_handler(store, role, ports):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One write per response (headers and body buffered, flushed after each
        # request), no Nagle: otherwise every answer with a body waits out the client's
        # delayed ACK (~40 ms).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def send_json(self, status, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def send_empty(self, status, headers=()):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(length) if length else b""

        def handle_any(self, method):
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            op = query.get("op", "").upper()
            body = self.body()
            if store.log:
                with LOCK, open(store.log, "a") as f:
                    f.write(json.dumps({"role": role, "method": method, "op": op,
                                        "path": unquote(url.path), "body": len(body)}) + "\n")
            try:
                if not url.path.startswith(PREFIX):
                    raise RemoteError("IllegalArgumentException", f"not a WebHDFS path: {url.path}")
                hdfs_path = unquote(url.path[len(PREFIX):]) or "/"
                user = store.check_identity(query)
                if role == "namenode":
                    self.namenode(method, op, hdfs_path, query, body, url)
                else:
                    self.datanode(method, op, hdfs_path, query, body)
            except RemoteError as e:
                self.send_json(*e.answer())
            except (BrokenPipeError, ConnectionResetError):
                pass

        def namenode(self, method, op, hdfs_path, query, body, url):
            local, norm = store.local(hdfs_path)
            expect = {
                "CREATE": "PUT", "APPEND": "POST", "MKDIRS": "PUT", "RENAME": "PUT",
                "TRUNCATE": "POST", "DELETE": "DELETE", "GETFILESTATUS": "GET",
                "LISTSTATUS": "GET", "OPEN": "GET",
            }
            if op not in expect:
                raise RemoteError("UnsupportedOperationException", f"op={op} is not supported")
            if expect[op] != method:
                raise RemoteError("IllegalArgumentException", f"Invalid value for webhdfs parameter \"op\": {op} is not a {method} operation")
            if op in ("CREATE", "APPEND", "OPEN"):
                if body:
                    raise RemoteError("IllegalArgumentException", f"{op}: data sent to the namenode; send it to the datanode of the redirect")
                location = f"http://127.0.0.1:{ports['datanode']}{quote(PREFIX + norm)}?{url.query}&namenoderpcaddress=127.0.0.1:8020"
                self.send_empty(307, [("Location", location)])
                return
            with LOCK:
                if op == "MKDIRS":
                    if os.path.isfile(local):
                        raise RemoteError("FileAlreadyExistsException", f"Path is not a directory: {norm}")
                    os.makedirs(local, exist_ok=True)
                    self.send_json(200, {"boolean": True})
                elif op == "RENAME":
                    dest = query.get("destination")
                    if not dest or not dest.startswith("/"):
                        raise RemoteError("IllegalArgumentException", "Invalid value for webhdfs parameter \"destination\"")
                    dest_local, _ = store.local(dest)
                    ok = os.path.exists(local) and not os.path.exists(dest_local) and os.path.isdir(os.path.dirname(dest_local))
                    if ok:
                        os.rename(local, dest_local)
                    self.send_json(200, {"boolean": ok})
                elif op == "TRUNCATE":
                    if not os.path.isfile(local):
                        raise RemoteError("FileNotFoundException", f"File does not exist: {norm}")
                    try:
                        length = int(query.get("newlength", ""))
                    except ValueError:
                        raise RemoteError("IllegalArgumentException", "Invalid value for webhdfs parameter \"newlength\"")
                    size = os.path.getsize(local)
                    if length > size or length < 0:
                        raise RemoteError("IOException", f"Cannot truncate to a larger file size. Current size: {size}, truncate size: {length}.")
                    os.truncate(local, length)
                    self.send_json(200, {"boolean": True})
                elif op == "DELETE":
                    ok = os.path.isfile(local)
                    if ok:
                        os.remove(local)
                    self.send_json(200, {"boolean": ok})
                elif op == "GETFILESTATUS":
                    if not os.path.exists(local):
                        raise RemoteError("FileNotFoundException", f"File does not exist: {norm}")
                    self.send_json(200, {"FileStatus": store.status(local)})
                elif op == "LISTSTATUS":
                    if not os.path.exists(local):
                        raise RemoteError("FileNotFoundException", f"File {norm} does not exist.")
                    names = sorted(os.listdir(local)) if os.path.isdir(local) else [""]
                    statuses = [store.status(os.path.join(local, n) if n else local, n) for n in names]
                    self.send_json(200, {"FileStatuses": {"FileStatus": statuses}})

        def datanode(self, method, op, hdfs_path, query, body):
            local, norm = store.local(hdfs_path)
            with LOCK:
                if op == "OPEN" and method == "GET":
                    if not os.path.isfile(local):
                        raise RemoteError("FileNotFoundException", f"File does not exist: {norm}")
                    with open(local, "rb") as f:
                        data = f.read()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if op == "CREATE" and method == "PUT":
                    if os.path.isdir(local):
                        raise RemoteError("FileAlreadyExistsException", f"{norm} already exists as a directory")
                    if os.path.exists(local) and query.get("overwrite", "false") != "true":
                        raise RemoteError("FileAlreadyExistsException", f"{norm} for client 127.0.0.1 already exists")
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    with open(local, "wb") as f:
                        f.write(body)
                    status = 201
                elif op == "APPEND" and method == "POST":
                    if not os.path.isfile(local):
                        raise RemoteError("FileNotFoundException", f"Failed to append to non-existent file {norm} for client 127.0.0.1")
                    with open(local, "ab") as f:
                        f.write(body)
                    status = 200
                else:
                    raise RemoteError("IllegalArgumentException", f"{method} op={op} is not a datanode operation")
                store.writes += 1
                lose = store.lose_answers and store.writes % store.lose_answers == 0
            if lose:
                # Written, never acknowledged: the client cannot know.
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if status == 201:
                self.send_empty(201, [("Location", f"webhdfs://127.0.0.1:{ports['namenode']}{quote(norm)}")])
            else:
                self.send_empty(200)

        def do_GET(self):
            self.handle_any("GET")

        def do_PUT(self):
            self.handle_any("PUT")

        def do_POST(self):
            self.handle_any("POST")

        def do_DELETE(self):
            self.handle_any("DELETE")

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--namenode-port", type=int, default=0)
    parser.add_argument("--datanode-port", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--delegation")
    parser.add_argument("--lose-answers", type=int, default=0)
    parser.add_argument("--log")
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    store = Store(args.root, args.user, args.delegation, args.lose_answers, args.log)
    ports = {}
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    datanode = ThreadingHTTPServer(("127.0.0.1", args.datanode_port), make_handler(store, "datanode", ports))
    namenode = ThreadingHTTPServer(("127.0.0.1", args.namenode_port), make_handler(store, "namenode", ports))
    ports["datanode"] = datanode.server_address[1]
    ports["namenode"] = namenode.server_address[1]
    threading.Thread(target=datanode.serve_forever, daemon=True).start()
    print(json.dumps(ports), flush=True)
    try:
        namenode.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
