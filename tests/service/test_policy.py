"""The policy engine in the service: effective personas, wake-ups, explain, what-if, refusals."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.service.conftest import Service, persona_doc
from tests.service.test_watch import INSTANCE, PEERS, PERSONA, woken_by

pytestmark = pytest.mark.anyio

RAISED = {
    "matchExpressions": [{"key": "threat_level", "operator": "In", "values": ["elevated", "high"]}]
}

POLICY: dict[str, Any] = {
    "persona_policy": {
        "context": {"threat_level": {"values": ["low", "elevated", "high"], "default": "low"}},
        "rules": [
            {"name": "database", "persona": "db", "match": {"matchLabels": {"app": "db"}}},
            {"name": "api", "persona": "api", "match": {"matchLabels": {"app": "api"}}},
            {"name": "web", "persona": "web", "match": {"matchLabels": {"app": "web"}}},
        ],
        "default": "sandbox",
        "overlays": [
            {
                "name": "quarantine-dev",
                "enforce": True,
                "override": True,
                "when": 'threat_level == "high"',
                "match": {"matchLabels": {"env": "dev"}},
                "set": {"persona": "quarantine"},
            },
            {
                "name": "web-raised",
                "match": {"matchLabels": {"app": "web"}, "context": RAISED},
                "set": {"security_profile": "high"},
            },
        ],
    }
}

# address, labels, pin
FLEET: dict[str, tuple[str, dict[str, str], str | None]] = {
    "w1": ("10.0.0.1", {"app": "web", "env": "prod"}, None),
    "d1": ("10.0.0.2", {"app": "db", "env": "prod"}, None),
    "x1": ("10.0.0.3", {"app": "api", "env": "dev"}, None),
    "s1": ("10.0.0.4", {}, None),
    "p1": ("10.0.0.5", {"app": "web", "env": "dev"}, "db"),
}


async def _personas(service: Service) -> None:
    await service.put_persona("db", persona_doc(6, mode="restricted", peers=[{"persona": "api"}]))
    await service.put_persona("api", persona_doc(4))
    await service.put_persona("web", persona_doc(2, protocols=("http", "https")))
    await service.put_persona("sandbox", persona_doc(1))
    await service.put_persona(
        "quarantine", persona_doc(0, mode="restricted", peers=[{"labels": {"role": "admin"}}])
    )


async def _setup(service: Service, policy: dict[str, Any] | None = None) -> None:
    await _personas(service)
    for instance_id, (address, labels, pin) in FLEET.items():
        await service.add_instance(instance_id, address, labels)
        if pin is not None:
            await service.pin(instance_id, pin)
    async with service.admin() as admin:
        response = await admin.put("/v1/admin/policy", json=policy or POLICY)
        assert response.status_code == 201, response.text
        assert response.headers["etag"] == '"p1"'


async def _persona(service: Service, instance_id: str) -> dict[str, Any]:
    async with await service.vm(FLEET[instance_id][0]) as vm:
        response = await vm.get(PERSONA)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _set_context(service: Service, key: str, value: str) -> None:
    async with service.admin() as admin:
        response = await admin.put(f"/v1/admin/context/{key}", json={"value": value})
        assert response.status_code == 200, response.text


async def test_the_policy_decides_what_each_vm_is_served(service: Service) -> None:
    await _setup(service)
    served = {i: await _persona(service, i) for i in FLEET}
    assert {i: (s["name"], s["overlays"]) for i, s in served.items()} == {
        "w1": ("web", []),
        "d1": ("db", []),
        "x1": ("api", []),
        "s1": ("sandbox", []),
        "p1": ("db", []),  # pinned: rules are not consulted
    }
    assert served["w1"]["version"] == 1
    assert served["w1"]["network_persona"]["allowed_protocols"] == ["http", "https"]
    async with await service.vm("10.0.0.3") as vm:
        assert (await vm.get(INSTANCE)).json()["persona"] == {"name": "api", "version": 1}


async def test_raising_threat_level_moves_exactly_the_intended_instances_and_wakes_them(
    service: Service,
) -> None:
    await _setup(service)
    watches = {i: (FLEET[i][0], PERSONA) for i in FLEET}
    before = {i: await _persona(service, i) for i in FLEET}

    # elevated: only unpinned web instances tighten (w1); the pinned p1 matches the overlay's
    # labels but the overlay is not enforce, so its pin stands untouched.
    woken = await woken_by(service, watches, _set_context(service, "threat_level", "elevated"))
    assert woken == {"w1"}
    w1 = await _persona(service, "w1")
    # Same persona name and version, different document: the ETag (a hash of the body) moved.
    assert (w1["name"], w1["version"], w1["overlays"]) == ("web", 1, ["web-raised"])
    assert w1["network_persona"]["security_profile"] == "high"
    assert await _persona(service, "p1") == before["p1"]

    # high: dev instances are quarantined, the pinned one too (an enforce overlay).
    woken = await woken_by(service, watches, _set_context(service, "threat_level", "high"))
    assert woken == {"x1", "p1"}
    for instance_id in ("x1", "p1"):
        served = await _persona(service, instance_id)
        assert (served["name"], served["overlays"]) == ("quarantine", ["quarantine-dev"])
        assert served["network_persona"]["communication_mode"] == "restricted"
    assert await _persona(service, "d1") == before["d1"]
    assert await _persona(service, "s1") == before["s1"]

    # back to low: everyone is where they started, and only those that had moved wake.
    woken = await woken_by(service, watches, _set_context(service, "threat_level", "low"))
    assert woken == {"w1", "x1", "p1"}
    assert {i: await _persona(service, i) for i in FLEET} == before


async def test_a_label_change_moves_an_instance_to_another_rule_and_wakes_its_peers(
    service: Service,
) -> None:
    await _setup(service)
    # d1 (persona db) sees the instances holding persona api: x1 now.
    async with await service.vm("10.0.0.2") as d1:
        peers = (await d1.get(PEERS)).json()["peers"]
    assert [p["addresses"] for p in peers] == [["10.0.0.3"]]

    async def relabel() -> None:
        async with service.admin() as admin:
            response = await admin.patch("/v1/admin/instances/w1/labels", json={"app": "api"})
            assert response.status_code == 200, response.text

    watches = {
        "w1-persona": ("10.0.0.1", PERSONA),
        "w1-instance": ("10.0.0.1", INSTANCE),
        "d1-peers": ("10.0.0.2", PEERS),
        "d1-persona": ("10.0.0.2", PERSONA),
        "x1-persona": ("10.0.0.3", PERSONA),
        "x1-peers": ("10.0.0.3", PEERS),
        "s1-instance": ("10.0.0.4", INSTANCE),
    }
    woken = await woken_by(service, watches, relabel())
    assert woken == {"w1-persona", "w1-instance", "d1-peers"}
    assert (await _persona(service, "w1"))["name"] == "api"
    async with await service.vm("10.0.0.2") as d1:
        peers = (await d1.get(PEERS)).json()["peers"]
    api = {"persona_version": 1, "dscp": None, "mode": "unicast", "profile": "medium"}
    assert peers == [
        {
            "instance": "w1",
            "addresses": ["10.0.0.1"],
            "labels": {"app": "api", "env": "prod"},
            "persona": "api",
            "priority": 4,
            **api,
        },
        {
            "instance": "x1",
            "addresses": ["10.0.0.3"],
            "labels": {"app": "api", "env": "dev"},
            "persona": "api",
            "priority": 4,
            **api,
        },
    ]

    async with service.admin() as admin:
        explained = (await admin.get("/v1/admin/instances/w1/explain")).json()
    assert explained["decision"]["rule"] == "api"
    assert "from rule api" in explained["summary"]
    # The rule before it is named with the reason it did not match.
    assert [r["name"] for r in explained["rules"]][:2] == ["database", "api"]


async def test_explain_names_the_deciding_rule_the_default_and_the_pin(service: Service) -> None:
    await _setup(service)
    await _set_context(service, "threat_level", "high")
    async with service.admin() as admin:
        answers = {i: (await admin.get(f"/v1/admin/instances/{i}/explain")).json() for i in FLEET}
        missing = await admin.get("/v1/admin/instances/nope/explain")
    assert missing.status_code == 404
    assert {i: (a["decision"]["source"], a["decision"]["rule"]) for i, a in answers.items()} == {
        "w1": ("rule", "web"),
        "d1": ("rule", "database"),
        "x1": ("rule", "api"),
        "s1": ("default", None),
        "p1": ("pin", None),
    }
    assert answers["p1"]["decision"]["overlays"] == ["quarantine-dev"]
    assert "pinned by hand" in answers["p1"]["summary"]
    assert any("quarantine" in line for line in answers["x1"]["lines"])


def _pointers(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [e["pointer"] for e in response.json()["error"]["errors"]]


async def test_bad_policies_are_refused_with_pointers_and_nothing_is_stored(
    service: Service,
) -> None:
    await _personas(service)
    await service.add_instance("w1", "10.0.0.1", {"app": "web"})
    unknown = copy.deepcopy(POLICY)
    unknown["persona_policy"]["rules"][1]["persona"] = "no-such-persona"
    shadowed = copy.deepcopy(POLICY)
    shadowed["persona_policy"]["rules"].insert(
        1, {"name": "everything", "persona": "web", "match": {}}
    )
    cel = copy.deepcopy(POLICY)
    cel["persona_policy"]["rules"][0]["when"] = 'threat_lvl == "high"'
    failing = {
        **POLICY,
        "tests": {"tests": [{"name": "w1 is web", "instance": "w1", "expect": {"persona": "db"}}]},
    }
    async with service.admin() as admin:
        assert _pointers(await admin.put("/v1/admin/policy", json=unknown)) == [
            "/persona_policy/rules/1/persona"
        ]
        # A catch-all before them leaves the later rules unreachable.
        assert _pointers(await admin.put("/v1/admin/policy", json=shadowed)) == [
            "/persona_policy/rules/2",
            "/persona_policy/rules/3",
        ]
        refused = await admin.put("/v1/admin/policy", json=cel)
        assert _pointers(refused) == ["/persona_policy/rules/0/when"]
        assert "threat_lvl" in refused.json()["error"]["errors"][0]["message"]
        refused = await admin.put("/v1/admin/policy", json=failing)
        assert _pointers(refused) == ["/tests/tests/0/expect/persona"]
        assert "w1 is web" in refused.json()["error"]["errors"][0]["message"]
        assert (await admin.get("/v1/admin/policy")).status_code == 404
        assert (await admin.get("/v1/admin/policy/versions")).json()["items"] == []
        audit = (await admin.get("/v1/admin/audit", params={"target": "policy"})).json()
        assert audit["items"] == []
        assert (await _persona(service, "w1"))["name"] is None

        # Passing tests are stored with the policy; a later bad version leaves it in place.
        passing = {**failing, "tests": {"tests": [{"instance": "w1", "expect": {"rule": "web"}}]}}
        assert (await admin.put("/v1/admin/policy", json=passing)).status_code == 201
        assert (await _persona(service, "w1"))["name"] == "web"
        assert (await admin.put("/v1/admin/policy", json=unknown)).status_code == 422
        current = (await admin.get("/v1/admin/policy")).json()
        assert current["version"] == 1
        assert current["document"]["tests"] == passing["tests"]
        assert (await _persona(service, "w1"))["name"] == "web"


async def test_policy_versions_if_match_history_and_delete(service: Service) -> None:
    await _setup(service)
    second = copy.deepcopy(POLICY)
    second["persona_policy"]["default"] = None
    async with service.admin() as admin:
        stale = await admin.put("/v1/admin/policy", json=second, headers={"If-Match": '"p0"'})
        assert stale.status_code == 412
        same = await admin.put("/v1/admin/policy", json=POLICY)
        assert (same.status_code, same.json()["version"]) == (200, 1)  # not a new version
        done = await admin.put("/v1/admin/policy", json=second, headers={"If-Match": '"p1"'})
        assert (done.status_code, done.headers["etag"]) == (200, '"p2"')
        assert (await _persona(service, "s1"))["name"] is None  # no default any more
        history = (await admin.get("/v1/admin/policy/versions")).json()["items"]
        assert [v["version"] for v in history] == [2, 1]
        first = (await admin.get("/v1/admin/policy/versions/1")).json()
        assert first["document"] == POLICY
        assert (
            await admin.delete("/v1/admin/policy", headers={"If-Match": '"p1"'})
        ).status_code == 412
        assert (await admin.delete("/v1/admin/policy")).status_code == 204
        assert (await admin.get("/v1/admin/policy")).status_code == 404
        actions = [
            e["action"]
            for e in (await admin.get("/v1/admin/audit", params={"target": "policy"})).json()[
                "items"
            ]
        ]
        assert actions == ["policy.delete", "policy.put", "policy.put"]
    # No policy: the pin stands, everyone else has no persona.
    assert (await _persona(service, "p1"))["name"] == "db"
    assert (await _persona(service, "w1"))["name"] is None
    async with service.admin() as admin:
        again = await admin.put("/v1/admin/policy", json=POLICY)
        assert (again.status_code, again.json()["version"]) == (201, 3)
    assert (await _persona(service, "w1"))["name"] == "web"


async def test_context_values_and_persona_deletes_the_policy_forbids_are_refused(
    service: Service,
) -> None:
    await _setup(service)
    async with service.admin() as admin:
        refused = await admin.put("/v1/admin/context/threat_level", json={"value": "severe"})
        assert _pointers(refused) == ["/value"]
        assert "severe" in refused.json()["error"]["message"]
        assert (await admin.get("/v1/admin/context/threat_level")).status_code == 404
        # Keys the policy does not declare take any value.
        assert (await admin.put("/v1/admin/context/site", json={"value": "x"})).status_code == 200

        conflict = await admin.delete("/v1/admin/personas/quarantine")
        assert conflict.status_code == 409
        assert "policy" in conflict.json()["error"]["message"]
        assert (await admin.get("/v1/admin/personas/quarantine")).status_code == 200
        await admin.put("/v1/admin/personas/spare", json=persona_doc(2))
        assert (await admin.delete("/v1/admin/personas/spare")).status_code == 204


async def test_what_if_lists_the_moves_and_commits_nothing(service: Service) -> None:
    await _setup(service)
    before = {i: await _persona(service, i) for i in FLEET}
    async with service.admin() as admin:
        answer = (
            await admin.post("/v1/admin/policy/diff", json={"context": {"threat_level": "high"}})
        ).json()
        assert [c["instance"] for c in answer["changes"]] == ["p1", "w1", "x1"]
        x1 = next(c for c in answer["changes"] if c["instance"] == "x1")
        assert x1["after"]["effective"]["name"] == "quarantine"
        assert x1["lines"][0].startswith("x1: api (rule api)")

        moved = await admin.post(
            "/v1/admin/policy/diff", json={"labels": {"s1": {"app": "db"}, "w1": {"app": None}}}
        )
        assert [c["instance"] for c in moved.json()["changes"]] == ["s1", "w1"]

        proposal = copy.deepcopy(POLICY)
        proposal["persona_policy"]["rules"][2]["persona"] = "api"
        answer = (await admin.post("/v1/admin/policy/diff", json={"policy": proposal})).json()
        assert [c["instance"] for c in answer["changes"]] == ["w1"]

        bad = await admin.post(
            "/v1/admin/policy/diff",
            json={"context": {"threat_level": "severe"}, "labels": {"nope": {"a": "b"}}},
        )
        assert sorted(_pointers(bad)) == ["/context/threat_level", "/labels/nope"]
        assert (await admin.get("/v1/admin/context")).json()["items"] == []
    assert {i: await _persona(service, i) for i in FLEET} == before


async def test_the_policy_admin_api_needs_the_right_roles(service: Service) -> None:
    from netpersona.store import Role

    await _setup(service)
    async with service.admin(Role.READER) as reader:
        assert (await reader.get("/v1/admin/policy")).status_code == 200
        assert (await reader.get("/v1/admin/instances/w1/explain")).status_code == 200
        assert (await reader.put("/v1/admin/policy", json=POLICY)).status_code == 403
        assert (await reader.delete("/v1/admin/policy")).status_code == 403
    async with service.admin(token="") as anonymous:
        assert (await anonymous.get("/v1/admin/policy")).status_code == 401


async def test_every_kind_of_write_wakes_exactly_the_views_it_changes(service: Service) -> None:
    await _setup(service)
    watches = {f"{i}-persona": (FLEET[i][0], PERSONA) for i in FLEET}
    watches["d1-peers"] = ("10.0.0.2", PEERS)  # d1 (db) sees the holders of persona api

    async def admin_call(method: str, path: str, body: Any = None) -> None:
        async with service.admin() as admin:
            response = await admin.request(method, path, json=body)
            assert response.is_success, response.text

    # A persona edit: its holders (by rule: w1) and nobody else; p1 is web-labelled but pinned.
    edit = admin_call("PUT", "/v1/admin/personas/web", persona_doc(3, protocols=("https",)))
    assert await woken_by(service, watches, edit) == {"w1-persona"}
    # A pin: the pinned instance, and the peer view that now shows it (s1 holds api).
    pin = admin_call("PUT", "/v1/admin/instances/s1/pin", {"persona": "api"})
    assert await woken_by(service, watches, pin) == {"s1-persona", "d1-peers"}
    # A new instance that the policy gives api: only the peer view that shows it.
    add = admin_call(
        "POST",
        "/v1/admin/instances",
        {"id": "x2", "addresses": ["10.0.0.9"], "labels": {"app": "api"}},
    )
    assert await woken_by(service, watches, add) == {"d1-peers"}
    # A new policy version that moves api instances to web: x1 (and the peer view); the pinned
    # s1 keeps its pin.
    moved = copy.deepcopy(POLICY)
    moved["persona_policy"]["rules"][1]["persona"] = "web"
    change = admin_call("PUT", "/v1/admin/policy", moved)
    assert await woken_by(service, watches, change) == {"x1-persona", "d1-peers"}
    assert (await _persona(service, "x1"))["name"] == "web"
    assert (await _persona(service, "s1"))["name"] == "api"
    # Deleting the policy: everyone the policy decided loses their persona; pins stay.
    delete = admin_call("DELETE", "/v1/admin/policy")
    assert await woken_by(service, watches, delete) == {
        "w1-persona",
        "d1-persona",
        "x1-persona",
        "d1-peers",
    }
    assert (await _persona(service, "p1"))["name"] == "db"
