"""A metadata service that misbehaves on demand, for the agent's kernel tests.

Run as ``python hostile_server.py PORT DIR``. It reads ``DIR/mode`` and ``DIR/persona.json`` (the
persona answer served when things are good) on every request, appends each request's method and
path to ``DIR/requests.log`` and the agent's reports to ``DIR/reports.log``. Modes:

    good        answers as docs/metadata-api.md says, long-poll included
    garbage     the persona answer is bytes that are not JSON
    empty       the persona answer is {}
    deep        the persona answer nests 2,000 levels deep
    huge        the persona answer is 200 MB, made while it is sent, never held in memory
    drip        the persona answer comes one byte every 5 seconds
    nopoll      every answer comes at once, unchanged, whatever long-poll asked for
    interfaces  the instance answer has "interfaces": 5
    token       the session token is not ASCII (and every older token gets 401)
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

CONTROL = Path(sys.argv[2]) if len(sys.argv) > 2 else Path()
HUGE = 200 * 1000 * 1000
CHUNK = 64 * 1024
TOKEN_GOOD = "t0k3n-good"


def mode() -> str:
    try:
        return (CONTROL / "mode").read_text().strip() or "good"
    except OSError:
        return "good"


def instance() -> dict[str, Any]:
    interfaces: Any = [{"name": "eth0", "addresses": ["10.77.0.11/24"], "tier": None}]
    if mode() == "interfaces":
        interfaces = 5
    return {
        "id": "vm1",
        "name": "vm1",
        "addresses": ["10.77.0.11"],
        "interfaces": interfaces,
        "labels": {},
        "persona": None,
    }


def body_for(path: str) -> bytes | None:
    """The body of a well-behaved answer (None: this answer is not a plain one)."""
    now = mode()
    if path == "/v1/instance":
        return json.dumps(instance()).encode()
    if path == "/v1/instance/peers":
        return b'{"peers": []}'
    if path != "/v1/instance/network_persona":
        return None
    if now == "garbage":
        return b"\x00\xff\xfe not json at all {{{"
    if now == "empty":
        return b"{}"
    if now == "deep":
        return b'{"a":' * 2000 + b"1" + b"}" * 2000
    if now in ("huge", "drip"):
        return None
    return (CONTROL / "persona.json").read_bytes()


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        with (CONTROL / "requests.log").open("a") as log:
            log.write(f"{time.monotonic():.3f} {self.command} {urlsplit(self.path).path}\n")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        if urlsplit(self.path).path != "/v1/token":
            self._send(404, b"{}")
            return
        token = "t\u00f6k\u00e9n" if mode() == "token" else TOKEN_GOOD
        self._send(200, token.encode(), {"X-Netpersona-Token-TTL-Seconds": "21600"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        report = self.rfile.read(length)
        with (CONTROL / "reports.log").open("ab") as log:
            log.write(report + b"\n")
        self._send(204, b"")

    def do_GET(self) -> None:
        if self.headers.get("X-Netpersona-Token") != TOKEN_GOOD or mode() == "token":
            self._send(401, b'{"error": {"code": "unauthorized", "message": "token"}}')
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = body_for(url.path)
        if body is None and url.path != "/v1/instance/network_persona":
            self._send(404, b'{"error": {"code": "not_found", "message": "no such path"}}')
            return
        if query.get("wait_for_change") == ["true"] and mode() != "nopoll":
            body = self._hold(url.path, query, body)
        if body is not None:
            self._send(200, body, {"ETag": etag(body), "Content-Type": "application/json"})
        elif mode() == "huge":
            self._huge()
        else:
            self._drip()

    def _hold(self, path: str, query: dict[str, list[str]], body: bytes | None) -> bytes | None:
        """Long-poll: until the answer differs from ``last_etag`` or the wait is over."""
        last = query.get("last_etag", [""])[0]
        end = time.monotonic() + float(query.get("timeout_sec", ["300"])[0])
        while body is not None and etag(body) == last and time.monotonic() < end:
            time.sleep(0.1)
            body = body_for(path)
        return body

    def _huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        sent = 0
        filler = b"a" * CHUNK
        try:
            self.wfile.write(b'{"x": "')
            while sent < HUGE:
                self.wfile.write(filler)
                sent += CHUNK
            self.wfile.write(b'"}')
        except OSError:
            pass  # the agent hung up, as it should

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(5)
        except OSError:
            pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
