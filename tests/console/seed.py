"""The default lab scenario as admin API requests: personas, policy, context and instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from netpersona.lab.scenario import Scenario, load_scenario

SCENARIO_FILE = Path(__file__).resolve().parents[2] / "examples" / "lab" / "scenario.yaml"


def scenario() -> Scenario:
    return load_scenario(SCENARIO_FILE)


def seed_requests(lab: Scenario | None = None) -> list[tuple[str, str, Any]]:
    """(method, path, body) in the order the lab itself makes them."""
    lab = lab or scenario()
    calls: list[tuple[str, str, Any]] = []
    for name, path in sorted(lab.personas.items()):
        calls.append(("PUT", f"/v1/admin/personas/{name}", yaml.safe_load(path.read_text())))
    calls.append(("PUT", "/v1/admin/policy", yaml.safe_load(lab.policy.read_text())))
    calls += [("PUT", f"/v1/admin/context/{k}", {"value": v}) for k, v in lab.context.items()]
    for vm in lab.vms:
        body = {
            "id": vm.name,
            "name": vm.name,
            "addresses": [str(i.address.ip) for i in vm.interfaces],
            "interfaces": [
                {"name": i.name, "addresses": [str(i.address)], "tier": i.tier}
                for i in vm.interfaces
            ],
            "labels": dict(vm.labels),
        }
        calls.append(("POST", "/v1/admin/instances", body))
    return calls
