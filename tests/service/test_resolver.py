"""The seam a policy engine plugs into: its own effective-persona resolver, same wake-up path."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from netpersona.records import EffectivePersona
from netpersona.service import create_app
from netpersona.service.views import ViewKind
from netpersona.store import FleetData, Role, SqliteStore
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio


class ByRoleLabel:
    """A toy policy: an instance labelled role=X holds persona X; ``override`` beats labels."""

    def __init__(self) -> None:
        self.override: str | None = None

    def resolve(self, data: FleetData) -> Mapping[str, EffectivePersona]:
        chosen = {}
        for instance in data.instances:
            name = self.override or instance.label_map.get("role")
            if name is not None and name in data.personas:
                chosen[instance.id] = data.personas[name].effective()
        return chosen


async def test_a_resolver_decides_and_its_changes_wake_exactly_the_affected(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "np.db")
    policy = ByRoleLabel()
    secret = store.create_token("t", Role.ADMIN, "t")[1]
    service = Service(create_app(store, resolver=policy), store, {Role.ADMIN: secret})
    try:
        await service.add_instance("a", "10.0.0.1", {"role": "db"})
        await service.add_instance("b", "10.0.0.2", {"role": "web"})
        await service.put_persona("db", persona_doc(6))
        await service.put_persona("web", persona_doc(2))
        await service.put_persona("lockdown", persona_doc(7))
        async with await service.vm("10.0.0.1") as a:
            assert (await a.get("/v1/instance/network_persona")).json()["name"] == "db"

        fleet = service.app.state.netpersona.fleet
        watched = {(ViewKind.PERSONA, "a"), (ViewKind.PERSONA, "b")}
        etags = {key: fleet.view.view(key).etag for key in watched}
        waits = [
            asyncio.create_task(fleet.notifier.wait(key, etags[key], 30)) for key in sorted(watched)
        ]
        await asyncio.sleep(0.05)
        # A label change is a write: the resolver runs again and only a's view changes.
        async with service.admin() as admin:
            await admin.patch("/v1/admin/instances/a/labels", json={"role": "web"})
        woken = await asyncio.wait_for(waits[0], 5)
        assert woken is not None
        assert b'"name":"web"' in woken.body
        await asyncio.sleep(0.1)
        assert not waits[1].done()

        # An input outside the store (the policy's own) changes: refresh() is the wake-up path.
        policy.override = "lockdown"
        # Only b is still watched (a's watch returned); a's view changed too but wakes nobody.
        assert await fleet.refresh() == {(ViewKind.PERSONA, "b")}
        assert b'"name":"lockdown"' in (await waits[1]).body
    finally:
        store.close()
