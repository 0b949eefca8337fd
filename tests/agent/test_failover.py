"""The agent's client fails over between replicas of the metadata service, in order, and goes
back to the first after a while: against httpx transports (the rules), and with the agent's
own watch loop against two real ``serve`` replicas on one PostgreSQL, one killed with -9. It
sends the highest revision it saw, so a replica that moved to is not behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from netpersona.agent.client import MetadataClient, Watched
from netpersona.agent.config import metadata_urls
from netpersona.agent.status import StatusRecord
from netpersona.agent.watch import VIEWS, Watcher
from netpersona.errors import MetadataUnavailable, UsageError
from tests.service.conftest import persona_doc
from tests.service.replica_processes import serve_replicas
from tests.service.serve_process import ServeProcess
from tests.service.test_replicas import _served, deafened, replicas, until
from tests.store.pg_cluster import PgCluster

FIRST, SECOND = "http://127.0.0.1:1", "http://127.0.0.2:2"


def test_urls_come_repeated_or_comma_separated_each_once_in_order() -> None:
    assert metadata_urls(["http://10.0.0.1, http://10.0.0.2", "http://10.0.0.1:8080"]) == (
        "http://10.0.0.1",
        "http://10.0.0.2",
        "http://10.0.0.1:8080",
    )
    assert metadata_urls(["http://10.0.0.1,http://10.0.0.1"]) == ("http://10.0.0.1",)
    for bad in (["http://10.0.0.1,,http://10.0.0.2"], ["ftp://10.0.0.1"], ["http://meta.local"]):
        with pytest.raises(UsageError, match="--metadata-url"):
            metadata_urls(bad)


class Replicas:
    """Two fake replicas behind one transport; ``down`` ones refuse connections."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.asked: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        origin = f"http://{request.url.host}:{request.url.port}"
        self.asked.append(origin)
        if origin in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "PUT":
            return httpx.Response(200, content=b"tok")
        return httpx.Response(200, json={"from": origin}, headers={"ETag": '"e"'})


def test_a_dead_replica_is_skipped_and_the_first_is_tried_again_after_failback() -> None:
    replicas = Replicas()
    now = [0.0]
    client = MetadataClient(
        [FIRST, SECOND],
        transport=httpx.MockTransport(replicas),
        failback=300,
        clock=lambda: now[0],
    )

    async def scenario() -> None:
        assert (await client.get("/v1/instance")).body == {"from": FIRST}
        replicas.down.add(FIRST)
        assert (await client.get("/v1/instance")).body == {"from": SECOND}
        assert client.base_url == SECOND
        replicas.down.clear()
        now[0] = 299
        assert (await client.get("/v1/instance")).body == {"from": SECOND}  # not yet
        now[0] = 300
        assert (await client.get("/v1/instance")).body == {"from": FIRST}  # back
        replicas.down.update((FIRST, SECOND))
        with pytest.raises(MetadataUnavailable, match=r"2 tried.*127\.0\.0\.1.*127\.0\.0\.2"):
            await client.get("/v1/instance")
        await client.aclose()

    asyncio.run(scenario())


