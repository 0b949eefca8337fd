"""Parse and validate a ``network_persona`` document (spec sections 1-2).

Validation walks the whole document and reports every problem at once, each as a
:class:`~netpersona.errors.FieldError` whose pointer (RFC 6901) is into the document as written.
A document is either ``{"network_persona": {...}}`` (the file form) or the inner mapping alone.
Before any field is read the document is checked as JSON within the persona limits
(:mod:`netpersona.model.limits`), whether it came from a file or an HTTP body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from netpersona.errors import InvalidDocument
from netpersona.model.checks import Checker, escape_pointer
from netpersona.model.dscp import parse_dscp
from netpersona.model.jsontree import check_tree, with_json_problems
from netpersona.model.labels import check_label_key, check_label_value
from netpersona.model.limits import PERSONA_LIMITS
from netpersona.model.load import load_document
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

__all__ = ["escape_pointer", "parse_persona", "parse_persona_text"]

REQUIRED = ("communication_mode", "security_profile", "allowed_protocols", "priority")
PERSONA_KEYS = (*REQUIRED, "qos_parameters", "multicast_groups", "peers")
QOS_KEYS = ("egress_rate", "egress_ceil", "burst", "ingress_rate", "dscp", "max_connections", "mtu")
# The kernel keeps a connlimit count in 32 bits and nft silently wraps a larger one (2**32
# becomes "ct count over 0": every new connection dropped); 2**31 - 1 also fits every JSON
# and SQL integer the persona passes through.
MAX_CONNECTIONS = 2**31 - 1
PEER_KINDS = ("persona", "labels", "cidr")


def _protocols(c: Checker, at: str, value: object) -> tuple[ProtocolEntry, ...]:
    entries: list[ProtocolEntry] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(c.sequence(at, value) or ()):
        entry = c.convert(f"{at}/{index}", item, parse_protocol)
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


def _qos(c: Checker, at: str, value: object) -> QosParameters:
    body = c.mapping(at, value)
    if body is None:
        return QosParameters()
    c.keys(body, at, QOS_KEYS)
    parsed = {
        key: c.convert(f"{at}/{key}", body[key], parse)
        for key, parse in (
            ("egress_rate", parse_rate),
            ("egress_ceil", parse_rate),
            ("ingress_rate", parse_rate),
            ("burst", parse_size),
            ("dscp", parse_dscp),
        )
        if key in body
    }
    if "max_connections" in body:
        parsed["max_connections"] = c.integer(
            f"{at}/max_connections", body["max_connections"], 1, MAX_CONNECTIONS, "a count"
        )
    if "mtu" in body:
        # 68 is the IPv4 minimum (RFC 791); 65535 the largest an IPv4 packet can be.
        parsed["mtu"] = c.integer(f"{at}/mtu", body["mtu"], 68, 65535, "an MTU")
    _qos_together(c, at, body, parsed)
    return QosParameters(**parsed)


def _qos_together(
    c: Checker, at: str, body: Mapping[str, Any], parsed: Mapping[str, int | None]
) -> None:
    rate, ceil = parsed.get("egress_rate"), parsed.get("egress_ceil")
    if rate is not None and ceil is not None and ceil < rate:
        c.error(
            f"{at}/egress_ceil",
            f"{quote(body['egress_ceil'])} is below egress_rate {quote(body['egress_rate'])} "
            "(the ceiling must be at least the guaranteed rate)",
        )
    if "burst" in body and not {"egress_rate", "egress_ceil", "ingress_rate"} & set(body):
        c.error(
            f"{at}/burst",
            f"{quote(body['burst'])} has nothing to apply to "
            "(set egress_rate, egress_ceil or ingress_rate)",
        )


def _groups(c: Checker, at: str, value: object) -> tuple[IPv4Address | IPv6Address, ...]:
    groups: list[IPv4Address | IPv6Address] = []
    for index, item in enumerate(c.sequence(at, value) or ()):
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


def _peers(c: Checker, at: str, value: object) -> tuple[PeerSelector, ...]:
    peers: list[PeerSelector] = []
    for index, item in enumerate(c.sequence(at, value) or ()):
        where = f"{at}/{index}"
        body = c.mapping(where, item, "a mapping with one of persona, labels, cidr")
        if body is None:
            continue
        c.keys(body, where, PEER_KINDS)
        kinds = [k for k in PEER_KINDS if k in body]
        if len(kinds) != 1:
            c.error(
                where,
                "a peer selector has exactly one of persona, labels, cidr "
                f"(found {', '.join(kinds) or 'none'})",
            )
            continue
        selector = _PEER[kinds[0]](c, f"{where}/{kinds[0]}", body[kinds[0]])
        if selector is None:
            continue
        if selector in peers:
            c.error(where, f"{quote(dict(body))} is listed twice")
            continue
        peers.append(selector)
    return tuple(peers)


def _persona_peer(c: Checker, at: str, value: object) -> PeerSelector | None:
    name = c.persona_name(at, value)
    return PersonaSelector(name) if name is not None else None


def _labels_peer(c: Checker, at: str, value: object) -> PeerSelector | None:
    if not isinstance(value, Mapping) or not value:
        c.error(at, f"expected a non-empty mapping of label to value, got {quote(value)}")
        return None
    ok = True
    for key, label in value.items():
        problem = check_label_key(key) or check_label_value(label)
        ok = c.problem(f"{at}/{escape_pointer(str(key))}", problem) and ok
    return LabelSelector(tuple(sorted(value.items()))) if ok else None


def _cidr_peer(c: Checker, at: str, value: object) -> PeerSelector | None:
    if not isinstance(value, str):
        c.error(at, f"{quote(value)} is not a network (expected e.g. 10.20.0.0/24)")
        return None
    network: IPv4Network | IPv6Network
    try:
        network = ip_network(value, strict=True)
    except ValueError as exc:
        c.error(at, f"{quote(value)} is not a network ({exc}; expected e.g. 10.20.0.0/24)")
        return None
    return CidrSelector(network)


_PEER = {"persona": _persona_peer, "labels": _labels_peer, "cidr": _cidr_peer}


_MODE = (CommunicationMode, "communication mode")
_PROFILE = (SecurityProfile, "security profile")
# Each key: the Persona field it fills, how it is read, and what its absence means (spec
# section 1: an absent qos_parameters means {}; the required keys are reported as missing).
_FIELDS: tuple[tuple[str, str, Callable[..., Any], tuple[object, ...], object], ...] = (
    ("communication_mode", "communication_mode", Checker.enum, _MODE, None),
    ("security_profile", "security_profile", Checker.enum, _PROFILE, None),
    ("allowed_protocols", "allowed_protocols", _protocols, (), ()),
    ("priority", "priority", Checker.integer, (0, 7, "a priority"), None),
    ("qos_parameters", "qos", _qos, (), QosParameters()),
    ("multicast_groups", "multicast_groups", _groups, (), ()),
    ("peers", "peers", _peers, (), ()),
)


def _persona(c: Checker, at: str, body: Mapping[str, Any]) -> Persona | None:
    c.keys(body, at, PERSONA_KEYS)
    c.required(body, at, REQUIRED)
    values: dict[str, Any] = {
        name: read(c, f"{at}/{key}", body[key], *args) if key in body else absent
        for key, name, read, args, absent in _FIELDS
    }
    mode = values["communication_mode"]
    if mode is CommunicationMode.MULTICAST and not body.get("multicast_groups"):
        c.error(f"{at}/multicast_groups", "multicast mode needs a non-empty multicast_groups list")
    if mode is CommunicationMode.RESTRICTED and not body.get("peers"):
        c.error(
            f"{at}/peers", "restricted mode needs a non-empty peers list (who may talk to this VM)"
        )
    if c.errors:
        return None
    extensions = tuple(sorted((k, v) for k, v in body.items() if k.startswith("x-")))
    return Persona(**values, extensions=extensions)


def parse_persona(document: object) -> Persona:
    """Validate a parsed document into a :class:`Persona`; raise :class:`InvalidDocument`."""
    not_json = check_tree(document, PERSONA_LIMITS)
    c = Checker()
    at, body = c.unwrap(document, "network_persona", "a mapping (the network_persona)")
    persona = _persona(c, at, body) if body is not None else None
    c.errors = with_json_problems(c.errors, not_json, body, at, PERSONA_LIMITS)
    if c.errors or persona is None:
        c.fail()
    return persona


def parse_persona_text(text: str | bytes, source: str | None = None) -> Persona:
    """A persona file's text (or bytes) -> :class:`Persona`, read within the persona limits."""
    try:
        return parse_persona(load_document(text, source, limits=PERSONA_LIMITS))
    except InvalidDocument as exc:
        raise InvalidDocument(exc.errors, source) from None
