"""Start-up cost of the store's checks on a database of N instances; prints one JSON document.

Opening a database runs ``PRAGMA quick_check`` before the service starts (a database that
fails it is refused). This measures that check, and the whole open, at each size; the figures
are medians of ``--repeat`` opens of the same file (the page cache is warm after the first).

    uv run python bench/store_open.py                 # 1000 and 10000 instances
    uv run python bench/store_open.py --instances 10000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netpersona.store import Instance, Interface, Role, SqliteStore, Tier


def populate(path: Path, n: int) -> None:
    store = SqliteStore(path)
    # One fsync per write would make building the file most of the run; the file, not its
    # durability, is what is measured here.
    store._database.connection.execute("PRAGMA synchronous=OFF")
    try:
        store.put_persona("bench", json.dumps({"communication_mode": "unicast"}), "bench")
        store.create_token("bench", Role.ADMIN, "bench")
        for i in range(n):
            spec = Instance(
                id=f"vm{i}",
                name=f"vm {i}",
                addresses=(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",),
                interfaces=(
                    Interface(
                        "eth0", (f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/16",), Tier.STANDARD
                    ),
                ),
                labels=(("app", f"a{i % 10}"), ("zone", f"z{i % 3}")),
            )
            store.create_instance(spec, "bench")
            store.set_pin(f"vm{i}", "bench", "bench")
    finally:
        store.close()


def measure(n: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="np-store-open-") as tmp:
        path = Path(tmp) / "netpersona.db"
        populate(path, n)
        checks, opens = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            store = SqliteStore(path)
            opens.append(time.perf_counter() - started)
            checks.append(store._database.check_seconds or 0.0)
            store.close()
        return {
            "instances": n,
            "database_bytes": path.stat().st_size,
            "quick_check_seconds_median": round(statistics.median(checks), 4),
            "quick_check_seconds_max": round(max(checks), 4),
            "open_seconds_median": round(statistics.median(opens), 4),
            "repeat": repeat,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, action="append")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = args.instances or [1000, 10_000]
    results = [measure(n, args.repeat) for n in sizes]
    json.dump({"store_open": results}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
