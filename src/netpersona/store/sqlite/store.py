"""The embedded store: the aggregates' SQL on one SQLite file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from netpersona.store.sql import SqlStore
from netpersona.store.sqlite.database import Database, open_database

__all__ = ["SqliteStore"]


class SqliteStore(SqlStore):
    """:class:`~netpersona.store.base.Store` on one SQLite file (made, with its schema, when
    it does not exist; refused when it exists but cannot be trusted: see
    :mod:`netpersona.store.sqlite.database`)."""

    _database: Database

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(open_database(path), clock=clock)
        self.path = self._database.path
