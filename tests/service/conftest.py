"""An in-process service over a real database, and clients that call it from chosen addresses.

``service`` runs every test that takes it twice: on a SQLite file (``[sqlite]``) and on a
fresh database in the session's throwaway PostgreSQL cluster (``[postgresql]``; see
tests/conftest.py). Tests that build their own store stay on SQLite (they say why).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from netpersona.service import create_app
from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.store import Role, SqliteStore
from netpersona.store.sql import SqlStore

ENGINES = ("sqlite", "postgresql")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def persona_doc(
    priority: int = 3,
    *,
    mode: str = "unicast",
    peers: list[dict[str, Any]] | None = None,
    protocols: tuple[str, ...] = ("ssh",),
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "communication_mode": mode,
        "security_profile": "medium",
        "allowed_protocols": list(protocols),
        "priority": priority,
    }
    if peers is not None:
        body["peers"] = peers
    return {"network_persona": body}


@dataclass
class Service:
    app: FastAPI
    store: SqlStore
    secrets: dict[Role, str]

    def admin(self, role: Role = Role.ADMIN, token: str | None = None) -> httpx.AsyncClient:
        secret = token if token is not None else self.secrets[role]
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=("192.0.2.250", 40000)),
            base_url="http://metadata",
            headers={"Authorization": f"Bearer {secret}"} if secret else {},
        )

    def anonymous(self, address: str) -> httpx.AsyncClient:
        """A client calling from ``address`` with no session token yet."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(address, 40000)),
            base_url="http://metadata",
        )

    async def vm(self, address: str) -> httpx.AsyncClient:
        """A client calling from ``address`` holding a session token for it."""
        async with self.anonymous(address) as first:
            response = await first.put("/v1/token", headers={TOKEN_TTL_HEADER: "600"})
        assert response.status_code == 200, response.text
        client = self.anonymous(address)
        client.headers[TOKEN_HEADER] = response.text
        return client

    async def add_instance(
        self, instance_id: str, address: str, labels: dict[str, str] | None = None
    ) -> None:
        async with self.admin() as admin:
            response = await admin.post(
                "/v1/admin/instances",
                json={"id": instance_id, "addresses": [address], "labels": labels or {}},
            )
            assert response.status_code == 201, response.text

    async def put_persona(self, name: str, document: dict[str, Any]) -> int:
        async with self.admin() as admin:
            response = await admin.put(f"/v1/admin/personas/{name}", json=document)
            assert response.status_code in (200, 201), response.text
            version: int = response.json()["version"]
            return version

    async def pin(self, instance_id: str, persona: str) -> None:
        async with self.admin() as admin:
            response = await admin.put(
                f"/v1/admin/instances/{instance_id}/pin", json={"persona": persona}
            )
            assert response.status_code == 200, response.text


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database: ``sqlite:///...`` in tmp_path, or ``postgresql://...`` in the
    session's cluster (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'netpersona.db'}"
        return
    cluster = request.getfixturevalue("pg_cluster")
    with cluster.database() as url:
        yield url


def open_sql_store(url: str) -> SqlStore:
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    from netpersona.store.postgres import PostgresStore

    return PostgresStore(url)


@pytest.fixture
def service(database_url: str) -> Iterator[Service]:
    store = open_sql_store(database_url)
    secrets = {role: store.create_token(f"test-{role.value}", role, "test")[1] for role in Role}
    try:
        yield Service(create_app(store), store, secrets)
    finally:
        store.close()
