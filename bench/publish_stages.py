"""Where a persona write's time goes between its commit and the published view, in-process.

A fleet of N instances pinned to one persona, on ``--engine sqlite`` (a file) or
``postgresql`` (a throwaway cluster, tests/store/pg_cluster), and two :class:`Fleet` objects on
it, each with its own store connection: the writer, and a follower as a second replica is
(``Fleet.follow``'s build). Every instance's persona view is watched. Each round writes a new
version of the persona and times, for the writer: the build of the new view
(``Fleet._build_counted``: the store's delta, the policy engine, ``FleetView.apply``), finding
the watched views it changed (``affected_keys``) and making their answers; for the follower:
reading the change sequence and its build; and, as the reference in the same run, the same
write's view made the old way (a read of the whole fleet and a full resolve).

    uv run python bench/publish_stages.py --engine postgresql --instances 10000 --rounds 5

Prints one JSON document: per stage the median and the largest of the rounds (ms), and the
load average before and after. Only the build and the wake-up computation: the socket writes
of the answers are bench/fanout.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from netpersona.logs import configure_logging
from netpersona.service.assignment import PolicyPersonas
from netpersona.service.certificates import CertificateAuthority
from netpersona.service.fleet import Fleet
from netpersona.service.keyring import KeyRing, StaticKeys
from netpersona.service.views import FleetView, ViewKind, WatchKey, affected_keys
from netpersona.store import Instance, Store, open_store

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def persona(priority: int) -> str:
    body = {
        "communication_mode": "unicast",
        "security_profile": "medium",
        "allowed_protocols": ["ssh", "https"],
        "priority": priority,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def address(i: int) -> str:
    return f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


@contextlib.contextmanager
def database(engine: str) -> Iterator[str]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="np-stages-") as tmp:
            yield f"sqlite:///{tmp}/netpersona.db"
        return
    sys.path.insert(0, str(ROOT))
    from tests.store.pg_cluster import find_pg_bin, pg_cluster  # noqa: PLC0415

    bin_dir = find_pg_bin()
    if bin_dir is None:
        sys.exit("--engine postgresql: no initdb found (set NETPERSONA_PG_BIN)")
    with pg_cluster(bin_dir) as cluster, cluster.database() as url:
        yield url


def timed(times: dict[str, list[float]], stage: str, run: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = run()
    times.setdefault(stage, []).append((time.perf_counter() - start) * 1000)
    return result


def fleet_on(store: Store, keys: StaticKeys) -> Fleet:
    return Fleet(store, authority=CertificateAuthority(store, keys))


def measure(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    seeding = open_store(url, create=True)
    seeding.put_persona("bench", persona(1), "bench")
    specs = [Instance(f"vm{i}", "", (address(i),), pin="bench") for i in range(n)]
    seeding.import_instances(specs, "bench")
    seeding.close()
    stores = [open_store(url, create=False) for _ in range(3)]
    try:
        keys = StaticKeys(KeyRing.generate(time.time()))
        writer, follower = fleet_on(stores[0], keys), fleet_on(stores[1], keys)
        watched: list[WatchKey] = [(ViewKind.PERSONA, f"vm{i}") for i in range(n)]
        resolver = PolicyPersonas()
        FleetView.build(stores[2].fleet(), resolver)  # the reference's engine, built once
        times: dict[str, list[float]] = {}
        for k in range(rounds):
            stores[0].put_persona("bench", persona(2 + k), "bench")
            old = writer.view
            new, _ = timed(times, "writer_build", writer._build_counted)
            timed(times, "writer_affected", functools.partial(affected_keys, old, new, watched))
            timed(times, "writer_answers", functools.partial(list, map(new.view, watched)))
            writer.notifier.publish(new)
            read_changes = functools.partial(stores[1].changes_since, follower.view.changes, 1000)
            timed(times, "follower_changes_since", read_changes)
            built = timed(times, "follower_build", follower._build_if_behind)
            assert built is not None
            follower.notifier.publish(built[0])
            timed(
                times,
                "reference_full_build",
                lambda: FleetView.build(stores[2].fleet(), resolver),
            )
        return times
    finally:
        for store in stores:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging("warning")  # on stderr: stdout is the JSON document
    before = [round(x, 2) for x in os.getloadavg()]
    with database(args.engine) as url:
        times = measure(url, args.instances, args.rounds)
    print(
        json.dumps(
            {
                "benchmark": "publish_stages",
                "engine": args.engine,
                "instances": args.instances,
                "rounds": args.rounds,
                "cpus": os.cpu_count(),
                "load_average_before": before,
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "ms": {
                    stage: {
                        "median": round(statistics.median(values), 1),
                        "max": round(max(values), 1),
                    }
                    for stage, values in times.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
