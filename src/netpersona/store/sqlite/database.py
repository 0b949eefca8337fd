"""One SQLite file in WAL mode with ``synchronous=FULL``, and the transactions run on it.

WAL with FULL syncs the log on every commit, so a write the service has acknowledged survives
``kill -9`` and power loss (https://www.sqlite.org/wal.html, "synchronous"). One connection
serialised by a lock writes for the whole process; read transactions, once the file is in WAL
mode, each take a connection of a small pool (:mod:`netpersona.store.sql.readers`), so a
write does not wait for a read of the whole fleet. Other processes (``netpersona token
create``) may write the same file at the same time, which SQLite's own locking and
``busy_timeout`` handle.

Every ``sqlite3`` error is translated here, once, into the :mod:`netpersona.errors` tree
(https://www.sqlite.org/rescode.html): the message names the database and the operation.

Opening refuses, rather than repairs, a database it cannot trust: a file that is not a SQLite
database (empty, truncated below its header, a directory), a write-ahead log whose header does
not verify, a schema from a newer netpersona, and a file that fails ``PRAGMA quick_check``. A
new database is built under a temporary name and linked into place once its schema is in, so
an interrupted first start never leaves an empty file behind that the next start must refuse.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from netpersona.errors import (
    StorageFull,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)
from netpersona.store.migrations import check_version, migrate
from netpersona.store.sql.engine import Connection, Dialect
from netpersona.store.sql.readers import ReadConnections
from netpersona.store.sqlite.files import (
    PRIVATE_FILE,
    check_database_file,
    check_wal_file,
    companion_files,
    make_private,
)

__all__ = ["SQLITE", "Database", "check_schema_and_integrity", "open_database", "translate"]

R = TypeVar("R")

SQLITE = Dialect(
    "sqlite",
    {
        "int": "INTEGER",
        "real": "REAL",
        "blob": "BLOB",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
)

_KINDS: dict[int, type[StoreError]] = {
    sqlite3.SQLITE_FULL: StorageFull,
    sqlite3.SQLITE_CORRUPT: StoreCorrupt,
    sqlite3.SQLITE_NOTADB: StoreCorrupt,
    sqlite3.SQLITE_CANTOPEN: StoreUnavailable,
    sqlite3.SQLITE_PERM: StoreUnavailable,
    sqlite3.SQLITE_READONLY: StoreUnavailable,
    sqlite3.SQLITE_BUSY: StoreUnavailable,  # only after busy_timeout has run out
    sqlite3.SQLITE_LOCKED: StoreUnavailable,
}
_ADVICE: dict[type[StoreError], str] = {
    StorageFull: "; nothing was written: free space on its file system and retry",
    StoreCorrupt: "; restore it from a backup",
    StoreUnavailable: "; check that the file is there, writable, and not held by another process",
}
# Read transactions at once (each on its own connection; more wait for one).
READERS = 4
# Per-connection settings only: nothing here writes to the file, which is checked first.
_PRAGMAS = (
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


def translate(exc: sqlite3.Error, path: str, operation: str) -> StoreError:
    """The :class:`StoreError` for ``exc``, raised while doing ``operation`` on ``path``."""
    code = getattr(exc, "sqlite_errorcode", None)
    kind = StoreError if code is None else _KINDS.get(code & 0xFF, StoreError)
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    return kind(f"database {path}: {operation}: {exc} ({name}){_ADVICE.get(kind, '')}")


class Database:
    """An open database file; :func:`open_database` opens one only after checking it."""

    dialect = SQLITE

    def __init__(self, path: str | Path, *, name: str | Path | None = None) -> None:
        self.path = str(path)
        self.name = str(name or path)  # what messages call it (a new one is built aside)
        self.created = False  # whether this open made the file
        self.check_seconds: float | None = None  # how long the start-up check took
        self._lock = threading.Lock()
        self.connection = self._connect()
        self._readers: ReadConnections[sqlite3.Connection] | None = None  # once in WAL mode

    def _connect(self) -> sqlite3.Connection:
        with self.translated("open"):
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            return _configured(db)

    @contextmanager
    def translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise translate(exc, self.name, operation) from exc

    def write(self, operation: str) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        return self._transaction("BEGIN IMMEDIATE", operation)

    def read(self, operation: str) -> AbstractContextManager[sqlite3.Connection]:
        """One read transaction: every query in the block sees the same snapshot."""
        if self._readers is None:
            return self._transaction("BEGIN", operation)
        return self._read(self._readers, operation)

    @contextmanager
    def _read(
        self, readers: ReadConnections[sqlite3.Connection], operation: str
    ) -> Iterator[sqlite3.Connection]:
        with readers.connection() as db:
            if db is None:  # no connection of its own can be opened: share the writing one
                with self._transaction("BEGIN", operation) as shared:
                    yield shared
                return
            with self.translated(operation):
                db.execute("BEGIN")
                try:
                    yield db
                finally:
                    if db.in_transaction:  # a read: nothing to keep
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")

    def _connect_reader(self) -> sqlite3.Connection:
        # mode=rw: never make a file that is not there.
        uri = Path(self.path).resolve().as_uri() + "?mode=rw"
        with self.translated("open for reading"):
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            return _configured(db)

    @contextmanager
    def _transaction(self, begin: str, operation: str) -> Iterator[sqlite3.Connection]:
        db = self.connection
        with self._lock, self.translated(operation):
            db.execute(begin)
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (SQLITE_FULL can, for one).
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def retrying(self, operation: Callable[[], R]) -> R:
        return operation()  # one writer at a time: a transaction is never aborted for another

    def migrating(self) -> AbstractContextManager[Connection]:
        return self.write("migrate the schema")

    def schema_version(self, db: Connection) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, db: Connection, version: int) -> None:
        db.execute(f"PRAGMA user_version={int(version)}")

    def check(self) -> None:
        """Refuse a database this netpersona cannot trust to read or to write."""
        with self.read("check the schema and integrity (quick_check)") as db:
            self.check_seconds = check_schema_and_integrity(db, self.name)

    def migrate(self) -> None:
        """Use WAL (a setting kept in the file) and bring the schema up to date."""
        with self.translated("switch to WAL mode"):
            mode = self.connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        migrate(self)
        if str(mode).lower() == "wal" and self._readers is None:
            self._readers = ReadConnections(self._connect_reader, sqlite3.Connection.close, READERS)

    def close(self) -> None:
        if self._readers is not None:
            self._readers.close()
        with self._lock:
            self.connection.close()


def check_schema_and_integrity(db: sqlite3.Connection, path: str) -> float:
    """Raise unless ``db`` is a netpersona schema this version knows and passes
    ``PRAGMA quick_check``; returns the seconds the check took."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    check_version(version, path)
    started = time.monotonic()
    rows = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)")]
    # One line per problem (a row may hold several), without the "*** in database main ***".
    problems = [line for r in rows for line in r.splitlines() if not line.startswith("***")]
    seconds = time.monotonic() - started
    if problems != ["ok"]:
        raise StoreCorrupt(
            f"database {path}: fails its integrity check ({'; '.join(problems)}); restore it "
            "from a backup"
        )
    foreign = db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchone()
    if version == 0 and foreign is not None:
        raise StoreError(
            f"database {path}: is a SQLite database, but not netpersona's (it has table "
            f"{foreign[0]!r} and no netpersona schema version); --db must name a netpersona "
            "database or a new file"
        )
    return seconds


