"""psycopg errors reach callers as the StoreError tree, naming the database and the operation."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors

from netpersona.errors import StorageFull, StoreCorrupt, StoreError, StoreUnavailable
from netpersona.store import Instance
from netpersona.store.postgres import PostgresStore
from netpersona.store.postgres.database import translate
from tests.store.pg_cluster import PgCluster


def test_no_server_is_unavailable(tmp_path: object) -> None:
    url = f"postgresql:///np?host={tmp_path}&port=1"
    with pytest.raises(StoreUnavailable, match=r"database postgresql:///np.*: connect: .*server"):
        PostgresStore(url)


def test_a_missing_database_or_role_is_unavailable(pg_cluster: PgCluster) -> None:
    with pytest.raises(StoreUnavailable, match=r"connect: .*does not exist"):
        PostgresStore(pg_cluster.url("no_such_database"))
    url = pg_cluster.url().replace(f"{pg_cluster.user}@", "nobody@")
    with pytest.raises(StoreUnavailable, match=r"connect: .*nobody"):
        PostgresStore(url)


def test_too_many_connections_is_unavailable(pg_cluster: PgCluster) -> None:
    with pg_cluster.database() as url, psycopg.connect(url, autocommit=True) as admin:
        admin.execute(b"CREATE ROLE limited LOGIN CONNECTION LIMIT 1")
        try:
            limited = url.replace(f"{pg_cluster.user}@", "limited@")
            admin.execute(b"GRANT ALL ON SCHEMA public TO limited")
            first = PostgresStore(limited)
            try:
                with pytest.raises(StoreUnavailable, match=r"connect: .*too many connections"):
                    PostgresStore(limited)
            finally:
                first.close()
        finally:
            admin.execute(b"DROP OWNED BY limited")
            admin.execute(b"DROP ROLE limited")


def test_a_dropped_connection_fails_one_call_and_is_replaced(pg_cluster: PgCluster) -> None:
    with pg_cluster.database() as url:
        store = PostgresStore(url)
        try:
            store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(
                    b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    b"WHERE application_name = 'netpersona'"
                )
            with pytest.raises(StoreUnavailable, match="read instance 'vm1'"):
                store.get_instance("vm1")
            assert store.get_instance("vm1").id == "vm1"  # a new connection
        finally:
            store.close()


def test_a_closed_store_says_so_in_the_tree(pg_cluster: PgCluster) -> None:
    with pg_cluster.database() as url:
        store = PostgresStore(url)
        store.close()
        with pytest.raises(StoreError, match=r"list tokens"):
            store.list_tokens()


def test_a_database_holding_other_tables_is_refused(pg_cluster: PgCluster) -> None:
    with pg_cluster.database() as url:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(b"CREATE TABLE orders (id int)")
        with pytest.raises(StoreError, match=r"not netpersona's.*'orders'"):
            PostgresStore(url)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (pg_errors.DiskFull("could not extend file: No space left on device"), StorageFull),
        (pg_errors.InternalError("could not extend file: Disk quota exceeded"), StorageFull),
        (pg_errors.DataCorrupted("invalid page in block 7"), StoreCorrupt),
        (pg_errors.TooManyConnections("sorry, too many clients already"), StoreUnavailable),
        (pg_errors.InvalidPassword("password authentication failed"), StoreUnavailable),
        (pg_errors.AdminShutdown("terminating connection"), StoreUnavailable),
        (pg_errors.UndefinedTable('relation "x" does not exist'), StoreError),
    ],
)
def test_sqlstates_map_to_the_tree(error: psycopg.Error, kind: type[StoreError]) -> None:
    translated = translate(error, "postgresql://np@db/np", "create instance 'vm1'")
    assert type(translated) is kind
    assert str(translated).startswith("database postgresql://np@db/np: create instance 'vm1': ")
