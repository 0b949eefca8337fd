"""The SQLite backend: one module per aggregate, each with its SQL, composed by
:class:`SqliteStore`; :mod:`.database` opens the file and translates every sqlite3 error."""

from netpersona.store.sqlite.store import SqliteStore
from netpersona.store.sqlite.tokens import hash_secret

__all__ = ["SqliteStore", "hash_secret"]
