"""A tiny lossless in-process network for driving a few gossip cores by hand in tests."""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address, IPv6Address, ip_address

from netpersona.certs import Verifier
from netpersona.gossip import Datagram, GossipConfig, GossipNode, Step
from netpersona.testing.certs import NOW, fixed_key, key_set, make_certificate, signed

IPAddress = IPv4Address | IPv6Address
CONFIG = GossipConfig(interval=1.0, push_pull_interval=5.0)


class Network:
    def __init__(self, config: GossipConfig = CONFIG) -> None:
        self.config = config
        self.now = float(NOW)
        self.nodes: dict[IPAddress, GossipNode] = {}
        self.verifier = Verifier(key_set(fixed_key("k1")))
        self.delivered = 0
        # Pairs of nodes that cannot hear each other directly.
        self.blocked: set[frozenset[IPAddress]] = set()
        # (receiver, "instance=persona") for every certificate a receive step reported learned
        self.learned: list[tuple[IPAddress, str]] = []

    def add(
        self, name: str, address: str, seeds: tuple[str, ...] = (), **cert: object
    ) -> GossipNode:
        node = GossipNode(
            address=ip_address(address),
            verifier=self.verifier,
            config=self.config,
            seed=len(self.nodes) + 1,
            now=self.now,
        )
        self.nodes[node.address] = node
        node.set_seeds(ip_address(s) for s in seeds)
        self.change(address, name, **cert)
        return node

    def change(self, address: str, name: str, **cert: object) -> list[Datagram]:
        """A new certificate for the VM at ``address``, its push delivered at once, as the
        transport does; the datagrams it pushed."""
        node = self.nodes[ip_address(address)]
        node.set_own_certificate(self.token(name, address, **cert), self.now)
        pushed = list(node.flush().out)
        self.send(node.address, tuple(pushed))
        return pushed

    def token(self, name: str, address: str, **cert: object) -> str:
        fields: dict[str, object] = {"issued_at": int(self.now)} | cert
        return signed(make_certificate(name, (address,), **fields))  # type: ignore[arg-type]

    def send(self, source: IPAddress, out: tuple[Datagram, ...]) -> None:
        queue = deque((source, d) for d in out)
        while queue:
            src, datagram = queue.popleft()
            node = self.nodes.get(datagram.address)
            if node is None or frozenset((src, datagram.address)) in self.blocked:
                continue
            self.delivered += 1
            assert self.delivered < 1_000_000, "message storm"
            step = node.receive(datagram.payload, src, self.now)
            self.learned += [(node.address, f"{c.instance}={c.persona}") for c in step.learned]
            queue.extend((node.address, d) for d in step.out)

    def round(self) -> list[Step]:
        self.now += self.config.interval
        steps = []
        for node in list(self.nodes.values()):
            step = node.tick(self.now)
            steps.append(step)
            self.send(node.address, step.out)
        return steps

    def run(self, rounds: int) -> None:
        for _ in range(rounds):
            self.round()

    def view(self, address: str) -> dict[str, str | None]:
        node = self.nodes[ip_address(address)]
        return {p.instance: p.persona for p in node.peer_view(self.now)}
