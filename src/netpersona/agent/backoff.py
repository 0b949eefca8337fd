"""Capped exponential backoff with full jitter (the "Full Jitter" scheme AWS recommends), and
the gate that spaces out retries of the same failed plan.

Pure: the random source is passed in, so tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["Backoff", "RetryGate"]


@dataclass
class Backoff:
    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The next wait: uniform in [0, min(cap, base * 2**attempt)]."""
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class RetryGate:
    """When the same thing that failed may be tried again: after ``base`` seconds, doubling with
    each failure in a row up to ``cap``. Something else (another key) may be tried at once.

    Pure: the caller says what time it is.
    """

    base: float = 5.0
    cap: float = 300.0
    key: Hashable | None = None
    failures: int = 0
    retry_at: float | None = None

    def allows(self, key: Hashable, now: float) -> bool:
        return key != self.key or self.retry_at is None or now >= self.retry_at

    def failed(self, key: Hashable, now: float) -> float:
        """Record a failure of ``key``; the wait before it may be tried again."""
        if key != self.key:
            self.key, self.failures = key, 0
        delay = min(self.cap, self.base * float(2 ** min(self.failures, 32)))
        self.failures += 1
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.key, self.failures, self.retry_at = None, 0, None
