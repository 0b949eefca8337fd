"""Real ``serve`` processes: SIGTERM answers the held long-polls before exiting; two replicas
on one PostgreSQL serve each other's writes; readiness over a socket."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from tests.service.conftest import persona_doc
from tests.service.replica_processes import serve_replicas
from tests.service.serve_process import ServeProcess, serve
from tests.store.pg_cluster import PgCluster

pytestmark = pytest.mark.subprocess

PERSONA = "/v1/instance/network_persona"


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    with pg_cluster.database() as url:
        yield url


@contextlib.contextmanager
def _vm(server: ServeProcess, address: str) -> Iterator[httpx.Client]:
    with server.vm(address) as client:
        response = client.put("/v1/token", headers={TOKEN_TTL_HEADER: "600"})
        assert response.status_code == 200, response.text
        client.headers[TOKEN_HEADER] = response.text
        yield client


def _setup(server: ServeProcess, count: int) -> None:
    with server.admin() as admin:
        assert admin.put("/v1/admin/personas/web", json=persona_doc(1)).status_code == 201
        for n in range(count):
            made = admin.post(
                "/v1/admin/instances", json={"id": f"vm{n}", "addresses": [f"127.0.1.{n + 1}"]}
            )
            assert made.status_code == 201, made.text
            admin.put(f"/v1/admin/instances/vm{n}/pin", json={"persona": "web"})


async def _long_poll(url: str, address: str, token: str, etag: str) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=120) as client:
        return await client.get(
            PERSONA,
            params={"wait_for_change": "true", "last_etag": etag, "timeout_sec": "90"},
            headers={TOKEN_HEADER: token},
        )


def test_sigterm_answers_every_held_long_poll_then_exits(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as server:
        _setup(server, 3)
        held = []
        for n in range(3):
            with _vm(server, f"127.0.1.{n + 1}") as vm:
                held.append((vm.headers[TOKEN_HEADER], vm.get(PERSONA).headers["etag"]))

        async def scenario() -> list[httpx.Response]:
            polls = [
                asyncio.create_task(_long_poll(server.url, f"127.0.1.{n + 1}", token, etag))
                for n, (token, etag) in enumerate(held)
            ]
            await asyncio.sleep(1.5)  # the polls are held (nothing changes for 90 s)
            assert not any(p.done() for p in polls)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*polls)

        started = time.monotonic()
        answers = asyncio.run(scenario())
        # Every poll got its current answer (not a cut connection), long before its timeout.
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["etag"] for a in answers] == [etag for _, etag in held]
        assert time.monotonic() - started < 60
        assert server.process is not None
        # uvicorn re-raises the signal it caught once it has stopped (systemd counts a
        # SIGTERM exit as clean).
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)


def test_two_replicas_serve_each_others_writes_and_report_readiness(
    tmp_path: Path, pg_url: str
) -> None:
    with serve_replicas(tmp_path, pg_url) as (a, b):
        for replica in (a, b):
            ready = httpx.get(replica.url + "/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            assert httpx.get(replica.url + "/healthz", timeout=10).json() == {"status": "ok"}
        _setup(a, 1)
        # The instance made through a is known to b (b identifies the VM by its address).
        deadline = time.monotonic() + 30
        while True:
            with b.vm("127.0.1.1") as probe:
                if probe.put("/v1/token", headers={TOKEN_TTL_HEADER: "60"}).status_code == 200:
                    break
            assert time.monotonic() < deadline, "b never learnt of vm0"
            time.sleep(0.1)
        with _vm(b, "127.0.1.1") as vm:
            while (current := vm.get(PERSONA)).json()["name"] != "web":  # b has the pin too
                assert time.monotonic() < deadline, "b never learnt of the pin"
                time.sleep(0.1)
            etag = current.headers["etag"]

            async def scenario() -> httpx.Response:
                poll = asyncio.create_task(
                    _long_poll(b.url, "127.0.1.1", vm.headers[TOKEN_HEADER], etag)
                )
                await asyncio.sleep(1)
                async with httpx.AsyncClient(
                    base_url=a.url, headers={"Authorization": f"Bearer {a.admin_token}"}
                ) as admin:
                    put = await admin.put("/v1/admin/personas/web", json=persona_doc(7))
                    assert put.status_code == 200, put.text
                return await poll

            answer = asyncio.run(scenario())
            assert answer.json()["network_persona"]["priority"] == 7
