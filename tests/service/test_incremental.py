"""A write updates the fleet's view from the last one (``Fleet._build_incremental``: instances,
personas, context keys and the policy from the store's delta); whatever sequence of writes,
the view is the one a full rebuild from the store makes. A second fleet on the same store
follows the writes (``Fleet.follow``, as a replica does) and ends with the same view."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netpersona.errors import NetpersonaError
from netpersona.records import Instance
from netpersona.service.assignment import PolicyPersonas
from netpersona.service.certificates import CertificateAuthority
from netpersona.service.fleet import Fleet
from netpersona.service.keyring import KeyRing, StaticKeys
from netpersona.service.views import FleetView, ViewKind, WatchKey, affected_keys
from netpersona.store import Role, SqliteStore
from tests.service.conftest import persona_doc

IDS = ("a", "b", "c", "d")
PERSONAS = ("db", "web")
POLICY = {
    "persona_policy": {
        "rules": [
            {"name": "database", "persona": "db", "match": {"matchLabels": {"app": "db"}}},
            {"name": "web", "persona": "web", "match": {"matchLabels": {"app": "web"}}},
        ],
    }
}


# Decides by the context too: an alert moves everyone unlabelled to web, and an overlay raises
# every policy-decided persona's security profile.
CONTEXT_POLICY = {
    "persona_policy": {
        "context": {"threat_level": {"values": ["low", "high"], "default": "low"}},
        "rules": [
            {"name": "database", "persona": "db", "match": {"matchLabels": {"app": "db"}}},
            {
                "name": "alert",
                "persona": "web",
                "match": {"context": {"matchLabels": {"threat_level": "high"}}},
            },
        ],
        "overlays": [
            {
                "name": "raised",
                "match": {"context": {"matchLabels": {"threat_level": "high"}}},
                "set": {"security_profile": "high"},
            }
        ],
    }
}
POLICIES = {
    "labels": POLICY,
    "context": CONTEXT_POLICY,
    "default": {"persona_policy": {"rules": [], "default": "web"}},
}


def _persona(name: str, priority: int) -> str:
    # db watches the web VMs (a peers view that follows label and persona changes).
    peers = [{"labels": {"app": "web"}}] if name == "db" else [{"persona": "db"}]
    # Unwrapped: an overlay setting security_profile fails on a wrapped document (KeyError).
    return json.dumps(persona_doc(priority, peers=peers)["network_persona"])


writes = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(IDS), st.integers(1, 3)),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(
        st.just("label"), st.sampled_from(IDS), st.sampled_from(("db", "web", "other", None))
    ),
    st.tuples(st.just("pin"), st.sampled_from(IDS), st.sampled_from((*PERSONAS, None))),
    st.tuples(st.just("address"), st.sampled_from(IDS), st.integers(1, 3)),
    st.tuples(st.just("persona"), st.sampled_from(PERSONAS), st.integers(1, 7)),
    st.tuples(st.just("unpersona"), st.sampled_from(PERSONAS)),
    st.tuples(st.just("policy"), st.sampled_from((*POLICIES, None))),
    st.tuples(st.just("context"), st.sampled_from(("low", "high", None))),
    st.tuples(
        st.just("token"),
    ),
)


def _apply(store: SqliteStore, write: tuple[Any, ...]) -> None:
    kind = write[0]
    if kind == "create":
        _, instance_id, net = write
        store.create_instance(
            Instance(instance_id, instance_id, (f"10.{net}.0.{ord(instance_id)}",)), "t"
        )
    elif kind == "delete":
        store.delete_instance(write[1], "t")
    elif kind == "label":
        store.patch_labels(write[1], {"app": write[2]}, "t")
    elif kind == "pin":
        store.set_pin(write[1], write[2], "t")
    elif kind == "address":
        old = store.get_instance(write[1])
        spec = Instance(old.id, old.name, (f"10.{write[2]}.1.{ord(old.id)}",), labels=old.labels)
        store.replace_instance(spec, "t")
    elif kind == "persona":
        store.put_persona(write[1], _persona(write[1], write[2]), "t")
    elif kind == "unpersona":
        store.delete_persona(write[1], "t")  # refused while pinned; the policy may name it
    elif kind == "policy":
        if write[1] is None:
            store.delete_policy("t")
        else:
            store.put_policy(json.dumps(POLICIES[write[1]]), "t")
    elif kind == "context":
        if write[1] is None:
            store.delete_context("threat_level", "t")
        else:
            store.set_context("threat_level", write[1], "t")
    else:
        store.create_token(f"t{time.monotonic_ns()}", Role.ADMIN, "t")


def _etag(view: FleetView, key: WatchKey) -> str | None:
    found = view.view(key)
    return None if found is None else found.etag


def _assert_same(fleet: Fleet, store: SqliteStore, leader: bool = True) -> None:
    view = fleet.view
    full = FleetView.build(store.fleet(), PolicyPersonas())
    # A follower moves its revision on with the changes that concern views only.
    assert view.revision == full.revision if leader else view.revision <= full.revision
    assert view.instances == full.instances
    assert view.by_address == full.by_address
    assert {i: e.to_json() for i, e in view.effective.items()} == {
        i: e.to_json() for i, e in full.effective.items()
    }
    for instance_id in full.instances:
        for kind in (ViewKind.INSTANCE, ViewKind.PERSONA, ViewKind.PEERS):
            assert view.view((kind, instance_id)) == full.view((kind, instance_id)), (
                kind,
                instance_id,
            )
    if not leader:
        return
    # Every instance with a persona is served the newest certificate the store holds for it
    # (issued for what it has now: checked by the certificate tests), none trailing.
    fresh = {c.instance_id: c for c in store.certificates()}
    certified = {i for i in full.instances if i in view.certificates}
    assert certified == {
        i for i in full.instances if i in full.effective and full.effective[i].persona is not None
    }
    for instance_id in certified:
        issued = fresh[instance_id]
        assert view.view((ViewKind.CERTIFICATE, instance_id)) is not None
        assert json.loads(view.certificates[instance_id].body)["seq"] == issued.seq


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(policy=st.sampled_from(tuple(POLICIES)), sequence=st.lists(writes, min_size=1, max_size=25))
# A context change under a policy that reads it, a policy replaced and deleted, a persona the
# policy names deleted and written again: always tried, whatever the random ones reach.
@example(policy="context", sequence=[("create", "b", 1), ("context", "high"), ("context", None)])
@example(
    policy="labels",
    sequence=[("label", "a", "web"), ("policy", "default"), ("unpersona", "web"), ("policy", None)],
)
@example(
    policy="default", sequence=[("unpersona", "web"), ("persona", "web", 2), ("pin", "a", "db")]
)
def test_incremental_views_equal_a_full_rebuild(
    tmp_path: Path, policy: str, sequence: list[Any]
) -> None:
    path = tmp_path / f"np{time.monotonic_ns()}.db"
    store = SqliteStore(path)
    other = None
    try:
        for name in PERSONAS:
            store.put_persona(name, _persona(name, 3), "t")
        store.put_policy(json.dumps(POLICIES[policy]), "t")
        store.create_instance(Instance("a", "a", ("10.1.0.97",), labels=(("app", "db"),)), "t")
        keys = StaticKeys(KeyRing.generate(time.time()))
        fleet = Fleet(store, authority=CertificateAuthority(store, keys))
        # A replica: its own store connection (and row cache) on the same database; without
        # certificates (one issuing into the same store would make the leader's trail).
        other = SqliteStore(path)
        follower = Fleet(other)

        def checked(fleet: Fleet) -> None:
            publish = fleet.notifier.publish

            def publish_checked(view: FleetView) -> set[WatchKey]:
                # Every published view wakes exactly the watchers whose answer it changed.
                old = fleet.notifier.view
                keys = [(k, i) for k in ViewKind for i in set(old.instances) | set(view.instances)]
                differ = {key for key in keys if _etag(old, key) != _etag(view, key)}
                assert affected_keys(old, view, keys) == differ
                return publish(view)

            fleet.notifier.publish = publish_checked  # type: ignore[method-assign]

        checked(fleet)
        checked(follower)

        async def run() -> None:
            for write in sequence:
                try:
                    await fleet.write(functools.partial(_apply, store, write))
                except NetpersonaError:
                    continue  # refused (no such instance, a clash): nothing changed
                # Made from the last view, not from a read of the whole fleet, as is the
                # follower's when it had something to follow.
                assert fleet.view.delta_from is not None
                _assert_same(fleet, store)
                followed = follower.view.generation
                await follower.follow()
                if follower.view.generation != followed:
                    assert follower.view.delta_from is not None
                _assert_same(follower, other, leader=False)

        asyncio.run(run())
    finally:
        if other is not None:
            other.close()
        store.close()
