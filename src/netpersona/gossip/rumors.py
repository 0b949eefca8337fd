"""Rumours: news a node spreads as digests, each until it has gone out a set number of times.

memberlist's rule: a rumour is sent ``retransmit_mult * ceil(log10(n + 1))`` times in all (20 at
10,000 nodes with the default 4), the least sent first, to ``fanout`` random peers a round.
Pure bookkeeping; the node picks the peers and sends.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rumors"]


@dataclass(slots=True)
class _Rumor:
    seq: int
    transmits: int = 0


class Rumors:
    """At most ``limit`` rumours, by instance key."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._rumors: dict[int, _Rumor] = {}

    def __len__(self) -> int:
        return len(self._rumors)

    def add(self, key: int, seq: int) -> None:
        """News of ``seq`` for ``key`` (replacing older news of it); dropped when full."""
        if key in self._rumors or len(self._rumors) < self.limit:
            self._rumors[key] = _Rumor(seq)

    def discard(self, key: int) -> None:
        self._rumors.pop(key, None)

    def batch(self, size: int) -> tuple[tuple[int, int], ...]:
        """Up to ``size`` (key, seq) entries, the least sent first."""
        ranked = sorted(self._rumors.items(), key=lambda kv: kv[1].transmits)
        return tuple((key, rumor.seq) for key, rumor in ranked[:size])

    def sent(self, entries: tuple[tuple[int, int], ...], fleet: int, mult: int) -> None:
        """``entries`` went out once more; those sent ``mult * ceil(log10(fleet + 1))`` times
        are done."""
        done = mult * len(str(fleet + 1))
        for key, _ in entries:
            rumor = self._rumors.get(key)
            if rumor is not None:
                rumor.transmits += 1
                if rumor.transmits >= done:
                    del self._rumors[key]
