"""The schema, as numbered migrations, and the one runner that applies them on every engine.

Migration N (1-based) moves a database from schema version N-1 to N; a database is brought up
to date on open, each step in its own transaction, one migrating process at a time (SQLite:
the write lock; PostgreSQL: an advisory lock). Column types are written as ``{real}``,
``{int}``, ``{serial}`` and ``{blob}`` and spelt by the engine's
:class:`~netpersona.store.sql.engine.Dialect` (on SQLite as they always were: ``REAL``,
``INTEGER``, ``INTEGER PRIMARY KEY AUTOINCREMENT``, ``BLOB``). The version is kept where each
engine keeps such things (SQLite: ``PRAGMA user_version``; PostgreSQL: a one-row table).
Append, never edit: a released migration has already run somewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from netpersona.errors import SchemaTooNew
from netpersona.store.sql.engine import Connection, Dialect

__all__ = ["MIGRATIONS", "Migratable", "check_version", "migrate", "statements"]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value {blob} NOT NULL);
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        addresses TEXT NOT NULL,
        interfaces TEXT NOT NULL,
        labels TEXT NOT NULL,
        pin TEXT,
        revision {int} NOT NULL,
        created_at {real} NOT NULL,
        updated_at {real} NOT NULL
    );
    CREATE TABLE instance_addresses (
        address TEXT PRIMARY KEY,
        instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE
    );
    CREATE TABLE personas (
        name TEXT PRIMARY KEY,
        current {int} NOT NULL,
        deleted {int} NOT NULL DEFAULT 0
    );
    CREATE TABLE persona_versions (
        name TEXT NOT NULL,
        version {int} NOT NULL,
        document TEXT NOT NULL,
        created_at {real} NOT NULL,
        created_by TEXT NOT NULL,
        restored_from {int},
        PRIMARY KEY (name, version)
    );
    CREATE TABLE context (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        revision {int} NOT NULL,
        updated_at {real} NOT NULL
    );
    CREATE TABLE audit (
        seq {serial},
        at {real} NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT
    );
    CREATE INDEX audit_target ON audit (target, seq);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at {real} NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE status (
        instance_id TEXT PRIMARY KEY,
        persona TEXT,
        version {int},
        result TEXT NOT NULL,
        message TEXT NOT NULL,
        drops TEXT NOT NULL,
        reported_at {real} NOT NULL
    );
    """,
    """
    CREATE TABLE policy_versions (
        version {int} PRIMARY KEY,
        document TEXT NOT NULL,
        created_at {real} NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE policy (
        id {int} PRIMARY KEY CHECK (id = 1),
        current {int} NOT NULL,
        deleted {int} NOT NULL DEFAULT 0
    );
    """,
    """
    CREATE TABLE certificates (
        instance_id TEXT PRIMARY KEY,
        seq {int} NOT NULL,
        summary TEXT NOT NULL,
        token TEXT NOT NULL,
        issued_at {int} NOT NULL,
        expires_at {int} NOT NULL
    );
    """,
    """
    CREATE TABLE changes (
        seq {serial},
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        at {real} NOT NULL
    );
    """,
)


class Migratable(Protocol):
    """An engine's side of migrating: an exclusive transaction, and where the version is."""

    name: str
    dialect: Dialect

    def migrating(self) -> AbstractContextManager[Connection]:
        """A write transaction no other process migrates in at the same time."""
        ...

    def schema_version(self, db: Connection) -> int: ...
    def set_schema_version(self, db: Connection, version: int) -> None: ...


def check_version(version: int, name: str) -> None:
    """Refuse a schema from a newer netpersona."""
    if version > len(MIGRATIONS):
        raise SchemaTooNew(
            f"database {name}: schema version {version} was written by a newer netpersona (this "
            f"one knows up to {len(MIGRATIONS)}); run that version, or restore a backup this "
            "version wrote"
        )


def statements(script: str, dialect: Dialect) -> Iterator[str]:
    """The statements of one migration, for ``dialect``."""
    for statement in dialect.render(script).split(";"):
        if statement.strip():
            yield statement


def migrate(engine: Migratable) -> int:
    """Bring ``engine``'s schema up to date; returns the version it was at (0: it was new)."""
    found: int | None = None
    while True:
        with engine.migrating() as db:
            current = engine.schema_version(db)
            found = current if found is None else found
            check_version(current, engine.name)
            if current == len(MIGRATIONS):
                return found
            for statement in statements(MIGRATIONS[current], engine.dialect):
                db.execute(statement)
            engine.set_schema_version(db, current + 1)
