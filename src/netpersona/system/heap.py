"""Hand the memory that start-up used and freed back to the kernel.

A long-running process on glibc keeps the heap pages it freed: the compiler's work when
modules load from source (no ``.pyc`` beside them), the first plan's temporaries, a first large
answer. ``malloc_trim(3)`` returns the free ones; the agent calls it once, when it first has
its persona in force, and its idle RSS is what it holds, not what it once touched.
"""

from __future__ import annotations

import gc

__all__ = ["return_free_memory"]


def return_free_memory() -> None:
    """Collect garbage, then give the free heap back to the kernel (glibc only; elsewhere
    nothing more)."""
    gc.collect()
    import ctypes  # noqa: PLC0415 (only here, once per process)

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return
    trim(0)
