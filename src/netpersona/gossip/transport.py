"""The control channel's only I/O: an asyncio UDP endpoint that drives a :class:`GossipNode`.

It feeds each datagram and a tick every ``config.interval`` seconds to the core with the wall
clock (certificate times are Unix seconds), sends what the core returns, and hands each
:class:`Step` that learned or expired something to ``on_change`` (the agent's hook for updating
its nftables peer sets). Every peer listens on the same documented port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from ipaddress import ip_address

from netpersona.certs.verify import Verdict
from netpersona.gossip.node import GossipNode, Step

__all__ = ["GossipTransport"]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: GossipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner._received(data, str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like surface here (Linux udp(7), IP_RECVERR):
        # a peer that is down is normal on a gossip channel.
        self.owner.node.counters["send_errors"] += 1


class GossipTransport:
    def __init__(
        self,
        node: GossipNode,
        *,
        port: int,
        host: str | None = None,
        on_change: Callable[[Step], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.port = port
        self.host = host or str(node.address)
        self.on_change = on_change
        self.clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        self._ticker = asyncio.create_task(self._tick_forever())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> GossipTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def set_own_certificate(self, token: str | bytes) -> Verdict:
        """Take this VM's (re-)issued certificate and send its push at once, not at the next
        tick: a change reaches the first peers within a network round trip."""
        verdict = self.node.set_own_certificate(token, self.clock())
        self._dispatch(self.node.flush())
        return verdict

    async def _tick_forever(self) -> None:
        interval = self.node.config.interval
        while True:
            self._dispatch(self.node.tick(self.clock()))
            await asyncio.sleep(interval)

    def _received(self, data: bytes, host: str) -> None:
        try:
            source = ip_address(host.partition("%")[0])
        except ValueError:
            self.node.counters["drop_malformed"] += 1
            return
        self._dispatch(self.node.receive(data, source, self.clock()))

    def _dispatch(self, step: Step) -> None:
        if self._transport is not None:
            for datagram in step.out:
                self._transport.sendto(datagram.payload, (str(datagram.address), self.port))
        if (step.learned or step.expired) and self.on_change is not None:
            self.on_change(step)
