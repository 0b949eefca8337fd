"""What changes between two peer sets, element by element (spec section 7).

A :class:`PeerDelta` is what an in-place peer update sends to the kernel and records in the
peer journal: per :class:`~netpersona.compiler.plan.PeerSets` field, the keys to delete and
the elements to add. :func:`peer_delta` finds it between two sets whole; the incremental
compiler (:mod:`.incremental`) builds it from the peers that changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netpersona.compiler.plan import PeerSets

__all__ = ["MAP_FIELDS", "PeerDelta", "common_prefix", "differing_window", "peer_delta"]

# PeerSets field -> whether it fills a map (address : DSCP) rather than a set.
MAP_FIELDS: dict[str, bool] = {
    "addrs_v4": False,
    "addrs_v6": False,
    "dscp_v4": True,
    "dscp_v6": True,
}


@dataclass(frozen=True, slots=True)
class PeerDelta:
    """What changes between two peer sets, per PeerSets field: the keys to delete (gone, or a
    map value that changes) and the elements to add (an address, or ``(address, dscp)``)."""

    deleted: Mapping[str, tuple[str, ...]]
    added: Mapping[str, tuple[Any, ...]]

    @property
    def empty(self) -> bool:
        return not any(self.deleted.values()) and not any(self.added.values())

    @property
    def counts(self) -> tuple[int, int]:
        """(elements added, elements deleted)."""
        return sum(map(len, self.added.values())), sum(map(len, self.deleted.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            name: {
                "delete": list(self.deleted.get(name, ())),
                "add": [list(e) if isinstance(e, tuple) else e for e in self.added.get(name, ())],
            }
            for name in PeerSets.__dataclass_fields__
            if self.deleted.get(name) or self.added.get(name)
        }


# Chunk of the common-prefix search: compared a chunk at a time in C, then element by element.
_CHUNK = 1024


def common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading elements ``a`` and ``b`` share (also the agent's, for two peers
    answers)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i : i + _CHUNK] == b[i : i + _CHUNK]:
        i += _CHUNK
    i = min(i, n)
    while i < n and a[i] == b[i]:
        i += 1
    return i


def differing_window(
    a: tuple[Any, ...], b: tuple[Any, ...]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The parts of ``a`` and ``b`` between their common head and their common tail. Both are
    in the compiler's order, so one peer joining or leaving leaves a window of one element,
    and the set arithmetic below costs the change, not the 100k elements around it."""
    head = common_prefix(a, b)
    a_rest, b_rest = a[head:], b[head:]
    tail = common_prefix(a_rest[::-1], b_rest[::-1])
    return a_rest[: len(a_rest) - tail], b_rest[: len(b_rest) - tail]


def peer_delta(old: PeerSets, new: PeerSets) -> PeerDelta:
    """The delta turning ``old``'s elements into ``new``'s."""
    deleted: dict[str, tuple[str, ...]] = {}
    added: dict[str, tuple[Any, ...]] = {}
    for name, is_map in MAP_FIELDS.items():
        before, after = differing_window(getattr(old, name), getattr(new, name))
        if not before and not after:
            continue
        if is_map:
            was, now = dict(before), dict(after)
            deleted[name] = tuple(sorted(k for k, v in was.items() if now.get(k) != v))
            added[name] = tuple(sorted((k, v) for k, v in now.items() if was.get(k) != v))
        else:
            was_set, now_set = set(before), set(after)
            deleted[name] = tuple(sorted(was_set - now_set))
            added[name] = tuple(sorted(now_set - was_set))
    return PeerDelta(deleted, added)
