"""The change notifier's publication, as a unit: what a delivery callback sees."""

from __future__ import annotations

import asyncio
import gc

import pytest

from netpersona.records import Instance
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.views import FleetView, View, ViewKind

pytestmark = pytest.mark.anyio


async def test_answers_go_out_with_the_collector_paused_and_it_runs_again_after() -> None:
    """A collection that started in the middle of 10,000 deliveries would hold every answer
    not yet written for up to a second; the callbacks run with it held off."""
    vm = Instance("vm1", "", ("10.0.0.1",))
    old = FleetView(1, {"vm1": vm}, {}, {"10.0.0.1": "vm1"}, keys=View.of({"keys": [1]}))
    new = FleetView(2, {"vm1": vm}, {}, {"10.0.0.1": "vm1"}, keys=View.of({"keys": [2]}))
    assert old.keys is not None
    assert new.keys is not None
    notifier = ChangeNotifier(old)
    seen: list[tuple[View | None, bool]] = []
    key = (ViewKind.KEYS, "vm1")
    waiting = asyncio.create_task(
        notifier.wait(key, old.keys.etag, 30, lambda view: seen.append((view, gc.isenabled())))
    )
    while notifier.waiting() == 0:
        await asyncio.sleep(0.01)
    assert gc.isenabled()
    assert notifier.publish(new) == {key}
    assert seen == [(new.keys, False)]
    assert gc.isenabled()
    assert await asyncio.wait_for(waiting, 30) == new.keys
