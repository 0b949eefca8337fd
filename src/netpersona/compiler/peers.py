"""Resolve a persona's ``peers`` selectors against the peer view (spec sections 1, 6 and 8).

The result fills the sets that follow the peer view, so that a peer joining, leaving or
changing persona is an in-place set update (spec section 7).
"""

from __future__ import annotations

from ipaddress import ip_address

from netpersona.compiler.plan import PeerSets
from netpersona.facts import HostFacts
from netpersona.model.dscp import PEER_DSCP_CODES, PRIORITY_DSCP
from netpersona.model.persona import LabelSelector, Persona, PersonaSelector
from netpersona.records import Peer

__all__ = ["peer_dscp", "resolve_peer_sets", "selects"]


def selects(persona: Persona, peer: Peer) -> bool:
    """Whether a persona/labels selector of ``persona`` picks ``peer`` (cidr ones are static)."""
    for selector in persona.peers:
        if isinstance(selector, PersonaSelector) and peer.persona == selector.persona:
            return True
        if isinstance(selector, LabelSelector) and selector.matches(peer.labels):
            return True
    return False


def peer_dscp(peer: Peer) -> int:
    if peer.dscp is not None and peer.dscp in PEER_DSCP_CODES:
        return peer.dscp
    return PRIORITY_DSCP[peer.priority]


def resolve_peer_sets(persona: Persona, facts: HostFacts) -> PeerSets:
    addrs: dict[int, set[str]] = {4: set(), 6: set()}
    # Toward a peer of higher priority, the peer's DSCP (spec section 6). An address claimed
    # by two entries takes the higher priority's code point, so the outcome does not depend
    # on the order of the view.
    dscp: dict[int, dict[str, tuple[int, int]]] = {4: {}, 6: {}}
    for peer in facts.peers:
        chosen = selects(persona, peer)
        for address in peer.addresses:
            if chosen:
                addrs[address.version].add(str(address))
            if peer.priority > persona.priority:
                held = dscp[address.version].get(str(address))
                candidate = (peer.priority, peer_dscp(peer))
                if held is None or candidate > held:
                    dscp[address.version][str(address)] = candidate
    return PeerSets(
        addrs_v4=_sorted(addrs[4]),
        addrs_v6=_sorted(addrs[6]),
        dscp_v4=tuple((a, dscp[4][a][1]) for a in _sorted(dscp[4])),
        dscp_v6=tuple((a, dscp[6][a][1]) for a in _sorted(dscp[6])),
    )


def _sorted(addresses: set[str] | dict[str, tuple[int, int]]) -> tuple[str, ...]:
    return tuple(sorted(addresses, key=lambda a: int(ip_address(a))))
