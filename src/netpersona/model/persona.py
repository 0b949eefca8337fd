"""The persona model: the frozen, validated form of a ``network_persona`` document.

Values of these types are only made by :func:`netpersona.model.parse.parse_persona`, so code
holding a :class:`Persona` may rely on every rule of spec sections 1-2 having been checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from netpersona.model.dscp import PRIORITY_DSCP
from netpersona.model.protocols import ProtocolEntry, ProtocolRule

__all__ = [
    "CidrSelector",
    "CommunicationMode",
    "LabelSelector",
    "PeerSelector",
    "Persona",
    "PersonaSelector",
    "QosParameters",
    "SecurityProfile",
]


class CommunicationMode(StrEnum):
    BROADCAST = "broadcast"
    UNICAST = "unicast"
    MULTICAST = "multicast"
    RESTRICTED = "restricted"


class SecurityProfile(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return ("low", "medium", "high").index(self.value)


@dataclass(frozen=True, slots=True)
class QosParameters:
    """Rates in bits per second, sizes in bytes; ``None`` where the document says nothing."""

    egress_rate: int | None = None
    egress_ceil: int | None = None
    burst: int | None = None
    ingress_rate: int | None = None
    dscp: int | None = None
    max_connections: int | None = None
    mtu: int | None = None

    @property
    def shapes_egress(self) -> bool:
        """Spec section 6: any egress key puts an HTB tree on the uplink."""
        return self.egress_rate is not None or self.egress_ceil is not None


@dataclass(frozen=True, slots=True)
class PersonaSelector:
    persona: str


@dataclass(frozen=True, slots=True)
class LabelSelector:
    labels: tuple[tuple[str, str], ...]

    def matches(self, labels: dict[str, str] | tuple[tuple[str, str], ...]) -> bool:
        have = dict(labels)
        return all(have.get(key) == value for key, value in self.labels)


@dataclass(frozen=True, slots=True)
class CidrSelector:
    network: IPv4Network | IPv6Network


PeerSelector = PersonaSelector | LabelSelector | CidrSelector


@dataclass(frozen=True, slots=True)
class Persona:
    communication_mode: CommunicationMode
    security_profile: SecurityProfile
    allowed_protocols: tuple[ProtocolEntry, ...]
    priority: int
    qos: QosParameters = field(default_factory=QosParameters)
    multicast_groups: tuple[IPv4Address | IPv6Address, ...] = ()
    peers: tuple[PeerSelector, ...] = ()
    extensions: tuple[tuple[str, object], ...] = ()

    @property
    def dscp(self) -> int:
        """The DSCP this VM marks its packets with (spec section 6)."""
        return self.qos.dscp if self.qos.dscp is not None else PRIORITY_DSCP[self.priority]

    @property
    def rules(self) -> tuple[ProtocolRule, ...]:
        """Every allowed rule, deduplicated and sorted, whatever entry it came from."""
        return tuple(sorted({rule for entry in self.allowed_protocols for rule in entry.rules}))
