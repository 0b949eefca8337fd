"""A real ``netpersona serve``: bodies are bounded before they are read, and connections that
send nothing (or half a header) cannot hold the service's sockets and file descriptors."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.system.command import run
from tests.service.conftest import persona_doc
from tests.service.serve_process import NETPERSONA, ServeProcess, serve

pytestmark = pytest.mark.subprocess

MiB = 1024 * 1024


def _connect(server: ServeProcess, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", server.port), timeout=20, source_address=(source, 0)
    )


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response (read until the server closes or the body is in)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server closes once it has answered
        sock.sendall(data)


def _post_huge(
    server: ServeProcess, method: str, path: str, headers: str = "", source: str = "127.0.0.1"
) -> tuple[int, bytes, float]:
    """Send 49 MiB under ``path`` as fast as the server takes it; the answer and its delay."""
    sock = _connect(server, source)
    body = b"[" + b"1," * (49 * MiB // 2) + b"1]"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: metadata\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode()
    start = time.monotonic()
    sender = threading.Thread(target=_send_quietly, args=(sock, head + body))
    sender.start()
    try:
        status, answer = _answer(sock)
        return status, answer, time.monotonic() - start
    finally:
        sock.close()
        sender.join(timeout=30)


def _chunked(server: ServeProcess, path: str, token: str, size: int) -> tuple[int, bytes]:
    sock = _connect(server)
    try:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: metadata\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        piece = b'"' + b"x" * 16382 + b'"'
        sent = 0
        with contextlib.suppress(OSError):
            sock.sendall(b"4000\r\n[" + piece[1:] + b"\r\n")
            while sent < size:
                sock.sendall(b"4000\r\n" + piece + b"\r\n")
                sent += len(piece)
        return _answer(sock)
    finally:
        sock.close()


def test_bodies_without_credentials_are_refused_unread_and_memory_stays_flat(
    tmp_path: Path,
) -> None:
    with serve(tmp_path / "data") as server:
        with server.admin() as admin:
            admin.post("/v1/admin/instances", json={"id": "vm2", "addresses": ["127.0.0.2"]})
            admin.put("/v1/admin/personas/db", json=persona_doc(2))
        before = server.rss()
        cases = [
            ("POST", "/v1/admin/instances", "", "127.0.0.1", 413),
            ("PUT", "/v1/admin/personas/db", "", "127.0.0.1", 413),
            ("POST", "/v1/admin/policy/diff", "", "127.0.0.1", 413),
            ("POST", "/v1/instance/status", "", "127.0.0.9", 413),
        ]
        for method, path, headers, source, status in cases:
            got, body, seconds = _post_huge(server, method, path, headers, source)
            assert got == status, (path, body)
            assert b'"payload_too_large"' in body
            assert seconds < 10, (path, seconds)
        # Under the limit but without credentials: refused before a byte of the body is read.
        for path, source, status in (
            ("/v1/admin/instances", "127.0.0.1", 401),
            ("/v1/instance/status", "127.0.0.9", 403),
        ):
            sock = _connect(server, source)
            with sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: m\r\nContent-Length: 60000\r\n\r\n".encode()
                )
                got, body = _answer(sock)
            assert got == status, body
        # A chunked body is counted as it arrives and cut off at the route's limit.
        got, body = _chunked(server, "/v1/admin/personas/big", server.admin_token, 2 * MiB)
        assert got == 413, body
        assert server.rss() - before < 40 * MiB, (before, server.rss())
        with server.admin() as admin:
            assert admin.get("/v1/admin/personas/big").status_code == 404
            listed = admin.get("/v1/admin/personas").json()["items"]
            assert [p["name"] for p in listed] == ["db"]


@contextlib.contextmanager
def _idle_sockets(server: ServeProcess, count: int, half: bool) -> Iterator[list[socket.socket]]:
    sockets = []
    try:
        for _ in range(count):
            sock = _connect(server)
            if half:
                sock.sendall(b"GET /v1/admin/instances HTTP/1.1\r\nHost: metad")
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_silent_and_half_header_connections_are_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    with (
        serve(tmp_path / "data", "--header-timeout", "1") as server,
        _idle_sockets(server, 60, half=False) as silent,
        _idle_sockets(server, 60, half=True) as half,
        server.admin() as admin,
    ):
        # While they are open, a legitimate request is answered.
        assert admin.get("/v1/admin/instances").status_code == 200
        # A kept-alive connection that starts its next request and stops is closed too.
        kept = _connect(server)
        kept.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: m\r\n\r\n")
        assert _answer(kept)[0] == 200
        kept.sendall(b"GET /openapi.json HTTP/1.1\r\nHo")
        deadline = time.monotonic() + 30
        assert all(_closed_by_server(s, deadline) for s in [*silent, *half, kept])
        kept.close()
        assert admin.get("/v1/admin/instances").status_code == 200


def test_more_connections_than_open_files_cannot_starve_the_service(tmp_path: Path) -> None:
    # 300 silent connections against 256 open files: past --max-connections (192 by
    # default here) new connections are closed at once, and once the header timeout has
    # freed the slots a legitimate client (retrying, as agents do) is answered again.
    with serve(tmp_path / "data", "--header-timeout", "2", open_files=256) as server:
        token = server.admin_token
        with _idle_sockets(server, 300, half=False) as held:
            refused = [s for s in held if _closed_by_server(s, time.monotonic() + 0.5)]
            assert len(refused) >= 300 - 192
            answered = None
            deadline = time.monotonic() + 30
            while answered is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    answered = httpx.get(
                        server.url + "/v1/admin/instances",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=5,
                    ).status_code
                time.sleep(0.2)
            assert answered == 200
        assert server.process is not None
        assert server.process.poll() is None


def test_a_vm_is_served_with_the_limits_in_place(tmp_path: Path) -> None:
    with serve(tmp_path / "data", "--header-timeout", "1", "--max-connections", "50") as server:
        with server.admin() as admin:
            admin.post("/v1/admin/instances", json={"id": "vm2", "addresses": ["127.0.0.2"]})
        with server.vm("127.0.0.2") as vm:
            token = vm.put("/v1/token", headers={TOKEN_TTL_HEADER: "60"})
            assert token.status_code == 200
            vm.headers[TOKEN_HEADER] = token.text
            # A long poll outlives the header timeout: only the header section is timed.
            waited = vm.get(
                "/v1/instance", params={"wait_for_change": "true", "timeout_sec": "3"}, timeout=20
            )
            assert waited.status_code == 200
            report = vm.post("/v1/instance/status", json={"result": "applied"})
            assert report.status_code == 204


@pytest.mark.parametrize(
    ("option", "value"), [("--max-connections", "100000000"), ("--header-timeout", "0")]
)
def test_limits_that_cannot_hold_are_refused_at_start(
    tmp_path: Path, option: str, value: str
) -> None:
    done = run(
        [NETPERSONA, "serve", "--data-dir", str(tmp_path / "data"), option, value], check=False
    )
    assert done.returncode == 2
    assert f"error (usage_error) {option} {value}" in done.stderr
    assert not (tmp_path / "data").exists()
