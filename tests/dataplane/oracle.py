"""What spec sections 3-5 say should happen to a probe, written from the spec, not the compiler.

The lab's VM talks to two hosts on its LAN: ``peer`` (a permitted peer whenever the persona
declares ``peers``: the test gives it the persona name and labels the selectors ask for, and
turns CIDR selectors into its own address) and ``stranger`` (never in the peer view). With no
``peers`` declared, both are permitted: they sit on the VM's own subnet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import ip_network

from netpersona.model import (
    CidrSelector,
    CommunicationMode,
    LabelSelector,
    PeerSelector,
    Persona,
    PersonaSelector,
    SecurityProfile,
)
from netpersona.model.dscp import PRIORITY_DSCP
from netpersona.model.protocols import L4

__all__ = ["PEER_PRIORITY", "Oracle", "lab_persona", "peer_facts"]

PEER_PRIORITY = 3


def lab_persona(persona: Persona, peer4: str, peer6: str) -> Persona:
    """The persona with CIDR selectors moved into the lab: they select the peer only."""
    peers: list[PeerSelector] = []
    for selector in persona.peers:
        if isinstance(selector, CidrSelector):
            peers += [CidrSelector(ip_network(peer4)), CidrSelector(ip_network(peer6))]
        else:
            peers.append(selector)
    return replace(persona, peers=tuple(peers))


def peer_facts(persona: Persona, peer4: str, peer6: str) -> list[dict[str, object]]:
    """The peer view: the peer host, matching every selector of ``persona``."""
    name = next((s.persona for s in persona.peers if isinstance(s, PersonaSelector)), None)
    labels: dict[str, str] = {}
    for selector in persona.peers:
        if isinstance(selector, LabelSelector):
            labels.update(dict(selector.labels))
    entry: dict[str, object] = {
        "instance": "peer",
        "addresses": [peer4, peer6],
        "labels": labels,
        "priority": PEER_PRIORITY,
    }
    if name:
        entry["persona"] = name
    return [entry]


@dataclass(frozen=True, slots=True)
class Oracle:
    persona: Persona

    @property
    def mode(self) -> CommunicationMode:
        return self.persona.communication_mode

    @property
    def profile(self) -> SecurityProfile:
        return self.persona.security_profile

    def allowed(self, l4: L4, port: int | None = None) -> bool:
        for rule in self.persona.rules:
            if rule.l4 is not l4:
                continue
            if rule.ports is None or port is None or rule.ports.first <= port <= rule.ports.last:
                return True
        return False

    def permitted(self, host: str) -> bool:
        return host == "peer" if self.persona.peers else True

    def inbound(self, l4: L4, port: int | None, host: str) -> bool:
        """A new flow from ``host`` to the VM (section 4, first row; section 5, unicast)."""
        if not self.allowed(l4, port):
            return False
        if self.persona.peers or self.profile is SecurityProfile.HIGH:
            return self.permitted(host)
        return True

    def outbound(self, l4: L4, port: int | None, host: str) -> bool:
        """A new flow from the VM to ``host`` (section 4, second row; restricted mode)."""
        if self.mode is CommunicationMode.RESTRICTED and not self.permitted(host):
            return False
        if self.profile is SecurityProfile.LOW:
            return True
        if not self.allowed(l4, port):
            return False
        return self.profile is SecurityProfile.MEDIUM or self.permitted(host)

    def broadcast_in(self, port: int, host: str) -> bool:
        if self.mode is not CommunicationMode.BROADCAST or not self.allowed(L4.UDP, port):
            return False
        return self.permitted(host) if self.persona.peers else True

    def broadcast_out(self, port: int) -> bool:
        # Documented choice: broadcast and multicast out are checked against protocols only.
        return self.mode is CommunicationMode.BROADCAST and self.allowed(L4.UDP, port)

    def multicast_in(self, group: str, port: int, host: str) -> bool:
        if not self._group_open(group, port):
            return False
        return self.permitted(host) if self.persona.peers else True

    def multicast_out(self, group: str, port: int) -> bool:
        return self._group_open(group, port)

    def _group_open(self, group: str, port: int) -> bool:
        listed = any(str(g) == group for g in self.persona.multicast_groups)
        return self.mode is CommunicationMode.MULTICAST and listed and self.allowed(L4.UDP, port)

    def dscp_to(self, host: str) -> int:
        """Section 6: own DSCP, or the peer's when the peer's priority is higher."""
        if host == "peer" and self.persona.priority < PEER_PRIORITY:
            return PRIORITY_DSCP[PEER_PRIORITY]
        return self.persona.dscp
