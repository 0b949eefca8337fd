"""Soak test of the metadata service; prints one JSON document.

One ``netpersona serve`` process on loopback, then for ``--minutes`` (default 10) everything
at once: long-poll watchers (each a separate instance on its own 127.2.x.y address), VM GETs
of the instance, persona and peer views, agents' status reports, and admin writes (label
patches, persona versions that wake half the watchers, context values). Printed: latency
percentiles per kind of request, the count of errors (any unexpected status or transport
failure; it must be 0), how many watches were woken, and the server's RSS sampled over the
run with a verdict on whether it stayed flat (mean of the last quarter of the samples against
the mean of the second quarter: growth under ``--flat-percent``).

    uv run python bench/soak/run.py                      # 10 minutes
    uv run python bench/soak/run.py --minutes 1 --watchers 50

Client and server share the machine; the raw-socket client of bench/fanout.py keeps the
client's share of the CPU small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fanout import Http, free_port, percentile, rss_bytes

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.store import InstanceSpec, Role, SqliteStore

RNG = random.Random(7)  # noqa: S311 (pacing and picks, not secrets)
PERSONA_PATH = "/v1/instance/network_persona"
VIEWS = ("/v1/instance", PERSONA_PATH, "/v1/instance/peers")


def address(i: int) -> str:
    return f"127.2.{i // 250}.{i % 250 + 1}"


def persona(priority: int) -> str:
    return json.dumps(
        {
            "communication_mode": "unicast",
            "security_profile": "medium",
            "allowed_protocols": ["ssh", "https"],
            "priority": priority,
            "peers": [{"labels": {"tier": "web"}}],
        },
        sort_keys=True,
        separators=(",", ":"),
    )


class Soak:
    def __init__(self, port: int, pid: int, admin_token: str, args: argparse.Namespace) -> None:
        self.port = port
        self.pid = pid
        self.admin_token = admin_token
        self.args = args
        self.stop = time.monotonic() + args.minutes * 60
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.woken = 0
        self.last_write = 0.0
        self.rss: list[tuple[float, int]] = []

    def failed(self, kind: str, what: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {what}")

    async def session(self, i: int) -> tuple[Http, str]:
        conn = await Http.open(self.port, address(i))
        status, _, body = await conn.request("PUT", "/v1/token", {TOKEN_TTL_HEADER: "21600"})
        if status != 200:
            raise RuntimeError(f"token for {address(i)}: {status} {body[:200]!r}")
        return conn, body.decode()

    async def watcher(self, i: int) -> None:
        conn, token = await self.session(i)
        etag = ""
        while time.monotonic() < self.stop:
            query = f"?wait_for_change=true&last_etag={etag}&timeout_sec=20"
            start = time.perf_counter()
            try:
                status, headers, _ = await conn.request(
                    "GET", PERSONA_PATH + query, {TOKEN_HEADER: token}
                )
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.failed("watch", repr(exc))
                conn.close()
                conn, token = await self.session(i)
                continue
            if status != 200:
                self.failed("watch", f"status {status}")
                continue
            new = headers["etag"].strip('"')
            if etag and new != etag:
                self.woken += 1
                self.latency["watch_wake"].append(time.perf_counter() - max(start, self.last_write))
            etag = new
        conn.close()

    async def paced(self, kind: str, per_second: float, step: Any) -> None:
        """``step()`` about ``per_second`` times a second until the end, timed as ``kind``."""
        interval = 1 / per_second
        next_at = time.monotonic()
        while time.monotonic() < self.stop:
            next_at += interval * RNG.uniform(0.5, 1.5)
            start = time.perf_counter()
            try:
                problem = await step()
            except (OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
                problem = repr(exc)
            self.latency[kind].append(time.perf_counter() - start)
            if problem:
                self.failed(kind, problem)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # One task per connection, each paced at its share of the rate: a connection is never
    # used by two requests at once, nor left idle past the service's 5 s keep-alive.
    async def vm_gets(self, conn: Http, token: str, per_second: float) -> None:
        async def step() -> str | None:
            status, _, _ = await conn.request("GET", RNG.choice(VIEWS), {TOKEN_HEADER: token})
            return None if status == 200 else f"status {status}"

        await self.paced("vm_get", per_second, step)

    async def reports(self, conn: Http, token: str, per_second: float) -> None:
        async def step() -> str | None:
            body = json.dumps(
                {
                    "persona": "soak-a",
                    "version": 1,
                    "result": "applied",
                    "drops": {"not_a_peer": RNG.randrange(1000)},
                }
            ).encode()
            status, _, _ = await conn.request(
                "POST",
                "/v1/instance/status",
                {TOKEN_HEADER: token, "Content-Type": "application/json"},
                body,
            )
            return None if status == 204 else f"status {status}"

        await self.paced("status_report", per_second, step)

    async def admin_writes(self) -> None:
        conn = await Http.open(self.port, "127.0.0.1")
        auth = {"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"}
        count = 0

        async def step() -> str | None:
            nonlocal count
            count += 1
            kind = count % 3
            self.last_write = time.perf_counter()
            if kind == 0:  # a new version of the persona half the watchers hold
                method, path, body = "PUT", "/v1/admin/personas/soak-b", persona(count % 8)
            elif kind == 1:
                vm = RNG.randrange(self.args.watchers)
                label = json.dumps({"rev": str(count)})
                method, path, body = "PATCH", f"/v1/admin/instances/vm{vm}/labels", label
            else:
                value = json.dumps({"value": f"v{count % 5}"})
                method, path, body = "PUT", "/v1/admin/context/soak", value
            status, _, answer = await conn.request(method, path, auth, body.encode())
            return None if status in (200, 201) else f"{path}: {status} {answer[:200]!r}"

        await self.paced("admin_write", self.args.writes_per_second, step)
        conn.close()

    async def sample_rss(self) -> None:
        start = time.monotonic()
        while time.monotonic() < self.stop:
            self.rss.append((time.monotonic() - start, rss_bytes(self.pid)))
            await asyncio.sleep(self.args.sample_seconds)

    async def run(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(64)

        async def open_session(i: int) -> tuple[Http, str]:
            async with gate:
                return await self.session(i)

        first = self.args.watchers
        getters = await asyncio.gather(*(open_session(first + i) for i in range(self.args.vms)))
        reporters = await asyncio.gather(
            *(open_session(first + self.args.vms + i) for i in range(self.args.vms))
        )
        gets = self.args.gets_per_second / self.args.vms
        reports = self.args.reports_per_second / self.args.vms
        tasks = [asyncio.create_task(self.watcher(i)) for i in range(self.args.watchers)]
        tasks += [asyncio.create_task(self.vm_gets(c, t, gets)) for c, t in getters]
        tasks += [asyncio.create_task(self.reports(c, t, reports)) for c, t in reporters]
        tasks += [
            asyncio.create_task(self.admin_writes()),
            asyncio.create_task(self.sample_rss()),
        ]
        await asyncio.gather(*tasks)
        for conn, _ in [*getters, *reporters]:
            conn.close()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        def ms(values: list[float]) -> dict[str, Any]:
            return {
                "count": len(values),
                "p50_ms": round(percentile(values, 0.50) * 1000, 2),
                "p99_ms": round(percentile(values, 0.99) * 1000, 2),
                "max_ms": round(max(values) * 1000, 2),
            }

        samples = [rss for _, rss in self.rss]
        quarter = max(1, len(samples) // 4)
        second = statistics.fmean(samples[quarter : 2 * quarter] or samples)
        last = statistics.fmean(samples[-quarter:])
        growth = (last - second) / second * 100
        return {
            "latency": {kind: ms(values) for kind, values in sorted(self.latency.items())},
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "error_samples": self.error_samples,
            "watches_woken": self.woken,
            "rss_mb": {
                "samples": [[round(t), round(rss / 2**20, 1)] for t, rss in self.rss],
                "second_quarter_mean": round(second / 2**20, 1),
                "last_quarter_mean": round(last / 2**20, 1),
                "growth_percent": round(growth, 2),
                "flat": growth < self.args.flat_percent,
            },
        }


def populate(db: Path, instances: int) -> str:
    store = SqliteStore(db)
    try:
        store.put_persona("soak-a", persona(1), "soak")
        store.put_persona("soak-b", persona(2), "soak")
        for i in range(instances):
            labels = (("tier", "web" if i % 2 else "db"),)
            spec = InstanceSpec(name="", addresses=(address(i),), labels=labels)
            store.create_instance(f"vm{i}", spec, "soak")
            store.set_pin(f"vm{i}", "soak-a" if i % 2 else "soak-b", "soak")
        return store.create_token("soak", Role.ADMIN, "soak")[1]
    finally:
        store.close()


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
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
        ]
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("netpersona serve did not start") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--watchers", type=int, default=300)
    parser.add_argument(
        "--vms", type=int, default=25, help="instances making GETs (and as many reporting)"
    )
    parser.add_argument("--gets-per-second", type=float, default=100.0)
    parser.add_argument("--reports-per-second", type=float, default=20.0)
    parser.add_argument("--writes-per-second", type=float, default=1.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--flat-percent", type=float, default=5.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="np-soak-") as tmp:
        data = Path(tmp)
        admin_token = populate(data / "netpersona.db", args.watchers + 2 * args.vms)
        port = free_port()
        server = start_server(data, port)
        try:
            result = asyncio.run(Soak(port, server.pid, admin_token, args).run())
            result["server_alive"] = server.poll() is None
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(
        json.dumps(
            {
                "benchmark": "soak",
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "settings": vars(args),
                **result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
