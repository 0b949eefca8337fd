"""Where the metadata service keeps instances, personas, pins, context, tokens and the audit log.

:class:`Store` is the seam and the records are in :mod:`netpersona.store.base` (every name it
exports is exported here too). The aggregates' SQL (:mod:`netpersona.store.sql`) runs on two
engines: :class:`SqliteStore`, the embedded default, and :class:`PostgresStore`, for a fleet of
replicas; :func:`open_store` turns a ``--db`` URL into one of them.
"""

from netpersona.store import base
from netpersona.store.base import *  # noqa: F403 (the records and the seam, as listed in base)
from netpersona.store.postgres import PostgresStore
from netpersona.store.sqlite import SqliteStore
from netpersona.store.url import open_store

__all__ = ["PostgresStore", "SqliteStore", "open_store"]
__all__ += base.__all__
