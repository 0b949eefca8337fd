"""The compiler kept current across peer-view changes: work in proportion to the change.

The agent compiles on every change it hears of, and most changes are a peer joining, leaving
or changing: the persona and the host are as before, and only the peer sets' elements move
(no other part of a plan depends on the peer view). :class:`PlanCompiler` remembers what it
last compiled; when only the view changed, the new plan is the last one with new peer sets,
which :class:`PeerResolver` derives from the peers that changed, together with the
:class:`~netpersona.compiler.peer_delta.PeerDelta` the applier sends to the kernel. Anything
else (a new persona, new host facts, the first compile) is compiled from scratch.

The views are compared by their common head and tail (a chunk at a time in C, where an entry
the two views share as one object costs a pointer comparison); the entries between are
matched by instance id, and an entry that is equal in both is no change. The views the agent
compiles with are in instance-id order, so one join leaves a window of one entry. The result is
the from-scratch result, element for element (tests/compiler/test_incremental.py checks it
against :func:`~netpersona.compiler.compile_plan` on random views and changes).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any

from netpersona.compiler import compile_plan
from netpersona.compiler.peer_delta import PeerDelta, differing_window
from netpersona.compiler.peers import peer_dscp, selects
from netpersona.compiler.plan import PeerSets, Plan
from netpersona.facts import HostFacts
from netpersona.model.persona import Persona
from netpersona.records import Peer

__all__ = ["CompiledPlan", "PeerChange", "PeerResolver", "PlanCompiler"]

# A DSCP candidate: (the claiming peer's priority, its code point); the highest wins.
Candidate = tuple[int, int]


@dataclass(frozen=True, slots=True)
class PeerChange:
    """The peer sets before and after a change of the view, and the delta between them."""

    before: PeerSets
    after: PeerSets
    delta: PeerDelta


@dataclass(frozen=True, slots=True)
class CompiledPlan:
    """A plan, and the peer change that led to it from the last one if nothing else changed."""

    plan: Plan
    peer_change: PeerChange | None = None


def _v4_text(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


class _Ordered:
    """One field's elements in address order: sort keys and texts (and DSCPs) side by side."""

    def __init__(self, keys: list[Any], texts: list[str], values: list[int] | None) -> None:
        self.keys, self.texts, self.values = keys, texts, values

    def remove(self, key: Any) -> None:
        at = bisect_left(self.keys, key)
        del self.keys[at], self.texts[at]
        if self.values is not None:
            del self.values[at]

    def insert(self, key: Any, text: str, value: int = 0) -> None:
        at = bisect_left(self.keys, key)
        self.keys.insert(at, key)
        self.texts.insert(at, text)
        if self.values is not None:
            self.values.insert(at, value)

    def set_value(self, key: Any, value: int) -> None:
        assert self.values is not None
        self.values[bisect_left(self.keys, key)] = value

    def addresses(self) -> tuple[str, ...]:
        return tuple(self.texts)

    def pairs(self) -> tuple[tuple[str, int], ...]:
        assert self.values is not None
        return tuple(zip(self.texts, self.values, strict=True))


