"""Every aggregate's SQL on one :class:`~netpersona.store.sql.engine.Engine`: the store itself,
whichever engine it runs on."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping

from netpersona.store.migrations import MIGRATIONS
from netpersona.store.rows import RowReader
from netpersona.store.sql.audit import AuditTable
from netpersona.store.sql.certificates import CertificateTable
from netpersona.store.sql.changes import ChangeLog
from netpersona.store.sql.engine import Engine, retried
from netpersona.store.sql.fleet import FleetQuery
from netpersona.store.sql.status import StatusTable
from netpersona.store.sql.tokens import TokenTable

__all__ = ["SqlStore"]


class SqlStore(FleetQuery, AuditTable, TokenTable, StatusTable, CertificateTable, ChangeLog):
    """:class:`~netpersona.store.base.Store` on an open, migrated database."""

    def __init__(self, database: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self.created = database.created
        self._clock = clock
        self._rows = RowReader(database.name)
        self._fleet_cache = {}

    def skipped_rows(self) -> Mapping[str, int]:
        """How many rows of each table are known to be unreadable (and are being skipped)."""
        return self._rows.skipped()

    @retried
    def secret(self, name: str) -> bytes:
        with self._database.write(f"read service secret {name!r}") as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (f"secret.{name}",)).fetchone()
            if row is not None:
                return bytes(row["value"])
            value = secrets.token_bytes(32)
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"secret.{name}", value))
            self._changed(db, "secret", name)
            return value

    def schema_versions(self) -> tuple[int, int]:
        """(the database's schema version, the newest this netpersona knows), read now: a
        round trip to the database, for readiness checks."""
        with self._database.read("read the schema version") as db:
            return self._database.schema_version(db), len(MIGRATIONS)

    def close(self) -> None:
        self._database.close()
