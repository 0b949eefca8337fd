"""Pages of a listing and the opaque cursors that continue them, for every backend.

A cursor is the sort key of the last row a page looked at, base64-encoded so clients treat it
as opaque; a row skipped as unreadable still moves the cursor past it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TypeVar

from netpersona.errors import FieldError, InvalidDocument
from netpersona.store.base import Page

__all__ = ["decode_cursor", "encode_cursor", "int_cursor", "page_of"]

R = TypeVar("R")
T = TypeVar("T")


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidDocument([FieldError("/cursor", f"{cursor!r} is not a cursor")]) from None


def int_cursor(cursor: str | None) -> int | None:
    raw = decode_cursor(cursor)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidDocument([FieldError("/cursor", f"{cursor!r} is not a cursor")])
    return int(raw)


def page_of(
    rows: Sequence[R],
    limit: int,
    decode: Callable[[R], T | None],
    sort_key: Callable[[R], object],
) -> Page[T]:
    """The page for ``rows`` (``limit`` + 1 were asked for, to know whether more follow)."""
    kept = rows[:limit]
    items = tuple(item for item in map(decode, kept) if item is not None)
    more = len(rows) > limit and kept
    return Page(items, encode_cursor(str(sort_key(kept[-1]))) if more else None)
