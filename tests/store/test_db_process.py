"""``netpersona serve`` and ``netpersona db`` as processes, on PostgreSQL and on SQLite."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from netpersona.errors import SchemaTooNew, StoreCorrupt, StoreUnavailable, UsageError
from netpersona.store import Instance, Role, SqliteStore
from netpersona.store.migrations import MIGRATIONS
from netpersona.store.postgres import PostgresStore
from netpersona.system.command import run
from tests.service.serve_process import NETPERSONA, serve
from tests.store.pg_cluster import PgCluster

pytestmark = pytest.mark.subprocess


def db(*args: str, check: bool = True) -> tuple[int, str, str]:
    done = run([NETPERSONA, "db", *args], check=check, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_serve_on_postgresql_makes_the_schema_and_answers(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    password = tmp_path / "db-password"
    password.write_text("not checked by this cluster's trust auth\n")
    with pg_cluster.database() as url:
        refused, _, err = db("token", "--db", url, "--data-dir", str(tmp_path / "d"), check=False)
        assert refused == StoreUnavailable.exit_code
        assert "no netpersona schema" in err
        args = ("--db", url, "--db-password-file", str(password))
        with serve(tmp_path / "data", *args) as server, server.admin() as admin:
            made = admin.post("/v1/admin/instances", json={"id": "vm1", "addresses": ["127.0.0.9"]})
            assert made.status_code == 201, made.text
            got = admin.get("/v1/admin/instances/vm1")
            assert got.json()["addresses"] == ["127.0.0.9"]
        # The data is in the database, not in the data directory.
        assert sorted(p.name for p in (tmp_path / "data").iterdir() if p.name.endswith(".db")) == []
        store = PostgresStore(url)
        try:
            assert store.get_instance("vm1").addresses == ("127.0.0.9",)
            assert [c.kind for c in store.changes_since(0)][-1] == "instance"
        finally:
            store.close()
        _, out, _ = db("status", "--db", url)
        assert f"schema version: {len(MIGRATIONS)} (this netpersona: {len(MIGRATIONS)})" in out
        assert "server: PostgreSQL" in out
        assert "check: ok" in out
        db("migrate", "--db", url)  # up to date: nothing to do, and says so


def test_db_status_and_migrate_on_postgresql_refuse_what_serve_would(
    pg_cluster: PgCluster,
) -> None:
    with pg_cluster.database() as url:
        code, out, _ = db("status", "--db", url, check=False)
        assert code != 0
        assert "no netpersona schema" in out
        PostgresStore(url).close()
        store = PostgresStore(url)
        with store._database.write("pretend a newer netpersona") as conn:
            store._database.set_schema_version(conn, 999)
        store.close()
        code, out, _ = db("status", "--db", url, check=False)
        assert code == SchemaTooNew.exit_code
        assert "schema version 999" in out
        code, _, err = db("migrate", "--db", url, check=False)
        assert code == SchemaTooNew.exit_code
        assert "999" in err
    code, _, err = db("status", "--db", "postgresql://np:pw@db/np", check=False)
    assert code == UsageError.exit_code
    assert "PGPASSWORD" in err


def test_a_sqlite_backup_taken_while_writing_restores_every_committed_write(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(data / "netpersona.db")
    try:
        for n in range(50):
            store.create_instance(Instance(f"vm{n}", "", (f"10.0.0.{n + 1}",)), "t")
        store.create_token("admin", Role.ADMIN, "t")
        # Still open, its last writes only in the write-ahead log: what a running service has.
        assert Path(f"{data / 'netpersona.db'}-wal").stat().st_size > 0
        backup = tmp_path / "backup.db"
        db("backup", str(backup), "--data-dir", str(data))
        assert oct(backup.stat().st_mode & 0o777) == "0o600"
        code, _, err = db("backup", str(backup), "--data-dir", str(data), check=False)
        assert code == UsageError.exit_code
        assert "exists" in err
        store.delete_instance("vm0", "t")  # after the backup
    finally:
        store.close()
    db("restore", str(backup), "--data-dir", str(data))
    restored = SqliteStore(data / "netpersona.db")
    try:
        assert len(restored.list_instances(100).items) == 50
        assert restored.get_instance("vm0").id == "vm0"
    finally:
        restored.close()


def test_a_sqlite_restore_refuses_a_damaged_backup_and_keeps_the_database(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(data / "netpersona.db")
    store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")
    store.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    code, _, err = db("restore", str(garbage), "--data-dir", str(data), check=False)
    assert code == StoreCorrupt.exit_code, err
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE orders (id)").connection.commit()
    code, _, err = db("restore", str(other), "--data-dir", str(data), check=False)
    assert code != 0
    assert "not netpersona's" in err
    kept = SqliteStore(data / "netpersona.db")
    try:
        assert kept.get_instance("vm1").id == "vm1"
    finally:
        kept.close()
    code, _, err = db("backup", str(tmp_path / "b"), "--db", "postgresql:///np", check=False)
    assert code == UsageError.exit_code
    assert "pg_dump" in err
