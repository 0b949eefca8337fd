"""The embedded store: every aggregate's SQL on one SQLite :class:`Database`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from netpersona.store.rows import RowReader
from netpersona.store.sqlite.audit import AuditTable
from netpersona.store.sqlite.certificates import CertificateTable
from netpersona.store.sqlite.database import open_database
from netpersona.store.sqlite.fleet import FleetQuery
from netpersona.store.sqlite.status import StatusTable
from netpersona.store.sqlite.tokens import TokenTable

__all__ = ["SqliteStore"]


class SqliteStore(FleetQuery, AuditTable, TokenTable, StatusTable, CertificateTable):
    """:class:`~netpersona.store.base.Store` on one SQLite file (made, with its schema, when
    it does not exist; refused when it exists but cannot be trusted: see
    :mod:`netpersona.store.sqlite.database`)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._database = open_database(path)
        self.path = self._database.path
        self.created = self._database.created
        self._clock = clock
        self._rows = RowReader(self.path)
        self._fleet_cache = {}

    def skipped_rows(self) -> Mapping[str, int]:
        """How many rows of each table are known to be unreadable (and are being skipped)."""
        return self._rows.skipped()

    def secret(self, name: str) -> bytes:
        with self._database.write(f"read service secret {name!r}") as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (f"secret.{name}",)).fetchone()
            if row is not None:
                return bytes(row["value"])
            value = secrets.token_bytes(32)
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"secret.{name}", value))
            return value

    def close(self) -> None:
        self._database.close()
