"""Token buckets (RFC 2697's single-rate idea, without colours): the per-node bandwidth cap and
the per-source datagram rate limit. Time is passed in; nothing here reads a clock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["SourceLimiter", "TokenBucket", "splitmix64"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, amount: float, now: float, *, keep: float = 0.0) -> bool:
        """Spend ``amount`` if the bucket has it and ``keep`` more; a refused take spends
        nothing."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= amount + keep:
            self.tokens -= amount
            return True
        return False


class SourceLimiter:
    """One token bucket per source, for at most ``max_sources`` sources (least recent evicted)."""

    def __init__(self, rate: float, burst: float, max_sources: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def allow(self, source: Hashable, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[source] = bucket
            if len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        return bucket.take(1.0, now)

    def __len__(self) -> int:
        return len(self._buckets)


def splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64 (Steele, Lea, Flood 2014): (next state, 64-bit output).

    The core draws its randomness from here, seeded from outside, so a node is deterministic
    given its inputs and the simulator can replay any run.
    """
    state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return state, z ^ (z >> 31)
