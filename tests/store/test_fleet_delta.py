"""``Store.fleet_delta``: the instances written since a fleet read, when only instances were."""

from __future__ import annotations

import json

from netpersona.store import Instance, Role
from netpersona.store.sql import SqlStore

DOC = json.dumps({"communication_mode": "unicast", "priority": 1})


def test_the_delta_names_written_and_deleted_instances_and_gives_up_on_anything_else(
    store: SqlStore,
) -> None:
    store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")
    store.create_instance(Instance("vm2", "", ("10.0.0.2",)), "t")
    data = store.fleet()
    empty = store.fleet_delta(data.changes, 10)
    assert empty is not None
    assert (empty.revision, empty.upserted, empty.removed) == (data.revision, (), ())

    store.patch_labels("vm1", {"app": "db"}, "t")
    store.create_token("ops", Role.ADMIN, "t")  # moves the revision on, changes no view
    store.delete_instance("vm2", "t")
    store.create_instance(Instance("vm3", "", ("10.0.0.3",)), "t")
    delta = store.fleet_delta(data.changes, 10)
    assert delta is not None
    assert [(i.id, i.label_map) for i in delta.upserted] == [("vm1", {"app": "db"}), ("vm3", {})]
    assert delta.removed == ("vm2",)
    after = store.fleet()
    assert (delta.revision, delta.changes) == (after.revision, after.changes)
    assert set(after.instances) >= set(delta.upserted)

    assert store.fleet_delta(data.changes, 2) is None  # more than the limit: read it all
    store.put_persona("db", DOC, "t")
    assert store.fleet_delta(delta.changes, 10) is None  # a persona: read it all
