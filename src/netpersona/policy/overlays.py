"""Apply an overlay to a persona document.

A tighten-only overlay (the default) can only make a persona stricter, field by field:

    security_profile    raised to the overlay's if that is higher (low < medium < high)
    communication_mode  moved toward restricted (broadcast, multicast < unicast < restricted);
                        leaving multicast drops multicast_groups
    allowed_protocols   kept only where covered by the overlay's list (``tcp/5432`` is covered
                        by ``tcp`` or ``postgres``; ``tcp`` is not covered by ``tcp/22``)
    remove_protocols    entries overlapping any listed protocol are removed
    priority            lowered to the overlay's if that is lower
    qos_parameters      caps: egress_rate / egress_ceil cap the egress throughput, ingress_rate,
                        burst, max_connections and mtu are lowered (or set when absent)
    peers               used when the persona declares none (an empty list lets everyone in)

An ``override: true`` overlay sets what it names as written and may replace the whole persona
(``persona: quarantine``) first. The result is re-validated by the caller through
:func:`netpersona.model.parse_persona`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from netpersona.model.persona import CommunicationMode, SecurityProfile
from netpersona.model.protocols import ProtocolEntry, ProtocolRule, parse_protocol
from netpersona.model.units import format_rate, parse_rate, parse_size
from netpersona.policy.document import MODE_RANK, Overlay

__all__ = ["apply_overlay"]

_RATE_CAPS = ("ingress_rate",)
_COUNT_CAPS = ("max_connections", "mtu")


def _covers(wide: ProtocolRule, narrow: ProtocolRule) -> bool:
    if wide.l4 is not narrow.l4:
        return False
    if wide.ports is None:
        return True
    if narrow.ports is None:
        return False
    return wide.ports.first <= narrow.ports.first and narrow.ports.last <= wide.ports.last


def _overlaps(a: ProtocolRule, b: ProtocolRule) -> bool:
    if a.l4 is not b.l4:
        return False
    if a.ports is None or b.ports is None:
        return True
    return a.ports.first <= b.ports.last and b.ports.first <= a.ports.last


def _entries(body: Mapping[str, Any]) -> list[tuple[str, ProtocolEntry]]:
    return [(text, parse_protocol(text)) for text in body.get("allowed_protocols", [])]


def _format_size(size: int) -> str:
    for unit, scale in (("mb", 1024 * 1024), ("kb", 1024)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}b"


def _tighten_qos(qos: dict[str, Any], caps: Mapping[str, Any]) -> None:
    egress_keys: tuple[str, ...] = ("egress_rate", "egress_ceil")
    egress_caps = [parse_rate(caps[k]) for k in egress_keys if k in caps]
    if egress_caps:
        cap = min(egress_caps)
        present = [k for k in egress_keys if k in qos]
        for egress in present:
            qos[egress] = format_rate(min(parse_rate(qos[egress]), cap))
        if not present:
            qos["egress_rate"] = format_rate(cap)  # a rate without a ceiling is a hard cap
    for key in _RATE_CAPS:
        if key in caps:
            cap = parse_rate(caps[key])
            qos[key] = format_rate(min(parse_rate(qos[key]), cap) if key in qos else cap)
    if "burst" in caps and "burst" in qos:
        qos["burst"] = _format_size(min(parse_size(qos["burst"]), parse_size(caps["burst"])))
    for key in _COUNT_CAPS:
        if key in caps:
            qos[key] = min(int(qos[key]), int(caps[key])) if key in qos else int(caps[key])


def _tighten(body: dict[str, Any], fields: Mapping[str, Any]) -> None:
    if "security_profile" in fields:
        wanted = SecurityProfile(fields["security_profile"])
        if wanted.rank > SecurityProfile(body["security_profile"]).rank:
            body["security_profile"] = wanted.value
    if "communication_mode" in fields:
        wanted_mode = CommunicationMode(fields["communication_mode"])
        current = CommunicationMode(body["communication_mode"])
        if MODE_RANK[wanted_mode] > MODE_RANK[current]:
            body["communication_mode"] = wanted_mode.value
            if current is CommunicationMode.MULTICAST:
                body.pop("multicast_groups", None)
    if "allowed_protocols" in fields:
        allowed = [parse_protocol(t) for t in fields["allowed_protocols"]]
        wide = [rule for entry in allowed for rule in entry.rules]
        body["allowed_protocols"] = [
            text
            for text, entry in _entries(body)
            if all(any(_covers(w, r) for w in wide) for r in entry.rules)
        ]
    if "priority" in fields:
        body["priority"] = min(int(body["priority"]), int(fields["priority"]))
    if "qos_parameters" in fields:
        qos = dict(body.get("qos_parameters", {}))
        _tighten_qos(qos, fields["qos_parameters"])
        body["qos_parameters"] = qos
    if "peers" in fields and not body.get("peers"):
        body["peers"] = copy.deepcopy(fields["peers"])


def _override(body: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for key, value in fields.items():
        if key == "qos_parameters":
            body["qos_parameters"] = {**body.get("qos_parameters", {}), **copy.deepcopy(value)}
        else:
            body[key] = copy.deepcopy(value)
    leaving_multicast = body.get("communication_mode") != CommunicationMode.MULTICAST.value
    if leaving_multicast and "multicast_groups" not in fields:
        body.pop("multicast_groups", None)


def apply_overlay(
    body: Mapping[str, Any], overlay: Overlay, replacement: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The persona body after ``overlay``; ``replacement`` is the body of ``set.persona``."""
    result = copy.deepcopy(dict(replacement if replacement is not None else body))
    changes = overlay.changes
    if overlay.override:
        _override(result, changes.fields)
    else:
        _tighten(result, changes.fields)
    if changes.remove_protocols:
        removed = [rule for entry in changes.remove_protocols for rule in entry.rules]
        result["allowed_protocols"] = [
            text
            for text, entry in _entries(result)
            if not any(_overlaps(r, gone) for r in entry.rules for gone in removed)
        ]
    return result
