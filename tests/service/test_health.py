"""``/healthz`` and ``/readyz`` on both engines, and what stopping does to held long-polls."""

from __future__ import annotations

import asyncio

import pytest

from netpersona.service.health import begin_shutdown
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio

PERSONA = "/v1/instance/network_persona"


async def _ready(service: Service) -> None:
    async with service.anonymous("192.0.2.7") as anyone:
        for _ in range(1000):
            answer = await anyone.get("/readyz")
            if answer.status_code == 200:
                assert answer.json() == {"status": "ready"}
                return
            assert answer.status_code == 503
            assert answer.json()["reason"]
            await asyncio.sleep(0.02)
    raise AssertionError("the service did not become ready within 20 s")


async def test_health_needs_no_token_and_readiness_follows_the_service(service: Service) -> None:
    app = service.app
    async with app.router.lifespan_context(app), service.anonymous("192.0.2.7") as anyone:
        health = await anyone.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        await _ready(service)
        begin_shutdown(app)
        stopping = await anyone.get("/readyz")
        assert stopping.status_code == 503
        assert stopping.json() == {"status": "unready", "reason": "the service is stopping"}
        assert (await anyone.get("/healthz")).status_code == 200


async def test_stopping_answers_held_long_polls_with_their_current_value(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    await service.put_persona("web", persona_doc(2))
    await service.pin("vm1", "web")
    async with await service.vm("10.0.0.1") as vm:
        etag = (await vm.get(PERSONA)).headers["etag"]
        watch = {"wait_for_change": "true", "last_etag": etag, "timeout_sec": "600"}
        held = asyncio.create_task(vm.get(PERSONA, params=watch, timeout=700))
        notifier = service.app.state.netpersona.fleet.notifier
        for _ in range(1000):
            if notifier.waiting() == 1:
                break
            await asyncio.sleep(0.01)
        assert notifier.waiting() == 1
        begin_shutdown(service.app)
        answer = await asyncio.wait_for(held, 60)
        assert (answer.status_code, answer.headers["etag"]) == (200, etag)
        # A watch that comes later does not wait either.
        later = await asyncio.wait_for(vm.get(PERSONA, params=watch, timeout=700), 60)
        assert (later.status_code, later.headers["etag"]) == (200, etag)
