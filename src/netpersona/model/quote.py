"""How a bad value is shown in an error: as the user wrote it, in JSON spelling, kept short.

Quoting must never cost more than the message it ends up in: the value may be a YAML alias
bomb (a small graph that expands to gigabytes), hold a cycle, or be an integer of millions of
digits. The encoder's output is taken lazily and cut at ``limit``.
"""

from __future__ import annotations

import json
from itertools import islice

__all__ = ["quote"]

# str() of a larger integer is slow and, past 4,300 digits, refused by CPython.
_INT_BITS_SHOWN = 256


def _default(value: object) -> object:
    return f"<{type(value).__name__}>"


def quote(value: object, limit: int = 80) -> str:
    if isinstance(value, int) and value.bit_length() > _INT_BITS_SHOWN:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    encoder = json.JSONEncoder(sort_keys=True, default=_default, check_circular=True)
    text = ""
    try:
        for chunk in islice(encoder.iterencode(value), 10_000):
            text += chunk
            if len(text) > limit:
                break
    except (ValueError, TypeError, RecursionError):
        # A cycle, a huge integer inside a container, or keys that do not sort together.
        return f"{text}..." if text else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
