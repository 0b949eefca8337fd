"""Fan-out and write-latency benchmark of the metadata service; prints one JSON document.

Fan-out, for each watcher count N: ``--replicas`` fresh ``netpersona serve`` processes on one
store (``--engine sqlite``: a file; ``postgresql``: a throwaway cluster, tests/store/pg_cluster),
N instances (each with its own 127.1.x.y address) pinned to one persona; every instance opens a
real HTTP connection from its own address to replica ``i % replicas``, gets a session token and
long-polls its persona. Then one persona change, written through replica 0; measured: time
from the write until each watcher has read the new ETag (p50, p99, max), the servers' memory per
waiting watcher (RSS growth / N, summed over replicas), how long the write took to be
acknowledged, and plain persona GETs per second over keep-alive connections (one replica).

Write latency, for each fleet size M (``--write-instances``): one serve process over M
instances seeded in one transaction (``Store.import_instances``); measured: the time to
acknowledge a label change of one instance, and a persona change every instance holds (which
re-issues every certificate): p50/p90/p99/max, and the slowest few with where the server says
their time went (its ``Server-Timing`` header: waiting for a worker thread, the commit, the
view's build, the publish; and what it did not account for); then the time of an admin read
made right after the last persona write (it waits for the view to include that write).

    uv run python bench/fanout.py                                  # sqlite, 1 replica
    uv run python bench/fanout.py --engine postgresql --replicas 2 --watchers 10000
    uv run python bench/fanout.py --watchers '' --write-instances 100,100000

The watchers are asyncio with raw sockets (no HTTP library), on uvloop, spread over
``--client-processes`` processes so that the clients are not what is measured: client and
server share the machine, and the numbers include that. The load average before and after is
printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvloop

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.store import Instance, Role, Store, open_store

ROOT = Path(__file__).resolve().parent.parent
PERSONA_PATH = "/v1/instance/network_persona"
WAKE_DEADLINE = 60.0  # seconds a watcher waits for the change before it is counted as missed


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
    """127.1.0.1 on: watchers bind these (up to 62,500); a seeded fleet goes on in 127.2..."""
    return f"127.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


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


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.50) * 1000, 1),
        "p99": round(percentile(values, 0.99) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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

    def send(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: metadata"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("PUT", "POST", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        self.send(method, path, headers, body)
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


# --- the watcher processes -----------------------------------------------------------------


def watcher_process(pipe: Connection, ports: list[int], indices: list[int], etag: str) -> None:
    """Token, then a long poll, for each instance of ``indices`` (to replica i % replicas);
    says "ready" once all are sent, then sends back when each answer arrived (monotonic), with
    the replica that held it."""
    uvloop.run(_watch_all(pipe, ports, indices, etag))


class _Arrival(asyncio.Protocol):
    def __init__(self, first: asyncio.Future[tuple[float, bytes]]) -> None:
        self.first = first

    def data_received(self, data: bytes) -> None:
        if not self.first.done():
            self.first.set_result((time.monotonic(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError("closed before an answer"))


async def _watch_all(pipe: Connection, ports: list[int], indices: list[int], etag: str) -> None:
    gate = asyncio.Semaphore(128)  # the listen backlog is finite: connect in waves
    seen: list[tuple[int, float]] = []
    changed = 0
    errors: list[str] = []
    connections: list[Http] = []
    sent = asyncio.Event()
    pending = len(indices)
    query = f"?wait_for_change=true&last_etag={etag.strip(chr(34))}&timeout_sec=600"

    async def watch(i: int) -> None:
        nonlocal changed, pending
        async with gate:
            conn = await Http.open(ports[i % len(ports)], address(i))
            connections.append(conn)
            status, _, body = await conn.request("PUT", "/v1/token", {TOKEN_TTL_HEADER: "3600"})
            if status != 200:
                errors.append(f"token {i}: {status} {body[:200]!r}")
                return
            # From here on the connection only notes when the answer's first bytes arrive
            # (the whole answer is one small segment): parsing it with streams cost the
            # clients more CPU than the server spent sending it.
            arrival = _Arrival(asyncio.get_running_loop().create_future())
            conn.writer.transport.set_protocol(arrival)
            conn.send("GET", PERSONA_PATH + query, {TOKEN_HEADER: body.decode()})
            pending -= 1
            if not pending:
                sent.set()
        at, head = await arrival.first
        seen.append((i % len(ports), at))
        if head.startswith(b"HTTP/1.1 200") and b"etag: " + etag.encode() not in head:
            changed += 1

    tasks = [asyncio.create_task(watch(i)) for i in indices]
    await sent.wait()
    pipe.send(("ready", len(indices)))
    # "stop": the servers hold no more watchers (or the deadline passed); answers sent by
    # then are read within the grace period.
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    await asyncio.wait(tasks, timeout=10)
    for conn in connections:
        conn.close()
    pipe.send(("done", seen, changed, errors))


# --- servers and stores ---------------------------------------------------------------------


@dataclass
class Engine:
    name: str
    cluster: Any = None  # tests.store.pg_cluster.PgCluster

    @contextlib.contextmanager
    def database(self, tmp: Path) -> Iterator[str]:
        if self.cluster is None:
            yield f"sqlite:///{tmp}/netpersona.db"
        else:
            with self.cluster.database() as url:
                yield url


@contextlib.contextmanager
def engine_of(name: str) -> Iterator[Engine]:
    if name == "sqlite":
        yield Engine(name)
        return
    sys.path.insert(0, str(ROOT))
    from tests.store.pg_cluster import find_pg_bin, pg_cluster  # noqa: PLC0415

    bin_dir = find_pg_bin()
    if bin_dir is None:
        sys.exit(
            "--engine postgresql: no initdb found (install postgresql or set NETPERSONA_PG_BIN)"
        )
    with pg_cluster(bin_dir) as cluster:
        yield Engine(name, cluster)


def seed(url: str, n: int) -> str:
    """``n`` instances pinned to persona ``bench``, in one transaction; an admin token."""
    store: Store = open_store(url, create=True)
    try:
        store.put_persona("bench", persona(1), "bench")
        specs = [Instance(f"vm{i}", "", (address(i),), pin="bench") for i in range(n)]
        if hasattr(store, "import_instances"):
            store.import_instances(specs, "bench")
        else:  # an older netpersona, measured for comparison: one write per record
            for spec in specs:
                store.create_instance(spec, "bench")
                store.set_pin(spec.id, "bench", "bench")
        _, secret = store.create_token("bench", Role.ADMIN, "bench")
        return secret
    finally:
        store.close()


@contextlib.contextmanager
def servers(
    data: Path, url: str, count: int
) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    """``count`` serve processes over ``url``, started one after another (the first makes the
    signing key in the shared data directory); stopped however the block ends."""
    started: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for _ in range(count):
            port = free_port()
            process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("netpersona")),
                    "serve",
                    "--data-dir",
                    str(data),
                    "--db",
                    url,
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--log-level",
                    "warning",
                ],
                stderr=subprocess.DEVNULL,
            )
            started.append((port, process))
            deadline = time.monotonic() + 120
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("netpersona serve did not start") from None
                    time.sleep(0.1)
        yield started
    finally:
        for _, process in started:
            process.send_signal(signal.SIGTERM)
        for _, process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def watchers_waiting(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        conn = await Http.open(port, "127.0.0.1")
        try:
            _, _, body = await conn.request("GET", "/metrics")
        finally:
            conn.close()
        for line in body.decode().splitlines():
            if line.startswith('netpersona_watchers{view="persona"}'):
                total += float(line.split()[-1])
    return total


async def first_etag(port: int) -> str:
    conn = await Http.open(port, address(0))
    try:
        _, _, token = await conn.request("PUT", "/v1/token", {TOKEN_TTL_HEADER: "60"})
        _, headers, _ = await conn.request("GET", PERSONA_PATH, {TOKEN_HEADER: token.decode()})
        return headers["etag"]
    finally:
        conn.close()


async def admin_write(port: int, token: str, method: str, path: str, body: bytes) -> float:
    return (await timed_write(port, token, method, path, body)).seconds


@dataclass
class Write:
    """One acknowledged admin write: how long the client waited, and where the server says
    the time went (its ``Server-Timing`` header: queue, commit, build, publish, total)."""

    what: str
    seconds: float
    server: dict[str, float]  # phase -> ms
    deferred: bool

    def to_json(self) -> dict[str, Any]:
        # What the server did not account for: the event loop, the socket, the client.
        outside = self.seconds * 1000 - self.server.get("total", 0.0)
        return {
            "what": self.what,
            "ms": round(self.seconds * 1000, 2),
            "server_ms": self.server,
            "outside_server_ms": round(outside, 2),
            "view_built_after_answer": self.deferred,
        }


def server_timing(header: str) -> tuple[dict[str, float], bool]:
    phases: dict[str, float] = {}
    deferred = False
    for part in filter(None, (p.strip() for p in header.split(","))):
        name, *params = part.split(";")
        for param in params:
            if param.startswith("dur="):
                phases[name] = float(param.removeprefix("dur="))
        deferred = deferred or name == "deferred"
    return phases, deferred


async def timed_write(port: int, token: str, method: str, path: str, body: bytes) -> Write:
    conn = await Http.open(port, "127.0.0.1")
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        t0 = time.monotonic()
        status, answer_headers, answer = await conn.request(method, path, headers, body)
        took = time.monotonic() - t0
        assert status == 200, answer
        phases, deferred = server_timing(answer_headers.get("server-timing", ""))
        return Write(f"{method} {path}", took, phases, deferred)
    finally:
        conn.close()


def write_summary(writes: list[Write], slowest: int = 3) -> dict[str, Any]:
    """p50/p90/p99/max of the acknowledgements, and the slowest few with their phases."""
    ms = sorted(w.seconds * 1000 for w in writes)
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 0.50), 2),
        "p90": round(percentile(ms, 0.90), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "max": round(ms[-1], 2) if ms else 0.0,
        "slowest": [w.to_json() for w in sorted(writes, key=lambda w: -w.seconds)[:slowest]],
    }


# --- fan-out --------------------------------------------------------------------------------


def run_fanout(
    engine: Engine, n: int, replicas: int, processes: int, get_seconds: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="np-fanout-") as tmp, engine.database(Path(tmp)) as url:
        data = Path(tmp)
        admin_token = seed(url, n)
        with servers(data, url, replicas) as started:
            ports = [port for port, _ in started]
            pids = [process.pid for _, process in started]
            result = measure_fanout(ports, pids, admin_token, n, processes)
            if get_seconds > 0:
                result["plain_get"] = uvloop.run(plain_gets(ports[0], 32, get_seconds))
            return result


def measure_fanout(
    ports: list[int], pids: list[int], admin_token: str, n: int, processes: int
) -> dict[str, Any]:
    etag = uvloop.run(first_etag(ports[0]))
    rss_idle = sum(rss_bytes(pid) for pid in pids)
    context = multiprocessing.get_context("fork")
    workers = []
    start = time.monotonic()
    for k in range(processes):
        ours, theirs = context.Pipe()
        process = context.Process(
            target=watcher_process, args=(theirs, ports, list(range(k, n, processes)), etag)
        )
        process.start()
        workers.append((process, ours))
    try:
        for _, pipe in workers:
            assert pipe.recv()[0] == "ready"

        async def all_waiting() -> None:
            deadline = time.monotonic() + 300
            while await watchers_waiting(ports) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fewer than {n} watchers after 300 s")
                await asyncio.sleep(0.2)

        uvloop.run(all_waiting())
        connect_seconds = time.monotonic() - start
        time.sleep(0.5)
        rss_waiting = sum(rss_bytes(pid) for pid in pids)
        load = load_average()
        t0 = time.monotonic()
        write_ack = uvloop.run(
            admin_write(
                ports[0], admin_token, "PUT", "/v1/admin/personas/bench", persona(5).encode()
            )
        )
        # Wait for every answer, or the deadline, then collect.
        deadline = t0 + WAKE_DEADLINE
        seen: list[tuple[int, float]] = []
        changed = 0
        errors: list[str] = []
        by_replica_missing = 0
        while time.monotonic() < deadline:
            if uvloop.run(watchers_waiting(ports)) == 0:
                break
            time.sleep(0.2)
        for _, pipe in workers:
            pipe.send("stop")
        for _, pipe in workers:
            _, got, woke, failed = pipe.recv()
            seen += got
            changed += woke
            errors += failed
        by_replica_missing = n - len(seen)
    finally:
        for process, _ in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    latencies = [t - t0 for _, t in seen]
    result: dict[str, Any] = {
        "watchers": n,
        "replicas": len(ports),
        "load_average_at_write": load,
        "watchers_with_new_etag": changed,
        "all_watching_after_seconds": round(connect_seconds, 3),
        "write_ack_ms": round(write_ack * 1000, 2),
        "time_to_all_watchers_ms": summary_ms(latencies) if latencies else None,
        # Replica 0 took the write; the others heard of it through the store.
        "by_replica_ms": [
            summary_ms(held) if (held := [t - t0 for r, t in seen if r == k]) else None
            for k in range(len(ports))
        ],
        "server_rss_mb": {
            "idle": round(rss_idle / 2**20, 1),
            "with_watchers": round(rss_waiting / 2**20, 1),
        },
        # What a watcher costs the servers: its connection and its waiting request.
        "memory_per_watcher_kb": round((rss_waiting - rss_idle) / n / 1024, 2),
    }
    if by_replica_missing:
        result["not_woken"] = by_replica_missing
        result["pending"] = (
            f"{by_replica_missing} of {n} watchers had no answer {WAKE_DEADLINE:g} s after the"
            " write: the replicas that did not take the write were not told of it"
        )
        result["time_to_all_watchers_ms"] = None
        result["time_to_woken_watchers_ms"] = summary_ms(latencies) if latencies else None
    if errors:
        result["errors"] = errors[:10]
    return result


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


# --- write latency --------------------------------------------------------------------------


def run_writes(engine: Engine, m: int, label_writes: int, persona_writes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="np-writes-") as tmp, engine.database(Path(tmp)) as url:
        start = time.monotonic()
        admin_token = seed(url, m)
        seed_seconds = time.monotonic() - start
        with servers(Path(tmp), url, 1) as started:
            port = started[0][0]
            load = load_average()
            # The first admin request after a start pays for what is done once (imports,
            # the first token check): reported apart, not counted in the percentiles.
            first = uvloop.run(
                timed_write(
                    port,
                    admin_token,
                    "PATCH",
                    "/v1/admin/instances/vm0/labels",
                    json.dumps({"first": "write"}).encode(),
                )
            )
            labels = [
                uvloop.run(
                    timed_write(
                        port,
                        admin_token,
                        "PATCH",
                        f"/v1/admin/instances/vm{k * 7919 % m}/labels",
                        json.dumps({"bench": str(k)}).encode(),
                    )
                )
                for k in range(label_writes)
            ]
            personas = [
                uvloop.run(
                    timed_write(
                        port,
                        admin_token,
                        "PUT",
                        "/v1/admin/personas/bench",
                        persona(2 + k % 5).encode(),
                    )
                )
                for k in range(persona_writes)
            ]
            # An admin read after the last persona write answers from the view with it.
            settled = uvloop.run(
                timed_write(port, admin_token, "GET", f"/v1/admin/instances/vm{m - 1}/view", b"")
            )
            load_after = load_average()
    return {
        "instances": m,
        "seed_seconds": round(seed_seconds, 2),
        "load_average": load,
        "load_average_after": load_after,
        "first_write_after_start": first.to_json(),
        "label_write_ack_ms": write_summary(labels),
        "persona_write_ack_ms": write_summary(personas),
        "admin_read_after_persona_write_ms": round(settled.seconds * 1000, 2),
    }


def counts(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        sys.exit(f"{text!r}: expected a comma-separated list of counts, e.g. 1000,5000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--replicas", type=int, choices=(1, 2), default=1)
    parser.add_argument("--watchers", default="1000,5000,10000", help="comma list; '' for none")
    parser.add_argument("--write-instances", default="100,100000", help="comma list; '' for none")
    parser.add_argument("--label-writes", type=int, default=20)
    parser.add_argument("--persona-writes", type=int, default=5)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--get-seconds", type=float, default=3.0)
    args = parser.parse_args()
    watcher_counts = counts(args.watchers)
    write_counts = counts(args.write_instances)
    if args.replicas > 1 and args.engine == "sqlite":
        sys.exit("--replicas 2: replicas share a PostgreSQL database (--engine postgresql)")
    # SIGTERM unwinds like Ctrl-C, so servers and clusters are stopped and the data removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # One socket per watcher on each side, plus headroom; the servers inherit the limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if watcher_counts and max(watcher_counts) + 200 > hard:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {max(watcher_counts)} watchers")
    before = load_average()
    with engine_of(args.engine) as engine:
        fanout = [
            run_fanout(engine, n, args.replicas, args.client_processes, args.get_seconds)
            for n in watcher_counts
        ]
        writes = [
            run_writes(engine, m, args.label_writes, args.persona_writes) for m in write_counts
        ]
    print(
        json.dumps(
            {
                "benchmark": "fanout",
                "engine": args.engine,
                "replicas": args.replicas,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "load_average_before": before,
                "load_average_after": load_average(),
                "fanout": fanout,
                "write_latency": writes,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
