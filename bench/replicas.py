"""Two ``serve`` replicas on one throwaway PostgreSQL cluster: how long a write through one
takes to wake the long-poll watchers held by the other, against the same write's watchers on
the replica it went through (the reference, measured in the same run).

    .venv/bin/python bench/replicas.py [--instances 50] [--watchers 400] [--writes 10]

Prints one JSON document: the wake latencies (ms after the write was sent) of the watchers
on the writing replica ("same") and on the other ("other"), how long the write took to be
acknowledged, and the load average before and after. The writer and the watchers share one
event loop in this process, so on a busy machine every figure includes its queueing.
Needs PostgreSQL's initdb (see docs/deployment.md, testing on both engines).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# The throwaway cluster and the replica processes are the tests' own helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.service.conftest import persona_doc
from tests.service.replica_processes import serve_replicas
from tests.store.pg_cluster import find_pg_bin, pg_cluster

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER

PERSONA = "/v1/instance/network_persona"


def _address(n: int) -> str:
    return f"127.0.3.{n + 1}"


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def _run(urls: list[str], tokens: list[str], instances: int, per: int, writes: int) -> Any:
    woken: dict[int, list[tuple[int, float]]] = {}  # write -> (replica, monotonic time)
    clients = []
    for n in range(instances):
        transport = httpx.AsyncHTTPTransport(
            local_address=_address(n), limits=httpx.Limits(max_connections=per + 2)
        )
        clients.append(httpx.AsyncClient(transport=transport, timeout=300))

    async def watch(n: int) -> None:
        replica = n % 2
        client = clients[n % instances]
        url = urls[replica] + PERSONA
        token = {TOKEN_HEADER: tokens[n % instances]}
        etag = (await client.get(url, headers=token)).headers["etag"]
        while True:
            answer = await client.get(
                url,
                headers=token,
                params={"wait_for_change": "true", "last_etag": etag, "timeout_sec": "240"},
            )
            now = time.monotonic()
            if answer.headers["etag"] != etag:
                etag = answer.headers["etag"]
                woken.setdefault(answer.json()["version"], []).append((replica, now))

    tasks = [asyncio.create_task(watch(n)) for n in range(instances * per)]
    same: list[float] = []
    other: list[float] = []
    acks: list[float] = []
    async with httpx.AsyncClient(timeout=60) as admin:
        await asyncio.sleep(3)  # every watcher holds its long-poll
        for k in range(writes):
            through = k % 2
            sent = time.monotonic()
            response = await admin.put(
                urls[through] + "/v1/admin/personas/web",
                json=persona_doc((k + 1) % 8),  # never the document already stored
                headers={"Authorization": f"Bearer {tokens[-1]}"},
            )
            acks.append(time.monotonic() - sent)
            version = response.json()["version"]
            deadline = sent + 60
            while len(woken.get(version, ())) < len(tasks) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for replica, at in woken.get(version, ()):
                (same if replica == through else other).append(at - sent)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        await client.aclose()
    return {
        "write_acknowledged": _percentiles(acks),
        "same": _percentiles(same),
        "other": _percentiles(other),
        "expected_per_side": writes * len(tasks) // 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--watchers", type=int, default=400, help="in all, half per replica")
    parser.add_argument("--writes", type=int, default=10)
    args = parser.parse_args()
    bin_dir = find_pg_bin()
    if bin_dir is None:
        sys.exit("needs PostgreSQL's initdb")
    load_before = os.getloadavg()
    per = max(1, args.watchers // args.instances)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="np-bench-"))
        cluster = stack.enter_context(pg_cluster(bin_dir))
        url = stack.enter_context(cluster.database())
        a, b = stack.enter_context(serve_replicas(Path(tmp), url))
        with a.admin() as admin:
            admin.put("/v1/admin/personas/web", json=persona_doc(0)).raise_for_status()
            for n in range(args.instances):
                admin.post(
                    "/v1/admin/instances",
                    json={"id": f"vm{n}", "addresses": [_address(n)]},
                ).raise_for_status()
                admin.put(
                    f"/v1/admin/instances/vm{n}/pin", json={"persona": "web"}
                ).raise_for_status()
        time.sleep(2)  # b has followed a's writes (it identifies the VMs)
        tokens = []
        for n in range(args.instances):
            transport = httpx.HTTPTransport(local_address=_address(n))
            with httpx.Client(transport=transport) as vm:
                answer = vm.put(b.url + "/v1/token", headers={TOKEN_TTL_HEADER: "3600"})
                answer.raise_for_status()
                tokens.append(answer.text)
        tokens.append(a.admin_token)
        result = asyncio.run(_run([a.url, b.url], tokens, args.instances, per, args.writes))
    print(
        json.dumps(
            {
                "benchmark": "replicas",
                "instances": args.instances,
                "watchers": args.instances * per,
                "writes": args.writes,
                "wake_after_write": result,
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
