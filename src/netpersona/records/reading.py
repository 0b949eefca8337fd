"""Reading a record's JSON form: every problem found, each with its RFC 6901 pointer.

A record's ``read`` takes a :class:`Reader`, which collects :class:`FieldError` values instead
of stopping at the first; what the caller does with them depends on where the JSON came from:
an answer of the metadata service (``from_json``: :class:`MalformedAnswer`, refused whole) or a
document an operator wrote (inventory, host facts: :class:`InvalidDocument`, every field named).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self, TypeVar

from netpersona.errors import FieldError, InvalidDocument, MalformedAnswer
from netpersona.model.labels import check_label_key, check_label_value
from netpersona.model.parse import escape_pointer
from netpersona.model.quote import quote

__all__ = ["Read", "Reader", "answer", "document", "integer", "number", "text"]

T = TypeVar("T")
_MISSING = object()


class Reader:
    """Typed reads of JSON values; a bad value is recorded and read as ``None``."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, at: str, message: str) -> None:
        self.errors.append(FieldError(at, message))

    def mapping(
        self, data: object, at: str, what: str, allowed: tuple[str, ...]
    ) -> Mapping[str, Any] | None:
        """``data`` as a mapping with no key outside ``allowed``."""
        if not isinstance(data, Mapping):
            self.fail(at, f"expected a mapping ({what}), got {quote(data)}")
            return None
        for key in data:
            if key not in allowed:
                self.fail(
                    f"{at}/{escape_pointer(str(key))}",
                    f"unknown key {quote(key)} (expected one of {', '.join(allowed)})",
                )
        return data

    def value(
        self,
        data: Mapping[str, Any],
        key: str,
        at: str,
        convert: Callable[[Any], T | None],
        expected: str,
        default: object = _MISSING,
    ) -> T | None:
        """``data[key]`` converted, or ``default`` when absent (required without one).

        ``convert`` returns None (or raises ValueError/TypeError) for a value it refuses.
        """
        where = f"{at}/{escape_pointer(key)}"
        if key not in data:
            if default is _MISSING:
                self.fail(where, f"missing (expected {expected})")
                return None
            return default  # type: ignore[return-value]
        return self.convert(where, data[key], convert, expected)

    def convert(
        self, where: str, raw: object, convert: Callable[[Any], T | None], expected: str
    ) -> T | None:
        """``convert(raw)``; a value it refuses (None, ValueError, TypeError) is recorded."""
        try:
            converted = convert(raw)
        except (ValueError, TypeError):
            converted = None
        if converted is None:
            self.fail(where, f"{quote(raw)} is not {expected}")
        return converted

    def optional(
        self,
        data: Mapping[str, Any],
        key: str,
        at: str,
        convert: Callable[[Any], T | None],
        expected: str,
    ) -> T | None:
        """``data[key]`` converted; absent and ``null`` both read as None."""
        if data.get(key) is None:
            return None
        return self.value(data, key, at, convert, expected)

    def each(
        self, data: Mapping[str, Any], key: str, at: str, limit: int = 1 << 16
    ) -> list[tuple[str, object]]:
        """``data[key]`` as a list (absent: empty): each item with its pointer."""
        raw = data.get(key, [])
        where = f"{at}/{escape_pointer(key)}"
        if not isinstance(raw, list) or len(raw) > limit:
            self.fail(where, f"{quote(raw)} is not a list of at most {limit} items")
            return []
        return [(f"{where}/{index}", item) for index, item in enumerate(raw)]

    def items(
        self,
        data: Mapping[str, Any],
        key: str,
        at: str,
        convert: Callable[[Any], T | None],
        expected: str,
        limit: int = 1 << 16,
    ) -> tuple[T, ...]:
        """``data[key]`` as a list (absent: empty), each item converted."""
        out: list[T] = []
        for where, item in self.each(data, key, at, limit):
            if (converted := self.convert(where, item, convert, expected)) is not None:
                out.append(converted)
        return tuple(out)

    def labels(
        self, data: Mapping[str, Any], key: str, at: str, limit: int = 1 << 16
    ) -> tuple[tuple[str, str], ...]:
        """Instance labels, sorted by key (absent: none)."""
        raw = data.get(key, {})
        where = f"{at}/{escape_pointer(key)}"
        if not isinstance(raw, Mapping) or len(raw) > limit:
            self.fail(where, f"{quote(raw)} is not a mapping of at most {limit} labels")
            return ()
        good: list[tuple[str, str]] = []
        for name, value in raw.items():
            if problem := check_label_key(name) or check_label_value(value):
                self.fail(f"{where}/{escape_pointer(str(name))}", problem)
            else:
                good.append((name, value))
        return tuple(sorted(good))


class Read:
    """A record read from its JSON form with :meth:`read`; ``from_json`` refuses it whole.

    A subclass names what it is, for the message (``what = "peer"``).
    """

    __slots__ = ()
    what: ClassVar[str]

    @classmethod
    def read(cls, reader: Reader, data: object, at: str) -> Self | None:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: object, at: str = "") -> Self:
        """The JSON form back; :class:`~netpersona.errors.MalformedAnswer` when it is not one."""
        reader = Reader()
        return answer(reader, cls.read(reader, data, at), cls.what)


def integer(low: int, high: int) -> Callable[[Any], int | None]:
    """A converter accepting JSON integers (not booleans) in ``low..high``."""

    def convert(raw: Any) -> int | None:
        ok = isinstance(raw, int) and not isinstance(raw, bool) and low <= raw <= high
        return raw if ok else None

    return convert


def number(raw: Any) -> float | None:
    """A JSON number (not a boolean), at least zero: a time in seconds."""
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0
    return float(raw) if ok else None


def text(raw: Any) -> str | None:
    return raw if isinstance(raw, str) else None


def answer(reader: Reader, value: T | None, what: str) -> T:
    """``value``, or :class:`MalformedAnswer` naming every problem ``reader`` found."""
    if reader.errors or value is None:
        problems = "; ".join(str(e) for e in reader.errors[:8]) or "nothing to read"
        raise MalformedAnswer(f"{what} is malformed: {problems}")
    return value


def document(reader: Reader, value: T | None) -> T:
    """``value``, or :class:`InvalidDocument` with every problem ``reader`` found."""
    if reader.errors or value is None:
        raise InvalidDocument(reader.errors or [FieldError("", "nothing to read")])
    return value
