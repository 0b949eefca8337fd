"""The agent's side of the control channel (spec section 8, docs/propagation.md).

Two watched views bring this VM's own certificate and the service's key set; once both are
here, the gossip core (:mod:`netpersona.gossip.node`) runs on UDP ``control_port``, seeded with
the addresses of the service's seed list (the peers answer's ``network.seeds``). What it
learns is merged into the service's view by the agent, per instance id (newest knowledge wins,
see :func:`~netpersona.agent.view.merge_peer_views`).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

import structlog

from netpersona.agent.config import AgentConfig
from netpersona.agent.status import StatusRecord
from netpersona.records import Peer

if TYPE_CHECKING:
    # Imported when the channel gets its keys: verifying loads the JOSE and cryptography
    # packages, which an agent without the control channel never needs.
    from netpersona.certs.certificate import PersonaCertificate
    from netpersona.certs.keys import KeySet
    from netpersona.certs.verify import Accepted, Rejected, Verifier
    from netpersona.gossip.node import GossipNode, Step
    from netpersona.gossip.transport import GossipTransport

__all__ = ["ControlChannel"]


class ControlChannel:
    def __init__(
        self,
        config: AgentConfig,
        status: StatusRecord,
        on_news: Callable[[], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.status = status
        self.on_news = on_news  # the peers it knows of changed: the view may have
        self.clock = clock
        self.node: GossipNode | None = None
        self.transport: GossipTransport | None = None
        self.verifier: Verifier | None = None
        self.own_token: str | None = None  # the certificate the node holds as its own
        self.log = structlog.get_logger("netpersona.agent")

    def learned(self, now: float) -> list[PersonaCertificate]:
        """The current certificates held for other VMs."""
        if self.node is None:
            return []
        own = self.node.own
        return [
            held.certificate
            for held in self.node.store
            if (own is None or held.key != own.key) and not held.certificate.expired(now)
        ]

    def set_seeds(self, served: Iterable[Peer]) -> None:
        if self.node is not None:
            self.node.set_seeds(a for peer in served for a in peer.addresses)

    def on_gossip(self, step: Step) -> None:
        if self.node is not None:
            self.status.record.gossip_peers = len(self.node.peer_view(self.clock()))
        self.on_news()

    def set_keys(self, keys: KeySet) -> None:
        from netpersona.certs.verify import Verifier  # noqa: PLC0415

        self.verifier = Verifier(keys)
        if self.node is not None:
            self.node.set_verifier(self.verifier)

    async def set_own_certificate(self, token: str | None, seeds: Iterable[Peer]) -> None:
        """Take this VM's certificate; start the channel with the first one (and keys)."""
        from netpersona.certs.verify import Rejected  # noqa: PLC0415

        now = self.clock()
        if self.verifier is None or token is None or token == self.own_token:
            return
        if self.node is None:
            checked = self.verifier.check(token, now=now)
            if isinstance(checked, Rejected):
                self._refused(checked)
                return
            if not await self._start(_node_address(checked), now, seeds):
                return
        assert self.transport is not None
        # Through the transport, so the change is pushed to peers at once, not at the next tick.
        verdict = self.transport.set_own_certificate(token)
        if isinstance(verdict, Rejected):
            self._refused(verdict)
            return
        self.own_token = token
        self.log.info(
            "own certificate in force",
            seq=verdict.certificate.seq,
            persona=verdict.certificate.persona,
            expires_at=verdict.certificate.expires_at,
        )

    def _refused(self, verdict: Rejected) -> None:
        self.log.warning(
            "own certificate refused", reason=verdict.reason.value, detail=verdict.detail
        )

    async def _start(
        self, address: IPv4Address | IPv6Address, now: float, seeds: Iterable[Peer]
    ) -> bool:
        from netpersona.gossip.node import GossipNode  # noqa: PLC0415
        from netpersona.gossip.transport import GossipTransport  # noqa: PLC0415

        assert self.verifier is not None
        node = GossipNode(
            address=address,
            verifier=self.verifier,
            config=self.config.gossip_config,
            seed=secrets.randbits(64),
            now=now,
        )
        node.set_seeds(a for peer in seeds for a in peer.addresses)
        transport = GossipTransport(
            node,
            port=self.config.control_port,
            host="::" if address.version == 6 else "0.0.0.0",  # noqa: S104 (the VM's channel)
            on_change=self.on_gossip,
        )
        record = self.status.record
        try:
            await transport.start()
        except OSError as exc:
            record.gossip = "failed"
            self.log.error(
                "control channel failed to start", port=self.config.control_port, error=str(exc)
            )
            self.status.save()
            return False
        self.node, self.transport = node, transport
        record.gossip = "listening"
        self.status.save()
        self.log.info(
            "control channel listening", port=self.config.control_port, address=str(address)
        )
        return True

    def copy_counters(self) -> None:
        """Copy the channel's counters into agent.json (for ``netpersona status``)."""
        if self.node is None:
            return
        record = self.status.record
        counters = dict(sorted(self.node.counters.items()))
        peers = len(self.node.peer_view(self.clock()))
        if counters != record.gossip_counters or peers != record.gossip_peers:
            record.gossip_counters, record.gossip_peers = counters, peers
            self.status.save()

    async def close(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(OSError):
                await self.transport.close()


def _node_address(verdict: Accepted) -> IPv4Address | IPv6Address:
    """The address this VM gossips from: its certificate's first IPv4 one, else its first."""
    addresses = verdict.certificate.addresses
    return next((a for a in addresses if a.version == 4), addresses[0])
