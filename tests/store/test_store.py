"""The store on both engines: records, versions, concurrency checks, audit, tokens."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from netpersona.errors import Conflict, InvalidDocument, NotFound, PreconditionFailed, UsageError
from netpersona.store import Instance, Interface, Role, SqliteStore, Tier, open_store
from netpersona.store.sql import SqlStore
from netpersona.store.url import sqlite_path
from tests.store.conftest import Database

DOC = json.dumps({"communication_mode": "unicast", "priority": 1})
DOC2 = json.dumps({"communication_mode": "unicast", "priority": 2})


def spec(instance_id: str, *addresses: str, labels: dict[str, str] | None = None) -> Instance:
    return Instance(
        id=instance_id,
        name="vm",
        addresses=addresses,
        interfaces=(Interface("eth0", ("10.0.0.1/24",), Tier.PREMIUM),),
        labels=tuple(sorted((labels or {}).items())),
    )


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "np.db")
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    # synchronous is per connection: read the store's own.
    assert store._database.connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_reopening_keeps_data_and_does_not_rerun_migrations(database: Database) -> None:
    first = database.open()
    assert first.created
    first.create_instance(spec("vm1", "10.0.0.1"), "test")
    first.close()
    second = database.open()
    assert not second.created
    assert second.get_instance("vm1").addresses == ("10.0.0.1",)
    second.close()


def test_instances_round_trip_with_interfaces_and_labels(store: SqlStore) -> None:
    made = store.create_instance(spec("vm1", "10.0.0.1", labels={"app": "db"}), "alice")
    got = store.get_instance("vm1")
    assert got == made
    assert got.interfaces[0].tier is Tier.PREMIUM
    assert got.label_map == {"app": "db"}
    with pytest.raises(Conflict, match="already exists"):
        store.create_instance(spec("vm1", "10.0.0.9"), "alice")
    with pytest.raises(NotFound, match="'nope'"):
        store.get_instance("nope")


def test_an_address_belongs_to_one_instance(store: SqlStore) -> None:
    store.create_instance(spec("vm1", "10.0.0.1"), "t")
    with pytest.raises(Conflict, match=r"10\.0\.0\.1 already belongs to instance 'vm1'"):
        store.create_instance(spec("vm2", "10.0.0.2", "10.0.0.1"), "t")
    # The failed create left nothing behind, not even the first address.
    store.create_instance(spec("vm2", "10.0.0.2"), "t")
    store.delete_instance("vm1", "t")
    store.replace_instance(spec("vm2", "10.0.0.1"), "t")
    assert store.get_instance("vm2").addresses == ("10.0.0.1",)


def test_an_import_creates_every_instance_with_its_pin_or_none(store: SqlStore) -> None:
    store.put_persona("web", json.dumps({"communication_mode": "unicast"}), "t")
    specs = [
        Instance("vm1", "", ("10.0.0.1",), pin="web"),
        Instance("vm2", "", ("10.0.0.2",), labels=(("b", "2"), ("a", "1"))),
    ]
    assert store.import_instances(specs, "t") == 2
    assert store.get_instance("vm1").pin == "web"
    assert store.get_instance("vm2").label_map == {"a": "1", "b": "2"}
    assert store.get_instance("vm2").revision == 1
    assert [i.id for i in store.fleet().instances] == ["vm1", "vm2"]
    # One bad spec (a taken address, an unknown pin) and nothing of the batch is stored.
    with pytest.raises(Conflict, match=r"10\.0\.0\.1 already belongs"):
        store.import_instances([spec("vm3", "10.0.0.3"), spec("vm4", "10.0.0.1")], "t")
    with pytest.raises(InvalidDocument, match="/vm5/pin: no persona is named 'nope'"):
        store.import_instances([Instance("vm5", "", ("10.0.0.5",), pin="nope")], "t")
    assert [i.id for i in store.fleet().instances] == ["vm1", "vm2"]


def test_revisions_grow_and_if_match_is_checked(store: SqlStore) -> None:
    store.create_instance(spec("vm1", "10.0.0.1"), "t")
    labelled = store.patch_labels("vm1", {"app": "db"}, "t", expect=1)
    assert labelled.revision == 2
    with pytest.raises(PreconditionFailed, match="revision 2, not 1"):
        store.patch_labels("vm1", {"app": "web"}, "t", expect=1)
    unchanged = store.patch_labels("vm1", {"app": "db"}, "t")
    assert unchanged.revision == 2  # writing what is there is not a change
    removed = store.patch_labels("vm1", {"app": None}, "t")
    assert removed.labels == ()
    assert removed.revision == 3


def test_personas_are_versioned_with_history_and_restore(store: SqlStore) -> None:
    assert store.put_persona("db", DOC, "alice").version == 1
    assert store.put_persona("db", DOC, "alice").version == 1  # same document, no new version
    assert store.put_persona("db", DOC2, "bob", expect=1).version == 2
    with pytest.raises(PreconditionFailed):
        store.put_persona("db", DOC, "bob", expect=1)
    with pytest.raises(PreconditionFailed, match="already exists"):
        store.put_persona("db", DOC, "bob", create_only=True)
    restored = store.restore_persona("db", 1, "carol")
    assert (restored.version, restored.document, restored.restored_from) == (3, DOC, 1)
    history = store.persona_history("db", limit=2)
    assert [v.version for v in history.items] == [3, 2]
    rest = store.persona_history("db", limit=2, cursor=history.next_cursor)
    assert [v.version for v in rest.items] == [1]
    assert rest.next_cursor is None
    assert store.get_persona("db", 2).document == DOC2
    with pytest.raises(NotFound, match="no version 9"):
        store.restore_persona("db", 9, "carol")


def test_a_pinned_persona_cannot_be_deleted_and_versions_never_repeat(
    store: SqlStore,
) -> None:
    store.put_persona("db", DOC, "t")
    store.create_instance(spec("vm1", "10.0.0.1"), "t")
    store.set_pin("vm1", "db", "t")
    with pytest.raises(Conflict, match="pinned to instance"):
        store.delete_persona("db", "t")
    with pytest.raises(InvalidDocument, match="no persona is named 'web'"):
        store.set_pin("vm1", "web", "t")
    store.set_pin("vm1", None, "t")
    store.delete_persona("db", "t")
    with pytest.raises(NotFound):
        store.get_persona("db")
    assert store.put_persona("db", DOC2, "t").version == 2  # not 1 again


def test_every_change_is_audited_with_before_and_after(store: SqlStore) -> None:
    store.create_instance(spec("vm1", "10.0.0.1"), "alice")
    store.patch_labels("vm1", {"app": "db"}, "bob")
    store.set_context("threat_level", "high", "carol")
    page = store.list_audit(limit=10)
    assert [(e.actor, e.action, e.target) for e in page.items] == [
        ("carol", "context.set", "context/threat_level"),
        ("bob", "instance.labels", "instance/vm1"),
        ("alice", "instance.create", "instance/vm1"),
    ]
    labels = page.items[1]
    assert labels.before["labels"] == {}
    assert labels.after["labels"] == {"app": "db"}
    only_vm = store.list_audit(limit=1, target="instance/vm1")
    assert only_vm.items[0].action == "instance.labels"
    older = store.list_audit(limit=1, target="instance/vm1", cursor=only_vm.next_cursor)
    assert older.items[0].action == "instance.create"


def test_tokens_are_stored_hashed(store: SqlStore) -> None:
    token, secret = store.create_token("ci", Role.OPERATOR, "admin")
    assert store.token_for_secret(secret) == token
    assert store.token_for_secret(secret + "x") is None
    with store._database.read("dump") as db:
        stored = [
            dict(row)
            for table in ("tokens", "audit")
            for row in db.execute(f"SELECT * FROM {table}")
        ]
    assert secret not in json.dumps(stored)
    assert token.id in json.dumps(stored)
    store.revoke_token(token.id, "admin")
    assert store.token_for_secret(secret) is None


def test_context_keys_have_revisions(store: SqlStore) -> None:
    assert store.set_context("threat_level", "low", "t").revision == 1
    assert store.set_context("threat_level", "high", "t", expect=1).revision == 2
    with pytest.raises(PreconditionFailed):
        store.delete_context("threat_level", "t", expect=1)
    store.delete_context("threat_level", "t", expect=2)
    with pytest.raises(NotFound):
        store.get_context("threat_level")


def test_pages_walk_every_instance_once(store: SqlStore) -> None:
    for n in range(7):
        store.create_instance(spec(f"vm{n}", f"10.0.0.{n + 1}"), "t")
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_instances(limit=3, cursor=cursor)
        seen += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"vm{n}" for n in range(7)]
    with pytest.raises(InvalidDocument, match="cursor"):
        store.persona_history("x", limit=1, cursor="!!!")


def test_fleet_reads_instances_current_personas_and_a_growing_revision(
    store: SqlStore,
) -> None:
    store.put_persona("db", DOC, "t")
    store.put_persona("db", DOC2, "t")
    before = store.fleet().revision
    store.create_instance(spec("vm1", "10.0.0.1"), "t")
    fleet = store.fleet()
    assert fleet.revision > before
    assert fleet.personas["db"].version == 2
    assert [i.id for i in fleet.instances] == ["vm1"]


def test_db_urls(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:////var/lib/np.db") == Path("/var/lib/np.db")
    assert sqlite_path("sqlite:///np.db") == Path("np.db")
    with pytest.raises(UsageError, match="mysql"):
        open_store("mysql://db/netpersona")
    with pytest.raises(UsageError, match=r"holds a password.*PGPASSWORD"):
        open_store("postgresql://np:s3cret@db/netpersona")
    with pytest.raises(UsageError, match="holds a password"):
        open_store("postgresql:///netpersona?password=s3cret")
    with pytest.raises(UsageError, match="only a postgresql"):
        open_store(f"sqlite:///{tmp_path}/np.db", password_file=tmp_path / "pw")
    with pytest.raises(UsageError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/np.db")
    opened = open_store(f"sqlite:///{tmp_path}/np.db")
    opened.close()


def test_fleet_reads_see_every_change_including_a_recreated_instance(database: Database) -> None:
    store = database.open(clock=lambda: 1000.0)  # every write at one instant
    try:
        store.create_instance(spec("vm1", "10.0.0.1", labels={"app": "db"}), "t")
        assert store.fleet().instances[0].label_map == {"app": "db"}
        store.delete_instance("vm1", "t")
        store.create_instance(spec("vm1", "10.0.0.2", labels={"app": "web"}), "t")
        again = store.fleet().instances[0]
        assert (again.addresses, again.label_map) == (("10.0.0.2",), {"app": "web"})
        # A write by another process (another connection to the same file) is seen too.
        other = database.open()
        other.patch_labels("vm1", {"app": "api"}, "t")
        other.close()
        assert store.fleet().instances[0].label_map == {"app": "api"}
    finally:
        store.close()
