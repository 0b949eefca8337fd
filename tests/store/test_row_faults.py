"""One malformed row is reported (table and key), counted and skipped; everything else is served."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import psycopg
import pytest
from structlog.testing import capture_logs

from netpersona.errors import StoreCorrupt
from netpersona.store import Instance, Role
from netpersona.store.sql import SqlStore
from tests.store.conftest import Database

DOC = json.dumps({"communication_mode": "unicast", "priority": 1})


@pytest.fixture
def filled(database: Database) -> Database:
    """A database with four instances, two personas, a policy, context and two tokens."""
    store = database.open()
    for n in range(4):
        store.create_instance(Instance(f"vm{n}", "", (f"10.0.0.{n + 1}",)), "t")
    store.put_persona("db", DOC, "t")
    store.put_persona("web", DOC, "t")
    store.put_policy(json.dumps({"persona_policy": {"rules": [], "default": "db"}}), "t")
    store.set_context("threat", "low", "t")
    store.create_token("admin", Role.ADMIN, "t")
    store.create_token("ci", Role.READER, "t")
    store.close()
    return database


def damage(database: Database, *statements: str) -> list[tuple[object, ...]]:
    """Change rows behind the store's back, as a bad restore or a hand edit would; returns
    what the last statement selected."""
    if database.engine == "postgresql":
        with psycopg.connect(database.url, autocommit=True) as pg:
            for statement in statements:
                cursor = pg.execute(statement.encode())
            return cursor.fetchall() if cursor.description else []
    db = sqlite3.connect(database.url.removeprefix("sqlite:///"))
    try:
        for statement in statements:
            rows = db.execute(statement).fetchall()
        db.commit()
    finally:
        db.close()
    return rows


@pytest.fixture
def damaged(filled: Database) -> Iterator[SqlStore]:
    damage(
        filled,
        "UPDATE instances SET labels = '{\"not a key!\": \"x\"}' WHERE id = 'vm1'",
        "UPDATE instances SET interfaces = '[{\"name\": ' WHERE id = 'vm2'",
        "UPDATE persona_versions SET document = '{broken' WHERE name = 'web'",
        "UPDATE tokens SET role = 'emperor' WHERE name = 'ci'",
    )
    store = filled.open()
    yield store
    store.close()


def test_listings_and_the_fleet_skip_malformed_rows_and_say_which(
    filled: Database, damaged: SqlStore
) -> None:
    with capture_logs() as logs:
        fleet = damaged.fleet()
        page = damaged.list_instances(10)
        personas = damaged.list_personas(10)
        tokens = damaged.list_tokens()
        damaged.fleet()  # a second read does not report the same rows again
    assert [i.id for i in fleet.instances] == ["vm0", "vm3"]
    assert [i.id for i in page.items] == ["vm0", "vm3"]
    assert list(fleet.personas) == ["db"]
    assert [p.name for p in personas.items] == ["db"]
    assert [t.name for t in tokens] == ["admin"]
    skipped = {(e["table"], e["key"]) for e in logs if e["event"] == "store row skipped"}
    assert skipped == {
        ("instances", "vm1"),
        ("instances", "vm2"),
        ("persona_versions", "web@1"),
        ("tokens", skipped_token(filled)),
    }
    assert sum(e["event"] == "store row skipped" for e in logs) == 4
    assert damaged.skipped_rows() == {"instances": 2, "persona_versions": 1, "tokens": 1}


def skipped_token(database: Database) -> str:
    token_id = damage(database, "SELECT id FROM tokens WHERE name = 'ci'")[0][0]
    assert isinstance(token_id, str)
    return token_id


def test_reading_the_one_malformed_record_names_it(damaged: SqlStore) -> None:
    with pytest.raises(StoreCorrupt, match=r"table instances, key 'vm1'.*label"):
        damaged.get_instance("vm1")
    with pytest.raises(StoreCorrupt, match=r"table persona_versions, key 'web@1'"):
        damaged.get_persona("web")
    with pytest.raises(StoreCorrupt, match="'vm2'"):
        damaged.patch_labels("vm2", {"app": "db"}, "t")
    assert damaged.get_instance("vm0").id == "vm0"  # the rest is served as ever


def test_a_malformed_instance_can_be_deleted_and_then_counts_no_more(
    filled: Database, damaged: SqlStore
) -> None:
    damaged.fleet()
    damaged.delete_instance("vm1", "operator")
    assert damaged.list_audit(1).items[0].before["id"] == "vm1"
    damage(filled, "UPDATE instances SET interfaces = '[]' WHERE id = 'vm2'")
    assert [i.id for i in damaged.list_instances(10).items] == ["vm0", "vm2", "vm3"]
    assert damaged.skipped_rows() == {"persona_versions": 1}


def test_a_row_damaged_while_the_store_runs_is_skipped_at_once(filled: Database) -> None:
    store = filled.open()
    # SQLite keeps whatever a column is given; PostgreSQL keeps only text in a text column.
    blob = filled.engine == "sqlite"
    try:
        assert len(store.fleet().instances) == 4
        damage(
            filled,
            "UPDATE instances SET addresses = 'nope', revision = revision + 1 WHERE id = 'vm3'",
            "UPDATE policy_versions SET document = '[1, 2]'",
            *(["UPDATE context SET value = x'00ff' WHERE key = 'threat'"] if blob else []),
        )
        fleet = store.fleet()
        assert [i.id for i in fleet.instances] == ["vm0", "vm1", "vm2"]
        assert fleet.policy is None
        assert len(store.list_context()) == (0 if blob else 1)
        assert fleet.context == ({} if blob else {"threat": "low"})
        skipped = {"instances": 1, "policy_versions": 1} | ({"context": 1} if blob else {})
        assert store.skipped_rows() == skipped
    finally:
        store.close()
