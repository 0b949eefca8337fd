"""Rows that cannot be read back: reported by table and key, counted, and skipped.

One malformed row (bad JSON in a document column, a label that no longer validates, an unknown
enum value) must not take every read with it: listings and the fleet view skip it, a read of
that one record raises :class:`~netpersona.errors.StoreCorrupt` naming it, and the count of
such rows is there for the service to expose. The count is of rows known to be unreadable
now: a row read successfully later (replaced, or repaired by hand) leaves it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

from netpersona.errors import StoreCorrupt

__all__ = ["DECODE_ERRORS", "RowReader"]

R = TypeVar("R")
T = TypeVar("T")

log = structlog.get_logger("netpersona.store")

# What decoding a stored value raises when it is not what was written: json and Enum raise
# ValueError; a value of the wrong JSON type fails with one of the others.
DECODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


class RowReader:
    def __init__(self, database: str) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._bad: dict[tuple[str, str], str] = {}

    def decode(self, table: str, key: str, row: R, build: Callable[[R], T]) -> T | None:
        """``build(row)``, or None (reported once, and counted) when the row is malformed."""
        try:
            value = build(row)
        except DECODE_ERRORS as exc:
            self._report(table, key, exc)
            return None
        if self._bad:
            with self._lock:
                self._bad.pop((table, key), None)
        return value

    def one(self, table: str, key: str, row: R, build: Callable[[R], T]) -> T:
        """``build(row)`` for a read of that one record: a malformed row is an error."""
        value = self.decode(table, key, row, build)
        if value is None:
            raise StoreCorrupt(
                f"database {self._database}: table {table}, key {key!r}: the row cannot be "
                f"read ({self._bad.get((table, key), 'malformed')}); replace or delete it"
            )
        return value

    def forget(self, table: str, key: str) -> None:
        """The row is gone (deleted): it is no longer one that cannot be read."""
        with self._lock:
            self._bad.pop((table, key), None)

    def skipped(self) -> Mapping[str, int]:
        """How many rows of each table are known to be unreadable."""
        with self._lock:
            counts: dict[str, int] = {}
            for table, _ in self._bad:
                counts[table] = counts.get(table, 0) + 1
        return counts

    def _report(self, table: str, key: str, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        with self._lock:
            known = self._bad.get((table, key)) == reason
            self._bad[(table, key)] = reason
        if not known:  # once per row, not on every read of the fleet
            log.warning(
                "store row skipped", database=self._database, table=table, key=key, error=reason
            )
