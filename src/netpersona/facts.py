"""Host facts: what the compiler needs to know about the VM, as a plain value.

Facts are gathered at the edge (the agent reads the live system and the metadata service; the
``plan`` command reads a file) and handed to the pure compiler, which never looks itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
)
from typing import Any

from netpersona.errors import FieldError, InvalidDocument
from netpersona.records import Peer, Reader, Tier
from netpersona.records.reading import integer

__all__ = [
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_METADATA",
    "Endpoint",
    "HostFacts",
    "Tier",
    "Uplink",
    "parse_facts",
]

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

# The link-local address every cloud metadata server answers on (GCE, AWS, OpenStack).
DEFAULT_METADATA_ADDRESS = IPv4Address("169.254.169.254")
DEFAULT_METADATA_PORT = 80
# The control channel: one UDP port, chosen clear of Serf/memberlist (7946) and VXLAN (4789).
DEFAULT_CONTROL_PORT = 7480


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: IPAddress
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


DEFAULT_METADATA = Endpoint(DEFAULT_METADATA_ADDRESS, DEFAULT_METADATA_PORT)


@dataclass(frozen=True, slots=True)
class Uplink:
    """A live uplink of this VM: a link that carries a default route, with its gateways.

    Not an :class:`~netpersona.records.Interface`: that is what an operator declared about an
    instance (names and prefixes, kept by the service); an uplink is what the kernel says now
    (parsed addresses, the gateways the routes go through), read on the VM. The two meet only
    in ``tier``, which the service's record tells the agent (spec section 6).
    """

    name: str
    addresses: tuple[IPInterface, ...] = ()
    gateway4: IPv4Address | None = None
    gateway6: IPv6Address | None = None
    tier: Tier | None = None

    @property
    def subnets(self) -> tuple[IPNetwork, ...]:
        """The on-link subnets, link-local ones left out (they are not a place peers live)."""
        nets = {a.network for a in self.addresses if not a.ip.is_link_local}
        return tuple(sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen)))


@dataclass(frozen=True, slots=True)
class HostFacts:
    uplinks: tuple[Uplink, ...] = ()
    metadata: Endpoint = DEFAULT_METADATA
    control_port: int = DEFAULT_CONTROL_PORT
    peers: tuple[Peer, ...] = field(default=())
    # Replicas of the metadata service the agent fails over to (its --metadata-url after the
    # first): the lockout and the control class keep them reachable too.
    metadata_fallbacks: tuple[Endpoint, ...] = ()

    @property
    def metadata_endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint of the metadata service, the first one first, none twice."""
        return tuple(dict.fromkeys((self.metadata, *self.metadata_fallbacks)))


_FACT_KEYS = ("uplinks", "metadata", "control_port", "peers")
_UPLINK_KEYS = ("name", "addresses", "gateway4", "gateway6", "tier")


def _parse_endpoint(text: object) -> Endpoint:
    """``169.254.169.254:80``, ``[fd00::1]:8080`` or an address alone (port 80)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an endpoint (expected e.g. 169.254.169.254:80)")
    host, port = text, DEFAULT_METADATA_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is out of range 1..65535")
    return Endpoint(ip_address(host), port)


def parse_facts(document: object) -> HostFacts:
    """Plain data (from YAML or JSON) -> :class:`HostFacts`, or :class:`InvalidDocument`."""
    if document is None:
        return HostFacts()
    if not isinstance(document, Mapping):
        raise InvalidDocument([FieldError("", "host facts must be a mapping")])
    reader = Reader()
    reader.mapping(document, "", "host facts", _FACT_KEYS)
    errors = reader.errors
    uplinks = _uplinks(document.get("uplinks") or (), errors)
    metadata = DEFAULT_METADATA
    if "metadata" in document:
        try:
            metadata = _parse_endpoint(document["metadata"])
        except ValueError as exc:
            errors.append(FieldError("/metadata", str(exc)))
    port = integer(1, 65535)
    control_port = reader.value(
        document, "control_port", "", port, "a UDP port 1..65535", DEFAULT_CONTROL_PORT
    )
    peers = [
        Peer.read(reader, raw, f"/peers/{i}") for i, raw in enumerate(document.get("peers") or ())
    ]
    if errors:
        raise InvalidDocument(errors)
    assert control_port is not None  # read without a problem
    return HostFacts(uplinks, metadata, control_port, tuple(p for p in peers if p))


def _uplinks(items: Any, errors: list[FieldError]) -> tuple[Uplink, ...]:
    uplinks: list[Uplink] = []
    for index, raw in enumerate(items):
        at = f"/uplinks/{index}"
        try:
            uplinks.append(_uplink(raw, at, errors))
        except (ValueError, TypeError) as exc:
            errors.append(FieldError(at, str(exc)))
    names = [u.name for u in uplinks]
    for name in {n for n in names if names.count(n) > 1}:
        errors.append(FieldError("/uplinks", f"uplink {name!r} is listed twice"))
    return tuple(uplinks)


def _uplink(raw: Any, at: str, errors: list[FieldError]) -> Uplink:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise ValueError("an uplink is a mapping with at least a name")
    for key in raw:
        if key not in _UPLINK_KEYS:
            errors.append(FieldError(f"{at}/{key}", f"unknown key {key!r}"))
    name = raw["name"]
    if not 1 <= len(name) <= 15 or "/" in name or " " in name:
        raise ValueError(f"{name!r} is not an interface name (1-15 characters, no '/' or space)")
    addresses = tuple(ip_interface(a) for a in raw.get("addresses") or ())
    gateway4 = IPv4Address(raw["gateway4"]) if raw.get("gateway4") else None
    gateway6 = IPv6Address(raw["gateway6"]) if raw.get("gateway6") else None
    tier = Tier(raw["tier"]) if raw.get("tier") is not None else None
    return Uplink(name, addresses, gateway4, gateway6, tier)
