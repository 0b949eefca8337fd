"""A VM can never read another VM's data; admin calls need a valid token of the right role."""

from __future__ import annotations

import httpx
import pytest

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.store import Role
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio

VM_PATHS = ("/v1/instance", "/v1/instance/network_persona", "/v1/instance/peers")


async def _two_vms(service: Service) -> None:
    await service.add_instance("alice", "10.0.0.1", {"owner": "alice"})
    await service.add_instance("bob", "10.0.0.2", {"owner": "bob", "secret": "bobs-label"})
    await service.put_persona("bob-only", persona_doc(7, protocols=("postgres",)))
    await service.pin("bob", "bob-only")


async def test_another_vms_session_token_does_not_work_from_my_address(
    service: Service,
) -> None:
    await _two_vms(service)
    async with await service.vm("10.0.0.2") as bob:
        bobs_token = bob.headers[TOKEN_HEADER]
    async with service.anonymous("10.0.0.1") as alice:
        for path in VM_PATHS:
            response = await alice.get(path, headers={TOKEN_HEADER: bobs_token})
            assert response.status_code == 401, path
            assert "bob" not in response.text


async def test_no_path_or_query_reaches_another_instance(service: Service) -> None:
    await _two_vms(service)
    async with await service.vm("10.0.0.1") as alice:
        attempts = [
            "/v1/instance/bob",
            "/v1/instance/bob/network_persona",
            "/v1/instance/network_persona/bob",
            "/v1/instance/network_persona?instance=bob&id=bob",
            "/v1/instance?id=bob",
            "/v1/instance/..%2Fbob",
            "/v1/instance/%2e%2e/admin/instances/bob",
            "/v1/admin/instances/bob",
            "/v1/admin/personas/bob-only",
        ]
        for path in attempts:
            response = await alice.get(path)
            assert "bobs-label" not in response.text, path
            assert "bob-only" not in response.text, path
            assert "10.0.0.2" not in response.text, path
        mine = await alice.get("/v1/instance?id=bob")
    assert mine.json()["id"] == "alice"


async def test_forwarding_headers_are_refused(service: Service) -> None:
    await _two_vms(service)
    async with await service.vm("10.0.0.1") as alice:
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            response = await alice.get("/v1/instance/network_persona", headers={header: "10.0.0.2"})
            assert response.status_code == 403, header
            assert "bob-only" not in response.text
        token = await alice.put(
            "/v1/token", headers={TOKEN_TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.2"}
        )
        assert token.status_code == 403


async def test_unknown_addresses_get_nothing(service: Service) -> None:
    await _two_vms(service)
    async with service.anonymous("10.0.0.99") as stranger:
        token = await stranger.put("/v1/token", headers={TOKEN_TTL_HEADER: "60"})
        assert token.status_code == 403
        assert "10.0.0.99" in token.json()["error"]["message"]
        for path in VM_PATHS:
            assert (await stranger.get(path)).status_code == 403


async def test_a_token_stops_working_when_its_address_moves_to_another_instance(
    service: Service,
) -> None:
    await _two_vms(service)
    async with await service.vm("10.0.0.1") as alice:
        async with service.admin() as admin:
            assert (await admin.delete("/v1/admin/instances/alice")).status_code == 204
            await admin.post(
                "/v1/admin/instances", json={"id": "mallory", "addresses": ["10.0.0.1"]}
            )
        response = await alice.get("/v1/instance")
    assert response.status_code == 401


async def test_vm_calls_need_a_session_token(service: Service) -> None:
    await _two_vms(service)
    async with service.anonymous("10.0.0.1") as alice:
        for path in VM_PATHS:
            response = await alice.get(path)
            assert response.status_code == 401
            assert TOKEN_HEADER in response.json()["error"]["message"]
        forged = await alice.get("/v1/instance", headers={TOKEN_HEADER: "99999999999.AAAA"})
        assert forged.status_code == 401


async def test_admin_calls_without_a_valid_token_get_401(service: Service) -> None:
    async with service.admin(token="") as nobody, service.admin(token="np_wrong") as wrong:
        for client in (nobody, wrong):
            for method, path in (
                ("GET", "/v1/admin/instances"),
                ("PUT", "/v1/admin/personas/x"),
                ("GET", "/v1/admin/tokens"),
                ("GET", "/v1/admin/audit"),
            ):
                response = await client.request(method, path, json={})
                assert response.status_code == 401, (method, path)
                assert response.headers["www-authenticate"] == "Bearer"
    async with await _vm_session_for_admin(service) as vm:
        # A VM session token is not an admin credential.
        assert (await vm.get("/v1/admin/instances")).status_code == 401


async def _vm_session_for_admin(service: Service) -> httpx.AsyncClient:
    await service.add_instance("vm1", "10.0.0.7")
    return await service.vm("10.0.0.7")


async def test_admin_calls_with_the_wrong_role_get_403(service: Service) -> None:
    async with service.admin(Role.READER) as reader, service.admin(Role.OPERATOR) as operator:
        assert (await reader.get("/v1/admin/instances")).status_code == 200
        created = await reader.post(
            "/v1/admin/instances", json={"id": "vm1", "addresses": ["10.0.0.1"]}
        )
        assert created.status_code == 403
        assert "reader" in created.json()["error"]["message"]
        assert (await reader.put("/v1/admin/personas/x", json=persona_doc())).status_code == 403
        assert (await reader.put("/v1/admin/context/k", json={"value": "v"})).status_code == 403
        assert (await operator.get("/v1/admin/tokens")).status_code == 403
        made = await operator.post("/v1/admin/tokens", json={"name": "x", "role": "admin"})
        assert made.status_code == 403
        assert (await operator.put("/v1/admin/personas/x", json=persona_doc())).status_code == 201
