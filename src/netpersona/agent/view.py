"""The peer view the agent compiles with: the service's, merged with what gossip learned.

The answers themselves are parsed (and garbage refused) in :mod:`netpersona.agent.answers`.
"""

from __future__ import annotations

from bisect import bisect_left
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
    "PeerViewMerger",
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
    view = _served_view(served, members)
    for cert in learned:
        if served_at is not None and cert.issued_at <= served_at:
            continue
        view[cert.instance] = cert.peer()
    return tuple(sorted(view.values(), key=_instance))


def _served_view(served: Iterable[Peer], members: Iterable[Peer]) -> dict[str, Peer]:
    view: dict[str, Peer] = {}
    for peer in members:
        view.setdefault(peer.instance, peer)
    for peer in served:
        view[peer.instance] = peer
    return view


def _instance(peer: Peer) -> str:
    return peer.instance


# More changed entries than this and the view is sorted again rather than patched.
_MOST_PATCHED = 64


class PeerViewMerger:
    """:func:`merge_peer_views` that keeps its last view, for an agent that merges again at
    every gossip news: it gives the same view (equal, and in the same order), made from the
    last one.

    While the service's answer is the same (``served`` and ``members`` the same objects, the
    same ``served_at``), a certificate that arrives, changes or goes touches only its own
    entry: the last view with that entry replaced, inserted or removed (found by bisection
    on the instance ids), every other entry the object it was, and a certificate seen before
    gives the ``Peer`` made from it then. A new answer merges the whole view again (its
    entries the parser's objects, so unchanged peers stay the same objects there too).
    """

    def __init__(self) -> None:
        self._served: tuple[Peer, ...] | None = None
        self._served_at: float | None = None
        self._members: tuple[Peer, ...] = ()
        self._base: dict[str, Peer] = {}  # the service's view, per instance id
        self._news: dict[str, tuple[PersonaCertificate, Peer]] = {}  # certificates that won
        self._view: tuple[Peer, ...] = ()
        self._ids: list[str] = []  # the instance ids of _view, in its order

    def __call__(
        self,
        served: tuple[Peer, ...],
        served_at: float | None,
        learned: Iterable[PersonaCertificate],
        members: tuple[Peer, ...] = (),
    ) -> tuple[Peer, ...]:
        news: dict[str, tuple[PersonaCertificate, Peer]] = {}
        for cert in learned:
            if served_at is not None and cert.issued_at <= served_at:
                continue
            known = self._news.get(cert.instance)
            if known is not None and (known[0] is cert or known[0] == cert):
                news[cert.instance] = known
            else:
                news[cert.instance] = (cert, cert.peer())
        same_answer = (
            served is self._served and served_at == self._served_at and members == self._members
        )
        if same_answer:
            changed = sorted(
                instance
                for instance in news.keys() | self._news.keys()
                if news.get(instance) is not self._news.get(instance)
            )
            if len(changed) <= _MOST_PATCHED:
                self._patch(changed, news)
                self._news = news
                return self._view
        else:
            self._served, self._served_at, self._members = served, served_at, members
            self._base = _served_view(served, members)
        view = dict(self._base)
        for instance, (_, peer) in news.items():
            view[instance] = peer
        self._news = news
        self._view = tuple(sorted(view.values(), key=_instance))
        self._ids = [peer.instance for peer in self._view]
        return self._view

    def _patch(self, changed: list[str], news: dict[str, tuple[PersonaCertificate, Peer]]) -> None:
        if not changed:
            return
        view, ids = list(self._view), self._ids
        for instance in changed:
            won = news.get(instance)
            peer = won[1] if won is not None else self._base.get(instance)
            at = bisect_left(ids, instance)
            present = at < len(ids) and ids[at] == instance
            if peer is None:
                if present:
                    del view[at], ids[at]
            elif present:
                view[at] = peer
            else:
                view.insert(at, peer)
                ids.insert(at, instance)
        self._view = tuple(view)
