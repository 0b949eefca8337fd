"""Console benchmark; prints one JSON document.

A fleet of N instances (default 10k) with the lab scenario's personas, policy and context, each
with an agent report, written straight into a fresh SQLite store (under /dev/shm when it
exists, so seeding is not a test of the disk). Then:

* ``fleet_page``: ``GET /ui/`` (first page, the summary over the whole fleet), a label filter,
  a persona filter and a late page, each ``--runs`` times, timed in-process through the ASGI app
  (server time, no network) and against a real ``netpersona serve`` over loopback;
* ``live``: a persona change through the admin API until the console's event stream says
  ``change``, and until the page fetched again after it is complete (what the browser's
  script does), on the real process;
* ``what_if_threat_level_high``: the blast radius of raising the threat level, over the API.

    uv run python bench/console.py                 # 10k instances
    uv run python bench/console.py --instances 1000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from netpersona.lab.scenario import load_scenario
from netpersona.service import create_app
from netpersona.store import Role, SqliteStore
from netpersona.store.base import InstanceSpec, InstanceStatus, Interface

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "examples" / "lab" / "scenario.yaml"
PAGES = {
    "first page": "/ui/",
    "label filter": "/ui/?label=app=web",
    "persona filter": "/ui/?persona=db-restricted",
    "page 40": "/ui/?page=40",
}


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def seed(path: Path, count: int) -> None:
    lab = load_scenario(SCENARIO)
    store = SqliteStore(path)
    try:
        for name, file in sorted(lab.personas.items()):
            inner = yaml.safe_load(file.read_text())["network_persona"]
            store.put_persona(name, _canonical(inner), "bench")
        store.put_policy(_canonical(yaml.safe_load(lab.policy.read_text())), "bench")
        for key, value in lab.context.items():
            store.set_context(key, value, "bench")
        kinds = [vm.labels for vm in lab.vms]
        for n in range(count):
            address = f"10.{100 + n // 65536}.{(n // 256) % 256}.{n % 256}"
            labels = tuple(sorted({**kinds[n % len(kinds)], "zone": f"z{n % 7}"}.items()))
            spec = InstanceSpec(
                name=f"vm-{n}",
                addresses=(address,),
                interfaces=(Interface("eth0", (f"{address}/16",)),),
                labels=labels,
            )
            store.create_instance(f"vm-{n:05d}", spec, "bench")
            store.record_status(
                InstanceStatus(
                    f"vm-{n:05d}", None, None, "applied", "", (("drop_not_peer", n % 5),), 0.0
                )
            )
    finally:
        store.close()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_s": round(statistics.median(ordered), 4),
        "p95_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 4),
        "max_s": round(ordered[-1], 4),
    }


async def in_process(path: Path, runs: int) -> dict[str, Any]:
    store = SqliteStore(path)
    secret = store.create_token("bench-reader", Role.READER, "bench")[1]
    started = time.perf_counter()
    app = create_app(store)
    build = time.perf_counter() - started
    transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 4000))
    result: dict[str, Any] = {"service_start_s": round(build, 3)}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            signed = await client.post("/ui/sign-in", data={"token": secret})
            assert signed.status_code == 303, signed.text
            for name, page in PAGES.items():
                samples = []
                for _ in range(runs):
                    t = time.perf_counter()
                    response = await client.get(page)
                    samples.append(time.perf_counter() - t)
                    assert response.status_code == 200, response.text[:200]
                result[name] = {**_stats(samples), "bytes": len(response.content)}
    finally:
        store.close()
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(data: Path) -> Iterator[str]:
    port = _free_port()
    script = Path(sys.executable).with_name("netpersona")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "netpersona"]
    argv += ["serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*argv, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/openapi.json", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("netpersona serve did not start")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def over_http(data: Path, runs: int, changes: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with serving(data) as url:
        token = (data / "admin.token").read_text().strip()
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        page = httpx.Client(base_url=url, timeout=30)
        assert page.post("/ui/sign-in", data={"token": token}).status_code == 303
        for name, path in PAGES.items():
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                assert page.get(path).status_code == 200
                samples.append(time.perf_counter() - t)
            result[name] = _stats(samples)
        result["live"] = _live(url, admin, page, changes)
        result["what_if_threat_level_high"] = _what_if(admin)
        admin.close()
        page.close()
    return result


def _live(url: str, admin: httpx.Client, page: httpx.Client, changes: int) -> dict[str, Any]:
    """A persona change until the event stream says so, and until the page is fetched again."""
    seen: list[float] = []
    ready = threading.Event()
    cookies = dict(page.cookies)

    def listen() -> None:
        # The stream is idle up to 15 s between keepalives: read timeout above that.
        with (
            httpx.Client(base_url=url, cookies=cookies, timeout=60) as stream_client,
            stream_client.stream("GET", "/ui/events") as stream,
        ):
            for line in stream.iter_lines():
                if line.startswith("event: hello"):
                    ready.set()
                elif line.startswith("event: change"):
                    seen.append(time.perf_counter())
                    if len(seen) >= changes:
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(30)
    to_event, to_page = [], []
    current = admin.get("/v1/admin/personas/web-frontend").json()["network_persona"]
    for n in range(changes):
        count = len(seen)
        document = {"network_persona": {**current, "priority": n % 2 + 4}}
        t = time.perf_counter()
        assert admin.put("/v1/admin/personas/web-frontend", json=document).status_code == 200
        deadline = time.perf_counter() + 30
        while len(seen) <= count and time.perf_counter() < deadline:
            time.sleep(0.005)
        to_event.append(seen[count] - t)
        page.get("/ui/?persona=web-frontend")
        to_page.append(time.perf_counter() - t)
        time.sleep(0.3)
    thread.join(5)
    return {"to_event": _stats(to_event), "to_page_fetched": _stats(to_page)}


def _what_if(admin: httpx.Client) -> dict[str, Any]:
    """The blast radius of raising the threat level on the whole fleet, over the API."""
    t = time.perf_counter()
    answer = admin.post(
        "/v1/admin/policy/diff", json={"context": {"threat_level": "high"}}, timeout=600
    ).json()
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "instances_changed": answer["count"],
        "pairs_changed": answer["connectivity_count"],
        "pairs_listed": len(answer["connectivity"] or []),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    # Memory-backed when the machine has it (a private directory made by mkdtemp).
    shm = Path("/dev/shm")  # noqa: S108
    base = str(shm) if shm.is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="np-console-bench-", dir=base))
    try:
        data = work / "data"
        data.mkdir()
        load_before = loadavg()
        t = time.perf_counter()
        seed(data / "netpersona.db", args.instances)
        seeded = time.perf_counter() - t
        server = asyncio.run(in_process(data / "netpersona.db", args.runs))
        http = over_http(data, args.runs, args.changes)
        print(
            json.dumps(
                {
                    "instances": args.instances,
                    "runs": args.runs,
                    "seed_s": round(seeded, 2),
                    "fleet_page_server_time": server,
                    "over_http": http,
                    "loadavg_before": load_before,
                    "loadavg_after": loadavg(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
