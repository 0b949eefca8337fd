"""Can one VM reach another, and why: the spec's answer for one kind of traffic.

Spec sections 4 and 5 read as checks on two sides. A packet goes out through the sender's
persona and in through the receiver's; it is delivered only if both let it (replies of a
delivered TCP or ICMP flow are established traffic and always pass, section 3). Each check that
ran is a :class:`Reason` naming the VM, the persona, the field and the spec rule that decided,
and, for a drop, the named counter of spec section 7 that the dataplane would count it with
(the counter names of :mod:`netpersona.compiler.ruleset`).

This reads the spec, not the compiler: the lab proves the compiler against it with real packets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address
from typing import Any

from netpersona.model import (
    CidrSelector,
    CommunicationMode,
    LabelSelector,
    Persona,
    PersonaSelector,
    SecurityProfile,
)
from netpersona.model.protocols import L4, PortRange, ProtocolRule

__all__ = ["Endpoint", "Reason", "Traffic", "Verdict", "Via", "can_reach", "permitted_by"]

ALL_PORTS = PortRange(1, 65535)
Address = IPv4Address | IPv6Address
Interface = IPv4Interface | IPv6Interface


class Via(StrEnum):
    UNICAST = "unicast"
    BROADCAST = "broadcast"  # the sender's subnet broadcast, received by the other VM
    MULTICAST = "multicast"  # a group, received by the other VM


@dataclass(frozen=True, slots=True)
class Traffic:
    """What is sent: a transport, its destination ports (None: every port, or a protocol
    without ports), and how it is addressed."""

    l4: L4
    ports: PortRange | None = None
    via: Via = Via.UNICAST
    group: Address | None = None  # the multicast group (via multicast)

    def __str__(self) -> str:
        text = self.l4.value if self.ports is None else f"{self.l4.value}/{self.ports}"
        if self.via is Via.BROADCAST:
            return f"{text} broadcast"
        if self.via is Via.MULTICAST:
            return f"{text} to {self.group}"
        return text


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A VM as the spec sees it: its persona, and what peers selectors can match on."""

    name: str
    persona_name: str | None
    persona: Persona | None
    interfaces: tuple[Interface, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    extra_addresses: tuple[Address, ...] = ()  # addresses known without a prefix length
    # The persona's rules, worked out once: every check of every verdict reads them.
    rules: tuple[ProtocolRule, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", () if self.persona is None else self.persona.rules)

    @property
    def addresses(self) -> tuple[Address, ...]:
        found = dict.fromkeys(i.ip for i in self.interfaces)
        found.update(dict.fromkeys(self.extra_addresses))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Reason:
    """One check of one side: who decided, by which field and rule, and the drop counter."""

    vm: str
    side: str  # "out" (the sender's persona) or "in" (the receiver's)
    persona: str | None
    field: str  # the persona field that decides, "" when none does
    rule: str  # the spec's sentence, applied
    allowed: bool
    counter: str | None = None  # the drop counter that would count it (drops only)

    def __str__(self) -> str:
        where = f"{self.vm} ({self.persona or 'no persona'}) {self.side}"
        field_text = f" [{self.field}]" if self.field else ""
        counter = f" -> {self.counter}" if self.counter else ""
        return f"{where}{field_text}: {self.rule}{counter}"

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "side": self.side,
            "persona": self.persona,
            "field": self.field,
            "rule": self.rule,
            "allowed": self.allowed,
            "counter": self.counter,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    src: str
    dst: str
    traffic: Traffic
    reachable: bool
    reasons: tuple[Reason, ...]  # every check that ran, in order; a drop's reason is last
    ports: tuple[PortRange, ...] = ()  # the destination ports that get through

    @property
    def decisive(self) -> Reason | None:
        """The check that dropped it (None when it is delivered)."""
        return None if self.reachable else self.reasons[-1]

    def summary(self) -> str:
        if self.reachable:
            # Name the ports that get through when they are fewer than those asked about.
            asked = (self.traffic.ports or ALL_PORTS,)
            narrowed = self.ports and self.ports != asked
            ports = ", ".join(map(str, self.ports))
            on = f" on {self.traffic.l4.value}/{ports}" if narrowed else ""
            return f"{self.src} reaches {self.dst} with {self.traffic}{on}"
        return f"{self.src} cannot reach {self.dst} with {self.traffic}: {self.decisive}"

    def to_json(self) -> dict[str, Any]:
        decisive = self.decisive
        return {
            "from": self.src,
            "to": self.dst,
            "traffic": str(self.traffic),
            "reachable": self.reachable,
            "summary": self.summary(),
            "decided_by": decisive.to_json() if decisive else None,
            "reasons": [r.to_json() for r in self.reasons],
            "ports": [str(p) for p in self.ports],
        }


class _Dropped(Exception):
    pass


@dataclass
class _Trail:
    """The checks of one verdict, and the destination ports still let through."""

    reasons: list[Reason]
    window: list[PortRange] | None  # None: a protocol without ports

    def note(self, me: Endpoint, side: str, field_name: str, rule: str) -> None:
        self.reasons.append(Reason(me.name, side, me.persona_name, field_name, rule, True))

    def drop(
        self, me: Endpoint, side: str, field_name: str, rule: str, counter: str | None
    ) -> None:
        self.reasons.append(
            Reason(me.name, side, me.persona_name, field_name, rule, False, counter)
        )
        raise _Dropped


def permitted_by(me: Endpoint, other: Endpoint) -> str | None:
    """Spec section 4: how ``other`` is among ``me``'s permitted peers (None: it is not)."""
    assert me.persona is not None
    if not me.persona.peers:
        for net in {i.network for i in me.interfaces}:
            if any(a in net for a in other.addresses):
                return f"on its own subnet {net} (no peers declared)"
        return None
    for selector in me.persona.peers:
        if isinstance(selector, PersonaSelector) and other.persona_name == selector.persona:
            return f"peers: persona {selector.persona}"
        if isinstance(selector, LabelSelector) and all(
            other.labels.get(k) == v for k, v in selector.labels
        ):
            return "peers: labels " + ",".join(f"{k}={v}" for k, v in selector.labels)
        if isinstance(selector, CidrSelector) and any(
            ip_address(a) in selector.network for a in other.addresses
        ):
            return f"peers: cidr {selector.network}"
    return None


def _protocols(trail: _Trail, me: Endpoint, side: str, traffic: Traffic) -> None:
    """Narrow the port window to what ``me``'s allowed_protocols let through."""
    assert me.persona is not None
    rules = [r for r in me.rules if r.l4 is traffic.l4]
    if trail.window is None:
        if rules:
            trail.note(me, side, "allowed_protocols", f"{traffic.l4.value} is allowed")
            return
    else:
        window = [
            PortRange(max(w.first, r.first), min(w.last, r.last))
            for w in trail.window
            for r in ((rule.ports or ALL_PORTS) for rule in rules)
            if max(w.first, r.first) <= min(w.last, r.last)
        ]
        if window:
            trail.window = sorted(set(window))
            shown = ", ".join(str(r) for r in rules)
            trail.note(me, side, "allowed_protocols", f"allows {shown}")
            return
    listed = ", ".join(str(r) for r in me.rules) or "nothing"
    trail.drop(
        me,
        side,
        "allowed_protocols",
        f"{traffic.l4.value if trail.window is None else traffic} is not allowed "
        f"(allowed: {listed})",
        "drop_protocol",
    )


def _listed(persona: Persona, traffic: Traffic) -> bool:
    return any(g == traffic.group for g in persona.multicast_groups)


# The mode a persona must be in to take traffic sent this way, what the traffic is called in
# the drop message, and the counter that drop adds to.
_MODE_FOR = {
    Via.BROADCAST: (CommunicationMode.BROADCAST, "IPv4 broadcast", "drop_broadcast"),
    Via.MULTICAST: (CommunicationMode.MULTICAST, "multicast", "drop_multicast"),
}


def _group(trail: _Trail, me: Endpoint, side: str, traffic: Traffic) -> None:
    """Spec section 5: broadcast only in broadcast mode, a group only in multicast mode when
    listed."""
    assert me.persona is not None
    if traffic.via not in _MODE_FOR:
        return
    wanted, what, counter = _MODE_FOR[traffic.via]
    mode = me.persona.communication_mode
    if mode is not wanted:
        message = f"{mode} mode drops {what} (spec section 5)"
        trail.drop(me, side, "communication_mode", message, counter)
    if traffic.via is Via.BROADCAST:
        trail.note(me, side, "communication_mode", "broadcast mode accepts broadcast")
        return
    if not _listed(me.persona, traffic):
        message = f"group {traffic.group} is not listed"
        trail.drop(me, side, "multicast_groups", message, "drop_multicast")
    trail.note(me, side, "multicast_groups", f"group {traffic.group} is listed")


def _peer(
    trail: _Trail, me: Endpoint, other: Endpoint, side: str, field_name: str, why_checked: str
) -> None:
    how = permitted_by(me, other)
    if me.persona is not None and me.persona.peers:
        field_name = "peers"
    if how is None:
        trail.drop(
            me,
            side,
            field_name,
            f"{other.name} is not a permitted peer ({why_checked})",
            "drop_not_peer",
        )
    trail.note(me, side, field_name, f"{other.name} is a permitted peer, {how}")


def _outbound(trail: _Trail, src: Endpoint, dst: Endpoint, traffic: Traffic) -> None:
    p = src.persona
    if p is None:
        trail.note(src, "out", "", "no persona: the VM's own stack, unfiltered")
        return
    if traffic.via is not Via.UNICAST:
        # Outbound broadcast and multicast are checked against protocols only: their
        # destination is a segment or a group, not a peer (docs/dataplane.md).
        _group(trail, src, "out", traffic)
        _protocols(trail, src, "out", traffic)
        return
    mode, profile = p.communication_mode, p.security_profile
    if mode is CommunicationMode.RESTRICTED:
        _peer(trail, src, dst, "out", "communication_mode", "restricted mode sends only to peers")
    elif profile is SecurityProfile.HIGH:
        _peer(trail, src, dst, "out", "security_profile", "the high profile sends only to peers")
    if profile is SecurityProfile.LOW:
        trail.note(src, "out", "security_profile", "the low profile sends anything")
        return
    _protocols(trail, src, "out", traffic)


def _inbound(trail: _Trail, src: Endpoint, dst: Endpoint, traffic: Traffic) -> None:
    p = dst.persona
    if p is None:
        trail.note(dst, "in", "", "no persona: the VM's own stack, unfiltered")
        return
    _group(trail, dst, "in", traffic)
    if p.peers:
        _peer(trail, dst, src, "in", "peers", "peers restrict inbound new flows")
    elif p.security_profile is SecurityProfile.HIGH:
        _peer(trail, dst, src, "in", "security_profile", "the high profile accepts only peers")
    _protocols(trail, dst, "in", traffic)


def _same_segment(trail: _Trail, src: Endpoint, dst: Endpoint) -> None:
    """A subnet broadcast stays on its segment: the receiver must share a subnet."""
    nets = {i.network for i in src.interfaces}
    if not any(i.ip in net for i in dst.interfaces for net in nets):
        trail.drop(src, "out", "", f"{dst.name} is on none of {src.name}'s subnets", None)


def can_reach(src: Endpoint, dst: Endpoint, traffic: Traffic) -> Verdict:
    """Whether ``traffic`` from ``src`` is delivered to ``dst`` (and, for TCP and ICMP,
    answered), with every check that decided it."""
    window = None if not traffic.l4.has_ports else [traffic.ports or ALL_PORTS]
    trail = _Trail([], window)
    try:
        if traffic.via is Via.BROADCAST:
            _same_segment(trail, src, dst)
        _outbound(trail, src, dst, traffic)
        _inbound(trail, src, dst, traffic)
    except _Dropped:
        return Verdict(src.name, dst.name, traffic, False, tuple(trail.reasons))
    return Verdict(
        src.name, dst.name, traffic, True, tuple(trail.reasons), tuple(trail.window or ())
    )
