"""The checks every document parser shares: each records a :class:`FieldError` and goes on.

A parser walks its document with one :class:`Checker`, so that validation reports every
problem at once, each at its RFC 6901 pointer into the document as written. The persona parser
(:mod:`netpersona.model.parse`) and the policy parser (:mod:`netpersona.policy.document`) are
both written with these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, NoReturn, TypeVar

from netpersona.errors import FieldError, InvalidDocument, InvalidValue
from netpersona.model.labels import check_persona_name
from netpersona.model.quote import quote

__all__ = ["MAX_LIST", "Checker", "escape_pointer", "kind"]

T = TypeVar("T")
E = TypeVar("E", bound=Enum)
MAX_LIST = 1024  # protocols, groups, peers, values: a document is a policy, not a database


def escape_pointer(token: str) -> str:
    """One RFC 6901 reference token: ``~`` and ``/`` escaped."""
    return token.replace("~", "~0").replace("/", "~1")


def kind(value: object) -> str:
    """What a value is, in the words of a JSON document."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


class Checker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, at: str, message: str) -> None:
        self.errors.append(FieldError(at, message))

    def problem(self, at: str, problem: str | None) -> bool:
        """Record ``problem`` (from a ``check_*`` function) if there is one; True when none."""
        if problem:
            self.error(at, problem)
        return problem is None

    def fail(self) -> NoReturn:
        raise InvalidDocument(sorted(set(self.errors), key=self.errors.index))

    def unwrap(self, document: object, key: str, what: str) -> tuple[str, Mapping[Any, Any] | None]:
        """The body of the file form ``{key: body}`` or the bare body, and its pointer."""
        at, body = "", document
        if isinstance(document, Mapping) and key in document:
            self.keys(document, "", (key,))
            at, body = f"/{key}", document[key]
        return at, self.mapping(at, body, what)

    def keys(self, obj: Mapping[Any, Any], at: str, allowed: Iterable[str]) -> None:
        """Unknown keys are errors, except those starting with ``x-`` (extensions)."""
        allowed = tuple(allowed)
        for key in obj:
            if isinstance(key, str) and (key in allowed or key.startswith("x-")):
                continue
            self.error(
                f"{at}/{escape_pointer(str(key))}",
                f"unknown key {quote(key)} (expected one of {', '.join(allowed)}, "
                "or a key starting with x-)",
            )

    def required(self, obj: Mapping[Any, Any], at: str, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in obj:
                self.error(f"{at}/{key}", f"{key} is required")

    def mapping(self, at: str, value: object, what: str = "a mapping") -> Mapping[Any, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.error(at, f"expected {what}, got {kind(value)} {quote(value)}")
        return None

    def sequence(
        self, at: str, value: object, what: str = "a list", limit: int = MAX_LIST
    ) -> list[Any] | None:
        if not isinstance(value, list):
            self.error(at, f"expected {what}, got {kind(value)} {quote(value)}")
            return None
        if len(value) > limit:
            self.error(at, f"has {len(value)} entries; at most {limit} are accepted")
            return None
        return value

    def strings(self, at: str, value: object) -> list[str] | None:
        """A non-empty list of non-empty strings; None (with errors) otherwise."""
        items = self.sequence(at, value, "a non-empty list")
        if items is None:
            return None
        if not items:
            self.error(at, "expected a non-empty list, got []")
            return None
        good = []
        for index, item in enumerate(items):
            if isinstance(item, str) and item:
                good.append(item)
            else:
                self.error(f"{at}/{index}", f"{quote(item)} is not a non-empty string")
        return good if len(good) == len(items) else None

    def integer(self, at: str, value: object, low: int, high: int, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(at, f"{quote(value)} is not {what} (expected an integer {low}..{high})")
            return None
        if not low <= value <= high:
            self.error(at, f"{quote(value)} is out of range (expected an integer {low}..{high})")
            return None
        return value

    def boolean(self, at: str, value: object) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(at, f"{quote(value)} is not true or false")
        return None

    def enum(self, at: str, value: object, kind: type[E], name: str) -> E | None:
        choices = [str(m.value) for m in kind]
        if isinstance(value, str) and value in choices:
            return kind(value)
        self.error(at, f"{quote(value)} is not a {name} (expected one of {', '.join(choices)})")
        return None

    def convert(self, at: str, value: object, parse: Callable[[object], T]) -> T | None:
        """``parse(value)``; its :class:`InvalidValue` becomes an error at ``at``."""
        try:
            return parse(value)
        except InvalidValue as exc:
            self.error(at, str(exc))
            return None

    def persona_name(self, at: str, value: object) -> str | None:
        if not self.problem(at, check_persona_name(value)):
            return None
        assert isinstance(value, str)
        return value
