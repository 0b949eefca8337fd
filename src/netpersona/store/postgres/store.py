"""The fleet store: the aggregates' SQL on one PostgreSQL database."""

from __future__ import annotations

import time
from collections.abc import Callable

from netpersona.store.postgres.database import Database, open_database
from netpersona.store.postgres.listener import ChangeListener
from netpersona.store.sql import SqlStore

__all__ = ["PostgresStore"]


class PostgresStore(SqlStore):
    """:class:`~netpersona.store.base.Store` on a PostgreSQL database (its schema made or
    brought up to date on open: see :mod:`netpersona.store.postgres.database`)."""

    _database: Database

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(open_database(url, password=password, create=create), clock=clock)
        self.url = url
        self._password = password

    def listener(self) -> ChangeListener:
        """A new connection (on entering it) that hears every committed change's number."""
        return ChangeListener(self.url, self._password)
