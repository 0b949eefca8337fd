"""Two replicas of the service (two apps, two stores) on one PostgreSQL database: a write made
through one wakes the watchers held by the other, also after its listening connection was
killed; a VM that saw a newer revision on one is not served an older view by the other;
concurrent If-Match writes through both lose no update; health and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from netpersona.service import create_app
from netpersona.service.auth import TOKEN_TTL_HEADER
from netpersona.service.fleet import INLINE_CERTIFICATES
from netpersona.service.replication import ChangeFollower, Listener
from netpersona.service.vm_api import REVISION_HEADER
from netpersona.store import FleetData, Instance, Role
from netpersona.store.base import PRUNED_CHANGES
from netpersona.store.postgres import PostgresStore
from netpersona.store.postgres.listener import LISTENER_NAME
from tests.service.conftest import Service, persona_doc
from tests.store.pg_cluster import PgCluster

pytestmark = pytest.mark.anyio

PERSONA = "/v1/instance/network_persona"


@dataclass
class Replica:
    service: Service

    @property
    def follower(self) -> ChangeFollower:
        follower = self.service.app.state.netpersona.follower
        assert isinstance(follower, ChangeFollower)
        return follower

    async def until_listening(self) -> int:
        for _ in range(1000):
            connected = self.follower.connected
            if connected is not None and self.follower.last_seen is not None:
                pid = connected.backend_pid
                assert pid is not None
                return pid
            await asyncio.sleep(0.02)
        raise AssertionError("the replica did not start listening within 20 s")


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    with pg_cluster.database() as url:
        yield url


@contextlib.asynccontextmanager
async def replicas(url: str, count: int = 2) -> AsyncIterator[list[Replica]]:
    """``count`` running replicas (each its own store and app, lifespan started)."""
    stores = [PostgresStore(url) for _ in range(count)]
    secrets = {role: stores[0].create_token(f"test-{role.value}", role, "test")[1] for role in Role}
    try:
        async with contextlib.AsyncExitStack() as stack:
            running = []
            for store in stores:
                app = create_app(store)
                await stack.enter_async_context(app.router.lifespan_context(app))
                running.append(Replica(Service(app, store, secrets)))
            for replica in running:
                await replica.until_listening()
            yield running
    finally:
        for store in stores:
            store.close()


async def watch(service: Service, address: str, etag: str, timeout: int = 60) -> httpx.Response:
    async with await service.vm(address) as vm:
        return await vm.get(
            PERSONA,
            params={"wait_for_change": "true", "last_etag": etag, "timeout_sec": timeout},
            timeout=timeout + 10,
        )


async def until_waiting(service: Service, count: int) -> None:
    notifier = service.app.state.netpersona.fleet.notifier
    for _ in range(2000):
        if notifier.waiting() == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{notifier.waiting()} watchers waiting, expected {count}")


async def until(condition: object, what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {seconds} s: {what}")


def _served(replica: Replica, instance_id: str) -> tuple[str | None, int | None] | None:
    """The persona name and version ``replica`` serves ``instance_id`` (None: unknown)."""
    effective = replica.service.app.state.netpersona.fleet.view.effective.get(instance_id)
    return None if effective is None else (effective.name, effective.version)


async def test_a_write_through_one_replica_wakes_a_watcher_on_the_other(pg_url: str) -> None:
    async with replicas(pg_url) as (a, b):
        await a.service.add_instance("vm1", "10.0.0.1")
        await a.service.put_persona("web", persona_doc(1))
        await a.service.pin("vm1", "web")
        # What was written through a reaches b's view (b identifies the VM by its address).
        await until(lambda: _served(b, "vm1") == ("web", 1), "vm1 holding web v1 on b")
        async with await b.service.vm("10.0.0.1") as vm:
            etag = (await vm.get(PERSONA)).headers["etag"]
        task = asyncio.create_task(watch(b.service, "10.0.0.1", etag))
        await until_waiting(b.service, 1)
        await a.service.put_persona("web", persona_doc(5))
        response = await asyncio.wait_for(task, 30)
        assert response.json()["version"] == 2
        assert response.json()["network_persona"]["priority"] == 5


@contextlib.asynccontextmanager
async def deafened(replica: Replica, url: str) -> AsyncIterator[int]:
    """``replica`` hears no notification inside: its listening connection is killed and its
    reconnection held until the block ends, and no timer catches up meanwhile. Yields the
    killed connection's backend pid."""
    follower = replica.follower
    follower.interval = 3600
    gate = asyncio.Event()
    connect = follower.listener

    @contextlib.asynccontextmanager
    async def gated() -> AsyncIterator[Listener]:
        await gate.wait()
        async with connect() as listener:
            yield listener

    follower.listener = gated
    old_pid = await replica.until_listening()
    with psycopg.connect(url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid = %s AND application_name = %s",
            (old_pid, LISTENER_NAME),
        ).fetchall()
    assert killed == [(True,)]
    await until(lambda: follower.connected is None, "the replica notices its listener is gone")
    try:
        yield old_pid
    finally:
        gate.set()


