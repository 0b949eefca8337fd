"""A connection of its own that LISTENs for the change sequence's notifications.

Every committed write sends ``NOTIFY netpersona_changes, '<seq>'`` (see
:mod:`netpersona.store.sql.aggregate`); a replica of the service holds one of these to hear
the writes made through the others. A notification says only "something was committed":
the follower reads what with ``changes_since``, so a notification lost while the connection
was down costs nothing but the wait until the next read.

Async (psycopg's ``AsyncConnection``), unlike the store's own connection: it waits on the
event loop, holding no worker thread, and the store's connection lock is never held by a wait.
"""

from __future__ import annotations

from typing import Any

import psycopg

from netpersona.errors import StoreUnavailable
from netpersona.store.postgres.database import CHANNEL, translate

__all__ = ["LISTENER_NAME", "ChangeListener"]

# application_name of the listening connection (pg_stat_activity shows it).
LISTENER_NAME = "netpersona-listener"


class ChangeListener:
    """``async with`` it: connected and listening inside the block."""

    def __init__(self, url: str, password: str | None = None) -> None:
        self.url = url
        self._password = password
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> ChangeListener:
        extra: dict[str, Any] = {} if self._password is None else {"password": self._password}
        try:
            self._connection = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=10,
                application_name=LISTENER_NAME,
                **extra,
            )
            await self._connection.execute(f"LISTEN {CHANNEL}".encode())
        except psycopg.Error as exc:
            await self.__aexit__()
            raise translate(exc, self.url, "listen for changes") from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (None: not connected)."""
        return None if self._connection is None else self._connection.info.backend_pid

    async def wait(self, timeout: float) -> bool:
        """True once a notification arrives, False when ``timeout`` seconds pass without one;
        StoreUnavailable when the connection is lost (the caller reconnects and catches up)."""
        if self._connection is None:
            raise StoreUnavailable(f"database {self.url}: the change listener is not connected")
        try:
            async for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as exc:
            raise translate(exc, self.url, "listen for changes") from exc
        if self._connection.broken:
            raise StoreUnavailable(f"database {self.url}: the change listener lost its connection")
        return False
