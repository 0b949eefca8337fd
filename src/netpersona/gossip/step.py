"""What the protocol core returns for each input: datagrams to send and what changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from netpersona.certs.certificate import PersonaCertificate

__all__ = ["Datagram", "Round", "Step"]


@dataclass(frozen=True, slots=True)
class Datagram:
    address: IPv4Address | IPv6Address
    payload: bytes


@dataclass(frozen=True, slots=True)
class Step:
    """What one input did: datagrams to send, certificates learned, instances that expired."""

    out: tuple[Datagram, ...] = ()
    learned: tuple[PersonaCertificate, ...] = ()
    expired: tuple[str, ...] = ()


@dataclass(slots=True)
class Round:
    """A :class:`Step` being built while one input is handled."""

    out: list[Datagram] = field(default_factory=list)
    learned: list[PersonaCertificate] = field(default_factory=list)

    def step(self, expired: tuple[str, ...] = ()) -> Step:
        return Step(tuple(self.out), tuple(self.learned), expired)
