"""Parse and validate a ``network_persona`` document (spec sections 1-2).

Validation walks the whole document and reports every problem at once, each as a
:class:`~netpersona.errors.FieldError` whose pointer (RFC 6901) is into the document as written.
A document is either ``{"network_persona": {...}}`` (the file form) or the inner mapping alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any, TypeVar

import yaml

from netpersona.errors import DscpError, FieldError, InvalidDocument, ProtocolError, UnitError
from netpersona.model.dscp import parse_dscp
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name
from netpersona.model.persona import (
    CidrSelector,
    CommunicationMode,
    LabelSelector,
    PeerSelector,
    Persona,
    PersonaSelector,
    QosParameters,
    SecurityProfile,
)
from netpersona.model.protocols import ProtocolEntry, parse_protocol
from netpersona.model.quote import quote
from netpersona.model.units import parse_rate, parse_size

__all__ = ["escape_pointer", "load_document", "parse_persona", "parse_persona_text"]

T = TypeVar("T")

REQUIRED = ("communication_mode", "security_profile", "allowed_protocols", "priority")
PERSONA_KEYS = (
    "communication_mode",
    "security_profile",
    "allowed_protocols",
    "priority",
    "qos_parameters",
    "multicast_groups",
    "peers",
)
QOS_KEYS = (
    "egress_rate",
    "egress_ceil",
    "burst",
    "ingress_rate",
    "dscp",
    "max_connections",
    "mtu",
)
MAX_CONNECTIONS = 1_000_000
MAX_LIST = 1024  # protocols, groups, peers: a persona is a policy, not a database


def escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


class _Checker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, pointer: str, message: str) -> None:
        self.errors.append(FieldError(pointer, message))

    def keys(self, obj: Mapping[str, Any], at: str, allowed: tuple[str, ...]) -> None:
        for key in obj:
            if not isinstance(key, str):
                self.error(at, f"key {quote(key)} is not a string")
            elif key not in allowed and not key.startswith("x-"):
                self.error(
                    f"{at}/{escape_pointer(key)}",
                    f"unknown key {key!r} (expected one of {', '.join(allowed)}, "
                    "or a key starting with x-)",
                )

    def convert(self, at: str, value: object, parse: Callable[[object], T]) -> T | None:
        try:
            return parse(value)
        except ValueError as exc:
            self.error(at, str(exc))
            return None

    def enum(self, at: str, value: object, kind: type[T], name: str) -> T | None:
        choices = [m.value for m in kind]  # type: ignore[attr-defined]
        if isinstance(value, str) and value in choices:
            return kind(value)  # type: ignore[call-arg]
        self.error(at, f"{quote(value)} is not a {name} (expected one of {', '.join(choices)})")
        return None

    def integer(self, at: str, value: object, low: int, high: int, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(at, f"{quote(value)} is not {what} (expected an integer {low}..{high})")
            return None
        if not low <= value <= high:
            self.error(at, f"{value} is out of range (expected an integer {low}..{high})")
            return None
        return value

    def sequence(self, at: str, value: object) -> list[Any] | None:
        if not isinstance(value, list):
            self.error(at, f"expected a list, got {_kind(value)} {quote(value)}")
            return None
        if len(value) > MAX_LIST:
            self.error(at, f"has {len(value)} entries; at most {MAX_LIST} are accepted")
            return None
        return value


def _protocols(c: _Checker, at: str, value: object) -> tuple[ProtocolEntry, ...]:
    items = c.sequence(at, value)
    if items is None:
        return ()
    entries: list[ProtocolEntry] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        entry = c.convert(f"{at}/{index}", item, _parse_protocol)
        if entry is None:
            continue
        if entry.text in seen:
            c.error(
                f"{at}/{index}", f"{quote(item)} is listed twice (first at {at}/{seen[entry.text]})"
            )
            continue
        seen[entry.text] = index
        entries.append(entry)
    return tuple(entries)


def _parse_protocol(value: object) -> ProtocolEntry:
    try:
        return parse_protocol(value)
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None


def _qos(c: _Checker, at: str, value: object) -> QosParameters:
    if not isinstance(value, Mapping):
        c.error(at, f"expected a mapping, got {_kind(value)} {quote(value)}")
        return QosParameters()
    c.keys(value, at, QOS_KEYS)

    def rate(key: str) -> int | None:
        return c.convert(f"{at}/{key}", value[key], _unit(parse_rate)) if key in value else None

    egress_rate, egress_ceil, ingress_rate = (
        rate("egress_rate"),
        rate("egress_ceil"),
        rate("ingress_rate"),
    )
    burst = (
        c.convert(f"{at}/burst", value["burst"], _unit(parse_size)) if "burst" in value else None
    )
    dscp = c.convert(f"{at}/dscp", value["dscp"], _dscp) if "dscp" in value else None
    max_conn = (
        c.integer(f"{at}/max_connections", value["max_connections"], 1, MAX_CONNECTIONS, "a count")
        if "max_connections" in value
        else None
    )
    # 68 is the IPv4 minimum (RFC 791); 65535 the largest an IPv4 packet can be.
    mtu = c.integer(f"{at}/mtu", value["mtu"], 68, 65535, "an MTU") if "mtu" in value else None

    if egress_rate is not None and egress_ceil is not None and egress_ceil < egress_rate:
        c.error(
            f"{at}/egress_ceil",
            f"{quote(value['egress_ceil'])} is below egress_rate {quote(value['egress_rate'])} "
            "(the ceiling must be at least the guaranteed rate)",
        )
    if "burst" in value and not {"egress_rate", "egress_ceil", "ingress_rate"} & set(value):
        c.error(
            f"{at}/burst",
            f"{quote(value['burst'])} has nothing to apply to "
            "(set egress_rate, egress_ceil or ingress_rate)",
        )
    return QosParameters(
        egress_rate=egress_rate,
        egress_ceil=egress_ceil,
        burst=burst,
        ingress_rate=ingress_rate,
        dscp=dscp,
        max_connections=max_conn,
        mtu=mtu,
    )


def _unit(parse: Callable[[object], int]) -> Callable[[object], int]:
    def convert(value: object) -> int:
        try:
            return parse(value)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    return convert


def _dscp(value: object) -> int:
    try:
        return parse_dscp(value)
    except DscpError as exc:
        raise ValueError(str(exc)) from None


def _groups(c: _Checker, at: str, value: object) -> tuple[Any, ...]:
    items = c.sequence(at, value)
    if items is None:
        return ()
    groups = []
    for index, item in enumerate(items):
        where = f"{at}/{index}"
        try:
            address = ip_address(item) if isinstance(item, str) else None
        except ValueError:
            address = None
        if address is None:
            c.error(where, f"{quote(item)} is not an IP address (expected e.g. 239.1.1.1)")
        elif not address.is_multicast:
            c.error(where, f"{quote(item)} is not a multicast group (224.0.0.0/4 or ff00::/8)")
        elif address in groups:
            c.error(where, f"{quote(item)} is listed twice")
        else:
            groups.append(address)
    return tuple(sorted(groups, key=lambda a: (a.version, int(a))))


def _peers(c: _Checker, at: str, value: object) -> tuple[PeerSelector, ...]:
    items = c.sequence(at, value)
    if items is None:
        return ()
    peers: list[PeerSelector] = []
    for index, item in enumerate(items):
        where = f"{at}/{index}"
        if not isinstance(item, Mapping):
            c.error(
                where, f"expected a mapping with one of persona, labels, cidr; got {quote(item)}"
            )
            continue
        c.keys(item, where, ("persona", "labels", "cidr"))
        kinds = [k for k in ("persona", "labels", "cidr") if k in item]
        if len(kinds) != 1:
            c.error(
                where,
                "a peer selector has exactly one of persona, labels, cidr "
                f"(found {', '.join(kinds) or 'none'})",
            )
            continue
        kind = kinds[0]
        selector = _peer(c, f"{where}/{kind}", kind, item[kind])
        if selector is None:
            continue
        if selector in peers:
            c.error(where, f"{quote(dict(item))} is listed twice")
            continue
        peers.append(selector)
    return tuple(peers)


def _peer(c: _Checker, at: str, kind: str, value: object) -> PeerSelector | None:
    if kind == "persona":
        problem = check_persona_name(value)
        if problem:
            c.error(at, problem)
            return None
        assert isinstance(value, str)
        return PersonaSelector(value)
    if kind == "labels":
        if not isinstance(value, Mapping) or not value:
            c.error(at, f"expected a non-empty mapping of label to value, got {quote(value)}")
            return None
        ok = True
        for key, label in value.items():
            problem = check_label_key(key)
            if problem is None:
                problem = check_label_value(label)
            if problem:
                c.error(f"{at}/{escape_pointer(str(key))}", problem)
                ok = False
        return LabelSelector(tuple(sorted(value.items()))) if ok else None
    network: IPv4Network | IPv6Network
    if not isinstance(value, str):
        c.error(at, f"{quote(value)} is not a network (expected e.g. 10.20.0.0/24)")
        return None
    try:
        network = ip_network(value, strict=True)
    except ValueError as exc:
        c.error(at, f"{quote(value)} is not a network ({exc}; expected e.g. 10.20.0.0/24)")
        return None
    return CidrSelector(network)


def parse_persona(document: object) -> Persona:
    """Validate a parsed document into a :class:`Persona`; raise :class:`InvalidDocument`."""
    c = _Checker()
    at = ""
    body: object = document
    if isinstance(document, Mapping) and "network_persona" in document:
        c.keys(document, "", ("network_persona",))
        body = document["network_persona"]
        at = "/network_persona"
    if not isinstance(body, Mapping):
        c.error(at, f"expected a mapping (the network_persona), got {_kind(body)} {quote(body)}")
        raise InvalidDocument(c.errors)

    c.keys(body, at, PERSONA_KEYS)
    for key in REQUIRED:
        if key not in body:
            c.error(f"{at}/{key}", f"{key} is required")
    mode = (
        c.enum(
            f"{at}/communication_mode",
            body["communication_mode"],
            CommunicationMode,
            "communication mode",
        )
        if "communication_mode" in body
        else None
    )
    profile = (
        c.enum(
            f"{at}/security_profile", body["security_profile"], SecurityProfile, "security profile"
        )
        if "security_profile" in body
        else None
    )
    protocols = (
        _protocols(c, f"{at}/allowed_protocols", body["allowed_protocols"])
        if "allowed_protocols" in body
        else ()
    )
    priority = (
        c.integer(f"{at}/priority", body["priority"], 0, 7, "a priority")
        if "priority" in body
        else None
    )
    qos = (
        _qos(c, f"{at}/qos_parameters", body["qos_parameters"])
        if "qos_parameters" in body
        else QosParameters()
    )
    groups = (
        _groups(c, f"{at}/multicast_groups", body["multicast_groups"])
        if "multicast_groups" in body
        else ()
    )
    peers = _peers(c, f"{at}/peers", body["peers"]) if "peers" in body else ()

    if mode is CommunicationMode.MULTICAST and not body.get("multicast_groups"):
        c.error(f"{at}/multicast_groups", "multicast mode needs a non-empty multicast_groups list")
    if mode is CommunicationMode.RESTRICTED and not body.get("peers"):
        c.error(
            f"{at}/peers", "restricted mode needs a non-empty peers list (who may talk to this VM)"
        )

    if c.errors:
        raise InvalidDocument(sorted(set(c.errors), key=c.errors.index))
    assert mode is not None
    assert profile is not None
    assert priority is not None
    extensions = tuple(
        sorted((k, v) for k, v in body.items() if isinstance(k, str) and k.startswith("x-"))
    )
    return Persona(
        communication_mode=mode,
        security_profile=profile,
        allowed_protocols=protocols,
        priority=priority,
        qos=qos,
        multicast_groups=groups,
        peers=peers,
        extensions=extensions,
    )


def load_document(text: str, source: str | None = None) -> object:
    """YAML (a superset of JSON) text -> plain data; a syntax error becomes InvalidDocument."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidDocument(
            [FieldError("", f"not valid YAML or JSON{where}: {problem}")], source
        ) from None


def parse_persona_text(text: str, source: str | None = None) -> Persona:
    try:
        return parse_persona(load_document(text, source))
    except InvalidDocument as exc:
        raise InvalidDocument(exc.errors, source) from None
