"""One VM's control channel for the namespace cluster benchmark (bench/gossip/cluster.py).

Runs the agent's gossip stack (GossipNode driven by GossipTransport on UDP) and nothing else:

    peer.py --address 10.78.0.11 --port 7480 --keys keys.json --token vm.jwt \\
            --seeds 10.78.0.12,10.78.0.13 --log learned.jsonl --counters counters.json

It takes its own certificate from ``--token`` (and again whenever the file is replaced, as the
agent takes a re-issued one), appends one JSON line per certificate learned
(``{"t": unix time, "i": instance, "s": seq}``) to ``--log``, and rewrites ``--counters`` (the
node's counters) every second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from ipaddress import ip_address
from pathlib import Path

from netpersona.certs import KeySet, Verifier
from netpersona.gossip import GossipConfig, GossipNode, Step
from netpersona.gossip.transport import GossipTransport


async def serve(args: argparse.Namespace) -> None:
    verifier = Verifier(KeySet.from_jwks(json.loads(Path(args.keys).read_text())))
    config = GossipConfig(interval=args.interval, bandwidth=args.bandwidth)
    node = GossipNode(
        address=ip_address(args.address),
        verifier=verifier,
        config=config,
        seed=secrets.randbits(64),
        now=time.time(),
    )
    token_path, counters_path = Path(args.token), Path(args.counters)
    stamp = token_path.stat().st_mtime_ns
    node.set_seeds(ip_address(s) for s in args.seeds.split(",") if s)
    log = Path(args.log).open("a", buffering=1)  # noqa: SIM115 (open for the process's life)

    def learned(step: Step) -> None:
        now = time.time()
        for cert in step.learned:
            log.write(json.dumps({"t": now, "i": cert.instance, "s": cert.seq}) + "\n")

    transport = GossipTransport(node, port=args.port, host="0.0.0.0", on_change=learned)  # noqa: S104
    await transport.start()
    transport.set_own_certificate(token_path.read_text().strip())
    next_dump = 0.0
    while True:
        await asyncio.sleep(0.02)
        current = token_path.stat().st_mtime_ns
        if current != stamp:
            stamp = current
            transport.set_own_certificate(token_path.read_text().strip())
        if time.monotonic() >= next_dump:
            next_dump = time.monotonic() + 1.0
            tmp = counters_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"t": time.time(), **node.counters}))
            os.replace(tmp, counters_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("address", "keys", "token", "log", "counters"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--seeds", default="")
    parser.add_argument("--port", type=int, default=7480)
    parser.add_argument("--interval", type=float, default=GossipConfig().interval)
    parser.add_argument("--bandwidth", type=int, default=GossipConfig().bandwidth)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
