"""The store's SQL, one module per aggregate, for every engine: :class:`SqlStore` composes
them on an :class:`~netpersona.store.sql.engine.Engine` (SQLite's or PostgreSQL's), which
alone knows its driver, its transactions and its errors."""

from netpersona.store.sql.engine import Dialect, Engine
from netpersona.store.sql.store import SqlStore
from netpersona.store.sql.tokens import hash_secret

__all__ = ["Dialect", "Engine", "SqlStore", "hash_secret"]
