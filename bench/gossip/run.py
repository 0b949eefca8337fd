"""Gossip propagation benchmark (simulated part): rounds, time and bytes for one change.

    .venv/bin/python bench/gossip/run.py                      # 1k and 10k nodes, 0/10/30% loss
    .venv/bin/python bench/gossip/run.py --nodes 200 --loss 0  # a quick look
    .venv/bin/python bench/gossip/run.py --fanout 4            # another parameter

Prints one JSON document. For each fleet size the simulator starts settled, measures the
background (no news) traffic over one push-pull period, then for each loss rate lets one VM's
certificate change and runs until every node holds it. Bytes count UDP payload plus 28 bytes
of IPv4/UDP header per datagram. The real-namespace cluster and the Serf comparison are
bench/gossip/cluster.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict

from netpersona.gossip import GossipConfig
from netpersona.gossip.simulator import Simulator

# memberlist's LAN defaults, which Serf uses: gossip every 200 ms to 3 nodes, packets of up to
# 1400 bytes. Serf's convergence simulator estimates bandwidth as that ceiling.
SERF_MODEL = {
    "gossip_interval_s": 0.2,
    "fanout": 3,
    "packet_bytes": 1400,
    "max_bytes_per_s_per_node": 3 * 1400 / 0.2,
}


def run(
    nodes: list[int], losses: list[float], seed: int, config: GossipConfig
) -> dict[str, object]:
    return {
        "benchmark": "gossip-simulated",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "config": asdict(config),
        "results": _run(config, nodes, losses, seed),
        "serf_model_reference": SERF_MODEL,
    }


def _run(
    config: GossipConfig, nodes: list[int], losses: list[float], seed: int
) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    for n in nodes:
        started = time.perf_counter()
        sim = Simulator(n, config=config, seed=seed)
        # Let the first (synchronised) push-pull wave pass, so phases spread as in a live fleet.
        sim.run_until(sim.now + 1.3 * config.push_pull_interval)
        background = sim.background(config.push_pull_interval)
        for index, loss in enumerate(losses):
            sim.loss = loss
            sim.run_until(sim.now + 20 * config.interval)  # let earlier rumours die out
            origin = (seed * 7919 + index * 104729) % n
            change = asdict(sim.change(origin=origin, max_rounds=200))
            change["background_bytes_per_s_per_node"] = round(background, 2)
            results.append(change)
            print(
                f"{n} nodes {loss:.0%} loss: {change['rounds_to_999']} rounds to 99.9% "
                f"({time.perf_counter() - started:.0f}s so far)",
                file=sys.stderr,
            )
    for result in results:
        for key, value in result.items():
            if isinstance(value, float):
                result[key] = round(value, 3)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1000,10000", help="comma-separated fleet sizes")
    parser.add_argument("--loss", default="0,0.1,0.3", help="comma-separated loss rates")
    parser.add_argument("--seed", type=int, default=1)
    defaults = GossipConfig()
    parser.add_argument("--fanout", type=int, default=defaults.fanout)
    parser.add_argument("--retransmit-mult", type=int, default=defaults.retransmit_mult)
    args = parser.parse_args(argv)
    nodes = [int(n) for n in args.nodes.split(",")]
    losses = [float(x) for x in args.loss.split(",")]
    config = GossipConfig(fanout=args.fanout, retransmit_mult=args.retransmit_mult)
    json.dump(run(nodes, losses, args.seed, config), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
