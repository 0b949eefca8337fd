"""The change sequence: every committed write appends one change, in commit order; on
PostgreSQL a listener hears its number once it commits."""

from __future__ import annotations

import json
import select
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from netpersona.errors import NotFound, PreconditionFailed
from netpersona.store import Instance, InstanceStatus, IssuedCertificate
from netpersona.store.base import PRUNED_CHANGES
from netpersona.store.sql import SqlStore
from tests.store.conftest import Database

DOC = json.dumps({"communication_mode": "unicast", "priority": 1})


def test_every_write_appends_a_change_and_a_refused_one_does_not(store: SqlStore) -> None:
    assert (store.last_change(), store.changes_since(0)) == (0, [])
    store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")
    store.put_persona("db", DOC, "t")
    store.put_persona("db", DOC, "t")  # the same document: no write, no change
    with pytest.raises(PreconditionFailed):
        store.patch_labels("vm1", {"a": "b"}, "t", expect=7)
    with pytest.raises(NotFound):
        store.delete_context("nope", "t")
    store.set_context("threat", "high", "t")
    store.record_status(InstanceStatus("vm1", "db", 1, "applied", "", (), 1.0))
    store.save_certificates([IssuedCertificate("vm1", 1, "s", "tok", 1, 2)])
    store.delete_instance("vm1", "t")
    changes = store.changes_since(0)
    assert [(c.kind, c.key) for c in changes] == [
        ("instance", "vm1"),
        ("persona", "db"),
        ("context", "threat"),
        ("status", "vm1"),
        ("certificate", "vm1"),
        ("instance", "vm1"),
    ]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(set(seqs))
    assert store.last_change() == seqs[-1]
    assert [c.key for c in store.changes_since(seqs[2])] == ["vm1", "vm1", "vm1"]
    assert store.changes_since(seqs[-1]) == []


def test_pruning_keeps_the_newest_and_the_young_and_tells_a_reader_it_fell_behind(
    database: Database,
) -> None:
    now = [1000.0]
    store = database.open(clock=lambda: now[0])
    try:
        for i in range(5):
            store.create_instance(Instance(f"vm{i}", "", (f"10.0.0.{i + 1}",)), "t")
            now[0] += 100
        seqs = [c.seq for c in store.changes_since(0)]
        assert len(seqs) == 5
        # Young changes stay whatever their number: nothing was made before t=1000.
        assert store.prune_changes(0, 1000.0) == 0
        # Made before t=1250: vm0..vm2; the newest 3 stay, so only vm0 and vm1 go.
        assert store.prune_changes(3, 1250.0) == 2
        assert [c.key for c in store.changes_since(seqs[1])] == ["vm2", "vm3", "vm4"]
        # A reader from before the pruned ones is told, and the fleet is to be read whole.
        behind = store.changes_since(seqs[0])
        assert (behind[0].kind, behind[0].seq) == (PRUNED_CHANGES, seqs[1])
        assert [c.key for c in behind[1:]] == ["vm2", "vm3", "vm4"]
        assert store.fleet_delta(seqs[0], 100) is None
        delta = store.fleet_delta(seqs[1], 100)
        assert delta is not None
        assert [i.id for i in delta.upserted] == ["vm2", "vm3", "vm4"]
        # Everything old goes; the horizon only moves forward, and writes go on numbering.
        assert store.prune_changes(0, 10_000.0) == 3
        assert store.prune_changes(0, 10_000.0) == 0
        assert store.changes_since(seqs[-1]) == []
        store.set_context("threat", "high", "t")
        (after,) = store.changes_since(seqs[-1])
        assert (after.kind, after.seq > seqs[-1]) == ("context", True)
    finally:
        store.close()


def test_concurrent_writers_commit_changes_in_sequence_order(database: Database) -> None:
    stores = [database.open() for _ in range(4)]
    try:

        def write(n: int) -> None:
            store = stores[n % 4]
            store.create_instance(Instance(f"vm{n}", "", (f"10.0.1.{n + 1}",)), "t")
            store.set_context(f"k{n}", "v", "t")

        seen: list[int] = []
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(write, n) for n in range(40)]
            # A reader catching up while writes land never sees a number after a gap that is
            # filled later: what it has read stays a prefix of the final sequence.
            last = 0
            while not all(f.done() for f in futures):
                fresh = stores[0].changes_since(last)
                seen += [c.seq for c in fresh]
                last = seen[-1] if seen else 0
            for future in futures:
                future.result()
        seen += [c.seq for c in stores[0].changes_since(last)]
        final = [c.seq for c in stores[0].changes_since(0)]
        assert len(final) == 80
        assert seen == final
    finally:
        for store in stores:
            store.close()


def test_a_listener_hears_the_number_when_the_write_commits(database: Database) -> None:
    if database.engine != "postgresql":
        pytest.skip("SQLite has no LISTEN/NOTIFY: one host reads its own file")
    store = database.open()
    try:
        with psycopg.connect(database.url, autocommit=True) as listener:
            listener.execute(b"LISTEN netpersona_changes")
            store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")
            with pytest.raises(PreconditionFailed):  # rolled back: nothing is heard
                store.set_context("k", "v", "t", expect=3)
            store.set_context("k", "v", "t")
            heard: list[int] = []
            while len(heard) < 2:
                ready, _, _ = select.select([listener.fileno()], [], [], 30)
                assert ready, f"heard only {heard}"
                heard += [int(n.payload) for n in listener.notifies(timeout=0, stop_after=2)]
            assert heard == [c.seq for c in store.changes_since(0)]
    finally:
        store.close()