async def test_a_write_made_while_the_listener_was_down_is_still_delivered(pg_url: str) -> None:
    async with replicas(pg_url) as (a, b):
        await a.service.add_instance("vm1", "10.0.0.1")
        await a.service.put_persona("web", persona_doc(1))
        await a.service.pin("vm1", "web")
        await until(lambda: _served(b, "vm1") == ("web", 1), "vm1 holding web v1 on b")
        async with await b.service.vm("10.0.0.1") as vm:
            etag = (await vm.get(PERSONA)).headers["etag"]
        task = asyncio.create_task(watch(b.service, "10.0.0.1", etag))
        await until_waiting(b.service, 1)

        async with deafened(b, pg_url) as old_pid:
            await a.service.put_persona("web", persona_doc(6))
            await asyncio.sleep(1)
            assert not task.done()  # nothing told b yet

        response = await asyncio.wait_for(task, 30)
        assert response.json()["version"] == 2
        assert response.json()["network_persona"]["priority"] == 6
        assert await b.until_listening() != old_pid


async def test_a_vm_created_through_another_replica_is_known_at_its_first_request(
    pg_url: str,
) -> None:
    """A VM added through a asks b before b heard of it (the notification lost): b catches up
    on the unknown address instead of refusing the new VM until the next timer; an address
    no instance owns is still refused."""
    async with replicas(pg_url) as (a, b):
        await a.service.add_instance("vm1", "10.0.0.1")
        await until(lambda: b.service.app.state.netpersona.fleet.view.instances, "vm1 on b")
        async with deafened(b, pg_url):
            await a.service.add_instance("vm2", "10.0.0.2")
            assert "vm2" not in b.service.app.state.netpersona.fleet.view.instances
            async with await b.service.vm("10.0.0.2") as vm:  # its token: 200, not 403
                answer = await vm.get("/v1/instance")
            assert answer.status_code == 200
            assert answer.json()["id"] == "vm2"
            async with b.service.anonymous("10.0.0.9") as stranger:
                refused = await stranger.put("/v1/token", headers={TOKEN_TTL_HEADER: "60"})
            assert refused.status_code == 403
            assert "10.0.0.9" in refused.json()["error"]["message"]


async def test_a_vm_that_saw_a_newer_revision_is_not_served_an_older_view_by_another_replica(
    pg_url: str,
) -> None:
    """b has not heard of the write a VM was served by a: asked with ``min_revision``, b reads
    the store first (once for a burst of such requests, and not again for the same revision)
    and answers the new persona, also to a long-poll; a revision b can never reach (a restored
    database) gets b's view as it is."""
    async with replicas(pg_url) as (a, b):
        await a.service.add_instance("vm1", "10.0.0.1")
        await a.service.put_persona("web", persona_doc(1))
        await a.service.pin("vm1", "web")
        await until(lambda: _served(b, "vm1") == ("web", 1), "vm1 holding web v1 on b")
        async with (
            deafened(b, pg_url),
            await a.service.vm("10.0.0.1") as on_a,
            await b.service.vm("10.0.0.1") as on_b,
        ):
            await a.service.put_persona("web", persona_doc(6))
            new = await on_a.get(PERSONA)
            assert new.json()["version"] == 2
            seen = int(new.headers[REVISION_HEADER])
            stale = await on_b.get(PERSONA)
            assert stale.json()["version"] == 1  # b has not heard of it
            assert int(stale.headers[REVISION_HEADER]) < seen

            reads = b.follower.reads
            burst = await asyncio.gather(
                *(on_b.get(PERSONA, params={"min_revision": seen}) for _ in range(20))
            )
            for answer in burst:
                assert answer.json()["version"] == 2
                assert answer.headers["etag"] == new.headers["etag"]
                assert int(answer.headers[REVISION_HEADER]) >= seen
            assert b.follower.reads == reads + 1
            again = await on_b.get(PERSONA, params={"min_revision": seen})
            assert again.json()["version"] == 2
            assert b.follower.reads == reads + 1

            await a.service.put_persona("web", persona_doc(7))
            newer = await on_a.get(PERSONA)
            held = await on_b.get(
                PERSONA,
                params={
                    "wait_for_change": "true",
                    "last_etag": new.headers["etag"],
                    "timeout_sec": 60,
                    "min_revision": newer.headers[REVISION_HEADER],
                },
                timeout=70,
            )
            assert held.json()["version"] == 3
            assert held.headers[REVISION_HEADER] == newer.headers[REVISION_HEADER]

            beyond = await on_b.get(PERSONA, params={"min_revision": 10**17})
            assert beyond.status_code == 200
            assert beyond.json()["version"] == 3
            assert int(beyond.headers[REVISION_HEADER]) < 10**17


