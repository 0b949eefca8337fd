"""``netpersona serve`` as a real process: first start, several VMs on one socket, kill -9."""

from __future__ import annotations

import asyncio
import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.system.command import run
from tests.service.conftest import persona_doc
from tests.service.serve_process import NETPERSONA, ServeProcess, free_port, serve

pytestmark = pytest.mark.subprocess


def _session(client: httpx.Client) -> None:
    response = client.put("/v1/token", headers={TOKEN_TTL_HEADER: "300"})
    assert response.status_code == 200, response.text
    client.headers[TOKEN_HEADER] = response.text


def test_first_start_writes_a_private_admin_token_and_keeps_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve(data) as server:
        token_file = data / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        first = server.admin_token
        with server.admin() as admin:
            assert admin.get("/v1/admin/tokens").status_code == 200
    with serve(data) as server:
        assert server.admin_token == first
        with server.admin() as admin:
            assert admin.get("/v1/admin/instances").status_code == 200
        # A token made from the CLI while the service runs works at once.
        made = run(
            [
                NETPERSONA,
                "token",
                "create",
                "--name",
                "ci",
                "--role",
                "reader",
                "--data-dir",
                str(data),
            ]
        )
        secret = made.stdout.strip()
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {secret}"}
        ) as reader:
            assert reader.get("/v1/admin/instances").status_code == 200
            assert reader.post("/v1/admin/instances", json={}).status_code == 403


