"""Strict JSON at the HTTP edge: what the service reads and what it stores.

A request body is refused (422, with an RFC 6901 pointer to the value) before it reaches a
handler when it nests deeper than :data:`MAX_DEPTH` (checked on the raw bytes, so the parser
never recurses that far), holds ``NaN``/``Infinity`` or a number too large for a float, an
integer outside 64 bits, or a string that is not Unicode text (a lone surrogate such as
``"\\udc80"``). Every document the service stores goes through :func:`canonical_json`, which
applies the same rules, so nothing is committed that cannot be read back and served as JSON.

Integers in paths, queries and headers go through :func:`ascii_int`: ASCII digits only (Python's
``int`` also accepts ``"²"``-like digits and refuses more than 4,300 of them with a
``ValueError``), within a stated range.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from netpersona.errors import FieldError, InvalidDocument, NetpersonaError
from netpersona.model.parse import escape_pointer

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "ascii_int",
    "canonical_json",
    "parse_json",
    "shown",
]

MAX_DEPTH = 32
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_INT_DIGITS = 19  # len(str(INT64_MAX))

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class _Refused:
    """A value the decoder met but will not accept; the walk reports it with its pointer."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def shown(text: str, limit: int = 40) -> str:
    """``repr`` of a value for a message, cut short: an error never echoes 5,000 digits."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _depth_problem(raw: bytes) -> str | None:
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b"", raw)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
    return None


def _int(text: str) -> int | _Refused:
    digits = text.lstrip("-")
    if len(digits) > _INT_DIGITS:
        return _Refused(text)
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else _Refused(text)


def _problems(value: Any, at: str, out: list[FieldError]) -> None:
    if isinstance(value, str):
        if not _is_text(value):
            out.append(FieldError(at, f"{value!r} is not Unicode text (a lone surrogate)"))
    elif isinstance(value, _Refused):
        out.append(
            FieldError(
                at,
                f"{shown(value.text)} is out of range (expected a finite number; "
                f"integers {INT64_MIN}..{INT64_MAX})",
            )
        )
    elif isinstance(value, float) and not math.isfinite(value):
        out.append(FieldError(at, f"{value!r} is not a finite number"))
    elif isinstance(value, dict):
        for key, item in value.items():
            pointer = f"{at}/{escape_pointer(key)}"
            if not _is_text(key):
                out.append(FieldError(pointer, f"the key {key!r} is not Unicode text"))
            _problems(item, pointer, out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _problems(item, f"{at}/{index}", out)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any, at: str = "") -> None:
    problems: list[FieldError] = []
    _problems(value, at, problems)
    if problems:
        raise InvalidDocument(problems[:20])


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or :class:`InvalidDocument` naming where and why it is not."""
    problem = _depth_problem(raw)
    if problem:
        raise InvalidDocument([FieldError("", f"the body is {problem}")])
    try:
        document = json.loads(raw, parse_int=_int, parse_constant=_Refused)
    except (ValueError, RecursionError) as exc:
        raise InvalidDocument([FieldError("", f"the body is not JSON: {exc}")]) from None
    _check(document)
    return document


def canonical_json(document: Any, at: str = "") -> str:
    """``document`` as the one text the store keeps: sorted keys, no spaces, strict JSON."""
    _check(document, at)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)


def ascii_int(
    text: str,
    name: str,
    low: int,
    high: int,
    error: Callable[[str], NetpersonaError],
    what: str = "a number",
) -> int:
    """``text`` as an integer in ``low..high``; else ``error`` naming ``name`` and the value."""
    stripped = text.strip()
    if (
        stripped.isascii()
        and stripped.isdigit()
        and len(stripped) <= _INT_DIGITS
        and low <= int(stripped) <= high
    ):
        return int(stripped)
    raise error(f"{name}: {shown(text)} is not {what} {low}..{high}")
