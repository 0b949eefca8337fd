"""Resolve a persona's ``peers`` selectors against the peer view (spec sections 1, 6 and 8).

The result fills the sets that follow the peer view, so that a peer joining, leaving or
changing persona is an in-place set update (spec section 7).
"""

from __future__ import annotations

from ipaddress import IPv4Address

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
    """The peer sets: addresses in numeric order, each family on its own.

    Built for 100k-peer views: the addresses come parsed, so they are ordered by their integer
    values (never parsed again from text), and an IPv4 address is written out once, by the C
    library (what ``str`` gives, for a fifth of its cost). IPv6 addresses keep ``str`` (and a
    zone, if one is given) and are ordered by value, then text.
    """
    addrs4: set[int] = set()
    addrs6: dict[str, int] = {}
    # Toward a peer of higher priority, the peer's DSCP (spec section 6). An address claimed
    # by two entries takes the higher priority's code point, so the outcome does not depend
    # on the order of the view.
    dscp4: dict[int, tuple[int, int]] = {}
    dscp6: dict[str, tuple[int, int]] = {}
    keys6: dict[str, int] = {}
    own = persona.priority
    for peer in facts.peers:
        chosen = selects(persona, peer)
        higher = peer.priority > own
        if not (chosen or higher):
            continue
        candidate = (peer.priority, peer_dscp(peer)) if higher else (0, 0)
        for address in peer.addresses:
            if isinstance(address, IPv4Address):
                value = int(address)
                if chosen:
                    addrs4.add(value)
                if higher:
                    held4 = dscp4.get(value)
                    if held4 is None or candidate > held4:
                        dscp4[value] = candidate
                continue
            text = str(address)
            if chosen:
                addrs6[text] = int(address)
            if higher:
                held6 = dscp6.get(text)
                if held6 is None or candidate > held6:
                    dscp6[text] = candidate
                    keys6[text] = int(address)
    order4 = sorted(dscp4)
    return PeerSets(
        addrs_v4=_v4_texts(sorted(addrs4)),
        addrs_v6=_sorted(addrs6),
        dscp_v4=tuple(zip(_v4_texts(order4), [dscp4[v][1] for v in order4], strict=True)),
        dscp_v6=tuple((a, dscp6[a][1]) for a in _sorted(keys6)),
    )


def _v4_texts(values: list[int]) -> tuple[str, ...]:
    """``str(IPv4Address(value))`` of each value, formatted from its four bytes directly."""
    return tuple(f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}" for v in values)


def _sorted(keyed: dict[str, int]) -> tuple[str, ...]:
    """The texts in the order of their addresses' values (then text, so the order is total)."""
    return tuple(sorted(keyed, key=lambda text: (keyed[text], text)))
