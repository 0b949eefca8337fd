"""Request bodies of the HTTP API, and their checks beyond shape (pointers into the body).

Pydantic checks the shape (FastAPI answers 422 with the location); the functions here check
meaning (addresses parse, label keys are valid) and raise :class:`InvalidDocument` with RFC 6901
pointers, so both kinds of problem reach the client in the same form.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_interface
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name
from netpersona.model.parse import escape_pointer
from netpersona.records import Instance, Interface, Tier
from netpersona.service.auth import canonical_address
from netpersona.service.strict_json import INT64_MAX
from netpersona.store.base import Role

__all__ = [
    "DiffBody",
    "InstanceBody",
    "InterfaceBody",
    "PinBody",
    "RestoreBody",
    "StatusBody",
    "TokenBody",
    "ValueBody",
    "check_instance_id",
    "check_labels",
]

MAX_CONTEXT_VALUE = 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterfaceBody(_Body):
    name: str = Field(min_length=1, max_length=15)  # IFNAMSIZ - 1
    addresses: list[str] = Field(default_factory=list, max_length=64)
    tier: Tier | None = None

    def interface(self, at: str, errors: list[FieldError]) -> Interface:
        addresses = []
        for index, text in enumerate(self.addresses):
            try:
                addresses.append(_interface_address(text))
            except ValueError:
                errors.append(
                    FieldError(
                        f"{at}/addresses/{index}",
                        f"{text!r} is not an interface address (expected e.g. 10.0.0.5/24)",
                    )
                )
        return Interface(self.name, tuple(addresses), self.tier)


def _interface_address(text: str) -> str:
    """``10.0.0.5/24`` as written; ``::ffff:10.0.0.5/120`` as the IPv4 ``10.0.0.5/24``."""
    parsed = ip_interface(text)
    if (
        isinstance(parsed, IPv6Interface)
        and parsed.ip.ipv4_mapped
        and parsed.network.prefixlen >= 96
    ):
        return str(IPv4Interface(f"{parsed.ip.ipv4_mapped}/{parsed.network.prefixlen - 96}"))
    return str(parsed)


def _addresses(texts: list[str], errors: list[FieldError]) -> tuple[str, ...]:
    """Canonical addresses (an IPv4-mapped IPv6 address is its IPv4 address, as a VM's source
    address is): one address, one instance, however written."""
    addresses: list[str] = []
    for index, text in enumerate(texts):
        try:
            address = canonical_address(str(ip_address(text)))
        except ValueError:
            errors.append(FieldError(f"/addresses/{index}", f"{text!r} is not an IP address"))
            continue
        if address in addresses:
            errors.append(FieldError(f"/addresses/{index}", f"{text!r} is listed twice"))
        addresses.append(address)
    return tuple(addresses)


class InstanceBody(_Body):
    name: str = Field(default="", max_length=253)
    addresses: list[str] = Field(min_length=1, max_length=64)
    interfaces: list[InterfaceBody] = Field(default_factory=list, max_length=32)
    labels: dict[str, str] = Field(default_factory=dict)

    def instance(self, instance_id: str) -> Instance:
        """The instance record this body describes (the store adds pin, revision and times);
        :class:`InvalidDocument` naming every address or label that does not parse."""
        errors: list[FieldError] = []
        addresses = _addresses(self.addresses, errors)
        interfaces = []
        names: set[str] = set()
        for index, iface in enumerate(self.interfaces):
            if iface.name in names:
                errors.append(
                    FieldError(f"/interfaces/{index}/name", f"{iface.name!r} is listed twice")
                )
            names.add(iface.name)
            interfaces.append(iface.interface(f"/interfaces/{index}", errors))
        errors += check_labels(self.labels)
        if errors:
            raise InvalidDocument(errors)
        return Instance(
            id=instance_id,
            name=self.name,
            addresses=addresses,
            interfaces=tuple(interfaces),
            labels=tuple(sorted(self.labels.items())),
        )


class NewInstanceBody(InstanceBody):
    id: str


class PinBody(_Body):
    persona: str


class RestoreBody(_Body):
    version: int = Field(ge=1, le=INT64_MAX)


class ValueBody(_Body):
    value: str = Field(max_length=MAX_CONTEXT_VALUE)


class DiffBody(_Body):
    """A what-if proposal: any of a new policy, context values, label patches (null removes)."""

    policy: dict[str, object] | None = None
    context: dict[str, str | None] = Field(default_factory=dict)
    labels: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    personas: dict[str, dict[str, object]] = Field(default_factory=dict)  # proposed documents


class TokenBody(_Body):
    name: str = Field(min_length=1, max_length=100)
    role: Role


class StatusBody(_Body):
    """What an agent reports after applying (or failing to apply) its persona."""

    persona: str | None = None
    version: int | None = Field(default=None, ge=1, le=INT64_MAX)
    result: str = Field(pattern=r"^(applied|failed|removed)$")
    message: str = Field(default="", max_length=65536)
    drops: dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=0, le=INT64_MAX)]] = (
        Field(default_factory=dict, max_length=256)
    )


def check_instance_id(instance_id: str, pointer: str = "/id") -> None:
    # Instance ids follow the persona-name syntax: DNS-label-like, safe in URLs and logs.
    problem = check_persona_name(instance_id)
    if problem:
        raise InvalidDocument([FieldError(pointer, problem.replace("persona name", "instance id"))])


def check_labels(labels: Mapping[str, str | None], at: str = "/labels") -> list[FieldError]:
    errors = []
    for key, value in labels.items():
        problem = check_label_key(key)
        if problem is None and value is not None:
            problem = check_label_value(value)
        if problem:
            errors.append(FieldError(f"{at}/{escape_pointer(key)}", problem))
    return errors
