"""Holding off Python's cyclic garbage collector around a burst of allocation that makes no
reference cycles (a fleet decided, a change published to thousands of watchers, a large JSON
answer decoded). Each such burst would start collections whose pass over the oldest
generation walks every object the process holds, for nothing: refcounting still frees
everything as usual meanwhile, and the collector runs again once the burst is over."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector off inside the block, unless it was off already (the caller's choice,
    or an enclosing pause), which is then left as it is."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