async def test_a_vm_that_saw_a_write_elsewhere_waits_for_its_view_on_the_replica_that_made_it(
    pg_url: str,
) -> None:
    """a made the write, but its view is not published yet when b (which heard of it) has
    served it: asked with ``min_revision``, a waits for its own view instead of answering the
    one before (the catch-up finds nothing to build: a built it already)."""
    async with replicas(pg_url) as (a, b):
        await a.service.add_instance("vm1", "10.0.0.1")
        await a.service.put_persona("web", persona_doc(1))
        await a.service.pin("vm1", "web")
        await until(lambda: _served(b, "vm1") == ("web", 1), "vm1 holding web v1 on b")
        fleet = a.service.app.state.netpersona.fleet
        publish = fleet._publish

        async def late(*args: object) -> object:
            await asyncio.sleep(0.5)  # the write's thread is back on a's loop, a moment late
            return await publish(*args)

        fleet._publish = late
        write = asyncio.create_task(a.service.put_persona("web", persona_doc(6)))
        try:
            await until(lambda: _served(b, "vm1") == ("web", 2), "b heard of the write")
            assert _served(a, "vm1") == ("web", 1)
            async with (
                await a.service.vm("10.0.0.1") as on_a,
                await b.service.vm("10.0.0.1") as on_b,
            ):
                seen = (await on_b.get(PERSONA)).headers[REVISION_HEADER]
                answer = await on_a.get(PERSONA, params={"min_revision": seen})
            assert answer.json()["version"] == 2
            assert answer.headers[REVISION_HEADER] == seen
        finally:
            await write
            fleet._publish = publish


async def test_a_replica_behind_the_pruned_changes_reads_the_fleet_again(pg_url: str) -> None:
    """Its listener was away while the changes it missed were pruned: when it catches up it
    learns so, and serves what the store holds rather than an incomplete delta."""
    async with replicas(pg_url) as (a, b):
        await a.service.add_instance("vm1", "10.0.0.1")
        await a.service.put_persona("web", persona_doc(1))
        await a.service.pin("vm1", "web")
        await until(lambda: _served(b, "vm1") == ("web", 1), "vm1 holding web v1 on b")
        async with deafened(b, pg_url):
            await a.service.put_persona("web", persona_doc(7))
            await a.service.add_instance("vm2", "10.0.0.2")
            store = a.service.store
            assert store.prune_changes(0, time.time() + 60) > 0
            assert store.changes_since(0)[0].kind == PRUNED_CHANGES
        await until(lambda: _served(b, "vm1") == ("web", 2), "b serves web v2")
        assert "vm2" in b.service.app.state.netpersona.fleet.view.instances


async def test_the_timer_catches_up_when_a_notification_never_comes(pg_url: str) -> None:
    """The safety net: a change committed without a NOTIFY reaching anyone (here, written
    straight into the change sequence, as a lost notification looks) is found by the timer."""
    async with replicas(pg_url) as (a, b):
        b.follower.interval = 0.5
        await a.service.add_instance("vm1", "10.0.0.1")
        await until(lambda: b.service.app.state.netpersona.fleet.view.instances, "vm1 on b")
        before = b.follower.catch_ups
        with psycopg.connect(pg_url, autocommit=True) as direct:
            direct.execute("INSERT INTO changes (kind, key, at) VALUES ('instance', 'vm1', 0)")
        await until(lambda: b.follower.catch_ups > before, "b reads the silent change")


async def test_a_replica_does_not_re_read_the_fleet_for_its_own_write(pg_url: str) -> None:
    """Its follower hears its own write too; the newest audit entry shows the view has it, so
    the whole fleet is not read again (at 10,000 instances that read competes with the
    answers to the woken watchers)."""
    async with replicas(pg_url) as (a, _b):
        await a.service.add_instance("vm1", "10.0.0.1")
        await until(lambda: a.follower.last_seen == a.service.store.last_change(), "caught up")
        store = a.service.store
        reads = 0
        fleet = store.fleet

        def counted() -> FleetData:
            nonlocal reads
            reads += 1
            return fleet()

        store.fleet = counted  # type: ignore[method-assign]
        await a.service.put_persona("web", persona_doc(1))
        await until(lambda: a.follower.last_seen == store.last_change(), "a hears its write")
        await asyncio.sleep(0.2)
        assert reads <= 1  # the write's own build (if it reads the whole fleet at all)


