"""The peer view the agent compiles with: the service's, merged with what gossip learned.

The answers themselves are parsed (and garbage refused) in :mod:`netpersona.agent.answers`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from netpersona.agent.answers import PersonaAnswer, parse_peer_view, parse_persona_answer
from netpersona.compiler.peer_delta import differing_window
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
    every gossip news and every new answer: it gives the same view (equal, and in the same
    order), made from the last one.

    Only the entries whose inputs changed are touched: a certificate that arrives, changes or
    goes, and a service entry that joins, leaves or changes (the new answer's peers compared
    with the last one's by their common head and tail, where the parser's unchanged entries
    are the same objects). The last view is patched there (each entry found by bisection on
    the instance ids), every other entry the object it was, and a certificate seen before
    gives the ``Peer`` made from it then. More than a few changes, a new priority summary or
    an answer naming an instance twice merge the whole view again.
    """

    def __init__(self) -> None:
        self._served: tuple[Peer, ...] | None = None
        self._members: tuple[Peer, ...] = ()
        self._by_served: dict[str, Peer] = {}  # the service's peers, per instance id
        self._by_member: dict[str, Peer] = {}  # its priority summary, per instance id
        self._base: dict[str, Peer] = {}  # the service's whole view, per instance id
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
        served_changed = self._take_answer(served, members)
        if served_changed is not None:
            changed = {
                instance
                for instance in news.keys() | self._news.keys()
                if news.get(instance) is not self._news.get(instance)
            }
            changed.update(served_changed)
            if len(changed) <= _MOST_PATCHED:
                self._news = news
                self._patch(sorted(changed))
                return self._view
        self._news = news
        view = dict(self._base)
        for instance, (_, peer) in news.items():
            view[instance] = peer
        self._view = tuple(sorted(view.values(), key=_instance))
        self._ids = [peer.instance for peer in self._view]
        return self._view

    def _take_answer(self, served: tuple[Peer, ...], members: tuple[Peer, ...]) -> list[str] | None:
        """Take the service's answer; the instance ids whose entry it changed, or None when
        the view is to be merged whole (the service's view is then made again)."""
        if served is self._served and members is self._members:
            return []
        if self._served is not None and members == self._members:
            gone, came = differing_window(self._served, served)
            if len(gone) + len(came) <= _MOST_PATCHED:
                by_served = self._by_served
                for peer in gone:
                    by_served.pop(peer.instance, None)
                for peer in came:
                    by_served[peer.instance] = peer
                self._served, self._members = served, members
                if len(by_served) == len(served):  # each instance once: the entries are these
                    changed = [peer.instance for peer in (*gone, *came)]
                    for instance in changed:
                        peer = by_served.get(instance) or self._by_member.get(instance)
                        if peer is None:
                            self._base.pop(instance, None)
                        else:
                            self._base[instance] = peer
                    return changed
        self._served, self._members = served, members
        self._by_member = _served_view((), members)
        self._by_served = {peer.instance: peer for peer in served}
        self._base = {**self._by_member, **self._by_served}
        return None

    def _patch(self, changed: list[str]) -> None:
        if not changed:
            return
        view, ids = list(self._view), self._ids
        for instance in changed:
            won = self._news.get(instance)
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
