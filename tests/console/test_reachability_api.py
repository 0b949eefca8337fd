"""``/v1/admin/reachability`` and the diff's blast radius, on the lab scenario's fleet."""

from __future__ import annotations

import pytest

from netpersona.lab.expect import ProbeKind
from netpersona.lab.matrix import expected_matrix, planned_hosts, probes_for
from netpersona.reachability import connectivity_changes
from netpersona.store import Role
from tests.console.seed import scenario
from tests.service.conftest import Service

pytestmark = pytest.mark.anyio


async def test_a_reader_asks_whether_one_vm_reaches_another(lab_service: Service) -> None:
    async with lab_service.admin(Role.READER) as reader:
        yes = await reader.get(
            "/v1/admin/reachability", params={"from": "api1", "to": "db1", "proto": "postgres"}
        )
        no = await reader.get(
            "/v1/admin/reachability",
            params={"from": "admin1", "to": "db1", "proto": "tcp", "port": 5432},
        )
    assert yes.status_code == 200, yes.text
    assert yes.json()["reachable"] is True
    answer = no.json()
    assert answer["reachable"] is False
    decided = answer["verdict"]["decided_by"]
    assert (decided["vm"], decided["persona"], decided["field"], decided["counter"]) == (
        "db1",
        "db-restricted",
        "peers",
        "drop_not_peer",
    )


async def test_broadcast_and_multicast_questions(lab_service: Service) -> None:
    async with lab_service.admin(Role.READER) as reader:
        broadcast = await reader.get(
            "/v1/admin/reachability",
            params={"from": "disc1", "to": "disc2", "proto": "udp/6000", "via": "broadcast"},
        )
        group = await reader.get(
            "/v1/admin/reachability",
            params={
                "from": "media1",
                "to": "media2",
                "proto": "udp/5004",
                "via": "multicast",
                "group": "239.9.9.9",
            },
        )
    assert broadcast.json()["reachable"] is True
    assert group.json()["verdict"]["decided_by"]["counter"] == "drop_multicast"


async def test_bad_questions_are_refused_with_the_field(lab_service: Service) -> None:
    async with lab_service.admin(Role.READER) as reader:
        bad = await reader.get(
            "/v1/admin/reachability", params={"from": "api1", "to": "db1", "proto": "tcpp"}
        )
        missing = await reader.get(
            "/v1/admin/reachability", params={"from": "api1", "to": "nope", "proto": "icmp"}
        )
    assert bad.status_code == 422
    assert bad.json()["error"]["errors"][0]["pointer"] == "/proto"
    assert missing.status_code == 404
    async with lab_service.admin(token="") as anonymous:
        refused = await anonymous.get(
            "/v1/admin/reachability", params={"from": "api1", "to": "db1", "proto": "icmp"}
        )
    assert refused.status_code == 401


async def test_the_matrix_agrees_with_the_labs_expectation_cell_for_cell(
    lab_service: Service,
) -> None:
    """The service's engine (its stored fleet and policy) and the lab's oracle (the scenario's
    files, decided offline) answer every unicast probe of the lab the same way."""
    lab = scenario()
    hosts = planned_hosts(lab, lab.context)
    want = expected_matrix(hosts, lab.probes)
    by_name = {h.name: h for h in hosts}
    async with lab_service.admin(Role.READER) as reader:
        answer = (await reader.get("/v1/admin/reachability/matrix")).json()
        assert len(answer["instances"]) == len(hosts)
        for (src, dst, kind), expected in want.items():
            if expected is None or kind not in (ProbeKind.TCP_ALLOWED, ProbeKind.ICMP):
                continue
            probe = probes_for(by_name[src], by_name[dst], lab.probes)[kind]
            assert probe is not None
            proto = "icmp" if probe.port is None else f"tcp/{probe.port}"
            got = await reader.get(
                "/v1/admin/reachability", params={"from": src, "to": dst, "proto": proto}
            )
            assert got.json()["reachable"] is expected, (src, dst, kind)
    cells = {(c["from"], c["to"], c["service"]): c["reachable"] for c in answer["cells"]}
    assert cells[("api1", "db1", "postgres")] is True
    assert cells[("web1", "db1", "postgres")] is False


async def test_the_threat_level_what_if_lists_the_pairs_the_engine_says_change(
    lab_service: Service,
) -> None:
    lab = scenario()
    before = {h.name: h for h in planned_hosts(lab, lab.context)}
    after = {h.name: h for h in planned_hosts(lab, lab.raised_context)}
    want = {(c.src, c.dst, c.service, c.gained) for c in connectivity_changes(before, after)}
    async with lab_service.admin(Role.READER) as reader:
        answer = (
            await reader.post("/v1/admin/policy/diff", json={"context": {"threat_level": "high"}})
        ).json()
    got = {
        (c["from"], c["to"], c["service"], c["change"] == "gained") for c in answer["connectivity"]
    }
    assert want
    assert got == want
    assert answer["connectivity_count"] == len(want)
    assert answer["count"] == 8  # every VM takes the high profile


async def test_a_label_change_shows_the_peer_that_loses_it(lab_service: Service) -> None:
    """api1 relabelled as web: its own persona changes, and db1's allowlist loses it."""
    async with lab_service.admin(Role.READER) as reader:
        answer = (
            await reader.post("/v1/admin/policy/diff", json={"labels": {"api1": {"app": "web"}}})
        ).json()
    assert [c["instance"] for c in answer["changes"]] == ["api1"]
    lost = {(c["from"], c["to"], c["service"]) for c in answer["connectivity"]}
    assert ("api1", "db1", "postgres") in lost
    assert ("db1", "api1", "icmp") in lost


async def test_a_persona_edit_shows_its_blast_radius_and_stores_nothing(
    lab_service: Service,
) -> None:
    document = {
        "network_persona": {
            "communication_mode": "restricted",
            "security_profile": "high",
            "allowed_protocols": ["postgres", "icmp"],
            "priority": 6,
            "peers": [{"persona": "web-frontend"}],
        }
    }
    async with lab_service.admin(Role.READER) as reader:
        answer = (
            await reader.post(
                "/v1/admin/policy/diff", json={"personas": {"db-restricted": document}}
            )
        ).json()
        bad = await reader.post(
            "/v1/admin/policy/diff",
            json={"personas": {"db-restricted": {"network_persona": {"priority": 9}}}},
        )
        stored = (await reader.get("/v1/admin/personas/db-restricted")).json()
    lost = {
        (c["from"], c["to"], c["service"]) for c in answer["connectivity"] if c["change"] == "lost"
    }
    assert ("api1", "db1", "postgres") in lost
    assert [c["instance"] for c in answer["changes"]] == ["db1"]
    assert bad.status_code == 422
    assert any(
        e["pointer"].startswith("/personas/db-restricted") for e in bad.json()["error"]["errors"]
    )
    assert stored["version"] == 1
