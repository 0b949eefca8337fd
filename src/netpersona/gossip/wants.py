"""Certificates a node has heard of but not yet received, and whom to ask for each.

A digest says that its sender holds a certificate newer than ours; the node asks that sender
(WANT). The answer may be lost, so each want remembers up to :data:`MAX_OFFERS` peers that
offered it and is asked again of the next one every ``retry`` seconds, :data:`MAX_TRIES` times
at most (anti-entropy brings it later if every ask fails). Pure: time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

__all__ = ["MAX_OFFERS", "MAX_TRIES", "Wants"]

IPAddress = IPv4Address | IPv6Address

MAX_OFFERS = 4
MAX_TRIES = 16


@dataclass(slots=True)
class _Want:
    seq: int
    due: float
    offers: list[IPAddress]
    tries: int = 0


class Wants:
    """At most ``limit`` wanted certificates, by instance key."""

    def __init__(self, *, limit: int, retry: float) -> None:
        self.limit = limit
        self.retry = retry
        self._wants: dict[int, _Want] = {}

    def __len__(self) -> int:
        return len(self._wants)

    def __contains__(self, key: int) -> bool:
        return key in self._wants

    def offered(self, key: int, seq: int, source: IPAddress, now: float) -> bool:
        """``source`` holds ``seq`` of ``key``; False if the table is full (nothing recorded)."""
        want = self._wants.get(key)
        if want is None:
            if len(self._wants) >= self.limit:
                return False
            self._wants[key] = _Want(seq, now, [source])
            return True
        if source not in want.offers and len(want.offers) < MAX_OFFERS:
            want.offers.append(source)
        want.seq = max(want.seq, seq)
        return True

    def ask(self, key: int, now: float) -> IPAddress | None:
        """Whom to ask for ``key`` now (counting the ask), or None if it is not due."""
        want = self._wants.get(key)
        if want is None or now < want.due:
            return None
        target = want.offers[want.tries % len(want.offers)]
        want.tries += 1
        want.due = now + self.retry
        return target

    def due(self, now: float) -> tuple[dict[IPAddress, list[int]], int]:
        """Every ask due now, grouped by whom to ask, and how many wants were given up."""
        by_target: dict[IPAddress, list[int]] = {}
        given_up = 0
        for key, want in list(self._wants.items()):
            if now < want.due:
                continue
            if want.tries >= MAX_TRIES:
                del self._wants[key]
                given_up += 1
                continue
            target = self.ask(key, now)
            if target is not None:
                by_target.setdefault(target, []).append(key)
        return by_target, given_up

    def discard(self, key: int) -> None:
        self._wants.pop(key, None)