class Curt:
    """A real HTTP server on 127.0.0.1 that reads a request and closes the connection without
    a word, the first ``curt`` times (as a server timing out a kept-alive connection just as a
    request arrives does), and answers the others."""

    def __init__(self, curt: int, name: str) -> None:
        self.curt, self.name, self.requests = curt, name, 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:  # also those of connections the client keeps open
            writer.close()
        await self.server.wait_closed()
        # Each connection's handler ends before the loop does (the client has closed them), so
        # no stream is left to be collected after it, in another test.
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                if self.requests <= self.curt:
                    break
                token = head.startswith(b"PUT ")
                body = b"tok" if token else b'{"from": "%s"}' % self.name.encode()
                kind = b"text/plain" if token else b"application/json"
                writer.write(
                    b'HTTP/1.1 200 OK\r\nContent-Type: %s\r\nETag: "e"\r\n'
                    b"Content-Length: %d\r\n\r\n%s" % (kind, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_a_connection_closed_without_an_answer_is_tried_once_more_before_failing_over() -> None:
    async def scenario() -> None:
        async with Curt(1, "first") as first, Curt(0, "second") as second:
            client = MetadataClient([first, second], deadline_margin=10)
            try:
                # Closed once: asked again on a new connection, and the first replica stays.
                assert (await client.get("/v1/instance")).body == {"from": "first"}
                assert client.base_url == first
            finally:
                await client.aclose()
        async with Curt(2, "first") as first, Curt(0, "second") as second:
            client = MetadataClient([first, second], deadline_margin=10)
            try:
                # Closed twice running: that replica is failing, and the next one answers.
                assert (await client.get("/v1/instance")).body == {"from": "second"}
                assert client.base_url == second
            finally:
                await client.aclose()

    asyncio.run(scenario())


# -- with real replicas ---------------------------------------------------------------------


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    with pg_cluster.database() as url:
        yield url


async def _until(condition: object, what: str, seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def _put_persona(server: ServeProcess, priority: int) -> int:
    with server.admin() as admin:
        response = admin.put("/v1/admin/personas/web", json=persona_doc(priority))
        assert response.status_code in (200, 201), response.text
        version: int = response.json()["version"]
        return version


@pytest.mark.subprocess
def test_a_watching_agent_keeps_its_control_plane_when_its_replica_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    with serve_replicas(tmp_path, pg_url) as (a, b):
        _put_persona(a, 1)
        with a.admin() as admin:
            admin.post("/v1/admin/instances", json={"id": "vm1", "addresses": ["127.0.1.1"]})
            admin.put("/v1/admin/instances/vm1/pin", json={"persona": "web"})
        seen: list[int] = []
        trail: list[object] = []

        async def on_answer(name: str, answer: Watched, changed: bool) -> None:
            assert isinstance(answer.body, dict)
            if changed:
                seen.append(answer.body["version"])
                trail.append((answer.body["version"], client.base_url, client.revision))

        client: MetadataClient

        async def scenario() -> None:
            nonlocal client
            client = MetadataClient(
                [a.url, b.url],
                transport=httpx.AsyncHTTPTransport(local_address="127.0.1.1"),
                failback=5,
            )
            watcher = Watcher(
                VIEWS["persona"],
                client,
                StatusRecord(tmp_path),
                on_answer,
                wait=60,
                backoff_cap=1,
            )
            task = asyncio.create_task(watcher.run())
            try:
                await _until(lambda: seen == [1], "the first answer")
                await asyncio.sleep(1)  # its long-poll is held by a
                a.kill()  # SIGKILL: no answer, no goodbye
                await asyncio.to_thread(_put_persona, b, 2)
                await _until(lambda: 2 in seen, "the change made through b, after a died")
                assert client.base_url == b.url
                # a comes back; after the failback time the agent returns to it.
                await asyncio.to_thread(a.start)
                await asyncio.sleep(5)
                # Written through b: when the agent comes back to a at once, a may not have
                # heard of it yet (replicas follow each other within milliseconds, not at
                # once); the revision the agent sends makes a catch up first, so the agent
                # never goes back to version 2.
                await asyncio.to_thread(_put_persona, b, 3)
                await _until(lambda: 3 in seen, "the next change")
                await _until(lambda: client.base_url == a.url, "back on the first replica")
                await asyncio.to_thread(_put_persona, b, 4)  # through b, heard on a
                await _until(lambda: 4 in seen, "a change made through b, watched on a")
                assert seen == [1, 2, 3, 4], (trail, a.url, b.url)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await client.aclose()

        asyncio.run(scenario())


class _ByHost(httpx.AsyncBaseTransport):
    """Each replica's app under its own host name, called from the VM's address."""

    def __init__(self, apps: dict[str, Any], address: str) -> None:
        self.transports = {
            host: httpx.ASGITransport(app=app, client=(address, 40000))
            for host, app in apps.items()
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)


def test_the_client_sends_the_highest_revision_it_saw_so_another_replica_is_not_behind(
    pg_url: str,
) -> None:
    """b has not heard of the write the client was served by a; the client, moved to b, sends
    the revision it saw and gets the new persona, not the old one. A lower revision (b's,
    before) does not lower what it sends."""
    persona = "/v1/instance/network_persona"

    async def scenario() -> None:
        async with replicas(pg_url) as (a, b):
            await a.service.add_instance("vm1", "10.0.0.1")
            await a.service.put_persona("web", persona_doc(1))
            await a.service.pin("vm1", "web")
            await until(lambda: _served(b, "vm1") == ("web", 1), "vm1 holding web v1 on b")
            apps = {"replica-a": a.service.app, "replica-b": b.service.app}
            client = MetadataClient(
                ["http://replica-a", "http://replica-b"],
                transport=_ByHost(apps, "10.0.0.1"),
                clock=lambda: 0.0,  # no failback: the test moves it between replicas
            )
            try:
                async with deafened(b, pg_url):
                    await a.service.put_persona("web", persona_doc(6))
                    client.current = 1  # on b first: it has not heard of the write
                    stale = await client.get(persona)
                    assert isinstance(stale.body, dict)
                    assert stale.body["version"] == 1
                    client.current = 0
                    new = await client.get(persona)
                    assert isinstance(new.body, dict)
                    assert new.body["version"] == 2
                    seen = client.revision
                    assert seen == a.service.app.state.netpersona.fleet.view.revision
                    client.current = 1  # as after a failover, or a failback
                    moved = await client.get(persona)
                    assert client.base_url == "http://replica-b"
                    assert moved.etag == new.etag
                    assert client.revision == seen
            finally:
                await client.aclose()

    asyncio.run(scenario())
