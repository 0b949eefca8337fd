"""An in-process service holding the default lab scenario's fleet, with a token per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netpersona.service import create_app
from netpersona.store import Role, SqliteStore
from tests.console.seed import seed_requests
from tests.service.conftest import Service


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def empty_service(tmp_path: Path) -> Iterator[Service]:
    store = SqliteStore(tmp_path / "netpersona.db")
    secrets = {role: store.create_token(f"test-{role.value}", role, "test")[1] for role in Role}
    try:
        yield Service(create_app(store), store, secrets)
    finally:
        store.close()


@pytest.fixture
async def lab_service(empty_service: Service) -> Service:
    async with empty_service.admin() as admin:
        for method, path, body in seed_requests():
            response = await admin.request(method, path, json=body)
            assert response.status_code in (200, 201), (path, response.text)
    return empty_service
