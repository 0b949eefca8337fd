"""A document as data is JSON, within its limits, whoever built it (the loader, json.loads,
a caller's dict).

:func:`check_tree` walks the document once, each shared container once (a graph built by YAML
aliases or by hand is measured as if expanded, without expanding it), and finds what a strict
JSON encoder would refuse: NaN and infinities, lone surrogates, keys that are not strings,
integers outside 64 bits, values of other types. Size and depth are limits
(:mod:`netpersona.model.limits`); past one, nothing more is looked at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.checks import escape_pointer, kind
from netpersona.model.limits import INT_MAX, INT_MIN, DocumentLimits
from netpersona.model.quote import quote

__all__ = ["JSON", "canonical_json", "check_canonical_size", "check_tree", "with_json_problems"]

# A JSON object as json.loads returns it: the one spelling of that type in the tree.
JSON = dict[str, Any]


class _Stop(Exception):
    pass


def _unicode_problem(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not Unicode text"
    return None


def _scalar_problem(value: object) -> str | None:
    kind_of = type(value)
    if kind_of is str:
        return _unicode_problem(value)  # type: ignore[arg-type]
    if value is None or kind_of is bool:
        return None
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return None
        return f"{quote(value)} is outside the signed 64-bit integers a document may hold"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{quote(value)} is not a JSON number"
    if isinstance(value, str):
        return _unicode_problem(value)
    return f"{kind(value)} is not a JSON value (quote it as a string)"


_SCALARS = (str, int, float, bool, type(None))


@dataclass
class _Walk:
    """Pointers are built only for what is reported: the path is a stack of tokens."""

    limits: DocumentLimits
    done: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # nodes, height, chars
    active: set[int] = field(default_factory=set)
    path: list[object] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    fatal: list[FieldError] = field(default_factory=list)

    def pointer(self) -> str:
        return "".join(f"/{escape_pointer(str(token))}" for token in self.path)

    def stop(self, message: str, here: bool = True) -> _Stop:
        self.fatal.append(FieldError(self.pointer() if here else "", message))
        return _Stop()

    def value(self, value: object, depth: int) -> tuple[int, int, int]:
        if type(value) in _SCALARS or not isinstance(value, Mapping | list | tuple):
            problem = _scalar_problem(value)
            if problem:
                self.errors.append(FieldError(self.pointer(), problem))
            return 1, 0, len(value) if isinstance(value, str) else 1
        known = self.done.get(id(value))
        if known is not None:
            if depth + known[1] > self.limits.max_depth:
                raise self.stop(self.limits.too_deep())
            return known
        if id(value) in self.active:
            raise self.stop("holds itself (a cycle is not JSON)")
        if depth + 1 > self.limits.max_depth:
            raise self.stop(self.limits.too_deep())
        self.active.add(id(value))
        size = self.container(value, depth)
        self.active.discard(id(value))
        self.done[id(value)] = size
        return size

    def container(
        self,
        value: Mapping[object, object] | list[object] | tuple[object, ...],
        depth: int,
    ) -> tuple[int, int, int]:
        nodes, height, chars = 1, 1, 0
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for token, child in items:
            self.path.append(token)
            if isinstance(value, Mapping):
                self.key(token)
            more, deep, text = self.value(child, depth + 1)
            self.path.pop()
            nodes, height, chars = nodes + more, max(height, deep + 1), chars + text
            if nodes > self.limits.max_nodes:
                raise self.stop(self.limits.too_many(), here=False)
            if chars > self.limits.max_canonical_bytes:
                raise self.stop(self.limits.too_large_canonical(), here=False)
        return nodes, height, chars

    def key(self, key: object) -> None:
        if not isinstance(key, str):
            self.errors.append(FieldError(self.pointer(), f"key {quote(key)} is not a string"))
        elif problem := _unicode_problem(key):
            self.errors.append(FieldError(self.pointer(), f"the key {problem}"))


def check_tree(document: object, limits: DocumentLimits) -> list[FieldError]:
    """What in ``document`` is not strict JSON, each at its pointer.

    Raises :class:`InvalidDocument` at once when the document is past a limit (too deep, too
    many values, too large) or holds itself: nothing else in it is then worth reading.
    """
    walk = _Walk(limits)
    try:
        walk.value(document, 0)
    except _Stop:
        raise InvalidDocument(walk.fatal) from None
    return walk.errors


def canonical_json(value: object) -> str:
    """The one JSON spelling of a document: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_plain)


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{kind(value)} is not a JSON value")


def check_canonical_size(value: object, at: str, limits: DocumentLimits) -> FieldError | None:
    """An error when ``value`` (already checked by :func:`check_tree`) is past its size."""
    size = len(canonical_json(value))
    if size > limits.max_canonical_bytes:
        return FieldError(at, limits.too_large_canonical(size))
    return None


def with_json_problems(
    fields: list[FieldError],
    not_json: list[FieldError],
    body: object,
    at: str,
    limits: DocumentLimits,
) -> list[FieldError]:
    """A parser's errors and :func:`check_tree`'s, each problem once (where a field's own check
    spoke it says it better); when there are none, the size of ``body`` as canonical JSON."""
    said = {e.pointer for e in fields}
    errors = fields + [e for e in not_json if e.pointer not in said]
    if not errors:
        too_large = check_canonical_size(body, at, limits)
        errors += [too_large] if too_large else []
    return errors
