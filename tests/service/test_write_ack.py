"""A write is answered once it is committed; what it changes follows (docs/deployment.md).

In a fleet larger than ``INLINE_BUILD`` a persona, policy or context write is answered before
the fleet view is built again. These tests set it to 0, so that a five-instance fleet takes
that path, and hold the build (or the certificate batches) at a gate, so that "before the
view is built" is a state the test controls, not a race it hopes to win.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from netpersona.service import fleet as fleet_module
from netpersona.service.fleet import Fleet
from tests.service.conftest import Service, persona_doc
from tests.service.test_certificates import CERT, CertService, _watch, certified
from tests.service.test_policy import FLEET, POLICY, _persona, _set_context, _setup
from tests.service.test_watch import until_waiting

pytestmark = pytest.mark.anyio

__all__ = ["certified"]  # the fixture, used here too

PERSONA = "/v1/instance/network_persona"


class Gate:
    """Holds every call of ``name`` on ``target`` (in its worker thread) while closed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.opened = threading.Event()
        self.opened.set()
        self.held = threading.Event()  # a call is waiting at the gate
        original: Callable[..., Any] = getattr(target, name)

        def gated(*args: Any) -> Any:
            if not self.opened.is_set():
                self.held.set()
                self.opened.wait(60)
            return original(*args)

        monkeypatch.setattr(target, name, gated)

    def close(self) -> None:
        self.held.clear()
        self.opened.clear()

    def open(self) -> None:
        self.opened.set()

    async def until_held(self) -> None:
        for _ in range(600):
            if self.held.is_set():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("nothing reached the gate")


