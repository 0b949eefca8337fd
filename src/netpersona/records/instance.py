"""An instance (a VM) as the metadata service keeps it and the policy engine reads it.

One record, :class:`Instance`, with one JSON form: the admin API answers with it, the store's
audit log keeps it, and a policy inventory file is a list of them (without the store's
``revision`` and times, which default to zero for instances that were never stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface
from typing import Any

from netpersona.model.labels import check_persona_name
from netpersona.records.reading import Read, Reader, integer, number, text

__all__ = ["MAX_INTERFACE_NAME", "Instance", "Interface", "Tier"]

MAX_INTERFACE_NAME = 15  # IFNAMSIZ - 1


class Tier(StrEnum):
    """Spec section 6: the uplink an instance's priority routes through."""

    PREMIUM = "premium"
    STANDARD = "standard"


def _address(raw: Any) -> str | None:
    return str(ip_address(raw)) if isinstance(raw, str) else None


def _interface_address(raw: Any) -> str | None:
    return str(ip_interface(raw)) if isinstance(raw, str) and "/" in raw else None


def _name(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and check_persona_name(raw) is None else None


def _ifname(raw: Any) -> str | None:
    ok = isinstance(raw, str) and 1 <= len(raw) <= MAX_INTERFACE_NAME
    return raw if ok and "/" not in raw and " " not in raw else None


@dataclass(frozen=True, slots=True)
class Interface(Read):
    """A network interface of an instance as the operator declared it."""

    what = "interface"

    name: str
    addresses: tuple[str, ...] = ()  # with prefix length, e.g. 10.0.0.5/24
    tier: Tier | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "tier": self.tier.value if self.tier else None,
        }

    @classmethod
    def read(cls, reader: Reader, data: object, at: str) -> Interface | None:
        fields = reader.mapping(data, at, "an interface", ("name", "addresses", "tier"))
        if fields is None:
            return None
        before = len(reader.errors)
        name = reader.value(fields, "name", at, _ifname, "an interface name (1-15 characters)")
        addresses = reader.items(
            fields, "addresses", at, _interface_address, "an interface address (e.g. 10.0.0.5/24)"
        )
        tier = reader.optional(fields, "tier", at, Tier, "a tier (premium or standard)")
        if name is None or len(reader.errors) != before:
            return None
        return cls(name, addresses, tier)


@dataclass(frozen=True, slots=True)
class Instance(Read):
    """A VM: its identity (id, name, the source addresses it is known by), its interfaces and
    labels, the persona pinned to it by hand, and the store's revision and times."""

    what = "instance"

    id: str
    name: str
    addresses: tuple[str, ...] = ()  # canonical IP addresses, without prefix length
    interfaces: tuple[Interface, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key
    pin: str | None = None  # a persona set by hand: policy rules are not consulted
    revision: int = 0  # 0: not stored
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def ips(self) -> tuple[str, ...]:
        """Every address the instance has, without prefix length, deduplicated in order."""
        seen = dict.fromkeys(str(ip_address(a)) for a in self.addresses)
        for interface in self.interfaces:
            seen.update(dict.fromkeys(str(ip_interface(a).ip) for a in interface.addresses))
        return tuple(seen)

    def subnets(self) -> tuple[IPv4Network | IPv6Network, ...]:
        nets = {ip_interface(a).network: None for i in self.interfaces for a in i.addresses}
        return tuple(nets)

    def interface_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.interfaces)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "addresses": list(self.addresses),
            "interfaces": [i.to_json() for i in self.interfaces],
            "labels": self.label_map,
            "pin": self.pin,
            "revision": self.revision,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def read(cls, reader: Reader, data: object, at: str) -> Instance | None:
        """Read the JSON form at ``at``, recording every problem in ``reader``.

        ``name`` defaults to the id; ``revision`` and the times to zero (never stored).
        """
        keys = tuple(cls.__dataclass_fields__)
        fields = reader.mapping(data, at, "an instance", keys)
        if fields is None:
            return None
        before = len(reader.errors)
        instance_id = reader.value(fields, "id", at, _name, "an instance id")
        name = reader.value(fields, "name", at, _nonempty, "a name", default=instance_id)
        addresses = reader.items(fields, "addresses", at, _address, "an IP address")
        interfaces = [
            Interface.read(reader, item, where)
            for where, item in reader.each(fields, "interfaces", at)
        ]
        labels = reader.labels(fields, "labels", at)
        pin = reader.optional(fields, "pin", at, _name, "a persona name")
        revision = reader.value(fields, "revision", at, integer(0, 2**63 - 1), "a revision", 0)
        created_at = reader.value(fields, "created_at", at, number, "a time in seconds", 0.0)
        updated_at = reader.value(fields, "updated_at", at, number, "a time in seconds", 0.0)
        if len(reader.errors) != before or instance_id is None or name is None:
            return None
        return cls(
            id=instance_id,
            name=name,
            addresses=addresses,
            interfaces=tuple(i for i in interfaces if i is not None),
            labels=labels,
            pin=pin,
            revision=revision or 0,
            created_at=created_at or 0.0,
            updated_at=updated_at or 0.0,
        )


def _nonempty(raw: Any) -> str | None:
    return raw if text(raw) else None
