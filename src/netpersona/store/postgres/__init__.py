"""The PostgreSQL engine (psycopg 3): a connection, its transactions and its errors;
:class:`PostgresStore` runs the aggregates' SQL (:mod:`netpersona.store.sql`) on it."""

from netpersona.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
