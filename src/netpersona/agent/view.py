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
) -> tuple[Peer, ...]:
    """The peer view to compile with: the service's, and what gossip learned, per instance
    the newest knowledge winning.

    ``served`` is the service's last peer view and ``served_at`` when the service said it (its
    own clock, as certificates' ``iat``; None before any answer); ``learned`` are the current
    certificates held for other VMs. An entry of the service and a certificate are the same
    instance when they share an address. A certificate issued after ``served_at`` is news the
    service's answer could not show, so it replaces the service's entry (or adds one); one issued
    at or before it is older than the answer, and the answer wins: a VM the service no longer
    lists, because it left the selectors, is not kept alive by its old certificate.
    """
    view = list(served)
    for cert in sorted(learned, key=lambda c: c.instance):
        if served_at is not None and cert.issued_at <= served_at:
            continue
        mine = set(cert.addresses)
        view = [p for p in view if mine.isdisjoint(p.addresses)]
        view.append(cert.peer())
    return tuple(sorted(view, key=lambda p: (p.instance, [str(a) for a in p.addresses])))
