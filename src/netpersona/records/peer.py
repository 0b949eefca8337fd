"""A peer: what one VM is entitled to know about another (spec sections 1, 6 and 8).

One record, :class:`Peer`, whichever way it arrives: an entry of the service's peer view
(``GET /v1/instance/peers``), a persona certificate learned over the control channel
(:meth:`~netpersona.certs.PersonaCertificate.peer`), or a host facts file. The compiler reads
``HostFacts.peers`` as a tuple of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from netpersona.model.labels import check_persona_name
from netpersona.model.persona import CommunicationMode, SecurityProfile
from netpersona.records.reading import Read, Reader, integer

__all__ = ["MAX_INSTANCE_ID", "Peer"]

IPAddress = IPv4Address | IPv6Address
MAX_INSTANCE_ID = 128
_KEYS = (
    "instance",
    "addresses",
    "persona",
    "persona_version",
    "priority",
    "dscp",
    "mode",
    "profile",
    "labels",
)


def _instance(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and 1 <= len(raw) <= MAX_INSTANCE_ID else None


def _address(raw: Any) -> IPAddress | None:
    return ip_address(raw) if isinstance(raw, str) else None


def _persona(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and check_persona_name(raw) is None else None


@dataclass(frozen=True, slots=True)
class Peer(Read):
    """Another VM as this one sees it. ``persona`` is None (and priority 0) when it holds no
    valid persona; ``persona_version`` when the source does not say; ``dscp`` when its persona
    does not override the DSCP its priority maps to; ``mode`` and ``profile`` when unknown."""

    what = "peer"

    instance: str
    addresses: tuple[IPAddress, ...]
    persona: str | None = None
    persona_version: int | None = None
    priority: int = 0
    dscp: int | None = None
    mode: CommunicationMode | None = None
    profile: SecurityProfile | None = None
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "addresses": [str(a) for a in self.addresses],
            "persona": self.persona,
            "persona_version": self.persona_version,
            "priority": self.priority,
            "dscp": self.dscp,
            "mode": None if self.mode is None else self.mode.value,
            "profile": None if self.profile is None else self.profile.value,
            "labels": dict(self.labels),
        }

    @classmethod
    def read(cls, reader: Reader, data: object, at: str) -> Peer | None:
        """Read the JSON form at ``at``, recording every problem in ``reader``; only
        ``instance`` and ``addresses`` are required (a host facts file may leave out the rest).
        """
        fields = reader.mapping(data, at, "a peer", _KEYS)
        if fields is None:
            return None
        before = len(reader.errors)
        instance = reader.value(fields, "instance", at, _instance, "an instance id (1-128 chars)")
        if "addresses" not in fields:
            reader.fail(f"{at}/addresses", "missing (expected a list of IP addresses)")
        addresses: tuple[IPAddress, ...] = reader.items(
            fields, "addresses", at, _address, "an IP address"
        )
        persona = reader.optional(fields, "persona", at, _persona, "a persona name")
        version = reader.optional(
            fields, "persona_version", at, integer(0, 2**63 - 1), "a persona version"
        )
        priority = reader.value(fields, "priority", at, integer(0, 7), "a priority 0..7", 0)
        dscp = reader.optional(fields, "dscp", at, integer(0, 63), "a DSCP 0..63")
        mode = reader.optional(fields, "mode", at, CommunicationMode, "a communication_mode")
        profile = reader.optional(fields, "profile", at, SecurityProfile, "a security_profile")
        labels = reader.labels(fields, "labels", at)
        if len(reader.errors) != before or instance is None:
            return None
        return cls(
            instance=instance,
            addresses=addresses,
            persona=persona,
            persona_version=version,
            priority=priority or 0,
            dscp=dscp,
            mode=mode,
            profile=profile,
            labels=labels,
        )
