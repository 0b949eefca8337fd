"""One PostgreSQL database, reached with psycopg 3, and the transactions run on it.

Writes run ``SERIALIZABLE``, so a transaction that read a revision (``If-Match``) and then
changes the row cannot both succeed with another that did the same: PostgreSQL aborts one of
them (SQLSTATE 40001, https://www.postgresql.org/docs/current/transaction-iso.html#XACT-SERIALIZABLE)
and :meth:`Database.retrying` runs it again from its start, where it reads the new revision.
Reads run ``REPEATABLE READ READ ONLY``: one snapshot, never aborted.

One connection serialised by a lock serves the whole process, as SQLite's does; a connection
the server dropped is replaced at the next transaction. Every psycopg error is translated here,
once, into the :mod:`netpersona.errors` tree by its SQLSTATE
(https://www.postgresql.org/docs/current/errcodes-appendix.html), naming the database (its URL,
which never holds the password) and the operation.
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

from netpersona.errors import StorageFull, StoreCorrupt, StoreError, StoreUnavailable
from netpersona.store.migrations import migrate
from netpersona.store.sql.engine import Connection, Cursor, Dialect
from netpersona.store.sql.readers import ReadConnections

__all__ = ["POSTGRES", "Database", "open_database", "translate"]

R = TypeVar("R")

# pg_advisory_xact_lock keys: one for migrating, one for appending to the change sequence.
_MIGRATION_LOCK = 0x6E70_0001
_CHANGE_LOCK = 0x6E70_0002
RETRIES = 8  # attempts of a write transaction aborted for serialisation
_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
READERS = 2  # read transactions at once, each on a connection of its own (a server process)

POSTGRES = Dialect(
    "postgresql",
    {
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",  # PostgreSQL's REAL is single precision
        "blob": "BYTEA",
        "serial": "BIGSERIAL PRIMARY KEY",
    },
    change_lock=f"SELECT pg_advisory_xact_lock({_CHANGE_LOCK})",
    notify="SELECT pg_notify('netpersona_changes', ?)",
)
CHANNEL = "netpersona_changes"

_UNAVAILABLE_CLASSES = ("08", "28", "57")  # connection, authorization, operator intervention
_UNAVAILABLE = {
    "53300",  # too_many_connections
    "53000",  # insufficient_resources
    "3D000",  # invalid_catalog_name: the database does not exist
    "40001",  # serialization_failure (after the retries)
    "40P01",  # deadlock_detected (after the retries)
    "55P03",  # lock_not_available
    "25006",  # read_only_sql_transaction: a standby
}
_ADVICE: dict[type[StoreError], str] = {
    StorageFull: "; nothing was written: free space (or raise the quota) on the server and retry",
    StoreCorrupt: "; restore it from a backup",
    StoreUnavailable: "; check that the server is up, reachable, accepts this user and has "
    "connections to spare",
}


def _kind(exc: psycopg.Error) -> type[StoreError]:
    state = exc.sqlstate or ""
    if state == "53100" or "quota" in str(exc).lower():  # disk_full
        return StorageFull
    if state in ("XX001", "XX002"):  # data_corrupted, index_corrupted
        return StoreCorrupt
    if state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE:
        return StoreUnavailable
    if not state and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable  # refused, unreachable, closed: no server answer to classify
    return StoreError


def translate(exc: psycopg.Error, name: str, operation: str) -> StoreError:
    """The :class:`StoreError` for ``exc``, raised while doing ``operation`` on ``name``."""
    kind = _kind(exc)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = exc.sqlstate or type(exc).__name__
    advice = _ADVICE.get(kind, "")
    if is_serialization(exc):
        advice = f"; it conflicted with concurrent writes {RETRIES} times: retry"
    return kind(f"database {name}: {operation}: {detail} ({code}){advice}")


def is_serialization(exc: BaseException | None) -> bool:
    return isinstance(exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected)


@functools.lru_cache(maxsize=512)
def _format(sql: str) -> str:
    """``?`` placeholders in psycopg's style (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection inside one transaction, speaking ``?`` placeholders."""

    def __init__(self, connection: psycopg.Connection[DictRow]) -> None:
        self.connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if not parameters:
            return self.connection.execute(sql.encode())
        return self.connection.execute(_format(sql).encode(), parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        with self.connection.cursor() as cursor:
            cursor.executemany(_format(sql).encode(), parameters)


class Database:
    """Connections to one PostgreSQL database (one for writes, a few for reads);
    :func:`open_database` migrates it first."""

    dialect = POSTGRES

    def __init__(self, url: str, *, password: str | None = None) -> None:
        self.url = url
        self.name = url  # the URL never holds the password (netpersona.store.url refuses one)
        self.created = False
        self._password = password
        self._lock = threading.Lock()
        self._closed = False
        self.connection = self._connect()
        # Read transactions on connections of their own: a write does not wait for a read
        # of the whole fleet (netpersona.store.sql.readers).
        self._readers: ReadConnections[psycopg.Connection[DictRow]] = ReadConnections(
            self._connect, psycopg.Connection.close, READERS, _usable
        )
        self._readers.open()

    def _connect(self) -> psycopg.Connection[DictRow]:
        extra: dict[str, Any] = {} if self._password is None else {"password": self._password}
        with self.translated("connect"):
            return psycopg.connect(
                self.url,
                autocommit=True,  # transactions are begun by hand, with their isolation level
                row_factory=dict_row,
                connect_timeout=10,
                application_name="netpersona",
                **extra,
            )

    @contextmanager
    def translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise translate(exc, self.name, operation) from exc

    def write(self, operation: str) -> AbstractContextManager[Connection]:
        return self._transaction("BEGIN ISOLATION LEVEL SERIALIZABLE", operation)

    def read(self, operation: str) -> AbstractContextManager[Connection]:
        return self._read(operation)

    @contextmanager
    def _read(self, operation: str) -> Iterator[Connection]:
        with self._readers.connection() as db:
            if db is None:  # no connection of its own can be made: share the writing one
                with self._transaction(_READ, operation) as shared:
                    yield shared
                return
            with self.translated(operation):
                db.execute(_READ.encode())
                try:
                    yield PgConnection(db)
                    db.execute(b"COMMIT")
                except BaseException:
                    if not db.closed and db.info.transaction_status != TransactionStatus.IDLE:
                        with contextlib.suppress(psycopg.Error):
                            db.execute(b"ROLLBACK")
                    raise

    def migrating(self) -> AbstractContextManager[Connection]:
        # READ COMMITTED: the version is read after the lock is held, so it is the latest.
        return self._transaction("BEGIN", "migrate the schema", lock=_MIGRATION_LOCK)

    @contextmanager
    def _transaction(
        self, begin: str, operation: str, *, lock: int | None = None
    ) -> Iterator[Connection]:
        with self._lock, self.translated(operation):
            db = self._live_connection()
            db.execute(begin.encode())
            try:
                if lock is not None:
                    db.execute(f"SELECT pg_advisory_xact_lock({lock})".encode())
                yield PgConnection(db)
                db.execute(b"COMMIT")
            except BaseException:
                if not db.closed and db.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        db.execute(b"ROLLBACK")
                raise

    def _live_connection(self) -> psycopg.Connection[DictRow]:
        if self.connection.broken and not self._closed:
            self.connection = self._connect()  # the server dropped it (restart, failover)
        return self.connection

    def retrying(self, operation: Callable[[], R]) -> R:
        for attempt in range(1, RETRIES + 1):
            try:
                return operation()
            except StoreUnavailable as exc:
                if attempt == RETRIES or not is_serialization(exc.__cause__):
                    raise
            time.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311 (jitter, not a secret)
        raise AssertionError("unreachable")

    def schema_version(self, db: Connection) -> int:
        table = db.execute("SELECT to_regclass('netpersona_schema') AS t").fetchone()
        if table["t"] is None:
            return 0
        row = db.execute("SELECT version FROM netpersona_schema").fetchone()
        return 0 if row is None else int(row["version"])

    def set_schema_version(self, db: Connection, version: int) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS netpersona_schema (version BIGINT NOT NULL)")
        db.execute("DELETE FROM netpersona_schema")
        db.execute("INSERT INTO netpersona_schema (version) VALUES (?)", (version,))

    def schema_version_now(self) -> int:
        with self.read("read the schema version") as db:
            return self.schema_version(db)

    def foreign_table(self) -> str | None:
        """A table in the schema that is not netpersona's, in a database without its version."""
        with self.read("look at the schema") as db:
            if self.schema_version(db):
                return None
            row = db.execute(
                "SELECT table_name AS t FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name LIMIT 1"
            ).fetchone()
        return None if row is None else str(row["t"])

    def close(self) -> None:
        self._readers.close()
        with self._lock:
            self._closed = True
            self.connection.close()


def _usable(db: psycopg.Connection[DictRow]) -> bool:
    return not db.broken and not db.closed


def open_database(url: str, *, password: str | None = None, create: bool = True) -> Database:
    """Connect to the database at ``url`` and bring its schema up to date (making it when it
    is empty and ``create``); refuse one that holds somebody else's tables, or a newer
    netpersona's schema."""
    database = Database(url, password=password)
    try:
        foreign = database.foreign_table()
        if foreign is not None:
            raise StoreError(
                f"database {database.name}: is not netpersona's (it has table {foreign!r} and "
                "no netpersona schema version); --db must name a netpersona database or an "
                "empty one"
            )
        if not create and database.schema_version_now() == 0:
            raise StoreUnavailable(
                f"database {database.name} has no netpersona schema: `netpersona serve` makes "
                "one (with its admin token) on first start"
            )
        database.created = migrate(database) == 0
    except BaseException:
        database.close()
        raise
    return database
