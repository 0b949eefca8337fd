"""Real UDP sockets on loopback: three transports learn each other and pass on a change."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from ipaddress import ip_address

from netpersona.certs import Verifier
from netpersona.gossip import GossipConfig, GossipNode, Step
from netpersona.gossip.transport import GossipTransport
from netpersona.gossip.wire import Certs, encode
from netpersona.testing.certs import fixed_key, key_set, make_certificate, signed

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CONFIG = GossipConfig(interval=0.05, push_pull_interval=0.2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOSTS[0], 0))
        return int(probe.getsockname()[1])


def token(name: str, host: str, persona: str, seq: int = 1) -> str:
    cert = make_certificate(name, (host,), persona=persona, seq=seq, issued_at=int(time.time()))
    return signed(cert)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_three_transports_on_loopback() -> None:
    asyncio.run(_three_transports())


async def _three_transports() -> None:
    port = free_port()
    verifier = Verifier(key_set(fixed_key("k1")))
    nodes = [
        GossipNode(address=ip_address(host), verifier=verifier, config=CONFIG, seed=i)
        for i, host in enumerate(HOSTS)
    ]
    personas = ["db", "api", "web"]
    for i, node in enumerate(nodes):
        node.set_own_certificate(token(f"vm-{i}", HOSTS[i], personas[i]), time.time())
    # Only vm-1 is a seed: vm-0 and vm-2 must learn of each other through it.
    nodes[0].set_seeds([ip_address(HOSTS[1])])
    nodes[2].set_seeds([ip_address(HOSTS[1])])
    changes: list[Step] = []
    transports = [
        GossipTransport(node, port=port, on_change=changes.append if i == 0 else None)
        for i, node in enumerate(nodes)
    ]
    for transport in transports:
        await transport.start()
    try:

        def view(i: int) -> dict[str, str | None]:
            return {p.instance: p.persona for p in nodes[i].peer_view(time.time())}

        await wait_for(lambda: all(len(view(i)) == 2 for i in range(3)))
        assert view(0) == {"vm-1": "api", "vm-2": "web"}

        transports[2].set_own_certificate(token("vm-2", HOSTS[2], "api", seq=2))
        await wait_for(lambda: view(0).get("vm-2") == "api" and view(1).get("vm-2") == "api")
        assert any(c.instance == "vm-2" and c.persona == "api" for s in changes for c in s.learned)

        # A valid certificate relayed from an address it does not name is taken, as named;
        # a forged one, a replay and an oversized datagram are dropped and counted.
        stranger = ("127.0.0.9", 0)
        relayed = token("vm-1", HOSTS[1], "admin", seq=9)
        forged = relayed[:-6] + ("AAAAAA" if not relayed.endswith("AAAAAA") else "BBBBBB")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rogue:
            rogue.bind(stranger)
            rogue.sendto(encode(Certs((relayed.encode(),))), (HOSTS[0], port))
            await wait_for(lambda: view(0)["vm-1"] == "admin")
            rogue.sendto(encode(Certs((relayed.encode(),))), (HOSTS[0], port))
            rogue.sendto(encode(Certs((forged.encode(),))), (HOSTS[0], port))
            rogue.sendto(b"\x00" * 1500, (HOSTS[0], port))
            await wait_for(
                lambda: (
                    nodes[0].counters["reject_duplicate"] >= 1
                    and nodes[0].counters["reject_bad_signature"] == 1
                    and nodes[0].counters["drop_oversized"] == 1
                )
            )
        peers = {p.instance: p for p in nodes[0].peer_view(time.time())}
        assert [str(a) for a in peers["vm-1"].addresses] == [HOSTS[1]]
    finally:
        for transport in transports:
            await transport.close()
