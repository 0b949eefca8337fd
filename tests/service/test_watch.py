"""Long-poll watches (GCE semantics), and a change waking exactly the affected watchers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from netpersona.service import create_app
from netpersona.store import Role, SqliteStore
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio

PERSONA = "/v1/instance/network_persona"
PEERS = "/v1/instance/peers"
INSTANCE = "/v1/instance"


async def etag_of(service: Service, address: str, path: str) -> str:
    async with await service.vm(address) as vm:
        return (await vm.get(path)).headers["etag"]


async def watch(
    service: Service, address: str, path: str, etag: str, timeout: int = 10
) -> httpx.Response:
    async with await service.vm(address) as vm:
        return await vm.get(
            path,
            params={"wait_for_change": "true", "last_etag": etag, "timeout_sec": timeout},
            timeout=timeout + 5,
        )


async def until_waiting(service: Service, count: int) -> None:
    notifier = service.app.state.netpersona.fleet.notifier
    for _ in range(1000):
        if notifier.waiting() == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{notifier.waiting()} watchers waiting, expected {count}")


async def woken_by(
    service: Service, watches: dict[str, tuple[str, str]], change: object
) -> set[str]:
    """Start one watcher per entry (address, path) with its current ETag, make ``change``
    (an awaitable), and name the watchers that returned with a new ETag soon after."""
    etags = {name: await etag_of(service, a, p) for name, (a, p) in watches.items()}
    tasks = {
        name: asyncio.create_task(watch(service, a, p, etags[name]))
        for name, (a, p) in watches.items()
    }
    await until_waiting(service, len(tasks))
    await change  # type: ignore[misc]
    # Woken watchers answer within milliseconds; wait until no more answers come for 0.5 s
    # (unwoken ones would answer only at their 10 s timeout).
    answered, quiet = -1, 0
    while quiet < 10:
        await asyncio.sleep(0.05)
        now = sum(task.done() for task in tasks.values())
        answered, quiet = now, (quiet + 1 if now == answered else 0)
    woken = set()
    for name, task in tasks.items():
        if task.done():
            response = task.result()
            assert response.status_code == 200
            assert response.headers["etag"] != etags[name]
            woken.add(name)
        else:
            task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    return woken


async def test_a_differing_etag_returns_at_once(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    start = time.monotonic()
    response = await watch(service, "10.0.0.1", PERSONA, '"stale"', timeout=30)
    assert time.monotonic() - start < 2
    assert response.json()["name"] is None


async def test_an_unchanged_value_returns_after_the_timeout(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    etag = await etag_of(service, "10.0.0.1", PERSONA)
    start = time.monotonic()
    response = await watch(service, "10.0.0.1", PERSONA, etag, timeout=1)
    assert 0.9 < time.monotonic() - start < 3
    assert response.status_code == 200
    assert response.headers["etag"] == etag


async def test_a_watch_returns_when_the_persona_changes(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    await service.put_persona("web", persona_doc(1))
    await service.pin("vm1", "web")
    etag = await etag_of(service, "10.0.0.1", PERSONA)
    task = asyncio.create_task(watch(service, "10.0.0.1", PERSONA, etag, timeout=30))
    await until_waiting(service, 1)
    start = time.monotonic()
    await service.put_persona("web", persona_doc(5))
    response = await task
    assert time.monotonic() - start < 2
    assert response.json()["version"] == 2
    assert response.json()["network_persona"]["priority"] == 5


async def _fleet(service: Service) -> None:
    """a, b hold db; c holds web; d holds nothing; e's peers = persona db;
    f's peers = persona web; g's peers = label app=backup."""
    for n, name in enumerate("abcdefg", start=1):
        await service.add_instance(name, f"10.0.0.{n}")
    await service.put_persona("db", persona_doc(6))
    await service.put_persona("web", persona_doc(2))
    await service.put_persona("to-db", persona_doc(3, mode="restricted", peers=[{"persona": "db"}]))
    await service.put_persona(
        "to-web", persona_doc(3, mode="restricted", peers=[{"persona": "web"}])
    )
    await service.put_persona(
        "to-backup", persona_doc(3, mode="restricted", peers=[{"labels": {"app": "backup"}}])
    )
    for instance, persona in (
        ("a", "db"),
        ("b", "db"),
        ("c", "web"),
        ("e", "to-db"),
        ("f", "to-web"),
        ("g", "to-backup"),
    ):
        await service.pin(instance, persona)


EVERY_WATCH = {
    "a.persona": ("10.0.0.1", PERSONA),
    "b.persona": ("10.0.0.2", PERSONA),
    "c.persona": ("10.0.0.3", PERSONA),
    "c.instance": ("10.0.0.3", INSTANCE),
    "d.persona": ("10.0.0.4", PERSONA),
    "e.peers": ("10.0.0.5", PEERS),
    "f.peers": ("10.0.0.6", PEERS),
    "g.peers": ("10.0.0.7", PEERS),
}


async def test_a_persona_change_wakes_its_holders_and_their_peers_only(
    service: Service,
) -> None:
    await _fleet(service)
    woken = await woken_by(service, EVERY_WATCH, service.put_persona("db", persona_doc(7)))
    # a and b hold db; e sees a and b as peers, whose priority changed; f and g (priority 3)
    # have a and b in their priority summary (same network), whose priority changed.
    assert woken == {"a.persona", "b.persona", "e.peers", "f.peers", "g.peers"}


async def test_a_priority_change_wakes_the_summaries_it_enters_and_no_others(
    service: Service,
) -> None:
    await _fleet(service)
    # web (c) 2 -> 1 (a new version, in c's instance view): still below e and g (3), so of
    # the peer views only f's, which allows c, changes.
    woken = await woken_by(service, EVERY_WATCH, service.put_persona("web", persona_doc(1)))
    assert woken == {"c.instance", "c.persona", "f.peers"}
    # web 1 -> 4: now above e and g, whose priority summaries gain c though they do not
    # allow it.
    woken = await woken_by(service, EVERY_WATCH, service.put_persona("web", persona_doc(4)))
    assert woken == {"c.instance", "c.persona", "e.peers", "f.peers", "g.peers"}


async def test_a_pin_wakes_the_instance_and_the_peers_that_now_match_it(
    service: Service,
) -> None:
    await _fleet(service)
    woken = await woken_by(service, EVERY_WATCH, service.pin("d", "web"))
    # f's selector now matches d; e and g gain d as a gossip seed (d now holds a certificate,
    # and in a fleet this small every VM that gossips is everyone's seed).
    assert woken == {"d.persona", "e.peers", "f.peers", "g.peers"}


async def test_a_label_wakes_the_instance_view_and_matching_peer_views_only(
    service: Service,
) -> None:
    await _fleet(service)

    async def label() -> None:
        async with service.admin(Role.OPERATOR) as admin:
            response = await admin.patch("/v1/admin/instances/c/labels", json={"app": "backup"})
            assert response.status_code == 200

    woken = await woken_by(service, EVERY_WATCH, label())
    # c's persona did not change; g's label selector now matches c; f sees c (web) and its
    # labels, which changed.
    assert woken == {"c.instance", "g.peers", "f.peers"}


async def test_a_change_nobody_can_see_wakes_nobody(service: Service) -> None:
    await _fleet(service)

    async def unrelated() -> None:
        await service.put_persona("to-backup-v2", persona_doc(1))
        async with service.admin(Role.OPERATOR) as admin:
            await admin.put("/v1/admin/context/threat_level", json={"value": "high"})

    assert await woken_by(service, EVERY_WATCH, unrelated()) == set()


async def test_a_restarted_service_resumes_watches_by_etag(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "np.db")
    secret = store.create_token("t", Role.ADMIN, "t")[1]
    first = Service(create_app(store), store, {Role.ADMIN: secret})
    await first.add_instance("vm1", "10.0.0.1")
    await first.put_persona("web", persona_doc(1))
    await first.pin("vm1", "web")
    etag = await etag_of(first, "10.0.0.1", PERSONA)
    store.close()

    reopened = SqliteStore(tmp_path / "np.db")
    second = Service(create_app(reopened), reopened, {Role.ADMIN: secret})
    try:
        # Same content after the restart: the old ETag is still current, so the watch waits.
        quiet = await watch(second, "10.0.0.1", PERSONA, etag, timeout=1)
        assert quiet.headers["etag"] == etag
        task = asyncio.create_task(watch(second, "10.0.0.1", PERSONA, etag, timeout=30))
        await until_waiting(second, 1)
        await second.put_persona("web", persona_doc(4))
        assert (await task).json()["version"] == 2
    finally:
        reopened.close()
