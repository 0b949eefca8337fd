"""The peer view the agent compiles with: the service's, merged with what gossip learned.

The answers themselves are parsed (and garbage refused) in :mod:`netpersona.agent.answers`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from netpersona.agent.answers import PersonaAnswer, parse_peer_view, parse_persona_answer
from netpersona.errors import MalformedAnswer
from netpersona.facts import HostFacts
from netpersona.records import Peer

if TYPE_CHECKING:
    from netpersona.certs.certificate import PersonaCertificate

__all__ = [
    "MalformedAnswer",
    "PersonaAnswer",
    "compose_facts",
    "merge_peer_views",
    "parse_peer_view",
    "parse_persona_answer",
]


def compose_facts(live: HostFacts, peers: tuple[Peer, ...]) -> HostFacts:
    """The live host facts with the peer view the service gave."""
    return replace(live, peers=peers)


def merge_peer_views(
    served: tuple[Peer, ...],
    served_at: float | None,
    learned: Iterable[PersonaCertificate],
    members: Iterable[Peer] = (),
) -> tuple[Peer, ...]:
    """The peer view to compile with: the service's, and what gossip learned, per instance id
    the newest knowledge winning.

    ``served`` is the service's last peer view (the instances this VM's selectors match) and
    ``members`` the same answer's priority summary (the VMs of its networks of higher priority:
    instance, addresses, priority and DSCP, no persona or labels, so no selector picks them);
    ``served_at`` is when the service said them (its own clock, as certificates' ``iat``; None
    before any answer); ``learned`` are the current certificates held for other VMs.

    Entries are matched by instance id, never by address: the service and every certificate
    name the instance, and the agent never makes an id up. A certificate issued after
    ``served_at`` is news the service's answer could not show, so it replaces the service's
    entry (or adds one). One issued at or before it is older than the answer, and the answer
    wins: a VM the service no longer lists, because it left the selectors, is not kept in the
    sets by its old certificate, and a VM the summary shows keeps the priority the service
    gave. A ``served`` entry wins over a summary entry of the same instance (it says more).
    """
    view: dict[str, Peer] = {}
    for peer in members:
        view.setdefault(peer.instance, peer)
    for peer in served:
        view[peer.instance] = peer
    for cert in learned:
        if served_at is not None and cert.issued_at <= served_at:
            continue
        view[cert.instance] = cert.peer()
    return tuple(sorted(view.values(), key=lambda p: p.instance))