class PeerResolver:
    """:func:`~netpersona.compiler.resolve_peer_sets` of one persona, kept current entry by
    entry: each address counts the entries that claim it, each DSCP key its candidates."""

    def __init__(self, persona: Persona, peers: Sequence[Peer] = ()) -> None:
        self.persona = persona
        self.peers: tuple[Peer, ...] = ()
        self._v4: dict[int, int] = {}  # address -> entries that select it
        self._v6: dict[str, int] = {}  # text -> entries that select it
        self._d4: dict[int, dict[Candidate, int]] = {}  # address -> candidate -> entries
        self._d6: dict[str, dict[Candidate, int]] = {}
        self._v6_key: dict[str, tuple[int, str]] = {}  # text -> sort key (value, text)
        self._set4 = _Ordered([], [], None)
        self._set6 = _Ordered([], [], None)
        self._map4 = _Ordered([], [], [])
        self._map6 = _Ordered([], [], [])
        self._sets = PeerSets()
        self._count(peers, 1)
        self.peers = tuple(peers)
        self._rebuild()

    @property
    def sets(self) -> PeerSets:
        return self._sets

    def update(self, peers: Sequence[Peer]) -> PeerChange:
        """Move to the view ``peers``: the change from the sets of the last view."""
        old, new = self.peers, tuple(peers)
        gone, came = _changed_entries(old, new)
        before = self._sets
        touched4: set[int] = set()
        touched6: set[str] = set()
        for peer in (*gone, *came):
            for address in peer.addresses:
                if isinstance(address, IPv4Address):
                    touched4.add(int(address))
                else:
                    touched6.add(str(address))
        was = self._snapshot(touched4, touched6)
        self._count(gone, -1)
        self._count(came, 1)
        self.peers = new
        now = self._snapshot(touched4, touched6)
        delta = self._apply(was, now)
        return PeerChange(before, self._sets, delta)

    # --- internals
    def _count(self, peers: Iterable[Peer], sign: int) -> None:
        own = self.persona.priority
        v4 = self._v4
        for peer in peers:
            chosen = selects(self.persona, peer)
            higher = peer.priority > own
            if not (chosen or higher):
                continue
            candidate = (peer.priority, peer_dscp(peer)) if higher else (0, 0)
            for address in peer.addresses:
                if isinstance(address, IPv4Address):
                    value = int(address)
                    if chosen:  # _add, inlined: this loop is the first compile's
                        left = v4.get(value, 0) + sign
                        if left:
                            v4[value] = left
                        else:
                            del v4[value]
                    if higher:
                        _add(self._d4.setdefault(value, {}), candidate, sign)
                        if not self._d4[value]:
                            del self._d4[value]
                    continue
                text = str(address)
                self._v6_key.setdefault(text, (int(address), text))
                if chosen:
                    _add(self._v6, text, sign)
                if higher:
                    _add(self._d6.setdefault(text, {}), candidate, sign)
                    if not self._d6[text]:
                        del self._d6[text]

    def _snapshot(self, touched4: set[int], touched6: set[str]) -> dict[str, dict[Any, Any]]:
        """For each touched key: whether each set holds it, and each map's DSCP for it."""
        return {
            "addrs_v4": {k: k in self._v4 for k in touched4},
            "addrs_v6": {k: k in self._v6 for k in touched6},
            "dscp_v4": {k: _winner(self._d4.get(k)) for k in touched4},
            "dscp_v6": {k: _winner(self._d6.get(k)) for k in touched6},
        }

    def _apply(self, was: dict[str, dict[Any, Any]], now: dict[str, dict[Any, Any]]) -> PeerDelta:
        deleted: dict[str, tuple[str, ...]] = {}
        added: dict[str, tuple[Any, ...]] = {}
        fields: dict[str, tuple[_Ordered, Callable[[Any], Any], Callable[[Any], str]]] = {
            "addrs_v4": (self._set4, _v4_key, _v4_text),
            "addrs_v6": (self._set6, self._v6_key.__getitem__, str),
            "dscp_v4": (self._map4, _v4_key, _v4_text),
            "dscp_v6": (self._map6, self._v6_key.__getitem__, str),
        }
        for name, (ordered, sort_key, spell) in fields.items():
            gone_keys: list[str] = []
            new_elements: list[Any] = []
            is_map = ordered.values is not None
            for key, before in was[name].items():
                after = now[name][key]
                if before == after:
                    continue
                text = spell(key)
                if is_map:
                    if before is not None and after is not None:
                        ordered.set_value(sort_key(key), after)
                    elif before is not None:
                        ordered.remove(sort_key(key))
                    else:
                        ordered.insert(sort_key(key), text, after)
                    if before is not None:
                        gone_keys.append(text)
                    if after is not None:
                        new_elements.append((text, after))
                elif after:
                    ordered.insert(sort_key(key), text)
                    new_elements.append(text)
                else:
                    ordered.remove(sort_key(key))
                    gone_keys.append(text)
            if gone_keys or new_elements:
                deleted[name] = tuple(sorted(gone_keys))
                added[name] = tuple(sorted(new_elements))
        self._forget_keys(was)
        self._sets = PeerSets(
            addrs_v4=self._set4.addresses() if "addrs_v4" in added else self._sets.addrs_v4,
            addrs_v6=self._set6.addresses() if "addrs_v6" in added else self._sets.addrs_v6,
            dscp_v4=self._map4.pairs() if "dscp_v4" in added else self._sets.dscp_v4,
            dscp_v6=self._map6.pairs() if "dscp_v6" in added else self._sets.dscp_v6,
        )
        return PeerDelta(deleted, added)

    def _forget_keys(self, was: dict[str, dict[Any, Any]]) -> None:
        for text in was["addrs_v6"]:
            if text not in self._v6 and text not in self._d6:
                self._v6_key.pop(text, None)

    def _rebuild(self) -> None:
        """The ordered fields and the sets, from the counts (the first view)."""
        order4 = sorted(self._v4)
        self._set4 = _Ordered(order4, [_v4_text(v) for v in order4], None)
        keys6 = sorted(self._v6_key[t] for t in self._v6)
        self._set6 = _Ordered(keys6, [t for _, t in keys6], None)
        dorder4 = sorted(self._d4)
        self._map4 = _Ordered(
            dorder4, [_v4_text(v) for v in dorder4], [_dscp(self._d4[v]) for v in dorder4]
        )
        dkeys6 = sorted(self._v6_key[t] for t in self._d6)
        self._map6 = _Ordered(
            dkeys6, [t for _, t in dkeys6], [_dscp(self._d6[t]) for _, t in dkeys6]
        )
        self._forget_keys({"addrs_v6": dict.fromkeys(list(self._v6_key))})
        self._sets = PeerSets(
            addrs_v4=self._set4.addresses(),
            addrs_v6=self._set6.addresses(),
            dscp_v4=self._map4.pairs(),
            dscp_v6=self._map6.pairs(),
        )


