"""Ordinary bad input gets a 4xx naming what was wrong, never a 5xx; nothing is half-written.

Each case here once answered 500 (or committed and then failed to read back).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from netpersona.errors import StorageFull
from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.store import Role
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio

BIG = str(2**63)
HUGE = "9" * 5000
JSON = {"Content-Type": "application/json"}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


async def _audit(admin: httpx.AsyncClient) -> list[Any]:
    response = await admin.get("/v1/admin/audit")
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        (b'{"network_persona": {"priority": 3, "x-note": NaN}}', "/network_persona/x-note"),
        (b'{"network_persona": {"priority": 3, "x-note": 1e999}}', "/network_persona/x-note"),
        (b'{"network_persona": {"priority": 3, "x-note": "\\udc80"}}', "/network_persona/x-note"),
        (
            b'{"network_persona": {"priority": 3, "x-n": [' + HUGE.encode() + b"]}}",
            "/network_persona/x-n/0",
        ),
    ],
    ids=["nan", "infinity", "lone-surrogate", "5000-digits"],
)
async def test_a_persona_that_is_not_strict_json_is_refused_and_nothing_is_stored(
    service: Service, raw: bytes, pointer: str
) -> None:
    await service.put_persona("db", persona_doc(2))
    async with service.admin(Role.OPERATOR) as admin:
        before = await _audit(admin)
        refused = await admin.put("/v1/admin/personas/db", content=raw, headers=JSON)
        error = _error(refused, 422)
        assert [e["pointer"] for e in error["errors"]] == [pointer]
        created = await admin.put("/v1/admin/personas/new", content=raw, headers=JSON)
        _error(created, 422)
        assert await _audit(admin) == before
        assert (await admin.get("/v1/admin/personas/db")).json()["version"] == 1
        assert (await admin.get("/v1/admin/personas/new")).status_code == 404
        assert (await admin.get("/v1/admin/personas")).status_code == 200


async def test_lone_surrogates_in_context_labels_and_names_are_refused(service: Service) -> None:
    async with service.admin(Role.ADMIN) as admin:
        before = await _audit(admin)
        cases = [
            ("PUT", "/v1/admin/context/threat_level", b'{"value": "\\udc80"}', "/value"),
            (
                "POST",
                "/v1/admin/instances",
                b'{"id": "vm1", "addresses": ["10.0.0.1"], "name": "\\ud800"}',
                "/name",
            ),
            ("POST", "/v1/admin/tokens", b'{"name": "\\udfff", "role": "reader"}', "/name"),
        ]
        for method, path, raw, pointer in cases:
            refused = await admin.request(method, path, content=raw, headers=JSON)
            error = _error(refused, 422)
            assert error["errors"][0]["pointer"] == pointer, (path, error)
        assert await _audit(admin) == before


async def test_json_nested_too_deep_is_refused_before_it_is_parsed(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    deep = b"[" * 949 + b"]" * 949
    async with service.admin(Role.OPERATOR) as admin:
        for path in ("/v1/admin/personas/db", "/v1/admin/policy"):
            error = _error(await admin.put(path, content=deep, headers=JSON), 422)
            assert "deeper than 32" in error["message"]
        nested = b'{"id": "vm2", "addresses": ["10.0.0.2"], "labels": ' + deep + b"}"
        _error(await admin.post("/v1/admin/instances", content=nested, headers=JSON), 422)
        # 32 levels are fine as JSON (and then judged as a document).
        ok = json.dumps({"network_persona": {"priority": 1, "x-deep": [[[[[[[[[[]]]]]]]]]]}})
        shallow = await admin.put("/v1/admin/personas/db", content=ok, headers=JSON)
        assert shallow.status_code != 422 or "deeper" not in shallow.text
    vm = await service.vm("10.0.0.1")
    async with vm:
        _error(await vm.post("/v1/instance/status", content=deep, headers=JSON), 422)


@pytest.mark.parametrize("ttl", ["\u00b2", HUGE, "0", "21601", "-5", "1e3"])
async def test_a_bad_token_ttl_is_400_naming_the_header(service: Service, ttl: str) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with service.anonymous("10.0.0.1") as vm:
        response = await vm.put(
            "/v1/token", headers={TOKEN_TTL_HEADER.encode(): ttl.encode("latin-1")}
        )
    error = _error(response, 400)
    assert TOKEN_TTL_HEADER in error["message"]
    assert len(error["message"]) < 300


@pytest.mark.parametrize(
    "token", ["\u00b2.abc", HUGE + ".abc", "1.\u00e9\u00e9", "x" * 5000, "12\x7f.abc"]
)
async def test_a_malformed_session_token_is_401(service: Service, token: str) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with service.anonymous("10.0.0.1") as vm:
        response = await vm.get(
            "/v1/instance", headers={TOKEN_HEADER.encode(): token.encode("latin-1")}
        )
    _error(response, 401)


@pytest.mark.parametrize("timeout", ["\u00b2", HUGE, "0", "3601"])
async def test_a_bad_timeout_sec_is_422_naming_it(service: Service, timeout: str) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with await service.vm("10.0.0.1") as vm:
        response = await vm.get(
            "/v1/instance/network_persona",
            params={"wait_for_change": "true", "timeout_sec": timeout},
        )
    error = _error(response, 422)
    assert error["errors"][0]["pointer"] == "/timeout_sec"


@pytest.mark.parametrize("tag", ['"v\u00b2"', f'"v{HUGE}"', f'"v{BIG}"', '"r1"', "garbage"])
async def test_a_malformed_if_match_is_400_and_writes_nothing(service: Service, tag: str) -> None:
    await service.put_persona("db", persona_doc(2))
    async with service.admin(Role.OPERATOR) as admin:
        response = await admin.put(
            "/v1/admin/personas/db",
            json=persona_doc(5),
            headers={b"If-Match": tag.encode("latin-1")},
        )
        error = _error(response, 400)
        assert "If-Match" in error["message"]
        assert (await admin.get("/v1/admin/personas/db")).json()["version"] == 1


async def test_integers_beyond_64_bits_are_refused_where_they_enter(service: Service) -> None:
    await service.put_persona("db", persona_doc(2))
    await service.add_instance("vm1", "10.0.0.1")
    big_cursor = base64.urlsafe_b64encode(BIG.encode()).decode().rstrip("=")
    odd_cursor = base64.urlsafe_b64encode("\u00b2".encode()).decode().rstrip("=")
    async with service.admin(Role.OPERATOR) as admin:
        for path in (
            f"/v1/admin/personas/db/versions/{BIG}",
            f"/v1/admin/personas/db/versions/{HUGE}",
            "/v1/admin/personas/db/versions/\u00b2",
            f"/v1/admin/policy/versions/{BIG}",
            f"/v1/admin/personas/db/versions?cursor={big_cursor}",
            f"/v1/admin/policy/versions?cursor={odd_cursor}",
            f"/v1/admin/audit?cursor={big_cursor}",
            f"/v1/admin/instances?limit={HUGE}",
        ):
            _error(await admin.get(path), 422)
        restore = await admin.post(
            "/v1/admin/personas/db/restore", content=f'{{"version": {BIG}}}', headers=JSON
        )
        assert _error(restore, 422)["errors"][0]["pointer"] == "/version"
    async with await service.vm("10.0.0.1") as vm:
        for body in (
            f'{{"result": "applied", "version": {BIG}}}',
            f'{{"result": "applied", "drops": {{"x": {BIG}}}}}',
            f'{{"result": "applied", "drops": {{"x": {HUGE}}}}}',
        ):
            _error(await vm.post("/v1/instance/status", content=body, headers=JSON), 422)


@pytest.mark.parametrize("order", ["v4-first", "mapped-first"])
async def test_an_ipv4_mapped_address_is_the_same_address(service: Service, order: str) -> None:
    first, second = ("127.0.0.3", "::ffff:127.0.0.3")
    if order == "mapped-first":
        first, second = second, first
    async with service.admin(Role.OPERATOR) as admin:
        made = await admin.post("/v1/admin/instances", json={"id": "a", "addresses": [first]})
        assert made.status_code == 201, made.text
        assert made.json()["addresses"] == ["127.0.0.3"]
        taken = await admin.post("/v1/admin/instances", json={"id": "b", "addresses": [second]})
        assert _error(taken, 409)
    # The VM is found whichever way its source address reaches the service.
    async with await service.vm("::ffff:127.0.0.3") as vm:
        assert (await vm.get("/v1/instance")).json()["id"] == "a"


async def test_a_full_disk_is_507_with_the_error_body(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise StorageFull("database or disk is full: nothing was written")

    monkeypatch.setattr(service.store, "create_instance", full)
    async with service.admin(Role.OPERATOR) as admin:
        response = await admin.post(
            "/v1/admin/instances", json={"id": "a", "addresses": ["10.0.0.9"]}
        )
    assert _error(response, 507)["code"] == "storage_full"


async def test_an_unexpected_failure_is_a_json_500_not_text(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(service.store, "list_instances", broken)
    async with service.admin(Role.READER) as admin:
        response = await admin.get("/v1/admin/instances")
        assert _error(response, 500)["code"] == "error"
        assert "nobody expected" not in response.text  # internals stay in the log
        assert (await admin.get("/v1/admin/personas")).status_code == 200


@pytest.mark.parametrize("revision", ["\u00b2", "-1", "1.5", "", "9" * 19])
async def test_a_bad_min_revision_is_422_naming_it(service: Service, revision: str) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with await service.vm("10.0.0.1") as vm:
        response = await vm.get("/v1/instance/network_persona", params={"min_revision": revision})
    error = _error(response, 422)
    assert error["errors"][0]["pointer"] == "/min_revision"
