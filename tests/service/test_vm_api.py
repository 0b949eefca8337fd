"""What a VM gets from the VM-facing API, called from its own address."""

from __future__ import annotations

import pytest

from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from netpersona.service.fast_views import VIEW_PATHS
from netpersona.service.vm_api import REVISION_HEADER
from netpersona.store import Role
from tests.service.conftest import Service, persona_doc

pytestmark = pytest.mark.anyio


async def test_a_vm_reads_its_own_metadata_and_persona(service: Service) -> None:
    await service.add_instance("db1", "10.0.0.1", {"app": "db", "role": "primary"})
    await service.put_persona("db", persona_doc(6))
    await service.pin("db1", "db")
    async with await service.vm("10.0.0.1") as vm:
        me = (await vm.get("/v1/instance")).json()
        persona = await vm.get("/v1/instance/network_persona")
    assert me["id"] == "db1"
    assert me["labels"] == {"app": "db", "role": "primary"}
    assert me["persona"] == {"name": "db", "version": 1}
    assert persona.status_code == 200
    assert persona.json()["name"] == "db"
    assert persona.json()["version"] == 1
    assert persona.json()["network_persona"]["priority"] == 6
    assert persona.headers["etag"].startswith('"')
    assert persona.headers["cache-control"] == "no-store"