async def test_a_change_of_many_instances_is_certified_on_the_other_replica(pg_url: str) -> None:
    """More instances than a write waits for: the follower publishes at once and issues their
    certificates in the background, and goes on following meanwhile."""
    count = INLINE_CERTIFICATES + 6
    async with replicas(pg_url) as (a, b):
        await a.service.put_persona("web", persona_doc(1))
        specs = [Instance(f"vm{i}", "", (f"10.0.1.{i + 1}",), pin="web") for i in range(count)]
        a.service.store.import_instances(specs, "test")  # through the store: a follows it too
        b_fleet = b.service.app.state.netpersona.fleet

        def certified() -> dict[str, str]:
            held = b_fleet.view.certificates
            return {i: held[i].etag for i in (s.id for s in specs) if i in held}

        await until(lambda: len(certified()) == count, "b certifies every instance")
        before = certified()
        await a.service.put_persona("web", persona_doc(2))
        await until(lambda: _served(b, "vm0") == ("web", 2), "b serves web v2")
        await a.service.add_instance("late", "10.0.2.1")  # followed while b still signs
        await until(lambda: "late" in b_fleet.view.instances, "b follows the next write")
        await until(
            lambda: (
                all(before[i] != e for i, e in certified().items()) and len(certified()) == count
            ),
            "b re-issues every certificate",
        )


@pytest.mark.parametrize("rounds", [12])
async def test_if_match_races_through_two_replicas_lose_no_update(pg_url: str, rounds: int) -> None:
    async with replicas(pg_url) as (a, b):
        version = await a.service.put_persona("web", persona_doc(0))
        await a.service.add_instance("vm1", "10.0.0.1")
        revision = 1
        expected: dict[str, str] = {}
        async with a.service.admin() as via_a, b.service.admin() as via_b:
            for n in range(rounds):
                # Both replicas write the persona, and the instance's labels, from the same
                # version: exactly one of each pair may win.
                persona, labels = await asyncio.gather(
                    asyncio.gather(
                        via_a.put(
                            "/v1/admin/personas/web",
                            json=persona_doc(n % 8, protocols=("ssh", "http")),
                            headers={"If-Match": f'"v{version}"'},
                        ),
                        via_b.put(
                            "/v1/admin/personas/web",
                            json=persona_doc(n % 8, protocols=("ssh", "dns")),
                            headers={"If-Match": f'"v{version}"'},
                        ),
                    ),
                    asyncio.gather(
                        via_a.patch(
                            "/v1/admin/instances/vm1/labels",
                            json={"a": str(n)},
                            headers={"If-Match": f'"r{revision}"'},
                        ),
                        via_b.patch(
                            "/v1/admin/instances/vm1/labels",
                            json={"b": str(n)},
                            headers={"If-Match": f'"r{revision}"'},
                        ),
                    ),
                )
                for pair in (persona, labels):
                    codes = sorted(r.status_code for r in pair)
                    assert codes == [200, 412], [r.text for r in pair]
                won = next(r for r in persona if r.status_code == 200)
                assert won.json()["version"] == version + 1
                version += 1
                winner = next(r for r in labels if r.status_code == 200)
                expected["a" if winner is labels[0] else "b"] = str(n)
                revision += 1
                assert winner.json()["revision"] == revision
                assert winner.json()["labels"] == expected
            history = (await via_b.get("/v1/admin/personas/web/versions?limit=100")).json()
            assert len(history["items"]) == rounds + 1
            # Every winning patch is in the result, on top of every one before it.
            assert (await via_a.get("/v1/admin/instances/vm1")).json()["labels"] == expected


async def test_health_and_readiness(pg_url: str) -> None:
    async with replicas(pg_url, count=1) as (a,), a.service.anonymous("192.0.2.7") as anyone:
        assert (await anyone.get("/healthz")).json() == {"status": "ok"}
        ready = await anyone.get("/readyz")
        assert ready.status_code == 200, ready.text
        # A database that is behind this netpersona's schema: not ready, saying why.
        with psycopg.connect(pg_url, autocommit=True) as direct:
            direct.execute("UPDATE netpersona_schema SET version = version - 1")
            unready = await anyone.get("/readyz")
            assert unready.status_code == 503
            assert "netpersona db migrate" in unready.json()["reason"]
            direct.execute("UPDATE netpersona_schema SET version = version + 1")
        assert (await anyone.get("/readyz")).status_code == 200
