"""The stored persona policy: versions, history, If-Match, delete, audit, and its migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from netpersona.errors import NotFound, PreconditionFailed
from netpersona.store import SqliteStore
from netpersona.store.migrations import MIGRATIONS
from netpersona.store.sql import SqlStore
from netpersona.store.sqlite.database import SQLITE

V1 = json.dumps({"persona_policy": {"rules": [], "default": "a"}}, sort_keys=True)
V2 = json.dumps({"persona_policy": {"rules": [], "default": "b"}}, sort_keys=True)


def test_every_policy_change_is_a_new_version_with_history(store: SqlStore) -> None:
    with pytest.raises(NotFound):
        store.get_policy()
    assert store.fleet().policy is None
    first = store.put_policy(V1, "alice")
    assert (first.version, first.body, first.created_by) == (1, json.loads(V1), "alice")
    assert store.put_policy(V1, "bob") == first  # the same document is not a new version
    with pytest.raises(PreconditionFailed):
        store.put_policy(V2, "bob", expect=2)
    second = store.put_policy(V2, "bob", expect=1)
    assert second.version == 2
    assert store.get_policy() == second
    assert store.get_policy(1) == first
    assert store.fleet().policy == second
    page = store.policy_history(1)
    assert [v.version for v in page.items] == [2]
    assert [v.version for v in store.policy_history(10, page.next_cursor).items] == [1]
    with pytest.raises(NotFound):
        store.get_policy(7)


def test_a_deleted_policy_keeps_its_history_and_versions_keep_growing(
    store: SqlStore,
) -> None:
    store.put_policy(V1, "alice")
    with pytest.raises(PreconditionFailed):
        store.delete_policy("alice", expect=5)
    store.delete_policy("alice", expect=1)
    with pytest.raises(NotFound):
        store.get_policy()
    with pytest.raises(NotFound):
        store.delete_policy("alice")
    with pytest.raises(PreconditionFailed):
        store.put_policy(V2, "alice", expect=1)  # there is no policy to be at version 1
    assert store.fleet().policy is None
    assert store.put_policy(V1, "alice").version == 2
    audit = store.list_audit(10, target="policy").items
    assert [(e.action, e.actor) for e in audit] == [
        ("policy.put", "alice"),
        ("policy.delete", "alice"),
        ("policy.put", "alice"),
    ]
    assert audit[1].before["version"] == 1
    assert audit[1].after is None
    assert audit[0].before is None
    assert audit[0].after["document"] == json.loads(V1)


def test_a_database_from_before_the_policy_is_migrated_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SQLITE.render(MIGRATIONS[0]))
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO context (key, value, revision, updated_at) VALUES ('k', 'v', 1, 0)")
    db.commit()
    db.close()
    store = SqliteStore(path)
    try:
        assert store.get_context("k").value == "v"
        assert store.put_policy(V1, "alice").version == 1
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()
