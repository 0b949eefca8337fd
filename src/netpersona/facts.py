"""Host facts: what the compiler needs to know about the VM, as a plain value.

Facts are gathered at the edge (the agent reads the live system and the metadata service; the
``plan`` command reads a file) and handed to the pure compiler, which never looks itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
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
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name

__all__ = [
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_METADATA",
    "Endpoint",
    "HostFacts",
    "PeerInfo",
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


class Tier(StrEnum):
    PREMIUM = "premium"
    STANDARD = "standard"


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
class PeerInfo:
    """One entry of the peer view: only what a VM is entitled to know about another."""

    instance: str
    addresses: tuple[IPAddress, ...]
    persona: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    priority: int = 0
    dscp: int | None = None


@dataclass(frozen=True, slots=True)
class HostFacts:
    uplinks: tuple[Uplink, ...] = ()
    metadata: Endpoint = DEFAULT_METADATA
    control_port: int = DEFAULT_CONTROL_PORT
    peers: tuple[PeerInfo, ...] = field(default=())


_FACT_KEYS = ("uplinks", "metadata", "control_port", "peers")
_UPLINK_KEYS = ("name", "addresses", "gateway4", "gateway6", "tier")
_PEER_KEYS = ("instance", "addresses", "persona", "labels", "priority", "dscp")


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
    errors: list[FieldError] = []
    if document is None:
        return HostFacts()
    if not isinstance(document, Mapping):
        raise InvalidDocument([FieldError("", "host facts must be a mapping")])
    for key in document:
        if key not in _FACT_KEYS:
            errors.append(
                FieldError(
                    f"/{key}", f"unknown key {key!r} (expected one of {', '.join(_FACT_KEYS)})"
                )
            )

    uplinks: list[Uplink] = []
    for index, raw in enumerate(document.get("uplinks") or ()):
        at = f"/uplinks/{index}"
        try:
            uplinks.append(_uplink(raw, at, errors))
        except (ValueError, TypeError) as exc:
            errors.append(FieldError(at, str(exc)))
    names = [u.name for u in uplinks]
    for name in {n for n in names if names.count(n) > 1}:
        errors.append(FieldError("/uplinks", f"uplink {name!r} is listed twice"))

    metadata = DEFAULT_METADATA
    if "metadata" in document:
        try:
            metadata = _parse_endpoint(document["metadata"])
        except ValueError as exc:
            errors.append(FieldError("/metadata", str(exc)))
    control_port = document.get("control_port", DEFAULT_CONTROL_PORT)
    if (
        isinstance(control_port, bool)
        or not isinstance(control_port, int)
        or not 1 <= control_port <= 65535
    ):
        errors.append(FieldError("/control_port", f"{control_port!r} is not a UDP port 1..65535"))
        control_port = DEFAULT_CONTROL_PORT

    peers: list[PeerInfo] = []
    for index, raw in enumerate(document.get("peers") or ()):
        at = f"/peers/{index}"
        try:
            peers.append(_peer(raw, at, errors))
        except (ValueError, TypeError) as exc:
            errors.append(FieldError(at, str(exc)))
    if errors:
        raise InvalidDocument(errors)
    return HostFacts(tuple(uplinks), metadata, control_port, tuple(peers))


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


def _peer(raw: Any, at: str, errors: list[FieldError]) -> PeerInfo:
    if not isinstance(raw, Mapping):
        raise ValueError("a peer is a mapping with instance and addresses")
    for key in raw:
        if key not in _PEER_KEYS:
            errors.append(FieldError(f"{at}/{key}", f"unknown key {key!r}"))
    persona = raw.get("persona")
    if persona is not None and (problem := check_persona_name(persona)):
        raise ValueError(problem)
    labels = raw.get("labels") or {}
    for key, value in labels.items():
        if problem := check_label_key(key) or check_label_value(value):
            raise ValueError(problem)
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 7:
        raise ValueError(f"priority {priority!r} is not an integer 0..7")
    dscp = raw.get("dscp")
    if dscp is not None and (
        isinstance(dscp, bool) or not isinstance(dscp, int) or not 0 <= dscp <= 63
    ):
        raise ValueError(f"dscp {dscp!r} is not an integer 0..63")
    return PeerInfo(
        instance=str(raw.get("instance", "")),
        addresses=tuple(ip_address(a) for a in raw.get("addresses") or ()),
        persona=persona,
        labels=tuple(sorted(labels.items())),
        priority=priority,
        dscp=dscp,
    )