def open_database(path: str | Path) -> Database:
    """Open (or make) the database at ``path``, refusing one that cannot be trusted."""
    file = Path(path)
    created = not check_database_file(file) and _build(file)
    if not created:
        check_wal_file(file)
    database = Database(file)
    database.created = created
    make_private(file)
    try:
        if not created:
            database.check()
        database.migrate()
    except BaseException:
        database.close()
        raise
    return database


def _build(path: Path) -> bool:
    """Make a new database at ``path``, complete with its schema, or nothing at all.

    Returns False when another process made one there first (it is then opened as it is).
    """
    building = path.with_name(f".{path.name}.new-{os.getpid()}")
    building.unlink(missing_ok=True)  # left by a crash of an earlier process with this pid
    try:
        os.close(os.open(building, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except OSError as exc:
        raise _os_error(path, "create", exc) from None
    try:
        new = Database(building, name=path)
        try:
            new.migrate()
            # Everything into the main file now, where a failure is still seen: only that file
            # is linked into place.
            with new.translated("create"):
                new.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            new.close()
        return _link(building, path)
    finally:
        for file in (building, *companion_files(building)):
            file.unlink(missing_ok=True)


def _link(building: Path, path: Path) -> bool:
    try:
        os.link(building, path)  # unlike rename, never replaces a database made meanwhile
    except FileExistsError:
        return False
    except OSError as exc:
        raise _os_error(path, "create", exc) from None
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return True


def _os_error(path: Path, operation: str, exc: OSError) -> StoreError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    kind: type[StoreError] = StorageFull if full else StoreUnavailable
    return kind(f"database {path}: {operation}: {exc.strerror}{_ADVICE[kind]}")


def _configured(db: sqlite3.Connection) -> sqlite3.Connection:
    """``db`` with rows by name and the pragmas every connection runs with; closed if one
    fails."""
    try:
        db.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            db.execute(pragma)
    except BaseException:
        db.close()
        raise
    return db
