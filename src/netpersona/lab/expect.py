"""What the spec says a probe between two lab VMs must do, computed from their personas alone.

This is the lab's oracle: it reads spec sections 3-5 and nothing of the compiler, so a
disagreement between it and real packets is a finding, not a tautology. A probe goes out
through the sender's persona and in through the receiver's; it is delivered only if both let
it (replies of a delivered TCP or ICMP probe belong to its flow and always pass, section 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, ip_address

from netpersona.model import (
    CidrSelector,
    CommunicationMode,
    LabelSelector,
    Persona,
    PersonaSelector,
    SecurityProfile,
)
from netpersona.model.protocols import L4

__all__ = ["Host", "Probe", "ProbeKind", "expected"]


class ProbeKind(StrEnum):
    TCP_ALLOWED = "tcp-allowed"
    TCP_DENIED = "tcp-denied"
    UDP = "udp"
    ICMP = "icmp"
    BROADCAST = "broadcast"
    MULTICAST_LISTED = "mcast-listed"
    MULTICAST_UNLISTED = "mcast-unlisted"


@dataclass(frozen=True, slots=True)
class Probe:
    kind: ProbeKind
    l4: L4
    port: int | None = None  # destination port (TCP/UDP)
    group: str | None = None  # multicast group


@dataclass(frozen=True, slots=True)
class Host:
    """A lab VM as the spec sees it: its persona, and what peers selectors can match on."""

    name: str
    persona_name: str | None
    persona: Persona | None
    interfaces: tuple[IPv4Interface, ...]
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def addresses(self) -> tuple[IPv4Address, ...]:
        return tuple(i.ip for i in self.interfaces)


def allows(persona: Persona, l4: L4, port: int | None) -> bool:
    return any(
        rule.l4 is l4
        and (rule.ports is None or port is None or rule.ports.first <= port <= rule.ports.last)
        for rule in persona.rules
    )


def permitted(me: Host, other: Host) -> bool:
    """Spec section 4: ``other`` is among ``me``'s permitted peers."""
    assert me.persona is not None
    if not me.persona.peers:
        subnets = {i.network for i in me.interfaces}
        return any(a in net for a in other.addresses for net in subnets)
    for selector in me.persona.peers:
        if isinstance(selector, PersonaSelector) and other.persona_name == selector.persona:
            return True
        if isinstance(selector, LabelSelector) and all(
            other.labels.get(k) == v for k, v in selector.labels
        ):
            return True
        if isinstance(selector, CidrSelector) and any(
            ip_address(a) in selector.network for a in other.addresses
        ):
            return True
    return False


def _outbound(src: Host, dst: Host, probe: Probe) -> bool:
    p = src.persona
    if p is None:
        return True  # no persona: the VM's own stack, unfiltered
    mode, profile = p.communication_mode, p.security_profile
    if probe.kind is ProbeKind.BROADCAST:
        # Section 5; outbound broadcast is checked against protocols only (docs/dataplane.md).
        return mode is CommunicationMode.BROADCAST and allows(p, probe.l4, probe.port)
    if probe.kind in (ProbeKind.MULTICAST_LISTED, ProbeKind.MULTICAST_UNLISTED):
        listed = any(str(g) == probe.group for g in p.multicast_groups)
        return mode is CommunicationMode.MULTICAST and listed and allows(p, probe.l4, probe.port)
    if (mode is CommunicationMode.RESTRICTED or profile is SecurityProfile.HIGH) and not permitted(
        src, dst
    ):
        return False
    if profile is SecurityProfile.LOW:
        return True
    return allows(p, probe.l4, probe.port)


def _inbound(src: Host, dst: Host, probe: Probe) -> bool:
    p = dst.persona
    if p is None:
        return True
    mode = p.communication_mode
    if probe.kind is ProbeKind.BROADCAST and mode is not CommunicationMode.BROADCAST:
        return False
    if probe.kind in (ProbeKind.MULTICAST_LISTED, ProbeKind.MULTICAST_UNLISTED):
        listed = any(str(g) == probe.group for g in p.multicast_groups)
        if mode is not CommunicationMode.MULTICAST or not listed:
            return False
    if (p.peers or p.security_profile is SecurityProfile.HIGH) and not permitted(dst, src):
        return False
    return allows(p, probe.l4, probe.port)


def expected(src: Host, dst: Host, probe: Probe) -> bool:
    """Whether ``probe`` from ``src`` must reach ``dst`` (and, for TCP/ICMP, be answered)."""
    return _outbound(src, dst, probe) and _inbound(src, dst, probe)


def tcp_allowed_port(host: Host) -> int | None:
    """A TCP port the host's persona lets in (the first one listed), for the allowed-port probe."""
    if host.persona is None:
        return None
    for rule in host.persona.rules:
        if rule.l4 is L4.TCP:
            return rule.ports.first if rule.ports is not None else 80
    return None


def udp_port(hosts: Sequence[Host]) -> int:
    """One UDP port every probe uses: the first UDP port any persona in the lab lists."""
    for host in hosts:
        if host.persona is not None:
            for rule in host.persona.rules:
                if rule.l4 is L4.UDP and rule.ports is not None:
                    return rule.ports.first
    return 9
