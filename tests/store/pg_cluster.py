"""The throwaway PostgreSQL cluster the tests use is the lab's (:mod:`netpersona.lab.postgres`):
``initdb`` into a temporary directory, a server on a Unix socket in it, a fresh database per
test."""

from __future__ import annotations

from netpersona.lab.postgres import PgCluster, find_pg_bin, pg_cluster

__all__ = ["PgCluster", "find_pg_bin", "pg_cluster"]
