"""Protocol entries of ``allowed_protocols`` (spec section 2) and the built-in service table.

An entry is a transport with every port (``tcp``), a transport with a destination port or port
range (``tcp/22``, ``udp/5000-5010``), an IP protocol without ports (``icmp``, ``igmp``, ``gre``,
``esp``, ``ah``), or a service name from :data:`SERVICES`. A port is always a *destination*
port: ``tcp/22`` lets others connect to this VM on 22 and lets this VM connect to 22 elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from netpersona.errors import ProtocolError
from netpersona.model.quote import quote

__all__ = [
    "SERVICES",
    "L4",
    "PortRange",
    "ProtocolEntry",
    "ProtocolError",
    "ProtocolRule",
    "parse_protocol",
]


class L4(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"
    ICMP = "icmp"  # ICMP and ICMPv6 echo
    IGMP = "igmp"
    GRE = "gre"
    ESP = "esp"
    AH = "ah"

    @property
    def has_ports(self) -> bool:
        return self in (L4.TCP, L4.UDP, L4.SCTP)


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True, order=True)
class ProtocolRule:
    """One transport, and the destination ports it is allowed on (``None``: every port)."""

    l4: L4
    ports: PortRange | None = None

    def __str__(self) -> str:
        return self.l4.value if self.ports is None else f"{self.l4.value}/{self.ports}"


@dataclass(frozen=True, slots=True)
class ProtocolEntry:
    """An entry as written (``postgres``) and the rules it stands for (``tcp/5432``)."""

    text: str
    rules: tuple[ProtocolRule, ...]


def _tcp(*ports: int) -> tuple[ProtocolRule, ...]:
    return tuple(ProtocolRule(L4.TCP, PortRange(p, p)) for p in ports)


def _udp(*ports: int) -> tuple[ProtocolRule, ...]:
    return tuple(ProtocolRule(L4.UDP, PortRange(p, p)) for p in ports)


# Well-known ports from the IANA service registry; where a service commonly runs on both
# transports (dns, ldap) both are listed. docs/protocols.md renders this table.
SERVICES: dict[str, tuple[ProtocolRule, ...]] = {
    "amqp": _tcp(5672),
    "bgp": _tcp(179),
    "dhcp": _udp(67, 68, 546, 547),
    "dns": _udp(53) + _tcp(53),
    "etcd": (ProtocolRule(L4.TCP, PortRange(2379, 2380)),),
    "http": _tcp(80),
    "http-alt": _tcp(8080),
    "https": _tcp(443),
    "imap": _tcp(143),
    "imaps": _tcp(993),
    "kafka": _tcp(9092),
    "kubernetes-api": _tcp(6443),
    "ldap": _tcp(389) + _udp(389),
    "ldaps": _tcp(636),
    "mdns": _udp(5353),
    "memcached": _tcp(11211),
    "mqtt": _tcp(1883),
    "mqtts": _tcp(8883),
    "mysql": _tcp(3306),
    "nfs": _tcp(2049),
    "ntp": _udp(123),
    "postgres": _tcp(5432),
    "rdp": _tcp(3389),
    "redis": _tcp(6379),
    "smtp": _tcp(25),
    "smtps": _tcp(465),
    "snmp": _udp(161),
    "snmp-trap": _udp(162),
    "ssh": _tcp(22),
    "submission": _tcp(587),
    "syslog": _udp(514),
    "vxlan": _udp(4789),
}

_ENTRY = re.compile(r"(?P<l4>[a-z]+)(?:/(?P<first>[0-9]{1,5})(?:-(?P<last>[0-9]{1,5}))?)?")


def parse_protocol(value: object) -> ProtocolEntry:
    """``"tcp/22"`` -> ProtocolEntry; raises :class:`ProtocolError` with a user-facing message."""
    if not isinstance(value, str):
        raise ProtocolError(
            f"{quote(value)} is not a protocol (expected e.g. tcp/22, icmp or https)"
        )
    text = value.strip().lower()
    if text in SERVICES:
        return ProtocolEntry(text, SERVICES[text])
    match = _ENTRY.fullmatch(text)
    if match is None:
        raise ProtocolError(
            f"{quote(value)} is not a protocol (expected tcp, udp, sctp with an optional /port or "
            "/first-last, icmp, igmp, gre, esp, ah, or a service name such as https)"
        )
    try:
        l4 = L4(match["l4"])
    except ValueError:
        raise ProtocolError(
            f"{quote(value)} names no known protocol or service (see `netpersona protocols`)"
        ) from None
    if match["first"] is None:
        return ProtocolEntry(text, (ProtocolRule(l4),))
    if not l4.has_ports:
        raise ProtocolError(f"{quote(value)}: {l4.value} has no ports")
    first = int(match["first"])
    last = int(match["last"]) if match["last"] is not None else first
    if not 1 <= first <= 65535 or not 1 <= last <= 65535:
        raise ProtocolError(f"{quote(value)}: ports are 1..65535")
    if last < first:
        raise ProtocolError(f"{quote(value)}: the range ends before it starts")
    return ProtocolEntry(text, (ProtocolRule(l4, PortRange(first, last)),))
