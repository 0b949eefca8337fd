"""The operators' API: CRUD, If-Match, paging, and errors as users expect them."""

from __future__ import annotations

import pytest

from netpersona.store import Role
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio


async def test_instance_crud_with_if_match(service: Service) -> None:
    async with service.admin(Role.OPERATOR) as admin:
        made = await admin.post(
            "/v1/admin/instances",
            json={
                "id": "vm1",
                "name": "database one",
                "addresses": ["10.0.0.1", "fd00::1"],
                "interfaces": [
                    {"name": "eth0", "addresses": ["10.0.0.1/24"], "tier": "premium"},
                    {"name": "eth1", "addresses": ["10.1.0.1/24"], "tier": "standard"},
                ],
                "labels": {"app": "db", "example.com/role": "primary"},
            },
        )
        assert made.status_code == 201
        assert made.headers["etag"] == '"r1"'
        again = await admin.post(
            "/v1/admin/instances", json={"id": "vm1", "addresses": ["10.0.0.5"]}
        )
        assert again.status_code == 409
        got = await admin.get("/v1/admin/instances/vm1")
        assert got.json()["interfaces"][1]["tier"] == "standard"
        replaced = await admin.put(
            "/v1/admin/instances/vm1",
            json={"addresses": ["10.0.0.1"], "labels": {"app": "db"}},
            headers={"If-Match": '"r1"'},
        )
        assert replaced.status_code == 200
        assert replaced.headers["etag"] == '"r2"'
        stale = await admin.patch(
            "/v1/admin/instances/vm1/labels", json={"app": "web"}, headers={"If-Match": '"r1"'}
        )
        assert stale.status_code == 412
        assert stale.json()["error"]["code"] == "precondition_failed"
        deleted = await admin.delete("/v1/admin/instances/vm1", headers={"If-Match": '"r2"'})
        assert deleted.status_code == 204
        assert (await admin.get("/v1/admin/instances/vm1")).status_code == 404


