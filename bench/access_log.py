"""What the access log costs the service: plain persona GETs per second with it on and off;
prints one JSON document.

One ``netpersona serve`` process per configuration, alternated ``--rounds`` times in the same
run so that machine load falls on both alike; its stderr goes to a file (the JSON format, as
under systemd, at info level so the access log is written). The reference is the same server
with ``--no-access-log``. The client is bench/fanout.py's (raw asyncio sockets, keep-alive).
Also the cost of one line, rendered in this process, against the standard library's plainest
formatter.

    uv run python bench/access_log.py                    # 3 rounds of 5 s, 32 clients
    uv run python bench/access_log.py --rounds 1 --get-seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import free_port, plain_gets, populate

from netpersona.logs import configure_logging
from netpersona.store import Role, SqliteStore

ACCESS_ARGS = ("127.0.0.1:5555", "GET", "/v1/instance/network_persona", "1.1", 200)


def line_microseconds(lines: int = 20000) -> dict[str, float]:
    """In this process: one access-log line through netpersona.logs (json, to /dev/null), and
    the same record through the standard library's plainest formatter, for reference."""
    access = logging.getLogger("uvicorn.access")
    figures = {}
    with open(os.devnull, "w") as null:
        for name in ("netpersona_json", "reference_stdlib_message_only"):
            configure_logging("info", "json", stream=null)
            if name.startswith("reference"):
                logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(message)s"))
            started = time.perf_counter()
            for _ in range(lines):
                access.info('%s - "%s %s HTTP/%s" %d', *ACCESS_ARGS)
            figures[name] = round((time.perf_counter() - started) / lines * 1e6, 1)
    logging.getLogger().handlers.clear()
    return figures


CONFIGS = {"access_log": ["--access-log"], "reference_no_access_log": ["--no-access-log"]}


def one(data: Path, extra: list[str], clients: int, seconds: float) -> dict[str, Any]:
    port = free_port()
    log = data / f"serve-{port}.log"
    with log.open("wb") as err:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("netpersona")),
                *("serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"),
                *("--log-level", "info", "--log-format", "json", *extra),
            ],
            stderr=err,
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
        result = asyncio.run(plain_gets(port, clients, seconds))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    result["log_lines"] = sum(1 for _ in log.open("rb"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--get-seconds", type=float, default=5.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="np-access-log-") as tmp:
        data = Path(tmp)
        populate(data / "netpersona.db", args.clients)
        store = SqliteStore(data / "netpersona.db")
        store.create_token("bench", Role.ADMIN, "bench")  # serve refuses a store without one
        store.close()
        for _ in range(args.rounds):
            for name, extra in CONFIGS.items():
                runs[name].append(one(data, extra, args.clients, args.get_seconds))
    medians = {
        name: statistics.median(r["gets_per_second"] for r in results)
        for name, results in runs.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "access_log",
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "median_gets_per_second": medians,
                "access_log_relative_to_reference": round(
                    medians["access_log"] / medians["reference_no_access_log"], 3
                ),
                "line_microseconds": line_microseconds(),
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
