"""How a bad value is shown in an error: as the user wrote it, in JSON spelling, kept short."""

from __future__ import annotations

import json

__all__ = ["quote"]


def quote(value: object, limit: int = 80) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except ValueError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
