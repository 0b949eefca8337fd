"""Where the metadata service keeps instances, personas, pins, context, tokens and the audit log.

:class:`Store` is the seam and the records are in :mod:`netpersona.store.base` (every name it
exports is exported here too). The aggregates' SQL (:mod:`netpersona.store.sql`) runs on two
engines: :class:`SqliteStore`, the embedded default, and :class:`PostgresStore`, for a fleet of
replicas; :func:`open_store` turns a ``--db`` URL into one of them.
"""

from typing import TYPE_CHECKING, Any

from netpersona.store import base
from netpersona.store.base import *  # noqa: F403 (the records and the seam, as listed in base)
from netpersona.store.sqlite import SqliteStore
from netpersona.store.url import open_store

if TYPE_CHECKING:
    from netpersona.store.postgres import PostgresStore

__all__ = ["PostgresStore", "SqliteStore", "open_store"]
__all__ += base.__all__


def __getattr__(name: str) -> Any:
    # psycopg is the service extra's: importing the store (the CLI does, for every command)
    # must not need it until a PostgreSQL store is really asked for.
    if name == "PostgresStore":
        from netpersona.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
