"""What the engine knows of an instance and of the persona catalog: plain frozen values.

The metadata service builds these from its records; the CLI builds them from an inventory file
(:func:`parse_inventory`). Nothing here reads anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface
from typing import Any

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name
from netpersona.model.parse import escape_pointer
from netpersona.model.quote import quote

__all__ = [
    "InstanceFacts",
    "InterfaceFacts",
    "PersonaSource",
    "parse_inventory",
]


@dataclass(frozen=True, slots=True)
class InterfaceFacts:
    name: str
    addresses: tuple[str, ...] = ()  # with prefix length, e.g. 10.0.1.5/24


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    id: str
    name: str
    addresses: tuple[str, ...] = ()
    interfaces: tuple[InterfaceFacts, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key
    pin: str | None = None  # a persona set by hand: rules are not consulted

    def ips(self) -> tuple[str, ...]:
        """Every address the instance has, without prefix length, deduplicated in order."""
        seen = dict.fromkeys(str(ip_address(a.split("/")[0])) for a in self.addresses)
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
            "interfaces": [
                {"name": i.name, "addresses": list(i.addresses)} for i in self.interfaces
            ],
            "labels": dict(self.labels),
            "pin": self.pin,
        }


@dataclass(frozen=True, slots=True)
class PersonaSource:
    """A persona of the catalog: its name, current version, and inner document mapping."""

    name: str
    version: int
    body: Mapping[str, Any] = field(compare=False)


def _instance(raw: object, at: str, errors: list[FieldError]) -> InstanceFacts | None:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(at, f"expected a mapping (an instance), got {quote(raw)}"))
        return None
    before = len(errors)
    allowed = ("id", "name", "addresses", "interfaces", "labels", "pin")
    for key in raw:
        if key not in allowed:
            errors.append(
                FieldError(
                    f"{at}/{escape_pointer(str(key))}",
                    f"unknown key {quote(key)} (expected one of {', '.join(allowed)})",
                )
            )
    instance_id = raw.get("id")
    if check_persona_name(instance_id):
        errors.append(FieldError(f"{at}/id", f"{quote(instance_id)} is not an instance id"))
    name = raw.get("name", instance_id)
    if not isinstance(name, str) or not name:
        errors.append(FieldError(f"{at}/name", f"{quote(name)} is not a name"))
    addresses = raw.get("addresses", [])
    if not isinstance(addresses, list):
        errors.append(FieldError(f"{at}/addresses", f"expected a list, got {quote(addresses)}"))
        addresses = []
    for index, address in enumerate(addresses):
        try:
            ip_address(str(address).split("/")[0])
        except ValueError:
            errors.append(
                FieldError(f"{at}/addresses/{index}", f"{quote(address)} is not an IP address")
            )
    interfaces = []
    raw_interfaces = raw.get("interfaces", [])
    for index, item in enumerate(raw_interfaces if isinstance(raw_interfaces, list) else [None]):
        where = f"{at}/interfaces/{index}"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            errors.append(FieldError(where, f"expected a mapping with a name, got {quote(item)}"))
            continue
        addrs = item.get("addresses", [])
        for position, address in enumerate(addrs if isinstance(addrs, list) else [addrs]):
            try:
                ip_interface(address)
            except ValueError:
                errors.append(
                    FieldError(
                        f"{where}/addresses/{position}",
                        f"{quote(address)} is not an interface address (expected e.g. 10.0.1.5/24)",
                    )
                )
        interfaces.append(InterfaceFacts(item["name"], tuple(str(a) for a in addrs)))
    labels = raw.get("labels", {})
    if not isinstance(labels, Mapping):
        errors.append(FieldError(f"{at}/labels", f"expected a mapping, got {quote(labels)}"))
        labels = {}
    for key, value in labels.items():
        problem = check_label_key(key) or check_label_value(value)
        if problem:
            errors.append(FieldError(f"{at}/labels/{escape_pointer(str(key))}", problem))
    pin = raw.get("pin")
    if pin is not None and check_persona_name(pin):
        errors.append(FieldError(f"{at}/pin", f"{quote(pin)} is not a persona name"))
    if len(errors) != before:
        return None
    return InstanceFacts(
        id=str(instance_id),
        name=str(name),
        addresses=tuple(str(a) for a in addresses),
        interfaces=tuple(interfaces),
        labels=tuple(sorted(labels.items())),
        pin=pin,
    )


def parse_inventory(document: object) -> tuple[InstanceFacts, ...]:
    """``{instances: [{id, name, addresses, interfaces, labels, pin}]}`` -> instance facts."""
    errors: list[FieldError] = []
    items = document.get("instances") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise InvalidDocument([FieldError("/instances", "expected a list of instances")])
    instances: list[InstanceFacts] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(items):
        instance = _instance(raw, f"/instances/{index}", errors)
        if instance is None:
            continue
        if instance.id in seen:
            errors.append(
                FieldError(
                    f"/instances/{index}/id",
                    f"{quote(instance.id)} is used twice (first at /instances/{seen[instance.id]})",
                )
            )
            continue
        seen[instance.id] = index
        instances.append(instance)
    if errors:
        raise InvalidDocument(errors)
    return tuple(instances)
