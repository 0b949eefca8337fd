"""The example lab policy through the service: with its tests, every instance served exactly
what the pure engine decides from the same inputs, and explain naming every deciding rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from netpersona.policy import (
    PolicyEngine,
    parse_inventory,
    parse_policy,
)
from netpersona.records import PersonaVersion
from tests.service.conftest import Service

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


async def test_the_example_policy_is_served_as_the_engine_decides(service: Service) -> None:
    policy = _load(EXAMPLES / "policy" / "policy.yaml")
    inventory = _load(EXAMPLES / "policy" / "inventory.yaml")
    personas = {
        n: PersonaVersion.of(n, 1, _load(EXAMPLES / f"{n}.yaml")["network_persona"])
        for n in parse_policy(policy).personas | {"web-frontend"}
    }
    instances = parse_inventory(inventory)
    async with service.admin() as admin:
        for name in sorted(personas):
            await service.put_persona(name, _load(EXAMPLES / f"{name}.yaml"))
        for raw in inventory["instances"]:
            body = {k: raw[k] for k in ("id", "name", "addresses", "interfaces", "labels")}
            made = await admin.post("/v1/admin/instances", json=body)
            assert made.status_code == 201, made.text
            if raw.get("pin"):
                await service.pin(raw["id"], raw["pin"])
        saved = await admin.put(
            "/v1/admin/policy",
            json={**policy, "tests": _load(EXAMPLES / "policy" / "tests.yaml")},
        )
        assert saved.status_code == 201, saved.text

        shown: dict[str, set[str]] = {}
        for context in ({"threat_level": "low"}, {"threat_level": "high"}):
            for key, value in context.items():
                await admin.put(f"/v1/admin/context/{key}", json={"value": value})
            engine = PolicyEngine(parse_policy(policy), personas, context, instances)
            for facts in instances:
                decision = engine.decision(facts.id)
                view = (await admin.get(f"/v1/admin/instances/{facts.id}/view")).json()
                served = view["persona"]["body"]
                explained = (await admin.get(f"/v1/admin/instances/{facts.id}/explain")).json()
                assert explained["decision"] == decision.to_json(), facts.id
                if decision.rule is not None:
                    assert f"rule {decision.rule}" in explained["summary"]
                if decision.effective is None:
                    assert served["name"] is None
                    continue
                shown.setdefault(context["threat_level"], set()).add(
                    f"{served['name']}+{','.join(served['overlays'])}"
                )
                assert served == decision.effective.to_json(), facts.id
                assert served["version"] == 1, facts.id
        # Not a vacuous comparison: rules and overlays (tightening and quarantine) show up, and
        # the context flip moves instances.
        assert "db-restricted+" in shown["low"]
        assert shown["low"] != shown["high"]
        assert "quarantine+threat-high-dev-quarantine,threat-raised" in shown["high"], shown
        assert "web-frontend+threat-raised" in shown["high"]
