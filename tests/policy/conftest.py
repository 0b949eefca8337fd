"""The example policy, personas and inventory, loaded once per test that asks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from netpersona.policy import (
    Policy,
    PolicyEngine,
    parse_inventory,
    parse_policy,
)
from netpersona.records import Instance, PersonaVersion

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POLICY_DIR = EXAMPLES / "policy"


def example_personas() -> dict[str, PersonaVersion]:
    personas = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        personas[path.stem] = PersonaVersion.of(
            path.stem, 1, yaml.safe_load(path.read_text())["network_persona"]
        )
    return personas


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def personas() -> dict[str, PersonaVersion]:
    return example_personas()


@pytest.fixture(scope="session")
def policy(personas: dict[str, PersonaVersion]) -> Policy:
    return parse_policy(load_yaml(POLICY_DIR / "policy.yaml"), personas)


@pytest.fixture(scope="session")
def inventory() -> tuple[Instance, ...]:
    return parse_inventory(load_yaml(POLICY_DIR / "inventory.yaml"))


@pytest.fixture
def engine(
    policy: Policy, personas: dict[str, PersonaVersion], inventory: tuple[Instance, ...]
) -> PolicyEngine:
    return PolicyEngine(policy, personas, {"threat_level": "low"}, inventory)