def test_several_vms_on_one_server_each_see_only_their_own(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as server, server.admin() as admin:
        for n, persona in ((2, "db"), (3, "web")):
            admin.put(f"/v1/admin/personas/{persona}", json=persona_doc(n))
            made = admin.post(
                "/v1/admin/instances", json={"id": f"vm{n}", "addresses": [f"127.0.0.{n}"]}
            )
            assert made.status_code == 201
            admin.put(f"/v1/admin/instances/vm{n}/pin", json={"persona": persona})
        with server.vm("127.0.0.2") as vm2, server.vm("127.0.0.3") as vm3:
            _session(vm2)
            _session(vm3)
            assert vm2.get("/v1/instance").json()["id"] == "vm2"
            assert vm3.get("/v1/instance").json()["id"] == "vm3"
            assert vm2.get("/v1/instance/network_persona").json()["name"] == "db"
            assert vm3.get("/v1/instance/network_persona").json()["name"] == "web"
            stolen = vm3.get(
                "/v1/instance/network_persona", headers={TOKEN_HEADER: vm2.headers[TOKEN_HEADER]}
            )
            assert stolen.status_code == 401
            spoofed = vm3.get(
                "/v1/instance/network_persona", headers={"X-Forwarded-For": "127.0.0.2"}
            )
            assert spoofed.status_code == 403

            # A long poll over the real socket returns when the operator changes the persona.
            before = vm2.get("/v1/instance/network_persona")
            etag = before.headers["etag"]
            result: dict[str, Any] = {}

            def poll() -> None:
                result["response"] = vm2.get(
                    "/v1/instance/network_persona",
                    params={"wait_for_change": "true", "last_etag": etag, "timeout_sec": 30},
                    timeout=40,
                )

            waiter = threading.Thread(target=poll)
            waiter.start()
            time.sleep(0.3)
            start = time.monotonic()
            admin.put("/v1/admin/personas/db", json=persona_doc(7))
            waiter.join(timeout=10)
            assert time.monotonic() - start < 2
            woken = result["response"]
            assert woken.json()["version"] == 2
            assert woken.headers["content-type"] == "application/json"
            assert woken.headers["cache-control"] == "no-store"
            assert "date" in woken.headers
            # The connection the answer was written to in one piece serves the next requests.
            again = vm2.get("/v1/instance/network_persona")
            assert (again.content, again.headers["etag"]) == (woken.content, woken.headers["etag"])
            # The revision, added to the shared answer per send, moved on with the write.
            revision = woken.headers["x-netpersona-revision"]
            assert int(revision) > int(before.headers["x-netpersona-revision"])
            assert again.headers["x-netpersona-revision"] == revision
            unchanged = vm2.get(
                "/v1/instance/network_persona", headers={"If-None-Match": woken.headers["etag"]}
            )
            assert (unchanged.status_code, unchanged.content) == (304, b"")
            assert unchanged.headers["etag"] == woken.headers["etag"]
            assert unchanged.headers["x-netpersona-revision"] == revision
            assert "content-length" not in unchanged.headers
            # Answered in front of the middleware, and counted all the same.
            metrics = vm2.get("/metrics").text
            assert (
                'netpersona_http_requests_total{method="GET",'
                'route="/v1/instance/network_persona",status="304"} 1.0'
            ) in metrics


async def _burst(server: ServeProcess, total: int, kill_after: int) -> list[tuple[str, Any]]:
    """``total`` writes, 16 at a time; SIGKILL the server once ``kill_after`` are acknowledged.
    Returns what was acknowledged (the server answered 2xx)."""
    acked: list[tuple[str, Any]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    headers = {"Authorization": f"Bearer {server.admin_token}"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            try:
                if n % 3 == 0:
                    response = await client.put(
                        f"/v1/admin/personas/p{n % 4}", json=persona_doc(n % 8)
                    )
                    if response.is_success:
                        acked.append(("persona", (f"p{n % 4}", response.json()["version"], n % 8)))
                elif n % 3 == 1:
                    response = await client.post(
                        "/v1/admin/instances",
                        json={
                            "id": f"vm{n}",
                            "addresses": [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"],
                            "labels": {"seq": str(n)},
                        },
                    )
                    if response.is_success:
                        acked.append(("instance", (f"vm{n}", str(n))))
                else:
                    response = await client.put(f"/v1/admin/context/k{n}", json={"value": str(n)})
                    if response.is_success:
                        acked.append(("context", (f"k{n}", str(n))))
            except httpx.TransportError:
                return  # the server is gone: this write was never acknowledged
            if len(acked) >= kill_after and server.process is not None:
                server.kill()

    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))
    return acked


def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data", free_port())
    try:
        server.start()
        with server.admin() as admin:
            admin.put("/v1/admin/personas/steady", json=persona_doc(4))
            admin.post("/v1/admin/instances", json={"id": "watcher", "addresses": ["127.0.0.9"]})
            admin.put("/v1/admin/instances/watcher/pin", json={"persona": "steady"})
        watcher = server.vm("127.0.0.9")
        _session(watcher)
        etag = watcher.get("/v1/instance/network_persona").headers["etag"]
        acked = asyncio.run(_burst(server, total=600, kill_after=200))
        assert server.process is None, "the burst ended before the kill"
        assert len(acked) >= 200
        server.start()  # same data directory, same port
        with server.admin() as admin:
            for kind, what in acked:
                if kind == "instance":
                    instance_id, seq = what
                    got = admin.get(f"/v1/admin/instances/{instance_id}")
                    assert got.status_code == 200, instance_id
                    assert got.json()["labels"] == {"seq": seq}
                elif kind == "persona":
                    name, version, priority = what
                    got = admin.get(f"/v1/admin/personas/{name}/versions/{version}")
                    assert got.status_code == 200, (name, version)
                    assert got.json()["network_persona"]["priority"] == priority
                else:
                    key, value = what
                    assert admin.get(f"/v1/admin/context/{key}").json()["value"] == value
            # The VM's session token and ETag outlive the crash: its watch resumes, waiting
            # (nothing it sees changed) until the operator changes its persona.
            watch = {"wait_for_change": "true", "last_etag": etag, "timeout_sec": "1"}
            quiet = watcher.get("/v1/instance/network_persona", params=watch)
            assert (quiet.status_code, quiet.headers["etag"]) == (200, etag)
            admin.put("/v1/admin/personas/steady", json=persona_doc(5))
            woken = watcher.get("/v1/instance/network_persona", params=watch)
            assert woken.json()["network_persona"]["priority"] == 5
            watcher.close()
            # And the audit log recorded who made each instance.
            audit = admin.get("/v1/admin/audit", params={"limit": 1000}).json()["items"]
            created = {e["target"] for e in audit if e["action"] == "instance.create"}
            assert {f"instance/{w[0]}" for k, w in acked if k == "instance"} <= created
    finally:
        server.kill()
