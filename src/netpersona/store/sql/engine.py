"""What the aggregates' SQL needs from a database engine, and the little that differs by engine.

The aggregates write one SQL for every engine: portable statements (``INSERT ... ON CONFLICT
... DO UPDATE`` runs on SQLite >= 3.24 and PostgreSQL; ``RETURNING`` on SQLite >= 3.35) with
``?`` placeholders, which an engine converts to its driver's style in one place. Column types
in the migrations are named by :class:`Dialect` (``{real}``, ``{serial}``, ...), since SQLite's
``REAL`` is PostgreSQL's single precision and ``BLOB`` is ``BYTEA`` there.

An :class:`Engine` opens transactions (translating its driver's errors into the
:mod:`netpersona.errors` tree as they leave), keeps the schema version, and retries a write
transaction its database aborted for serialisation (:func:`retried`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["Connection", "Cursor", "Dialect", "Engine", "Row", "from_row", "retried"]

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D", bound="DataclassInstance")

# A row read back: columns by name (``row["id"]``), and ``dict(row)``; sqlite3.Row and
# psycopg's dict rows both are.
Row = Any


def from_row(cls: type[D], row: Row, **convert: Callable[[Any], object]) -> D:
    """The record ``cls`` whose every field is the row's column of that name, passed through
    ``convert[name]`` where the column holds it in another form (JSON text, an enum's value)."""
    values = {f.name: row[f.name] for f in fields(cls) if f.init}
    return cls(**{k: convert[k](v) if k in convert else v for k, v in values.items()})


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside one transaction, speaking ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between engines in the SQL itself."""

    name: str
    types: Mapping[str, str]  # migration type names -> this engine's column types
    # Run in a write transaction just before a change is appended (then held to its commit),
    # so change numbers are committed in the order they are given out; None: writers are
    # already one at a time.
    change_lock: str | None = None
    # Run with the new change's number as its one parameter, in the same transaction.
    notify: str | None = None

    def render(self, script: str) -> str:
        """A migration script with this engine's column types."""
        return script.format_map(self.types)


class Engine(Protocol):
    """One database the aggregates' SQL runs on."""

    dialect: Dialect
    name: str  # what messages call the database (never holds a password)
    created: bool  # whether opening it made the schema

    def write(self, operation: str) -> AbstractContextManager[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        ...

    def read(self, operation: str) -> AbstractContextManager[Connection]:
        """One read transaction: every query in the block sees the same snapshot."""
        ...

    def retrying(self, operation: Callable[[], R]) -> R:
        """``operation()``, run again (a bounded number of times) while its write transaction
        is aborted by the database for serialisation; then its StoreUnavailable is raised."""
        ...

    def schema_version(self, db: Connection) -> int:
        """The schema version the database is at (0: none), read inside ``db``'s transaction."""
        ...

    def close(self) -> None: ...


class HasEngine(Protocol):
    _database: Engine


S = TypeVar("S", bound=HasEngine)


def retried(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Mark a store method whose write transaction may be run again from its start."""

    @functools.wraps(method)
    def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._database.retrying(lambda: method(self, *args, **kwargs))

    return run
