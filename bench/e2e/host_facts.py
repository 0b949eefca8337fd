"""bench/e2e: one read of the host facts, over netlink against three ``ip -j`` processes
(prints JSON).

Both ways, in this process's own namespace (how the agent runs: reads only) and in a
throwaway one (``ip -n`` against a netlink socket made there by a thread that joins it),
interleaved, median of ROUNDS reads each; and the first netlink read, which imports pyroute2's
message codecs. Run as root from the repository root:

    .venv/bin/python bench/e2e/host_facts.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from netpersona.dataplane import LinuxKernel
from netpersona.dataplane.netlink import read_host
from netpersona.testing.netns import netns


def _ip(kernel: LinuxKernel) -> Callable[[], Any]:
    return lambda: (kernel.default_routes(4), kernel.default_routes(6), kernel.addresses())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    rounds = parser.parse_args().rounds
    load_before = os.getloadavg()
    started = time.perf_counter()
    read_host()  # the first read imports pyroute2
    first_s = time.perf_counter() - started
    with netns("npbenchnl") as ns:
        ns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
        ns.run(["ip", "link", "set", "eth0", "up"])
        ns.run(["ip", "address", "add", "10.1.0.2/24", "dev", "eth0"])
        ns.run(["ip", "route", "add", "default", "via", "10.1.0.1", "dev", "eth0"])
        ways: dict[str, Callable[[], Any]] = {
            "own_ns_ip_x3": _ip(LinuxKernel()),
            "own_ns_netlink": read_host,
            "netns_ip_x3": _ip(LinuxKernel(ns.name)),
            "netns_netlink": lambda: read_host(ns.name),
        }
        samples: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, read in ways.items():
                began = time.perf_counter()
                read()
                samples[name].append(time.perf_counter() - began)
    print(
        json.dumps(
            {
                "benchmark": "host facts read",
                "rounds": rounds,
                "first_netlink_read_with_import_ms": round(first_s * 1000, 1),
                "median_ms": {n: round(statistics.median(s) * 1000, 2) for n, s in samples.items()},
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
