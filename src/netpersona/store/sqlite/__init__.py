"""The SQLite engine: one file, its transactions, its errors and its start-up checks;
:class:`SqliteStore` runs the aggregates' SQL (:mod:`netpersona.store.sql`) on it."""

from netpersona.store.sql.tokens import hash_secret
from netpersona.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore", "hash_secret"]