def _add(counts: dict[Any, int], key: Any, sign: int) -> None:
    left = counts.get(key, 0) + sign
    if left:
        counts[key] = left
    else:
        del counts[key]


def _winner(candidates: dict[Candidate, int] | None) -> int | None:
    return None if not candidates else _dscp(candidates)


def _dscp(candidates: dict[Candidate, int]) -> int:
    return max(candidates)[1]


def _v4_key(value: int) -> int:
    return value


def _changed_entries(old: tuple[Peer, ...], new: tuple[Peer, ...]) -> tuple[list[Peer], list[Peer]]:
    """The entries of ``old`` that are gone and those of ``new`` that came, matched by
    instance id between the views' common head and tail; an entry equal in both is kept."""
    old_window, new_window = differing_window(old, new)
    kept: dict[str, list[Peer]] = {}
    for peer in old_window:
        kept.setdefault(peer.instance, []).append(peer)
    came = []
    for peer in new_window:
        same = kept.get(peer.instance)
        if same and peer in same:
            same.remove(peer)
        else:
            came.append(peer)
    gone = [peer for entries in kept.values() for peer in entries]
    return gone, came


class PlanCompiler:
    """:func:`~netpersona.compiler.compile_plan`, incremental when only the peer view moved."""

    def __init__(self) -> None:
        self._last: tuple[Persona, HostFacts, Plan] | None = None
        self._resolver: PeerResolver | None = None

    def compile(self, persona: Persona, facts: HostFacts) -> CompiledPlan:
        last, resolver = self._last, self._resolver
        if (
            last is not None
            and resolver is not None
            and last[0] == persona
            and replace(last[1], peers=()) == replace(facts, peers=())
        ):
            change = resolver.update(facts.peers)
            plan = replace(last[2], peer_sets=change.after)
            self._last = (persona, facts, plan)
            return CompiledPlan(plan, change)
        # Anything but the view changed: from scratch (the resolver too, for the next change).
        self._last = self._resolver = None
        resolver = PeerResolver(persona, facts.peers)
        plan = compile_plan(persona, facts, peer_sets=resolver.sets)
        self._last, self._resolver = (persona, facts, plan), resolver
        return CompiledPlan(plan)
