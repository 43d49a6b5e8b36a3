"""Real local services for the processor tests, all on 127.0.0.1 and ephemeral ports.

- `FixtureHTTP`: an HTTP server (http.server in a thread) with fixture files served with
  ETag, Last-Modified and byte ranges; endpoints that are slow, fail, fail a few times,
  break off mid-body, redirect (on this host or to any URL), echo the request, or
  stream a generated body of any size; a small web site to crawl; and git's smart HTTP
  through `git http-backend`.
- `GitDaemon`: the real `git daemon`, run per connection in `--inetd` mode behind a
  socket we bind to port 0 (git daemon itself cannot listen on an ephemeral port).

Nothing here reaches outside the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

LAST_MODIFIED = "Tue, 02 Jan 2024 03:04:05 GMT"
BIG_BLOCK = hashlib.sha256(b"wiz").digest() * (1 << 15)  # 1 MiB of a fixed pattern
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}


def big_bytes(start: int, end: int) -> bytes:
    """Bytes [start, end) of the generated body (the 1 MiB pattern repeated)."""
    out = bytearray()
    size = len(BIG_BLOCK)
    while start < end:
        offset = start % size
        take = min(size - offset, end - start)
        out += BIG_BLOCK[offset : offset + take]
        start += take
    return bytes(out)


def big_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for start in range(0, size, len(BIG_BLOCK)):
        digest.update(big_bytes(start, min(start + len(BIG_BLOCK), size)))
    return digest.hexdigest()


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha1(body).hexdigest()[:16] + '"'


class FixtureHTTP:
    """The fixture web server; `requests` logs (method, path, headers) of every request."""

    def __init__(
        self, files: dict[str, bytes], git_root: Path, tls: ssl.SSLContext | None = None
    ) -> None:
        self.files = files
        self.git_root = git_root
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.hits: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        fixture = self

        class Handler(_Handler):
            server_state = fixture

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        if tls is not None:  # HTTPS: the handshake happens as a connection is accepted
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            self.base = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FixtureHTTP:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # releases the slow endpoints
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def url(self, path: str) -> str:
        return self.base + path

    def seen(self, path_prefix: str) -> list[tuple[str, str, dict[str, str]]]:
        with self.lock:
            return [r for r in self.requests if r[1].startswith(path_prefix)]

    def hit(self, key: str) -> int:
        """Count a request to `key`; returns how many came before this one."""
        with self.lock:
            self.hits[key] += 1
            return self.hits[key] - 1


class _Handler(BaseHTTPRequestHandler):
    server_state: FixtureHTTP
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    # -- dispatch ----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        state = self.server_state
        path = urlsplit(self.path).path
        with state.lock:
            state.requests.append((self.command, self.path, dict(self.headers.items())))
        routes = [
            (r"/files/(.+)", self._file),
            (r"/plain/(.+)", self._plain),
            (r"/liar/(.+)", self._liar),
            (r"/big/(\d+)", self._big),
            (r"/stream/(\d+)", self._stream),
            (r"/slow(/.*)?", self._slow),
            (r"/status/(\d+)", self._status),
            (r"/flaky/([^/]+)/(\d+)", self._flaky),
            (r"/truncate-once/(.+)", self._truncate_once),
            (r"/redirect/(.+)", self._redirect),
            (r"/goto", self._goto),
            (r"/echo", self._echo),
            (r"/site/(.*)", self._site),
            (r"/git/(.*)", self._git),
        ]
        for pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                handler(*match.groups())
                return
        self._send(404, b"no such fixture\n", "text/plain")

    # -- helpers -----------------------------------------------------------------------

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _range(self, size: int, etag: str) -> tuple[int, int] | None:
        """The single byte range asked for (inclusive), or None for the whole body."""
        spec = self.headers.get("Range")
        if not spec:
            return None
        if_range = self.headers.get("If-Range")
        if if_range and if_range not in (etag, LAST_MODIFIED):
            return None
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
        if not match:
            return None
        start = int(match[1])
        end = int(match[2]) if match[2] else size - 1
        return start, min(end, size - 1)

    def _ranged(self, body: bytes, content_type: str = "application/octet-stream") -> None:
        etag = etag_of(body)
        headers = {"ETag": etag, "Last-Modified": LAST_MODIFIED, "Accept-Ranges": "bytes"}
        wanted = self._range(len(body), etag)
        if wanted is None:
            self._send(200, body, content_type, headers)
            return
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
        self._send(206, body[start : end + 1], content_type, headers)

    # -- routes ------------------------------------------------------------------------

    def _file(self, name: str) -> None:
        body = self.server_state.files.get(name)
        if body is None:
            self._send(404, b"no such file\n", "text/plain")
            return
        kind = "text/html; charset=utf-8" if name.endswith(".html") else "application/octet-stream"
        self._ranged(body, kind)

    def _plain(self, name: str) -> None:
        """The same files with no ranges, no validators."""
        body = self.server_state.files.get(name)
        if body is None:
            self._send(404, b"no such file\n", "text/plain")
            return
        self._send(200, body)

    def _liar(self, name: str) -> None:
        """Advertises byte ranges, then answers every Range request with the whole body."""
        body = self.server_state.files[name]
        headers = {"ETag": etag_of(body), "Accept-Ranges": "bytes"}
        self._send(200, body, "application/octet-stream", headers)

    def _big(self, size_text: str) -> None:
        """A generated body of any size, streamed in 1 MiB slices, with range support."""
        size = int(size_text)
        etag = f'"big-{size}"'
        headers = {"ETag": etag, "Last-Modified": LAST_MODIFIED, "Accept-Ranges": "bytes"}
        wanted = self._range(size, etag)
        start, end = (0, size - 1) if wanted is None else wanted
        self.send_response(200 if wanted is None else 206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if wanted is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        position = start
        while position <= end:
            step = min(len(BIG_BLOCK), end + 1 - position)
            self.wfile.write(big_bytes(position, position + step))
            position += step

    def _stream(self, size_text: str) -> None:
        """A body of unknown length (chunked), to check limits that cannot be seen early."""
        size = int(size_text)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        while sent < size:
            block = big_bytes(sent, min(sent + 65536, size))
            self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            sent += len(block)
        self.wfile.write(b"0\r\n\r\n")

    def _slow(self, rest: str | None = None) -> None:
        """Headers at once, a little of the body, then silence until the test ends."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        # A slow endpoint: silent until the test session ends.
        self.server_state.stop.wait(30)  # noqa: sleep-ok
        self.close_connection = True

    def _status(self, code: str) -> None:
        self._send(int(code), f"fixture answers {code}\n".encode(), "text/plain")

    def _flaky(self, key: str, failures: str) -> None:
        """503 (Retry-After: 0) for the first `failures` requests of `key`, then a file."""
        if self.server_state.hit(f"flaky/{key}") < int(failures):
            self._send(503, b"busy, try again\n", "text/plain", {"Retry-After": "0"})
            return
        self._ranged(self.server_state.files["page.html"], "text/html; charset=utf-8")

    def _truncate_once(self, name: str) -> None:
        """The first request gets half the body and a closed connection; later ones are
        served normally (ranges included), so a download can resume."""
        body = self.server_state.files[name]
        if self.server_state.hit(f"truncate/{name}") > 0:
            self._ranged(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag_of(body))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _redirect(self, name: str) -> None:
        self.send_response(302)
        self.send_header("Location", f"/files/{name}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _goto(self) -> None:
        """A redirect to the URL in the query's `to` (another host, for instance)."""
        target = parse_qs(urlsplit(self.path).query)["to"][0]
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _echo(self) -> None:
        body = self._body()
        answer = {
            "method": self.command,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "query": parse_qs(urlsplit(self.path).query),
        }
        self._send(200, json.dumps(answer).encode(), "application/json")

    def _site(self, page: str) -> None:
        """A small site: index links to a, b, an image, an external host and a dead page;
        b links to a redirect to the external host."""
        port = self.server_state.port
        pages = {
            "": (
                "<html><head><title>Index</title></head><body>"
                '<h1 class="title">Fixture index</h1>'
                '<ul><li class="item"><a href="a.html" data-id="1">Page A</a></li>'
                '<li class="item"><a href="/site/b.html#top" data-id="2">Page B</a></li>'
                '<li class="item"><a href="missing.html">Dead link</a></li></ul>'
                '<a href="/files/logo.bin">logo</a>'
                f'<a href="http://localhost:{port}/site/external.html">elsewhere</a>'
                "</body></html>"
            ),
            "a.html": (
                '<html><body><h1 class="title">Page A</h1>'
                '<a href="deep.html">deeper</a></body></html>'
            ),
            "b.html": (
                '<html><body><h1 class="title">Page B</h1>'
                f'<a href="/goto?to=http://localhost:{port}/site/external.html">away</a>'
                "</body></html>"
            ),
            "deep.html": '<html><body><h1 class="title">Deep</h1></body></html>',
            "external.html": '<html><body><h1 class="title">External</h1></body></html>',
        }
        key = "" if page in ("", "index.html") else page
        html = pages.get(key)
        if html is None:
            self._send(404, b"no such page\n", "text/plain")
            return
        self._send(200, html.encode(), "text/html; charset=utf-8")

    def _git(self, rest: str) -> None:
        """git's smart HTTP: the request handed to `git http-backend` as CGI."""
        parts = urlsplit(self.path)
        body = self._read_request_body()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.server_state.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + rest,
            "REQUEST_METHOD": self.command,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        result = subprocess.run(
            ["git", "http-backend"], input=body, capture_output=True, env=env, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        code = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                code = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        content_type = headers.pop("Content-Type", "application/octet-stream")
        self._send(code, payload, content_type, headers)

    def _read_request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self._body()


class GitDaemon:
    """`git daemon --inetd` for each connection to a socket bound to 127.0.0.1:0."""

    def __init__(self, base_path: Path) -> None:
        self.base_path = base_path
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.children: list[subprocess.Popen[bytes]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self.listener.close()
        self.thread.join(10)
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                child = subprocess.Popen(
                    [
                        "git",
                        "daemon",
                        "--inetd",
                        "--export-all",
                        "--informative-errors",
                        f"--base-path={self.base_path}",
                        str(self.base_path),
                    ],
                    stdin=conn.fileno(),
                    stdout=conn.fileno(),
                    stderr=subprocess.DEVNULL,
                    env={"PATH": os.environ.get("PATH", os.defpath), **GIT_ENV},
                )
            self.children.append(child)
