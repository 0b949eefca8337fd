"""Reachability over a whole fleet: the services, the matrix, and what a change moves.

A *service* is what the fleet's personas name in ``allowed_protocols`` (``postgres``, ``udp/53``,
``tcp``), plus ``icmp``; one service may stand for several rules (``dns`` is udp/53 and tcp/53)
and is reachable when any of them is. The verdict of a pair depends only on the two endpoints
(their personas, persona names, labels and addresses), so a change can move only the pairs one
of whose endpoints it changed: :func:`connectivity_changes` evaluates only those.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface
from typing import Any

from netpersona.errors import FieldError, InvalidDocument, ProtocolError, UsageError
from netpersona.model import CommunicationMode
from netpersona.model.protocols import L4, ProtocolRule, parse_protocol
from netpersona.policy import PolicyEngine
from netpersona.reachability.classes import ClassPairs
from netpersona.reachability.verdict import Endpoint, Traffic, Verdict, Via, can_reach

__all__ = [
    "ConnectivityChange",
    "Service",
    "connectivity_changes",
    "connectivity_diff",
    "endpoints_of",
    "matrix",
    "service_named",
    "service_verdict",
    "services_of",
]

ICMP = ProtocolRule(L4.ICMP)
Address = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class Service:
    """What a persona names (``postgres``, ``udp/53``, ``icmp``), sent to a VM, to the subnet
    broadcast (``udp/6000 broadcast``) or to a group (``udp/5004 to 239.1.1.1``)."""

    name: str
    rules: tuple[ProtocolRule, ...]
    via: Via = Via.UNICAST
    group: Address | None = None

    def traffic(self, via: Via | None = None, group: Address | None = None) -> list[Traffic]:
        how, target = (via, group) if via is not None else (self.via, self.group)
        return [Traffic(rule.l4, rule.ports, how, target) for rule in self.rules]


def service_named(text: str, pointer: str = "/proto") -> Service:
    """``postgres``, ``tcp/5432``, ``udp/6000 broadcast``, ``udp/5004 to 239.1.1.1`` -> a
    Service (InvalidDocument at ``pointer``)."""
    entry_text, via, group = text.strip(), Via.UNICAST, None
    if entry_text.endswith(" broadcast"):
        entry_text, via = entry_text.removesuffix(" broadcast").strip(), Via.BROADCAST
    elif " to " in entry_text:
        entry_text, _, target = entry_text.partition(" to ")
        try:
            group = ip_address(target.strip())
        except ValueError:
            group = None
        if group is None or not group.is_multicast:
            raise InvalidDocument([FieldError(pointer, f"{target!r} is not a multicast group")])
        via = Via.MULTICAST
    try:
        entry = parse_protocol(entry_text)
    except ProtocolError as exc:
        raise InvalidDocument([FieldError(pointer, str(exc))]) from None
    return Service(_name(entry.text, via, group), entry.rules, via, group)


def _name(entry: str, via: Via, group: Address | None) -> str:
    if via is Via.BROADCAST:
        return f"{entry} broadcast"
    if via is Via.MULTICAST:
        return f"{entry} to {group}"
    return entry


def services_of(endpoints: Iterable[Endpoint]) -> list[Service]:
    """Every protocol entry the personas name, plus icmp; one service per distinct rule set.

    A persona in broadcast mode also names each entry sent to the subnet broadcast (its UDP
    and ICMP rules), one in multicast mode each entry sent to each of its groups (its UDP
    rules)."""
    found: dict[tuple[tuple[ProtocolRule, ...], Via, Address | None], str] = {
        ((ICMP,), Via.UNICAST, None): "icmp"
    }
    for endpoint in endpoints:
        persona = endpoint.persona
        if persona is None:
            continue
        ways: list[tuple[Via, Address | None]] = [(Via.UNICAST, None)]
        if persona.communication_mode is CommunicationMode.BROADCAST:
            ways.append((Via.BROADCAST, None))
        elif persona.communication_mode is CommunicationMode.MULTICAST:
            ways += [(Via.MULTICAST, g) for g in persona.multicast_groups]
        for entry in persona.allowed_protocols:
            for via, group in ways:
                rules = tuple(sorted(r for r in entry.rules if _sendable(r, via)))
                key = (rules, via, group)
                if rules and (key not in found or entry.text < found[key]):
                    found[key] = entry.text
    services = [Service(_name(text, *key[1:]), key[0], *key[1:]) for key, text in found.items()]
    return sorted(services, key=lambda s: (s.via != Via.UNICAST, s.name))


def _sendable(rule: ProtocolRule, via: Via) -> bool:
    """TCP is never broadcast or multicast; ping to the subnet broadcast is answered in
    broadcast mode (spec section 5, icmp_echo_ignore_broadcasts=0)."""
    if via is Via.UNICAST:
        return True
    return rule.l4 is L4.UDP or (via is Via.BROADCAST and rule.l4 is L4.ICMP)


def service_verdict(src: Endpoint, dst: Endpoint, service: Service) -> Verdict:
    """Reachable when any rule of the service gets through; that verdict, else the first."""
    verdicts = [can_reach(src, dst, t) for t in service.traffic()]
    return next((v for v in verdicts if v.reachable), verdicts[0])


def matrix(
    endpoints: Sequence[Endpoint], services: Sequence[Service]
) -> dict[tuple[str, str, str], Verdict]:
    """(from, to, service) -> verdict, for every ordered pair of distinct endpoints."""
    return {
        (a.name, b.name, s.name): service_verdict(a, b, s)
        for a in endpoints
        for b in endpoints
        if a is not b
        for s in services
    }


@dataclass(frozen=True, slots=True)
class ConnectivityChange:
    src: str
    dst: str
    service: str
    before: Verdict
    after: Verdict

    @property
    def gained(self) -> bool:
        return self.after.reachable

    def line(self) -> str:
        dropped = self.before if self.gained else self.after
        word, when = ("gains", "was dropped") if self.gained else ("loses", "now dropped")
        because = dropped.decisive
        return f"{self.src} -> {self.dst} {self.service}: {word}" + (
            f" ({when}: {because})" if because else ""
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.src,
            "to": self.dst,
            "service": self.service,
            "change": "gained" if self.gained else "lost",
            "line": self.line(),
            "before": _brief(self.before),
            "after": _brief(self.after),
        }


def _brief(verdict: Verdict) -> dict[str, Any]:
    decisive = verdict.decisive
    return {
        "reachable": verdict.reachable,
        "summary": verdict.summary(),
        "decided_by": decisive.to_json() if decisive else None,
    }


def connectivity_changes(
    before: Mapping[str, Endpoint],
    after: Mapping[str, Endpoint],
    *,
    max_checks: int = 2_000_000,
) -> list[ConnectivityChange]:
    """Every (from, to, service) that gains or loses reachability between two fleets, sorted."""
    return connectivity_diff(before, after, max_checks=max_checks)[0]


def connectivity_diff(
    before: Mapping[str, Endpoint],
    after: Mapping[str, Endpoint],
    *,
    max_checks: int = 2_000_000,
    limit: int | None = None,
) -> tuple[list[ConnectivityChange], int]:
    """The changes (at most ``limit``, sorted when there are at most 200k) and how many
    there are in all.

    Services are those either fleet names. Verdicts are computed once per pair of endpoint
    classes (:mod:`netpersona.reachability.classes`) with a class that the change moved; more
    than ``max_checks`` of them raises UsageError (propose a narrower change) rather than
    holding the caller for minutes.
    """
    services = sorted(services_of([*before.values(), *after.values()]), key=lambda s: s.name)
    classes = ClassPairs.of(before, after)
    candidates = list(classes.candidate_pairs())
    checks = 2 * len(candidates) * len(services)
    if checks > max_checks:
        raise UsageError(
            f"comparing the reachability this change moves would take {checks} checks "
            f"(at most {max_checks}): propose a narrower change"
        )
    moved = []
    for src, dst in candidates:
        for service in services:
            old = service_verdict(classes.before[src[0]], classes.before[dst[0]], service)
            new = service_verdict(classes.after[src[1]], classes.after[dst[1]], service)
            if old.reachable != new.reachable:
                moved.append((src, dst, service))
    sizes = {g: len(ids) for g, ids in classes.groups.items()}
    total = sum(sizes[s] * sizes[d] - (sizes[s] if s == d else 0) for s, d, _ in moved)
    found = ((a, b, service) for s, d, service in moved for a, b in classes.instance_pairs(s, d))
    if total <= 200_000:
        chosen = sorted(found, key=lambda t: (t[0], t[1], t[2].name))[:limit]
    else:
        chosen = list(itertools.islice(found, limit))
    result = [
        ConnectivityChange(
            a,
            b,
            service.name,
            service_verdict(before[a], before[b], service),
            service_verdict(after[a], after[b], service),
        )
        for a, b, service in chosen
    ]
    return result, total


def endpoints_of(engine: PolicyEngine) -> dict[str, Endpoint]:
    """Every instance the engine knows, with the effective persona the engine decides."""
    result = {}
    for instance_id, facts in engine.instances.items():
        decision = engine.decisions.get(instance_id)
        effective = decision.effective if decision is not None else None
        result[instance_id] = Endpoint(
            name=instance_id,
            persona_name=effective.name if effective is not None else None,
            persona=effective.persona if effective is not None else None,
            interfaces=tuple(ip_interface(a) for i in facts.interfaces for a in i.addresses),
            labels=dict(facts.labels),
            extra_addresses=tuple(ip_address(a.split("/")[0]) for a in facts.addresses),
        )
    return result
