"""Many :class:`GossipNode` cores in one process, on a virtual clock, over a lossy network.

The nodes are the real protocol core with real signed certificates; only the network and the
clock are simulated. Each node ticks once per gossip interval at its own random phase (real
VMs are not synchronised); each datagram is lost with probability ``loss`` or else delivered
after a random latency. The fleet starts settled: every node holds every certificate (one
shared :class:`StoreSnapshot`), as after the first anti-entropy rounds, and then one VM's
certificate changes. The result says how many gossip rounds and how much virtual time the news
took to reach 99.9% and 100% of the other nodes, and what it cost in bytes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from hashlib import blake2b
from ipaddress import IPv4Address

from netpersona.certs.certificate import PersonaCertificate
from netpersona.certs.issue import issue_certificate
from netpersona.certs.keys import KeySet, SigningKey
from netpersona.certs.verify import Verifier
from netpersona.gossip.config import IP_UDP_OVERHEAD, GossipConfig
from netpersona.gossip.limits import splitmix64
from netpersona.gossip.node import GossipNode, Step
from netpersona.gossip.store import Held, StoreSnapshot
from netpersona.gossip.wire import instance_key
from netpersona.model.persona import CommunicationMode, SecurityProfile

__all__ = ["ChangeResult", "Simulator"]

START = 1_700_000_000.0
LIFETIME = 24 * 3600
_TICK, _DELIVER = 0, 1


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """One change: rounds and seconds to 99.9% / 100% of nodes (None: not reached), bytes
    sent per node (UDP payload + 28 header bytes per datagram) over that time, the most any node
    sent in one interval, and every drop_/reject_ counter summed over the fleet."""

    nodes: int
    loss: float
    rounds_to_999: int | None
    rounds_to_all: int | None
    seconds_to_999: float | None
    seconds_to_all: float | None
    reached: int
    bytes_per_node: float
    bytes_per_s_per_node: float
    peak_bytes_per_s_per_node: float
    rejects: dict[str, int]


class Simulator:
    def __init__(
        self,
        nodes: int,
        *,
        loss: float = 0.0,
        config: GossipConfig | None = None,
        seed: int = 1,
        latency: tuple[float, float] = (0.0005, 0.005),
    ) -> None:
        if nodes < 2 or not 0.0 <= loss < 1.0:
            raise ValueError(f"need at least 2 nodes and 0 <= loss < 1 (got {nodes}, {loss})")
        self.config = config or GossipConfig()
        self.loss = loss
        self.latency = latency
        self.now = START
        self._rng = seed
        self._seq = 0
        self._events: list[tuple[float, int, int, int, bytes, IPv4Address | None]] = []
        self.key = SigningKey.from_seed(blake2b(b"sim%d" % seed, digest_size=32).digest(), "sim")
        self.verifier = Verifier(KeySet().with_key(self.key.public_key()))
        self.addresses = [IPv4Address(0x0A000000 + i + 1) for i in range(nodes)]
        self._index = {address: i for i, address in enumerate(self.addresses)}
        self.certs = [self._certificate(i, "api", 1) for i in range(nodes)]
        snapshot = StoreSnapshot(
            Held(instance_key(c.instance), c, issue_certificate(c, self.key).encode())
            for c in self.certs
        )
        self.nodes = [
            GossipNode(
                address=self.addresses[i],
                verifier=self.verifier,
                config=self.config,
                seed=seed * 1_000_003 + i,
                now=self.now,
                base=snapshot,
                instance=self.certs[i].instance,
            )
            for i in range(nodes)
        ]
        for i in range(nodes):
            phase = self._uniform(0.0, self.config.interval)
            self._push(self.now + phase, _TICK, i, b"", None)
        self._watch: tuple[int, int] | None = None
        self._reached: dict[int, float] = {}
        self._sent_at_tick = [0] * nodes
        self._peak = [0] * nodes

    def _certificate(self, i: int, persona: str, seq: int) -> PersonaCertificate:
        return PersonaCertificate(
            instance=f"vm-{i:05d}",
            addresses=(self.addresses[i],),
            persona=persona,
            persona_version=seq,
            mode=CommunicationMode.RESTRICTED,
            profile=SecurityProfile.HIGH,
            priority=i % 8,
            labels=(("app", f"app{i % 10}"),),
            issued_at=int(self.now),
            expires_at=int(START) + LIFETIME,
            seq=seq,
            key_id=self.key.kid,
        )

    def _random(self) -> int:
        self._rng, value = splitmix64(self._rng)
        return value

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * (self._random() >> 11) / float(1 << 53)

    def _push(self, at: float, kind: int, node: int, data: bytes, src: IPv4Address | None) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, node, data, src))

    def _sent(self, i: int) -> int:
        counters = self.nodes[i].counters
        return counters["tx_bytes"] + IP_UDP_OVERHEAD * counters["tx_datagrams"]

    def _apply(self, i: int, step: Step) -> None:
        for datagram in step.out:
            if self.loss and self._uniform(0.0, 1.0) < self.loss:
                continue
            target = self._index.get(datagram.address)  # type: ignore[arg-type]
            if target is not None:
                delay = self._uniform(*self.latency)
                self._push(self.now + delay, _DELIVER, target, datagram.payload, self.addresses[i])
        if self._watch is not None and i not in self._reached:
            key, seq = self._watch
            held = self.nodes[i].store.get(key)
            if held is not None and held.seq >= seq:
                self._reached[i] = self.now

    def run_until(self, until: float) -> None:
        while self._events and self._events[0][0] <= until:
            at, _, kind, i, data, source = heapq.heappop(self._events)
            self.now = at
            node = self.nodes[i]
            if kind == _TICK:
                sent = self._sent(i)
                self._peak[i] = max(self._peak[i], sent - self._sent_at_tick[i])
                self._sent_at_tick[i] = sent
                self._apply(i, node.tick(at))
                self._push(at + self.config.interval, _TICK, i, b"", None)
            else:
                assert source is not None
                self._apply(i, node.receive(data, source, at))
        self.now = max(self.now, until)

    def change(self, origin: int = 0, *, max_rounds: int = 200) -> ChangeResult:
        """VM ``origin`` gets a new certificate; run until every node has it (or give up)."""
        n = len(self.nodes)
        held = self.nodes[origin].own
        seq = (held.seq if held else 0) + 1
        cert = self._certificate(origin, "web" if seq % 2 == 0 else "api", seq)
        started = self.now
        before = [self._sent(i) for i in range(n)]
        self._peak = [0] * n
        self._sent_at_tick = list(before)
        self._watch = (instance_key(cert.instance), seq)
        self._reached = {origin: started}
        self.nodes[origin].set_own_certificate(issue_certificate(cert, self.key), started)
        self._apply(origin, self.nodes[origin].flush())
        interval = self.config.interval
        target_999 = -(-999 * n // 1000)
        t999: float | None = None
        for round_ in range(1, max_rounds + 1):
            self.run_until(started + round_ * interval)
            if t999 is None and len(self._reached) >= target_999:
                t999 = sorted(self._reached.values())[target_999 - 1] - started
            if len(self._reached) == n:
                break
        t_all = max(self._reached.values()) - started if len(self._reached) == n else None
        spent = sum(self._sent(i) - before[i] for i in range(n))
        window = (t_all if t_all is not None else self.now - started) or interval
        rejects: dict[str, int] = {}
        for node in self.nodes:
            for name, count in node.counters.items():
                if name.startswith(("reject_", "drop_")) and count:
                    rejects[name] = rejects.get(name, 0) + count
        self._watch = None

        def rounds(seconds: float | None) -> int | None:
            return None if seconds is None else max(1, -int(-seconds // interval))

        return ChangeResult(
            nodes=n,
            loss=self.loss,
            rounds_to_999=rounds(t999),
            rounds_to_all=rounds(t_all),
            seconds_to_999=t999,
            seconds_to_all=t_all,
            reached=len(self._reached),
            bytes_per_node=spent / n,
            bytes_per_s_per_node=spent / n / window,
            peak_bytes_per_s_per_node=max(self._peak) / interval,
            rejects=rejects,
        )

    def background(self, seconds: float) -> float:
        """Mean bytes/s per node with no news at all (the anti-entropy floor)."""
        n = len(self.nodes)
        before = sum(self._sent(i) for i in range(n))
        started = self.now
        self.run_until(started + seconds)
        return (sum(self._sent(i) for i in range(n)) - before) / n / seconds
