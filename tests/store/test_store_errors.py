"""sqlite3 errors reach callers as the StoreError tree, naming the database and the operation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from netpersona.errors import StoreCorrupt, StoreError, StoreUnavailable
from netpersona.store import Instance, SqliteStore


def test_a_database_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "np.db")
    store._database.connection.execute("PRAGMA busy_timeout=200")
    other = sqlite3.connect(tmp_path / "np.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailable, match=r"np\.db: create instance 'vm1'.*SQLITE_BUSY"):
            store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")  # and then it works
    store.close()


def test_a_page_damaged_while_the_store_runs_is_store_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "np.db"
    store = SqliteStore(path)
    for n in range(300):
        store.create_instance(Instance(f"vm{n}", "", (f"10.0.{n // 250}.{n % 250}",)), "t")
    store._database.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = store._database.connection.execute("PRAGMA page_size").fetchone()[0]
    root = store._database.connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'instances'"
    ).fetchone()[0]
    with path.open("r+b") as file:
        file.seek(page_size * (root - 1))
        file.write(b"\x07")
    store._database.connection.execute("PRAGMA shrink_memory")  # forget the cached page
    try:
        with pytest.raises(StoreCorrupt, match=r"np\.db: list instances: .*SQLITE_CORRUPT"):
            store.list_instances(1000)
    finally:
        store.close()


def test_a_closed_store_says_so_in_the_tree(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "np.db")
    store.close()
    with pytest.raises(StoreError, match=r"np\.db: list tokens"):
        store.list_tokens()
