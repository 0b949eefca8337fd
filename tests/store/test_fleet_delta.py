"""``Store.fleet_delta``: what was written since a fleet read (instances, personas, context keys,
the policy), as it is now; None for too many changes or a kind it does not carry."""

from __future__ import annotations

import json

from netpersona.store import Instance, Role
from netpersona.store.sql import SqlStore

DOC = json.dumps({"communication_mode": "unicast", "priority": 1})


def test_the_delta_names_written_and_deleted_instances_and_gives_up_past_the_limit(
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


def test_the_delta_carries_personas_context_and_policy_as_they_are_now(store: SqlStore) -> None:
    store.put_persona("db", DOC, "t")
    store.put_persona("web", DOC, "t")
    store.set_context("region", "eu", "t")
    data = store.fleet()
    nothing = store.fleet_delta(data.changes, 10)
    assert nothing is not None
    assert nothing.empty

    store.put_persona("db", json.dumps({"communication_mode": "unicast", "priority": 2}), "t")
    store.put_persona("db", json.dumps({"communication_mode": "unicast", "priority": 3}), "t")
    store.delete_persona("web", "t")
    store.put_persona("new", DOC, "t")
    store.set_context("zone", "a", "t")
    store.delete_context("region", "t")
    delta = store.fleet_delta(data.changes, 10)
    assert delta is not None
    assert not delta.empty
    assert {n: None if p is None else p.version for n, p in delta.personas.items()} == {
        "db": 3,
        "new": 1,
        "web": None,
    }
    after = store.fleet()
    assert delta.personas["db"] == after.personas["db"]
    assert dict(delta.context) == {"region": None, "zone": "a"}
    assert (delta.policy_changed, delta.upserted, delta.removed) == (False, (), ())
    assert (delta.revision, delta.changes) == (after.revision, after.changes)

    policy = {"persona_policy": {"rules": [], "default": "db"}}
    store.put_policy(json.dumps(policy), "t")
    with_policy = store.fleet_delta(delta.changes, 10)
    assert with_policy is not None
    assert with_policy.policy_changed
    assert with_policy.policy is not None
    assert with_policy.policy == store.fleet().policy
    store.delete_policy("t")
    without = store.fleet_delta(delta.changes, 10)
    assert without is not None
    assert (without.policy_changed, without.policy) == (True, None)


def test_a_change_of_a_kind_the_delta_does_not_carry_means_read_it_all(store: SqlStore) -> None:
    store.create_token("ops", Role.ADMIN, "t")
    data = store.fleet()
    with store._database.write("an unknown change") as db:
        store._changed(db, "something-new", "x")
    assert store.fleet_delta(data.changes, 10) is None