async def test_an_unpinned_vm_gets_a_null_persona_it_can_watch(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with await service.vm("10.0.0.1") as vm:
        response = await vm.get("/v1/instance/network_persona")
    assert response.status_code == 200
    assert response.json() == {
        "assigned": False,
        "name": None,
        "version": None,
        "overlays": [],
        "network_persona": None,
    }


async def test_the_etag_changes_with_the_version_and_if_none_match_gets_304(
    service: Service,
) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    await service.put_persona("web", persona_doc(2))
    await service.pin("vm1", "web")
    async with await service.vm("10.0.0.1") as vm:
        first = await vm.get("/v1/instance/network_persona")
        same = await vm.get(
            "/v1/instance/network_persona", headers={"If-None-Match": first.headers["etag"]}
        )
        assert same.status_code == 304
        assert await service.put_persona("web", persona_doc(4)) == 2
        second = await vm.get("/v1/instance/network_persona")
    assert second.json()["version"] == 2
    assert second.headers["etag"] != first.headers["etag"]


async def test_the_peer_view_shows_only_what_a_peer_is_entitled_to_know(
    service: Service,
) -> None:
    await service.add_instance("db1", "10.0.0.1", {"app": "db"})
    await service.add_instance("api1", "10.0.0.2", {"app": "api"})
    await service.add_instance("api2", "10.0.0.3", {"app": "api"})
    await service.add_instance("backup", "10.0.0.4", {"app": "backup"})
    await service.add_instance("other", "10.9.0.9", {"app": "other"})
    await service.put_persona("api", persona_doc(5))
    await service.put_persona(
        "db",
        persona_doc(
            6,
            mode="restricted",
            peers=[{"persona": "api"}, {"labels": {"app": "backup"}}, {"cidr": "10.0.0.0/24"}],
        ),
    )
    await service.pin("db1", "db")
    await service.pin("api1", "api")
    await service.pin("api2", "api")
    async with await service.vm("10.0.0.1") as vm:
        peers = (await vm.get("/v1/instance/peers")).json()["peers"]
    api = {
        "persona": "api",
        "persona_version": 1,
        "priority": 5,
        "dscp": None,
        "mode": "unicast",
        "profile": "medium",
        "labels": {"app": "api"},
    }
    assert peers == [
        {"instance": "api1", "addresses": ["10.0.0.2"], **api},
        {"instance": "api2", "addresses": ["10.0.0.3"], **api},
        {
            "instance": "backup",
            "addresses": ["10.0.0.4"],
            "persona": None,
            "persona_version": None,
            "priority": 0,
            "dscp": None,
            "mode": None,
            "profile": None,
            "labels": {"app": "backup"},
        },
    ]


async def test_a_vm_without_peers_selectors_sees_no_peers(service: Service) -> None:
    await service.add_instance("a", "10.0.0.1")
    await service.add_instance("b", "10.0.0.2")
    await service.put_persona("plain", persona_doc(1))
    await service.pin("a", "plain")
    await service.pin("b", "plain")
    async with await service.vm("10.0.0.1") as vm:
        answer = (await vm.get("/v1/instance/peers")).json()
    # No peers, but a seed to gossip with; b's priority is not above a's: no summary entry.
    assert answer == {
        "peers": [],
        "network": {
            "members": [],
            "seeds": [{"instance": "b", "addresses": ["10.0.0.2"]}],
            "truncated": False,
        },
    }


async def test_status_reports_reach_the_operator(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with await service.vm("10.0.0.1") as vm:
        response = await vm.post(
            "/v1/instance/status",
            json={
                "persona": "web",
                "version": 3,
                "result": "applied",
                "drops": {"not_a_peer": 7, "broadcast": 1},
            },
        )
        assert response.status_code == 204
        bad = await vm.post("/v1/instance/status", json={"result": "maybe"})
        assert bad.status_code == 422
        assert bad.json()["error"]["errors"][0]["pointer"] == "/result"
    async with service.admin(Role.READER) as admin:
        status = (await admin.get("/v1/admin/instances/vm1/status")).json()
    assert status["version"] == 3
    assert status["result"] == "applied"
    assert status["drops"] == {"broadcast": 1, "not_a_peer": 7}


async def test_token_ttl_is_required_and_bounded(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with service.anonymous("10.0.0.1") as vm:
        missing = await vm.put("/v1/token")
        too_long = await vm.put("/v1/token", headers={TOKEN_TTL_HEADER: "999999"})
        ok = await vm.put("/v1/token", headers={TOKEN_TTL_HEADER: "5"})
    assert missing.status_code == 400
    assert TOKEN_TTL_HEADER in missing.json()["error"]["message"]
    assert too_long.status_code == 400
    assert ok.status_code == 200
    assert ok.headers[TOKEN_TTL_HEADER] == "5"


async def test_an_expired_session_token_is_refused(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    sessions = service.app.state.netpersona.sessions
    expired = sessions.issue("10.0.0.1", "vm1", -5)
    async with service.anonymous("10.0.0.1") as vm:
        response = await vm.get("/v1/instance", headers={TOKEN_HEADER: expired})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


async def test_a_stored_persona_that_no_longer_validates_is_served_not_fatal(
    service: Service,
) -> None:
    await service.add_instance("vm1", "10.0.0.1", {"app": "api"})
    await service.add_instance("db1", "10.0.0.2")
    await service.put_persona("web", persona_doc(2))
    await service.put_persona("db", persona_doc(6, mode="restricted", peers=[{"persona": "web"}]))
    await service.pin("vm1", "web")
    await service.pin("db1", "db")
    # Written past the admin API (as an older release or a hand edit might have done).
    broken = '{"allowed_protocols":["tcp/99999"],"communication_mode":"unicast","priority":3}'
    service.store.put_persona("web", broken, "hand edit")
    await service.app.state.netpersona.fleet.refresh()
    async with await service.vm("10.0.0.1") as vm:
        mine = await vm.get("/v1/instance/network_persona")
    assert mine.status_code == 200
    assert mine.json()["network_persona"]["allowed_protocols"] == ["tcp/99999"]
    async with await service.vm("10.0.0.2") as db:
        peers = (await db.get("/v1/instance/peers")).json()["peers"]
    # db still sees vm1 by persona name; what the broken document says is unknown (priority 0,
    # as for a peer without a persona).
    assert peers == [
        {
            "instance": "vm1",
            "addresses": ["10.0.0.1"],
            "persona": "web",
            "persona_version": 2,
            "priority": 0,
            "dscp": None,
            "mode": None,
            "profile": None,
            "labels": {"app": "api"},
        }
    ]


async def test_bad_watch_parameters_get_422_with_pointers(service: Service) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with await service.vm("10.0.0.1") as vm:
        response = await vm.get(
            "/v1/instance/network_persona",
            params={"wait_for_change": "maybe", "timeout_sec": "0"},
        )
        huge = await vm.get("/v1/instance/peers", params={"timeout_sec": "99999"})
    assert response.status_code == 422
    pointers = [e["pointer"] for e in response.json()["error"]["errors"]]
    assert pointers == ["/wait_for_change", "/timeout_sec"]
    assert huge.status_code == 422


async def test_a_dual_stack_socket_view_of_an_ipv4_caller_is_that_ipv4_caller(
    service: Service,
) -> None:
    await service.add_instance("vm1", "10.0.0.1")
    async with await service.vm("::ffff:10.0.0.1") as vm:
        assert (await vm.get("/v1/instance")).json()["id"] == "vm1"


async def test_the_routes_and_the_fast_path_give_the_same_answers_and_revision(
    service: Service,
) -> None:
    """A GET with a Content-Length goes past the fast path to the routes: both give the same
    status, body and headers (the revision included) for a plain, a conditional and a
    long-poll GET of every view; ``min_revision`` beyond the view changes nothing on one
    process."""
    await service.add_instance("vm1", "10.0.0.1")
    await service.put_persona("db", persona_doc(6))
    await service.pin("vm1", "db")
    revision = service.app.state.netpersona.fleet.view.revision
    assert revision > 0
    routed = {"content-length": "0"}
    async with await service.vm("10.0.0.1") as vm:
        for path in VIEW_PATHS:
            etag = (await vm.get(path)).headers["etag"]
            asks: list[tuple[dict[str, str], dict[str, str | int]]] = [
                ({}, {}),
                ({"If-None-Match": etag}, {}),
                ({}, {"wait_for_change": "true", "last_etag": '"old"', "timeout_sec": 5}),
                ({}, {"min_revision": revision + 1000}),
            ]
            for headers, params in asks:
                fast = await vm.get(path, headers=headers, params=params)
                route = await vm.get(path, headers={**headers, **routed}, params=params)
                assert fast.status_code in (200, 304), (path, fast.text)
                assert (fast.status_code, fast.content) == (route.status_code, route.content)
                assert dict(fast.headers) == dict(route.headers), (path, headers, params)
                assert fast.headers[REVISION_HEADER] == str(revision)