async def test_bad_bodies_get_422_with_pointers(service: Service) -> None:
    async with service.admin(Role.OPERATOR) as admin:
        instance = await admin.post(
            "/v1/admin/instances",
            json={
                "id": "vm1",
                "addresses": ["10.0.0.1", "not-an-ip"],
                "interfaces": [{"name": "eth0", "addresses": ["10.0.0.1"], "tier": "gold"}],
                "labels": {"bad key!": "x"},
            },
        )
        assert instance.status_code == 422
        pointers = {e["pointer"] for e in instance.json()["error"]["errors"]}
        assert "/interfaces/0/tier" in pointers
        semantic = await admin.post(
            "/v1/admin/instances",
            json={"id": "vm1", "addresses": ["10.0.0.1", "not-an-ip"], "labels": {"bad key!": "x"}},
        )
        errors = {e["pointer"]: e["message"] for e in semantic.json()["error"]["errors"]}
        assert "'not-an-ip' is not an IP address" in errors["/addresses/1"]
        assert "/labels/bad key!" in errors
        persona = await admin.put(
            "/v1/admin/personas/db",
            json={
                "network_persona": {
                    "communication_mode": "restricted",
                    "security_profile": "high",
                    "allowed_protocols": ["postgres"],
                    "priority": 6,
                    "qos_parameters": {"egress_rate": "fast"},
                }
            },
        )
        assert persona.status_code == 422
        errors = {e["pointer"]: e["message"] for e in persona.json()["error"]["errors"]}
        assert set(errors) == {
            "/network_persona/qos_parameters/egress_rate",
            "/network_persona/peers",
        }
        assert '"fast"' in errors["/network_persona/qos_parameters/egress_rate"]
        name = await admin.put("/v1/admin/personas/Bad_Name", json=persona_doc())
        assert name.status_code == 422
        assert name.json()["error"]["errors"][0]["pointer"] == "/name"
        not_json = await admin.put(
            "/v1/admin/personas/db", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 422


async def test_persona_versions_history_and_restore(service: Service) -> None:
    async with service.admin(Role.OPERATOR) as admin:
        first = await admin.put("/v1/admin/personas/db", json=persona_doc(1))
        assert (first.status_code, first.headers["etag"]) == (201, '"v1"')
        second = await admin.put(
            "/v1/admin/personas/db", json=persona_doc(2), headers={"If-Match": '"v1"'}
        )
        assert (second.status_code, second.headers["etag"]) == (200, '"v2"')
        lost_update = await admin.put(
            "/v1/admin/personas/db", json=persona_doc(3), headers={"If-Match": '"v1"'}
        )
        assert lost_update.status_code == 412
        create_only = await admin.put(
            "/v1/admin/personas/db", json=persona_doc(3), headers={"If-None-Match": "*"}
        )
        assert create_only.status_code == 412
        restored = await admin.post("/v1/admin/personas/db/restore", json={"version": 1})
        assert restored.json()["version"] == 3
        assert restored.json()["restored_from"] == 1
        assert restored.json()["network_persona"]["priority"] == 1
        history = (await admin.get("/v1/admin/personas/db/versions?limit=2")).json()
        assert [v["version"] for v in history["items"]] == [3, 2]
        rest = await admin.get(
            "/v1/admin/personas/db/versions", params={"cursor": history["next_cursor"]}
        )
        assert [v["version"] for v in rest.json()["items"]] == [1]
        old = await admin.get("/v1/admin/personas/db/versions/2")
        assert old.json()["network_persona"]["priority"] == 2
        assert (await admin.get("/v1/admin/personas/db/versions/9")).status_code == 404
        assert (await admin.get("/v1/admin/personas/nope")).status_code == 404


async def test_pins_and_persona_deletion(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    await service.put_persona("db", persona_doc())
    async with service.admin(Role.OPERATOR) as admin:
        missing = await admin.put("/v1/admin/instances/vm1/pin", json={"persona": "web"})
        assert missing.status_code == 422
        assert missing.json()["error"]["errors"][0]["pointer"] == "/persona"
        assert (
            await admin.put("/v1/admin/instances/nope/pin", json={"persona": "db"})
        ).status_code == 404
        assert (await admin.put("/v1/admin/instances/vm1/pin", json={"persona": "db"})).json()[
            "pin"
        ] == "db"
        in_use = await admin.delete("/v1/admin/personas/db")
        assert in_use.status_code == 409
        assert "vm1" in in_use.json()["error"]["message"]
        assert (await admin.delete("/v1/admin/instances/vm1/pin")).json()["pin"] is None
        assert (await admin.delete("/v1/admin/personas/db")).status_code == 204


async def test_context_and_audit(service: Service) -> None:
    async with service.admin(Role.OPERATOR) as admin:
        put = await admin.put("/v1/admin/context/threat_level", json={"value": "high"})
        assert (put.status_code, put.headers["etag"]) == (200, '"r1"')
        assert (await admin.get("/v1/admin/context")).json()["items"][0]["value"] == "high"
        bad = await admin.put("/v1/admin/context/bad key", json={"value": "x"})
        assert bad.status_code == 422
        stale = await admin.delete("/v1/admin/context/threat_level", headers={"If-Match": '"r7"'})
        assert stale.status_code == 412
        audit = await admin.get("/v1/admin/audit", params={"target": "context/threat_level"})
        entry = audit.json()["items"][0]
        assert entry["actor"].startswith("test-operator")
        assert entry["before"] is None
        assert entry["after"]["value"] == "high"


async def test_pagination_of_instances(service: Service) -> None:
    for n in range(5):
        await service.add_instance(f"vm{n}", f"10.0.0.{n + 1}")
    async with service.admin(Role.READER) as reader:
        first = (await reader.get("/v1/admin/instances", params={"limit": 2})).json()
        second = (
            await reader.get(
                "/v1/admin/instances", params={"limit": 2, "cursor": first["next_cursor"]}
            )
        ).json()
        third = (
            await reader.get(
                "/v1/admin/instances", params={"limit": 2, "cursor": second["next_cursor"]}
            )
        ).json()
        too_big = await reader.get("/v1/admin/instances", params={"limit": 100000})
    ids = [i["id"] for page in (first, second, third) for i in page["items"]]
    assert ids == ["vm0", "vm1", "vm2", "vm3", "vm4"]
    assert third["next_cursor"] is None
    assert too_big.status_code == 422
    assert too_big.json()["error"]["errors"][0]["pointer"] == "/limit"


async def test_tokens_are_made_by_admins_and_shown_once(service: Service) -> None:
    async with service.admin(Role.ADMIN) as admin:
        made = await admin.post("/v1/admin/tokens", json={"name": "ci", "role": "operator"})
        assert made.status_code == 201
        secret = made.json()["token"]
        listed = (await admin.get("/v1/admin/tokens")).json()["items"]
        assert secret not in str(listed)
        assert "ci" in {t["name"] for t in listed}
    async with service.admin(token=secret) as ci:
        assert (await ci.put("/v1/admin/personas/x", json=persona_doc())).status_code == 201
    async with service.admin(Role.ADMIN) as admin:
        revoked = await admin.delete(f"/v1/admin/tokens/{made.json()['id']}")
        assert revoked.status_code == 204
    async with service.admin(token=secret) as ci:
        assert (await ci.get("/v1/admin/instances")).status_code == 401


async def test_openapi_is_served(service: Service) -> None:
    async with service.anonymous("192.0.2.1") as client:
        schema = (await client.get("/openapi.json")).json()
    assert "/v1/instance/network_persona" in schema["paths"]
    assert "/v1/admin/personas/{name}" in schema["paths"]
    assert "wait_for_change" in str(schema["paths"]["/v1/instance/network_persona"])
