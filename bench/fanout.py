"""Fan-out benchmark of the metadata service; prints one JSON document.

For each watcher count N: a fresh ``netpersona serve`` process on loopback, N instances (each
with its own 127.1.x.y address) pinned to one persona; every instance opens a real HTTP
connection from its own address, gets a session token and long-polls its persona. Then one
persona change; measured: time from the write until each watcher has read the new ETag (p50,
p99, max), the server's memory per waiting watcher (RSS growth / N), and plain persona GETs per
second over keep-alive connections.

    uv run python bench/fanout.py                     # 1000, 5000, 10000 watchers
    uv run python bench/fanout.py --watchers 1000 --get-seconds 3

The client side is asyncio with raw sockets (no HTTP library) so that it costs as little CPU
as possible: client and server share the machine, and the numbers include that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.store import Instance, Role, SqliteStore

PERSONA_PATH = "/v1/instance/network_persona"


def persona(priority: int) -> str:
    return json.dumps(
        {
            "communication_mode": "unicast",
            "security_profile": "medium",
            "allowed_protocols": ["ssh", "https"],
            "priority": priority,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Http:
    """One keep-alive HTTP/1.1 connection from a chosen source address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, source: str) -> Http:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0), limit=1 << 20
        )
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: metadata"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        return await self.response()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        found = {}
        for line in header_lines:
            if ":" in line:
                key, _, value = line.partition(":")
                found[key.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(found.get("content-length", "0")))
        return int(status_line.split()[1]), found, body

    def close(self) -> None:
        self.writer.close()


async def wait_for_watchers(port: int, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    conn = await Http.open(port, "127.0.0.1")
    try:
        while time.monotonic() < deadline:
            _, _, body = await conn.request("GET", "/metrics")
            for line in body.decode().splitlines():
                if line.startswith('netpersona_watchers{view="persona"}') and (
                    float(line.split()[-1]) >= count
                ):
                    return
            await asyncio.sleep(0.2)
    finally:
        conn.close()
    raise RuntimeError(f"fewer than {count} watchers after {timeout}s")


async def fanout(port: int, pid: int, admin_token: str, n: int) -> dict[str, Any]:
    tokens: list[str] = [""] * n
    gate = asyncio.Semaphore(256)  # the listen backlog is finite; connect in waves

    async def get_token(i: int) -> None:
        async with gate:
            conn = await Http.open(port, address(i))
            status, _, body = await conn.request("PUT", "/v1/token", {TOKEN_TTL_HEADER: "3600"})
            conn.close()
            assert status == 200, body
            tokens[i] = body.decode()

    rss_idle = rss_bytes(pid)
    start = time.monotonic()
    await asyncio.gather(*(get_token(i) for i in range(n)))
    token_seconds = time.monotonic() - start
    first = await Http.open(port, address(0))
    status, headers, _ = await first.request("GET", PERSONA_PATH, {TOKEN_HEADER: tokens[0]})
    first.close()
    etag = headers["etag"]
    rss_before = rss_bytes(pid)

    seen: list[float] = []
    changed = 0
    connections: list[Http] = []

    async def watch(i: int) -> None:
        nonlocal changed
        async with gate:
            conn = await Http.open(port, address(i))
            connections.append(conn)
            query = f"?wait_for_change=true&last_etag={etag.strip(chr(34))}&timeout_sec=600"
            conn.writer.write(
                f"GET {PERSONA_PATH}{query} HTTP/1.1\r\nHost: metadata\r\n"
                f"{TOKEN_HEADER}: {tokens[i]}\r\n\r\n".encode()
            )
            await conn.writer.drain()
        code, got, _ = await conn.response()
        seen.append(time.perf_counter())
        if code == 200 and got["etag"] != etag:
            changed += 1

    start = time.monotonic()
    watchers = [asyncio.create_task(watch(i)) for i in range(n)]
    await wait_for_watchers(port, n, timeout=300)
    connect_seconds = time.monotonic() - start
    await asyncio.sleep(0.5)
    rss_waiting = rss_bytes(pid)

    admin = await Http.open(port, "127.0.0.1")
    t0 = time.perf_counter()
    status, _, body = await admin.request(
        "PUT",
        "/v1/admin/personas/bench",
        {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        persona(5).encode(),
    )
    write_ack = time.perf_counter() - t0
    assert status == 200, body
    await asyncio.wait_for(asyncio.gather(*watchers), timeout=300)
    admin.close()
    for conn in connections:
        conn.close()
    latencies = [t - t0 for t in seen]
    return {
        "watchers": n,
        "watchers_with_new_etag": changed,
        "token_requests_seconds": round(token_seconds, 3),
        "all_watching_after_seconds": round(connect_seconds, 3),
        "write_ack_ms": round(write_ack * 1000, 2),
        "notify_ms": {
            "p50": round(percentile(latencies, 0.50) * 1000, 1),
            "p99": round(percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
            "mean": round(statistics.fmean(latencies) * 1000, 1),
        },
        "server_rss_mb": {
            "idle": round(rss_idle / 2**20, 1),
            "after_token_requests": round(rss_before / 2**20, 1),
            "with_watchers": round(rss_waiting / 2**20, 1),
        },
        # What a watcher costs the server: its connection and its waiting request.
        "memory_per_watcher_kb": round((rss_waiting - rss_idle) / n / 1024, 2),
    }


async def plain_gets(port: int, clients: int, seconds: float) -> dict[str, Any]:
    conns: list[tuple[Http, str]] = []
    for i in range(clients):
        conn = await Http.open(port, address(i))
        _, _, token = await conn.request("PUT", "/v1/token", {TOKEN_TTL_HEADER: "3600"})
        conns.append((conn, token.decode()))
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(conn: Http, token: str) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            status, _, _ = await conn.request("GET", PERSONA_PATH, {TOKEN_HEADER: token})
            assert status == 200
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(c, t) for c, t in conns))
    elapsed = time.perf_counter() - start
    for conn, _ in conns:
        conn.close()
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "gets_per_second": round(done / elapsed),
    }


def populate(db: Path, n: int) -> None:
    store = SqliteStore(db)
    try:
        store.put_persona("bench", persona(1), "bench")
        for i in range(n):
            store.create_instance(Instance(f"vm{i}", "", (address(i),)), "bench")
            store.set_pin(f"vm{i}", "bench", "bench")
    finally:
        store.close()


def run_one(n: int, get_clients: int, get_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="np-fanout-") as tmp:
        data = Path(tmp)
        populate(data / "netpersona.db", n)
        store = SqliteStore(data / "netpersona.db")
        _, admin_token = store.create_token("bench", Role.ADMIN, "bench")
        store.close()
        port = free_port()
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("netpersona")),
                "serve",
                "--data-dir",
                str(data),
                "--listen",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
            ],
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("netpersona serve did not start") from None
                    time.sleep(0.1)
            result = asyncio.run(fanout(port, server.pid, admin_token, n))
            result["plain_get"] = asyncio.run(plain_gets(port, get_clients, get_seconds))
            return result
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", default="1000,5000,10000")
    parser.add_argument("--get-clients", type=int, default=32)
    parser.add_argument("--get-seconds", type=float, default=5.0)
    args = parser.parse_args()
    counts = [int(c) for c in args.watchers.split(",")]
    # SIGTERM unwinds like Ctrl-C, so the server process is stopped and the data removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # One socket per watcher on each side, plus headroom; the server inherits the limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(counts) + 200 > hard:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {max(counts)} watchers")
    runs = [run_one(n, args.get_clients, args.get_seconds) for n in counts]
    print(
        json.dumps(
            {
                "benchmark": "fanout",
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
