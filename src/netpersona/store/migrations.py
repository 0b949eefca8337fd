"""The SQLite schema, as numbered migrations.

Migration N (1-based) moves a database from ``PRAGMA user_version`` N-1 to N; a database is
brought up to date on open, each step in its own transaction. Append, never edit: a released
migration has already run somewhere.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        addresses TEXT NOT NULL,
        interfaces TEXT NOT NULL,
        labels TEXT NOT NULL,
        pin TEXT,
        revision INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE instance_addresses (
        address TEXT PRIMARY KEY,
        instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE
    );
    CREATE TABLE personas (
        name TEXT PRIMARY KEY,
        current INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE persona_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        document TEXT NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        restored_from INTEGER,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE context (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        revision INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
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
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE status (
        instance_id TEXT PRIMARY KEY,
        persona TEXT,
        version INTEGER,
        result TEXT NOT NULL,
        message TEXT NOT NULL,
        drops TEXT NOT NULL,
        reported_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE policy_versions (
        version INTEGER PRIMARY KEY,
        document TEXT NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        current INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    CREATE TABLE certificates (
        instance_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        summary TEXT NOT NULL,
        token TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    """,
)
