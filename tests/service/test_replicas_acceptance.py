"""Two ``serve`` replicas on one PostgreSQL, 1,000 long-poll watchers split across them.

Changes written alternately through each replica reach every watcher; then one replica is
killed with -9 in the middle of a burst of writes through both: no acknowledged write is lost,
and its watchers (the agent's own failover client) move to the other replica and end on the
last change. Deadlines are generous; what is asserted is outcomes, not speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from netpersona.agent.client import MetadataClient
from netpersona.errors import MetadataUnavailable
from tests.service.conftest import persona_doc
from tests.service.replica_processes import serve_replicas
from tests.service.serve_process import ServeProcess
from tests.store.pg_cluster import PgCluster

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

PERSONA = "/v1/instance/network_persona"
INSTANCES = 100
WATCHERS_PER_INSTANCE = 10  # 1,000 watchers
DEADLINE = 180.0  # seconds for every watcher to see one change


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    with pg_cluster.database() as url:
        yield url


def _address(n: int) -> str:
    return f"127.0.2.{n + 1}"


class Fleet:
    """The watchers: per instance one failover client (its replica first), shared by its
    watchers; each watcher records the persona versions it was answered."""

    def __init__(self, replicas: list[ServeProcess]) -> None:
        self.clients = []
        for n in range(INSTANCES):
            own = replicas[n % 2]
            other = replicas[(n + 1) % 2]
            self.clients.append(
                MetadataClient(
                    [own.url, other.url],
                    transport=httpx.AsyncHTTPTransport(
                        local_address=_address(n), limits=httpx.Limits(max_connections=20)
                    ),
                    deadline_margin=60,
                )
            )
        self.seen: list[list[int]] = [[] for _ in range(INSTANCES * WATCHERS_PER_INSTANCE)]
        self.failures = 0
        self.stopping = False

    async def watch(self, index: int) -> None:
        client = self.clients[index // WATCHERS_PER_INSTANCE]
        seen = self.seen[index]
        etag: str | None = None
        while not self.stopping:
            try:
                answer = await client.get(
                    PERSONA, last_etag=etag, wait=None if etag is None else 120
                )
            except MetadataUnavailable:
                self.failures += 1
                await asyncio.sleep(0.5)
                continue
            etag = answer.etag
            assert isinstance(answer.body, dict)
            version = answer.body["version"]
            # None: this replica has not caught up with the pin yet (it soon will).
            if version is not None and (not seen or seen[-1] != version):
                seen.append(version)

    def all_at(self, version: int) -> bool:
        return all(s and s[-1] == version for s in self.seen)

    def on(self, url: str) -> int:
        return sum(c.base_url == url for c in self.clients)

    async def until_all_at(self, version: int) -> float:
        started = time.monotonic()
        while not self.all_at(version):
            behind = sum(not s or s[-1] != version for s in self.seen)
            assert time.monotonic() - started < DEADLINE, f"{behind} watchers never saw v{version}"
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


async def _put(client: httpx.AsyncClient, priority: int) -> int:
    response = await client.put("/v1/admin/personas/web", json=persona_doc(priority))
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def _admin(server: ServeProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=60,
    )


async def _burst(
    admins: list[httpx.AsyncClient], kill: ServeProcess, total: int
) -> list[tuple[str, str]]:
    """Context writes alternately through both replicas, concurrently, with ``kill`` killed
    with -9 a third of the way in; the writes each replica acknowledged."""
    acknowledged: list[tuple[str, str]] = []

    async def write(n: int) -> None:
        key, value = f"burst-{n}", f"value-{n}"
        with contextlib.suppress(httpx.HTTPError):
            response = await admins[n % 2].put(f"/v1/admin/context/{key}", json={"value": value})
            if response.status_code in (200, 201):
                acknowledged.append((key, value))

    pending: set[asyncio.Task[None]] = set()
    for n in range(total):
        if n == total // 3:
            await asyncio.to_thread(kill.kill)
        pending.add(asyncio.create_task(write(n)))
        if len(pending) >= 8:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)
    return acknowledged


def test_a_thousand_watchers_across_two_replicas_see_every_change_and_survive_a_kill(
    tmp_path: Path, pg_url: str
) -> None:
    with serve_replicas(tmp_path, pg_url) as replicas:
        a, b = replicas

        async def scenario() -> None:
            admins = [_admin(a), _admin(b)]
            response = await admins[0].put("/v1/admin/personas/web", json=persona_doc(0))
            assert response.status_code == 201, response.text
            for n in range(INSTANCES):
                made = await admins[n % 2].post(
                    "/v1/admin/instances", json={"id": f"vm{n}", "addresses": [_address(n)]}
                )
                assert made.status_code == 201, made.text
                pinned = await admins[n % 2].put(
                    f"/v1/admin/instances/vm{n}/pin", json={"persona": "web"}
                )
                assert pinned.status_code == 200, pinned.text
            fleet = Fleet(replicas)
            watchers = [
                asyncio.create_task(fleet.watch(i))
                for i in range(INSTANCES * WATCHERS_PER_INSTANCE)
            ]
            try:
                await fleet.until_all_at(1)
                assert fleet.on(a.url) == fleet.on(b.url) == INSTANCES // 2
                # Every change, written alternately through each replica, reaches every
                # watcher (the next is written once all have seen the last).
                for n in range(6):
                    version = await _put(admins[n % 2], n + 1)
                    await fleet.until_all_at(version)
                assert all(s == list(range(1, 8)) for s in fleet.seen)

                acknowledged = await _burst(admins, a, total=150)
                assert a.process is None
                # The last change goes through the survivor; every watcher ends on it, the
                # ones a held having moved to b.
                final = await _put(admins[1], 5)
                await fleet.until_all_at(final)
                assert fleet.on(b.url) == INSTANCES
                got = await admins[1].get("/v1/admin/context")
                stored = {e["key"]: e["value"] for e in got.json()["items"]}
                missing = [(k, v) for k, v in acknowledged if stored.get(k) != v]
                assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
                assert len(acknowledged) >= 50
                # Stopping b (SIGTERM) answers every held long-poll: the watchers end on
                # their own, with no request cut off in the middle.
                fleet.stopping = True
                assert b.process is not None
                b.process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(asyncio.gather(*watchers), 60)
            finally:
                for task in watchers:
                    task.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
                await fleet.aclose()
                for admin in admins:
                    await admin.aclose()

        asyncio.run(scenario())
