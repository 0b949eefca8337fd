"""The running service prunes its change sequence on a timer (on both engines), keeping the
newest changes, so the table replicas catch up from does not grow without end."""

from __future__ import annotations

import asyncio

import pytest

from netpersona.service import app as app_module
from netpersona.store.base import PRUNED_CHANGES
from tests.service.conftest import Service

pytestmark = pytest.mark.anyio


async def test_the_service_prunes_old_changes_and_keeps_the_newest(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "PRUNE_INTERVAL", 0.05)
    monkeypatch.setattr(app_module, "KEEP_CHANGES_FOR", 0.0)
    monkeypatch.setattr(app_module, "KEEP_CHANGES", 2)
    store = service.store
    async with service.app.router.lifespan_context(service.app):
        for i in range(5):
            await service.add_instance(f"vm{i}", f"10.0.0.{i + 1}")
        newest = store.last_change()
        for _ in range(1500):
            kept = store.changes_since(0)
            if kept and kept[0].kind == PRUNED_CHANGES and len(kept) == 3:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"not pruned within 30 s: {kept}")
    assert [c.kind for c in kept[1:]] == ["instance", "instance"]
    assert kept[-1].seq == newest
    # The view it serves is whole: every instance is still known.
    assert sorted(service.app.state.netpersona.fleet.view.instances) == [f"vm{i}" for i in range(5)]