@pytest.fixture
def gate(service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """The view builds' read of what changed since the last view, held while the gate is
    closed."""
    monkeypatch.setattr(fleet_module, "INLINE_BUILD", 0)
    found = Gate(monkeypatch, service.store, "fleet_delta")
    try:
        yield found
    finally:
        found.open()


async def _admin_view(service: Service, instance_id: str) -> dict[str, Any]:
    async with service.admin() as admin:
        response = await admin.get(f"/v1/admin/instances/{instance_id}/view")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["persona"]["body"]
    return body


async def _explain(service: Service, instance_id: str) -> dict[str, Any]:
    async with service.admin() as admin:
        response = await admin.get(f"/v1/admin/instances/{instance_id}/explain")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _put_policy(service: Service, default: str) -> None:
    body = {"persona_policy": {**POLICY["persona_policy"], "default": default}}
    async with service.admin() as admin:
        response = await admin.put("/v1/admin/policy", json=body)
    assert response.status_code == 200, response.text


def _changes(service: Service) -> list[tuple[str, Callable[[], Awaitable[object]], str]]:
    """(what, the write, the instance whose persona it changes)."""
    return [
        ("persona", lambda: service.put_persona("api", persona_doc(5)), "x1"),
        ("policy", lambda: _put_policy(service, "api"), "s1"),
        ("context", lambda: _set_context(service, "threat_level", "elevated"), "w1"),
    ]


async def test_an_admin_read_after_a_write_sees_it_though_the_view_is_built_after_the_answer(
    service: Service, gate: Gate
) -> None:
    await _setup(service)
    for what, write, instance_id in _changes(service):
        explained_before = await _explain(service, instance_id)  # (all earlier writes built)
        before = await _persona(service, instance_id)
        gate.close()
        await write()  # answered while the build is held at the gate
        await gate.until_held()
        # VMs are served the view as it was until the new one is published...
        assert await _persona(service, instance_id) == before, what
        # ...and an admin read waits for the view that includes the write.
        read = asyncio.create_task(_admin_view(service, instance_id))
        explained = asyncio.create_task(_explain(service, instance_id))
        await asyncio.sleep(0.3)
        assert not read.done(), what
        assert not explained.done(), what
        gate.open()
        after = await asyncio.wait_for(read, 30)
        assert after != before, what
        assert await _persona(service, instance_id) == after, what
        # The engine's explanation has seen the write too.
        assert (await asyncio.wait_for(explained, 30)) != explained_before, what


async def test_a_refused_write_changes_nothing_though_the_view_is_built_after_the_answer(
    service: Service, gate: Gate
) -> None:
    await _setup(service)
    await _admin_view(service, "w1")  # (waits for the setup's views)
    served = {i: await _persona(service, i) for i in FLEET}
    audited = service.store.list_audit(1).items
    async with service.admin() as admin:
        refused = [
            # A policy naming a persona that does not exist.
            await admin.put(
                "/v1/admin/policy",
                json={"persona_policy": {**POLICY["persona_policy"], "default": "nosuch"}},
            ),
            # A context value the policy does not declare.
            await admin.put("/v1/admin/context/threat_level", json={"value": "extreme"}),
            # A persona document that does not validate.
            await admin.put(
                "/v1/admin/personas/api",
                json={"network_persona": {**persona_doc(4)["network_persona"], "priority": 9}},
            ),
            # A persona the policy names.
            await admin.delete("/v1/admin/personas/db"),
        ]
    for response, named in zip(refused, ("nosuch", "extreme", "priority", "db"), strict=True):
        assert 400 <= response.status_code < 500, response.text
        assert named in response.text
    assert service.store.list_audit(1).items == audited
    gate.close()  # no build may be waiting: every refusal came before the commit
    assert {i: await _persona(service, i) for i in FLEET} == served
    assert not gate.held.is_set()


async def _cert_persona(service: CertService, address: str) -> tuple[str, int]:
    body = await service.certificate(address)
    cert = await service.verify(address, body["certificate"])
    return cert.persona, cert.persona_version


@pytest.mark.parametrize("inline_build", [1000, 0], ids=["built-inline", "built-after"])
async def test_a_vm_that_sees_a_new_persona_gets_its_certificate_though_batches_lag(
    certified: CertService, monkeypatch: pytest.MonkeyPatch, inline_build: int
) -> None:
    monkeypatch.setattr(fleet_module, "INLINE_BUILD", inline_build)
    await certified.put_persona("web", persona_doc(2))
    addresses = {f"w{n}": f"10.0.0.{n}" for n in range(1, 7)}
    for instance_id, address in addresses.items():
        await certified.add_instance(instance_id, address)
        await certified.pin(instance_id, "web")
    await _admin_view(certified, "w1")  # (built after the answers: wait for the views)
    for address in addresses.values():
        assert await _cert_persona(certified, address) == ("web", 1)

    # A change of more than INLINE_CERTIFICATES: its certificates go to background batches,
    # which are held at a gate, so only what the VMs' requests bring about issues them.
    monkeypatch.setattr(fleet_module, "INLINE_CERTIFICATES", 1)
    fleet: Fleet = certified.fleet
    batches = Gate(monkeypatch, fleet, "_renew")
    watched = addresses["w6"]
    cert_watch = await _watch(certified, watched, CERT)
    persona_watch = await _watch(certified, watched, PERSONA)
    await until_waiting(certified, 2)
    batches.close()
    try:
        await certified.put_persona("web", persona_doc(3))
        # The watcher of a certificate is woken with the new one when (or before) the watcher
        # of the persona is woken with the persona it certifies.
        persona = (await asyncio.wait_for(persona_watch, 30)).json()
        assert (persona["name"], persona["version"]) == ("web", 2)
        # (Held batches: nothing else can issue it.)
        body = (await asyncio.wait_for(cert_watch, 30)).json()
        assert (await certified.verify(watched, body["certificate"])).persona_version == 2
        # Every VM that sees the new persona gets a certificate of it on its next GET.
        for address in addresses.values():
            async with await certified.vm(address) as vm:
                assert (await vm.get(PERSONA)).json()["version"] == 2
            assert await _cert_persona(certified, address) == ("web", 2)
        await batches.until_held()  # the batches were due all along, and are still held
    finally:
        batches.open()
    await fleet.renew()
    for address in addresses.values():  # what the batches issue later is the same
        assert await _cert_persona(certified, address) == ("web", 2)
